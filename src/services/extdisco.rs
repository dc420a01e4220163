//! XEP-0215: External Service Discovery, for the STUN and TURN servers of `[turn]`
//! (`src/config/turn.rs`) that audio and video calls need.
//!
//! Only the host's own authenticated users are answered: their session calls [`user_iq`]
//! (`actors/connection.rs`). Everyone else who asks a host that offers the feature (users of
//! other servers, users of another host here) gets `forbidden`, as Prosody's
//! `mod_external_services` answers anything but its own client sessions: they may learn that
//! the feature exists (disco#info is public) but not get credentials for the relay.
//!
//! TURN credentials follow the TURN REST API scheme (coturn's `use-auth-secret`): the user
//! name is `<expiry>:<id>`, the expiry in Unix seconds and `id` 64 random bits in hex, and the
//! password base64(HMAC-SHA1(secret, user name)). The TURN server checks the HMAC and the
//! expiry; nothing is stored here. The user name carries no JID and no hash of one, because
//! coturn logs user names: a random id tells it nothing, and two credentials of the same user
//! cannot be linked by it (a hashed JID could), while each credential still gets its own
//! allocation quota in coturn (an expiry alone would be shared by everyone asking in the same
//! second).

use base64::Engine;
use hmac::{Hmac, Mac};

use crate::config::{ExternalService, TurnConfig};
use crate::xml::Element;
use crate::xmpp::{error_reply, iq_payload, iq_result, Condition, StanzaError};

pub const NS: &str = "urn:xmpp:extdisco:2";

/// The host's disco#info features for `turn`: [`NS`] when any service is configured.
pub fn features(turn: &TurnConfig) -> &'static [&'static str] {
    if turn.services.is_empty() {
        &[]
    } else {
        &[NS]
    }
}

/// Answer an IQ from an authenticated user to their own host, `host`, when it is a XEP-0215
/// query and services are configured; `None` otherwise (the server's other handlers answer,
/// `service-unavailable` for this namespace when the feature is off).
pub fn user_iq(iq: &Element, turn: &TurnConfig, host: &str) -> Option<Element> {
    let payload = match iq_payload(iq) {
        Ok(Some(p)) if p.ns == NS && !turn.services.is_empty() => p,
        _ => return None,
    };
    let now = crate::store::now_secs();
    let answer = match (payload.name.as_str(), iq.get_attr("type")) {
        ("services", Some("get")) => Ok(services(payload, turn, host, now)),
        ("credentials", Some("get")) => credentials(payload, turn, host, now),
        _ => Err(Condition::BadRequest.into()),
    };
    match answer {
        Ok(p) => Some(iq_result(iq, Some(p))),
        Err(e) => error_reply(iq, &e),
    }
}

/// `<services/>`: every service, or those of the asked `type`.
fn services(query: &Element, turn: &TurnConfig, host: &str, now: u64) -> Element {
    let wanted = query.get_attr("type");
    let mut out = Element::new("services", NS);
    for s in &turn.services {
        if wanted.is_none_or(|t| t == s.kind.as_str()) {
            out = out.child(service(s, turn, host, now));
        }
    }
    if let Some(t) = wanted {
        out.set_attr("type", t);
    }
    out
}

/// `<credentials/>`: fresh credentials for each asked service (`type` and `host`, `port`
/// optional) that needs them; `item-not-found` when one matches no such service.
fn credentials(
    query: &Element,
    turn: &TurnConfig,
    host: &str,
    now: u64,
) -> Result<Element, StanzaError> {
    let bad = |text: &str| StanzaError::new(Condition::BadRequest).with_text(text);
    let asked: Vec<&Element> = query.elements().filter(|e| e.name == "service").collect();
    if asked.is_empty() {
        return Err(bad("a <service/> with type and host is required"));
    }
    let mut out = Element::new("credentials", NS);
    for want in asked {
        let (Some(kind), Some(h)) = (want.get_attr("type"), want.get_attr("host")) else {
            return Err(bad("the service's type and host are required"));
        };
        let port = match want.get_attr("port") {
            None => None,
            Some(p) => Some(p.parse::<u16>().map_err(|_| bad("invalid port"))?),
        };
        let mut found = false;
        for s in turn.services.iter().filter(|s| {
            s.kind.needs_credentials()
                && s.kind.as_str() == kind
                && s.host_for(host).eq_ignore_ascii_case(h)
                && port.is_none_or(|p| p == s.port())
        }) {
            out = out.child(service(s, turn, host, now));
            found = true;
        }
        if !found {
            return Err(Condition::ItemNotFound.into());
        }
    }
    Ok(out)
}

