//! TLS: the OpenSSL acceptor (Mozilla "intermediate" profile, TLS 1.2 minimum, no
//! renegotiation, SNI certificate selection, ALPN `xmpp-client`), certificate loading and
//! self-signed generation, STARTTLS negotiation, and channel-binding data for SCRAM-PLUS.
//!
//! Only an encrypted stream leaves this module: [`negotiate`] either returns a finished TLS
//! session or an error, and on the STARTTLS port it discards any plaintext the client pipelined
//! after `<starttls/>`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{
    AlpnError, NameType, SniError, Ssl, SslAcceptor, SslConnector, SslContext, SslMethod,
    SslOptions, SslRef, SslVerifyMode, SslVersion,
};
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509NameBuilder, X509};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use crate::config::Config;
use crate::sasl::ChannelBinding;
use crate::xml::{ReaderLimits, StreamEvent, XmlReader};
use crate::xmpp::{ns, stream_header, StreamError};

/// A client connection after the TLS handshake.
///
/// Wraps tokio-openssl's stream to give OpenSSL's record buffers (about 2 x 17 KiB) back once
/// the connection has been quiet for [`IDLE_RELEASE`]. OpenSSL's own
/// `SSL_MODE_RELEASE_BUFFERS` frees them after every record and allocates them again for the
/// next, which costs a busy connection two large allocations per stanza, and still leaves an
/// idle one holding its read buffer (the pending `SSL_read` allocates it before it finds the
/// socket empty). Here a busy connection keeps its buffers, and an idle session costs only
/// OpenSSL's connection state.
pub struct TlsStream {
    inner: SslStream<TcpStream>,
    /// Fires [`IDLE_RELEASE`] after the last data arrived.
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Data arrived since the timer was last armed.
    active: bool,
}

/// How long a connection must be quiet before its TLS buffers are released.
pub const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_secs(1);

extern "C" {
    /// OpenSSL >= 1.1.0: free the read and write buffers unless they hold pending data.
    fn SSL_free_buffers(ssl: *mut openssl_sys::SSL) -> std::os::raw::c_int;
}

impl TlsStream {
    pub(crate) fn new(inner: SslStream<TcpStream>) -> Self {
        TlsStream {
            inner,
            idle: None,
            active: true,
        }
    }

    /// The TLS session.
    pub fn ssl(&self) -> &SslRef {
        self.inner.ssl()
    }

    fn release_buffers(&mut self) {
        use foreign_types::ForeignTypeRef;
        // SAFETY: the pointer is a live SSL owned by this stream, which we hold exclusively;
        // OpenSSL refuses (returns 0) when a buffer still holds unprocessed data.
        unsafe {
            SSL_free_buffers(self.inner.ssl().as_ptr());
        }
    }
}

impl tokio::io::AsyncRead for TlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if !r.is_pending() {
            this.active = true;
            return r;
        }
        if this.active {
            this.active = false;
            let deadline = tokio::time::Instant::now() + IDLE_RELEASE;
            match &mut this.idle {
                Some(t) => t.as_mut().reset(deadline),
                None => this.idle = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        if let Some(t) = &mut this.idle {
            if std::future::Future::poll(t.as_mut(), cx).is_ready() {
                this.idle = None;
                this.release_buffers();
            }
        }
        r
    }
}

