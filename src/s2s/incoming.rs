//! Incoming server-to-server streams, from the first header to the point where the peer may
//! authenticate domains: STARTTLS (required unless `s2s.require_encryption = false`), the
//! peer's certificate, and SASL EXTERNAL (XEP-0178) when that certificate validates for the
//! domain it claims. Dialback and stanzas are the `S2sIn` actor's (`actors/s2s_in.rs`).

use base64::Engine;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::pki::PeerCert;
use super::{
    check_header, header, reader_limits, AuthMethod, S2sContext, S2sReader, S2sStream, S2sWriter,
    DIALBACK_FEATURE,
};
use crate::shared::Shared;
use crate::tls::{next_bounded, parse_error_condition};
use crate::xml::{Element, StreamEvent, XmlReader};
use crate::xmpp::{ns, random_id, StreamError};

/// A stream ready for dialback and stanzas.
pub struct Accepted {
    pub reader: S2sReader,
    pub writer: S2sWriter,
    /// Our id of the current stream (dialback keys are bound to it).
    pub stream_id: String,
    /// The local host the peer addressed.
    pub local: String,
    /// A domain authenticated with SASL EXTERNAL.
    pub authenticated: Option<(String, AuthMethod)>,
    /// The peer's certificate (checked again for each domain it claims by dialback).
    pub peer_cert: Option<PeerCert>,
    /// The first element after the features, for the actor to handle.
    pub first: Option<Element>,
}

/// How an incoming stream ended before it was handed on.
#[derive(Debug)]
pub enum AcceptEnd {
    /// The peer went away or the transport failed.
    Closed,
    /// A stream error was sent.
    StreamError(StreamError),
}

/// Drive an accepted connection to an encrypted stream with features sent, before `deadline`.
pub async fn negotiate(
    shared: &Shared,
    cx: &S2sContext,
    tcp: TcpStream,
    direct_tls: bool,
    deadline: Instant,
) -> Result<Accepted, AcceptEnd> {
    let stream = if direct_tls {
        S2sStream::Tls(Box::new(accept_tls(shared, tcp, deadline).await?))
    } else {
        S2sStream::Plain(tcp)
    };
    let s2s = &shared.config.s2s;
    let mut peer_cert = stream.ssl().and_then(PeerCert::of);
    let mut tls = stream.ssl().is_some();
    let (r, w) = tokio::io::split(stream);
    let mut reader = XmlReader::new(r, reader_limits(shared));
    let mut w = w;
    let mut authenticated: Option<(String, AuthMethod)> = None;
    loop {
        let mut io = Io {
            shared,
            deadline,
            header_sent: false,
            host: shared.config.default_host().to_owned(),
        };
        let (local, from) = io.open(&mut reader, &mut w).await?;
        let id = random_id(16);
        let mut out = header(&local, from.as_deref(), Some(&id));
        io.header_sent = true;
        out.push_str("<stream:features>");
        if !tls {
            if let Some(first) = offer_starttls(&mut io, &mut reader, &mut w, out).await? {
                return Ok(Accepted {
                    reader,
                    writer: w,
                    stream_id: id,
                    local,
                    authenticated: None,
                    peer_cert: None,
                    first: Some(first),
                });
            }
            (reader, w, peer_cert) = upgrade_tls(shared, reader, w, deadline).await?;
            tls = true;
            continue;
        }
        if let Some(done) = authenticated {
            // The stream restarted after SASL: nothing more to negotiate.
            out.push_str("</stream:features>");
            send(&mut w, &out).await?;
            return Ok(Accepted {
                reader,
                writer: w,
                stream_id: id,
                local,
                authenticated: Some(done),
                peer_cert,
                first: None,
            });
        }
        // A domain served here is never authenticated from outside, whatever the certificate
        // says: whoever hosts the domain's website may hold one valid for it.
        let cert_ok = |domain: &str| {
            !shared.is_local(domain)
                && peer_cert
                    .as_ref()
                    .is_some_and(|c| cx.pki.valid_for(c, domain))
        };
        if from.as_deref().is_some_and(cert_ok) {
            out.push_str(&format!(
                "<mechanisms xmlns='{}'><mechanism>EXTERNAL</mechanism></mechanisms>",
                ns::SASL
            ));
        }
        if !s2s.require_valid_certificates {
            out.push_str(&dialback_feature());
        }
        out.push_str("</stream:features>");
        send(&mut w, &out).await?;
        match sasl_external(&mut io, &mut reader, &mut w, from.as_deref(), &cert_ok).await? {
            Ok(domain) => authenticated = Some((domain, AuthMethod::SaslExternal)),
            Err(first) => {
                return Ok(Accepted {
                    reader,
                    writer: w,
                    stream_id: id,
                    local,
                    authenticated: None,
                    peer_cert,
                    first: Some(first),
                })
            }
        }
    }
}

