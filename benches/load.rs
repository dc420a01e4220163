//! XMPP c2s load generator for kleiber (and, for comparison, Prosody and ejabberd).
//!
//! Run with `cargo bench --bench load -- --help`. It is a standalone client: it does not use the
//! kleiber library, only tokio, OpenSSL and the hashing crates.
//!
//! Seven modes:
//!
//! * throughput (default): `2 * --pairs` clients log in (STARTTLS or direct TLS, SASL PLAIN or
//!   SCRAM-SHA-1/256, resource binding, initial presence); then client `i` and client
//!   `i + pairs` play ping-pong with chat messages for `--duration` seconds, so every pair has
//!   exactly one message in flight. Reports messages/s, latency percentiles, errors, logins/s
//!   and, with `--server-pid`, server RSS per connection and server CPU seconds per 1000
//!   messages.
//! * federation throughput (`--peer-port P --peer-domain B`): the same ping-pong across two
//!   servers. Clients `0..pairs` log in on the first server (`--host`/`--port`/`--domain`),
//!   clients `pairs..2*pairs` on the second one (`--peer-host` (default `--host`)/`--peer-port`/
//!   `--peer-domain`), so every message goes client → server A → s2s → server B → client (or
//!   back); each client writes to its partner's full JID as bound on the other server.
//!   `--register`/`--register-only` register each user on its own server. `--server-pid` takes
//!   the pids of both servers (CPU and RSS summed; also printed per pid, `*_by_pid`, and the
//!   total RSS after the run, `rss_kib`). `--warmup S` (advisable here: the first messages
//!   wait for the server-to-server links to be set up) lets the pairs ping-pong S seconds
//!   before the measured `--duration` starts. The RESULT line says `mode=federation`.
//! * idle memory (`--idle N`): N clients log in and stay idle; reports server RSS per session.
//! * large-roster login (`--roster-login N`): user `PREFIX-owner` has N contacts
//!   `PREFIX-c0..c{N-1}`, all subscribed both ways (set up through the protocol, RFC 6121
//!   subscribe/subscribed, if not already so), `--roster-online` of them (default N/2) logged in
//!   with initial presence sent. The owner then logs in, gets its roster, sends initial presence;
//!   reports the time from the TCP connect (and from the initial presence) until the owner has an
//!   available presence from every online contact and every online contact has the owner's,
//!   and the server CPU used meanwhile. `--repeat K` measures K logins (medians reported).
//! * offline messages (`--offline N`): `PREFIX-osend` sends N chat messages to `PREFIX-orecv`,
//!   which is offline, as fast as it can (pipelined: writes of up to 64 KiB, or `--batch`
//!   messages each), then pings the server: stored/s = N / (first send until the ping result;
//!   the server may still be storing then: its CPU until it goes quiet is reported too; when
//!   the messages reach the disk is not observable from a client). Then the recipient logs
//!   in and sends initial presence: delivered/s = N / (presence sent until the N-th message),
//!   also timed from the TCP connect. Every message carries a sequence number: each must arrive
//!   exactly once, in order, with an XEP-0203 delay. `--repeat K` rounds, medians reported.
//! * reconnect-and-resume storm (`--resume-storm N`): users `PREFIX0..N-1` log in (bind, initial
//!   presence; `--concurrency` at a time) and enable XEP-0198 stream management with resumption
//!   (`<enable resume='true'/>`, the id of `<enabled/>` kept). `--settle` seconds later all N
//!   TCP connections are cut at once: closed with SO_LINGER 0 (an RST; no `</stream:stream>`,
//!   no TLS close_notify), as when a network drops, but noticed by the server at once. Then
//!   (after `--storm-delay-ms`, default 0) every client reconnects (TCP, STARTTLS or direct
//!   TLS, SASL), `--concurrency` at a time, and sends `<resume previd h/>` as the first element
//!   after the stream restart; `h` counts the stanzas (message, presence, iq) received since
//!   `<enabled/>`, and the server's `h` in `<resumed/>` is checked against the stanzas sent.
//!   The client keeps SCRAM's salted password from the first login (as real clients do), so
//!   the reconnections cost it no PBKDF2. Reports the time from the cut (and from the first
//!   reconnection) until the last `<resumed/>`, resumed and failed sessions (by reason),
//!   per-session resume latency percentiles (connect to `<resumed/>`), and with
//!   `--server-pid` the server CPU from the cut to the last `<resumed/>` (per resumption too)
//!   and its RSS before and after; also the machine's TCP counters over the storm (accept queue
//!   overflows, SYNs sent again: with more connections at once than the server's listen
//!   backlog, the kernel drops SYNs and the clients retry after 1 s, 3 s, 7 s, ...). With
//!   `--storm-message`, before the cut session i sends a chat message to session i+1 and every
//!   recipient resumes with an `h` that leaves it out (as if it had been lost with the
//!   connection): the server must send it again after `<resumed/>`, and it must arrive exactly
//!   once. The clients acknowledge everything before closing.
//! * soak (`--soak N`, N = 10,000 if not given): users `PREFIX0..N-1` log in (bind, initial
//!   presence; `--concurrency` at a time), then for `--duration` seconds (default 1800) they
//!   send `--rate` chat messages per second in all (default 1,000) from random senders to
//!   random other sessions (their full JIDs). Every message carries a sequence number and must
//!   arrive exactly once, at its addressee: lost, duplicated and unexpected (wrong addressee,
//!   unknown) messages are counted, as are error stanzas, stream errors and lost connections;
//!   after the last one is sent, the missing ones are waited for up to `--drain-secs`. With
//!   `--server-pid`, the server's RSS and CPU are sampled every `--sample-secs` (one `SAMPLE`
//!   line each on stdout) and the RSS at the end of `--warmup` (default 300 s) is compared
//!   with the RSS at the end; the slope of a least-squares line through the samples after the
//!   warm-up says, in KiB per minute, whether memory stays flat.
//!
//! The last line printed is a machine-readable `RESULT key=value ...` summary.

use std::collections::HashMap;
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
use tokio::sync::{mpsc, watch, Semaphore};
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

/// XMPP c2s load generator (throughput ping-pong, idle-session memory, large-roster login,
/// offline messages, a reconnect-and-resume storm or a soak).
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
    /// Length of the measured phase, in seconds (throughput modes: 30; soak: 1800).
    #[arg(long)]
    duration: Option<u64>,
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
    /// Idle mode: seconds to wait after the last login before reading the server's RSS;
    /// resume-storm mode: seconds between the last session set up and the cut; soak mode:
    /// seconds between the last login and the first message, and after the last message for
    /// late duplicates.
    #[arg(long, default_value_t = 3)]
    settle: u64,
    /// Label printed as server=... in the RESULT line.
    #[arg(long, default_value = "unknown")]
    label: String,
    /// Tokio worker threads (default: number of CPUs).
    #[arg(long)]
    threads: Option<usize>,
    /// Large-roster login mode: PREFIX-owner with N mutually subscribed contacts PREFIX-c<i>
    /// (PREFIX = --user-prefix); measures the owner's login until presences are exchanged.
    #[arg(long, value_name = "N")]
    roster_login: Option<usize>,
    /// Roster-login mode: contacts online during the owner's login (default: N/2).
    #[arg(long)]
    roster_online: Option<usize>,
    /// Offline-message mode: PREFIX-osend sends N messages to PREFIX-orecv while it is offline,
    /// then PREFIX-orecv logs in and receives them (PREFIX = --user-prefix).
    #[arg(long, value_name = "N")]
    offline: Option<usize>,
    /// Offline mode: messages per write (a write is one TLS record, or several if it is over
    /// 16 KiB); 0: as many as fit in 64 KiB.
    #[arg(long, default_value_t = 0)]
    batch: usize,
    /// Roster-login and offline modes: number of measured rounds (medians are reported).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Roster-login mode: subscription handshakes in progress at once during the set-up.
    #[arg(long, default_value_t = 8)]
    setup_window: usize,
    /// Roster-login and offline modes: give up waiting for the presences (the offline messages,
    /// the ping result) of one round after this many seconds.
    #[arg(long, default_value_t = 60)]
    presence_timeout: u64,
    /// Roster-login and offline modes: print every stanza received (debugging a server).
    #[arg(long, hide = true)]
    trace: bool,
    /// Federation throughput: c2s port of a second server, where clients `pairs..2*pairs` log in
    /// (with --peer-domain); messages then cross from one server to the other.
    #[arg(long)]
    peer_port: Option<u16>,
    /// Federation throughput: address of the second server (default: --host).
    #[arg(long)]
    peer_host: Option<String>,
    /// Federation throughput: XMPP domain of the second server's users (required with
    /// --peer-port).
    #[arg(long)]
    peer_domain: Option<String>,
    /// Throughput modes: seconds of unmeasured ping-pong before the measured --duration (lets
    /// server-to-server links come up in the federation mode; default 0). Soak mode: seconds
    /// into the --duration at which the server's RSS is the reference (default 300).
    #[arg(long)]
    warmup: Option<u64>,
    /// Resume-storm mode: N sessions with XEP-0198 resumption lose their TCP connections at
    /// once and resume (--concurrency at a time); measures until all are resumed.
    #[arg(long, value_name = "N")]
    resume_storm: Option<usize>,
    /// Resume-storm mode: before the cut, session i sends a chat message to session i+1, and
    /// every session's `h` then leaves it out (as if it had been lost with the connection), so
    /// the server must send it again after `<resumed/>`; checked to arrive exactly once.
    #[arg(long)]
    storm_message: bool,
    /// Resume-storm mode: milliseconds between the cut and the first reconnection.
    #[arg(long, default_value_t = 0)]
    storm_delay_ms: u64,
    /// Resume-storm mode: give up waiting for the resumptions after this many seconds.
    #[arg(long, default_value_t = 120)]
    storm_timeout: u64,
    /// Soak mode: N sessions (10,000 if N is left out) send --rate chat messages per second to
    /// each other for --duration seconds; each must arrive exactly once.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "10000")]
    soak: Option<usize>,
    /// Soak mode: chat messages per second, in all.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Soak mode: seconds between two samples of the server's RSS and CPU.
    #[arg(long, default_value_t = 30)]
    sample_secs: u64,
    /// Soak mode: after the last message is sent, seconds to wait for the missing ones.
    #[arg(long, default_value_t = 30)]
    drain_secs: u64,
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
    /// Ping-pong until the deadline; messages received from `start_us` on are measured
    /// (microseconds since START; `start_us` is later than the phase change with --warmup).
    Run {
        start_us: u64,
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

impl Shared {
    /// State for `clients` clients (room for their bound JIDs), --concurrency logins at a time,
    /// with a fresh run id; the sender sets the phases (only the throughput modes use them).
    fn new(args: &Args, clients: usize) -> Res<(Arc<Shared>, watch::Sender<Phase>)> {
        let mut tls = SslConnector::builder(SslMethod::tls_client())?;
        tls.set_verify(SslVerifyMode::NONE);
        let (phase_tx, phase) = watch::channel(Phase::Login);
        let sh = Arc::new(Shared {
            stats: Stats::default(),
            tls: tls.build(),
            login_slots: Semaphore::new(args.concurrency.max(1)),
            jids: (0..clients).map(|_| OnceLock::new()).collect(),
            phase,
            run_id: rand::thread_rng().gen(),
            args: args.clone(),
        });
        Ok((sh, phase_tx))
    }
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

    /// Ends the stream, waits (at most `wait`) for the server to end its own, closes TLS.
    async fn close(&mut self, wait: Duration) {
        let _ = self.send("</stream:stream>").await;
        let _ = tokio::time::timeout(wait, async {
            loop {
                match self.next().await {
                    Ok(Event::StreamEnd) | Err(_) => break,
                    _ => {}
                }
            }
        })
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.io.shutdown()).await;
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

/// A server clients log in to: c2s address and the users' domain (also the TLS SNI).
#[derive(Clone, Copy, Debug)]
struct Server<'a> {
    host: &'a str,
    port: u16,
    domain: &'a str,
}

/// The server of --host/--port/--domain.
fn main_server(a: &Args) -> Server<'_> {
    Server {
        host: &a.host,
        port: a.port,
        domain: &a.domain,
    }
}

/// The second server of the federation mode (--peer-port), if any.
fn peer_server(a: &Args) -> Option<Server<'_>> {
    Some(Server {
        host: a.peer_host.as_deref().unwrap_or(&a.host),
        port: a.peer_port?,
        domain: a.peer_domain.as_deref().unwrap_or(&a.domain),
    })
}

/// Where client `i` of the throughput mode logs in: clients `pairs..` on the peer server in
/// the federation mode, all on the main server otherwise.
fn server_of(a: &Args, i: usize) -> Server<'_> {
    match peer_server(a) {
        Some(p) if a.idle.is_none() && i >= a.pairs => p,
        _ => main_server(a),
    }
}