impl tokio::io::AsyncWrite for TlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A TLS setup failure (at start or reload), with the file or host it concerns.
#[derive(Debug)]
pub struct TlsError(pub String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// The server's TLS contexts: one per host, selected by SNI; the first host is the default.
#[derive(Clone)]
pub struct TlsAcceptor {
    /// The current contexts; replaced as a whole by [`TlsAcceptor::reload`] (SIGHUP), while
    /// established sessions keep the context they started with.
    default: Arc<std::sync::RwLock<Arc<SslAcceptor>>>,
    /// The web side's contexts per domain (ALPN `h2`, `http/1.1`), replaced by `reload` too:
    /// the web listener's SNI callback looks them up at each handshake.
    http: Arc<std::sync::RwLock<Arc<HttpContexts>>>,
}

/// The web side's certificates: the default host's files and a context per domain.
struct HttpContexts {
    default_cert: PathBuf,
    default_key: PathBuf,
    by_name: HashMap<String, SslContext>,
}

/// ALPN protocols of the XMPP ports (XEP-0368).
const ALPN_XMPP: &[u8] = b"\x0bxmpp-client\x0bxmpp-server";
/// ALPN protocols of the web side.
const ALPN_HTTP: &[u8] = b"\x02h2\x08http/1.1";

/// Paths of the certificate and key used for a host.
pub fn cert_paths(cfg: &Config, host: &str) -> (PathBuf, PathBuf) {
    // A service domain presents its parent host's certificate.
    let host = cfg.cert_host(host);
    match &cfg.hosts[host] {
        crate::config::HostConfig {
            certificate: Some(c),
            key: Some(k),
        } => (c.clone(), k.clone()),
        _ => {
            let dir = cfg.data_dir.join("certs");
            (
                dir.join(format!("{host}.crt")),
                dir.join(format!("{host}.key")),
            )
        }
    }
}

/// A context per host and service domain (a service uses its parent's), with `alpn`.
fn contexts_by_name(
    cfg: &Config,
    alpn: &'static [u8],
) -> Result<HashMap<String, SslContext>, TlsError> {
    let mut contexts: HashMap<String, SslContext> = HashMap::new();
    for host in cfg.hosts.keys() {
        let (cert, key) = cert_paths(cfg, host);
        let acceptor = acceptor_builder(&cert, &key, alpn)?.build();
        contexts.insert(host.clone(), acceptor.into_context());
    }
    for (service, parent) in &cfg.services {
        if let Some(ctx) = contexts.get(parent).cloned() {
            contexts.entry(service.clone()).or_insert(ctx);
        }
    }
    Ok(contexts)
}

/// Switch to the context of the name the client asked for (SNI), if there is one.
fn select_by_name(
    ssl: &mut SslRef,
    contexts: &HashMap<String, SslContext>,
) -> Result<(), SniError> {
    if let Some(name) = ssl.servername(NameType::HOST_NAME) {
        let name = name.to_ascii_lowercase();
        if let Some(ctx) = contexts.get(&name) {
            ssl.set_ssl_context(ctx)
                .map_err(|_| SniError::ALERT_FATAL)?;
        }
    }
    Ok(())
}

impl TlsAcceptor {
    /// Build the acceptor from the configuration, generating self-signed certificates for
    /// hosts that have none configured.
    pub fn from_config(cfg: &Config) -> Result<TlsAcceptor, TlsError> {
        for host in cfg.hosts.keys() {
            let (cert, key) = cert_paths(cfg, host);
            let configured = cfg.hosts[host].certificate.is_some();
            if !configured && !cert.exists() {
                generate_self_signed(host, &cert, &key)?;
                log::info!(
                    "generated a self-signed certificate for {host} in {}",
                    cert.display()
                );
            }
        }
        let default_host = cfg
            .hosts
            .keys()
            .next()
            .ok_or_else(|| TlsError("no host configured".into()))?;
        let (cert, key) = cert_paths(cfg, default_host);
        let mut builder = acceptor_builder(&cert, &key, ALPN_XMPP)?;
        let contexts = Arc::new(contexts_by_name(cfg, ALPN_XMPP)?);
        builder.set_servername_callback(move |ssl, _alert| select_by_name(ssl, &contexts));
        let http = HttpContexts {
            default_cert: cert,
            default_key: key,
            by_name: contexts_by_name(cfg, ALPN_HTTP)?,
        };
        Ok(TlsAcceptor {
            default: Arc::new(std::sync::RwLock::new(Arc::new(builder.build()))),
            http: Arc::new(std::sync::RwLock::new(Arc::new(http))),
        })
    }

    /// Load the certificates again (Let's Encrypt renewed them). On any error the old ones
    /// stay in use and the error is returned for the log.
    pub fn reload(&self, cfg: &Config) -> Result<(), TlsError> {
        let poisoned = || TlsError("certificate state poisoned".into());
        let fresh = TlsAcceptor::from_config(cfg)?;
        let new = fresh.default.read().map_err(|_| poisoned())?.clone();
        let new_http = fresh.http.read().map_err(|_| poisoned())?.clone();
        *self.default.write().map_err(|_| poisoned())? = new;
        *self.http.write().map_err(|_| poisoned())? = new_http;
        Ok(())
    }

    /// The web listener's TLS set-up (actix-web adds its own ALPN to the default context):
    /// the default host's certificate, and the current context of the name asked for by SNI.
    pub fn http_builder(&self) -> Result<openssl::ssl::SslAcceptorBuilder, TlsError> {
        let current = self
            .http
            .read()
            .map_err(|_| TlsError("certificate state poisoned".into()))?
            .clone();
        let mut builder = acceptor_builder(&current.default_cert, &current.default_key, ALPN_HTTP)?;
        let http = self.http.clone();
        builder.set_servername_callback(move |ssl, _alert| {
            let contexts = http.read().map_err(|_| SniError::ALERT_FATAL)?.clone();
            select_by_name(ssl, &contexts.by_name)
        });
        Ok(builder)
    }

    /// Run the TLS handshake as server on `tcp`.
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<TlsStream> {
        self.accept_with(tcp, false).await
    }

    /// Run the TLS handshake as server for another server: its certificate is asked for (and
    /// checked afterwards by `s2s::pki`, so that one that does not validate can still use
    /// dialback).
    pub async fn accept_server(&self, tcp: TcpStream) -> std::io::Result<TlsStream> {
        self.accept_with(tcp, true).await
    }

    async fn accept_with(&self, tcp: TcpStream, peer_cert: bool) -> std::io::Result<TlsStream> {
        let acceptor = self
            .default
            .read()
            .map_err(|_| std::io::Error::other("certificate state poisoned"))?
            .clone();
        let mut ssl = Ssl::new(acceptor.context()).map_err(std::io::Error::other)?;
        if peer_cert {
            ssl.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
        }
        let mut stream = SslStream::new(ssl, tcp).map_err(std::io::Error::other)?;
        Pin::new(&mut stream)
            .accept()
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(TlsStream::new(stream))
    }
}

/// Run the TLS handshake as client to the server of `remote`, presenting the certificate of
/// our host `local` (for SASL EXTERNAL). The peer's certificate is not checked here (that is
/// `s2s::pki`'s job, after the handshake) so that dialback remains possible.
pub async fn connect_server(
    cfg: &Config,
    local: &str,
    remote: &str,
    tcp: TcpStream,
) -> std::io::Result<TlsStream> {
    let io = |e: openssl::error::ErrorStack| std::io::Error::other(reason(&e));
    let (cert, key) = cert_paths(cfg, local);
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(io)?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(io)?;
    b.set_options(SslOptions::NO_RENEGOTIATION | SslOptions::NO_COMPRESSION);
    b.set_verify(SslVerifyMode::NONE);
    b.set_certificate_chain_file(&cert).map_err(io)?;
    b.set_private_key_file(&key, openssl::ssl::SslFiletype::PEM)
        .map_err(io)?;
    b.set_alpn_protos(b"\x0bxmpp-server").map_err(io)?;
    let connector = b.build();
    let mut conf = connector.configure().map_err(io)?;
    conf.set_verify_hostname(false);
    let ssl = conf.into_ssl(remote).map_err(io)?;
    let mut stream = SslStream::new(ssl, tcp).map_err(io)?;
    Pin::new(&mut stream)
        .connect()
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(TlsStream::new(stream))
}

/// The reason of the first OpenSSL error, without file and line noise.
fn reason(e: &openssl::error::ErrorStack) -> String {
    e.errors()
        .iter()
        .find_map(|e| e.reason())
        .unwrap_or("invalid")
        .to_owned()
}

fn acceptor_builder(
    cert: &Path,
    key: &Path,
    alpn: &'static [u8],
) -> Result<openssl::ssl::SslAcceptorBuilder, TlsError> {
    for f in [cert, key] {
        std::fs::File::open(f)
            .map_err(|e| TlsError(format!("{}: cannot read: {e}", f.display())))?;
    }
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
        .map_err(|e| TlsError(format!("openssl: {e}")))?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(|e| TlsError(format!("openssl: {e}")))?;
    b.set_options(SslOptions::NO_RENEGOTIATION | SslOptions::NO_COMPRESSION);
    // No SSL_MODE_RELEASE_BUFFERS: TlsStream releases the buffers of idle connections.
    b.set_certificate_chain_file(cert).map_err(|e| {
        TlsError(format!(
            "{}: cannot load certificate chain: {}",
            cert.display(),
            reason(&e)
        ))
    })?;
    b.set_private_key_file(key, openssl::ssl::SslFiletype::PEM)
        .map_err(|e| {
            TlsError(format!(
                "{}: cannot load private key: {}",
                key.display(),
                reason(&e)
            ))
        })?;
    b.check_private_key().map_err(|_| {
        TlsError(format!(
            "{}: private key does not match certificate {}",
            key.display(),
            cert.display()
        ))
    })?;
    b.set_alpn_select_callback(move |_, client| {
        openssl::ssl::select_next_proto(alpn, client).ok_or(AlpnError::NOACK)
    });
    Ok(b)
}

/// Write a self-signed certificate (EC P-256, SAN = host, 10 years) and its key.
pub fn generate_self_signed(host: &str, cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let e = |e: openssl::error::ErrorStack| TlsError(format!("generating certificate: {e}"));
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(e)?;
    let pkey: PKey<Private> = PKey::from_ec_key(EcKey::generate(&group).map_err(e)?).map_err(e)?;
    let mut name = X509NameBuilder::new().map_err(e)?;
    name.append_entry_by_nid(Nid::COMMONNAME, host).map_err(e)?;
    let name = name.build();
    let mut b = X509::builder().map_err(e)?;
    b.set_version(2).map_err(e)?;
    let mut serial = BigNum::new().map_err(e)?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false).map_err(e)?;
    let serial = serial.to_asn1_integer().map_err(e)?;
    b.set_serial_number(&serial).map_err(e)?;
    b.set_subject_name(&name).map_err(e)?;
    b.set_issuer_name(&name).map_err(e)?;
    b.set_pubkey(&pkey).map_err(e)?;
    let (from, until) = (
        Asn1Time::days_from_now(0).map_err(e)?,
        Asn1Time::days_from_now(3650).map_err(e)?,
    );
    b.set_not_before(&from).map_err(e)?;
    b.set_not_after(&until).map_err(e)?;
    let san = SubjectAlternativeName::new()
        .dns(host)
        .build(&b.x509v3_context(None, None))
        .map_err(e)?;
    b.append_extension(san).map_err(e)?;
    b.sign(&pkey, MessageDigest::sha256()).map_err(e)?;
    let cert = b.build();
    if let Some(dir) = cert_path.parent() {
        crate::store::create_private_dir(dir)
            .map_err(|err| TlsError(format!("{}: {err}", dir.display())))?;
    }
    let key_pem = pkey.private_key_to_pem_pkcs8().map_err(e)?;
    write_private(key_path, &key_pem)?;
    std::fs::write(cert_path, cert.to_pem().map_err(e)?)
        .map_err(|err| TlsError(format!("{}: {err}", cert_path.display())))?;
    Ok(())
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|err| TlsError(format!("{}: {err}", path.display())))?;
    f.write_all(data)
        .map_err(|err| TlsError(format!("{}: {err}", path.display())))
}