/// One `<service/>`, with credentials valid for `turn.credential_ttl_secs` from `now` when it
/// needs them.
fn service(s: &ExternalService, turn: &TurnConfig, host: &str, now: u64) -> Element {
    let mut e = Element::new("service", NS)
        .attr("type", s.kind.as_str())
        .attr("host", s.host_for(host))
        .attr("port", s.port().to_string())
        .attr("transport", s.transport().as_str());
    if let Some(n) = &s.name {
        e = e.attr("name", n.clone());
    }
    if let (true, Some(secret)) = (s.kind.needs_credentials(), &turn.secret) {
        let expiry = now.saturating_add(turn.credential_ttl_secs);
        let username = format!("{expiry}:{:016x}", rand::random::<u64>());
        let expires = crate::xmpp::xep0082(expiry.saturating_mul(1000)).unwrap_or_default();
        e = e
            .attr("restricted", "1")
            .attr("password", password(secret, &username))
            .attr("username", username)
            .attr("expires", expires);
    }
    e
}

/// The TURN REST API password of `username`: base64(HMAC-SHA1(secret, username)).
pub fn password(secret: &str, username: &str) -> String {
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::xmpp::ns;

    fn turn() -> TurnConfig {
        Config::parse(
            "[turn]\nsecret = \"0123456789abcdef\"\ncredential_ttl_secs = 600\n\
             [[turn.services]]\ntype = \"stun\"\nhost = \"{host}\"\n\
             [[turn.services]]\ntype = \"turn\"\nhost = \"turn.{host}\"\n\
             [[turn.services]]\ntype = \"turn\"\nhost = \"turn.{host}\"\ntransport = \"tcp\"\n",
        )
        .unwrap()
        .turn
    }

    fn ask(payload: &str, turn: &TurnConfig) -> Element {
        let iq = crate::xml::parse_element(&format!(
            "<iq xmlns='jabber:client' type='get' id='e1' to='a.test'>{payload}</iq>"
        ))
        .unwrap();
        user_iq(&iq, turn, "a.test").expect("answered")
    }

    #[test]
    fn password_is_the_turn_rest_api_hmac() {
        // `printf %s 1796680184:abc | openssl dgst -sha1 -hmac s3cretsecret1234 -binary | base64`
        assert_eq!(
            password("s3cretsecret1234", "1796680184:abc"),
            "3u2s6yzoAlh4eQ/BuNLGWlc+dHE="
        );
    }

    #[test]
    fn services_carry_fresh_credentials_for_turn_only() {
        let t = turn();
        let r = ask(&format!("<services xmlns='{NS}'/>"), &t);
        let list: Vec<&Element> = r.get_child("services", NS).unwrap().elements().collect();
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].get_attr("host"), Some("a.test"));
        assert_eq!(list[0].get_attr("username"), None);
        let (u, p) = (list[1].get_attr("username"), list[1].get_attr("password"));
        let (u, p) = (u.unwrap(), p.unwrap());
        let (expiry, id) = u.split_once(':').unwrap();
        let expiry: u64 = expiry.parse().unwrap();
        assert!(expiry > crate::store::now_secs() && id.len() == 16, "{u}");
        assert_eq!(p, password("0123456789abcdef", u));
        assert_eq!(list[1].get_attr("restricted"), Some("1"));
        assert!(list[1].get_attr("expires").unwrap().ends_with('Z'));
        assert_ne!(
            list[2].get_attr("username"),
            Some(u),
            "one id per credential"
        );
        let only = ask(&format!("<services xmlns='{NS}' type='stun'/>"), &t);
        let only = only.get_child("services", NS).unwrap();
        assert_eq!(only.elements().count(), 1);
    }

    #[test]
    fn credentials_for_one_service_or_an_error() {
        let t = turn();
        let q = |inner: &str| format!("<credentials xmlns='{NS}'>{inner}</credentials>");
        let r = ask(
            &q("<service type='turn' host='turn.a.test' port='3478'/>"),
            &t,
        );
        let c = r.get_child("credentials", NS).unwrap();
        assert_eq!(c.elements().count(), 2, "udp and tcp");
        for (inner, cond) in [
            ("", "bad-request"),
            ("<service host='turn.a.test'/>", "bad-request"),
            (
                "<service type='turn' host='turn.a.test' port='x'/>",
                "bad-request",
            ),
            (
                "<service type='turn' host='elsewhere.test'/>",
                "item-not-found",
            ),
            ("<service type='stun' host='a.test'/>", "item-not-found"),
        ] {
            let r = ask(&q(inner), &t).to_xml(ns::CLIENT);
            assert!(r.contains(&format!("<{cond}")), "{inner}: {r}");
        }
        let r = ask(&format!("<unknown xmlns='{NS}'/>"), &t).to_xml(ns::CLIENT);
        assert!(r.contains("<bad-request"), "{r}");
    }

    #[test]
    fn nothing_configured_is_not_answered_here() {
        let iq = crate::xml::parse_element(&format!(
            "<iq xmlns='jabber:client' type='get' id='e1'><services xmlns='{NS}'/></iq>"
        ))
        .unwrap();
        assert!(user_iq(&iq, &TurnConfig::default(), "a.test").is_none());
        assert!(features(&TurnConfig::default()).is_empty());
        assert_eq!(features(&turn()), &[NS]);
    }
}
