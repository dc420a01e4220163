//! Test harness: a real kleiber on random loopback ports with a temp data dir, and a small
//! XMPP client that speaks raw XML over TLS so tests can assert exact stanzas.
#![allow(dead_code)]

pub mod bosh;
pub mod component;
pub mod echo;
pub mod fed;
pub mod muc;
pub mod pep;
pub mod procs;
pub mod s2s;
pub mod scram;
pub mod ws;

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use openssl::ssl::{Ssl, SslConnector, SslMethod, SslVerifyMode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use kleiber::actors::ListenerKind;
use kleiber::config::Config;
use kleiber::server::ServerThread;
use kleiber::xml::{Element, ReaderLimits, StreamEvent, XmlReader};

/// How long a test waits for something the server must send (a hang guard, not a timing
/// assertion).
pub const WAIT: Duration = Duration::from_secs(10);

/// A server for one test.
pub struct TestServer {
    pub server: Option<ServerThread>,
    pub dir: tempfile::TempDir,
    pub starttls: SocketAddr,
    pub direct: SocketAddr,
    /// The server-to-server port (STARTTLS), when federation is on.
    pub s2s: Option<SocketAddr>,
}

/// A loopback port for a listener whose address a test must know before the server starts
/// (a peer's static s2s route, a public URL). Drawn below the kernel's ephemeral range
/// (32768 and up on Linux), so no outgoing connection or `:0` listener of a parallel test can
/// take it between this call and the server's bind; a per-process counter keeps the tests of
/// one binary apart, and the process id spreads binaries apart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The test configuration as TOML: localhost, ports 0, cheap hashing.
pub const TEST_CONFIG: &str = r#"
        [listen]
        c2s_starttls = ["127.0.0.1:0"]
        c2s_direct_tls = ["127.0.0.1:0"]
        s2s = ["127.0.0.1:0"]
        components = ["127.0.0.1:0"]
        [http]
        listen = ["127.0.0.1:0"]
        [proxy65]
        listen = ["127.0.0.1:0"]
        [auth]
        bcrypt_cost = 4
        scram_iterations = 4096
        [limits]
        registrations_per_address_per_hour = 0
        registrations_per_hour = 0
        max_bytes_per_second = 0
        stranger_messages_per_hour = 0
        "#;

/// The test configuration: localhost, ports 0, cheap hashing.
pub fn test_config(dir: &std::path::Path) -> Config {
    test_config_with(dir, "")
}

/// The test configuration with `extra` TOML appended (sections of its own, e.g.
/// `[archive]\nenabled = true`); panics with the parser's message if it is refused.
pub fn test_config_with(dir: &std::path::Path, extra: &str) -> Config {
    let mut c = Config::parse(&format!("{TEST_CONFIG}\n{extra}"))
        .unwrap_or_else(|e| panic!("test config with {extra:?} refused: {e}"));
    c.data_dir = dir.to_path_buf();
    c.workers = 2;
    c
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(|_| {})
    }

    pub fn start_with(f: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(dir.path());
        f(&mut cfg);
        Self::start_in(dir, cfg)
    }

    pub fn start_in(dir: tempfile::TempDir, cfg: Config) -> TestServer {
        Self::start_with_services(dir, cfg, Vec::new())
    }

    /// Start with internal services: (service, parent host).
    pub fn start_with_services(
        dir: tempfile::TempDir,
        cfg: Config,
        services: Vec<(kleiber::actors::ServiceSpec, String)>,
    ) -> TestServer {
        // RUST_LOG=debug shows the server's log in failing tests.
        let _ = env_logger::builder().is_test(true).try_init();
        let server = ServerThread::start_with_services(cfg, services).expect("server starts");
        TestServer {
            starttls: server.addr(ListenerKind::StartTls).unwrap(),
            direct: server.addr(ListenerKind::DirectTls).unwrap(),
            s2s: server.addr(ListenerKind::S2s),
            server: Some(server),
            dir,
        }
    }

    pub fn shared(&self) -> &std::sync::Arc<kleiber::shared::Shared> {
        &self.server.as_ref().unwrap().shared
    }

    /// Stop gracefully (every stream gets `system-shutdown`).
    pub fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop();
        }
    }

    /// Create an account directly in the store.
    pub fn add_user(&self, user: &str, password: &str) {
        let shared = self.shared();
        let creds = kleiber::credentials::derive(password, 4, 4096).unwrap();
        let rec = kleiber::store::AccountRecord::new(creds, kleiber::store::now_secs());
        assert!(shared
            .store
            .accounts
            .create("localhost", user, &rec)
            .unwrap());
    }

    /// Connect and log in with SCRAM-SHA-256, bind `resource`, send initial presence.
    pub async fn online(&self, user: &str, resource: &str) -> Client {
        let mut c = Client::starttls(self.starttls, "localhost").await;
        c.auth_scram("SCRAM-SHA-256", user, "pw")
            .await
            .expect("login");
        c.bind(Some(resource)).await;
        c.send("<presence/>").await;
        // Our own presence comes back (RFC 6121 §4.2.2).
        let p = c.recv().await;
        assert_eq!(p.name, "presence", "{}", p.to_xml("jabber:client"));
        c
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub type Tls = SslStream<TcpStream>;

/// A raw XMPP client over TLS.
pub struct Client {
    /// The client's own TCP port (to check it never shows up in logs).
    pub port: u16,
    pub reader: XmlReader<ReadHalf<Tls>>,
    pub writer: WriteHalf<Tls>,
    pub features: Element,
    pub jid: String,
    /// The domain the stream is for (opened again after authentication).
    pub domain: String,
    /// Channel-binding data as the client sees it.
    pub exporter: Option<Vec<u8>>,
    pub end_point: Option<Vec<u8>>,
}

pub fn connector() -> SslConnector {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    b.build()
}

/// TLS handshake as a client over `tcp`.
pub async fn tls_connect(tcp: TcpStream, max_tls12: bool) -> Tls {
    let mut cfg = connector().configure().unwrap();
    cfg.set_verify_hostname(false);
    if max_tls12 {
        cfg.set_max_proto_version(Some(openssl::ssl::SslVersion::TLS1_2))
            .unwrap();
    }
    let ssl: Ssl = cfg.into_ssl("localhost").unwrap();
    let mut s = SslStream::new(ssl, tcp).unwrap();
    Pin::new(&mut s).connect().await.expect("TLS handshake");
    s
}

pub fn header(to: &str) -> String {
    format!("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{to}' version='1.0'>")
}

/// Read everything until the server closes (or WAIT passes), as text.
pub async fn read_to_close<R: AsyncRead + Unpin>(r: &mut R) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, r.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Plaintext STARTTLS negotiation on `tcp`.
pub async fn starttls_upgrade(mut tcp: TcpStream, domain: &str) -> TcpStream {
    tcp.write_all(header(domain).as_bytes()).await.unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 2048];
    while !got.contains("</stream:features>") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed during STARTTLS: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        got.contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"),
        "{got}"
    );
    tcp.write_all(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .await
        .unwrap();
    let mut got = String::new();
    while !got.contains("<proceed") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    tcp
}

