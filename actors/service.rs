//! What the simple internal services (upload, file-transfer proxy) share: sorting the stanzas
//! for a service domain into requests, the answers every service gives alike (disco, ping),
//! and sending answers through the router.

use actix::prelude::*;

use super::messages::{Route, ToService};
use crate::xml::Element;
use crate::xmpp::{error_reply, iq_result, ns, Condition, StanzaError};

/// An IQ get or set for a service.
pub struct Request<'a> {
    /// `get` or `set`.
    pub kind: &'a str,
    /// The IQ's one child.
    pub payload: &'a Element,
    /// Addressed to the service's domain itself (no node, no resource).
    pub to_service: bool,
}

/// What an answer is: a result (with an optional payload) or an error.
pub type Answer = Result<Option<Element>, StanzaError>;

/// The request in `msg`, or `None` when there is none: a message is answered with
/// `service-unavailable` and a malformed IQ with its error (through `route`); presence and
/// IQ results and errors are dropped.
pub fn request<'a>(route: &Recipient<Route>, msg: &'a ToService) -> Option<Request<'a>> {
    let el = &msg.stanza;
    if el.name != "iq" {
        if el.name == "message" {
            send_error(route, el, StanzaError::new(Condition::ServiceUnavailable));
        }
        return None;
    }
    let payload = match crate::xmpp::iq_payload(el) {
        Ok(p) => p?,
        Err(e) => {
            send_error(route, el, e);
            return None;
        }
    };
    Some(Request {
        kind: el.get_attr("type").unwrap_or_default(),
        payload,
        to_service: msg.to.node().is_none() && msg.to.resource().is_none(),
    })
}

impl Request<'_> {
    /// The answers every service gives alike: disco#info (`info()`) and disco#items (none)
    /// without a node, ping; `None` for anything else.
    pub fn common(&self, info: impl FnOnce() -> Element) -> Option<Answer> {
        let p = self.payload;
        let no_node = p.get_attr("node").is_none();
        match (self.kind, p.ns.as_str(), p.name.as_str()) {
            ("get", ns::DISCO_INFO, "query") if no_node => Some(Ok(Some(info()))),
            ("get", ns::DISCO_ITEMS, "query") if no_node => {
                Some(Ok(Some(Element::new("query", ns::DISCO_ITEMS))))
            }
            ("get", ns::PING, "ping") => Some(Ok(None)),
            _ => None,
        }
    }
}

/// A service's disco#info: one identity and `features` (disco, ping and the service's own).
pub fn disco_info(category: &str, kind: &str, name: &str, features: &[&str]) -> Element {
    let mut q = Element::new("query", ns::DISCO_INFO).child(
        Element::new("identity", ns::DISCO_INFO)
            .attr("category", category)
            .attr("type", kind)
            .attr("name", name),
    );
    for f in [ns::DISCO_INFO, ns::DISCO_ITEMS, ns::PING]
        .iter()
        .chain(features)
    {
        q = q.child(Element::new("feature", ns::DISCO_INFO).attr("var", *f));
    }
    q
}

/// Answer the IQ `iq` with `answer`.
pub fn answer(route: &Recipient<Route>, iq: &Element, answer: Answer) {
    match answer {
        Ok(p) => send(route, iq_result(iq, p)),
        Err(e) => send_error(route, iq, e),
    }
}

/// Send `stanza` (from the service, `to` set) through the router.
pub fn send(route: &Recipient<Route>, stanza: Element) {
    if let Some(r) = Route::of(stanza) {
        route.do_send(r);
    }
}

/// Answer `stanza` with the error `e`.
pub fn send_error(route: &Recipient<Route>, stanza: &Element, e: StanzaError) {
    if let Some(r) = error_reply(stanza, &e) {
        send(route, r);
    }
}
