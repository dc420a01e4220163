//! The configuration file: TOML -> typed [`Config`].
//!
//! Every key has a default, so no file at all is a valid configuration (domain `localhost`,
//! STARTTLS on 127.0.0.1:5222, direct TLS on 127.0.0.1:5223, data in `./data`). A bad file fails
//! with one line naming the key and the problem ([`ConfigError`]). `config.example.toml`
//! documents every key; keep the two in step.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub mod archive;
mod components;
mod http;
mod proxy65;
mod push;
mod turn;
pub use archive::ArchiveConfig;
pub use components::ComponentConfig;
pub use http::{HttpConfig, UploadConfig};
pub use proxy65::Proxy65Config;
pub use push::PushConfig;
pub use turn::{ExternalService, ServiceKind, Transport, TurnConfig};

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory of the database and of generated certificates.
    pub data_dir: PathBuf,
    /// Allow retention keys beyond the privacy policy's bounds ([`RETENTION_BOUNDS`]); the
    /// server then warns at every start.
    pub allow_longer_retention: bool,
    /// Served domains, each with its certificate; the first is the default host.
    pub hosts: BTreeMap<String, HostConfig>,
    pub listen: ListenConfig,
    pub registration: RegistrationConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub delivery_errors: DeliveryErrorsConfig,
    pub storage: StorageConfig,
    pub offline: OfflineConfig,
    pub accounts: AccountsConfig,
    pub snapshots: SnapshotsConfig,
    pub contact: ContactConfig,
    pub s2s: S2sConfig,
    pub muc: MucConfig,
    pub http: HttpConfig,
    pub upload: UploadConfig,
    /// External components (XEP-0114): gateways and bots with a domain of their own.
    pub components: Vec<ComponentConfig>,
    pub turn: TurnConfig,
    pub proxy65: Proxy65Config,
    pub push: PushConfig,
    /// The message archive (XEP-0313), off unless the operator opts in.
    pub archive: ArchiveConfig,
    /// Connection worker threads (actix arbiters); 0 means one per CPU core.
    pub workers: usize,
    /// Service domains (group chat, upload, components, ...) -> the account host each
    /// belongs to (see `destinations.rs`). Filled in from the services' own sections and by
    /// whoever starts the server with services, not read from a key of its own.
    #[serde(skip)]
    pub services: BTreeMap<String, String>,
}

/// Retention keys whose bound the privacy policy fixes: (key, most days, what the policy
/// says). `accounts.delete_inactive_after_days = 0` (never) counts as beyond its bound.
pub const RETENTION_BOUNDS: &[(&str, u64, &str)] = &[
    (
        "accounts.delete_inactive_after_days",
        365,
        "accounts unused for 12 months are deleted",
    ),
    (
        "snapshots.keep_days",
        31,
        "snapshots are kept at most a month",
    ),
    (
        "delivery_errors.retention_days",
        31,
        "delivery errors are kept for diagnosis, at most a month",
    ),
    (
        "muc.delete_unused_rooms_after_days",
        365,
        "group chats unused for 12 months are deleted, like accounts",
    ),
    (
        "upload.expire_after_days",
        365,
        "shared files are deleted after at most a year",
    ),
    (
        "archive.retention_days",
        365,
        "archived messages are deleted after at most a year",
    ),
];

/// One virtual host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// PEM certificate chain (Let's Encrypt's `fullchain.pem`). When neither this nor `key` is
    /// set, a self-signed certificate is generated in the data directory on first start.
    pub certificate: Option<PathBuf>,
    /// PEM private key (Let's Encrypt's `privkey.pem`).
    pub key: Option<PathBuf>,
}

/// Listening sockets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// Client ports with STARTTLS (RFC 6120), usually 5222.
    pub c2s_starttls: Vec<SocketAddr>,
    /// Client ports with direct TLS (XEP-0368), usually 5223.
    pub c2s_direct_tls: Vec<SocketAddr>,
    /// Server-to-server ports with STARTTLS (RFC 6120), usually 5269.
    pub s2s: Vec<SocketAddr>,
    /// Server-to-server ports with direct TLS (XEP-0368), usually 5270.
    pub s2s_direct_tls: Vec<SocketAddr>,
    /// The external components' port (XEP-0114, plain TCP: keep it on loopback), bound only
    /// when a component uses it.
    pub components: Vec<SocketAddr>,
}