impl Client {
    /// STARTTLS on the plain port, then a new stream over TLS; features read.
    pub async fn starttls(addr: SocketAddr, domain: &str) -> Client {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let tcp = starttls_upgrade(tcp, domain).await;
        Self::over_tls(tls_connect(tcp, false).await, domain).await
    }

    /// Like [`Client::starttls`] but TLS 1.2 (no tls-exporter).
    pub async fn starttls12(addr: SocketAddr, domain: &str) -> Client {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let tcp = starttls_upgrade(tcp, domain).await;
        Self::over_tls(tls_connect(tcp, true).await, domain).await
    }

    /// Direct TLS (XEP-0368).
    pub async fn direct(addr: SocketAddr, domain: &str) -> Client {
        let tcp = TcpStream::connect(addr).await.unwrap();
        Self::over_tls(tls_connect(tcp, false).await, domain).await
    }

    pub async fn over_tls(tls: Tls, domain: &str) -> Client {
        let mut c = Self::unopened(tls, domain);
        c.open(domain).await;
        c
    }

    /// A client on `tls` that has not sent its stream header yet.
    pub fn unopened(tls: Tls, domain: &str) -> Client {
        let exporter = if tls.ssl().version2() == Some(openssl::ssl::SslVersion::TLS1_3) {
            let mut out = [0u8; 32];
            tls.ssl()
                .export_keying_material(&mut out, "EXPORTER-Channel-Binding", Some(&[]))
                .unwrap();
            Some(out.to_vec())
        } else {
            None
        };
        let end_point = tls.ssl().peer_certificate().map(|c| {
            c.digest(openssl::hash::MessageDigest::sha256())
                .unwrap()
                .to_vec()
        });
        let port = tls.get_ref().local_addr().map(|a| a.port()).unwrap_or(0);
        let (r, w) = tokio::io::split(tls);
        Client {
            port,
            reader: XmlReader::new(
                r,
                ReaderLimits {
                    max_stanza: 1 << 20,
                    max_depth: 64,
                },
            ),
            writer: w,
            features: Element::default(),
            jid: String::new(),
            domain: domain.to_owned(),
            exporter,
            end_point,
        }
    }

