//! XMPP c2s load generator for kleiber (and, for comparison, Prosody and ejabberd).
//!
//! Run with `cargo bench --bench load -- --help`. It is a standalone client: it does not use the
//! kleiber library, only tokio, OpenSSL and the hashing crates.
//!
//! Two modes:
//!
//! * throughput (default): `2 * --pairs` clients log in (STARTTLS or direct TLS, SASL PLAIN or
//!   SCRAM-SHA-1/256, resource binding, initial presence); then client `i` and client
//!   `i + pairs` play ping-pong with chat messages for `--duration` seconds, so every pair has
//!   exactly one message in flight. Reports messages/s, latency percentiles, errors, logins/s
//!   and, with `--server-pid`, server RSS per connection and server CPU seconds per 1000
//!   messages.
//! * idle memory (`--idle N`): N clients log in and stay idle; reports server RSS per session.
//!
//! The last line printed is a machine-readable `RESULT key=value ...` summary.

use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use clap::{Parser, ValueEnum};
use hmac::{Hmac, Mac};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use rand::Rng;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio_openssl::SslStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mech {
    #[value(name = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-1")]
    ScramSha1,
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
}

impl Mech {
    fn name(self) -> &'static str {
        match self {
            Mech::Plain => "PLAIN",
            Mech::ScramSha1 => "SCRAM-SHA-1",
            Mech::ScramSha256 => "SCRAM-SHA-256",
        }
    }
}

/// XMPP c2s load generator (throughput ping-pong or idle-session memory).
#[derive(Parser, Debug, Clone)]
#[command(name = "load", about)]
struct Args {
    /// Server address to connect to.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Server c2s port.
    #[arg(long, default_value_t = 5222)]
    port: u16,
    /// XMPP domain of the users (also used as TLS SNI).
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// Number of ping-pong pairs (2 * pairs client connections).
    #[arg(long, default_value_t = 250)]
    pairs: usize,
    /// Length of the measured ping-pong phase, in seconds.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// User names are PREFIX0, PREFIX1, ...
    #[arg(long, default_value = "bench")]
    user_prefix: String,
    /// Password of all users.
    #[arg(long, default_value = "secret")]
    password: String,
    /// SASL mechanism.
    #[arg(long, value_enum, default_value = "SCRAM-SHA-1")]
    mech: Mech,
    /// Register the users first (XEP-0077 in-band registration); 'conflict' is ignored.
    #[arg(long)]
    register: bool,
    /// Only register the users (as many as the selected mode uses), then exit.
    #[arg(long)]
    register_only: bool,
    /// Use XEP-0368 direct TLS instead of STARTTLS.
    #[arg(long)]
    direct_tls: bool,
    /// Server process id(s), comma separated, for RSS and CPU figures (summed).
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Memory mode: open N idle authenticated sessions, report server RSS per session.
    #[arg(long)]
    idle: Option<usize>,
    /// Maximum number of logins in progress at once.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// Size of each message body in bytes (at least the header needs ~40).
    #[arg(long, default_value_t = 64)]
    body_size: usize,
    /// Resource to request at bind time.
    #[arg(long, default_value = "load")]
    resource: String,
    /// Give up if not all sessions are bound after this many seconds.
    #[arg(long, default_value_t = 120)]
    login_timeout: u64,
    /// Idle mode: seconds to wait after the last login before reading the server's RSS.
    #[arg(long, default_value_t = 3)]
    settle: u64,
    /// Label printed as server=... in the RESULT line.
    #[arg(long, default_value = "unknown")]
    label: String,
    /// Tokio worker threads (default: number of CPUs).
    #[arg(long)]
    threads: Option<usize>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

// ---------------------------------------------------------------------------------------------
// Shared state and statistics

/// Monotonic clock shared by all connections; message bodies carry microseconds since START.
static START: OnceLock<Instant> = OnceLock::new();

fn now_us() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

#[derive(Default)]
struct Stats {
    bound: AtomicUsize,
    failed: AtomicUsize,
    errors: AtomicU64,
    stale: AtomicU64,
    /// Messages sent minus messages received by their addressee (for draining at the end).
    inflight: AtomicI64,
    /// Only the first few error descriptions are printed.
    error_log: Mutex<Vec<String>>,
}

impl Stats {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut log = self.error_log.lock().unwrap();
        if log.len() < 10 {
            eprintln!("error: {what}");
            log.push(what);
        }
    }
}

/// Phases of the run, broadcast from main to the connection tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Login,
    /// Ping-pong until the deadline (microseconds since START).
    Run {
        deadline_us: u64,
    },
    /// Stop sending; keep reading so messages in flight are not stored offline.
    Drain,
    /// Close the streams.
    Close,
}