/// TCP connect, TLS (direct or STARTTLS); returns the TLS stream and its stream features.
async fn connect(sh: &Shared, srv: Server<'_>) -> Res<(Xmpp<SslStream<TcpStream>>, String)> {
    let a = &sh.args;
    let tcp = TcpStream::connect((srv.host, srv.port)).await?;
    tcp.set_nodelay(true)?;
    let tcp = if a.direct_tls {
        tcp
    } else {
        let mut x = Xmpp::new(tcp);
        let features = x.open_stream(srv.domain).await?;
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
    let ssl = cfg.into_ssl(srv.domain)?;
    let mut tls = SslStream::new(ssl, tcp)?;
    Pin::new(&mut tls).connect().await?;
    let mut x = Xmpp::new(tls);
    let features = x.open_stream(srv.domain).await?;
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

/// SCRAM salted passwords by (SHA-256?, password, salt, iterations), kept as real clients do
/// (RFC 5802 section 5.1) so that a login again costs no PBKDF2; only the resume-storm mode
/// sets it up (the other modes pay the PBKDF2 on every login, as before).
type SaltedCache = Mutex<HashMap<(bool, String, Vec<u8>, u32), Vec<u8>>>;
static SALTED_CACHE: OnceLock<SaltedCache> = OnceLock::new();

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
        let key = (self.sha256, password.to_owned(), salt.clone(), iters);
        let cached = SALTED_CACHE
            .get()
            .and_then(|c| c.lock().ok()?.get(&key).cloned());
        let salted = if let Some(s) = cached {
            s
        } else if self.sha256 {
            let mut out = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iters, &mut out);
            out.to_vec()
        } else {
            let mut out = [0u8; 20];
            pbkdf2::pbkdf2_hmac::<Sha1>(password.as_bytes(), &salt, iters, &mut out);
            out.to_vec()
        };
        if let Some(c) = SALTED_CACHE.get() {
            if let Ok(mut c) = c.lock() {
                c.insert(key, salted.clone());
            }
        }
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

/// Logs client `i` in (on its own server: see `server_of`); returns the stream and its bound
/// full JID.
async fn login(sh: &Shared, i: usize) -> Res<(Xmpp<SslStream<TcpStream>>, String)> {
    let a = &sh.args;
    let register_first = a.register || a.register_only;
    let srv = server_of(a, i);
    login_on(sh, srv, &user_name(a, i), &a.resource, register_first, true).await
}

/// `login_on` the main server (--host/--port/--domain).
async fn login_as(
    sh: &Shared,
    user: &str,
    resource: &str,
    register_first: bool,
    presence: bool,
) -> Res<(Xmpp<SslStream<TcpStream>>, String)> {
    let srv = main_server(&sh.args);
    login_on(sh, srv, user, resource, register_first, presence).await
}

/// Logs `user` in on `srv` (registering it first on the same stream if `register_first`; with
/// --register-only, returns right after that) and binds `resource`; sends initial presence if
/// `presence`. Returns the stream and its bound full JID.
async fn login_on(
    sh: &Shared,
    srv: Server<'_>,
    user: &str,
    resource: &str,
    register_first: bool,
    presence: bool,
) -> Res<(Xmpp<SslStream<TcpStream>>, String)> {
    let a = &sh.args;
    let (mut x, features) = connect(sh, srv).await?;
    if register_first {
        register(&mut x, &features, user, &a.password).await?;
        if a.register_only {
            let _ = x.send("</stream:stream>").await;
            return Ok((x, String::new()));
        }
    }
    sasl(&mut x, &features, a.mech, user, &a.password).await?;
    let features = x.open_stream(srv.domain).await?;
    if !features.contains("urn:ietf:params:xml:ns:xmpp-bind") {
        return Err("server does not offer resource binding".into());
    }
    let r = x
        .iq(
            "bind1",
            &format!(
                "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
                 <resource>{}</resource></bind></iq>",
                xml_escape(resource)
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
    if presence {
        x.send("<presence/>").await?;
    }
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
    x.close(Duration::from_secs(3)).await;
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
                        let Phase::Run { start_us, deadline_us } = phase else {
                            continue;
                        };
                        if now > deadline_us {
                            continue;
                        }
                        if now >= start_us {
                            lat.push(now.saturating_sub(ts).min(u32::MAX as u64) as u32);
                        }
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

/// CPU time in ns of all threads of a process (live ones), from /proc/PID/task/*/schedstat:
/// finer than the clock ticks of /proc/PID/stat, for windows of a few milliseconds.
fn cpu_ns(pid: &str) -> Option<u64> {
    let mut total = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let mut p = t.ok()?.path();
        p.push("schedstat");
        let s = std::fs::read_to_string(p).unwrap_or_default();
        total += s
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}

/// Summed over the server's pids, in ns; `None` without --server-pid or if a process vanished.
fn server_cpu_ns(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| cpu_ns(&p.to_string())).sum()
}

/// CPU time in ns of each live thread of the server's processes, by (pid, thread id), from
/// /proc/PID/task/*/schedstat; `None` without --server-pid or if a process vanished.
type CpuSnap = HashMap<(u32, u32), u64>;

fn cpu_snap(pids: &[u32]) -> Option<CpuSnap> {
    if pids.is_empty() {
        return None;
    }
    let mut snap = HashMap::new();
    for &pid in pids {
        for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
            let t = t.ok()?;
            let Some(tid) = t.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let ns = std::fs::read_to_string(t.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok());
            if let Some(ns) = ns {
                snap.insert((pid, tid), ns);
            }
        }
    }
    Some(snap)
}

/// CPU time in ms used between two snapshots by the threads alive at the second one (a thread
/// started in between counts from zero). Unlike a difference of sums, a thread that ended in
/// between (sled's and tokio's pools end idle threads) cannot make it negative; what such a
/// thread used after the first snapshot is missed.
fn cpu_between_ms(a: &Option<CpuSnap>, b: &Option<CpuSnap>) -> Option<f64> {
    let (a, b) = (a.as_ref()?, b.as_ref()?);
    let ns: u64 = b
        .iter()
        .map(|(k, &v)| v.saturating_sub(a.get(k).copied().unwrap_or(0)))
        .sum();
    Some(ns as f64 / 1e6)
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

/// (busy, total) ticks of the whole machine from /proc/stat; busy = all but idle and iowait.
fn machine_ticks() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    Some((total - v.get(3)? - v.get(4)?, total))
}

/// Busy percentage of the whole machine (100 = all CPUs) since `machine_ticks()` gave `m0`.
fn busy_pct_since(m0: Option<(u64, u64)>) -> Option<f64> {
    match (m0, machine_ticks()) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            Some(b1.saturating_sub(b0) as f64 / (t1 - t0) as f64 * 100.0)
        }
        _ => None,
    }
}

/// Counters of the whole machine's TCP stack from /proc/net/netstat (`TcpExt` section), in
/// the order of `names`; `None` if one is missing.
fn tcp_ext(names: &[&str]) -> Option<Vec<u64>> {
    let s = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = s.lines().filter(|l| l.starts_with("TcpExt:"));
    let (keys, values) = (lines.next()?, lines.next()?);
    let map: HashMap<&str, &str> = keys
        .split_whitespace()
        .zip(values.split_whitespace())
        .collect();
    names.iter().map(|n| map.get(n)?.parse().ok()).collect()
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

/// CPU counters at one moment, in clock ticks (from /proc/PID/stat: threads that ended count
/// too): the server's (summed over --server-pid), the generator's, and the process time of the
/// whole machine (`machine_busy_ticks`).
struct CpuMark {
    at: Instant,
    server: Option<u64>,
    gen: Option<u64>,
    busy: Option<u64>,
}

/// CPU used between two `CpuMark`s, in seconds: the server's, the generator's, and that of
/// everything else on the machine (other builds, ...: should be near 0).
struct CpuUse {
    wall: f64,
    server_s: Option<f64>,
    gen_s: Option<f64>,
    other_s: Option<f64>,
}

impl CpuMark {
    fn now(pids: &[u32]) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            server: server_cpu(pids),
            gen: cpu_ticks("self"),
            busy: machine_busy_ticks(),
        }
    }

    /// What was used from `start` until this mark.
    fn since(&self, start: &CpuMark, ticks: f64) -> CpuUse {
        let secs = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?) as f64 / ticks);
        let server_s = secs(start.server, self.server);
        let gen_s = secs(start.gen, self.gen);
        let other_s = match (secs(start.busy, self.busy), server_s, gen_s) {
            (Some(b), Some(s), Some(g)) => Some((b - s - g).max(0.0)),
            _ => None,
        };
        CpuUse {
            wall: self.at.saturating_duration_since(start.at).as_secs_f64(),
            server_s,
            gen_s,
            other_s,
        }
    }
}

impl CpuUse {
    /// `cpu` seconds in percent of one CPU over the window.
    fn pct(&self, cpu: Option<f64>) -> Option<f64> {
        cpu.filter(|_| self.wall > 0.0)
            .map(|c| c / self.wall * 100.0)
    }