    /// Send a stream header and read the server's header and features.
    pub async fn open(&mut self, domain: &str) {
        self.send(&header(domain)).await;
        match self.next().await {
            StreamEvent::Header(_) => {}
            other => panic!("expected header, got {other:?}"),
        }
        self.features = self.recv().await;
        assert_eq!(self.features.name, "features", "{:?}", self.features);
    }

    pub fn local_port(&self) -> u16 {
        self.port
    }

    pub async fn send(&mut self, s: &str) {
        self.writer.write_all(s.as_bytes()).await.unwrap();
        self.writer.flush().await.unwrap();
    }

    pub async fn send_bytes(&mut self, b: &[u8]) {
        let _ = self.writer.write_all(b).await;
        let _ = self.writer.flush().await;
    }

    pub async fn next(&mut self) -> StreamEvent {
        tokio::time::timeout(WAIT, self.reader.next())
            .await
            .expect("server answered in time")
            .expect("well-formed stream from server")
    }

    /// The next top-level element.
    pub async fn recv(&mut self) -> Element {
        match self.next().await {
            StreamEvent::Element(e) => e,
            other => panic!("expected an element, got {other:?}"),
        }
    }

    /// The next element as XML text (default namespace jabber:client).
    pub async fn recv_xml(&mut self) -> String {
        self.recv().await.to_xml("jabber:client")
    }

    /// Expect `<stream:error>` with `condition`, then the end of the stream.
    pub async fn expect_stream_error(&mut self, condition: &str) {
        let e = self.recv().await;
        assert!(
            e.name == "error"
                && e.get_child(condition, "urn:ietf:params:xml:ns:xmpp-streams")
                    .is_some(),
            "expected stream error {condition}, got {}",
            e.to_xml("jabber:client")
        );
        match tokio::time::timeout(WAIT, self.reader.next())
            .await
            .expect("closed in time")
        {
            Ok(StreamEvent::End) | Err(_) => {}
            Ok(other) => panic!("expected end of stream, got {other:?}"),
        }
    }

    /// Nothing arrives within `d` (used only to check that something is *not* delivered).
    pub async fn expect_silence(&mut self, d: Duration) {
        if let Ok(ev) = tokio::time::timeout(d, self.reader.next()).await {
            panic!("expected nothing, got {ev:?}");
        }
    }

    pub fn mechanisms(&self) -> Vec<String> {
        self.features
            .get_child("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl")
            .map(|m| m.elements().map(|e| e.text_content()).collect())
            .unwrap_or_default()
    }