/// Channel-binding data of an established TLS session.
pub fn channel_binding(ssl: &SslRef) -> ChannelBinding {
    let mut cb = ChannelBinding::default();
    // RFC 9266: tls-exporter is defined for TLS 1.3 (and 1.2 with extended master secret;
    // we only offer it where it is unambiguous).
    if ssl.version2() == Some(SslVersion::TLS1_3) {
        let mut out = [0u8; 32];
        if ssl
            .export_keying_material(&mut out, "EXPORTER-Channel-Binding", Some(&[]))
            .is_ok()
        {
            cb.tls_exporter = Some(out.to_vec());
        }
    }
    // RFC 5929 §4.1: hash of our certificate with its signature's digest, SHA-256 for MD5/SHA-1.
    if let Some(cert) = ssl.certificate() {
        let md = cert
            .signature_algorithm()
            .object()
            .nid()
            .signature_algorithms()
            .and_then(|a| MessageDigest::from_nid(a.digest))
            .filter(|md| md.type_() != Nid::MD5 && md.type_() != Nid::SHA1)
            .unwrap_or_else(MessageDigest::sha256);
        if let Ok(d) = cert.digest(md) {
            cb.tls_server_end_point = Some(d.to_vec());
        }
    }
    cb
}

/// Why a connection ended before TLS was up.
#[derive(Debug)]
pub enum NegotiateError {
    /// Transport error or the peer went away; nothing to tell it.
    Io(std::io::Error),
    /// A stream error was sent to the peer.
    Stream(StreamError),
}