/// Federation with other servers (RFC 6120 server-to-server streams).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S2sConfig {
    /// Whether stanzas go to and come from other servers at all.
    pub enabled: bool,
    /// Refuse server-to-server streams without TLS.
    pub require_encryption: bool,
    /// Accept only peers whose certificate validates for their domain (no dialback).
    pub require_valid_certificates: bool,
    /// PEM file of the certificate authorities trusted for peers; unset = the system's.
    pub ca_file: Option<PathBuf>,
    /// Seconds without traffic after which a server-to-server stream is closed.
    pub idle_timeout_secs: u64,
    /// Seconds to resolve, connect and authenticate to another server.
    pub connect_timeout_secs: u64,
    /// Stanzas kept per remote domain while its connection is being set up.
    pub max_queued_stanzas: usize,
    /// Static routes: domain -> `host:port` (STARTTLS) or `tls://host:port` (direct TLS),
    /// used instead of DNS.
    pub routes: BTreeMap<String, String>,
    /// DNS servers (`ip:port`) asked for SRV records; empty = the system's (`/etc/resolv.conf`).
    pub dns_servers: Vec<SocketAddr>,
    /// Connect to servers found through DNS at loopback, private and link-local addresses
    /// (private deployments, tests); static routes are always followed.
    pub allow_private_addresses: bool,
}

impl Default for S2sConfig {
    fn default() -> Self {
        S2sConfig {
            enabled: true,
            require_encryption: true,
            require_valid_certificates: false,
            ca_file: None,
            idle_timeout_secs: 600,
            connect_timeout_secs: 30,
            max_queued_stanzas: 1000,
            routes: BTreeMap::new(),
            dns_servers: Vec::new(),
            allow_private_addresses: false,
        }
    }
}

/// A static server-to-server route (`s2s.routes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRoute {
    pub host: String,
    pub port: u16,
    /// XEP-0368 direct TLS instead of STARTTLS.
    pub direct_tls: bool,
}

impl StaticRoute {
    /// Parse `host:port`, `tcp://host:port` or `tls://host:port` (IPv6 in brackets).
    pub fn parse(s: &str) -> Result<StaticRoute, String> {
        let (direct_tls, rest) = if let Some(r) = s.strip_prefix("tls://") {
            (true, r)
        } else {
            (false, s.strip_prefix("tcp://").unwrap_or(s))
        };
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?}: expected host:port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{s:?}: invalid port {port:?}"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port == 0 {
            return Err(format!("{s:?}: expected host:port"));
        }
        Ok(StaticRoute {
            host: host.to_owned(),
            port,
            direct_tls,
        })
    }
}

/// In-band registration (XEP-0077).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    /// Whether new accounts may be created from clients.
    pub open: bool,
}

/// Password storage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// bcrypt cost of the hash used for SASL PLAIN (4..=31).
    pub bcrypt_cost: u32,
    /// PBKDF2 iterations of the SCRAM credentials (at least 4096).
    pub scram_iterations: u32,
}

/// Resource limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest stanza after authentication, in bytes (advertised with XEP-0478).
    pub max_stanza_bytes: usize,
    /// Largest stanza before authentication, in bytes.
    pub max_stanza_bytes_before_auth: usize,
    /// Most concurrent client connections; more are refused at accept.
    pub max_connections: usize,
    /// Seconds a new connection has to finish TLS and authentication.
    pub handshake_timeout_secs: u64,
    /// Bytes that may wait to be written to one client before it is disconnected.
    pub max_outbound_queue_bytes: usize,
    /// Seconds a session may be silent before the server pings it (XEP-0199).
    pub idle_ping_secs: u64,
    /// Seconds a pinged session has to show a sign of life before it is closed.
    pub ping_timeout_secs: u64,
    /// Clients on the machine itself (127.0.0.0/8, ::1) are exempt from the abuse limits below.
    pub exempt_loopback: bool,
    /// Connections per client address still in TLS or authentication (slowloris); 0 = no limit.
    pub max_unauthenticated_per_address: usize,
    /// Connections still in TLS or authentication from all addresses together (a slowloris
    /// from many addresses); 0 = no limit.
    pub max_unauthenticated: usize,
    /// In-band registrations allowed per client address (IPv6: per /64) per hour; 0 = no limit.
    pub registrations_per_address_per_hour: u32,
    /// In-band registrations allowed per hour in all; 0 = no limit.
    pub registrations_per_hour: u32,
    /// Messages from people not on the roster, per session per hour; 0 = no limit.
    pub stranger_messages_per_hour: u32,
    /// Bytes per second a client may send (a token bucket with `max_stanza_bytes` of burst);
    /// 0 = unlimited.
    pub max_bytes_per_second: u64,
    /// Subscription requests from people not on the roster, per account per hour; 0 = no limit.
    pub stranger_subscriptions_per_hour: u32,
    /// Longest delay, in seconds, before answering a login after repeated failures.
    pub max_login_delay_secs: u64,
    /// Most contacts on one roster.
    pub max_roster_items: usize,
    /// Largest vCard (XEP-0054), in bytes.
    pub max_vcard_bytes: usize,
    /// Most bytes of private XML storage (XEP-0049) per account.
    pub max_private_bytes: usize,
    /// Seconds a dropped session with XEP-0198 resumption waits for its client (0: none).
    pub sm_resume_timeout_secs: u64,
}

