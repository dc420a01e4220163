//! Server-side IQ handlers, one file per XEP. [`server_iq`] answers what is addressed to the
//! server itself; in-band registration (which needs the store and the session) is driven by the
//! connection through [`register`].
//!
//! Adding a XEP: add a file, list its features in [`SERVER_FEATURES`], route its namespace in
//! [`server_iq`].

pub mod avatar;
pub mod bookmarks;
pub mod carbons;
pub mod disco;
pub mod extdisco;
pub mod last;
pub mod mam;
pub mod pep;
pub mod ping;
pub mod private;
pub mod push;
pub mod register;
pub mod time;
pub mod vcard;
pub mod version;

use std::time::Instant;

use crate::config::LimitsConfig;
use crate::destinations::Destinations;
use crate::store::Store;
use crate::xml::Element;
use crate::xmpp::{error_reply, iq_payload, iq_result, ns, BareJid, Condition, Jid, StanzaError};

/// What [`client_data_iq`] reads: the store, the limits on what it stores, which domains
/// are account hosts, and when the server started (its uptime).
#[derive(Clone, Copy)]
pub struct ClientDataContext<'a> {
    pub store: &'a Store,
    pub limits: &'a LimitsConfig,
    pub destinations: &'a Destinations,
    pub started: Instant,
}

/// IQs about stored client data (vCard, private storage, last activity) that the server
/// answers itself: `to` absent (the sender's own account), a local bare JID, or (last
/// activity) a local domain. `None` when the IQ is something else.
pub fn client_data_iq(
    cx: ClientDataContext<'_>,
    requester: &BareJid,
    to: Option<&Jid>,
    iq: &Element,
) -> Option<Element> {
    let Ok(Some(payload)) = iq_payload(iq) else {
        return None;
    };
    let get = iq.get_attr("type") == Some("get");
    let target = match to {
        None => Some(requester.clone()),
        Some(t) if t.resource().is_some() => return None,
        Some(t) if t.node().is_none() => None,
        Some(t) => Some(t.to_bare()),
    };
    let hosts = cx.destinations;
    if let Some(t) = &target {
        if !hosts.is_account_host(t.domain().as_str()) {
            return None;
        }
    } else if !to.is_some_and(|t| hosts.is_account_host(t.domain().as_str())) {
        return None;
    }
    let (store, limits) = (cx.store, cx.limits);
    let answer = match (payload.ns.as_str(), payload.name.as_str(), &target) {
        (vcard::NS, "vCard", Some(t)) => {
            vcard::handle(store, limits.max_vcard_bytes, requester, t, get, payload)
        }
        (private::NS, "query", Some(t)) => {
            private::handle(store, limits.max_private_bytes, requester, t, get, payload)
        }
        (last::NS, "query", None) if get => Ok(Some(last::server(cx.started.elapsed()))),
        (last::NS, "query", Some(t)) if get => last::account(store, requester, t),
        (last::NS, "query", _) => Err(Condition::BadRequest.into()),
        _ => return None,
    };
    Some(match answer {
        Ok(p) => iq_result(iq, p),
        Err(e) => error_reply(iq, &e)?,
    })
}

/// Features the server advertises in disco#info.
pub const SERVER_FEATURES: &[&str] = &[
    "urn:xmpp:csi:0",
    // XEP-0160 §5: messages to offline users are stored.
    "msgoffline",
    carbons::NS,
    last::NS,
    private::NS,
    vcard::NS,
    ns::BLOCKING,
    ns::DISCO_INFO,
    ns::DISCO_ITEMS,
    ns::PING,
    ns::REGISTER,
    ns::TIME,
    ns::VERSION,
];