/// On a plaintext stream: finish the features `out` with STARTTLS (and dialback when
/// encryption is optional), then read the peer's answer. `Ok(None)` after `<proceed/>` was
/// sent; `Ok(Some(el))` when the peer goes on without TLS where that is allowed.
async fn offer_starttls(
    io: &mut Io<'_>,
    reader: &mut S2sReader,
    w: &mut S2sWriter,
    mut out: String,
) -> Result<Option<Element>, AcceptEnd> {
    let s2s = &io.shared.config.s2s;
    out.push_str(&format!("<starttls xmlns='{}'>", ns::TLS));
    if s2s.require_encryption {
        out.push_str("<required/>");
    }
    out.push_str("</starttls>");
    if !s2s.require_encryption {
        out.push_str(&dialback_feature());
    }
    out.push_str("</stream:features>");
    send(w, &out).await?;
    let el = match io.next(reader, w).await? {
        StreamEvent::Element(el) => el,
        _ => return Err(io.fail(w, StreamError::NotWellFormed).await),
    };
    if !el.is("starttls", ns::TLS) {
        if s2s.require_encryption {
            return Err(io.fail(w, StreamError::PolicyViolation).await);
        }
        return Ok(Some(el));
    }
    send(w, &format!("<proceed xmlns='{}'/>", ns::TLS)).await?;
    Ok(None)
}

/// The TLS handshake after `<proceed/>`, before `deadline`: the new reader and writer, and
/// the peer's certificate.
async fn upgrade_tls(
    shared: &Shared,
    reader: S2sReader,
    w: S2sWriter,
    deadline: Instant,
) -> Result<(S2sReader, S2sWriter, Option<PeerCert>), AcceptEnd> {
    // Plaintext pipelined after <starttls/> is dropped with the reader.
    let S2sStream::Plain(tcp) = reader.into_inner().unsplit(w) else {
        unreachable!("plain before STARTTLS");
    };
    let t = accept_tls(shared, tcp, deadline).await?;
    let peer_cert = PeerCert::of(t.ssl());
    let (r, w) = tokio::io::split(S2sStream::Tls(Box::new(t)));
    Ok((XmlReader::new(r, reader_limits(shared)), w, peer_cert))
}

/// The server side of a TLS handshake, before `deadline`.
async fn accept_tls(
    shared: &Shared,
    tcp: TcpStream,
    deadline: Instant,
) -> Result<crate::tls::TlsStream, AcceptEnd> {
    tokio::time::timeout_at(deadline, shared.tls.accept_server(tcp))
        .await
        .map_err(|_| AcceptEnd::Closed)?
        .map_err(|_| AcceptEnd::Closed)
}

/// SASL EXTERNAL, possibly after failed attempts: `Ok(domain)` once `<success/>` was sent
/// for a domain `cert_ok` accepts; `Err(el)` with the first other element, which is the
/// actor's.
async fn sasl_external(
    io: &mut Io<'_>,
    reader: &mut S2sReader,
    w: &mut S2sWriter,
    from: Option<&str>,
    cert_ok: &impl Fn(&str) -> bool,
) -> Result<Result<String, Element>, AcceptEnd> {
    loop {
        let el = match io.next(reader, w).await? {
            StreamEvent::Element(el) => el,
            _ => return Err(io.fail(w, StreamError::NotWellFormed).await),
        };
        if el.ns != ns::SASL {
            return Ok(Err(el));
        }
        let claimed = external_authzid(&el, from);
        match claimed.filter(|d| cert_ok(d)) {
            Some(domain) => {
                // Reset before the peer can see <success/>: its new header must reach a
                // fresh parser.
                reader.reset();
                send(w, &format!("<success xmlns='{}'/>", ns::SASL)).await?;
                return Ok(Ok(domain));
            }
            None => {
                send(
                    w,
                    &format!("<failure xmlns='{}'><not-authorized/></failure>", ns::SASL),
                )
                .await?;
            }
        }
    }
}

