//! Outgoing server-to-server streams: find the peer's server, connect, TLS (STARTTLS or
//! direct), then authenticate our domain with SASL EXTERNAL (XEP-0178) when the peer offers
//! it, else Server Dialback (XEP-0220). Also the short stream that asks a peer to verify a
//! dialback key it gave us ([`verify`]).
//!
//! Nothing here logs an address: errors name the domain and what failed.

use std::time::Duration;

use base64::Engine;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{
    check_header, dialback, header, pki::PeerCert, reader_limits, AuthMethod, S2sContext,
    S2sReader, S2sStream, S2sWriter, DIALBACK, DIALBACK_FEATURE,
};
use crate::shared::Shared;
use crate::xml::{escape, Element, StreamEvent, XmlReader};
use crate::xmpp::ns;

/// Why no link to a domain could be set up.
#[derive(Debug, Clone)]
pub enum OutError {
    /// No server found, none reachable, or it refused us (`remote-server-not-found`).
    NotFound(String),
    /// It took longer than `s2s.connect_timeout_secs` (`remote-server-timeout`).
    Timeout,
}

impl std::fmt::Display for OutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutError::NotFound(why) => f.write_str(why),
            OutError::Timeout => f.write_str("timed out"),
        }
    }
}

/// An authenticated outgoing stream, ready for stanzas from `local` to `remote`.
pub struct Link {
    pub reader: S2sReader,
    pub writer: S2sWriter,
    pub method: AuthMethod,
}

/// A stream opened (and encrypted) but not yet authenticated.
struct Opened {
    reader: S2sReader,
    writer: S2sWriter,
    /// The stream id the peer gave us (input to the dialback key).
    id: String,
    features: Element,
    tls: bool,
    /// The peer's certificate validates for its domain.
    cert_valid: bool,
}

/// Open an authenticated stream from our host `local` to `remote`.
pub async fn connect(
    shared: &Shared,
    cx: &S2sContext,
    local: &str,
    remote: &str,
) -> Result<Link, OutError> {
    let limit = Duration::from_secs(shared.config.s2s.connect_timeout_secs);
    tokio::time::timeout(limit, authenticate(shared, cx, local, remote))
        .await
        .map_err(|_| OutError::Timeout)?
}

/// Ask the authoritative server of `originating` whether `key` is the dialback key it sent
/// for our stream `stream_id` (we, `receiving`, are the receiving server).
pub async fn verify(
    shared: &Shared,
    cx: &S2sContext,
    receiving: &str,
    originating: &str,
    stream_id: &str,
    key: &str,
) -> Result<bool, OutError> {
    let limit = Duration::from_secs(shared.config.s2s.connect_timeout_secs);
    let run = async {
        let mut o = open(shared, cx, receiving, originating).await?;
        let ask = format!(
            "<db:verify from='{}' to='{}' id='{}'>{}</db:verify>",
            escape(receiving),
            escape(originating),
            escape(stream_id),
            escape(key)
        );
        write(&mut o.writer, &ask).await?;
        loop {
            let el = next_element(&mut o.reader).await?;
            if el.is("verify", DIALBACK) && el.get_attr("id") == Some(stream_id) {
                let _ = o.writer.write_all(b"</stream:stream>").await;
                let _ = o.writer.shutdown().await;
                return Ok(el.get_attr("type") == Some("valid"));
            }
        }
    };
    tokio::time::timeout(limit, run)
        .await
        .map_err(|_| OutError::Timeout)?
}