/// Answer an IQ addressed to the server `host` (its `to` is the host or absent). Returns the
/// reply (result or error), or `None` for results and errors, which are not answered.
pub fn server_iq(iq: &Element, host: &str, server: &disco::ServerInfo) -> Option<Element> {
    let payload = match iq_payload(iq) {
        Ok(Some(p)) => p,
        Ok(None) => return None,
        Err(e) => return error_reply(iq, &e),
    };
    let get = iq.get_attr("type") == Some("get");
    let answer: Result<Option<Element>, StanzaError> = match (payload.ns.as_str(), get) {
        (ns::DISCO_INFO, true) if payload.name == "query" => disco::server_info(payload, server),
        (ns::DISCO_ITEMS, true) if payload.name == "query" => {
            disco::server_items(payload, host, server)
        }
        (ns::PING, true) if payload.name == "ping" => Ok(None),
        // RFC 3921 session establishment: a no-op kept for old clients (RFC 6121 Appendix E).
        (ns::SESSION, false) if payload.name == "session" => Ok(None),
        (ns::VERSION, true) if payload.name == "query" => Ok(Some(version::answer())),
        (ns::TIME, true) if payload.name == "time" => Ok(Some(time::answer())),
        // XEP-0215 asked by anyone but the host's own users (their session answers them).
        (extdisco::NS, _) if server.offers(extdisco::NS) => Err(Condition::Forbidden.into()),
        (ns::DISCO_INFO | ns::DISCO_ITEMS | ns::PING | ns::VERSION | ns::TIME, false) => {
            Err(Condition::BadRequest.into())
        }
        _ => Err(Condition::ServiceUnavailable.into()),
    };
    match answer {
        Ok(p) => Some(iq_result(iq, p)),
        Err(e) => error_reply(iq, &e),
    }
}

/// Answer an IQ a user sent to their own bare JID that the server handles on their behalf
/// (RFC 6121 §8.5.3.2.1 for `to` = own bare JID; other features plug in here). `server`
/// says which optional account features are on.
pub fn account_iq(iq: &Element, server: &disco::ServerInfo) -> Option<Element> {
    let payload = match iq_payload(iq) {
        Ok(Some(p)) => p,
        Ok(None) => return None,
        Err(e) => return error_reply(iq, &e),
    };
    let get = iq.get_attr("type") == Some("get");
    let answer = match (payload.ns.as_str(), get) {
        (ns::DISCO_INFO, true) if payload.name == "query" => disco::account_info(payload, server),
        (ns::DISCO_ITEMS, true) if payload.name == "query" => {
            Ok(Some(Element::new("query", ns::DISCO_ITEMS)))
        }
        (ns::PING, true) if payload.name == "ping" => Ok(None),
        _ => Err(Condition::ServiceUnavailable.into()),
    };
    match answer {
        Ok(p) => Some(iq_result(iq, p)),
        Err(e) => error_reply(iq, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iq(kind: &str, payload: Element) -> Element {
        Element::new("iq", ns::CLIENT)
            .attr("type", kind)
            .attr("id", "q1")
            .attr("from", "a@x/r")
            .attr("to", "x")
            .child(payload)
    }

    #[test]
    fn ping_is_answered_with_an_empty_result() {
        let r = server_iq(
            &iq("get", Element::new("ping", ns::PING)),
            "x",
            &Default::default(),
        )
        .unwrap();
        assert_eq!(
            r.to_xml(ns::CLIENT),
            "<iq type='result' id='q1' from='x' to='a@x/r'/>"
        );
    }

    #[test]
    fn unknown_namespace_is_service_unavailable() {
        let r = server_iq(
            &iq("get", Element::new("query", "urn:example:nope")),
            "x",
            &Default::default(),
        )
        .unwrap();
        assert!(r.to_xml(ns::CLIENT).contains("<service-unavailable"));
        assert_eq!(r.get_attr("type"), Some("error"));
    }

    #[test]
    fn iq_without_payload_is_bad_request() {
        let bare = Element::new("iq", ns::CLIENT)
            .attr("type", "get")
            .attr("id", "1");
        let r = server_iq(&bare, "x", &Default::default()).unwrap();
        assert!(r.to_xml(ns::CLIENT).contains("<bad-request"));
    }

    #[test]
    fn results_are_not_answered() {
        let r = Element::new("iq", ns::CLIENT)
            .attr("type", "result")
            .attr("id", "1");
        assert!(server_iq(&r, "x", &Default::default()).is_none());
    }

    #[test]
    fn version_and_time() {
        let r = server_iq(
            &iq("get", Element::new("query", ns::VERSION)),
            "x",
            &Default::default(),
        )
        .unwrap();
        let q = r.get_child("query", ns::VERSION).unwrap();
        assert_eq!(
            q.get_child("name", ns::VERSION).unwrap().text_content(),
            "kleiber"
        );
        let r = server_iq(
            &iq("get", Element::new("time", ns::TIME)),
            "x",
            &Default::default(),
        )
        .unwrap();
        let t = r.get_child("time", ns::TIME).unwrap();
        assert!(t
            .get_child("utc", ns::TIME)
            .unwrap()
            .text_content()
            .ends_with('Z'));
    }
}