    /// SASL PLAIN; `Ok` after the stream restart, `Err(condition)` on failure.
    pub async fn auth_plain(&mut self, authzid: &str, user: &str, pw: &str) -> Result<(), String> {
        let msg = B64.encode(format!("{authzid}\0{user}\0{pw}"));
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{msg}</auth>"
        ))
        .await;
        self.sasl_outcome(user).await
    }

    async fn sasl_outcome(&mut self, user: &str) -> Result<(), String> {
        let r = self.recv().await;
        match r.name.as_str() {
            "success" => {
                self.reader.reset();
                let domain = self.domain.clone();
                self.open(&domain).await;
                self.jid = format!("{user}@localhost");
                Ok(())
            }
            "failure" => Err(r
                .elements()
                .next()
                .map(|e| e.name.clone())
                .unwrap_or_default()),
            other => panic!("unexpected {other}"),
        }
    }

    /// SCRAM-SHA-256 or SCRAM-SHA-256-PLUS (`cb` = channel-binding type).
    pub async fn auth_scram(&mut self, mech: &str, user: &str, pw: &str) -> Result<(), String> {
        self.auth_scram_cb(mech, user, pw, None, None).await
    }

    pub async fn auth_scram_cb(
        &mut self,
        mech: &str,
        user: &str,
        pw: &str,
        cb: Option<&str>,
        cb_data_override: Option<Vec<u8>>,
    ) -> Result<(), String> {
        let gs2 = match cb {
            Some(t) => format!("p={t},,"),
            None => "n,,".to_owned(),
        };
        let cnonce = "fyko+d2lbbFgONRv9qkxdawL";
        let first_bare = scram::client_first_bare(user, cnonce);
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mech}'>{}</auth>",
            B64.encode(format!("{gs2}{first_bare}"))
        ))
        .await;
        let ch = self.recv().await;
        if ch.name == "failure" {
            return Err(ch
                .elements()
                .next()
                .map(|e| e.name.clone())
                .unwrap_or_default());
        }
        assert_eq!(ch.name, "challenge");
        let server_first = String::from_utf8(B64.decode(ch.text_content()).unwrap()).unwrap();
        let first = scram::ServerFirst::parse(&server_first, cnonce).unwrap();
        let mut cbind = gs2.as_bytes().to_vec();
        if let Some(t) = cb {
            let data = cb_data_override.unwrap_or_else(|| match t {
                "tls-exporter" => self.exporter.clone().unwrap(),
                _ => self.end_point.clone().unwrap(),
            });
            cbind.extend_from_slice(&data);
        }
        let sha256 = !mech.starts_with("SCRAM-SHA-1");
        let salted = scram::salted_password(sha256, pw, &first.salt, first.iterations);
        let fin = scram::client_final(
            sha256,
            &salted,
            &first_bare,
            &server_first,
            &first.nonce,
            &cbind,
        );
        self.send(&format!(
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
            B64.encode(fin.message)
        ))
        .await;
        let r = self.recv().await;
        match r.name.as_str() {
            "success" => {
                let v = String::from_utf8(B64.decode(r.text_content()).unwrap()).unwrap();
                scram::verify_server_final(&v, &fin.server_signature).expect("server signature");
                self.reader.reset();
                let domain = self.domain.clone();
                self.open(&domain).await;
                self.jid = format!("{user}@localhost");
                Ok(())
            }
            "failure" => Err(r
                .elements()
                .next()
                .map(|e| e.name.clone())
                .unwrap_or_default()),
            other => panic!("unexpected {other}"),
        }
    }

    /// Bind a resource (or let the server choose); returns the full JID.
    pub async fn bind(&mut self, resource: Option<&str>) -> String {
        let inner = resource
            .map(|r| format!("<resource>{r}</resource>"))
            .unwrap_or_default();
        self.send(&format!("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{inner}</bind></iq>")).await;
        let r = self.recv().await;
        assert_eq!(
            r.get_attr("type"),
            Some("result"),
            "{}",
            r.to_xml("jabber:client")
        );
        let jid = r
            .get_child("bind", "urn:ietf:params:xml:ns:xmpp-bind")
            .and_then(|b| b.get_child("jid", "urn:ietf:params:xml:ns:xmpp-bind"))
            .unwrap()
            .text_content();
        self.jid = jid.clone();
        jid
    }

    /// In-band registration on this (unauthenticated) stream; returns the reply.
    pub async fn register(&mut self, user: &str, pw: &str) -> Element {
        self.send(&format!(
            "<iq type='set' id='reg1'><query xmlns='jabber:iq:register'><username>{user}</username><password>{pw}</password></query></iq>"
        ))
        .await;
        self.recv().await
    }
}

/// The stanza error condition of an error stanza.
pub fn error_condition(e: &Element) -> Option<String> {
    e.get_child("error", "jabber:client")?
        .elements()
        .find(|c| c.ns == "urn:ietf:params:xml:ns:xmpp-stanzas")
        .map(|c| c.name.clone())
}

