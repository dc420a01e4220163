//! Server-to-server federation (RFC 6120): what both directions of a link share.
//!
//! - [`outgoing`]: connect to another server (static route or DNS, [`resolve`]), STARTTLS or
//!   direct TLS, then authenticate with SASL EXTERNAL (XEP-0178) or Server Dialback
//!   (XEP-0220); also the short connection that verifies a dialback key for an incoming link.
//! - [`incoming`]: accept a stream from another server up to the point where it may
//!   authenticate domains; the `S2sIn` actor (`actors/s2s_in.rs`) takes it from there.
//! - [`dialback`]: dialback keys from the server secret; [`pki`]: certificate validation.
//!
//! Stanzas inside kleiber are in `jabber:client`; they are moved to `jabber:server` on the way
//! out and back on the way in ([`set_ns`]). The actors that own links are in `actors/s2s.rs`.

pub mod dialback;
pub mod incoming;
pub mod outgoing;
pub mod pki;
pub mod resolve;

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use crate::shared::Shared;
use crate::tls::TlsStream;
use crate::xml::{escape, Element, Node, ReaderLimits, XmlReader};
use crate::xmpp::{ns, StreamError};

/// XEP-0220: the dialback namespace (`db:` prefix on the stream).
pub const DIALBACK: &str = "jabber:server:dialback";
/// XEP-0220: the dialback stream feature.
pub const DIALBACK_FEATURE: &str = "urn:xmpp:features:dialback";

/// What every link needs: trusted CAs, the dialback secret, the route table.
pub struct S2sContext {
    pub pki: pki::Pki,
    pub secret: Vec<u8>,
    pub resolver: resolve::Resolver,
}

impl S2sContext {
    /// Build from the configuration; the secret comes from the store.
    pub fn new(shared: &Shared) -> Result<S2sContext, String> {
        let cfg = &shared.config.s2s;
        let pki = pki::Pki::new(cfg.ca_file.as_deref())
            .map_err(|e| format!("config error: s2s.ca_file: {e}"))?;
        let secret = shared
            .store
            .dialback_secret()
            .map_err(|e| format!("dialback secret: {e}"))?;
        Ok(S2sContext {
            pki,
            secret,
            resolver: resolve::Resolver::new(cfg),
        })
    }
}

/// How a link authenticated its domain (for the log and `kleiber status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// SASL EXTERNAL with a certificate valid for the domain (XEP-0178).
    SaslExternal,
    /// Dialback accepted because the certificate is valid for the domain (XEP-0344).
    DialbackCertificate,
    /// Dialback verified through the domain's authoritative server (XEP-0220).
    Dialback,
}

impl std::fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthMethod::SaslExternal => "SASL EXTERNAL",
            AuthMethod::DialbackCertificate => "dialback with certificate",
            AuthMethod::Dialback => "dialback",
        })
    }
}

/// A server-to-server transport: TLS, or plain TCP where `s2s.require_encryption = false`.
pub enum S2sStream {
    Tls(Box<TlsStream>),
    Plain(TcpStream),
}

impl S2sStream {
    /// The TLS session, if encrypted.
    pub fn ssl(&self) -> Option<&openssl::ssl::SslRef> {
        match self {
            S2sStream::Tls(t) => Some(t.ssl()),
            S2sStream::Plain(_) => None,
        }
    }
}

impl AsyncRead for S2sStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            S2sStream::Tls(t) => Pin::new(t.as_mut()).poll_read(cx, buf),
            S2sStream::Plain(t) => Pin::new(t).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for S2sStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            S2sStream::Tls(t) => Pin::new(t.as_mut()).poll_write(cx, buf),
            S2sStream::Plain(t) => Pin::new(t).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            S2sStream::Tls(t) => Pin::new(t.as_mut()).poll_flush(cx),
            S2sStream::Plain(t) => Pin::new(t).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            S2sStream::Tls(t) => Pin::new(t.as_mut()).poll_shutdown(cx),
            S2sStream::Plain(t) => Pin::new(t).poll_shutdown(cx),
        }
    }
}

/// The read side of a link.
pub type S2sReader = XmlReader<ReadHalf<S2sStream>>;
/// The write side of a link.
pub type S2sWriter = WriteHalf<S2sStream>;

/// Reader limits on server-to-server streams: the client stanza limit (peers relay their
/// users' stanzas).
pub fn reader_limits(shared: &Shared) -> ReaderLimits {
    ReaderLimits {
        max_stanza: shared.config.limits.max_stanza_bytes,
        ..ReaderLimits::default()
    }
}

/// An opening `jabber:server` stream header with the dialback prefix declared.
pub fn header(from: &str, to: Option<&str>, id: Option<&str>) -> String {
    let mut s = String::with_capacity(256);
    s.push_str("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' version='1.0' from='");
    s.push_str(&escape(from));
    if let Some(to) = to {
        s.push_str("' to='");
        s.push_str(&escape(to));
    }
    if let Some(id) = id {
        s.push_str("' id='");
        s.push_str(&escape(id));
    }
    s.push_str("'>");
    s
}

/// Check a peer's stream header: stream namespace and prefix, `jabber:server`, version 1.x.
/// Returns the `to` and `from` attributes (lower-cased).
pub fn check_header(
    h: &crate::xml::StreamHeader,
) -> Result<(Option<String>, Option<String>), StreamError> {
    if h.name != "stream" || h.ns != ns::STREAM {
        return Err(StreamError::InvalidNamespace);
    }
    if h.prefix != "stream" {
        return Err(StreamError::BadNamespacePrefix);
    }
    if h.default_ns != ns::SERVER {
        return Err(StreamError::InvalidNamespace);
    }
    let major = h
        .attrs
        .get("version")
        .map(|v| v.split('.').next().unwrap_or("").trim_start_matches('0') == "1");
    if major != Some(true) {
        return Err(StreamError::UnsupportedVersion);
    }
    let get = |k: &str| h.attrs.get(k).map(|v| v.to_ascii_lowercase());
    Ok((get("to"), get("from")))
}

/// Move an element and its descendants from namespace `from` to `to` (`jabber:client` <->
/// `jabber:server` at the federation boundary).
pub fn set_ns(el: &mut Element, from: &str, to: &str) {
    if el.ns == from {
        el.ns = to.to_owned();
    }
    for c in &mut el.children {
        if let Node::Element(e) = c {
            set_ns(e, from, to);
        }
    }
}

/// The domain part of a JID string (without node and resource).
pub fn domain_of(jid: &str) -> &str {
    crate::xmpp::domain_part(jid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_move_at_the_boundary() {
        let mut m = Element::new("message", ns::CLIENT)
            .child(Element::new("body", ns::CLIENT).text("x"))
            .child(Element::new("encrypted", "eu.siacs.conversations.axolotl"));
        set_ns(&mut m, ns::CLIENT, ns::SERVER);
        assert_eq!(
            m.to_xml(ns::SERVER),
            "<message><body>x</body><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>"
        );
    }

    #[test]
    fn domains() {
        assert_eq!(domain_of("a@b.test/r@x"), "b.test");
        assert_eq!(domain_of("b.test"), "b.test");
        assert_eq!(domain_of("b.test/r"), "b.test");
    }
}