struct Shared {
    args: Args,
    stats: Stats,
    tls: SslConnector,
    login_slots: Semaphore,
    /// Full JIDs as bound by the server, by client index.
    jids: Vec<OnceLock<String>>,
    phase: watch::Receiver<Phase>,
    /// Random tag distinguishing this run's messages from stale (offline-stored) ones.
    run_id: u32,
}

// ---------------------------------------------------------------------------------------------
// Incremental XML stream scanning

enum Event {
    StreamHeader,
    Element(String),
    StreamEnd,
}

/// Finds the end of a tag starting at `buf[i] == b'<'`: index just past `>`, respecting quotes.
fn tag_end(buf: &[u8], i: usize) -> Option<usize> {
    let mut quote = 0u8;
    for (j, &c) in buf.iter().enumerate().skip(i + 1) {
        if quote != 0 {
            if c == quote {
                quote = 0;
            }
        } else if c == b'"' || c == b'\'' {
            quote = c;
        } else if c == b'>' {
            return Some(j + 1);
        }
    }
    None
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Returns the next complete top-level event in `buf` and how many bytes it used.
/// `None` means more data is needed. Text between top-level elements is skipped.
fn scan(buf: &[u8]) -> Res<Option<(Event, usize)>> {
    let Some(start) = buf.iter().position(|&c| c == b'<') else {
        return Ok(None);
    };
    let rest = &buf[start..];
    if rest.len() < 2 {
        return Ok(None);
    }
    if rest[1] == b'?' {
        // XML declaration: skip it and go on.
        let Some(e) = find(buf, b"?>", start) else {
            return Ok(None);
        };
        return Ok(scan(&buf[e + 2..])?.map(|(ev, n)| (ev, n + e + 2)));
    }
    if rest.starts_with(b"</") {
        let Some(e) = tag_end(buf, start) else {
            return Ok(None);
        };
        return Ok(Some((Event::StreamEnd, e)));
    }
    let head_len = rest.len().min(16);
    if rest[..head_len].starts_with(b"<stream:stream") || rest.starts_with(b"<stream ") {
        let Some(e) = tag_end(buf, start) else {
            return Ok(None);
        };
        return Ok(Some((Event::StreamHeader, e)));
    }
    // A top-level element: follow tags until its depth returns to zero.
    let mut depth = 0usize;
    let mut i = start;
    loop {
        let Some(p) = buf[i..].iter().position(|&c| c == b'<') else {
            return Ok(None);
        };
        i += p;
        if i + 1 >= buf.len() {
            return Ok(None);
        }
        match buf[i + 1] {
            b'/' => {
                let Some(e) = tag_end(buf, i) else {
                    return Ok(None);
                };
                depth = depth.checked_sub(1).ok_or("unbalanced XML")?;
                i = e;
            }
            b'!' => {
                // Comment or CDATA (not allowed in XMPP, but skip them correctly anyway).
                let (open, close): (&[u8], &[u8]) = if buf[i..].starts_with(b"<![CDATA[") {
                    (b"<![CDATA[", b"]]>")
                } else {
                    (b"<!--", b"-->")
                };
                if buf.len() < i + open.len() {
                    return Ok(None);
                }
                let Some(e) = find(buf, close, i + open.len()) else {
                    return Ok(None);
                };
                i = e + close.len();
            }
            b'?' => {
                let Some(e) = find(buf, b"?>", i + 2) else {
                    return Ok(None);
                };
                i = e + 2;
            }
            _ => {
                let Some(e) = tag_end(buf, i) else {
                    return Ok(None);
                };
                if buf[e - 2] != b'/' {
                    depth += 1;
                }
                i = e;
            }
        }
        if depth == 0 {
            let s = std::str::from_utf8(&buf[start..i])
                .map_err(|_| "invalid UTF-8 from server")?
                .to_owned();
            return Ok(Some((Event::Element(s), i)));
        }
    }
}

/// Name of an element (`message`, `iq`, `stream:features`, ...).
fn elem_name(s: &str) -> &str {
    let s = s.strip_prefix('<').unwrap_or(s);
    let end = s
        .find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/')
        .unwrap_or(s.len());
    &s[..end]
}

/// Value of an attribute of the outermost start tag (not unescaped).
fn attr<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    let head = &s[..tag_end(s.as_bytes(), 0).unwrap_or(s.len())];
    let mut from = 0;
    while let Some(p) = head[from..].find(name) {
        let at = from + p;
        from = at + name.len();
        let before_ok = at > 0 && head.as_bytes()[at - 1].is_ascii_whitespace();
        let after = head[from..].trim_start();
        if !before_ok || !after.starts_with('=') {
            continue;
        }
        let after = after[1..].trim_start();
        let q = after.chars().next()?;
        if q != '\'' && q != '"' {
            return None;
        }
        let v = &after[1..];
        return v.find(q).map(|e| &v[..e]);
    }
    None
}