    /// The RESULT fields of a login phase: which side limits logins/s. The generator's share
    /// includes its own SCRAM work (PBKDF2, as many iterations as the server's).
    fn login_fields(&self) -> String {
        format!(
            "login_server_cpu_pct={} login_gen_cpu_pct={}",
            fmt_opt(self.pct(self.server_s), 0),
            fmt_opt(self.pct(self.gen_s), 0)
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Large-roster login (--roster-login N)
//
// Every connection is driven by a pump task that writes what it is given (coalescing queued
// stanzas into one write), answers IQ requests (roster pushes, pings) and forwards every
// element it reads, stamped with its arrival time, to one controller (the functions below).

type Tls = Xmpp<SslStream<TcpStream>>;

/// --trace, for `Link::send`.
static TRACE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What a pump task reports to the controller.
enum Ev {
    El { id: usize, at: Instant, el: String },
    Down { id: usize, why: String },
}

/// A logged-in connection run by a pump task. Dropping the sender (`close`) closes the stream.
struct Link {
    tx: Option<mpsc::UnboundedSender<String>>,
    task: tokio::task::JoinHandle<()>,
    /// Full JID as bound.
    jid: String,
}

impl Link {
    fn spawn(x: Tls, jid: String, id: usize, evs: &mpsc::UnboundedSender<Ev>) -> Link {
        Link::spawn_with(x, jid, id, evs, 1 << 16)
    }

    /// Like `spawn`; what is queued is coalesced into writes of up to `max_write` bytes (1: one
    /// write, and so one TLS record of up to 16 KiB, per `send`).
    fn spawn_with(
        x: Tls,
        jid: String,
        id: usize,
        evs: &mpsc::UnboundedSender<Ev>,
        max_write: usize,
    ) -> Link {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(pump(x, id, rx, evs.clone(), max_write));
        Link {
            tx: Some(tx),
            task,
            jid,
        }
    }

    fn send(&self, s: String) {
        if TRACE.load(Ordering::Relaxed) {
            eprintln!("trace {} -> {s}", self.jid);
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(s);
        }
    }

    fn close(&mut self) {
        self.tx = None;
    }
}

async fn pump(
    mut x: Tls,
    id: usize,
    mut rx: mpsc::UnboundedReceiver<String>,
    evs: mpsc::UnboundedSender<Ev>,
    max_write: usize,
) {
    let why = loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(mut s) => {
                    while s.len() < max_write {
                        match rx.try_recv() {
                            Ok(more) => s.push_str(&more),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = x.send(&s).await {
                        break format!("write: {e}");
                    }
                }
                None => {
                    // Closed by the controller: end the stream, wait briefly for the server's end.
                    x.close(Duration::from_secs(5)).await;
                    return;
                }
            },
            ev = x.next() => match ev {
                Ok(Event::Element(e)) => {
                    let at = Instant::now();
                    if elem_name(&e) == "iq" {
                        if let Err(err) = answer_iq(&mut x, &e).await {
                            break format!("write: {err}");
                        }
                    }
                    if evs.send(Ev::El { id, at, el: e }).is_err() {
                        return;
                    }
                }
                Ok(Event::StreamEnd) => break "stream closed by server".into(),
                Ok(Event::StreamHeader) => break "unexpected stream header".into(),
                Err(e) => break e.to_string(),
            }
        }
    };
    let _ = evs.send(Ev::Down { id, why });
}

fn bare(jid: &str) -> &str {
    jid.split('/').next().unwrap_or(jid)
}

fn has_to(sub: &str) -> bool {
    sub == "to" || sub == "both"
}

fn has_from(sub: &str) -> bool {
    sub == "from" || sub == "both"
}

/// (bare JID lower-cased, subscription, ask='subscribe') of each `<item/>` in a roster element.
fn roster_items(e: &str) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = e[from..].find("<item") {
        let at = from + p;
        from = at + 5;
        if !matches!(
            e.as_bytes().get(from),
            Some(b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>')
        ) {
            continue;
        }
        let tag = &e[at..];
        if let Some(j) = attr(tag, "jid") {
            out.push((
                bare(j).to_ascii_lowercase(),
                attr(tag, "subscription").unwrap_or("none").to_owned(),
                attr(tag, "ask") == Some("subscribe"),
            ));
        }
    }
    out
}

fn contact_name(a: &Args, i: usize) -> String {
    format!("{}-c{i}", a.user_prefix)
}

fn roster_get(id: &str) -> String {
    format!("<iq type='get' id='{id}'><query xmlns='jabber:iq:roster'/></iq>")
}

fn sub_presence(kind: &str, to: &str) -> String {
    format!("<presence type='{kind}' to='{}'/>", xml_escape(to))
}

/// Counts error stanzas and stream errors in `e`; true if it was one.
fn note_error(sh: &Shared, who: &str, e: &str) -> bool {
    let name = elem_name(e);
    if name == "stream:error" {
        sh.stats
            .error(format!("{who}: stream error: {}", error_condition(e)));
        return true;
    }
    if matches!(name, "iq" | "message" | "presence") && attr(e, "type") == Some("error") {
        sh.stats
            .error(format!("{who}: {name} error: {}", error_condition(e)));
        return true;
    }
    false
}

/// Logs `users` in, at most --concurrency at a time, with initial presence; in order. Counts
/// them in `stats.bound` and `stats.failed` (progress every 5 s); logins not done within
/// --login-timeout fail.
async fn login_all(
    sh: &Arc<Shared>,
    users: &[String],
    register_first: bool,
) -> Vec<Res<(Tls, String)>> {
    let limit = tokio::time::Instant::now() + Duration::from_secs(sh.args.login_timeout);
    let handles: Vec<_> = users
        .iter()
        .map(|u| {
            let sh = sh.clone();
            let u = u.clone();
            tokio::spawn(async move {
                let r = tokio::time::timeout_at(limit, async {
                    let _permit = sh.login_slots.acquire().await.expect("semaphore open");
                    login_as(&sh, &u, &sh.args.resource, register_first, true).await
                })
                .await
                .unwrap_or_else(|_| Err("not done within --login-timeout".into()));
                let count = if r.is_ok() {
                    &sh.stats.bound
                } else {
                    &sh.stats.failed
                };
                count.fetch_add(1, Ordering::SeqCst);
                r.map_err(|e| -> BoxError { format!("login {u}: {e}").into() })
            })
        })
        .collect();
    wait_logins(sh, users.len()).await;
    let mut out = Vec::with_capacity(users.len());
    for h in handles {
        out.push(match h.await {
            Ok(r) => r,
            Err(e) => Err(format!("login task: {e}").into()),
        });
    }
    out
}

/// Names and state shared by the set-up and the measurement.
struct RosterBench {
    sh: Arc<Shared>,
    n: usize,
    online: usize,
    /// The owner's user name and bare JID.
    owner: String,
    owner_bare: String,
    /// Bare JIDs of the contacts.
    contacts: Vec<String>,
    /// Contact bare JID (lower case) -> index.
    index: HashMap<String, usize>,
    evs_tx: mpsc::UnboundedSender<Ev>,
    evs: mpsc::UnboundedReceiver<Ev>,
}

/// One measured login of the owner.
#[derive(Default, Clone)]
struct RosterRun {
    roster_items: usize,
    login_ms: f64,
    roster_ms: f64,
    presence_at_ms: f64,
    /// From the TCP connect until the owner had every online contact's presence.
    in_ms: Option<f64>,
    /// Until every online contact had the owner's presence.
    saw_ms: Option<f64>,
    presences_in: usize,
    contacts_saw: usize,
    presence_stanzas: usize,
    unexpected: usize,
    server_cpu_ms: Option<f64>,
    server_cpu_pct: Option<f64>,
    gen_cpu_pct: Option<f64>,
    /// Busy CPU of the whole machine (100 = all CPUs) in the second before the login.
    busy_before_pct: Option<f64>,
    errors: u64,
}

impl RosterBench {
    fn who(&self, id: usize) -> String {
        if id < self.n {
            self.contacts[id].clone()
        } else {
            self.owner.clone()
        }
    }

    /// Sets up the subscriptions through the protocol (only those that are not `both` yet),
    /// then closes every session except those of the online contacts, which are returned.
    async fn setup(&mut self, register_first: bool) -> Res<Vec<Link>> {
        let n = self.n;
        let owner_id = n;
        let t0 = Instant::now();
        let mut users: Vec<String> = (0..n).map(|i| contact_name(&self.sh.args, i)).collect();
        users.push(self.owner.clone());
        eprintln!(
            "setup: logging in {} users{}",
            users.len(),
            if register_first {
                " (registering them first)"
            } else {
                ""
            }
        );
        let mut links = Vec::with_capacity(n + 1);
        let mut first_err = None;
        for (id, r) in login_all(&self.sh, &users, register_first)
            .await
            .into_iter()
            .enumerate()
        {
            match r {
                Ok((x, jid)) => links.push(Some(Link::spawn(x, jid, id, &self.evs_tx))),
                Err(e) => {
                    first_err.get_or_insert(e.to_string());
                    links.push(None);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(format!("setup: some logins failed, first: {e}").into());
        }
        let mut links: Vec<Link> = links.into_iter().flatten().collect();
        if self.sh.args.register_only {
            return Ok(links);
        }
        eprintln!(
            "setup: {} sessions in {:.1} s; getting the rosters",
            links.len(),
            t0.elapsed().as_secs_f64()
        );
        for l in &links {
            l.send(roster_get("rs0"));
        }
        // Subscription state as seen by the owner (of contact i) and by contact i (of the owner).
        let mut owner_view: Vec<(String, bool)> = vec![("none".into(), false); n];
        let mut contact_view: Vec<(String, bool)> = vec![("none".into(), false); n];
        let mut have_roster = vec![false; n + 1];
        let mut rosters = 0;
        let mut asked_back = vec![false; n];
        // Handshakes run --setup-window at a time (a burst of hundreds may be more than a server
        // queues for one session); `active[i]`: contact i's handshake is under way.
        let window = self.sh.args.setup_window.max(1);
        let mut todo: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
        let mut active = vec![false; n];
        let mut in_flight = 0usize;
        let mut kicked = false;
        let limit = Instant::now() + Duration::from_secs(self.sh.args.login_timeout);
        const RETRY_S: u64 = 5;
        let mut next_retry = Instant::now() + Duration::from_secs(RETRY_S);
        let mut retries = 0;
        let mut last_print = Instant::now();
        let is_both = |ov: &[(String, bool)], cv: &[(String, bool)], i: usize| {
            ov[i].0 == "both" && cv[i].0 == "both"
        };
        // Each side asks where it lacks 'to' and approves where it lacks 'from' (a 'subscribed'
        // completes a stored pending request; without one it is ignored or a pre-approval).
        let ask_again = |links: &[Link], ov: &str, cv: &str, i: usize| {
            if !has_to(ov) {
                links[owner_id].send(sub_presence("subscribe", &self.contacts[i]));
            }
            if !has_from(ov) {
                links[owner_id].send(sub_presence("subscribed", &self.contacts[i]));
            }
            if !has_to(cv) {
                links[i].send(sub_presence("subscribe", &self.owner_bare));
            }
            if !has_from(cv) {
                links[i].send(sub_presence("subscribed", &self.owner_bare));
            }
        };
        loop {
            if rosters == n + 1 && !kicked {
                kicked = true;
                todo = (0..n)
                    .filter(|&i| !is_both(&owner_view, &contact_view, i))
                    .collect();
                eprintln!(
                    "setup: {} of {n} contacts already subscribed both ways; {} handshakes to \
                     do, {window} at a time",
                    n - todo.len(),
                    todo.len()
                );
            }
            if kicked {
                // Finished handshakes make room for new ones.
                while in_flight < window {
                    let Some(i) = todo.pop_front() else { break };
                    active[i] = true;
                    in_flight += 1;
                    let (ov, cv) = (&owner_view[i], &contact_view[i]);
                    if ov.0 == "none" && !ov.1 && cv.0 == "none" && !cv.1 {
                        // The usual way: the owner asks; the contact approves and asks back
                        // (on receipt, below); the owner approves.
                        links[owner_id].send(sub_presence("subscribe", &self.contacts[i]));
                    } else {
                        // Half done by an earlier run.
                        asked_back[i] = has_to(&cv.0);
                        ask_again(&links, &ov.0, &cv.0, i);
                    }
                }
                if in_flight == 0 && todo.is_empty() {
                    break;
                }
            }
            let now = Instant::now();
            if now > limit {
                let done = (0..n)
                    .filter(|&i| is_both(&owner_view, &contact_view, i))
                    .count();
                return Err(format!(
                    "setup: subscriptions not settled after {} s ({done} of {n} both ways, \
                     {rosters} of {} rosters)",
                    self.sh.args.login_timeout,
                    n + 1
                )
                .into());
            }
            if kicked && now > next_retry {
                // No roster push for a while: a stanza got lost (a server may drop one under
                // load, and RFC 6121 does not deliver a repeated subscribe that is already
                // pending). Ask again for the handshakes under way. (Not on a timer: a busy
                // server would only get more work.)
                next_retry = now + Duration::from_secs(RETRY_S);
                let mut again = 0;
                for i in (0..n).filter(|&i| active[i]) {
                    ask_again(&links, &owner_view[i].0, &contact_view[i].0, i);
                    again += 1;
                }
                retries += again;
                eprintln!("setup: no progress for {RETRY_S} s, asked again for {again} contacts");
            }
            if last_print.elapsed() > Duration::from_secs(5) {
                last_print = Instant::now();
                let done = (0..n)
                    .filter(|&i| is_both(&owner_view, &contact_view, i))
                    .count();
                eprintln!(
                    "  ... {done} of {n} subscribed both ways, {} of {} rosters",
                    rosters,
                    n + 1
                );
            }
            let ev = match tokio::time::timeout(Duration::from_millis(500), self.evs.recv()).await {
                Ok(Some(ev)) => ev,
                Ok(None) => return Err("event channel closed".into()),
                Err(_) => continue,
            };
            let (id, el) = match ev {
                Ev::El { id, el, .. } => (id, el),
                Ev::Down { id, why } => {
                    return Err(
                        format!("setup: {} lost its connection: {why}", self.who(id)).into(),
                    )
                }
            };
            if self.sh.args.trace {
                eprintln!(
                    "trace {:.3} {} <- {el}",
                    t0.elapsed().as_secs_f64(),
                    self.who(id)
                );
            }
            if note_error(&self.sh, &self.who(id), &el) {
                continue;
            }
            match elem_name(&el) {
                "iq" if el.contains("jabber:iq:roster") => {
                    let ty = attr(&el, "type");
                    let is_result = ty == Some("result") && attr(&el, "id") == Some("rs0");
                    if !(is_result || ty == Some("set")) {
                        continue;
                    }
                    next_retry = Instant::now() + Duration::from_secs(RETRY_S);
                    for (jid, sub, ask) in roster_items(&el) {
                        let i = if id == owner_id {
                            let Some(&i) = self.index.get(&jid) else {
                                continue;
                            };
                            owner_view[i] = (sub, ask);
                            i
                        } else if jid == self.owner_bare {
                            contact_view[id] = (sub, ask);
                            id
                        } else {
                            continue;
                        };
                        if active[i] && is_both(&owner_view, &contact_view, i) {
                            active[i] = false;
                            in_flight -= 1;
                        }
                    }
                    if is_result && !have_roster[id] {
                        have_roster[id] = true;
                        rosters += 1;
                    }
                }
                // An empty roster result has no query element.
                "iq" if attr(&el, "type") == Some("result")
                    && attr(&el, "id") == Some("rs0")
                    && !have_roster[id] =>
                {
                    have_roster[id] = true;
                    rosters += 1;
                }
                "presence" if attr(&el, "type") == Some("subscribe") => {
                    let from = attr(&el, "from").map(|f| bare(f).to_ascii_lowercase());
                    let Some(from) = from else { continue };
                    if id == owner_id {
                        if self.index.contains_key(&from) {
                            links[owner_id].send(sub_presence("subscribed", &from));
                        }
                    } else if from == self.owner_bare {
                        links[id].send(sub_presence("subscribed", &self.owner_bare));
                        if !has_to(&contact_view[id].0) && !asked_back[id] {
                            asked_back[id] = true;
                            links[id].send(sub_presence("subscribe", &self.owner_bare));
                        }
                    }
                }
                _ => {}
            }
        }
        if retries > 0 {
            eprintln!("setup: note: {retries} handshakes had to be asked for again (lost stanzas)");
        }
        eprintln!(
            "setup: all {n} contacts subscribed both ways after {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        // Only the online contacts stay; wait until the others' sessions are gone.
        let online_links: Vec<Link> = links.drain(..self.online).collect();
        let owner_jid = links.last().map(|l| l.jid.clone()).unwrap_or_default();
        for l in &mut links {
            l.close();
        }
        for l in links {
            let _ = l.task.await;
        }
        self.wait_unavailable(&owner_jid).await;
        eprintln!(
            "setup: done in {:.1} s; {} contacts online",
            t0.elapsed().as_secs_f64(),
            self.online
        );
        Ok(online_links)
    }

    /// Waits (up to 10 s) until every online contact got `jid`'s unavailable presence.
    async fn wait_unavailable(&mut self, jid: &str) {
        let mut seen = vec![false; self.online];
        let mut count = 0;
        let limit = tokio::time::Instant::now() + Duration::from_secs(10);
        while count < self.online {
            let ev = match tokio::time::timeout_at(limit, self.evs.recv()).await {
                Ok(Some(ev)) => ev,
                _ => break,
            };
            let Ev::El { id, el, .. } = ev else { continue };
            if note_error(&self.sh, &self.who(id), &el) {
                continue;
            }
            if id < self.online
                && elem_name(&el) == "presence"
                && attr(&el, "type") == Some("unavailable")
                && attr(&el, "from").is_some_and(|f| f.eq_ignore_ascii_case(jid))
                && !seen[id]
            {
                seen[id] = true;
                count += 1;
            }
        }
        if count < self.online {
            eprintln!(
                "  note: only {count} of {} online contacts saw {jid} go offline within 10 s",
                self.online
            );
        }
    }

    /// One measured login of the owner (resource `res`), then its logout.
    async fn measure(&mut self, run: usize, online: &[Link]) -> Res<RosterRun> {
        let sh = self.sh.clone();
        let a = &sh.args;
        let pids = &a.server_pid;
        let owner_id = self.n + 1 + run;
        let online_full: HashMap<String, usize> = online
            .iter()
            .enumerate()
            .map(|(i, l)| (l.jid.to_ascii_lowercase(), i))
            .collect();
        let mut r = RosterRun::default();
        // How busy the machine is just before (the run itself is too short for tick counts).
        let m0 = machine_ticks();
        tokio::time::sleep(Duration::from_secs(1)).await;
        r.busy_before_pct = busy_pct_since(m0);
        // Anything left over from before (late presences) is not part of this run.
        while let Ok(ev) = self.evs.try_recv() {
            if let Ev::El { id, el, .. } = ev {
                note_error(&sh, &self.who(id), &el);
            }
        }
        let errors0 = sh.stats.errors.load(Ordering::Relaxed);
        let cpu0 = server_cpu_ns(pids);
        let self0 = cpu_ns("self");
        let t0 = Instant::now();
        let ms = |t: Instant| t.saturating_duration_since(t0).as_secs_f64() * 1000.0;
        let resource = format!("{}{run}", a.resource);
        let (x, jid) = login_as(&sh, &self.owner, &resource, false, false).await?;
        r.login_ms = ms(Instant::now());
        let mut owner = Link::spawn(x, jid.clone(), owner_id, &self.evs_tx);
        let rid = format!("rl{run}");
        owner.send(roster_get(&rid));
        let limit = tokio::time::Instant::now() + Duration::from_secs(a.presence_timeout);
        let mut got_roster = false;
        let mut presence_at = None;
        let mut seen_in = vec![false; self.online];
        let mut seen_by = vec![false; self.online];
        let mut last_in = None;
        let mut last_by = None;
        let mut result_cpu = None;
        loop {
            if presence_at.is_some()
                && r.presences_in == self.online
                && r.contacts_saw == self.online
            {
                result_cpu = Some((server_cpu_ns(pids), cpu_ns("self"), Instant::now()));
                break;
            }
            let ev = match tokio::time::timeout_at(limit, self.evs.recv()).await {
                Ok(Some(ev)) => ev,
                Ok(None) => return Err("event channel closed".into()),
                Err(_) => {
                    sh.stats.error(format!(
                        "run {run}: timeout after {} s: roster {}, {} of {} presences in, {} of {} contacts saw the owner",
                        a.presence_timeout,
                        if got_roster { "received" } else { "NOT received" },
                        r.presences_in,
                        self.online,
                        r.contacts_saw,
                        self.online
                    ));
                    break;
                }
            };
            let (id, at, el) = match ev {
                Ev::El { id, at, el } => (id, at, el),
                Ev::Down { id, why } => {
                    sh.stats.error(format!(
                        "run {run}: {} lost its connection: {why}",
                        self.who(id)
                    ));
                    if id == owner_id || id < self.online {
                        break;
                    }
                    continue;
                }
            };
            if note_error(&sh, &self.who(id), &el) {
                continue;
            }
            let name = elem_name(&el);
            if id == owner_id {
                if name == "iq"
                    && attr(&el, "id") == Some(rid.as_str())
                    && attr(&el, "type") == Some("result")
                {
                    got_roster = true;
                    r.roster_items = roster_items(&el).len();
                    r.roster_ms = ms(at);
                    let now = Instant::now();
                    owner.send("<presence/>".into());
                    presence_at = Some(now);
                    r.presence_at_ms = ms(now);
                } else if name == "presence" && attr(&el, "type").is_none() {
                    let from = attr(&el, "from").unwrap_or("").to_ascii_lowercase();
                    if from == jid.to_ascii_lowercase() {
                        continue; // our own presence, reflected
                    }
                    r.presence_stanzas += 1;
                    match online_full.get(&from) {
                        Some(&i) if !seen_in[i] => {
                            seen_in[i] = true;
                            r.presences_in += 1;
                            last_in = Some(at);
                        }
                        Some(_) => {}
                        None => {
                            r.unexpected += 1;
                            if r.unexpected <= 3 {
                                eprintln!(
                                    "  unexpected available presence to the owner from {from}"
                                );
                            }
                        }
                    }
                }
            } else if id < self.online
                && name == "presence"
                && attr(&el, "type").is_none()
                && attr(&el, "from").is_some_and(|f| f.eq_ignore_ascii_case(&jid))
                && !seen_by[id]
            {
                seen_by[id] = true;
                r.contacts_saw += 1;
                last_by = Some(at);
            }
        }
        if let Some((cpu1, self1, t1)) = result_cpu {
            let wall = t1.saturating_duration_since(t0).as_secs_f64();
            let cpu_s = match (cpu0, cpu1) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e9),
                _ => None,
            };
            let own_s = match (self0, self1) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e9),
                _ => None,
            };
            r.server_cpu_ms = cpu_s.map(|c| c * 1000.0);
            r.server_cpu_pct = cpu_s.map(|c| c / wall * 100.0);
            r.gen_cpu_pct = own_s.map(|c| c / wall * 100.0);
        }
        if r.presences_in == self.online {
            r.in_ms = last_in.map(ms).or(Some(r.presence_at_ms));
        }
        if r.contacts_saw == self.online {
            r.saw_ms = last_by.map(ms).or(Some(r.presence_at_ms));
        }
        // Log out, and wait until the contacts know.
        owner.close();
        let _ = owner.task.await;
        self.wait_unavailable(&jid).await;
        r.errors = sh.stats.errors.load(Ordering::Relaxed) - errors0;
        Ok(r)
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

async fn roster_login(args: Args, n: usize) -> Res<()> {
    if n == 0 {
        return Err("--roster-login needs at least 1 contact".into());
    }
    let online = args.roster_online.unwrap_or(n / 2);
    TRACE.store(args.trace, Ordering::Relaxed);
    if online > n {
        return Err("--roster-online is larger than --roster-login".into());
    }
    let (sh, _phase) = Shared::new(&args, 0)?;
    let contacts: Vec<String> = (0..n).map(|i| contact_name(&args, i)).collect();
    let owner = format!("{}-owner", args.user_prefix);
    let domain = args.domain.to_ascii_lowercase();
    let (evs_tx, evs) = mpsc::unbounded_channel();
    let mut rb = RosterBench {
        sh: sh.clone(),
        n,
        online,
        owner_bare: format!("{}@{domain}", owner.to_ascii_lowercase()),
        owner,
        index: contacts
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("{}@{domain}", c.to_ascii_lowercase()), i))
            .collect(),
        contacts: contacts.iter().map(|c| format!("{c}@{domain}")).collect(),
        evs_tx,
        evs,
    };
    eprintln!(
        "roster-login: {} with {n} contacts ({online} online) at {}:{} domain {} mech {}{}",
        rb.owner_bare,
        args.host,
        args.port,
        args.domain,
        args.mech.name(),
        if args.direct_tls { " direct-tls" } else { "" }
    );
    let setup_start = Instant::now();
    let register_first = args.register || args.register_only;
    let mut online_links = rb.setup(register_first).await?;
    let setup_s = setup_start.elapsed().as_secs_f64();
    if args.register_only {
        let errors = sh.stats.errors.load(Ordering::Relaxed);
        return register_result(&args, n + 1, n + 1, setup_s, errors);
    }
    let setup_errors = sh.stats.errors.load(Ordering::Relaxed);
    let mut runs = Vec::new();
    for k in 0..args.repeat.max(1) {
        let r = rb.measure(k, &online_links).await?;
        eprintln!(
            "run {k}: roster {} items; login {:.1} ms, roster {:.1} ms, presence sent at {:.1} ms; \
             all {} presences in at {} ms, all contacts saw the owner at {} ms; server CPU {} ms ({} %), \
             machine {} % busy before; {} presence stanzas, {} unexpected, {} errors",
            r.roster_items,
            r.login_ms,
            r.roster_ms,
            r.presence_at_ms,
            online,
            fmt_opt(r.in_ms, 1),
            fmt_opt(r.saw_ms, 1),
            fmt_opt(r.server_cpu_ms, 1),
            fmt_opt(r.server_cpu_pct, 0),
            fmt_opt(r.busy_before_pct, 0),
            r.presence_stanzas,
            r.unexpected,
            r.errors
        );
        runs.push(r);
    }
    for l in &mut online_links {
        l.close();
    }
    for l in online_links {
        let _ = l.task.await;
    }
    let med = |f: &dyn Fn(&RosterRun) -> Option<f64>| median(runs.iter().filter_map(f).collect());
    let after = |t: Option<f64>, r: &RosterRun| t.map(|t| t - r.presence_at_ms);
    let incomplete = runs
        .iter()
        .filter(|r| r.in_ms.is_none() || r.saw_ms.is_none())
        .count();
    let list = |f: &dyn Fn(&RosterRun) -> Option<f64>| {
        runs.iter()
            .map(|r| fmt_opt(f(r), 1))
            .collect::<Vec<_>>()
            .join(",")
    };
    let min_us = |f: &dyn Fn(&RosterRun) -> usize| runs.iter().map(f).min().unwrap_or(0);
    let max_us = |f: &dyn Fn(&RosterRun) -> usize| runs.iter().map(f).max().unwrap_or(0);
    let done = |r: &RosterRun| match (r.in_ms, r.saw_ms) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    };
    let errors = sh.stats.errors.load(Ordering::Relaxed);
    println!(
        "RESULT server={} mode=roster-login contacts={n} online={online} runs={} roster_items={} \
         login_ms={} roster_ms={} presences_in_ms={} presences_in_after_presence_ms={} \
         contacts_saw_ms={} contacts_saw_after_presence_ms={} done_ms={} \
         server_cpu_ms={} server_cpu_pct={} gen_cpu_pct={} busy_before_pct={} \
         presences_in={} contacts_saw={} presence_stanzas={} unexpected={} incomplete={incomplete} \
         presences_in_ms_runs={} contacts_saw_ms_runs={} setup_s={setup_s:.1} setup_errors={setup_errors} errors={errors}",
        args.label,
        runs.len(),
        min_us(&|r| r.roster_items),
        fmt_opt(med(&|r| Some(r.login_ms)), 1),
        fmt_opt(med(&|r| Some(r.roster_ms)), 1),
        fmt_opt(med(&|r| r.in_ms), 1),
        fmt_opt(med(&|r| after(r.in_ms, r)), 1),
        fmt_opt(med(&|r| r.saw_ms), 1),
        fmt_opt(med(&|r| after(r.saw_ms, r)), 1),
        fmt_opt(med(&done), 1),
        fmt_opt(med(&|r| r.server_cpu_ms), 1),
        fmt_opt(med(&|r| r.server_cpu_pct), 0),
        fmt_opt(med(&|r| r.gen_cpu_pct), 0),
        fmt_opt(med(&|r| r.busy_before_pct), 0),
        min_us(&|r| r.presences_in),
        min_us(&|r| r.contacts_saw),
        max_us(&|r| r.presence_stanzas),
        max_us(&|r| r.unexpected),
        list(&|r| r.in_ms),
        list(&|r| r.saw_ms),
    );
    if errors > 0 || incomplete > 0 {
        return Err(format!("{errors} errors, {incomplete} incomplete runs").into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Offline messages (--offline N)
//
// Two connections run by pump tasks (see the large-roster login above): the sender, logged in
// for the whole run, and the recipient, logged in once per round after the messages are stored.

/// Event ids of the offline mode: the sender, then one recipient session per login.
const OFF_SENDER: usize = 0;
const OFF_DRAIN: usize = 1;

/// One measured round of the offline mode.
#[derive(Default, Clone)]
struct OfflineRun {
    /// First send until the ping result (the server may still be storing then).
    store_ms: f64,
    /// Server CPU over `store_ms`.
    store_cpu_ms: Option<f64>,
    /// Server CPU from the ping result until it went quiet (storing that went on after it).
    tail_cpu_ms: Option<f64>,
    /// From the ping result until the end of the last 10 ms in which the server was busy.
    quiet_ms: Option<f64>,
    store_gen_cpu_pct: Option<f64>,
    /// Recipient: TCP connect until bound.
    login_ms: f64,
    /// Initial presence sent until the first / the N-th message of the round.
    first_ms: Option<f64>,
    deliver_ms: Option<f64>,
    /// TCP connect until the N-th message.
    from_connect_ms: Option<f64>,
    /// Server CPU from the TCP connect until the N-th message.
    deliver_cpu_ms: Option<f64>,
    deliver_gen_cpu_pct: Option<f64>,
    /// Busy CPU of the whole machine (100 = all CPUs) in the second before the round.
    busy_before_pct: Option<f64>,
    received: usize,
    duplicates: usize,
    out_of_order: usize,
    no_delay: usize,
    /// Error replies to the sender's messages.
    bounced: usize,
    /// Messages not of this round.
    stale: usize,
    errors: u64,
}

/// Connections and names of the offline mode.
struct OfflineBench {
    sh: Arc<Shared>,
    n: usize,
    domain: String,
    recv_user: String,
    recv_bare: String,
    sender: Link,
    evs_tx: mpsc::UnboundedSender<Ev>,
    evs: mpsc::UnboundedReceiver<Ev>,
    /// Error replies to the sender's messages since the last look.
    bounced: usize,
    /// Id of the IQ of `wait_gone` being waited for.
    probe: Option<String>,
}

fn ms_since(t0: Instant, t: Instant) -> f64 {
    t.saturating_duration_since(t0).as_secs_f64() * 1000.0
}

fn ns_diff_ms(a: Option<u64>, b: Option<u64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e6),
        _ => None,
    }
}

impl OfflineBench {
    fn who(&self, id: usize) -> String {
        if id == OFF_SENDER {
            format!("{}-osend", self.sh.args.user_prefix)
        } else {
            self.recv_user.clone()
        }
    }