/// Check a client's stream header: RFC 6120 namespaces, version 1.0, a served host in `to`.
/// Returns the host.
pub fn check_header<'a>(
    h: &crate::xml::StreamHeader,
    hosts: impl IntoIterator<Item = &'a String>,
) -> Result<String, StreamError> {
    if h.name != "stream" || h.ns != ns::STREAM {
        return Err(StreamError::InvalidNamespace);
    }
    if h.prefix != "stream" {
        return Err(StreamError::BadNamespacePrefix);
    }
    if h.default_ns != ns::CLIENT {
        return Err(StreamError::InvalidNamespace);
    }
    let to = h.attrs.get("to").map(|t| t.to_ascii_lowercase());
    let host = match to {
        Some(t) => hosts.into_iter().find(|h| **h == t).cloned(),
        None => None,
    }
    .ok_or(StreamError::HostUnknown)?;
    // RFC 6120 §4.7.5: any 1.x; the major and minor numbers are integers, so leading zeros
    // ("01.0") are ignored.
    let major_is_1 = |v: &str| {
        let major = v.split('.').next().unwrap_or("");
        major.bytes().all(|b| b.is_ascii_digit()) && major.trim_start_matches('0') == "1"
    };
    match h.attrs.get("version").map(String::as_str) {
        Some(v) if major_is_1(v) => Ok(host),
        _ => Err(StreamError::UnsupportedVersion),
    }
}

