//! Stanzas that reach an account host from outside its own sessions — from a peer server
//! (`s2s_in.rs`) or an external component (`component.rs`) — and that the server answers
//! itself instead of routing: IQs to the host (disco, ping, version, ...), IQs to an
//! account's bare JID for its stored data (vCard, PEP; RFC 6121 §8.5.1 and §8.5.3.2.1), and
//! messages to the host's own JID (nobody reads them: `service-unavailable`). Answers go
//! back through the router like any stanza. Internal services' IQs of that kind reach the
//! [`HostIq`] actor on the storage arbiter through the router.

use actix::prelude::*;

use std::sync::Arc;

use super::directory::{PepHandle, RouterHandle};
use super::messages::{CapsAnswer, PepIq, PushAnswer, Route};
use crate::services;
use crate::shared::Shared;
use crate::xml::Element;
use crate::xmpp::{error_reply, Condition, Jid, StanzaError, StanzaKind};

/// Where the answers to the server's own IQs go, and what asks the PEP service.
#[derive(Clone)]
pub struct Inboxes {
    /// The PEP service: IQs to accounts' nodes, answers to its caps queries.
    pub pep: PepHandle,
    /// The push service: app servers' answers to notifications (XEP-0357).
    pub push_answer: Recipient<PushAnswer>,
}

impl Inboxes {
    /// From the router's handle.
    pub fn of(handle: &RouterHandle) -> Inboxes {
        Inboxes {
            pep: handle.pep.clone(),
            push_answer: handle.push.answer.clone(),
        }
    }
}

/// Handle `el` (of `kind`, from a foreign `from`, to `to` on a local account host) if it is
/// the server's to answer; otherwise give it back for the router.
pub fn handle(
    shared: &Shared,
    inboxes: &Inboxes,
    router: &Recipient<Route>,
    el: Element,
    kind: StanzaKind,
    (from, to): (&Jid, &Jid),
) -> Option<Element> {
    if !shared.is_account_host(to.domain().as_str()) {
        return Some(el);
    }
    if kind == StanzaKind::Iq && to.resource().is_none() {
        iq(shared, inboxes, router, el, from, to);
        return None;
    }
    if to.node().is_some() {
        return Some(el);
    }
    // Messages and presence to the server itself: nothing to deliver.
    if kind == StanzaKind::Message && matches!(el.get_attr("type"), None | Some("normal" | "chat"))
    {
        reply(
            router,
            error_reply(&el, &StanzaError::new(Condition::ServiceUnavailable)),
        );
    }
    None
}

fn reply(router: &Recipient<Route>, answer: Option<Element>) {
    if let Some(r) = answer.and_then(Route::of) {
        router.do_send(r);
    }
}

/// IQs to a local domain or a local bare JID.
fn iq(
    shared: &Shared,
    inboxes: &Inboxes,
    router: &Recipient<Route>,
    iq: Element,
    from: &Jid,
    to: &Jid,
) {
    let pep = &inboxes.pep;
    let kind = iq.get_attr("type").unwrap_or_default();
    if matches!(kind, "result" | "error") {
        // Answers to the PEP service's caps queries and to push notifications (sent from
        // accounts' bare JIDs); others have no one to go to.
        let id = iq.get_attr("id").unwrap_or_default();
        if to.node().is_none() && id.starts_with(super::pep::CAPS_QUERY_ID) {
            pep.caps.do_send(CapsAnswer { iq });
        } else if to.node().is_some() && id.starts_with(crate::services::push::ID_PREFIX) {
            inboxes.push_answer.do_send(PushAnswer { iq });
        }
        return;
    }
    if to.node().is_some() && services::pep::is_pep(&iq) {
        let ask = pep.iq.send(PepIq { iq });
        let router = router.clone();
        actix_rt::spawn(async move {
            if let Ok(answer) = ask.await {
                reply(&router, answer);
            }
        });
        return;
    }
    let cx = shared.client_data_context();
    let answer = services::client_data_iq(cx, &from.to_bare(), Some(to), &iq).or_else(|| {
        if to.node().is_none() {
            services::server_iq(&iq, to.domain().as_str(), &shared.server_info)
        } else if account_exists(shared, to) {
            services::account_iq(&iq, &shared.server_info)
        } else {
            error_reply(&iq, &StanzaError::new(Condition::ServiceUnavailable))
        }
    });
    reply(router, answer);
}

fn account_exists(shared: &Shared, jid: &Jid) -> bool {
    jid.node().is_some_and(|n| {
        shared
            .store
            .accounts
            .exists(jid.domain().as_str(), n.as_str())
            .unwrap_or(false)
    })
}

/// Answers internal services' IQs to a host or an account's bare JID (the router hands them
/// over), on the storage arbiter.
pub struct HostIq {
    pub shared: Arc<Shared>,
    pub inboxes: Inboxes,
    pub router: Recipient<Route>,
}

impl Actor for HostIq {
    type Context = Context<Self>;
}

impl Handler<Route> for HostIq {
    type Result = ();
    fn handle(&mut self, msg: Route, _: &mut Context<Self>) {
        let Some(kind) = StanzaKind::of(&msg.stanza) else {
            return;
        };
        let pair = (&msg.from, &msg.to);
        let _ = handle(
            &self.shared,
            &self.inboxes,
            &self.router,
            msg.stanza,
            kind,
            pair,
        );
    }
}