    /// Next event, or `None` at `limit` or when the recipient's connection is lost (an error).
    /// Handles what the sender gets (bounces, late probe answers) and traces; the caller sees
    /// everything else.
    async fn next(&mut self, limit: tokio::time::Instant) -> Res<Option<(usize, Instant, String)>> {
        loop {
            let ev = match tokio::time::timeout_at(limit, self.evs.recv()).await {
                Ok(Some(ev)) => ev,
                Ok(None) => return Err("event channel closed".into()),
                Err(_) => return Ok(None),
            };
            let (id, at, el) = match ev {
                Ev::El { id, at, el } => (id, at, el),
                Ev::Down { id, why } if id == OFF_SENDER => {
                    return Err(format!("{} lost its connection: {why}", self.who(id)).into())
                }
                Ev::Down { id, why } => {
                    // The recipient: the round goes on without it (what is missing is reported).
                    self.sh
                        .stats
                        .error(format!("{} lost its connection: {why}", self.who(id)));
                    return Ok(None);
                }
            };
            if self.sh.args.trace {
                eprintln!("trace {} <- {el}", self.who(id));
            }
            if id == OFF_SENDER
                && elem_name(&el) == "iq"
                && attr(&el, "id").is_some_and(|i| i.starts_with("gone-"))
                && attr(&el, "id") != self.probe.as_deref()
            {
                continue; // a late answer to an earlier probe of wait_gone
            }
            if id == OFF_SENDER && elem_name(&el) == "message" && attr(&el, "type") == Some("error")
            {
                self.bounced += 1;
                if self.bounced <= 3 {
                    eprintln!("  message bounced: {}", error_condition(&el));
                }
                continue;
            }
            return Ok(Some((id, at, el)));
        }
    }