/// The delivery-error log (who -> whom, why; never content).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryErrorsConfig {
    /// Days an entry is kept.
    pub retention_days: u64,
}

/// The database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Milliseconds within which an accepted write reaches the disk (one fsync per window).
    pub flush_window_ms: u64,
    /// Free space (MiB) the data directory's file system must keep; below it new writes are
    /// refused with `resource-constraint`. 0 turns the guard off.
    pub min_free_mb: u64,
}

/// Messages kept for offline users (XEP-0160).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OfflineConfig {
    /// Most messages kept per user.
    pub max_messages_per_user: u64,
    /// Most bytes kept per user.
    pub max_bytes_per_user: u64,
}

/// Group chat (XEP-0045): one multi-user chat service per host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MucConfig {
    /// Whether each host has a group-chat service.
    pub enabled: bool,
    /// The service's domain; `{host}` stands for the host's domain.
    pub domain: String,
    /// Who may create rooms: `"local"` (accounts of this server), `"anyone"` (users of other
    /// servers too), `"nobody"`, or a list of bare JIDs.
    pub create_rooms: RoomCreators,
    /// Messages of discussion history a room keeps in memory for those who enter (never
    /// stored).
    pub history_messages: usize,
    /// Persistent rooms nobody entered for this many days are deleted.
    pub delete_unused_rooms_after_days: u64,
    /// Rooms one account may create per hour.
    pub max_rooms_created_per_hour: u32,
    /// Most occupants of a room (and the highest `muc#roomconfig_maxusers`).
    pub max_occupants: usize,
    /// Rooms one session (full JID) may be in at once.
    pub max_rooms_per_session: usize,
    /// Messages an occupant may send to a room per second (twice that in a burst).
    pub max_messages_per_second: u32,
    /// Longest subject, in characters.
    pub max_subject_chars: usize,
    /// Longest nickname, in characters.
    pub max_nick_chars: usize,
}

/// Who may create rooms: a policy (`"local"`, `"anyone"`, `"nobody"`) or a list of bare JIDs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RoomCreators {
    Policy(String),
    Jids(Vec<String>),
}

impl Default for MucConfig {
    fn default() -> Self {
        MucConfig {
            enabled: true,
            domain: "conference.{host}".into(),
            create_rooms: RoomCreators::Policy("local".into()),
            history_messages: 20,
            delete_unused_rooms_after_days: 365,
            max_rooms_created_per_hour: 10,
            max_occupants: 1000,
            max_rooms_per_session: 100,
            max_messages_per_second: 5,
            max_subject_chars: 1000,
            max_nick_chars: 64,
        }
    }
}

impl MucConfig {
    /// The group-chat domain of `host`.
    pub fn domain_of(&self, host: &str) -> String {
        self.domain.replace("{host}", host)
    }

    /// May `jid` (bare) create rooms? `local`: whether it is an account of this server.
    pub fn may_create(&self, jid: &str, local: bool) -> bool {
        match &self.create_rooms {
            RoomCreators::Policy(p) => match p.as_str() {
                "anyone" => true,
                "local" => local,
                _ => false,
            },
            RoomCreators::Jids(list) => list.iter().any(|j| j == jid),
        }
    }
}

/// XEP-0157 contact addresses shown in the server's disco#info (URIs: `mailto:`, `xmpp:`,
/// `https:`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContactConfig {
    pub abuse: Vec<String>,
    pub admin: Vec<String>,
    pub support: Vec<String>,
    pub security: Vec<String>,
}

/// Account retention (the privacy policy's "unused for 12 months").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// Delete accounts not logged in for this many days; 0 keeps them forever.
    pub delete_inactive_after_days: u64,
    /// Hours between checks for inactive accounts (and expired name blocks).
    pub cleanup_interval_hours: u64,
    /// Days a deleted account's name cannot be registered again; 0 allows it at once.
    pub reregistration_block_days: u64,
}