/// A raw TLS connection for hostile input (no parser on the client side).
pub async fn raw_direct(addr: SocketAddr) -> Tls {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tls_connect(tcp, false).await
}

pub async fn write_all<W: AsyncWrite + Unpin>(w: &mut W, b: &[u8]) {
    let _ = w.write_all(b).await;
    let _ = w.flush().await;
}

// ---------------------------------------------------------------------------------------------
// Hostile-input helpers: raw connections, reading until the server closes, and parsing what
// the server sent.

/// Read from `r` until the peer closes the connection (end of file, or a reset after the
/// data). Returns what arrived and whether the connection was closed (`false`: WAIT passed
/// with the connection still open).
pub async fn read_until_closed<R: AsyncRead + Unpin>(r: &mut R) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match tokio::time::timeout(WAIT, r.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

/// Read from `r`, appending to `out`, until `out` contains `needle`.
pub async fn read_until<R: AsyncRead + Unpin>(r: &mut R, out: &mut Vec<u8>, needle: &str) {
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(out).contains(needle) {
        let n = tokio::time::timeout(WAIT, r.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("waiting for {needle}: {}", String::from_utf8_lossy(out)))
            .unwrap_or(0);
        assert!(
            n > 0,
            "closed while waiting for {needle}: {}",
            String::from_utf8_lossy(out)
        );
        out.extend_from_slice(&buf[..n]);
    }
}

/// Write `data` in 64 KiB pieces, stopping at the first error (the server may close the
/// connection before taking it all), then never finish.
pub async fn write_then_idle<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8]) {
    for chunk in data.chunks(64 * 1024) {
        if w.write_all(chunk).await.is_err() {
            break;
        }
    }
    let _ = w.flush().await;
    std::future::pending::<()>().await
}

/// Send `data` on `r`/`w` while reading everything the server sends until it closes the
/// connection; returns `sofar` followed by what arrived, and whether the connection closed.
pub async fn send_and_read_to_close<R, W>(
    r: &mut R,
    w: &mut W,
    mut sofar: Vec<u8>,
    data: &[u8],
) -> (Vec<u8>, bool)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (rest, closed) = tokio::select! {
        out = read_until_closed(r) => out,
        _ = write_then_idle(w, data) => unreachable!(),
    };
    sofar.extend_from_slice(&rest);
    (sofar, closed)
}

/// The server's side of a stream, parsed.
#[derive(Debug, Default)]
pub struct ServerOutput {
    pub header: Option<kleiber::xml::StreamHeader>,
    pub elements: Vec<Element>,
    /// `</stream:stream>` arrived, with nothing after it.
    pub end: bool,
    /// The output was not a well-formed stream (what the parser said).
    pub problem: Option<String>,
}

impl ServerOutput {
    /// Parse everything a server sent on one stream.
    pub async fn parse(bytes: &[u8]) -> ServerOutput {
        let limits = ReaderLimits {
            max_stanza: 1 << 26,
            max_depth: 64,
        };
        let mut r = XmlReader::new(bytes, limits);
        let mut out = ServerOutput::default();
        loop {
            match r.next().await {
                Ok(StreamEvent::Header(h)) if out.header.is_none() => out.header = Some(h),
                Ok(StreamEvent::Header(_)) => {
                    out.problem = Some("second stream header".into());
                    break;
                }
                Ok(StreamEvent::Element(e)) => out.elements.push(e),
                Ok(StreamEvent::End) => {
                    match r.next().await {
                        Err(kleiber::xml::ParseError::Io(_)) => out.end = true,
                        other => out.problem = Some(format!("after the end: {other:?}")),
                    }
                    break;
                }
                // Ran out of bytes before the end of the stream.
                Err(kleiber::xml::ParseError::Io(_)) => break,
                Err(e) => {
                    out.problem = Some(format!("{e:?}"));
                    break;
                }
            }
        }
        out
    }

    /// The condition of the `<stream:error/>` that is the last element, if it is one.
    pub fn stream_error(&self) -> Option<String> {
        stream_error_condition(self.elements.last()?)
    }
}