    /// Waits until the server has no session of the recipient any more: an IQ from the sender
    /// to the recipient's last full JID must come back as an error (no such resource).
    async fn wait_gone(&mut self, full_jid: &str, tag: &str) -> Res<()> {
        let limit = Instant::now() + Duration::from_secs(10);
        for attempt in 0.. {
            let id = format!("gone-{tag}-{attempt}");
            self.probe = Some(id.clone());
            self.sender.send(format!(
                "<iq type='get' id='{id}' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
                xml_escape(full_jid)
            ));
            let answer_by = tokio::time::Instant::now() + Duration::from_secs(2);
            while let Some((from, _, el)) = self.next(answer_by).await? {
                if from == OFF_SENDER
                    && elem_name(&el) == "iq"
                    && attr(&el, "id") == Some(id.as_str())
                {
                    if attr(&el, "type") == Some("error") {
                        return Ok(());
                    }
                    break;
                }
                note_error(&self.sh, &self.who(from), &el);
            }
            if Instant::now() > limit {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("{full_jid} still has a session after 10 s").into())
    }

    /// Logs the recipient in (registering it first if asked), takes whatever is stored for it
    /// (until 1 s without a message), logs it out. Returns how many messages were waiting.
    async fn drain(&mut self, register_first: bool) -> Res<usize> {
        let res = format!("{}-drain", self.sh.args.resource);
        let (x, jid) = login_as(&self.sh, &self.recv_user, &res, register_first, true)
            .await
            .map_err(|e| format!("login {}: {e}", self.recv_user))?;
        let mut link = Link::spawn(x, jid.clone(), OFF_DRAIN, &self.evs_tx);
        let mut left = 0;
        loop {
            let limit = tokio::time::Instant::now() + Duration::from_secs(1);
            let Some((id, _, el)) = self.next(limit).await? else {
                break;
            };
            if id == OFF_DRAIN && elem_name(&el) == "message" && attr(&el, "type") != Some("error")
            {
                left += 1;
            } else {
                note_error(&self.sh, &self.who(id), &el);
            }
        }
        link.close();
        let _ = link.task.await;
        self.wait_gone(&jid, "drain").await?;
        Ok(left)
    }

    /// One round: store N messages, wait for the server to settle, deliver them.
    async fn measure(&mut self, k: usize) -> Res<OfflineRun> {
        let sh = self.sh.clone();
        let a = &sh.args;
        let pids = &a.server_pid;
        let n = self.n;
        let mut r = OfflineRun::default();
        let errors0 = sh.stats.errors.load(Ordering::Relaxed);
        let base = (k * n) as u64;
        let filler = "x".repeat(a.body_size.saturating_sub(40));
        // The writes: --batch messages each, or (0) as many as fit in 64 KiB.
        let mut writes: Vec<String> = Vec::new();
        let mut cur = String::new();
        let mut in_cur = 0;
        for i in 0..n as u64 {
            let m = message(&sh, &self.recv_bare, base + i, &filler);
            let full = match a.batch {
                0 => cur.len() + m.len() > 1 << 16,
                b => in_cur == b,
            };
            if full && !cur.is_empty() {
                writes.push(std::mem::take(&mut cur));
                in_cur = 0;
            }
            cur.push_str(&m);
            in_cur += 1;
        }
        writes.push(cur);
        // How busy the machine is just before (other builds, ...), and anything left over.
        let m0 = machine_ticks();
        let quiet = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Some((id, _, el)) = self.next(quiet).await? {
            note_error(&sh, &self.who(id), &el);
        }
        r.busy_before_pct = busy_pct_since(m0);
        self.bounced = 0;

        // Store: all N messages, then a ping to the server.
        let ping_id = format!("op{k}");
        let ping = format!(
            "<iq type='get' id='{ping_id}' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
            xml_escape(&self.domain)
        );
        let cpu0 = cpu_snap(pids);
        let self0 = cpu_ns("self");
        let t0 = Instant::now();
        for w in writes {
            self.sender.send(w);
        }
        self.sender.send(ping);
        let limit = tokio::time::Instant::now() + Duration::from_secs(a.presence_timeout);
        let pinged = loop {
            let Some((id, at, el)) = self.next(limit).await? else {
                return Err(format!(
                    "round {k}: no ping result within {} s of sending {n} messages",
                    a.presence_timeout
                )
                .into());
            };
            if id == OFF_SENDER
                && elem_name(&el) == "iq"
                && attr(&el, "id") == Some(ping_id.as_str())
            {
                if attr(&el, "type") != Some("result") {
                    sh.stats
                        .error(format!("round {k}: ping: {}", error_condition(&el)));
                }
                break at;
            }
            note_error(&sh, &self.who(id), &el);
        };
        let cpu1 = cpu_snap(pids);
        let self1 = cpu_ns("self");
        r.store_ms = ms_since(t0, pinged);
        r.store_cpu_ms = cpu_between_ms(&cpu0, &cpu1);
        r.store_gen_cpu_pct = ns_diff_ms(self0, self1).map(|c| c / r.store_ms * 100.0);

        // Settle: until the server has been idle (under 0.5 ms of CPU per 10 ms) for 300 ms
        // (longer than kleiber's default flush window), at least 500 ms, at most 10 s; without
        // --server-pid, 1 s. Whether the messages are on disk is not observable from here
        // (kleiber: within its flush window; Prosody: written to the file, not fsynced, before
        // it handles the next stanza).
        let settle_start = Instant::now();
        let mut last_cpu = cpu1.clone();
        let mut last_busy = None;
        let mut idle_since = settle_start;
        loop {
            let tick = tokio::time::Instant::now() + Duration::from_millis(10);
            while let Some((id, _, el)) = self.next(tick).await? {
                note_error(&sh, &self.who(id), &el);
            }
            let now = Instant::now();
            let elapsed = now - settle_start;
            if cpu1.is_none() {
                if elapsed >= Duration::from_secs(1) {
                    break;
                }
                continue;
            }
            let c = cpu_snap(pids);
            if cpu_between_ms(&last_cpu, &c).unwrap_or(0.0) >= 0.5 {
                last_busy = Some(now);
                idle_since = now;
            }
            last_cpu = c;
            if (elapsed >= Duration::from_millis(500)
                && now - idle_since >= Duration::from_millis(300))
                || elapsed >= Duration::from_secs(10)
            {
                break;
            }
        }
        if cpu1.is_some() {
            r.tail_cpu_ms = cpu_between_ms(&cpu1, &last_cpu);
            r.quiet_ms = Some(last_busy.map_or(0.0, |t| ms_since(pinged, t)));
        }

        // Deliver: the recipient logs in, sends initial presence, gets the N messages.
        let cpu2 = cpu_snap(pids);
        let self2 = cpu_ns("self");
        let tc = Instant::now();
        let res = format!("{}{k}", a.resource);
        let (x, jid) = login_as(&sh, &self.recv_user, &res, false, false)
            .await
            .map_err(|e| format!("round {k}: login {}: {e}", self.recv_user))?;
        r.login_ms = ms_since(tc, Instant::now());
        let rid = OFF_DRAIN + 1 + k;
        let mut recv = Link::spawn(x, jid.clone(), rid, &self.evs_tx);
        let tp = Instant::now();
        recv.send("<presence/>".into());
        let mut seen = vec![false; n];
        let mut max_seen: Option<usize> = None;
        let mut first = None;
        let mut last = None;
        let mut done = None;
        let mut limit = tokio::time::Instant::now() + Duration::from_secs(a.presence_timeout);
        loop {
            if done.is_none() && r.received + self.bounced >= n {
                break; // the others were refused (quota): no use waiting for them
            }
            let Some((id, at, el)) = self.next(limit).await? else {
                break;
            };
            if id != rid || elem_name(&el) != "message" || attr(&el, "type") == Some("error") {
                note_error(&sh, &self.who(id), &el);
                continue;
            }
            let parsed = child_text(&el, "body").and_then(parse_body);
            let idx = match parsed {
                Some((run, seq, _)) if run == sh.run_id && seq >= base && seq < base + n as u64 => {
                    (seq - base) as usize
                }
                _ => {
                    r.stale += 1;
                    continue;
                }
            };
            if !el.contains("urn:xmpp:delay") {
                r.no_delay += 1;
            }
            if seen[idx] {
                r.duplicates += 1;
                continue;
            }
            seen[idx] = true;
            r.received += 1;
            if max_seen.is_some_and(|m| idx < m) {
                r.out_of_order += 1;
            }
            max_seen = Some(max_seen.map_or(idx, |m| m.max(idx)));
            first.get_or_insert(at);
            last = Some(at);
            if r.received == n && done.is_none() {
                done = Some((cpu_snap(pids), cpu_ns("self")));
                // Stay a little longer for duplicates and strays.
                limit = tokio::time::Instant::now() + Duration::from_millis(300);
            }
        }
        if let (Some((cpu3, self3)), Some(last)) = (done, last) {
            r.first_ms = first.map(|t| ms_since(tp, t));
            r.deliver_ms = Some(ms_since(tp, last));
            r.from_connect_ms = Some(ms_since(tc, last));
            r.deliver_cpu_ms = cpu_between_ms(&cpu2, &cpu3);
            r.deliver_gen_cpu_pct =
                ns_diff_ms(self2, self3).map(|c| c / ms_since(tc, last) * 100.0);
        } else {
            sh.stats.error(if self.bounced > 0 {
                format!(
                    "round {k}: only {} of {n} messages arrived; {} were refused",
                    r.received, self.bounced
                )
            } else {
                format!(
                    "round {k}: only {} of {n} messages arrived within {} s of the presence",
                    r.received, a.presence_timeout
                )
            });
        }
        // Log out; the next round starts with the recipient offline.
        recv.close();
        let _ = recv.task.await;
        self.wait_gone(&jid, &k.to_string()).await?;
        r.bounced = self.bounced;
        r.errors = sh.stats.errors.load(Ordering::Relaxed) - errors0;
        Ok(r)
    }
}

async fn offline(args: Args, n: usize) -> Res<()> {
    if n == 0 {
        return Err("--offline needs at least 1 message".into());
    }
    TRACE.store(args.trace, Ordering::Relaxed);
    let (sh, _phase) = Shared::new(&args, 0)?;
    let domain = args.domain.to_ascii_lowercase();
    let send_user = format!("{}-osend", args.user_prefix);
    let recv_user = format!("{}-orecv", args.user_prefix);
    let recv_bare = format!("{}@{domain}", recv_user.to_ascii_lowercase());
    eprintln!(
        "offline: {send_user}@{domain} sends {n} messages ({}-byte bodies) to {recv_bare} at {}:{} mech {}{}",
        args.body_size,
        args.host,
        args.port,
        args.mech.name(),
        if args.direct_tls { " direct-tls" } else { "" }
    );
    let register_first = args.register || args.register_only;
    let t_setup = Instant::now();
    if args.register_only {
        for u in [&send_user, &recv_user] {
            login_as(&sh, u, &args.resource, true, false)
                .await
                .map_err(|e| format!("register {u}: {e}"))?;
        }
        return register_result(&args, 2, 2, t_setup.elapsed().as_secs_f64(), 0);
    }
    let (x, jid) = login_as(&sh, &send_user, &args.resource, register_first, true)
        .await
        .map_err(|e| format!("login {send_user}: {e}"))?;
    let (evs_tx, evs) = mpsc::unbounded_channel();
    // One write per batch of messages (see `measure`), not coalesced further.
    let sender = Link::spawn_with(x, jid, OFF_SENDER, &evs_tx, 1);
    let mut ob = OfflineBench {
        sh: sh.clone(),
        n,
        domain,
        recv_user,
        recv_bare,
        sender,
        evs_tx,
        evs,
        bounced: 0,
        probe: None,
    };
    let leftover = ob.drain(register_first).await?;
    let setup_s = t_setup.elapsed().as_secs_f64();
    eprintln!("setup: {setup_s:.1} s; {leftover} messages were waiting for the recipient (taken)");
    let setup_errors = sh.stats.errors.load(Ordering::Relaxed);
    let mut runs = Vec::new();
    for k in 0..args.repeat.max(1) {
        let r = ob.measure(k).await?;
        eprintln!(
            "round {k}: stored {n} in {:.1} ms ({:.0}/s), server CPU {} ms + {} ms after the ping \
             result (busy until {} ms after it); recipient bound in {:.1} ms, first message {} ms \
             and all {} ms after the presence ({}/s), {} ms from the connect, server CPU {} ms; \
             received {} dup {} out-of-order {} no-delay {} bounced {} stale {} errors {}; \
             machine {} % busy before",
            r.store_ms,
            n as f64 / r.store_ms * 1000.0,
            fmt_opt(r.store_cpu_ms, 1),
            fmt_opt(r.tail_cpu_ms, 1),
            fmt_opt(r.quiet_ms, 0),
            r.login_ms,
            fmt_opt(r.first_ms, 1),
            fmt_opt(r.deliver_ms, 1),
            fmt_opt(r.deliver_ms.map(|d| n as f64 / d * 1000.0), 0),
            fmt_opt(r.from_connect_ms, 1),
            fmt_opt(r.deliver_cpu_ms, 1),
            r.received,
            r.duplicates,
            r.out_of_order,
            r.no_delay,
            r.bounced,
            r.stale,
            r.errors,
            fmt_opt(r.busy_before_pct, 0),
        );
        runs.push(r);
    }
    ob.sender.close();
    let _ = ob.sender.task.await;

    let med = |f: &dyn Fn(&OfflineRun) -> Option<f64>| median(runs.iter().filter_map(f).collect());
    let list = |f: &dyn Fn(&OfflineRun) -> Option<f64>| {
        runs.iter()
            .map(|r| fmt_opt(f(r), 0))
            .collect::<Vec<_>>()
            .join(",")
    };
    let sum = |f: &dyn Fn(&OfflineRun) -> usize| runs.iter().map(f).sum::<usize>();
    let per_s = |ms: Option<f64>| ms.map(|ms| n as f64 / ms * 1000.0);
    let per_msg_us = |ms: Option<f64>| ms.map(|ms| ms * 1000.0 / n as f64);
    let stored = |r: &OfflineRun| per_s(Some(r.store_ms));
    let delivered = |r: &OfflineRun| per_s(r.deliver_ms);
    let store_cpu = |r: &OfflineRun| match (r.store_cpu_ms, r.tail_cpu_ms) {
        (Some(a), Some(b)) => Some(a + b),
        _ => None,
    };
    let received_min = runs.iter().map(|r| r.received).min().unwrap_or(0);
    let missing = sum(&|r| n - r.received);
    let errors = sh.stats.errors.load(Ordering::Relaxed);
    println!(
        "RESULT server={} mode=offline msgs={n} body_size={} runs={} stored_per_s={} store_ms={} \
         store_server_cpu_ms={} store_tail_cpu_ms={} store_quiet_ms={} store_cpu_us_per_msg={} \
         store_gen_cpu_pct={} delivered_per_s={} deliver_ms={} first_ms={} deliver_from_connect_ms={} \
         login_ms={} deliver_server_cpu_ms={} deliver_cpu_us_per_msg={} deliver_gen_cpu_pct={} \
         busy_before_pct={} received={received_min} missing={missing} duplicates={} out_of_order={} \
         no_delay={} bounced={} stale={} leftover={leftover} stored_per_s_runs={} \
         delivered_per_s_runs={} setup_s={setup_s:.1} setup_errors={setup_errors} errors={errors}",
        args.label,
        args.body_size,
        runs.len(),
        fmt_opt(med(&stored), 0),
        fmt_opt(med(&|r| Some(r.store_ms)), 1),
        fmt_opt(med(&|r| r.store_cpu_ms), 1),
        fmt_opt(med(&|r| r.tail_cpu_ms), 1),
        fmt_opt(med(&|r| r.quiet_ms), 0),
        fmt_opt(med(&|r| per_msg_us(store_cpu(r))), 1),
        fmt_opt(med(&|r| r.store_gen_cpu_pct), 0),
        fmt_opt(med(&delivered), 0),
        fmt_opt(med(&|r| r.deliver_ms), 1),
        fmt_opt(med(&|r| r.first_ms), 1),
        fmt_opt(med(&|r| r.from_connect_ms), 1),
        fmt_opt(med(&|r| Some(r.login_ms)), 1),
        fmt_opt(med(&|r| r.deliver_cpu_ms), 1),
        fmt_opt(med(&|r| per_msg_us(r.deliver_cpu_ms)), 1),
        fmt_opt(med(&|r| r.deliver_gen_cpu_pct), 0),
        fmt_opt(med(&|r| r.busy_before_pct), 0),
        sum(&|r| r.duplicates),
        sum(&|r| r.out_of_order),
        sum(&|r| r.no_delay),
        sum(&|r| r.bounced),
        sum(&|r| r.stale),
        list(&stored),
        list(&delivered),
    );
    let bad = missing + sum(&|r| r.duplicates + r.out_of_order + r.no_delay + r.bounced);
    if errors > 0 || bad > 0 {
        return Err(format!(
            "{errors} errors, {bad} missing/duplicate/out-of-order/undelayed/bounced messages"
        )
        .into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reconnect-and-resume storm (--resume-storm N)
//
// Set-up tasks log the N sessions in and enable stream management with resumption, then keep
// reading (counting stanzas, answering <r/> and IQ requests) until the cut, when they hand
// their streams to the controller, which closes all the sockets with an RST (SO_LINGER 0: no
// </stream:stream>, no TLS close_notify, no FIN). Resume tasks (one per session, --concurrency
// at a time) then reconnect, authenticate and resume; they report `<resumed/>` to the
// controller and keep reading until it closes them.

const SM_NS: &str = "urn:xmpp:sm:3";

/// Phases of the storm's set-up, broadcast to the set-up tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StormPhase {
    /// Logging in and enabling stream management.
    Setup,
    /// --storm-message: send the message to the next session.
    Message,
    /// Stop reading and hand the stream back.
    Cut,
}

/// A session's stream-management counters, as its client sees them.
#[derive(Clone, Default)]
struct SmClient {
    /// Resumption id, as in `<enabled id=../>` (not unescaped: sent back as it came).
    id: String,
    /// The client's `h`: stanzas received since `<enabled/>`, what it acknowledges and resumes
    /// with. With --storm-message it stops counting at the storm message, as if that message
    /// and what followed it had been lost with the connection.
    h: u32,
    /// Stanzas received since `<enabled/>`, all of them.
    received: u32,
    /// `h` stopped counting at the storm message (until the resumption).
    frozen: bool,
    /// Stanzas sent since `<enabled/>`: the `h` the server should resume with.
    sent: u32,
}

fn storm_body_prefix(sh: &Shared) -> String {
    format!("storm {:08x} ", sh.run_id)
}

/// Name of the first child element of `e` (the condition of a `<failed/>`), or `none`.
fn first_child(e: &str) -> String {
    let Some(t) = tag_end(e.as_bytes(), 0) else {
        return "none".into();
    };
    let rest = &e[t..];
    match rest.find('<') {
        Some(p) if !rest[p..].starts_with("</") => elem_name(&rest[p..]).to_owned(),
        _ => "none".into(),
    }
}

/// Enables stream management with resumption on a bound stream.
async fn sm_enable<S: Io>(x: &mut Xmpp<S>) -> Res<SmClient> {
    x.send(&format!("<enable xmlns='{SM_NS}' resume='true'/>"))
        .await?;
    loop {
        let e = x.element().await?;
        match elem_name(&e) {
            "enabled" => {
                if !matches!(attr(&e, "resume"), Some("true" | "1")) {
                    return Err(format!("resumption not granted: {e}").into());
                }
                let id = attr(&e, "id").ok_or("<enabled/> without id")?;
                return Ok(SmClient {
                    id: id.to_owned(),
                    ..SmClient::default()
                });
            }
            "failed" => return Err(format!("<enable/> failed: {}", first_child(&e)).into()),
            // Before <enabled/>: not counted on either side.
            "iq" => answer_iq(x, &e).await?,
            _ => {}
        }
    }
}

/// An element received on a stream with stream management: counts stanzas (see `SmClient`),
/// answers `<r/>` and IQ requests. `freeze`: a storm message stops `h` (before the cut).
/// Returns whether it was one of this run's storm messages.
async fn sm_incoming<S: Io>(
    sh: &Shared,
    who: &str,
    x: &mut Xmpp<S>,
    sm: &mut SmClient,
    e: &str,
    freeze: bool,
) -> Res<bool> {
    let name = elem_name(e);
    match name {
        "message" | "presence" | "iq" => {
            sm.received += 1;
            let storm = name == "message"
                && child_text(e, "body").is_some_and(|b| b.starts_with(&storm_body_prefix(sh)));
            if storm && freeze {
                sm.frozen = true;
            }
            if !sm.frozen {
                sm.h += 1;
            }
            if name == "iq" && matches!(attr(e, "type"), Some("get" | "set")) {
                answer_iq(x, e).await?;
                sm.sent += 1;
            }
            note_error(sh, who, e);
            Ok(storm)
        }
        "r" => {
            x.send(&format!("<a xmlns='{SM_NS}' h='{}'/>", sm.h))
                .await?;
            Ok(false)
        }
        _ => Ok(false),
    }
}

/// Next element of a stream; a stream end or header is an error (stream errors are, already).
async fn next_element<S: Io>(x: &mut Xmpp<S>) -> Res<String> {
    match x.next().await? {
        Event::Element(e) if elem_name(&e) == "stream:error" => {
            Err(format!("stream error: {}", error_condition(&e)).into())
        }
        Event::Element(e) => Ok(e),
        Event::StreamHeader => Err("unexpected stream header".into()),
        Event::StreamEnd => Err("stream closed by server".into()),
    }
}

/// Set-up task of session `i`: log in, bind, initial presence, enable resumption; then read
/// until the cut and return the stream (`None` if it failed, or with --register-only).
async fn storm_setup(
    sh: Arc<Shared>,
    i: usize,
    mut phase: watch::Receiver<StormPhase>,
    got_message: Arc<AtomicUsize>,
) -> Option<(Tls, SmClient)> {
    let a = &sh.args;
    let user = user_name(a, i);
    let permit = sh.login_slots.acquire().await.expect("semaphore open");
    let r = async {
        let register_first = a.register || a.register_only;
        let (mut x, jid) = login_as(&sh, &user, &a.resource, register_first, true).await?;
        if a.register_only {
            return Ok((x, jid, SmClient::default()));
        }
        let sm = sm_enable(&mut x).await?;
        Ok::<_, BoxError>((x, jid, sm))
    }
    .await;
    drop(permit);
    let (mut x, jid, mut sm) = match r {
        Ok(v) => v,
        Err(e) => {
            sh.stats.failed.fetch_add(1, Ordering::SeqCst);
            sh.stats.error(format!("set-up {user}: {e}"));
            return None;
        }
    };
    sh.stats.bound.fetch_add(1, Ordering::SeqCst);
    if a.register_only {
        return None;
    }
    let _ = sh.jids[i].set(jid);
    let n = sh.jids.len();
    loop {
        let r: Res<()> = tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    return None;
                }
                let p = *phase.borrow_and_update();
                match p {
                    StormPhase::Cut => return Some((x, sm)),
                    StormPhase::Message => match sh.jids[(i + 1) % n].get() {
                        Some(to) => {
                            let m = format!(
                                "<message to='{}' type='chat' id='storm{i}'><body>{}{i}</body></message>",
                                xml_escape(to),
                                storm_body_prefix(&sh)
                            );
                            sm.sent += 1;
                            x.send(&m).await
                        }
                        None => Ok(()),
                    },
                    StormPhase::Setup => Ok(()),
                }
            }
            e = next_element(&mut x) => match e {
                Ok(e) => match sm_incoming(&sh, &user, &mut x, &mut sm, &e, true).await {
                    Ok(true) => {
                        got_message.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    }
                    Ok(false) => Ok(()),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        };
        if let Err(e) = r {
            sh.stats.error(format!("{user} before the cut: {e}"));
            return None;
        }
    }
}

/// Reconnects session `i`, authenticates and resumes it; returns the stream and the server's
/// `h` from `<resumed/>`.
async fn resume_one(sh: &Shared, i: usize, sm: &SmClient) -> Res<(Tls, u32)> {
    let a = &sh.args;
    let srv = main_server(a);
    let (mut x, features) = connect(sh, srv).await?;
    sasl(&mut x, &features, a.mech, &user_name(a, i), &a.password).await?;
    let features = x.open_stream(srv.domain).await?;
    if !features.contains(SM_NS) {
        return Err("no stream management offered after authentication".into());
    }
    x.send(&format!(
        "<resume xmlns='{SM_NS}' previd='{}' h='{}'/>",
        sm.id, sm.h
    ))
    .await?;
    let e = x.element().await?;
    match elem_name(&e) {
        "resumed" => {
            if attr(&e, "previd") != Some(sm.id.as_str()) {
                return Err(format!("<resumed/> for another session: {e}").into());
            }
            let h = attr(&e, "h")
                .and_then(|h| h.parse().ok())
                .ok_or_else(|| format!("<resumed/> without a valid h: {e}"))?;
            Ok((x, h))
        }
        "failed" => Err(format!("<failed/> {}", first_child(&e)).into()),
        _ => Err(format!("expected <resumed/>, got {e}").into()),
    }
}

/// What a resume task reports when its `<resumed/>` (or its failure) comes.
struct StormDone {
    i: usize,
    /// TCP connect (after waiting for a login slot).
    start: Instant,
    end: Instant,
    /// The server's `h`, or why the resumption failed.
    outcome: Result<u32, String>,
}

/// What a resumed session received after `<resumed/>`, until it was closed.
#[derive(Default, Clone, Copy)]
struct AfterResume {
    stanzas: u32,
    /// Copies of the storm message.
    copies: u32,
}

/// Resume task of session `i`: resume, report, then read until `close`; acknowledge everything
/// and close the stream.
async fn storm_resume(
    sh: Arc<Shared>,
    i: usize,
    mut sm: SmClient,
    done: mpsc::UnboundedSender<StormDone>,
    mut close: watch::Receiver<bool>,
    copies_in: Arc<AtomicUsize>,
) -> AfterResume {
    let mut out = AfterResume::default();
    let permit = sh.login_slots.acquire().await.expect("semaphore open");
    let start = Instant::now();
    let r = resume_one(&sh, i, &sm).await;
    let end = Instant::now();
    drop(permit);
    let (mut x, h) = match r {
        Ok(v) => v,
        Err(e) => {
            let _ = done.send(StormDone {
                i,
                start,
                end,
                outcome: Err(e.to_string()),
            });
            return out;
        }
    };
    let _ = done.send(StormDone {
        i,
        start,
        end,
        outcome: Ok(h),
    });
    // The server sends again what `h` left out: count from there.
    sm.frozen = false;
    let who = user_name(&sh.args, i);
    loop {
        let r = tokio::select! {
            _ = close.changed() => break,
            e = next_element(&mut x) => match e {
                Ok(e) => {
                    let before = sm.received;
                    match sm_incoming(&sh, &who, &mut x, &mut sm, &e, false).await {
                        Ok(storm) => {
                            out.stanzas += sm.received - before;
                            if storm {
                                out.copies += 1;
                                copies_in.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            }
        };
        if let Err(e) = r {
            sh.stats.error(format!("{who} after the resumption: {e}"));
            return out;
        }
    }
    // Acknowledge everything (the server would route unacknowledged messages again when the
    // session ends), then close the stream.
    let _ = x.send(&format!("<a xmlns='{SM_NS}' h='{}'/>", sm.h)).await;
    x.close(Duration::from_secs(3)).await;
    out
}

async fn resume_storm(args: Args, n: usize) -> Res<()> {
    if n == 0 {
        return Err("--resume-storm needs at least 1 session".into());
    }
    // Logging in again costs the client no PBKDF2 (see SALTED_CACHE): the storm measures the
    // server, not the generator's SCRAM.
    let _ = SALTED_CACHE.set(Mutex::new(HashMap::new()));
    let (sh, _phase) = Shared::new(&args, n)?;
    let pids = &args.server_pid;
    let ticks = clock_ticks();
    eprintln!(
        "resume-storm: {n} sessions at {}:{} domain {} mech {}{}, {} logins at a time{}",
        args.host,
        args.port,
        args.domain,
        args.mech.name(),
        if args.direct_tls { " direct-tls" } else { "" },
        args.concurrency.max(1),
        if args.storm_message {
            ", one message each to send again"
        } else {
            ""
        }
    );
    let (phase_tx, phase_rx) = watch::channel(StormPhase::Setup);
    let got_message = Arc::new(AtomicUsize::new(0));
    let rss_start = server_rss(pids);
    let t_setup = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            tokio::spawn(storm_setup(
                sh.clone(),
                i,
                phase_rx.clone(),
                got_message.clone(),
            ))
        })
        .collect();
    let all_in = wait_logins(&sh, n).await;
    let setup_s = t_setup.elapsed().as_secs_f64();
    let ready = sh.stats.bound.load(Ordering::SeqCst);
    let setup_failed = sh.stats.failed.load(Ordering::SeqCst);
    if args.register_only {
        for h in handles {
            let _ = h.await;
        }
        let errors = sh.stats.errors.load(Ordering::Relaxed);
        return register_result(&args, n, ready, setup_s, errors);
    }
    if !all_in || ready == 0 {
        return Err(format!("set-up: {ready} of {n} sessions ready, {setup_failed} failed").into());
    }
    eprintln!(
        "set-up: {ready} sessions with resumption enabled, {setup_failed} failed, in {setup_s:.1} s"
    );
    let mut msg_expected = 0;
    if args.storm_message {
        msg_expected = (0..n)
            .filter(|&i| sh.jids[i].get().is_some() && sh.jids[(i + n - 1) % n].get().is_some())
            .count();
        let _ = phase_tx.send(StormPhase::Message);
        let limit = Instant::now() + Duration::from_secs(args.presence_timeout);
        while got_message.load(Ordering::SeqCst) < msg_expected && Instant::now() < limit {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        eprintln!(
            "{} of {msg_expected} sessions got their message",
            got_message.load(Ordering::SeqCst)
        );
    }
    tokio::time::sleep(Duration::from_secs(args.settle)).await;

    // The cut.
    let _ = phase_tx.send(StormPhase::Cut);
    let mut streams = Vec::with_capacity(ready);
    let mut states = Vec::with_capacity(ready);
    for (i, h) in handles.into_iter().enumerate() {
        if let Ok(Some((x, sm))) = h.await {
            let _ = x.io.get_ref().set_zero_linger();
            streams.push(x);
            states.push((i, sm));
        }
    }
    let lost_before_cut = ready - states.len();
    let msg_before_cut = states.iter().filter(|(_, sm)| sm.frozen).count();
    let rss_before = server_rss(pids);
    // Connections refused for a full accept queue, and SYNs sent again (by the clients, here:
    // all on loopback) meanwhile; machine-wide.
    const TCP: [&str; 3] = ["ListenOverflows", "ListenDrops", "TCPSynRetrans"];
    let tcp0 = tcp_ext(&TCP);
    let cpu0 = cpu_snap(pids);
    let self0 = cpu_ns("self");
    let busy0 = machine_busy_ticks();
    let t_cut = Instant::now();
    drop(streams);
    let cut_ms = t_cut.elapsed().as_secs_f64() * 1000.0;
    eprintln!(
        "cut {} connections in {cut_ms:.1} ms; resuming",
        states.len()
    );
    if args.storm_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(args.storm_delay_ms)).await;
    }

    // The storm.
    let total = states.len();
    let mut expect_h = vec![0u32; n];
    let mut expect_copy = vec![false; n];
    for (i, sm) in &states {
        expect_h[*i] = sm.sent;
        expect_copy[*i] = sm.frozen;
    }
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let (close_tx, close_rx) = watch::channel(false);
    let copies_in = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<(usize, tokio::task::JoinHandle<AfterResume>)> = states
        .into_iter()
        .map(|(i, sm)| {
            let t = tokio::spawn(storm_resume(
                sh.clone(),
                i,
                sm,
                done_tx.clone(),
                close_rx.clone(),
                copies_in.clone(),
            ));
            (i, t)
        })
        .collect();
    drop(done_tx);
    let deadline = Instant::now() + Duration::from_secs(args.storm_timeout);
    let mut lat_us: Vec<u32> = Vec::with_capacity(total);
    let mut first_start: Option<Instant> = None;
    let mut last_resumed: Option<Instant> = None;
    let mut resumed_ok = vec![false; n];
    let mut failures = Kinds::default();
    let mut h_mismatch = 0usize;
    let mut reported = 0usize;
    let mut last_print = Instant::now();
    while reported < total {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let d = match tokio::time::timeout(left.min(Duration::from_secs(5)), done_rx.recv()).await {
            Ok(Some(d)) => d,
            Ok(None) => break,
            Err(_) => {
                eprintln!(
                    "  ... {} resumed, {} failed of {total}",
                    lat_us.len(),
                    reported - lat_us.len()
                );
                continue;
            }
        };
        reported += 1;
        first_start = Some(first_start.map_or(d.start, |f| f.min(d.start)));
        match d.outcome {
            Ok(h) => {
                lat_us.push((d.end - d.start).as_micros().min(u32::MAX as u128) as u32);
                last_resumed = Some(last_resumed.map_or(d.end, |l| l.max(d.end)));
                resumed_ok[d.i] = true;
                if h != expect_h[d.i] {
                    h_mismatch += 1;
                    sh.stats.error(format!(
                        "{}: <resumed h='{h}'/>, but {} stanzas were sent",
                        user_name(&args, d.i),
                        expect_h[d.i]
                    ));
                }
            }
            Err(e) => {
                sh.stats
                    .error(format!("resume {}: {e}", user_name(&args, d.i)));
                failures.add(&e);
            }
        }
        if last_print.elapsed() > Duration::from_secs(5) {
            last_print = Instant::now();
            eprintln!(
                "  ... {} resumed, {} failed of {total}",
                lat_us.len(),
                reported - lat_us.len()
            );
        }
    }
    let t_done = Instant::now();
    let cpu1 = cpu_snap(pids);
    let self1 = cpu_ns("self");
    let busy1 = machine_busy_ticks();
    let tcp1 = tcp_ext(&TCP);
    let rss_after = server_rss(pids);
    let resumed = lat_us.len();
    let failed = reported - resumed;
    let timed_out = total - reported;
    eprintln!(
        "storm: {resumed} resumed, {failed} failed, {timed_out} timed out, in {:.1} ms",
        (t_done - t_cut).as_secs_f64() * 1000.0
    );

    // The messages sent again: wait for them, then a little more for duplicates.
    let copies_expected = (0..n).filter(|&i| expect_copy[i] && resumed_ok[i]).count();
    if copies_expected > 0 {
        let limit = Instant::now() + Duration::from_secs(10);
        while copies_in.load(Ordering::SeqCst) < copies_expected && Instant::now() < limit {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu2 = cpu_snap(pids);
    let _ = close_tx.send(true);
    let mut after = vec![AfterResume::default(); n];
    for (i, mut t) in tasks {
        match tokio::time::timeout(Duration::from_secs(10), &mut t).await {
            Ok(Ok(a)) => after[i] = a,
            _ => t.abort(),
        }
    }
    let rss_end = server_rss(pids);

    let (mut msg_once, mut msg_missing, mut msg_dup) = (0, 0, 0);
    for i in 0..n {
        let c = after[i].copies;
        if expect_copy[i] && resumed_ok[i] {
            match c {
                0 => msg_missing += 1,
                1 => msg_once += 1,
                _ => msg_dup += 1,
            }
        } else if c > 0 {
            msg_dup += 1;
        }
    }
    let after_stanzas: u32 = after.iter().map(|a| a.stanzas).sum();
    lat_us.sort_unstable();
    let ms = |t: Option<Instant>, from: Instant| t.map(|t| (t - from).as_secs_f64() * 1000.0);
    let storm_ms = ms(last_resumed, t_cut);
    let from_first_ms = match (first_start, last_resumed) {
        (Some(f), Some(l)) => Some((l - f).as_secs_f64() * 1000.0),
        _ => None,
    };
    let first_connect_ms = ms(first_start, t_cut);
    let wall_ms = (t_done - t_cut).as_secs_f64() * 1000.0;
    let server_ms = cpu_between_ms(&cpu0, &cpu1);
    let tail_ms = cpu_between_ms(&cpu1, &cpu2);
    let self_ms = match (self0, self1) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e6),
        _ => None,
    };
    let other_pct = match (busy0, busy1, server_ms, self_ms) {
        (Some(b0), Some(b1), Some(s), Some(g)) => {
            let busy = b1.saturating_sub(b0) as f64 / ticks * 1000.0;
            Some((busy - s - g).max(0.0) / wall_ms * 100.0)
        }
        _ => None,
    };
    let pct = |v: Option<f64>| v.map(|v| v / wall_ms * 100.0);
    let tcp_delta = |k: usize| match (&tcp0, &tcp1) {
        (Some(a), Some(b)) => b[k].saturating_sub(a[k]).to_string(),
        _ => "na".to_string(),
    };
    let errors = sh.stats.errors.load(Ordering::Relaxed);
    println!(
        "RESULT server={} mode=resume-storm sessions={n} ready={ready} setup_failed={setup_failed} \
         lost_before_cut={lost_before_cut} concurrency={} delay_ms={} message={} resumed={resumed} \
         failed={failed} timed_out={timed_out} storm_ms={} from_first_connect_ms={} \
         first_connect_ms={} all_done_ms={wall_ms:.1} resumes_per_s={} resume_p50_ms={:.2} \
         resume_p90_ms={:.2} resume_p99_ms={:.2} resume_max_ms={:.2} server_cpu_s={} \
         cpu_ms_per_resume={} server_cpu_pct={} gen_cpu_pct={} other_cpu_pct={} \
         tail_cpu_s={} rss_start_kib={} rss_before_kib={} rss_after_kib={} rss_end_kib={} \
         h_mismatch={h_mismatch} msg_expected={msg_expected} msg_before_cut={msg_before_cut} \
         msg_once={msg_once} msg_missing={msg_missing} msg_dup={msg_dup} \
         after_resume_stanzas={after_stanzas} listen_overflows={} listen_drops={} \
         syn_retrans={} cut_ms={cut_ms:.1} setup_s={setup_s:.1} failures={} errors={errors}",
        args.label,
        args.concurrency.max(1),
        args.storm_delay_ms,
        u8::from(args.storm_message),
        fmt_opt(storm_ms, 1),
        fmt_opt(from_first_ms, 1),
        fmt_opt(first_connect_ms, 2),
        fmt_opt(storm_ms.map(|t| resumed as f64 / t * 1000.0), 0),
        percentile(&lat_us, 0.50),
        percentile(&lat_us, 0.90),
        percentile(&lat_us, 0.99),
        percentile(&lat_us, 1.0),
        fmt_opt(server_ms.map(|v| v / 1000.0), 3),
        fmt_opt(
            server_ms.filter(|_| resumed > 0).map(|v| v / resumed as f64),
            3
        ),
        fmt_opt(pct(server_ms), 0),
        fmt_opt(pct(self_ms), 0),
        fmt_opt(other_pct, 0),
        fmt_opt(tail_ms.map(|v| v / 1000.0), 3),
        fmt_u64(rss_start),
        fmt_u64(rss_before),
        fmt_u64(rss_after),
        fmt_u64(rss_end),
        tcp_delta(0),
        tcp_delta(1),
        tcp_delta(2),
        failures,
    );
    if failed + timed_out + lost_before_cut > 0 || h_mismatch + msg_missing + msg_dup > 0 {
        return Err(format!(
            "{failed} failed, {timed_out} timed out, {lost_before_cut} lost before the cut, \
             {h_mismatch} wrong h, {msg_missing} messages missing, {msg_dup} duplicated"
        )
        .into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Soak (--soak N)
//
// The N sessions are run by pump tasks (see the large-roster login above). One controller sends
// the messages (every 10 ms, as many as are due at --rate) from a random session to a random
// other one, checks what arrives where, and samples the server's RSS and CPU.

/// A soak message: its sender and addressee (client indices), and how often it arrived.
#[derive(Clone, Copy)]
struct SoakMsg {
    from: u32,
    to: u32,
    copies: u8,
}

/// The server at one moment of the soak (a `SAMPLE` line).
struct SoakSample {
    /// Seconds since the first message.
    t_s: f64,
    rss_kib: Option<u64>,
}

/// The soak's controller.
struct Soak {
    sh: Arc<Shared>,
    links: Vec<Option<Link>>,
    evs: mpsc::UnboundedReceiver<Ev>,
    /// Clients whose connection is up, and where each client is in `alive` (`usize::MAX`: not).
    alive: Vec<usize>,
    pos: Vec<usize>,
    /// By sequence number.
    msgs: Vec<SoakMsg>,
    filler: String,
    delivered: usize,
    duplicates: usize,
    /// Messages of this run at the wrong session or with an unknown sequence number, and
    /// messages that are not soak messages.
    unexpected: usize,
    /// Messages of an earlier run (kept offline since).
    stale: usize,
    /// Error replies to soak messages.
    bounced: usize,
    stream_errors: usize,
    /// Connections lost before the end.
    disconnects: usize,
    /// Send-to-receipt latencies of the messages delivered, in µs.
    lat_us: Vec<u32>,
    /// The controller is closing the sessions: lost connections are expected.
    closing: bool,
}

impl Soak {
    fn who(&self, i: usize) -> String {
        user_name(&self.sh.args, i)
    }

    fn add_link(&mut self, i: usize, link: Link) {
        self.pos[i] = self.alive.len();
        self.alive.push(i);
        self.links[i] = Some(link);
    }

    fn on_event(&mut self, ev: Ev) {
        let (id, el) = match ev {
            Ev::El { id, el, .. } => (id, el),
            Ev::Down { id, why } => {
                let p = self.pos[id];
                if !self.closing && p != usize::MAX {
                    self.disconnects += 1;
                    self.sh
                        .stats
                        .error(format!("{} lost its connection: {why}", self.who(id)));
                    self.alive.swap_remove(p);
                    if let Some(&moved) = self.alive.get(p) {
                        self.pos[moved] = p;
                    }
                    self.pos[id] = usize::MAX;
                }
                return;
            }
        };
        let name = elem_name(&el);
        if note_error(&self.sh, &self.who(id), &el) {
            match name {
                "stream:error" => self.stream_errors += 1,
                "message" => self.bounced += 1,
                _ => {}
            }
            return;
        }
        if name != "message" {
            return; // presences (our own, reflected), pings answered by the pump
        }
        let Some((run, seq, sent_us)) = child_text(&el, "body").and_then(parse_body) else {
            self.note_unexpected(id, &el);
            return;
        };
        if run != self.sh.run_id || el.contains("urn:xmpp:delay") {
            self.stale += 1;
            return;
        }
        match self.msgs.get_mut(seq as usize) {
            Some(m) if m.to as usize == id => {
                m.copies = m.copies.saturating_add(1);
                if m.copies == 1 {
                    self.delivered += 1;
                    let lat = now_us().saturating_sub(sent_us);
                    self.lat_us.push(lat.min(u32::MAX as u64) as u32);
                } else {
                    self.duplicates += 1;
                    if self.duplicates <= 5 {
                        eprintln!("duplicate: message {seq} arrived {} times", m.copies);
                    }
                }
            }
            _ => self.note_unexpected(id, &el),
        }
    }

    fn note_unexpected(&mut self, id: usize, el: &str) {
        self.unexpected += 1;
        if self.unexpected <= 5 {
            let el: String = el.chars().take(300).collect();
            eprintln!("unexpected message to {}: {el}", self.who(id));
        }
    }

    /// Sends the next message from a random session to another one; false if fewer than two
    /// are left.
    fn send_one(&mut self) -> bool {
        let n = self.alive.len();
        if n < 2 {
            return false;
        }
        let mut rng = rand::thread_rng();
        let a = rng.gen_range(0..n);
        let b = (a + rng.gen_range(1..n)) % n;
        let (from, to) = (self.alive[a], self.alive[b]);
        let (Some(sender), Some(addressee)) = (&self.links[from], &self.links[to]) else {
            return false;
        };
        let seq = self.msgs.len() as u64;
        sender.send(message(&self.sh, &addressee.jid, seq, &self.filler));
        self.msgs.push(SoakMsg {
            from: from as u32,
            to: to as u32,
            copies: 0,
        });
        true
    }

    /// Handles events until `done` or `until`.
    async fn run_until(&mut self, until: Instant, done: fn(&Soak) -> bool) {
        let until = tokio::time::Instant::from_std(until);
        while !done(self) {
            match tokio::time::timeout_at(until, self.evs.recv()).await {
                Ok(Some(ev)) => self.on_event(ev),
                _ => break,
            }
        }
    }

    /// Samples the server and prints a `SAMPLE` line.
    fn sample(&self, start: &CpuMark, ticks: f64) -> SoakSample {
        let pids = &self.sh.args.server_pid;
        let rss_kib = server_rss(pids);
        let used = CpuMark::now(pids).since(start, ticks);
        println!(
            "SAMPLE server={} t_s={:.0} rss_kib={} cpu_s={} gen_cpu_s={} other_cpu_s={} sent={} \
             delivered={} alive={} errors={}",
            self.sh.args.label,
            used.wall,
            fmt_u64(rss_kib),
            fmt_opt(used.server_s, 2),
            fmt_opt(used.gen_s, 2),
            fmt_opt(used.other_s, 2),
            self.msgs.len(),
            self.delivered,
            self.alive.len(),
            self.sh.stats.errors.load(Ordering::Relaxed)
        );
        SoakSample {
            t_s: used.wall,
            rss_kib,
        }
    }
}

/// Slope of the least-squares line through `points` (x, y); `None` without two distinct x.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

async fn soak(args: Args, n: usize) -> Res<()> {
    let duration = args.duration.unwrap_or(1800);
    let warmup = args.warmup.unwrap_or(300);
    if n < 2 {
        return Err("--soak needs at least 2 sessions".into());
    }
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        return Err("--rate must be a positive number".into());
    }
    if warmup >= duration && !args.register_only {
        return Err(format!(
            "--warmup ({warmup} s) must be shorter than --duration ({duration} s)"
        )
        .into());
    }
    let (sh, _phase) = Shared::new(&args, n)?;
    let pids = &args.server_pid;
    let ticks = clock_ticks();
    eprintln!(
        "soak: {n} sessions at {}:{} domain {} mech {}{}, {} logins at a time; then {} msg/s \
         for {duration} s (warm-up {warmup} s), a sample every {} s",
        args.host,
        args.port,
        args.domain,
        args.mech.name(),
        if args.direct_tls { " direct-tls" } else { "" },
        args.concurrency.max(1),
        args.rate,
        args.sample_secs
    );

    // Logins.
    let users: Vec<String> = (0..n).map(|i| user_name(&args, i)).collect();
    let rss_start = server_rss(pids);
    let login0 = CpuMark::now(pids);
    let logins = login_all(&sh, &users, args.register || args.register_only).await;
    let login_use = CpuMark::now(pids).since(&login0, ticks);
    let bound = logins.iter().filter(|r| r.is_ok()).count();
    let mut login_failures = Kinds::default();
    for e in logins.iter().filter_map(|r| r.as_ref().err()) {
        let e = e.to_string();
        if login_failures.0.values().sum::<usize>() < 5 {
            eprintln!("error: {e}");
        }
        // "login USER: what": counted by what.
        login_failures.add(e.split_once(": ").map_or(e.as_str(), |(_, what)| what));
    }
    if args.register_only {
        let errors = sh.stats.errors.load(Ordering::Relaxed);
        return register_result(&args, n, bound, login_use.wall, errors);
    }
    let logins_per_s = bound as f64 / login_use.wall;
    eprintln!(
        "{bound} sessions ready, {} failed, in {:.1} s ({logins_per_s:.0}/s)",
        n - bound,
        login_use.wall
    );
    let (evs_tx, evs) = mpsc::unbounded_channel();
    let mut st = Soak {
        sh: sh.clone(),
        links: (0..n).map(|_| None).collect(),
        evs,
        alive: Vec::with_capacity(n),
        pos: vec![usize::MAX; n],
        msgs: Vec::new(),
        filler: "x".repeat(args.body_size.saturating_sub(40)),
        delivered: 0,
        duplicates: 0,
        unexpected: 0,
        stale: 0,
        bounced: 0,
        stream_errors: 0,
        disconnects: 0,
        lat_us: Vec::new(),
        closing: false,
    };
    for (i, r) in logins.into_iter().enumerate() {
        if let Ok((x, jid)) = r {
            st.add_link(i, Link::spawn(x, jid, i, &evs_tx));
        }
    }
    drop(evs_tx);
    if st.alive.len() < 2 {
        return Err(format!("only {} sessions could log in", st.alive.len()).into());
    }
    // Let the server finish the logins (presences) before the reference figures.
    st.run_until(Instant::now() + Duration::from_secs(args.settle), |_| false)
        .await;
    let rss_ready = server_rss(pids);
    let setup_errors = sh.stats.errors.load(Ordering::Relaxed);

    // The messages.
    let total = (args.rate * duration as f64).round() as usize;
    st.msgs.reserve(total);
    st.lat_us.reserve(total);
    let start = CpuMark::now(pids);
    let t0 = start.at;
    let end = t0 + Duration::from_secs(duration);
    let period = Duration::from_secs(args.sample_secs.max(1));
    let mut next_sample = t0;
    let mut samples: Vec<SoakSample> = Vec::new();
    let mut pace = tokio::time::interval(Duration::from_millis(10));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = pace.tick() => {
                let now = Instant::now();
                let due = if now >= end {
                    total
                } else {
                    ((now - t0).as_secs_f64() * args.rate) as usize
                };
                while st.msgs.len() < due && st.send_one() {}
                if now >= end || st.alive.len() < 2 {
                    break;
                }
            }
            _ = tokio::time::sleep_until(next_sample.into()) => {
                samples.push(st.sample(&start, ticks));
                next_sample += period;
            }
            ev = st.evs.recv() => match ev {
                Some(ev) => st.on_event(ev),
                None => break,
            }
        }
    }
    if samples.last().is_none_or(|s| s.t_s + 1.0 < duration as f64) {
        samples.push(st.sample(&start, ticks));
    }
    let used = CpuMark::now(pids).since(&start, ticks);
    let sent = st.msgs.len();

    // The last messages, then a little longer for duplicates.
    let t_sent = Instant::now();
    st.run_until(t_sent + Duration::from_secs(args.drain_secs), |s| {
        s.delivered + s.bounced >= s.msgs.len()
    })
    .await;
    let drain_s = t_sent.elapsed().as_secs_f64();
    st.run_until(Instant::now() + Duration::from_secs(args.settle), |_| false)
        .await;
    let rss_drained = server_rss(pids);
    st.closing = true;
    let mut links: Vec<Link> = std::mem::take(&mut st.links)
        .into_iter()
        .flatten()
        .collect();
    eprintln!(
        "sent {sent}, delivered {}; closing {} sessions",
        st.delivered,
        links.len()
    );
    for l in &mut links {
        l.close();
    }
    for l in links {
        let _ = l.task.await;
    }
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let rss_closed = server_rss(pids);

    // Figures.
    let gone = |i: u32| st.pos[i as usize] == usize::MAX;
    let lost = st.msgs.iter().filter(|m| m.copies == 0).count();
    let lost_gone = st
        .msgs
        .iter()
        .filter(|m| m.copies == 0 && (gone(m.to) || gone(m.from)))
        .count();
    st.lat_us.sort_unstable();
    let after_warmup: Vec<&SoakSample> = samples
        .iter()
        .filter(|s| s.t_s + 0.5 >= warmup as f64)
        .collect();
    let points: Vec<(f64, f64)> = after_warmup
        .iter()
        .filter_map(|s| Some((s.t_s / 60.0, s.rss_kib? as f64)))
        .collect();
    let rss_warmup = after_warmup.first().and_then(|s| s.rss_kib);
    let rss_end = samples.last().and_then(|s| s.rss_kib);
    let rss_max = after_warmup.iter().filter_map(|s| s.rss_kib).max();
    let growth = match (rss_warmup, rss_end) {
        (Some(a), Some(b)) => Some(b as f64 - a as f64),
        _ => None,
    };
    let per_session = match (rss_start, rss_ready) {
        (Some(a), Some(b)) if bound > 0 => Some((b as f64 - a as f64) / bound as f64),
        _ => None,
    };
    let errors = sh.stats.errors.load(Ordering::Relaxed);
    println!(
        "RESULT server={} mode=soak sessions={n} bound={bound} login_failed={} login_s={:.1} \
         logins_per_s={logins_per_s:.1} {} rate={} duration_s={:.1} sent={sent} sent_per_s={:.1} \
         delivered={} lost={lost} lost_disconnected={lost_gone} duplicates={} unexpected={} \
         stale={} bounced={} stream_errors={} disconnects={} errors={errors} \
         setup_errors={setup_errors} drain_s={drain_s:.1} p50_ms={:.2} p99_ms={:.2} \
         max_ms={:.2} server_cpu_s={} server_cpu_pct={} cpu_s_per_1k={} gen_cpu_pct={} \
         other_cpu_pct={} rss_start_kib={} rss_ready_kib={} rss_kib_per_session={} \
         warmup_s={warmup} rss_warmup_kib={} rss_end_kib={} rss_max_kib={} rss_growth_kib={} \
         slope_kib_per_min={} samples={} rss_drained_kib={} rss_closed_kib={} \
         login_failures={login_failures}",
        args.label,
        n - bound,
        login_use.wall,
        login_use.login_fields(),
        args.rate,
        used.wall,
        sent as f64 / used.wall,
        st.delivered,
        st.duplicates,
        st.unexpected,
        st.stale,
        st.bounced,
        st.stream_errors,
        st.disconnects,
        percentile(&st.lat_us, 0.50),
        percentile(&st.lat_us, 0.99),
        percentile(&st.lat_us, 1.0),
        fmt_opt(used.server_s, 1),
        fmt_opt(used.pct(used.server_s), 1),
        fmt_opt(used.server_s.map(|c| c / sent.max(1) as f64 * 1000.0), 3),
        fmt_opt(used.pct(used.gen_s), 1),
        fmt_opt(used.pct(used.other_s), 1),
        fmt_u64(rss_start),
        fmt_u64(rss_ready),
        fmt_opt(per_session, 1),
        fmt_u64(rss_warmup),
        fmt_u64(rss_end),
        fmt_u64(rss_max),
        fmt_opt(growth, 0),
        fmt_opt(slope(&points), 1),
        samples.len(),
        fmt_u64(rss_drained),
        fmt_u64(rss_closed),
    );
    let bad = lost + st.duplicates + st.unexpected;
    if bad > 0 || errors > 0 || bound < n {
        return Err(format!(
            "{} logins failed, {lost} messages lost, {} duplicated, {} unexpected, {errors} errors",
            n - bound,
            st.duplicates,
            st.unexpected
        )
        .into());
    }
    Ok(())
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

/// Errors counted by kind (the start of the message, up to its first ':'), for a RESULT field:
/// `kind:count,...` or `none`.
#[derive(Default)]
struct Kinds(HashMap<String, usize>);

impl Kinds {
    fn add(&mut self, e: &str) {
        let kind: String = e
            .split(':')
            .next()
            .unwrap_or("")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(40)
            .collect();
        *self.0.entry(kind).or_default() += 1;
    }
}

impl std::fmt::Display for Kinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut v: Vec<String> = self.0.iter().map(|(k, n)| format!("{k}:{n}")).collect();
        v.sort();
        if v.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&v.join(","))
        }
    }
}

fn fmt_u64(v: Option<u64>) -> String {
    v.map_or("na".to_string(), |v| v.to_string())
}

fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.prec$}"),
        _ => "na".into(),
    }
}

