//! The archive actor (XEP-0313, XEP-0359, XEP-0441), on the storage arbiter, started only when
//! the operator enables `[archive]`.
//!
//! The router never touches disk, so an archivable message to or from a local account makes
//! one hop through here on its way ([`ToArchive`]): the sender's copy is archived (outgoing),
//! the recipient's too (incoming) and stamped with its `<stanza-id by=recipient>`, each as that
//! user's preferences say, and the message goes back to the router ([`Archived`]) to be
//! delivered as usual. Every message between two parties takes the same path, so their order
//! is kept. Sessions' MAM and preference IQs are answered here too ([`MamIq`]).

use std::sync::Arc;

use actix::prelude::*;

use super::messages::{Archived, Barrier, MamIq, Route, ToArchive};
use crate::services::mam;
use crate::shared::Shared;
use crate::store::archive::{Entry, Prefs};
use crate::xml::Element;
use crate::xmpp::{error_reply, iq_payload, iq_result, ns, BareJid, Condition, Jid};

/// The archive actor.
pub struct Archiver {
    shared: Arc<Shared>,
    router: Recipient<Archived>,
}

impl Archiver {
    pub fn new(shared: Arc<Shared>, router: Recipient<Archived>) -> Archiver {
        Archiver { shared, router }
    }

    /// `(domain, user)` of `jid` when it is an existing local account.
    fn account<'a>(&self, jid: &'a Jid) -> Option<(&'a str, &'a str)> {
        let node = jid.node()?.as_str();
        let domain = jid.domain().as_str();
        (self.shared.is_account_host(domain)
            && self
                .shared
                .store
                .accounts
                .exists(domain, node)
                .unwrap_or(false))
        .then_some((domain, node))
    }

    /// The user's preferences, or the configured default.
    fn prefs(&self, domain: &str, user: &str) -> Prefs {
        let default = self.shared.config.archive.default_mode.into();
        match self.shared.store.archive.prefs(domain, user) {
            Ok(Some(p)) => p,
            Ok(None) => Prefs::with_default(default),
            Err(e) => {
                log::error!("archive: preferences unreadable ({e}); using the default");
                Prefs::with_default(default)
            }
        }
    }

    /// Does `user` archive messages with `contact` (a bare JID)? A received message is not
    /// archived from a contact the user blocked (the router drops those); a sent one needs no
    /// look at the block list: the session refuses to send to blocked JIDs.
    fn wants(&self, domain: &str, user: &str, contact: &BareJid, received: bool) -> bool {
        let store = &self.shared.store;
        if received
            && store
                .rosters
                .is_blocked(domain, user, contact.as_str())
                .unwrap_or(true)
        {
            return false;
        }
        self.prefs(domain, user).archives(contact.as_str(), || {
            store
                .rosters
                .get(domain, user, contact.as_str())
                .ok()
                .flatten()
                .is_some_and(|i| i.in_roster)
        })
    }

    /// Archive `route`'s message for its local sender and recipient.
    fn archive(&self, route: &mut Route) {
        let id = self.shared.store.archive.next_id();
        let Route {
            stanza, from, to, ..
        } = route;
        if let Some((domain, user)) = self.account(from) {
            if self.wants(domain, user, &to.to_bare(), false) {
                let entry = Entry {
                    id,
                    with: to.as_str().to_owned(),
                    outgoing: true,
                    xml: stanza.to_xml(ns::CLIENT),
                };
                self.shared.store.archive.try_append(domain, user, &entry);
            }
        }
        if let Some((domain, user)) = self.account(to) {
            if self.wants(domain, user, &from.to_bare(), true) {
                let by = to.to_bare();
                let mut stamped = stanza.clone();
                mam::stamp(&mut stamped, by.as_str(), id);
                let entry = Entry {
                    id,
                    with: from.as_str().to_owned(),
                    outgoing: false,
                    xml: stamped.to_xml(ns::CLIENT),
                };
                if self.shared.store.archive.try_append(domain, user, &entry) {
                    *stanza = stamped;
                }
            }
        }
    }

    /// A session's IQ about its own archive.
    fn mam_iq(&self, iq: &Element, user: &BareJid) -> Vec<Element> {
        let (domain, node) = crate::xmpp::account_parts(user);
        if let Ok(Some(p)) = iq_payload(iq) {
            if p.name == "prefs" {
                return self.prefs_iq(iq, p, domain, node).into_iter().collect();
            }
        }
        let archive = mam::Archive {
            store: &self.shared.store,
            domain,
            node,
            from: None,
            max_page: self.shared.config.archive.max_page_size,
        };
        mam::answer(&archive, iq)
    }

    /// XEP-0441: get or set the preferences.
    fn prefs_iq(&self, iq: &Element, p: &Element, domain: &str, node: &str) -> Option<Element> {
        if iq.get_attr("type") == Some("get") {
            return Some(iq_result(
                iq,
                Some(mam::prefs_element(&self.prefs(domain, node))),
            ));
        }
        let prefs = match mam::parse_prefs(p) {
            Ok(prefs) => prefs,
            Err(e) => return error_reply(iq, &e),
        };
        match self.shared.store.archive.set_prefs(domain, node, &prefs) {
            Ok(()) => Some(iq_result(iq, Some(mam::prefs_element(&prefs)))),
            Err(e) => error_reply(iq, &e.stanza_error("archive preferences")),
        }
    }
}

impl Actor for Archiver {
    type Context = Context<Self>;
}

impl Handler<ToArchive> for Archiver {
    type Result = ();
    fn handle(&mut self, ToArchive(mut route): ToArchive, _: &mut Context<Self>) {
        self.archive(&mut route);
        self.router.do_send(Archived(route));
    }
}

impl Handler<MamIq> for Archiver {
    type Result = MessageResult<MamIq>;
    fn handle(&mut self, msg: MamIq, _: &mut Context<Self>) -> Self::Result {
        if msg.user.node().is_none() {
            return MessageResult(
                error_reply(&msg.iq, &Condition::BadRequest.into())
                    .into_iter()
                    .collect(),
            );
        }
        MessageResult(self.mam_iq(&msg.iq, &msg.user))
    }
}

impl Handler<Barrier> for Archiver {
    type Result = ();
    fn handle(&mut self, _: Barrier, _: &mut Context<Self>) {}
}