async fn authenticate(
    shared: &Shared,
    cx: &S2sContext,
    local: &str,
    remote: &str,
) -> Result<Link, OutError> {
    let mut o = open(shared, cx, local, remote).await?;
    let s2s = &shared.config.s2s;
    if s2s.require_valid_certificates && !o.cert_valid {
        return Err(OutError::NotFound(format!(
            "the certificate of {remote} does not validate"
        )));
    }
    let external = o
        .features
        .get_child("mechanisms", ns::SASL)
        .is_some_and(|m| {
            m.elements()
                .any(|c| c.name == "mechanism" && c.text_content().trim() == "EXTERNAL")
        });
    if o.tls && external {
        let authzid = base64::engine::general_purpose::STANDARD.encode(local);
        let auth = format!(
            "<auth xmlns='{}' mechanism='EXTERNAL'>{authzid}</auth>",
            ns::SASL
        );
        write(&mut o.writer, &auth).await?;
        let el = next_element(&mut o.reader).await?;
        if el.is("success", ns::SASL) {
            o.reader.reset();
            write(&mut o.writer, &header(local, Some(remote), None)).await?;
            read_open(&mut o.reader).await?;
            return Ok(Link {
                reader: o.reader,
                writer: o.writer,
                method: AuthMethod::SaslExternal,
            });
        }
        if !el.is("failure", ns::SASL) {
            return Err(OutError::NotFound("unexpected answer to SASL".into()));
        }
    }
    // Dialback: offered as a feature by current servers; older ones only declare the
    // namespace, so it is tried in any case unless the peer plainly offers something else.
    let offered = o.features.get_child("dialback", DIALBACK_FEATURE).is_some();
    if !offered && external {
        return Err(OutError::NotFound(format!(
            "{remote} did not accept our certificate and offers no dialback"
        )));
    }
    let key = dialback::key(&cx.secret, remote, local, &o.id);
    let result = format!(
        "<db:result from='{}' to='{}'>{key}</db:result>",
        escape(local),
        escape(remote)
    );
    write(&mut o.writer, &result).await?;
    loop {
        let el = next_element(&mut o.reader).await?;
        if !el.is("result", DIALBACK) || el.get_attr("from") != Some(remote) {
            continue;
        }
        return match el.get_attr("type") {
            Some("valid") => Ok(Link {
                reader: o.reader,
                writer: o.writer,
                method: if o.cert_valid {
                    AuthMethod::DialbackCertificate
                } else {
                    AuthMethod::Dialback
                },
            }),
            _ => Err(OutError::NotFound(format!(
                "{remote} refused our dialback key"
            ))),
        };
    }
}

