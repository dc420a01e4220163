//! External components (XEP-0114, "Jabber Component Protocol"): a gateway or bot connects to
//! the component port over plain TCP (keep it on loopback or a private network), opens a
//! `jabber:component:accept` stream to the domain it serves, and proves the shared secret of
//! `[[components]]` with `<handshake>` = hex SHA-1(stream id + secret). This file runs that
//! handshake; the stream afterwards is the `Component` actor's (`actors/component.rs`).
//!
//! Errors are the XEP's and RFC 6120's: `host-unknown` for a domain that is not a component
//! of this listener, `not-authorized` for a wrong secret (compared in constant time),
//! `conflict` when the domain is already connected, `invalid-namespace` and the parser's
//! conditions for a broken stream, `connection-timeout` when the handshake takes too long.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use sha1::{Digest, Sha1};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::login::Shutdown;
use crate::shared::Shared;
use crate::tls::{next_bounded, parse_error_condition};
use crate::xml::{escape, Element, StreamEvent, XmlReader};
use crate::xmpp::{ns, random_id, StreamError};

/// The stream namespace of XEP-0114.
pub const NS_ACCEPT: &str = "jabber:component:accept";

/// The component's side of the stream.
pub type ComponentReader = XmlReader<OwnedReadHalf>;

/// The domains connected now: one stream per domain.
#[derive(Debug, Clone, Default)]
pub struct Connected(Arc<Mutex<HashSet<String>>>);

/// A domain held by one stream; dropping it frees the domain.
#[derive(Debug)]
pub struct Claim {
    domain: String,
    set: Connected,
}

impl Connected {
    /// Hold `domain` unless another stream holds it.
    pub fn claim(&self, domain: &str) -> Option<Claim> {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        set.insert(domain.to_owned()).then(|| Claim {
            domain: domain.to_owned(),
            set: self.clone(),
        })
    }

    /// Is `domain` connected now?
    pub fn is_connected(&self, domain: &str) -> bool {
        let set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        set.contains(domain)
    }

    /// How many components are connected now.
    pub fn count(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Claim {
    /// The domain held.
    pub fn domain(&self) -> &str {
        &self.domain
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut set = self.set.0.lock().unwrap_or_else(|e| e.into_inner());
        set.remove(&self.domain);
    }
}

/// The components one listener admits: domain -> secret.
pub type Admitted = Arc<HashMap<String, String>>;

/// The components that connect on `addr`: those with `listen = addr`, and on the shared
/// `listen.components` port those without a listener of their own.
pub fn admitted_on(cfg: &crate::config::Config, addr: Option<std::net::SocketAddr>) -> Admitted {
    Arc::new(
        cfg.components
            .iter()
            .filter(|c| c.listen == addr)
            .map(|c| (c.domain.clone(), c.secret.clone()))
            .collect(),
    )
}

/// An authenticated component stream.
pub struct Accepted {
    pub reader: ComponentReader,
    pub writer: OwnedWriteHalf,
    /// The domain, held for as long as the stream lives.
    pub claim: Claim,
}

/// The handshake digest for stream `id` and `secret`, lower-case hex (XEP-0114 §3).
pub fn digest(id: &str, secret: &str) -> String {
    let mut h = Sha1::new();
    h.update(id.as_bytes());
    h.update(secret.as_bytes());
    h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}

/// Does the component's `<handshake>` text match? Constant time in the digest's bytes.
pub fn handshake_matches(text: &str, id: &str, secret: &str) -> bool {
    let given = text.trim().to_ascii_lowercase();
    let want = digest(id, secret);
    given.len() == want.len() && openssl::memcmp::eq(given.as_bytes(), want.as_bytes())
}

/// Our stream header for `domain`.
fn header(domain: &str, id: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='{NS_ACCEPT}' xmlns:stream='{}' from='{}' id='{}'>",
        ns::STREAM,
        escape(domain),
        escape(id)
    )
}

/// The handshake's progress, for the errors it answers with.
struct Io<'a> {
    w: OwnedWriteHalf,
    header_sent: bool,
    domain: &'a str,
}

impl Io<'_> {
    /// Send `err` (after our header if not sent yet) and close.
    async fn fail(mut self, err: StreamError) -> StreamError {
        let mut out = String::new();
        if !self.header_sent {
            out.push_str(&header(self.domain, &random_id(12)));
        }
        out.push_str(&err.to_xml(None));
        let _ = self.w.write_all(out.as_bytes()).await;
        let _ = self.w.shutdown().await;
        err
    }
}