/// The condition of a `<stream:error/>` element (`None` for anything else).
pub fn stream_error_condition(e: &Element) -> Option<String> {
    if !e.is("error", "http://etherx.jabber.org/streams") {
        return None;
    }
    let mut conds = e
        .elements()
        .filter(|c| c.ns == "urn:ietf:params:xml:ns:xmpp-streams" && c.name != "text");
    match (conds.next(), conds.next()) {
        (Some(c), None) => Some(c.name.clone()),
        _ => None,
    }
}

impl Client {
    /// Send `data` (possibly more than the server will take) while waiting for the server's
    /// next event; writing stops when the event arrives, and write errors are ignored.
    pub async fn send_and_next(
        &mut self,
        data: &[u8],
    ) -> Result<StreamEvent, kleiber::xml::ParseError> {
        let Client { reader, writer, .. } = self;
        tokio::select! {
            ev = tokio::time::timeout(WAIT, reader.next()) => ev.expect("server answered in time"),
            _ = write_then_idle(writer, data) => unreachable!(),
        }
    }

    /// After the end of the stream: the server closes the connection with nothing more.
    pub async fn expect_closed(self) {
        let Client {
            reader, writer: _w, ..
        } = self;
        let mut inner = reader.into_inner();
        let (rest, closed) = read_until_closed(&mut inner).await;
        assert!(closed, "the server did not close the connection");
        assert!(
            rest.is_empty(),
            "data after the end of the stream: {}",
            String::from_utf8_lossy(&rest)
        );
    }

    /// Log in with PLAIN (cheap) over direct TLS and bind `resource`.
    pub async fn bound(addr: SocketAddr, user: &str, pw: &str, resource: &str) -> Client {
        let mut c = Client::direct(addr, "localhost").await;
        c.auth_plain("", user, pw).await.expect("login");
        c.bind(Some(resource)).await;
        c
    }

