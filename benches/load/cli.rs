//! Command-line arguments of the load generator, and the servers they name.

use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mech {
    #[value(name = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-1")]
    ScramSha1,
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
}

impl Args {
    /// `HOST:PORT domain DOMAIN mech MECH` (and ` direct-tls`), for the progress messages.
    pub(crate) fn target(&self) -> String {
        format!(
            "{}:{} domain {} mech {}{}",
            self.host,
            self.port,
            self.domain,
            self.mech.name(),
            if self.direct_tls { " direct-tls" } else { "" }
        )
    }
}

impl Mech {
    pub(crate) fn name(self) -> &'static str {
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
pub(crate) struct Args {
    /// Server address to connect to.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) host: String,
    /// Server c2s port.
    #[arg(long, default_value_t = 5222)]
    pub(crate) port: u16,
    /// XMPP domain of the users (also used as TLS SNI).
    #[arg(long, default_value = "localhost")]
    pub(crate) domain: String,
    /// Number of ping-pong pairs (2 * pairs client connections).
    #[arg(long, default_value_t = 250)]
    pub(crate) pairs: usize,
    /// Length of the measured phase, in seconds (throughput modes: 30; soak: 1800).
    #[arg(long)]
    pub(crate) duration: Option<u64>,
    /// User names are PREFIX0, PREFIX1, ...
    #[arg(long, default_value = "bench")]
    pub(crate) user_prefix: String,
    /// Password of all users.
    #[arg(long, default_value = "secret")]
    pub(crate) password: String,
    /// SASL mechanism.
    #[arg(long, value_enum, default_value = "SCRAM-SHA-1")]
    pub(crate) mech: Mech,
    /// Register the users first (XEP-0077 in-band registration); 'conflict' is ignored.
    #[arg(long)]
    pub(crate) register: bool,
    /// Only register the users (as many as the selected mode uses), then exit.
    #[arg(long)]
    pub(crate) register_only: bool,
    /// Use XEP-0368 direct TLS instead of STARTTLS.
    #[arg(long)]
    pub(crate) direct_tls: bool,
    /// RFC 7395 WebSocket at this path (e.g. `/xmpp-websocket`) on `--port` (then the HTTPS
    /// port) instead of a TCP stream.
    #[arg(long, value_name = "PATH")]
    pub(crate) websocket: Option<String>,
    /// Server process id(s), comma separated, for RSS and CPU figures (summed).
    #[arg(long, value_delimiter = ',')]
    pub(crate) server_pid: Vec<u32>,
    /// Memory mode: open N idle authenticated sessions, report server RSS per session.
    #[arg(long)]
    pub(crate) idle: Option<usize>,
    /// Maximum number of logins in progress at once.
    #[arg(long, default_value_t = 100)]
    pub(crate) concurrency: usize,
    /// Size of each message body in bytes (at least the header needs ~40).
    #[arg(long, default_value_t = 64)]
    pub(crate) body_size: usize,
    /// Resource to request at bind time.
    #[arg(long, default_value = "load")]
    pub(crate) resource: String,
    /// Give up if not all sessions are bound after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub(crate) login_timeout: u64,
    /// Idle mode: seconds to wait after the last login before reading the server's RSS;
    /// resume-storm mode: seconds between the last session set up and the cut; soak mode:
    /// seconds between the last login and the first message, and after the last message for
    /// late duplicates.
    #[arg(long, default_value_t = 3)]
    pub(crate) settle: u64,
    /// Label printed as server=... in the RESULT line.
    #[arg(long, default_value = "unknown")]
    pub(crate) label: String,
    /// Tokio worker threads (default: number of CPUs).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Large-roster login mode: PREFIX-owner with N mutually subscribed contacts PREFIX-c<i>
    /// (PREFIX = --user-prefix); measures the owner's login until presences are exchanged.
    #[arg(long, value_name = "N")]
    pub(crate) roster_login: Option<usize>,
    /// Roster-login mode: contacts online during the owner's login (default: N/2).
    #[arg(long)]
    pub(crate) roster_online: Option<usize>,
    /// Offline-message mode: PREFIX-osend sends N messages to PREFIX-orecv while it is offline,
    /// then PREFIX-orecv logs in and receives them (PREFIX = --user-prefix).
    #[arg(long, value_name = "N")]
    pub(crate) offline: Option<usize>,
    /// Offline mode: messages per write (a write is one TLS record, or several if it is over
    /// 16 KiB); 0: as many as fit in 64 KiB.
    #[arg(long, default_value_t = 0)]
    pub(crate) batch: usize,
    /// Roster-login and offline modes: number of measured rounds (medians are reported).
    #[arg(long, default_value_t = 1)]
    pub(crate) repeat: usize,
    /// Roster-login mode: subscription handshakes in progress at once during the set-up.
    #[arg(long, default_value_t = 8)]
    pub(crate) setup_window: usize,
    /// Roster-login and offline modes: give up waiting for the presences (the offline messages,
    /// the ping result) of one round after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub(crate) presence_timeout: u64,
    /// Roster-login and offline modes: print every stanza received (debugging a server).
    #[arg(long, hide = true)]
    pub(crate) trace: bool,
    /// Federation throughput: c2s port of a second server, where clients `pairs..2*pairs` log in
    /// (with --peer-domain); messages then cross from one server to the other.
    #[arg(long)]
    pub(crate) peer_port: Option<u16>,
    /// Federation throughput: address of the second server (default: --host).
    #[arg(long)]
    pub(crate) peer_host: Option<String>,
    /// Federation throughput: XMPP domain of the second server's users (required with
    /// --peer-port).
    #[arg(long)]
    pub(crate) peer_domain: Option<String>,
    /// Throughput modes: seconds of unmeasured ping-pong before the measured --duration (lets
    /// server-to-server links come up in the federation mode; default 0). Soak mode: seconds
    /// into the --duration at which the server's RSS is the reference (default 300).
    #[arg(long)]
    pub(crate) warmup: Option<u64>,
    /// Resume-storm mode: N sessions with XEP-0198 resumption lose their TCP connections at
    /// once and resume (--concurrency at a time); measures until all are resumed.
    #[arg(long, value_name = "N")]
    pub(crate) resume_storm: Option<usize>,
    /// Resume-storm mode: before the cut, session i sends a chat message to session i+1, and
    /// every session's `h` then leaves it out (as if it had been lost with the connection), so
    /// the server must send it again after `<resumed/>`; checked to arrive exactly once.
    #[arg(long)]
    pub(crate) storm_message: bool,
    /// Resume-storm mode: milliseconds between the cut and the first reconnection.
    #[arg(long, default_value_t = 0)]
    pub(crate) storm_delay_ms: u64,
    /// Resume-storm mode: give up waiting for the resumptions after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub(crate) storm_timeout: u64,
    /// Soak mode: N sessions (10,000 if N is left out) send --rate chat messages per second to
    /// each other for --duration seconds; each must arrive exactly once.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "10000")]
    pub(crate) soak: Option<usize>,
    /// Soak mode: chat messages per second, in all.
    #[arg(long, default_value_t = 1000.0)]
    pub(crate) rate: f64,
    /// Soak mode: seconds between two samples of the server's RSS and CPU.
    #[arg(long, default_value_t = 30)]
    pub(crate) sample_secs: u64,
    /// Soak mode: after the last message is sent, seconds to wait for the missing ones.
    #[arg(long, default_value_t = 30)]
    pub(crate) drain_secs: u64,
    /// Group-chat mode: N occupants in one room, one message per second each, for --duration
    /// seconds (default 30); also the join time into the full room (--repeat times).
    #[arg(long, value_name = "N")]
    pub(crate) muc: Option<usize>,
    /// Group-chat mode: the MUC service (default conference.DOMAIN).
    #[arg(long)]
    pub(crate) muc_service: Option<String>,
    /// Upload mode: XEP-0363 slot, PUT and GET of a file of N MiB, --repeat times.
    #[arg(long, value_name = "MB")]
    pub(crate) upload: Option<usize>,
    /// Upload mode: the upload service (default upload.DOMAIN).
    #[arg(long)]
    pub(crate) upload_service: Option<String>,
    /// Component mode: be an XEP-0114 component at HOST:PORT that echoes messages; --pairs
    /// clients keep one message each in flight through it.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) component: Option<String>,
    /// Component mode: the component's domain (default echo.DOMAIN).
    #[arg(long)]
    pub(crate) component_domain: Option<String>,
    /// Component mode: the handshake secret.
    #[arg(long, default_value = "bench-secret")]
    pub(crate) component_secret: String,
    /// Proxy mode: XEP-0065 transfer of N MiB through the SOCKS5 proxy, --repeat times.
    #[arg(long, value_name = "MB")]
    pub(crate) proxy65: Option<usize>,
    /// Proxy mode: the proxy service (default proxy.DOMAIN).
    #[arg(long)]
    pub(crate) proxy_service: Option<String>,
    /// Archive mode: --pairs pairs of users send N chat messages in all, archived on both sides;
    /// reports the server's CPU per 1,000 messages (see `mam.rs`; benches/mam.sh adds the bytes
    /// on disk).
    #[arg(long, value_name = "N")]
    pub(crate) mam_write: Option<u64>,
    /// Archive mode: PREFIX-owner and --mam-contacts contacts exchange N chat messages, growing
    /// the owner's archive by N (spread evenly over the contacts).
    #[arg(long, value_name = "N")]
    pub(crate) mam_fill: Option<u64>,
    /// Archive mode: PREFIX-owner asks N times for the last --mam-max messages with a random
    /// contact (XEP-0313 with an RSM `<before/>`); latency until `<fin/>`.
    #[arg(long, value_name = "N")]
    pub(crate) mam_query: Option<usize>,
    /// Archive modes: number of contacts PREFIX-k0.. of PREFIX-owner.
    #[arg(long, default_value_t = 100)]
    pub(crate) mam_contacts: usize,
    /// Archive query mode: the page size (RSM `<max/>`).
    #[arg(long, default_value_t = 50)]
    pub(crate) mam_max: usize,
    /// Archive query mode: the number of messages in the owner's archive, as the caller knows
    /// it; only printed (`archive=N` in the RESULT line).
    #[arg(long, value_name = "N")]
    pub(crate) mam_archive: Option<u64>,
    /// Archive query mode: queries before the measured ones (not counted).
    #[arg(long, default_value_t = 10)]
    pub(crate) mam_warmup: usize,
    /// Archive write and fill modes: messages in flight at most, in all.
    #[arg(long, default_value_t = 1000)]
    pub(crate) window: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub(crate) bench: bool,
}

/// A server clients log in to: c2s address and the users' domain (also the TLS SNI).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Server<'a> {
    pub(crate) host: &'a str,
    pub(crate) port: u16,
    pub(crate) domain: &'a str,
}

/// The server of --host/--port/--domain.
pub(crate) fn main_server(a: &Args) -> Server<'_> {
    Server {
        host: &a.host,
        port: a.port,
        domain: &a.domain,
    }
}

/// The second server of the federation mode (--peer-port), if any.
pub(crate) fn peer_server(a: &Args) -> Option<Server<'_>> {
    Some(Server {
        host: a.peer_host.as_deref().unwrap_or(&a.host),
        port: a.peer_port?,
        domain: a.peer_domain.as_deref().unwrap_or(&a.domain),
    })
}

/// Where client `i` of the throughput mode logs in: clients `pairs..` on the peer server in
/// the federation mode, all on the main server otherwise.
pub(crate) fn server_of(a: &Args, i: usize) -> Server<'_> {
    match peer_server(a) {
        Some(p) if a.idle.is_none() && i >= a.pairs => p,
        _ => main_server(a),
    }
}