/// Run the handshake on an accepted connection, before `deadline` (or shutdown): the
/// component's header, our header, its `<handshake>` checked (the actor answers it with an
/// empty `<handshake/>` once the component is a service of the router).
pub async fn negotiate(
    shared: &Shared,
    tcp: TcpStream,
    admitted: &Admitted,
    mut shutdown: Shutdown,
    deadline: Instant,
) -> Result<Accepted, StreamError> {
    let (r, w) = tcp.into_split();
    let limits = crate::login::preauth_limits(&shared.config.limits);
    let mut reader = XmlReader::new(r, limits);
    let fallback = shared.config.default_host().to_owned();
    let mut io = Io {
        w,
        header_sent: false,
        domain: &fallback,
    };
    let domain = match read_header(&mut reader, deadline, &mut shutdown, admitted).await {
        Ok(d) => d,
        Err(e) => return Err(io.fail(e).await),
    };
    io.domain = &domain;
    let id = random_id(16);
    if io
        .w
        .write_all(header(&domain, &id).as_bytes())
        .await
        .is_err()
    {
        return Err(StreamError::ConnectionTimeout);
    }
    io.header_sent = true;
    let el = match next_element(&mut reader, deadline, &mut shutdown).await {
        Ok(el) => el,
        Err(e) => return Err(io.fail(e).await),
    };
    let secret = &admitted[&domain];
    if el.name != "handshake"
        || el.ns != NS_ACCEPT
        || !handshake_matches(&el.text_content(), &id, secret)
    {
        return Err(io.fail(StreamError::NotAuthorized).await);
    }
    let Some(claim) = shared.components.claim(&domain) else {
        return Err(io.fail(StreamError::Conflict).await);
    };
    // Our `<handshake/>` is the actor's to send, once the router knows the component: what
    // it is sent after the handshake must not bounce.
    reader.set_limits(crate::login::session_limits(&shared.config.limits));
    Ok(Accepted {
        reader,
        writer: io.w,
        claim,
    })
}

/// The component's stream header: the streams namespace with the `stream` prefix,
/// `jabber:component:accept`, and `to` one of the admitted domains.
async fn read_header(
    reader: &mut ComponentReader,
    deadline: Instant,
    shutdown: &mut Shutdown,
    admitted: &Admitted,
) -> Result<String, StreamError> {
    let h = match next_bounded(reader, deadline, shutdown).await? {
        Ok(StreamEvent::Header(h)) => h,
        Ok(_) => return Err(StreamError::NotWellFormed),
        Err(e) => return Err(parse_error_condition(&e).unwrap_or(StreamError::NotWellFormed)),
    };
    if h.name != "stream" || h.ns != ns::STREAM || h.default_ns != NS_ACCEPT {
        return Err(StreamError::InvalidNamespace);
    }
    if h.prefix != "stream" {
        return Err(StreamError::BadNamespacePrefix);
    }
    let to = h.attrs.get("to").map(|t| t.to_ascii_lowercase());
    match to {
        Some(d) if admitted.contains_key(&d) => Ok(d),
        Some(_) => Err(StreamError::HostUnknown),
        None => Err(StreamError::ImproperAddressing),
    }
}

/// The next element of the stream.
async fn next_element(
    reader: &mut ComponentReader,
    deadline: Instant,
    shutdown: &mut Shutdown,
) -> Result<Element, StreamError> {
    match next_bounded(reader, deadline, shutdown).await? {
        Ok(StreamEvent::Element(el)) => Ok(el),
        Ok(_) => Err(StreamError::NotWellFormed),
        Err(e) => Err(parse_error_condition(&e).unwrap_or(StreamError::ConnectionTimeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_sha1_of_id_and_secret() {
        // SHA-1 of "3BF96D32secret" (Python's hashlib agrees).
        assert_eq!(
            digest("3BF96D32", "secret"),
            "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136"
        );
        assert!(handshake_matches(
            " B09EA9B3B7F586BE8A08D0A3DD7466F110AEB136 ",
            "3BF96D32",
            "secret"
        ));
        assert!(!handshake_matches("27d8", "3BF96D32", "secret"));
        assert!(!handshake_matches("", "3BF96D32", "secret"));
    }

    #[test]
    fn one_stream_per_domain() {
        let c = Connected::default();
        let a = c.claim("irc.a.test").expect("free");
        assert!(c.claim("irc.a.test").is_none());
        assert!(c.is_connected("irc.a.test") && c.count() == 1);
        drop(a);
        assert!(c.claim("irc.a.test").is_some());
    }
}