    /// An IQ ping to the server is answered with its result (the stream works).
    pub async fn ping(&mut self, id: &str) {
        self.send(&format!(
            "<iq type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await;
        let r = self.recv().await;
        assert!(
            r.is("iq", "jabber:client")
                && r.get_attr("type") == Some("result")
                && r.get_attr("id") == Some(id),
            "ping {id}: {}",
            r.to_xml("jabber:client")
        );
    }
}

/// TLS handshake as a client over `tcp` that may fail; `alpn` in wire format (length-prefixed).
pub async fn try_tls_connect(tcp: TcpStream, alpn: Option<&[u8]>) -> Result<Tls, String> {
    let mut cfg = connector().configure().unwrap();
    cfg.set_verify_hostname(false);
    if let Some(protos) = alpn {
        cfg.set_alpn_protos(protos).unwrap();
    }
    let ssl: Ssl = cfg.into_ssl("localhost").unwrap();
    let mut s = SslStream::new(ssl, tcp).unwrap();
    match tokio::time::timeout(WAIT, Pin::new(&mut s).connect()).await {
        Ok(Ok(())) => Ok(s),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("TLS handshake timed out".into()),
    }
}

/// The real `kleiber` binary, started on random loopback ports with `extra` appended to its
/// config, its log lines collected.
pub struct Binary {
    pub child: std::process::Child,
    pub starttls: SocketAddr,
    pub direct: SocketAddr,
    pub log: std::sync::mpsc::Receiver<String>,
    pub lines: Vec<String>,
}

impl Binary {
    pub fn start(data: &std::path::Path, extra: &str, rust_log: &str) -> Binary {
        Self::start_config(
            data,
            &format!(
                "data_dir = {:?}\n[listen]\nc2s_starttls = [\"127.0.0.1:0\"]\nc2s_direct_tls = [\"127.0.0.1:0\"]\ns2s = [\"127.0.0.1:0\"]\n[http]\nlisten = [\"127.0.0.1:0\"]\n[proxy65]\nlisten = [\"127.0.0.1:0\"]\n[auth]\nbcrypt_cost = 4\nscram_iterations = 4096\n{extra}\n",
                data
            ),
            rust_log,
        )
    }

    /// Start with this whole configuration file (written next to `data`).
    pub fn start_config(data: &std::path::Path, config: &str, rust_log: &str) -> Binary {
        use std::io::BufRead;
        let cfg = data.with_extension("toml");
        std::fs::write(&cfg, config).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kleiber"))
            .args(["serve", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", rust_log)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut ports = Vec::new();
        let mut lines = Vec::new();
        while ports.len() < 2 {
            let line = rx.recv_timeout(WAIT).expect("server starts");
            if let Some(rest) = line.split("listening for clients on ").nth(1) {
                ports.push(rest.split(' ').next().unwrap().parse().unwrap());
            }
            lines.push(line);
        }
        Binary {
            child,
            starttls: ports[0],
            direct: ports[1],
            log: rx,
            lines,
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Binary {
    /// A failing test must not leave a server behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Binary {
    /// SIGTERM and wait; returns every log line.
    pub fn stop(mut self) -> Vec<String> {
        let _ = std::process::Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        while let Ok(line) = self.log.recv_timeout(Duration::from_secs(2)) {
            self.lines.push(line);
        }
        std::mem::take(&mut self.lines)
    }
}

/// A Python with slixmpp for the interop tests: `KLEIBER_PYTHON`, or the venv `.ci/run` makes.
pub fn interop_python() -> Option<std::path::PathBuf> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("KLEIBER_PYTHON")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain([root.join("target/interop-venv/bin/python")])
        .find(|p| {
            std::process::Command::new(p)
                .args(["-c", "import slixmpp"])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        })
}

/// The interop Python, or `None` (test skipped) when slixmpp is missing, unless
/// `KLEIBER_REQUIRE_INTEROP=1` (set by `.ci/run`) makes that a failure.
pub fn interop_python_or_skip() -> Option<std::path::PathBuf> {
    let py = interop_python();
    if py.is_none() {
        if std::env::var("KLEIBER_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!("slixmpp is not installed (KLEIBER_PYTHON / target/interop-venv)");
        }
        eprintln!("SKIPPED: no Python with slixmpp; run .ci/run or set KLEIBER_PYTHON");
    }
    py
}

/// `tests/interop/<dir>`, when `node` runs and `npm ci` installed `package` there; else `None`
/// (test skipped), or a failure under `KLEIBER_REQUIRE_INTEROP=1` (set by `.ci/run`).
pub fn node_package_or_skip(dir: &str, package: &str) -> Option<std::path::PathBuf> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(dir);
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if node && path.join("node_modules").join(package).is_dir() {
        return Some(path);
    }
    if std::env::var("KLEIBER_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("{package} missing: node and `npm ci` in tests/interop/{dir} are needed");
    }
    eprintln!("SKIPPED: no node or no {package}; run .ci/run or `npm ci` in tests/interop/{dir}");
    None
}

/// Run `tests/interop/<script>` against the server on `port` and assert it succeeded;
/// returns its standard output.
pub fn run_interop(
    py: &std::path::Path,
    script: &str,
    port: u16,
    mode: &str,
    prefix: &str,
) -> String {
    run_interop_with(py, script, port, mode, prefix, &[])
}

/// [`run_interop`] with `extra` arguments for the script.
pub fn run_interop_with(
    py: &std::path::Path,
    script: &str,
    port: u16,
    mode: &str,
    prefix: &str,
    extra: &[&str],
) -> String {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(script);
    let out = std::process::Command::new(py)
        .arg(path)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--domain",
            "localhost",
        ])
        .args(["--mode", mode, "--prefix", prefix])
        .args(extra)
        .output()
        .expect("run the slixmpp client");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} {mode} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

/// Wait (a hang guard, no timing assertion) until `user@domain` has `n` offline messages
/// stored; returns the count seen last.
pub async fn wait_offline(s: &TestServer, domain: &str, user: &str, n: u64) -> u64 {
    let mut count = 0;
    for _ in 0..400 {
        count = s
            .shared()
            .store
            .offline
            .usage(domain, user)
            .map(|u| u.count)
            .unwrap_or(0);
        if count >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    count
}

/// The delivery-error log's entry for `to`, waiting for it to be written (the scheduler
/// writes it asynchronously).
pub async fn delivery_error(
    s: &TestServer,
    to: &str,
) -> kleiber::store::delivery_errors::DeliveryError {
    for _ in 0..400 {
        let entries = s.shared().store.delivery_errors.since(0, 1000).unwrap();
        if let Some(e) = entries.into_iter().find(|e| e.to == to) {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no delivery-error entry for {to}");
}