/// The domain a SASL EXTERNAL `<auth/>` asks for: its authzid, or the stream's `from` when
/// empty (`=`). `None` for anything but a well-formed EXTERNAL request.
fn external_authzid(el: &Element, from: Option<&str>) -> Option<String> {
    if el.name != "auth" || el.get_attr("mechanism") != Some("EXTERNAL") {
        return None;
    }
    let text = el.text_content();
    let text = text.trim();
    if text.is_empty() || text == "=" {
        return from.map(str::to_owned);
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    let domain = String::from_utf8(raw).ok()?.to_ascii_lowercase();
    Some(domain)
}

fn dialback_feature() -> String {
    format!("<dialback xmlns='{DIALBACK_FEATURE}'><errors/></dialback>")
}

async fn send<W: tokio::io::AsyncWrite + Unpin>(w: &mut W, s: &str) -> Result<(), AcceptEnd> {
    w.write_all(s.as_bytes())
        .await
        .map_err(|_| AcceptEnd::Closed)
}

/// Reading with the handshake deadline, and failing with a stream error.
struct Io<'a> {
    shared: &'a Shared,
    deadline: Instant,
    header_sent: bool,
    host: String,
}

impl Io<'_> {
    /// Read the peer's stream header: the local host it addresses (which becomes `host`)
    /// and the domain it claims to be, if any.
    async fn open(
        &mut self,
        reader: &mut S2sReader,
        w: &mut S2sWriter,
    ) -> Result<(String, Option<String>), AcceptEnd> {
        let h = match self.next(reader, w).await? {
            StreamEvent::Header(h) => h,
            _ => return Err(self.fail(w, StreamError::NotWellFormed).await),
        };
        let (to, from) = match check_header(&h) {
            Ok(v) => v,
            Err(e) => return Err(self.fail(w, e).await),
        };
        let local = match to.filter(|t| self.shared.is_local(t)) {
            Some(l) => l,
            None => return Err(self.fail(w, StreamError::HostUnknown).await),
        };
        self.host = local.clone();
        Ok((local, from))
    }

    async fn next(
        &mut self,
        reader: &mut S2sReader,
        w: &mut S2sWriter,
    ) -> Result<StreamEvent, AcceptEnd> {
        let mut shutdown = self.shared.shutdown_signal();
        match next_bounded(reader, self.deadline, &mut shutdown).await {
            Err(cond) => Err(self.fail(w, cond).await),
            Ok(Ok(StreamEvent::End)) => {
                let _ = w.write_all(b"</stream:stream>").await;
                let _ = w.shutdown().await;
                Err(AcceptEnd::Closed)
            }
            Ok(Ok(ev)) => Ok(ev),
            Ok(Err(e)) => match parse_error_condition(&e) {
                Some(c) => Err(self.fail(w, c).await),
                None => Err(AcceptEnd::Closed),
            },
        }
    }

    async fn fail(&mut self, w: &mut S2sWriter, err: StreamError) -> AcceptEnd {
        let mut out = String::new();
        if !self.header_sent {
            out.push_str(&header(&self.host, None, Some(&random_id(16))));
        }
        out.push_str(&err.to_xml(None));
        let _ = w.write_all(out.as_bytes()).await;
        let _ = w.shutdown().await;
        AcceptEnd::StreamError(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authzid() {
        let auth = |t: &str| {
            Element::new("auth", ns::SASL)
                .attr("mechanism", "EXTERNAL")
                .text(t)
        };
        assert_eq!(
            external_authzid(&auth("="), Some("a.test")).as_deref(),
            Some("a.test")
        );
        assert_eq!(
            external_authzid(&auth("YS50ZXN0"), None).as_deref(),
            Some("a.test")
        );
        assert_eq!(external_authzid(&auth("!!"), Some("a.test")), None);
        let plain = Element::new("auth", ns::SASL).attr("mechanism", "PLAIN");
        assert_eq!(external_authzid(&plain, Some("a.test")), None);
    }
}
