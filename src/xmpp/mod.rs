//! XMPP protocol vocabulary: namespaces, stream and stanza errors, JIDs, stanza helpers.
//!
//! Pure code: no actors, storage or TLS. JIDs are the `jid` crate's types (RFC 7622 with
//! PRECIS/stringprep), so a bare and a full JID are different types.

pub mod error;
pub mod form;
pub mod ns;

pub use error::{error_reply, Condition, ErrorType, StanzaError, StreamError};
pub use jid::{BareJid, FullJid, Jid};

use crate::xml::{escape, Element};

/// A value that is not one of a closed set's names (see [`named`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownName;

/// A closed set of names on the wire and in the store (access models, affiliations, roles,
/// ...): `ALL`, `as_str` and `FromStr` for an enum, from one list of `Variant = "name"`.
macro_rules! named {
    ($t:ident { $($v:ident = $name:literal),+ $(,)? }) => {
        impl $t {
            /// Every value, in the order a form lists them.
            pub const ALL: &'static [$t] = &[$($t::$v),+];

            /// The name on the wire and in the store.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($t::$v => $name,)+
                }
            }
        }

        impl std::str::FromStr for $t {
            type Err = $crate::xmpp::UnknownName;

            fn from_str(s: &str) -> Result<Self, $crate::xmpp::UnknownName> {
                match s {
                    $($name => Ok($t::$v),)+
                    _ => Err($crate::xmpp::UnknownName),
                }
            }
        }
    };
}
pub(crate) use named;

/// Parse and normalise a JID to a fixed point. Every JID that enters kleiber goes through
/// here rather than `Jid::new`: the `jid` crate's stringprep is not idempotent for some
/// non-ASCII input (nameprep of `DϹ.L` gives a string whose nameprep differs again; found by
/// fuzzing, `fuzz/known/jid/`), so one entity could otherwise be stored and compared under two
/// spellings. ASCII input is normalised in one step; other input is normalised again until it
/// no longer changes, and refused (as `jid-malformed`) if it still changes after three rounds.
pub fn jid(s: &str) -> Result<Jid, jid::Error> {
    let mut j = Jid::new(s)?;
    if s.is_ascii() {
        return Ok(j);
    }
    for _ in 0..3 {
        let again = Jid::new(j.as_str())?;
        if again == j {
            return Ok(j);
        }
        j = again;
    }
    Err(jid::Error::NamePrep)
}

/// An account's bare JID as its store keys take it: (domain, user).
pub fn account_parts(j: &BareJid) -> (&str, &str) {
    (
        j.domain().as_str(),
        j.node().map(|n| n.as_str()).unwrap_or_default(),
    )
}

/// The bare part of a JID string (`node@domain/resource` -> `node@domain`), for JIDs that were
/// parsed already (stamped `from`s, stored keys); the one place that splits a JID by hand.
pub fn bare_part(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(bare, _)| bare)
}

/// The domain part of a JID string (`node@domain/resource` -> `domain`); see [`bare_part`].
pub fn domain_part(jid: &str) -> &str {
    let bare = bare_part(jid);
    bare.rsplit_once('@').map_or(bare, |(_, domain)| domain)
}

/// The three stanza kinds of RFC 6120 §8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StanzaKind {
    Message,
    Presence,
    Iq,
}

impl StanzaKind {
    /// The kind of a top-level element in `jabber:client`/`jabber:server`, if it is a stanza.
    pub fn of(el: &Element) -> Option<StanzaKind> {
        if el.ns != ns::CLIENT && el.ns != ns::SERVER {
            return None;
        }
        match el.name.as_str() {
            "message" => Some(StanzaKind::Message),
            "presence" => Some(StanzaKind::Presence),
            "iq" => Some(StanzaKind::Iq),
            _ => None,
        }
    }
}

/// The server's opening stream header (response stream) for a client-to-server stream.
pub fn stream_header(from: &str, to: Option<&str>, id: &str) -> String {
    let mut s = String::with_capacity(200);
    s.push_str("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en' id='");
    s.push_str(&escape(id));
    s.push_str("' from='");
    s.push_str(&escape(from));
    if let Some(to) = to {
        s.push_str("' to='");
        s.push_str(&escape(to));
    }
    s.push_str("'>");
    s
}

/// An IQ result for `iq` with an optional payload.
pub fn iq_result(iq: &Element, payload: Option<Element>) -> Element {
    let mut r = Element::new("iq", ns::CLIENT).attr("type", "result");
    if let Some(id) = iq.get_attr("id") {
        r.set_attr("id", id);
    }
    if let Some(to) = iq.get_attr("to") {
        r.set_attr("from", to);
    }
    if let Some(from) = iq.get_attr("from") {
        r.set_attr("to", from);
    }
    if let Some(p) = payload {
        r = r.child(p);
    }
    r
}

/// Check an IQ's shape (RFC 6120 §8.2.3): an `id`, a `type`, and for get/set exactly one
/// child element. Returns the payload of a get/set.
pub fn iq_payload(iq: &Element) -> Result<Option<&Element>, StanzaError> {
    if iq.get_attr("id").is_none() {
        return Err(StanzaError::new(Condition::BadRequest).with_text("iq without id"));
    }
    match iq.get_attr("type") {
        Some("get") | Some("set") => {
            let mut it = iq.elements();
            match (it.next(), it.next()) {
                (Some(p), None) => Ok(Some(p)),
                _ => Err(StanzaError::new(Condition::BadRequest)
                    .with_text("iq get/set needs exactly one child")),
            }
        }
        Some("result") | Some("error") => Ok(None),
        _ => Err(StanzaError::new(Condition::BadRequest).with_text("invalid iq type")),
    }
}

/// A time as XEP-0082 DateTime in UTC with milliseconds (`2026-12-07T14:15:16.123Z`), as
/// delays (XEP-0203) and entity time (XEP-0202) carry it; `None` outside chrono's range.
pub fn xep0082(ms_since_epoch: u64) -> Option<String> {
    let t = chrono::DateTime::from_timestamp_millis(i64::try_from(ms_since_epoch).ok()?)?;
    Some(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// A random identifier (stream ids, generated resources, SCRAM nonces): `n` bytes, base64url.
pub fn random_id(n: usize) -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut b = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jids_are_normalised_to_a_fixed_point() {
        // The fuzzer's input: one round of nameprep is not enough for U+03F9.
        for input in ["DϹ.L", "juliet@DϹ.L/r", "JULIET@Example.COM/Balcony"] {
            if let Ok(j) = jid(input) {
                assert_eq!(jid(j.as_str()).unwrap(), j, "{input}");
            }
        }
        assert_eq!(
            jid("JULIET@Example.COM/Balcony").unwrap().as_str(),
            "juliet@example.com/Balcony"
        );
    }
}