/// Connect to the first target of `remote` that answers, encrypt, and read its features.
async fn open(
    shared: &Shared,
    cx: &S2sContext,
    local: &str,
    remote: &str,
) -> Result<Opened, OutError> {
    let targets = cx
        .resolver
        .targets(remote)
        .await
        .map_err(|e| OutError::NotFound(e.0))?;
    // DNS is the peer's to write: it must not lead into the local network (issue 14.2).
    let any_address = cx.resolver.is_routed(remote) || shared.config.s2s.allow_private_addresses;
    let mut last = format!("no address for {remote}");
    for t in targets {
        let addrs: Vec<std::net::SocketAddr> =
            match tokio::net::lookup_host((t.host.as_str(), t.port)).await {
                Ok(a) => a
                    .filter(|a| any_address || !super::resolve::is_internal(a.ip()))
                    .collect(),
                Err(_) => {
                    last = format!("cannot resolve the server of {remote}");
                    continue;
                }
            };
        if addrs.is_empty() {
            last = format!("the server of {remote} has no public address");
        }
        for addr in addrs {
            let tcp = match TcpStream::connect(addr).await {
                Ok(tcp) => tcp,
                Err(e) => {
                    last = format!("cannot connect to the server of {remote}: {}", e.kind());
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            match negotiate(shared, cx, local, remote, tcp, t.direct_tls).await {
                Ok(o) => return Ok(o),
                Err(e) => last = e.to_string(),
            }
        }
    }
    Err(OutError::NotFound(last))
}

async fn negotiate(
    shared: &Shared,
    cx: &S2sContext,
    local: &str,
    remote: &str,
    tcp: TcpStream,
    direct_tls: bool,
) -> Result<Opened, OutError> {
    let tls_err = |e: std::io::Error| OutError::NotFound(format!("TLS with {remote}: {e}"));
    let tls = if direct_tls {
        crate::tls::connect_server(&shared.config, local, remote, tcp)
            .await
            .map_err(tls_err)?
    } else {
        let (r, mut w) = tokio::io::split(S2sStream::Plain(tcp));
        let mut reader = XmlReader::new(r, reader_limits(shared));
        write(&mut w, &header(local, Some(remote), None)).await?;
        let (id, features) = read_open(&mut reader).await?;
        if features.get_child("starttls", ns::TLS).is_none() {
            if shared.config.s2s.require_encryption {
                return Err(OutError::NotFound(format!("{remote} offers no TLS")));
            }
            return Ok(Opened {
                reader,
                writer: w,
                id,
                features,
                tls: false,
                cert_valid: false,
            });
        }
        write(&mut w, &format!("<starttls xmlns='{}'/>", ns::TLS)).await?;
        if !next_element(&mut reader).await?.is("proceed", ns::TLS) {
            return Err(OutError::NotFound(format!("{remote} refused STARTTLS")));
        }
        // Whatever the peer sent after <proceed/> in plaintext is dropped with the reader.
        let S2sStream::Plain(tcp) = reader.into_inner().unsplit(w) else {
            unreachable!("the stream is plain before STARTTLS");
        };
        crate::tls::connect_server(&shared.config, local, remote, tcp)
            .await
            .map_err(tls_err)?
    };
    let cert_valid = PeerCert::of(tls.ssl()).is_some_and(|c| cx.pki.valid_for(&c, remote));
    let (r, mut w) = tokio::io::split(S2sStream::Tls(Box::new(tls)));
    let mut reader = XmlReader::new(r, reader_limits(shared));
    write(&mut w, &header(local, Some(remote), None)).await?;
    let (id, features) = read_open(&mut reader).await?;
    Ok(Opened {
        reader,
        writer: w,
        id,
        features,
        tls: true,
        cert_valid,
    })
}

async fn write<W: tokio::io::AsyncWrite + Unpin>(w: &mut W, s: &str) -> Result<(), OutError> {
    w.write_all(s.as_bytes())
        .await
        .map_err(|e| OutError::NotFound(format!("connection lost: {}", e.kind())))
}

/// Read the peer's stream header and features; returns the stream id and the features.
async fn read_open<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut XmlReader<R>,
) -> Result<(String, Element), OutError> {
    let id = match reader.next().await {
        Ok(StreamEvent::Header(h)) => {
            check_header(&h)
                .map_err(|e| OutError::NotFound(format!("bad stream header: {}", e.as_str())))?;
            h.attrs.get("id").cloned().unwrap_or_default()
        }
        Ok(_) => return Err(OutError::NotFound("no stream header".into())),
        Err(e) => return Err(parse_failure(&e)),
    };
    let features = next_element(reader).await?;
    if !features.is("features", ns::STREAM) {
        return Err(OutError::NotFound("no stream features".into()));
    }
    Ok((id, features))
}

/// The next top-level element; a stream error or the end of the stream is an error.
async fn next_element<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut XmlReader<R>,
) -> Result<Element, OutError> {
    match reader.next().await {
        Ok(StreamEvent::Element(el)) if el.is("error", ns::STREAM) => {
            let cond = el
                .elements()
                .find(|c| c.ns == ns::STREAMS && c.name != "text")
                .map(|c| c.name.clone())
                .unwrap_or_else(|| "undefined-condition".into());
            Err(OutError::NotFound(format!("stream error: {cond}")))
        }
        Ok(StreamEvent::Element(el)) => Ok(el),
        Ok(_) => Err(OutError::NotFound("stream closed".into())),
        Err(e) => Err(parse_failure(&e)),
    }
}

/// A read failure, named by its stream error condition (never with the peer's bytes).
fn parse_failure(e: &crate::xml::ParseError) -> OutError {
    OutError::NotFound(match crate::tls::parse_error_condition(e) {
        Some(c) => format!("bad input from the peer: {}", c.as_str()),
        None => "connection lost".into(),
    })
}