/// Periodic snapshots of all data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotsConfig {
    /// Directory of the snapshot files; empty means `<data_dir>/snapshots`.
    pub dir: PathBuf,
    /// Hours between snapshots; 0 disables them.
    pub interval_hours: u64,
    /// Days a snapshot is kept before it is deleted.
    pub keep_days: u64,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            delete_inactive_after_days: 365,
            cleanup_interval_hours: 24,
            reregistration_block_days: 30,
        }
    }
}

impl Default for SnapshotsConfig {
    fn default() -> Self {
        SnapshotsConfig {
            dir: PathBuf::new(),
            interval_hours: 24,
            keep_days: 30,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            flush_window_ms: 200,
            min_free_mb: 100,
        }
    }
}

impl Default for OfflineConfig {
    fn default() -> Self {
        OfflineConfig {
            max_messages_per_user: 500,
            max_bytes_per_user: 2 * 1024 * 1024,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let mut hosts = BTreeMap::new();
        hosts.insert("localhost".to_owned(), HostConfig::default());
        Config {
            data_dir: PathBuf::from("./data"),
            allow_longer_retention: false,
            hosts,
            listen: ListenConfig::default(),
            registration: RegistrationConfig::default(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            delivery_errors: DeliveryErrorsConfig::default(),
            storage: StorageConfig::default(),
            offline: OfflineConfig::default(),
            accounts: AccountsConfig::default(),
            snapshots: SnapshotsConfig::default(),
            contact: ContactConfig::default(),
            s2s: S2sConfig::default(),
            muc: MucConfig::default(),
            http: HttpConfig::default(),
            upload: UploadConfig::default(),
            components: Vec::new(),
            turn: TurnConfig::default(),
            proxy65: Proxy65Config::default(),
            push: PushConfig::default(),
            archive: ArchiveConfig::default(),
            workers: 0,
            services: BTreeMap::new(),
        }
    }
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            c2s_starttls: vec![SocketAddr::from(([127, 0, 0, 1], 5222))],
            c2s_direct_tls: vec![SocketAddr::from(([127, 0, 0, 1], 5223))],
            s2s: vec![SocketAddr::from(([127, 0, 0, 1], 5269))],
            s2s_direct_tls: Vec::new(),
            components: vec![SocketAddr::from(([127, 0, 0, 1], 5347))],
        }
    }
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig { open: true }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            bcrypt_cost: 10,
            scram_iterations: 10_000,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_stanza_bytes: 256 * 1024,
            max_stanza_bytes_before_auth: 8 * 1024,
            max_connections: 10_000,
            handshake_timeout_secs: 60,
            max_outbound_queue_bytes: 1024 * 1024,
            exempt_loopback: true,
            max_unauthenticated_per_address: 20,
            max_unauthenticated: 1000,
            registrations_per_address_per_hour: 5,
            registrations_per_hour: 100,
            stranger_messages_per_hour: 500,
            max_bytes_per_second: 100_000,
            stranger_subscriptions_per_hour: 20,
            max_login_delay_secs: 8,
            idle_ping_secs: 300,
            ping_timeout_secs: 60,
            max_roster_items: 1000,
            max_vcard_bytes: 128 * 1024,
            max_private_bytes: 1024 * 1024,
            sm_resume_timeout_secs: 300,
        }
    }
}

impl Default for DeliveryErrorsConfig {
    fn default() -> Self {
        DeliveryErrorsConfig { retention_days: 30 }
    }
}

/// Is `domain` one the public can reach, rather than a name for tests or a local network
/// (`localhost`, RFC 2606 / RFC 6761 / RFC 6762 names such as `.test`, `.local`, `.example`,
/// `.invalid`, `home.arpa`, `.internal`, `.lan`) or an address literal?
pub fn is_public_domain(domain: &str) -> bool {
    const PRIVATE: &[&str] = &[
        "localhost",
        "test",
        "local",
        "example",
        "invalid",
        "internal",
        "lan",
        "home.arpa",
    ];
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    let private_suffix = PRIVATE
        .iter()
        .any(|p| d == *p || d.ends_with(&format!(".{p}")));
    let literal = d.parse::<std::net::IpAddr>().is_ok() || d.starts_with('[');
    !(private_suffix || literal || !d.contains('.'))
}

/// A configuration problem, printed as one line: `config: <key>: <problem>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path (`limits.max_stanza_bytes`) or the file when no key is to blame.
    pub key: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config error: {}: {}", self.key, self.problem)
    }
}