/// Text content of the first child element named `tag` (`<tag>TEXT</tag>`), `""` if empty.
fn child_text<'a>(s: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}");
    let mut from = 0;
    loop {
        let p = from + s[from..].find(&open)?;
        from = p + open.len();
        let next = s.as_bytes().get(from).copied()?;
        if !(next == b'>' || next == b'/' || next.is_ascii_whitespace()) {
            continue;
        }
        let e = tag_end(s.as_bytes(), p)?;
        if s.as_bytes()[e - 2] == b'/' {
            return Some("");
        }
        let close = format!("</{tag}>");
        let c = e + s[e..].find(&close)?;
        return Some(&s[e..c]);
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// The defined-condition element name of an error stanza or stream error, for messages.
fn error_condition(s: &str) -> String {
    let inner = match s.find("<error") {
        Some(p) => &s[p..],
        None => s,
    };
    let mut out = String::new();
    let mut from = 0;
    while let Some(p) = inner[from..].find('<') {
        let at = from + p;
        from = at + 1;
        let n = elem_name(&inner[at..]);
        if !n.is_empty() && n != "error" && n != "stream:error" && !n.starts_with('/') {
            out = n.to_owned();
            break;
        }
    }
    if out.is_empty() {
        out = "unknown".into();
    }
    out
}

// ---------------------------------------------------------------------------------------------
// XMPP connection

struct Xmpp<S> {
    io: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Xmpp<S> {
    fn new(io: S) -> Self {
        Xmpp {
            io,
            buf: Vec::with_capacity(8192),
        }
    }

    async fn send(&mut self, s: &str) -> Res<()> {
        self.io.write_all(s.as_bytes()).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Next stream header, element or stream end. Errors on EOF.
    async fn next(&mut self) -> Res<Event> {
        loop {
            if let Some((ev, used)) = scan(&self.buf)? {
                self.buf.drain(..used);
                return Ok(ev);
            }
            if self.buf.len() > 1 << 20 {
                return Err("stanza larger than 1 MiB".into());
            }
            self.buf.reserve(4096);
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Err("connection closed by server".into());
            }
        }
    }

    /// Next element; a stream end or stream error is an error.
    async fn element(&mut self) -> Res<String> {
        match self.next().await? {
            Event::Element(e) if elem_name(&e) == "stream:error" => {
                Err(format!("stream error: {}", error_condition(&e)).into())
            }
            Event::Element(e) => Ok(e),
            Event::StreamHeader => Err("unexpected stream header".into()),
            Event::StreamEnd => Err("stream closed by server".into()),
        }
    }

    /// Sends a stream header and returns the server's stream features.
    async fn open_stream(&mut self, domain: &str) -> Res<String> {
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>"
        ))
        .await?;
        loop {
            match self.next().await? {
                Event::StreamHeader => {}
                Event::Element(e) if elem_name(&e) == "stream:features" => return Ok(e),
                Event::Element(e) if elem_name(&e) == "stream:error" => {
                    return Err(format!("stream error: {}", error_condition(&e)).into())
                }
                Event::Element(e) => return Err(format!("expected features, got {e}").into()),
                Event::StreamEnd => return Err("stream closed by server".into()),
            }
        }
    }

    /// Sends an IQ and waits for its response (ignoring everything else meanwhile).
    async fn iq(&mut self, id: &str, iq: &str) -> Res<String> {
        self.send(iq).await?;
        loop {
            let e = self.element().await?;
            if elem_name(&e) == "iq" && attr(&e, "id") == Some(id) {
                return Ok(e);
            }
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// TCP connect, TLS (direct or STARTTLS); returns the TLS stream and its stream features.
async fn connect(sh: &Shared) -> Res<(Xmpp<SslStream<TcpStream>>, String)> {
    let a = &sh.args;
    let tcp = TcpStream::connect((a.host.as_str(), a.port)).await?;
    tcp.set_nodelay(true)?;
    let tcp = if a.direct_tls {
        tcp
    } else {
        let mut x = Xmpp::new(tcp);
        let features = x.open_stream(&a.domain).await?;
        if !features.contains("urn:ietf:params:xml:ns:xmpp-tls") {
            return Err("server does not offer STARTTLS".into());
        }
        x.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await?;
        let e = x.element().await?;
        if elem_name(&e) != "proceed" {
            return Err(format!("STARTTLS refused: {e}").into());
        }
        if !x.buf.is_empty() {
            return Err("data after <proceed/>".into());
        }
        x.io
    };
    let mut cfg = sh.tls.configure()?;
    cfg.set_verify_hostname(false);
    cfg.set_verify(SslVerifyMode::NONE);
    let ssl = cfg.into_ssl(&a.domain)?;
    let mut tls = SslStream::new(ssl, tcp)?;
    Pin::new(&mut tls).connect().await?;
    let mut x = Xmpp::new(tls);
    let features = x.open_stream(&a.domain).await?;
    Ok((x, features))
}

// ---------------------------------------------------------------------------------------------
// SASL

fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha1> as Mac>::new_from_slice(key).expect("any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// RFC 5802 client state after client-first.
struct Scram {
    sha256: bool,
    client_first_bare: String,
    nonce: String,
    server_signature: Vec<u8>,
}

impl Scram {
    fn new(sha256: bool, user: &str) -> (Scram, String) {
        let mut rng = rand::thread_rng();
        let nonce: String = (0..24)
            .map(|_| rng.sample(rand::distributions::Alphanumeric) as char)
            .collect();
        let user = user.replace('=', "=3D").replace(',', "=2C");
        let client_first_bare = format!("n={user},r={nonce}");
        let first = format!("n,,{client_first_bare}");
        let s = Scram {
            sha256,
            client_first_bare,
            nonce,
            server_signature: Vec::new(),
        };
        (s, first)
    }

    fn hmac(&self, key: &[u8], data: &[u8]) -> Vec<u8> {
        if self.sha256 {
            hmac_sha256(key, data)
        } else {
            hmac_sha1(key, data)
        }
    }

    fn hash(&self, data: &[u8]) -> Vec<u8> {
        if self.sha256 {
            Sha256::digest(data).to_vec()
        } else {
            Sha1::digest(data).to_vec()
        }
    }

    /// Given server-first, returns client-final.
    fn client_final(&mut self, server_first: &str, password: &str) -> Res<String> {
        let mut r = None;
        let mut salt = None;
        let mut iters = None;
        for part in server_first.split(',') {
            if let Some(v) = part.strip_prefix("r=") {
                r = Some(v);
            } else if let Some(v) = part.strip_prefix("s=") {
                salt = Some(B64.decode(v)?);
            } else if let Some(v) = part.strip_prefix("i=") {
                iters = Some(v.parse::<u32>()?);
            } else if part.starts_with("m=") {
                return Err("SCRAM: unsupported mandatory extension".into());
            }
        }
        let (r, salt, iters) = match (r, salt, iters) {
            (Some(r), Some(s), Some(i)) if i > 0 => (r, s, i),
            _ => return Err(format!("SCRAM: bad server-first {server_first:?}").into()),
        };
        if !r.starts_with(&self.nonce) {
            return Err("SCRAM: server nonce does not extend ours".into());
        }
        let salted = if self.sha256 {
            let mut out = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iters, &mut out);
            out.to_vec()
        } else {
            let mut out = [0u8; 20];
            pbkdf2::pbkdf2_hmac::<Sha1>(password.as_bytes(), &salt, iters, &mut out);
            out.to_vec()
        };
        let without_proof = format!("c=biws,r={r}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_key = self.hmac(&salted, b"Client Key");
        let stored_key = self.hash(&client_key);
        let client_sig = self.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_sig)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = self.hmac(&salted, b"Server Key");
        self.server_signature = self.hmac(&server_key, auth_message.as_bytes());
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    fn verify(&self, server_final: &str) -> Res<()> {
        if let Some(e) = server_final.strip_prefix("e=") {
            return Err(format!("SCRAM server error: {e}").into());
        }
        let v = server_final
            .split(',')
            .find_map(|p| p.strip_prefix("v="))
            .ok_or("SCRAM: no server signature")?;
        if B64.decode(v)? != self.server_signature {
            return Err("SCRAM: wrong server signature".into());
        }
        Ok(())
    }
}

fn b64_text(s: &str) -> Res<String> {
    let t = s.trim();
    if t.is_empty() || t == "=" {
        return Ok(String::new());
    }
    Ok(String::from_utf8(B64.decode(t)?)?)
}

async fn sasl<S: Io>(x: &mut Xmpp<S>, features: &str, mech: Mech, user: &str, pw: &str) -> Res<()> {
    let wanted = format!("<mechanism>{}</mechanism>", mech.name());
    if !features.contains(&wanted) {
        return Err(format!("server does not offer {}", mech.name()).into());
    }
    const NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
    let mut scram = None;
    let initial = match mech {
        Mech::Plain => format!("\0{user}\0{pw}"),
        Mech::ScramSha1 | Mech::ScramSha256 => {
            let (s, first) = Scram::new(mech == Mech::ScramSha256, user);
            scram = Some(s);
            first
        }
    };
    x.send(&format!(
        "<auth xmlns='{NS}' mechanism='{}'>{}</auth>",
        mech.name(),
        B64.encode(initial)
    ))
    .await?;
    loop {
        let e = x.element().await?;
        let text = || -> Res<String> {
            let t = tag_end(e.as_bytes(), 0).unwrap_or(e.len());
            let c = e.rfind("</").unwrap_or(e.len()).max(t);
            b64_text(&e[t..c])
        };
        match elem_name(&e) {
            "challenge" => {
                let s = scram.as_mut().ok_or("unexpected SASL challenge")?;
                if !s.server_signature.is_empty() {
                    // Some servers send the server-final as a challenge.
                    s.verify(&text()?)?;
                    x.send(&format!("<response xmlns='{NS}'/>")).await?;
                    continue;
                }
                let fin = s.client_final(&text()?, pw)?;
                x.send(&format!(
                    "<response xmlns='{NS}'>{}</response>",
                    B64.encode(fin)
                ))
                .await?;
            }
            "success" => {
                if let Some(s) = &scram {
                    let t = text()?;
                    if !t.is_empty() {
                        s.verify(&t)?;
                    }
                }
                return Ok(());
            }
            "failure" => {
                return Err(format!("SASL failure: {}", error_condition(&e)).into());
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Session setup

fn user_name(a: &Args, i: usize) -> String {
    format!("{}{}", a.user_prefix, i)
}

async fn register<S: Io>(x: &mut Xmpp<S>, features: &str, user: &str, pw: &str) -> Res<()> {
    if !features.contains("http://jabber.org/features/iq-register") {
        // Some servers only answer the IQ; try anyway.
    }
    let r = x
        .iq(
            "reg1",
            &format!(
                "<iq type='set' id='reg1'><query xmlns='jabber:iq:register'>\
                 <username>{}</username><password>{}</password></query></iq>",
                xml_escape(user),
                xml_escape(pw)
            ),
        )
        .await?;
    match attr(&r, "type") {
        Some("result") => Ok(()),
        _ if r.contains("<conflict") => Ok(()),
        _ => Err(format!("registration failed: {}", error_condition(&r)).into()),
    }
}

/// Logs client `i` in; returns the stream and its bound full JID.
async fn login(sh: &Shared, i: usize) -> Res<(Xmpp<SslStream<TcpStream>>, String)> {
    let a = &sh.args;
    let user = user_name(a, i);
    let (mut x, features) = connect(sh).await?;
    if a.register || a.register_only {
        register(&mut x, &features, &user, &a.password).await?;
        if a.register_only {
            let _ = x.send("</stream:stream>").await;
            return Ok((x, String::new()));
        }
    }
    sasl(&mut x, &features, a.mech, &user, &a.password).await?;
    let features = x.open_stream(&a.domain).await?;
    if !features.contains("urn:ietf:params:xml:ns:xmpp-bind") {
        return Err("server does not offer resource binding".into());
    }
    let r = x
        .iq(
            "bind1",
            &format!(
                "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
                 <resource>{}</resource></bind></iq>",
                xml_escape(&a.resource)
            ),
        )
        .await?;
    if attr(&r, "type") != Some("result") {
        return Err(format!("bind failed: {}", error_condition(&r)).into());
    }
    let jid = child_text(&r, "jid")
        .ok_or("bind result without jid")?
        .to_owned();
    // RFC 3921 session establishment, only if the server says it is not optional.
    if let Some(p) = features.find("urn:ietf:params:xml:ns:xmpp-session") {
        let rest = &features[p..];
        let end = rest.find("</session>").unwrap_or(0);
        if end > 0 && !rest[..end].contains("optional") {
            let r = x
                .iq(
                    "sess1",
                    "<iq type='set' id='sess1'>\
                     <session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
                )
                .await?;
            if attr(&r, "type") != Some("result") {
                return Err(format!("session failed: {}", error_condition(&r)).into());
            }
        }
    }
    x.send("<presence/>").await?;
    Ok((x, jid))
}

// ---------------------------------------------------------------------------------------------
// Per-connection task

fn message(sh: &Shared, to: &str, seq: u64, filler: &str) -> String {
    let mut s = String::with_capacity(160 + filler.len());
    let _ = write!(
        s,
        "<message to='{}' type='chat' id='m{seq}'><body>kb {:08x} {seq} {} {filler}</body></message>",
        xml_escape(to),
        sh.run_id,
        now_us()
    );
    s
}

/// Parses a body written by `message`: (run id, sequence, send time in µs).
fn parse_body(body: &str) -> Option<(u32, u64, u64)> {
    let mut it = body.split(' ');
    if it.next()? != "kb" {
        return None;
    }
    let run = u32::from_str_radix(it.next()?, 16).ok()?;
    let seq = it.next()?.parse().ok()?;
    let ts = it.next()?.parse().ok()?;
    Some((run, seq, ts))
}

/// Answers server IQ requests (e.g. XEP-0199 pings) so that the server keeps us.
async fn answer_iq<S: Io>(x: &mut Xmpp<S>, e: &str) -> Res<()> {
    if matches!(attr(e, "type"), Some("get") | Some("set")) {
        let id = attr(e, "id").unwrap_or("");
        let reply = match attr(e, "from") {
            Some(f) => format!("<iq type='result' id='{id}' to='{f}'/>"),
            None => format!("<iq type='result' id='{id}'/>"),
        };
        x.send(&reply).await?;
    }
    Ok(())
}

/// One client: log in, wait for the start, ping-pong (or idle), drain, close.
/// Returns the latencies (µs) of the messages it received during the run.
async fn client(sh: Arc<Shared>, i: usize, partner: Option<usize>, initiator: bool) -> Vec<u32> {
    let mut lat = Vec::new();
    let permit = sh.login_slots.acquire().await.expect("semaphore open");
    let r = login(&sh, i).await;
    drop(permit);
    let (mut x, jid) = match r {
        Ok(v) => v,
        Err(e) => {
            sh.stats.failed.fetch_add(1, Ordering::SeqCst);
            sh.stats
                .error(format!("login {}: {e}", user_name(&sh.args, i)));
            return lat;
        }
    };
    if sh.args.register_only {
        sh.stats.bound.fetch_add(1, Ordering::SeqCst);
        return lat;
    }
    let _ = sh.jids[i].set(jid);
    sh.stats.bound.fetch_add(1, Ordering::SeqCst);
    if let Err(e) = session(&sh, &mut x, partner, initiator, &mut lat).await {
        sh.stats.error(format!("{}: {e}", user_name(&sh.args, i)));
        return lat;
    }
    // Close the stream politely and wait (briefly) for the server's close.
    let _ = x.send("</stream:stream>").await;
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match x.next().await {
                Ok(Event::StreamEnd) | Err(_) => break,
                _ => {}
            }
        }
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(1), x.io.shutdown()).await;
    lat
}

async fn session<S: Io>(
    sh: &Shared,
    x: &mut Xmpp<S>,
    partner: Option<usize>,
    initiator: bool,
    lat: &mut Vec<u32>,
) -> Res<()> {
    let mut phase_rx = sh.phase.clone();
    let filler_len = sh.args.body_size.saturating_sub(40);
    let filler = "x".repeat(filler_len);
    let mut phase = *phase_rx.borrow_and_update();
    let mut partner_jid: Option<String> = None;
    loop {
        tokio::select! {
            changed = phase_rx.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let new = *phase_rx.borrow_and_update();
                if let (Phase::Run { .. }, Some(p)) = (new, partner) {
                    if phase == Phase::Login {
                        partner_jid = sh.jids[p].get().cloned();
                        if initiator {
                            if let Some(to) = &partner_jid {
                                sh.stats.inflight.fetch_add(1, Ordering::Relaxed);
                                x.send(&message(sh, to, 0, &filler)).await?;
                            }
                        }
                    }
                }
                phase = new;
                if phase == Phase::Close {
                    return Ok(());
                }
            }
            ev = x.next() => {
                let e = match ev? {
                    Event::Element(e) => e,
                    Event::StreamEnd => return Err("stream closed by server".into()),
                    Event::StreamHeader => return Err("unexpected stream header".into()),
                };
                match elem_name(&e) {
                    "message" => {
                        if attr(&e, "type") == Some("error") {
                            sh.stats.error(format!("message error: {}", error_condition(&e)));
                            continue;
                        }
                        let Some((run, seq, ts)) = child_text(&e, "body").and_then(parse_body) else {
                            continue;
                        };
                        if run != sh.run_id || e.contains("urn:xmpp:delay") {
                            sh.stats.stale.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        sh.stats.inflight.fetch_sub(1, Ordering::Relaxed);
                        let now = now_us();
                        let Phase::Run { deadline_us } = phase else {
                            continue;
                        };
                        if now > deadline_us {
                            continue;
                        }
                        lat.push(now.saturating_sub(ts).min(u32::MAX as u64) as u32);
                        if let Some(to) = &partner_jid {
                            sh.stats.inflight.fetch_add(1, Ordering::Relaxed);
                            x.send(&message(sh, to, seq + 1, &filler)).await?;
                        }
                    }
                    "iq" => {
                        if attr(&e, "type") == Some("error") {
                            sh.stats.error(format!("iq error: {}", error_condition(&e)));
                        }
                        answer_iq(x, &e).await?;
                    }
                    "presence" if attr(&e, "type") == Some("error") => {
                        sh.stats.error(format!("presence error: {}", error_condition(&e)));
                    }
                    "stream:error" => {
                        return Err(format!("stream error: {}", error_condition(&e)).into());
                    }
                    _ => {}
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// /proc figures

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// utime + stime in clock ticks, from /proc/PID/stat.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn rss_kib(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Process time of the whole machine (all CPUs), from /proc/stat: user + nice + system.
/// Interrupt and softirq time (loopback TCP is largely processed there) is left out, as it is
/// not charged to any process.
fn machine_busy_ticks() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is included in user/nice).
    Some(v.first()? + v.get(1)? + v.get(2)?)
}

/// Summed over the server's pids; `None` without --server-pid or if a process vanished.
fn server_cpu(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| cpu_ticks(&p.to_string())).sum()
}

fn server_rss(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| rss_kib(&p.to_string())).sum()
}

// ---------------------------------------------------------------------------------------------
// Main

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.prec$}"),
        _ => "na".into(),
    }
}

/// Waits until every client is bound or failed, or the login timeout passes.
async fn wait_logins(sh: &Shared, total: usize) -> bool {
    let limit = Instant::now() + Duration::from_secs(sh.args.login_timeout);
    let mut last_print = Instant::now();
    loop {
        let b = sh.stats.bound.load(Ordering::SeqCst);
        let f = sh.stats.failed.load(Ordering::SeqCst);
        if b + f >= total {
            return true;
        }
        if Instant::now() > limit {
            eprintln!("login timeout: {b} bound, {f} failed of {total}");
            return false;
        }
        if last_print.elapsed() > Duration::from_secs(5) {
            eprintln!("  ... {b} bound, {f} failed of {total}");
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn run(args: Args) -> Res<()> {
    START.get_or_init(Instant::now);
    let idle = args.idle;
    let total = match idle {
        Some(n) => n,
        None => args.pairs * 2,
    };
    if total == 0 {
        return Err("nothing to do (0 clients)".into());
    }
    let mut tls = SslConnector::builder(SslMethod::tls_client())?;
    tls.set_verify(SslVerifyMode::NONE);
    let (phase_tx, phase_rx) = watch::channel(Phase::Login);
    let sh = Arc::new(Shared {
        stats: Stats::default(),
        tls: tls.build(),
        login_slots: Semaphore::new(args.concurrency.max(1)),
        jids: (0..total).map(|_| OnceLock::new()).collect(),
        phase: phase_rx,
        run_id: rand::thread_rng().gen(),
        args: args.clone(),
    });
    let pids = &args.server_pid;
    let ticks = clock_ticks();
    let mode = if args.register_only {
        "register"
    } else if idle.is_some() {
        "idle"
    } else {
        "throughput"
    };
    eprintln!(
        "{mode}: {total} clients to {}:{} domain {} mech {}{}",
        args.host,
        args.port,
        args.domain,
        args.mech.name(),
        if args.direct_tls { " direct-tls" } else { "" }
    );

    let rss_before = server_rss(pids);
    let login_cpu0 = (server_cpu(pids), cpu_ticks("self"));
    let login_start = Instant::now();
    let mut handles = Vec::with_capacity(total);
    for i in 0..total {
        let (partner, initiator) = match idle {
            Some(_) => (None, false),
            None if i < args.pairs => (Some(i + args.pairs), true),
            None => (Some(i - args.pairs), false),
        };
        handles.push(tokio::spawn(client(sh.clone(), i, partner, initiator)));
    }
    let all_done = wait_logins(&sh, total).await;
    let login_secs = login_start.elapsed().as_secs_f64();
    // CPU use during the logins (percent of one CPU): shows which side limits logins/s. The
    // generator's share includes its own SCRAM work (PBKDF2, as many iterations as the server's).
    let pct = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / ticks / login_secs * 100.0),
        _ => None,
    };
    let login_cpu = format!(
        "login_server_cpu_pct={} login_gen_cpu_pct={}",
        fmt_opt(pct(login_cpu0.0, server_cpu(pids)), 0),
        fmt_opt(pct(login_cpu0.1, cpu_ticks("self")), 0)
    );
    let bound = sh.stats.bound.load(Ordering::SeqCst);
    let failed = sh.stats.failed.load(Ordering::SeqCst);
    let logins_per_s = bound as f64 / login_secs;
    eprintln!(
        "{bound} sessions ready, {failed} failed, in {login_secs:.2} s ({logins_per_s:.0}/s)"
    );
    if bound == 0 {
        let _ = phase_tx.send(Phase::Close);
        return Err("no session could be established".into());
    }
    if args.register_only {
        for h in handles {
            let _ = h.await;
        }
        let errors = sh.stats.errors.load(Ordering::Relaxed);
        println!(
            "RESULT server={} mode=register users={total} ok={bound} failed={failed} \
             per_s={logins_per_s:.1} errors={errors}",
            args.label
        );
        return if failed == 0 {
            Ok(())
        } else {
            Err("some registrations failed".into())
        };
    }

    let mut rss_after = server_rss(pids);
    if idle.is_some() && all_done {
        tokio::time::sleep(Duration::from_secs(args.settle)).await;
        rss_after = server_rss(pids);
    }
    let rss_per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) if bound > 0 => Some((a as f64 - b as f64) / bound as f64),
        _ => None,
    };

    let mut line = format!("RESULT server={} mode={mode}", args.label);
    let rss_s = |v: Option<u64>| v.map_or("na".to_string(), |v| v.to_string());

    if let Some(n) = idle {
        let _ = phase_tx.send(Phase::Close);
        let mut lat = Vec::new();
        for h in handles {
            lat.extend(h.await.unwrap_or_default());
        }
        let errors = sh.stats.errors.load(Ordering::Relaxed);
        let _ = write!(
            line,
            " sessions={n} bound={bound} login_s={login_secs:.2} logins_per_s={logins_per_s:.1} \
             {login_cpu} rss_before_kib={} rss_after_kib={} rss_kib_per_session={} errors={errors}",
            rss_s(rss_before),
            rss_s(rss_after),
            fmt_opt(rss_per_conn, 1)
        );
        println!("{line}");
        return Ok(());
    }

    // Throughput run.
    let cpu0 = server_cpu(pids);
    let self0 = cpu_ticks("self");
    let busy0 = machine_busy_ticks();
    let t0 = Instant::now();
    let deadline_us = now_us() + args.duration * 1_000_000;
    let _ = phase_tx.send(Phase::Run { deadline_us });
    let mut progress = tokio::time::interval(Duration::from_secs(5));
    progress.tick().await;
    let end = tokio::time::Instant::from_std(t0 + Duration::from_secs(args.duration));
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end) => break,
            _ = progress.tick() => {
                eprintln!(
                    "  ... {:.0} s, errors {}",
                    t0.elapsed().as_secs_f64(),
                    sh.stats.errors.load(Ordering::Relaxed)
                );
            }
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu1 = server_cpu(pids);
    let self1 = cpu_ticks("self");
    let busy1 = machine_busy_ticks();
    let _ = phase_tx.send(Phase::Drain);
    // Let messages still in flight arrive, so that the server does not store them offline.
    let drain_start = Instant::now();
    while sh.stats.inflight.load(Ordering::Relaxed) > 0
        && drain_start.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let undelivered = sh.stats.inflight.load(Ordering::Relaxed);
    let _ = phase_tx.send(Phase::Close);
    let mut lat: Vec<u32> = Vec::new();
    for h in handles {
        lat.extend(h.await.unwrap_or_default());
    }
    lat.sort_unstable();
    let msgs = lat.len();
    let msg_per_s = msgs as f64 / wall;
    let mean = if msgs > 0 {
        lat.iter().map(|&v| v as f64).sum::<f64>() / msgs as f64 / 1000.0
    } else {
        0.0
    };
    let cpu_s = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / ticks),
        _ => None,
    };
    let cpu_s_per_1k = cpu_s.filter(|_| msgs > 0).map(|c| c / msgs as f64 * 1000.0);
    let self_cpu_pct = match (self0, self1) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / ticks / wall * 100.0),
        _ => None,
    };
    // CPU used by everything else on the machine (other builds, ...): should be near 0.
    let other_cpu_pct = match (busy0, busy1, self0, self1) {
        (Some(b0), Some(b1), Some(s0), Some(s1)) if cpu_s.is_some() => {
            let busy = b1.saturating_sub(b0) as f64 / ticks;
            let own = s1.saturating_sub(s0) as f64 / ticks;
            Some((busy - own - cpu_s.unwrap_or(0.0)).max(0.0) / wall * 100.0)
        }
        _ => None,
    };
    let errors = sh.stats.errors.load(Ordering::Relaxed);
    let stale = sh.stats.stale.load(Ordering::Relaxed);
    let _ = write!(
        line,
        " pairs={} duration_s={wall:.1} msgs={msgs} msg_per_s={msg_per_s:.1} \
         mean_ms={mean:.2} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2} \
         cpu_s_per_1k={} server_cpu_pct={} gen_cpu_pct={} other_cpu_pct={} \
         logins_per_s={logins_per_s:.1} {login_cpu} rss_kib_per_conn={} bound={bound} errors={errors} stale={stale} undelivered={undelivered}",
        args.pairs,
        percentile(&lat, 0.50),
        percentile(&lat, 0.90),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
        fmt_opt(cpu_s_per_1k, 3),
        fmt_opt(cpu_s.map(|c| c / wall * 100.0), 0),
        fmt_opt(self_cpu_pct, 0),
        fmt_opt(other_cpu_pct, 0),
        fmt_opt(rss_per_conn, 1),
    );
    println!("{line}");
    Ok(())
}

fn main() {
    let args = Args::parse();
    // A plain `cargo bench` (or `cargo test --all-targets`) runs every bench target with no
    // arguments for us: never generate load then, whatever happens to listen on the port.
    if std::env::args().skip(1).all(|a| a == "--bench") {
        eprintln!("load: no arguments, nothing done; run `cargo bench --bench load -- --help`");
        return;
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.build().expect("tokio runtime");
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("load: {e}");
        std::process::exit(1);
    }
}