/// Prints the RESULT line of --register-only: `ok` of `users` registered in `secs`; an error
/// if some failed.
fn register_result(a: &Args, users: usize, ok: usize, secs: f64, errors: u64) -> Res<()> {
    let failed = users - ok;
    println!(
        "RESULT server={} mode=register users={users} ok={ok} failed={failed} per_s={:.1} \
         errors={errors}",
        a.label,
        ok as f64 / secs
    );
    if failed == 0 {
        Ok(())
    } else {
        Err("some registrations failed".into())
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
    let federation = args.peer_port.is_some();
    if federation {
        if args.roster_login.is_some()
            || args.offline.is_some()
            || args.idle.is_some()
            || args.resume_storm.is_some()
            || args.soak.is_some()
        {
            return Err("--peer-port: only with the throughput mode (and --register-only)".into());
        }
        if args.peer_domain.is_none() {
            return Err("--peer-port needs --peer-domain".into());
        }
    }
    if let Some(n) = args.roster_login {
        return roster_login(args, n).await;
    }
    if let Some(n) = args.offline {
        return offline(args, n).await;
    }
    if let Some(n) = args.resume_storm {
        return resume_storm(args, n).await;
    }
    if let Some(n) = args.soak {
        return soak(args, n).await;
    }
    let idle = args.idle;
    let total = match idle {
        Some(n) => n,
        None => args.pairs * 2,
    };
    if total == 0 {
        return Err("nothing to do (0 clients)".into());
    }
    let (sh, phase_tx) = Shared::new(&args, total)?;
    let pids = &args.server_pid;
    let ticks = clock_ticks();
    let mode = if args.register_only {
        "register"
    } else if idle.is_some() {
        "idle"
    } else if federation {
        "federation"
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
    if let Some(p) = peer_server(&args).filter(|_| federation) {
        eprintln!(
            "  clients {}..{} to {}:{} domain {} (messages cross between the servers)",
            args.pairs, total, p.host, p.port, p.domain
        );
    }

    let rss_before = server_rss(pids);
    let login0 = CpuMark::now(pids);
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
    let login_use = CpuMark::now(pids).since(&login0, ticks);
    let login_secs = login_use.wall;
    let login_cpu = login_use.login_fields();
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
        return register_result(&args, total, bound, login_secs, errors);
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
            fmt_u64(rss_before),
            fmt_u64(rss_after),
            fmt_opt(rss_per_conn, 1)
        );
        println!("{line}");
        return Ok(());
    }

    // Throughput run (after --warmup seconds of unmeasured ping-pong).
    let (duration, warmup) = (args.duration.unwrap_or(30), args.warmup.unwrap_or(0));
    let start_us = now_us() + warmup * 1_000_000;
    let deadline_us = start_us + duration * 1_000_000;
    let _ = phase_tx.send(Phase::Run {
        start_us,
        deadline_us,
    });
    if warmup > 0 {
        eprintln!("  warm-up, {warmup} s");
        tokio::time::sleep(Duration::from_secs(warmup)).await;
    }
    let mark0 = CpuMark::now(pids);
    let cpu0_by_pid: Vec<Option<u64>> = pids.iter().map(|p| cpu_ticks(&p.to_string())).collect();
    let t0 = mark0.at;
    let mut progress = tokio::time::interval(Duration::from_secs(5));
    progress.tick().await;
    let end = tokio::time::Instant::from_std(t0 + Duration::from_secs(duration));
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
    let used = CpuMark::now(pids).since(&mark0, ticks);
    let wall = used.wall;
    let cpu1_by_pid: Vec<Option<u64>> = pids.iter().map(|p| cpu_ticks(&p.to_string())).collect();
    let rss_by_pid: Vec<Option<u64>> = pids.iter().map(|p| rss_kib(&p.to_string())).collect();
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
    let cpu_s = used.server_s;
    let cpu_s_per_1k = cpu_s.filter(|_| msgs > 0).map(|c| c / msgs as f64 * 1000.0);
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
        fmt_opt(used.pct(cpu_s), 0),
        fmt_opt(used.pct(used.gen_s), 0),
        fmt_opt(used.pct(used.other_s), 0),
        fmt_opt(rss_per_conn, 1),
    );
    if federation {
        // Per server (pid): CPU seconds per 1000 messages and RSS at the end of the run.
        let by_pid = |f: &dyn Fn(usize) -> String| {
            let v: Vec<String> = pids
                .iter()
                .enumerate()
                .map(|(k, p)| format!("{p}:{}", f(k)))
                .collect();
            if v.is_empty() {
                "na".to_string()
            } else {
                v.join(",")
            }
        };
        let cpu_k = |k: usize| match (cpu0_by_pid[k], cpu1_by_pid[k]) {
            (Some(a), Some(b)) if msgs > 0 => {
                Some(b.saturating_sub(a) as f64 / ticks / msgs as f64 * 1000.0)
            }
            _ => None,
        };
        let _ = write!(
            line,
            " warmup_s={warmup} rss_kib={} cpu_s_per_1k_by_pid={} rss_kib_by_pid={}",
            fmt_u64(
                rss_by_pid
                    .iter()
                    .copied()
                    .sum::<Option<u64>>()
                    .filter(|_| !pids.is_empty())
            ),
            by_pid(&|k| fmt_opt(cpu_k(k), 3)),
            by_pid(&|k| fmt_u64(rss_by_pid[k])),
        );
    }
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
