//! What travels in a BOSH request or response: the client's `<body/>` wrapper read into a
//! [`Request`] (never trusted: parsed with the stream's restricted-XML reader, every
//! attribute checked), and the server's `<body/>` wrappers written out.

use crate::xml::element::escape_into;
use crate::xml::{Element, Node};
use crate::xmpp::ns;

/// XEP-0124: the `<body/>` wrapper's namespace.
pub const NS_HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
/// XEP-0206: the `xmpp:` attributes' namespace.
pub const NS_XBOSH: &str = "urn:xmpp:xbosh";
/// The protocol version the server speaks (XEP-0124 1.11).
pub const VERSION: (u32, u32) = (1, 11);

/// A terminal binding condition (XEP-0124 §17.2) the server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    BadRequest,
    HostUnknown,
    ItemNotFound,
    PolicyViolation,
    RemoteConnectionFailed,
    RemoteStreamError,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::BadRequest => "bad-request",
            Condition::HostUnknown => "host-unknown",
            Condition::ItemNotFound => "item-not-found",
            Condition::PolicyViolation => "policy-violation",
            Condition::RemoteConnectionFailed => "remote-connection-failed",
            Condition::RemoteStreamError => "remote-stream-error",
        }
    }
}

/// What a request asks for besides passing its payload on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Payload only (possibly none: an empty poll).
    Normal,
    /// XEP-0206 `xmpp:restart='true'`: a new stream header, after SASL success.
    Restart,
    /// `type='terminate'`: the payload, then the end of the stream.
    Terminate,
    /// `pause='n'`: no requests for up to `n` seconds.
    Pause(u64),
}

/// One client `<body/>`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub rid: u64,
    /// `None` in a session creation request.
    pub sid: Option<String>,
    pub kind: Kind,
    /// The payload, serialised for a stream whose default namespace is `jabber:client`.
    pub payload: Vec<String>,
    /// Session creation: `to`, `wait`, `hold`, `ver`, `xml:lang`.
    pub to: Option<String>,
    pub wait: Option<u64>,
    pub hold: Option<u64>,
    pub ver: Option<(u32, u32)>,
    pub lang: Option<String>,
}

/// XEP-0124 §7: rids are below 2^53.
const MAX_RID: u64 = (1 << 53) - 1;

/// Read a request body. Anything malformed, in the wrong namespace or with attributes out
/// of range is `bad-request`.
pub fn parse_request(bytes: &[u8]) -> Result<Request, Condition> {
    let text = std::str::from_utf8(bytes).map_err(|_| Condition::BadRequest)?;
    let text = strip_declaration(text.trim_start());
    let body = crate::xml::parse_element(text).map_err(|_| Condition::BadRequest)?;
    if body.name != "body" || body.ns != NS_HTTPBIND {
        return Err(Condition::BadRequest);
    }
    let number = |name: &str| -> Result<Option<u64>, Condition> {
        body.get_attr(name)
            .map(|v| v.trim().parse::<u64>().map_err(|_| Condition::BadRequest))
            .transpose()
    };
    let rid = number("rid")?
        .filter(|r| *r <= MAX_RID)
        .ok_or(Condition::BadRequest)?;
    let restart = body
        .get_attr(&format!("{{{NS_XBOSH}}}restart"))
        .is_some_and(|v| v == "true" || v == "1");
    let kind = if body.get_attr("type") == Some("terminate") {
        Kind::Terminate
    } else if restart {
        Kind::Restart
    } else if let Some(p) = number("pause")? {
        Kind::Pause(p)
    } else {
        Kind::Normal
    };
    let ver = match body.get_attr("ver") {
        Some(v) => Some(parse_version(v).ok_or(Condition::BadRequest)?),
        None => None,
    };
    Ok(Request {
        rid,
        sid: body.get_attr("sid").map(str::to_owned),
        kind,
        to: body.get_attr("to").map(str::to_owned),
        wait: number("wait")?,
        hold: number("hold")?,
        ver,
        lang: body.get_attr("xml:lang").map(str::to_owned),
        payload: payload_of(body),
    })
}