/// STARTTLS (RFC 6120 §5): read the client's stream header in plaintext, offer `<starttls/>`
/// as the only (required) feature, answer `<proceed/>`, and complete the handshake. Anything
/// else is a stream error; plaintext pipelined after `<starttls/>` is dropped with the parser.
/// `shutdown` turns `true` when the server goes down (the stream then ends with
/// `system-shutdown`).
pub async fn negotiate_starttls(
    acceptor: &TlsAcceptor,
    cfg: &Config,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    mut tcp: TcpStream,
    deadline: tokio::time::Instant,
) -> Result<TlsStream, NegotiateError> {
    let limits = ReaderLimits {
        max_stanza: 1024.max(cfg.limits.max_stanza_bytes_before_auth / 4),
        max_depth: 4,
    };
    let (reader_half, mut writer_half) = tcp.split();
    let mut reader = XmlReader::new(reader_half, limits);
    let id = crate::xmpp::random_id(12);
    let header = match next_bounded(&mut reader, deadline, &mut shutdown).await {
        Err(cond) => {
            let _ = write_error(&mut writer_half, cfg.default_host(), &id, Some(cond), true).await;
            return Err(NegotiateError::Stream(cond));
        }
        Ok(Ok(StreamEvent::Header(h))) => h,
        Ok(Ok(_)) => return Err(NegotiateError::Io(std::io::ErrorKind::InvalidData.into())),
        Ok(Err(e)) => {
            let err = parse_error_condition(&e);
            let _ = write_error(&mut writer_half, cfg.default_host(), &id, err, true).await;
            return Err(err.map_or_else(|| NegotiateError::Io(io_of(e)), NegotiateError::Stream));
        }
    };
    let host = match check_header(&header, cfg.hosts.keys()) {
        Ok(h) => h,
        Err(e) => {
            let _ = write_error(&mut writer_half, cfg.default_host(), &id, Some(e), true).await;
            return Err(NegotiateError::Stream(e));
        }
    };
    let mut out = stream_header(&host, None, &id);
    out.push_str("<stream:features><starttls xmlns='");
    out.push_str(ns::TLS);
    out.push_str("'><required/></starttls></stream:features>");
    writer_half
        .write_all(out.as_bytes())
        .await
        .map_err(NegotiateError::Io)?;
    let err = match next_bounded(&mut reader, deadline, &mut shutdown).await {
        Err(cond) => Some(cond),
        Ok(Ok(StreamEvent::Element(el))) if el.is("starttls", ns::TLS) => None,
        Ok(Ok(StreamEvent::Element(_))) => Some(StreamError::NotAuthorized),
        Ok(Ok(StreamEvent::End)) => {
            return Err(NegotiateError::Io(std::io::ErrorKind::UnexpectedEof.into()))
        }
        Ok(Ok(StreamEvent::Header(_))) => Some(StreamError::NotWellFormed),
        Ok(Err(e)) => match parse_error_condition(&e) {
            Some(c) => Some(c),
            None => return Err(NegotiateError::Io(io_of(e))),
        },
    };
    if let Some(e) = err {
        let _ = write_error(&mut writer_half, &host, &id, Some(e), false).await;
        return Err(NegotiateError::Stream(e));
    }
    writer_half
        .write_all(format!("<proceed xmlns='{}'/>", ns::TLS).as_bytes())
        .await
        .map_err(NegotiateError::Io)?;
    // Dropping the reader drops whatever plaintext it had buffered beyond <starttls/>.
    drop(reader);
    acceptor.accept(tcp).await.map_err(NegotiateError::Io)
}

