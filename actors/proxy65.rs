//! The file-transfer proxy service (XEP-0065 SOCKS5 bytestreams): one [`Proxy65Service`]
//! actor per host owns the service domain (`proxy.<host>`) and answers its XMPP side: disco
//! (identity `proxy/bytestreams`, the bytestreams feature), the streamhost query (the
//! relay's address and port) and activation. Both are for accounts of this server only;
//! others get `forbidden`, as in Prosody's `mod_proxy65`, which serves its own users (c2s
//! sessions) unless an ACL says otherwise. The relay itself (SOCKS5, pairing, the bytes) is
//! [`crate::proxy65::Relay`], shared by all hosts' services; it runs on its own thread.
//!
//! ```text
//!  Router --ToService--> Proxy65Service --Route--> Router
//!  Proxy65Service --Relay::activate--> Relay (starts the transfer on the relay's thread)
//! ```
//!
//! Activation (XEP-0065 §6.3.5): the pair is found by SHA-1(sid + `from` + target), `from`
//! being the full JID the server stamped on the request, so only the initiator can activate
//! it; no pair: `item-not-found`; only one side connected: `not-allowed`.

use std::sync::Arc;

use actix::prelude::*;

use super::messages::{Route, ServiceShutdown, ToService};
use super::{service, ServiceContext, ServiceInbox, ServiceSpec};
use crate::proxy65::{destination, ActivateError, Relay};
use crate::shared::Shared;
use crate::xml::Element;
use crate::xmpp::{Condition, StanzaError};

/// XEP-0065's namespace.
pub const NS_BYTESTREAMS: &str = "http://jabber.org/protocol/bytestreams";

/// The proxy service of one host.
pub struct Proxy65Service {
    shared: Arc<Shared>,
    /// The service domain.
    domain: String,
    relay: Arc<Relay>,
    route: Recipient<Route>,
}

/// The proxy service at `domain`, relaying through `relay`, to start with the server.
pub fn spec(domain: String, relay: Arc<Relay>) -> ServiceSpec {
    ServiceSpec {
        domain: domain.clone(),
        start: Box::new(move |cx: ServiceContext| {
            relay.start(&cx.shared);
            let (shared, route) = (cx.shared, cx.route);
            let service = Proxy65Service {
                shared,
                domain,
                relay,
                route,
            };
            let addr = Proxy65Service::start_in_arbiter(&cx.arbiter, move |_| service);
            ServiceInbox {
                stanzas: addr.clone().recipient(),
                account_gone: None,
                shutdown: Some(addr.recipient()),
            }
        }),
    }
}

impl Actor for Proxy65Service {
    type Context = Context<Self>;
}

impl Handler<ToService> for Proxy65Service {
    type Result = ();
    fn handle(&mut self, msg: ToService, _: &mut Context<Self>) {
        if let Some(req) = service::request(&self.route, &msg) {
            let answer = self.answer(&msg.from, &req);
            service::answer(&self.route, &msg.stanza, answer);
        }
    }
}

impl Handler<ServiceShutdown> for Proxy65Service {
    type Result = ();
    /// The relay's connections close and its thread ends (the first host's service does it).
    fn handle(&mut self, _: ServiceShutdown, _: &mut Context<Self>) {
        self.relay.stop();
    }
}

/// disco#info of the service.
fn disco_info() -> Element {
    service::disco_info(
        "proxy",
        "bytestreams",
        "File transfer proxy",
        &[NS_BYTESTREAMS],
    )
}

impl Proxy65Service {
    /// The answer to `req` from `from`.
    fn answer(&self, from: &jid::Jid, req: &service::Request<'_>) -> service::Answer {
        let p = req.payload;
        match (req.kind, p.ns.as_str(), p.name.as_str()) {
            _ if !req.to_service => Err(StanzaError::new(Condition::ServiceUnavailable)),
            ("get", NS_BYTESTREAMS, "query") => self.streamhost(from, p).map(Some),
            ("set", NS_BYTESTREAMS, "query") => self.activate(from, p).map(|_| None),
            _ => req
                .common(disco_info)
                .unwrap_or_else(|| Err(StanzaError::new(Condition::ServiceUnavailable))),
        }
    }

    /// Only accounts of this server may use the proxy.
    fn check_local(&self, from: &jid::Jid) -> Result<(), StanzaError> {
        if from.node().is_some() && self.shared.is_account_host(from.domain().as_str()) {
            Ok(())
        } else {
            Err(StanzaError::new(Condition::Forbidden)
                .with_text("only accounts of this server may use this proxy"))
        }
    }

    /// The answer to a streamhost query: where to connect.
    fn streamhost(&self, from: &jid::Jid, query: &Element) -> Result<Element, StanzaError> {
        self.check_local(from)?;
        let (host, port) = self.relay.streamhost();
        let mut q = Element::new("query", NS_BYTESTREAMS);
        if let Some(sid) = query.get_attr("sid") {
            q.set_attr("sid", sid);
        }
        Ok(q.child(
            Element::new("streamhost", NS_BYTESTREAMS)
                .attr("jid", self.domain.as_str())
                .attr("host", host)
                .attr("port", port.to_string()),
        ))
    }

    /// `<query sid><activate>target</activate></query>` from the initiator.
    fn activate(&self, from: &jid::Jid, query: &Element) -> Result<(), StanzaError> {
        self.check_local(from)?;
        let bad = |t: &str| StanzaError::new(Condition::BadRequest).with_text(t);
        let sid = query
            .get_attr("sid")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("activation needs the stream's sid"))?;
        let target = query
            .get_child("activate", NS_BYTESTREAMS)
            .map(|a| a.text_content())
            .ok_or_else(|| bad("activation needs <activate/> with the target's JID"))?;
        let target = crate::xmpp::jid(target.trim()).map_err(|_| {
            StanzaError::new(Condition::JidMalformed).with_text("the target is not a valid JID")
        })?;
        let hash = destination(sid, from.as_str(), target.as_str());
        let account = crate::xmpp::bare_part(from.as_str());
        let refused = |c: Condition, t: &str| Err(StanzaError::new(c).with_text(t));
        match self.relay.activate(&hash, account) {
            Ok(()) => {
                log::debug!("proxy65: {from} activated a transfer");
                Ok(())
            }
            Err(ActivateError::Unknown) => refused(
                Condition::ItemNotFound,
                "no connection for this sid, initiator and target",
            ),
            Err(ActivateError::OneSided) => refused(
                Condition::NotAllowed,
                "only one side is connected to the proxy",
            ),
            Err(ActivateError::TooMany) => refused(
                Condition::ResourceConstraint,
                "too many transfers of this account at once",
            ),
            Err(ActivateError::NotRunning) => {
                refused(Condition::InternalServerError, "the proxy is not running")
            }
        }
    }
}