/// Without a leading `<?xml ...?>` declaration (which some clients send).
fn strip_declaration(text: &str) -> &str {
    match text.strip_prefix("<?xml") {
        Some(rest) => rest.find("?>").map_or(text, |i| rest[i + 2..].trim_start()),
        None => text,
    }
}

/// `major.minor`.
fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The body's child elements as stanzas of a `jabber:client` stream. Elements that only
/// inherited the wrapper's namespace are `jabber:client` ones (XEP-0206 §10); text between
/// them is dropped.
fn payload_of(body: Element) -> Vec<String> {
    body.children
        .into_iter()
        .filter_map(|n| match n {
            Node::Element(mut e) => {
                into_client_namespace(&mut e);
                Some(e.to_xml(ns::CLIENT))
            }
            Node::Text(_) => None,
        })
        .collect()
}

fn into_client_namespace(e: &mut Element) {
    if e.ns == NS_HTTPBIND {
        e.ns = ns::CLIENT.to_owned();
    }
    for c in &mut e.children {
        if let Node::Element(c) = c {
            into_client_namespace(c);
        }
    }
}

/// The opening of a response `<body>` with `attrs` (already escaped by [`attr`]).
fn open(attrs: &str) -> String {
    format!("<body xmlns='{NS_HTTPBIND}'{attrs}")
}

/// ` key='value'`, escaped.
pub fn attr(key: &str, value: &str) -> String {
    let mut s = format!(" {key}='");
    escape_into(&mut s, value, true);
    s.push('\'');
    s
}

/// A response body with `attrs` and the `payload` elements (already standalone).
pub fn body(attrs: &str, payload: &[String]) -> String {
    let mut s = open(attrs);
    if payload.is_empty() {
        s.push_str("/>");
        return s;
    }
    s.push('>');
    for p in payload {
        s.push_str(p);
    }
    s.push_str("</body>");
    s
}

/// An empty response.
pub fn empty() -> String {
    body("", &[])
}

/// A `type='terminate'` response, with a condition when it is an error, and the last
/// `payload` (for `remote-stream-error`, the stream error).
pub fn terminate(condition: Option<Condition>, payload: &[String]) -> String {
    let mut attrs = attr("type", "terminate");
    if let Some(c) = condition {
        attrs.push_str(&attr("condition", c.as_str()));
    }
    if condition == Some(Condition::RemoteStreamError) {
        attrs.push_str(&attr("xmlns:stream", ns::STREAM));
    }
    body(&attrs, payload)
}