/// The next stream event, bounded by the handshake `deadline` (`connection-timeout`) and by
/// server shutdown (`system-shutdown`).
pub async fn next_bounded<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut XmlReader<R>,
    deadline: tokio::time::Instant,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<Result<StreamEvent, crate::xml::ParseError>, StreamError> {
    tokio::select! {
        r = tokio::time::timeout_at(deadline, reader.next()) => {
            r.map_err(|_| StreamError::ConnectionTimeout)
        }
        _ = shutdown.wait_for(|down| *down) => Err(StreamError::SystemShutdown),
    }
}

fn io_of(e: crate::xml::ParseError) -> std::io::Error {
    match e {
        crate::xml::ParseError::Io(io) => io,
        other => std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{other:?}")),
    }
}

/// The stream error condition for a parse failure (`None` for transport failures).
pub fn parse_error_condition(e: &crate::xml::ParseError) -> Option<StreamError> {
    use crate::xml::ParseError::*;
    match e {
        NotWellFormed(_) => Some(StreamError::NotWellFormed),
        RestrictedXml(_) => Some(StreamError::RestrictedXml),
        PolicyViolation(_) => Some(StreamError::PolicyViolation),
        Io(_) => None,
    }
}

async fn write_error<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    host: &str,
    id: &str,
    err: Option<StreamError>,
    with_header: bool,
) -> std::io::Result<()> {
    let Some(err) = err else { return Ok(()) };
    let mut out = String::new();
    if with_header {
        out.push_str(&stream_header(host, None, id));
    }
    out.push_str(&err.to_xml(None));
    w.write_all(out.as_bytes()).await?;
    w.shutdown().await
}
