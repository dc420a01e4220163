//! Namespace URIs used by the server, one constant each.

pub const CLIENT: &str = "jabber:client";
pub const SERVER: &str = "jabber:server";
pub const STREAM: &str = "http://etherx.jabber.org/streams";
pub const STREAMS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
pub const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub const SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// XEP-0440: SASL Channel-Binding Type Capability.
pub const SASL_CB: &str = "urn:xmpp:sasl-cb:0";
/// XEP-0478: Stream Limits Advertisement.
pub const STREAM_LIMITS: &str = "urn:xmpp:stream-limits:0";
/// XEP-0077: In-Band Registration (IQ payload).
pub const REGISTER: &str = "jabber:iq:register";
/// XEP-0077: In-Band Registration (stream feature).
pub const REGISTER_FEATURE: &str = "http://jabber.org/features/iq-register";
/// XEP-0004: Data Forms.
pub const DATA_FORMS: &str = "jabber:x:data";
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
pub const PING: &str = "urn:xmpp:ping";
pub const VERSION: &str = "jabber:iq:version";
pub const TIME: &str = "urn:xmpp:time";
/// RFC 6121 rosters.
pub const ROSTER: &str = "jabber:iq:roster";
/// XEP-0191: Blocking Command.
pub const BLOCKING: &str = "urn:xmpp:blocking";