/// The version to answer a client asking for `asked` with: the lower of both.
pub fn version_for(asked: Option<(u32, u32)>) -> String {
    let (major, minor) = asked.map_or(VERSION, |a| a.min(VERSION));
    format!("{major}.{minor}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creation_request() {
        let r = parse_request(
            br#"<?xml version="1.0"?> <body content='text/xml; charset=utf-8' hold='1' rid='1573741820' to='localhost' ver='1.6' wait='60' xml:lang='en' xmpp:version='1.0' xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>"#,
        )
        .unwrap();
        assert_eq!(r.rid, 1573741820);
        assert_eq!(r.sid, None);
        assert_eq!(r.to.as_deref(), Some("localhost"));
        assert_eq!((r.wait, r.hold, r.ver), (Some(60), Some(1), Some((1, 6))));
        assert_eq!(r.lang.as_deref(), Some("en"));
        assert_eq!(r.kind, Kind::Normal);
        assert!(r.payload.is_empty());
        assert_eq!(version_for(r.ver), "1.6");
        assert_eq!(version_for(Some((2, 0))), "1.11");
    }

    #[test]
    fn payload_takes_the_client_namespace() {
        let r = parse_request(
            b"<body rid='2' sid='s' xmlns='http://jabber.org/protocol/httpbind'>\n<message to='a@b'><body>hi &amp; bye</body></message><auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth><iq xmlns='jabber:client' type='get' id='1'/></body>",
        )
        .unwrap();
        assert_eq!(
            r.payload,
            vec![
                "<message to='a@b'><body>hi &amp; bye</body></message>",
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>",
                "<iq type='get' id='1'/>",
            ]
        );
    }

    #[test]
    fn restart_terminate_pause() {
        let kind = |s: &str| parse_request(s.as_bytes()).map(|r| r.kind);
        assert_eq!(
            kind("<body rid='3' sid='s' xmpp:restart='true' xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>"),
            Ok(Kind::Restart)
        );
        assert_eq!(
            kind("<body rid='3' sid='s' type='terminate' xmlns='http://jabber.org/protocol/httpbind'><presence type='unavailable'/></body>"),
            Ok(Kind::Terminate)
        );
        assert_eq!(
            kind("<body rid='3' sid='s' pause='30' xmlns='http://jabber.org/protocol/httpbind'/>"),
            Ok(Kind::Pause(30))
        );
        // In another namespace, `restart` is not XEP-0206's.
        assert_eq!(
            kind("<body rid='3' sid='s' restart='true' xmlns='http://jabber.org/protocol/httpbind'/>"),
            Ok(Kind::Normal)
        );
    }

    #[test]
    fn malformed_requests_are_bad_requests() {
        for bad in [
            "",
            "<body",
            "not xml",
            "<body rid='1'/>",
            "<body xmlns='http://jabber.org/protocol/httpbind'/>",
            "<body rid='-1' xmlns='http://jabber.org/protocol/httpbind'/>",
            "<body rid='9007199254740992' xmlns='http://jabber.org/protocol/httpbind'/>",
            "<body rid='1' wait='x' xmlns='http://jabber.org/protocol/httpbind'/>",
            "<body rid='1' ver='one' xmlns='http://jabber.org/protocol/httpbind'/>",
            "<x rid='1' xmlns='http://jabber.org/protocol/httpbind'/>",
            "<body rid='1' xmlns='http://jabber.org/protocol/httpbind'><a></b></body>",
            "<!DOCTYPE x [<!ENTITY a 'b'>]><body rid='1' xmlns='http://jabber.org/protocol/httpbind'/>",
        ] {
            assert_eq!(
                parse_request(bad.as_bytes()),
                Err(Condition::BadRequest),
                "{bad}"
            );
        }
        assert_eq!(parse_request(b"\xff<body/>"), Err(Condition::BadRequest));
    }

    /// Truncated and damaged bodies never panic; whatever payload comes out is XML the
    /// session's reader accepts.
    #[test]
    fn damaged_bodies_are_handled() {
        let good = "<body rid='7' sid='s' xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' xmpp:restart='true'><message to='a@b' xml:lang='de'><body>x &lt; y</body><x xmlns='urn:x' a='1'/></message></body>";
        let check = |bytes: &[u8]| {
            if let Ok(r) = parse_request(bytes) {
                for p in r.payload {
                    crate::xml::parse_element(&p).unwrap_or_else(|e| panic!("{p}: {e:?}"));
                }
            }
        };
        for end in 0..good.len() {
            check(&good.as_bytes()[..end]);
        }
        for i in 0..good.len() {
            for b in [b'<', b'>', b'\'', b'"', b'&', b'/', b':', 0, 0xff] {
                let mut bytes = good.as_bytes().to_vec();
                bytes[i] = b;
                check(&bytes);
            }
        }
    }

    #[test]
    fn responses() {
        assert_eq!(
            empty(),
            "<body xmlns='http://jabber.org/protocol/httpbind'/>"
        );
        assert_eq!(
            terminate(Some(Condition::ItemNotFound), &[]),
            "<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='item-not-found'/>"
        );
        assert_eq!(
            body(&attr("sid", "a'b"), &["<iq xmlns='jabber:client'/>".into()]),
            "<body xmlns='http://jabber.org/protocol/httpbind' sid='a&apos;b'><iq xmlns='jabber:client'/></body>"
        );
    }
}