impl std::error::Error for ConfigError {}

fn err(key: &str, problem: impl Into<String>) -> ConfigError {
    // Keys can hold anything a quoted TOML key can (`"a\nb"`); the error stays one line.
    let one_line = |s: &str| -> String {
        s.chars()
            .flat_map(|c| {
                if c.is_control() {
                    c.escape_default().collect::<Vec<_>>()
                } else {
                    vec![c]
                }
            })
            .collect()
    };
    ConfigError {
        key: one_line(key),
        problem: one_line(&problem.into()),
    }
}

/// Every `(key, value)` must be at least 1.
fn at_least_one(values: &[(&str, u64)]) -> Result<(), ConfigError> {
    match values.iter().find(|(_, v)| *v == 0) {
        Some((key, _)) => Err(err(key, "must be at least 1")),
        None => Ok(()),
    }
}

impl Config {
    /// Read and validate the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(&path.display().to_string(), format!("cannot read: {e}")))?;
        Config::parse(&text)
    }

    /// Parse and validate TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let mut problem = inner.message().replace('\n', " ").trim().to_owned();
            if let Some(span) = inner.span() {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                problem = format!("{problem} (line {line})");
            }
            let key = if path == "." || path.is_empty() {
                "file".to_owned()
            } else {
                path
            };
            err(&key, problem)
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// `muc`: a domain per host that is neither a host nor another host's service, a known
    /// creation policy, limits of at least one.
    fn validate_muc(&self) -> Result<(), ConfigError> {
        let m = &self.muc;
        if let RoomCreators::Policy(p) = &m.create_rooms {
            if !matches!(p.as_str(), "local" | "anyone" | "nobody") {
                return Err(err(
                    "muc.create_rooms",
                    format!("{p:?}: expected \"local\", \"anyone\", \"nobody\" or a list of JIDs"),
                ));
            }
        }
        if !m.enabled {
            return Ok(());
        }
        for (key, v) in [
            ("muc.max_occupants", m.max_occupants),
            ("muc.max_rooms_per_session", m.max_rooms_per_session),
            (
                "muc.max_messages_per_second",
                m.max_messages_per_second as usize,
            ),
            ("muc.max_subject_chars", m.max_subject_chars),
            ("muc.max_nick_chars", m.max_nick_chars),
        ] {
            if v == 0 {
                return Err(err(key, "must be at least 1"));
            }
        }
        Ok(())
    }

    /// The internal services that are on, one domain per host each: (the config key of the
    /// domain, its usual first label, the domain template with `{host}`). Every per-host
    /// service adds itself here.
    pub fn per_host_services(&self) -> Vec<(&'static str, &'static str, &str)> {
        let mut v = Vec::new();
        if self.muc.enabled {
            v.push(("muc.domain", "conference", self.muc.domain.as_str()));
        }
        if self.upload.enabled && self.http.enabled() {
            v.push(("upload.domain", "upload", self.upload.domain.as_str()));
        }
        if self.proxy65.enabled {
            v.push(("proxy65.domain", "proxy", self.proxy65.domain.as_str()));
        }
        v
    }

    /// The service domains of the per-host services: each a domain of its own for each host,
    /// neither a host nor another service's.
    fn check_service_domains(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::BTreeSet::new();
        for (key, example, template) in self.per_host_services() {
            for host in self.hosts.keys() {
                let d = template.replace("{host}", host);
                let ok = crate::xmpp::jid(&d)
                    .is_ok_and(|j| j.node().is_none() && j.resource().is_none());
                if !ok || self.hosts.contains_key(&d) || !seen.insert(d.clone()) {
                    return Err(err(
                        key,
                        format!("{d:?} (for {host}) must be a domain of its own for each host, e.g. \"{example}.{{host}}\""),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks the whole configuration, section by section, first problem first.
    fn validate(&self) -> Result<(), ConfigError> {
        self.validate_hosts()?;
        if self.listen.c2s_starttls.is_empty() && self.listen.c2s_direct_tls.is_empty() {
            return Err(err("listen", "no client listener configured"));
        }
        self.validate_auth()?;
        self.validate_limits()?;
        self.validate_storage()?;
        self.validate_s2s()?;
        self.validate_muc()?;
        self.http.validate()?;
        self.upload.validate()?;
        self.turn.validate()?;
        self.proxy65.validate()?;
        self.push.validate()?;
        self.archive.validate()?;
        self.check_service_domains()?;
        self.validate_components()?;
        if self.delivery_errors.retention_days == 0 {
            return Err(err("delivery_errors.retention_days", "must be at least 1"));
        }
        self.validate_retention()
    }

    /// `hosts`: at least one, each a normalised domain, certificate and key together.
    fn validate_hosts(&self) -> Result<(), ConfigError> {
        if self.hosts.is_empty() {
            return Err(err("hosts", "at least one host is required"));
        }
        for (name, host) in &self.hosts {
            let key = format!("hosts.{name}");
            let jid =
                jid::BareJid::new(name).map_err(|e| err(&key, format!("invalid domain: {e}")))?;
            if jid.node().is_some() || jid.as_str() != name {
                return Err(err(&key, "not a normalised domain name (use lower case)"));
            }
            if host.certificate.is_some() != host.key.is_some() {
                return Err(err(&key, "certificate and key must be given together"));
            }
        }
        Ok(())
    }

    /// `auth`: the bcrypt cost and SCRAM iteration count.
    fn validate_auth(&self) -> Result<(), ConfigError> {
        if !(4..=31).contains(&self.auth.bcrypt_cost) {
            return Err(err("auth.bcrypt_cost", "must be between 4 and 31"));
        }
        if self.auth.scram_iterations < 4096 {
            return Err(err("auth.scram_iterations", "must be at least 4096"));
        }
        Ok(())
    }

    /// `limits`: stanza sizes, connection and queue bounds, timers, roster size.
    fn validate_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        if l.max_stanza_bytes < 10_000 {
            return Err(err(
                "limits.max_stanza_bytes",
                "must be at least 10000 (RFC 6120 §13.12)",
            ));
        }
        if l.max_stanza_bytes_before_auth < 1024
            || l.max_stanza_bytes_before_auth > l.max_stanza_bytes
        {
            return Err(err(
                "limits.max_stanza_bytes_before_auth",
                "must be between 1024 and limits.max_stanza_bytes",
            ));
        }
        if l.max_connections == 0 {
            return Err(err("limits.max_connections", "must be at least 1"));
        }
        if l.handshake_timeout_secs == 0 {
            return Err(err("limits.handshake_timeout_secs", "must be at least 1"));
        }
        if l.max_outbound_queue_bytes < l.max_stanza_bytes {
            return Err(err(
                "limits.max_outbound_queue_bytes",
                "must be at least limits.max_stanza_bytes",
            ));
        }
        if l.idle_ping_secs == 0 || l.ping_timeout_secs == 0 {
            return Err(err(
                "limits.idle_ping_secs",
                "idle_ping_secs and ping_timeout_secs must be at least 1",
            ));
        }
        if l.max_roster_items == 0 {
            return Err(err("limits.max_roster_items", "must be at least 1"));
        }
        Ok(())
    }

    /// `storage`, `offline`, `accounts` and `snapshots`: what is kept on disk, and for how long.
    fn validate_storage(&self) -> Result<(), ConfigError> {
        if self.storage.min_free_mb > 1 << 30 {
            return Err(err(
                "storage.min_free_mb",
                "must be at most 1073741824 (1 PiB)",
            ));
        }
        if !(1..=10_000).contains(&self.storage.flush_window_ms) {
            return Err(err(
                "storage.flush_window_ms",
                "must be between 1 and 10000",
            ));
        }
        if self.offline.max_bytes_per_user < self.limits.max_stanza_bytes as u64
            && self.offline.max_messages_per_user > 0
        {
            return Err(err(
                "offline.max_bytes_per_user",
                "must be at least limits.max_stanza_bytes (or set offline.max_messages_per_user = 0)",
            ));
        }
        if self.accounts.cleanup_interval_hours == 0 {
            return Err(err("accounts.cleanup_interval_hours", "must be at least 1"));
        }
        if self.snapshots.keep_days == 0 {
            return Err(err("snapshots.keep_days", "must be at least 1"));
        }
        Ok(())
    }

    /// `s2s`: timeouts, and static routes to normalised remote (not local) domains.
    fn validate_s2s(&self) -> Result<(), ConfigError> {
        let s = &self.s2s;
        if s.idle_timeout_secs == 0 {
            return Err(err("s2s.idle_timeout_secs", "must be at least 1"));
        }
        if s.connect_timeout_secs == 0 {
            return Err(err("s2s.connect_timeout_secs", "must be at least 1"));
        }
        for (domain, route) in &s.routes {
            let key = format!("s2s.routes.{domain}");
            let jid =
                jid::BareJid::new(domain).map_err(|e| err(&key, format!("invalid domain: {e}")))?;
            if jid.node().is_some() || jid.as_str() != domain {
                return Err(err(&key, "not a normalised domain name (use lower case)"));
            }
            if self.hosts.contains_key(domain) {
                return Err(err(&key, "is a local host"));
            }
            StaticRoute::parse(route).map_err(|p| err(&key, p))?;
        }
        Ok(())
    }

    /// Retention beyond the privacy policy only with `allow_longer_retention`.
    fn validate_retention(&self) -> Result<(), ConfigError> {
        if self.allow_longer_retention {
            return Ok(());
        }
        match self.retention_beyond_policy().first() {
            Some((key, most, why)) => Err(err(
                key,
                format!(
                    "must be between 1 and {most} days ({why}); set allow_longer_retention = true to keep data longer than the privacy policy says"
                ),
            )),
            None => Ok(()),
        }
    }

    /// What an operator should know about a valid configuration, one line each: retention
    /// beyond the privacy policy (`allow_longer_retention`), public hosts without an abuse
    /// contact (XEP-0157). `kleiber check-config` prints them, the server logs them at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .retention_beyond_policy()
            .into_iter()
            .map(|(key, most, why)| {
                format!("allow_longer_retention: {key} is beyond the privacy policy's {most} days ({why})")
            })
            .collect();
        if self.upload.enabled && !self.http.enabled() {
            out.push(
                "upload.enabled: no [http] listener is configured, so there is no file upload"
                    .into(),
            );
        }
        if self.contact.abuse.is_empty() {
            for host in self.hosts.keys().filter(|h| is_public_domain(h)) {
                out.push(format!(
                    "hosts.{host}: a public server should publish an abuse contact (contact.abuse, XEP-0157), e.g. abuse = [\"mailto:abuse@{host}\"]"
                ));
            }
        }
        out
    }

    /// The retention keys set beyond their privacy-policy bound ([`RETENTION_BOUNDS`]).
    pub fn retention_beyond_policy(&self) -> Vec<(&'static str, u64, &'static str)> {
        RETENTION_BOUNDS
            .iter()
            .filter(|(key, most, _)| {
                let days = match *key {
                    "accounts.delete_inactive_after_days" => {
                        self.accounts.delete_inactive_after_days
                    }
                    "snapshots.keep_days" => self.snapshots.keep_days,
                    "muc.delete_unused_rooms_after_days" => self.muc.delete_unused_rooms_after_days,
                    "upload.expire_after_days" => self.upload.expire_after_days,
                    // Off: nothing is kept, so nothing is kept too long.
                    "archive.retention_days" => match self.archive.retention() {
                        Some(days) => days,
                        None => return false,
                    },
                    _ => self.delivery_errors.retention_days,
                };
                days == 0 || days > *most
            })
            .copied()
            .collect()
    }

    /// Where snapshots go.
    pub fn snapshot_dir(&self) -> PathBuf {
        if self.snapshots.dir.as_os_str().is_empty() {
            self.data_dir.join("snapshots")
        } else {
            self.snapshots.dir.clone()
        }
    }

    /// The default host (the first configured).
    pub fn default_host(&self) -> &str {
        self.hosts
            .keys()
            .next()
            .map(String::as_str)
            .unwrap_or("localhost")
    }

    /// The account host whose certificate `domain` presents: the host itself, or the parent
    /// host of a service domain.
    pub fn cert_host<'a>(&'a self, domain: &'a str) -> &'a str {
        match self.services.get(domain) {
            Some(parent) if !self.hosts.contains_key(domain) => parent,
            _ => domain,
        }
    }

    /// The handshake deadline.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.handshake_timeout_secs)
    }

    /// Number of connection worker threads.
    pub fn worker_count(&self) -> usize {
        if self.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.workers
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.default_host(), "localhost");
        assert!(c.registration.open);
        assert_eq!(c.listen.c2s_starttls[0].port(), 5222);
        assert_eq!(c.listen.c2s_direct_tls[0].port(), 5223);
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("../../config.example.toml");
        Config::parse(text).unwrap();
    }

    #[test]
    fn errors_stay_on_one_line() {
        let e = Config::parse("[s2s.routes]\n\"a\\nb\" = \"x\"\n").unwrap_err();
        assert!(!e.to_string().contains('\n'), "{e}");
        assert!(e.key.contains("a\\nb"), "{e}");
    }

    #[test]
    fn s2s_routes_are_checked() {
        let c = Config::parse("[s2s.routes]\n\"b.test\" = \"tls://[::1]:5270\"\n").unwrap();
        assert_eq!(
            StaticRoute::parse(&c.s2s.routes["b.test"]).unwrap(),
            StaticRoute {
                host: "::1".into(),
                port: 5270,
                direct_tls: true
            }
        );
        let e = Config::parse("[s2s.routes]\n\"b.test\" = \"nowhere\"\n").unwrap_err();
        assert_eq!(e.key, "s2s.routes.b.test");
        let e = Config::parse("[s2s.routes]\n\"B.test\" = \"h:1\"\n").unwrap_err();
        assert_eq!(e.key, "s2s.routes.B.test");
        let e = Config::parse("[s2s.routes]\n\"localhost\" = \"h:1\"\n").unwrap_err();
        assert!(e.problem.contains("local host"), "{e}");
        let e = Config::parse("[s2s]\nidle_timeout_secs = 0\n").unwrap_err();
        assert_eq!(e.key, "s2s.idle_timeout_secs");
    }

    #[test]
    fn service_domains_do_not_collide() {
        let e = Config::parse("[upload]\ndomain = \"conference.{host}\"\n").unwrap_err();
        assert_eq!(e.key, "upload.domain");
        let e = Config::parse("[muc]\ndomain = \"{host}\"\n").unwrap_err();
        assert_eq!(e.key, "muc.domain");
        let c = Config::parse("[muc]\nenabled = false\n[upload]\ndomain = \"conference.{host}\"\n");
        assert!(c.is_ok());
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = Config::parse("[limits]\nmax_stanza_bytes = \"big\"\n").unwrap_err();
        assert_eq!(e.key, "limits.max_stanza_bytes");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn unknown_key_is_refused() {
        let e = Config::parse("[registration]\nopen = true\nclosed = 1\n").unwrap_err();
        assert!(e.key.starts_with("registration"), "{e}");
        assert!(e.problem.contains("closed"), "{e}");
    }

    #[test]
    fn invalid_values_name_the_key() {
        let e = Config::parse("[auth]\nbcrypt_cost = 2\n").unwrap_err();
        assert_eq!(e.key, "auth.bcrypt_cost");
        let e = Config::parse("[hosts.\"Ex ample\"]\n").unwrap_err();
        assert!(e.key.starts_with("hosts."), "{e}");
        let e = Config::parse("[listen]\nc2s_starttls = [\"nope\"]\n").unwrap_err();
        assert!(e.key.starts_with("listen.c2s_starttls"), "{e}");
    }

    #[test]
    fn retention_beyond_the_policy_needs_allow_longer_retention() {
        for (text, key) in [
            (
                "[accounts]\ndelete_inactive_after_days = 366\n",
                "accounts.delete_inactive_after_days",
            ),
            (
                "[accounts]\ndelete_inactive_after_days = 0\n",
                "accounts.delete_inactive_after_days",
            ),
            ("[snapshots]\nkeep_days = 32\n", "snapshots.keep_days"),
            (
                "[delivery_errors]\nretention_days = 90\n",
                "delivery_errors.retention_days",
            ),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(e.problem.contains("allow_longer_retention"), "{e}");
            assert!(!e.to_string().contains('\n'));
            let c = Config::parse(&format!("allow_longer_retention = true\n{text}")).unwrap();
            assert_eq!(c.retention_beyond_policy()[0].0, key);
        }
        let c = Config::parse(
            "[snapshots]\nkeep_days = 31\n[accounts]\ndelete_inactive_after_days = 365\n",
        )
        .unwrap();
        assert!(c.retention_beyond_policy().is_empty());
    }

    #[test]
    fn public_hosts_without_an_abuse_contact_are_warned_about() {
        for d in [
            "localhost",
            "a.test",
            "box.local",
            "x.example",
            "chat.home.arpa",
            "127.0.0.1",
        ] {
            assert!(!is_public_domain(d), "{d}");
        }
        for d in ["example.org", "jabber.kleinerdrei.net"] {
            assert!(is_public_domain(d), "{d}");
        }
        assert!(Config::parse("").unwrap().warnings().is_empty());
        let c = Config::parse("[hosts.\"example.org\"]\n").unwrap();
        let w = c.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("hosts.example.org") && w[0].contains("contact.abuse"));
        let c = Config::parse(
            "[hosts.\"example.org\"]\n[contact]\nabuse = [\"mailto:abuse@example.org\"]\n",
        )
        .unwrap();
        assert!(c.warnings().is_empty());
    }

    #[test]
    fn syntax_error_gives_a_line() {
        let e = Config::parse("a = \n").unwrap_err();
        assert!(e.problem.contains("line 1"), "{e}");
    }
}
