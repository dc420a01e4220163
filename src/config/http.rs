//! The web side's configuration: `[http]` (listeners, public URL, WebSocket and BOSH limits)
//! and `[upload]` (XEP-0363 file sharing). See `src/http/` for what they drive.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{at_least_one, err, ConfigError};

/// The HTTPS (or plain HTTP behind a reverse proxy) listener: upload, WebSocket, BOSH,
/// host-meta and the server's own pages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// HTTPS listeners, with the hosts' certificates (chosen by SNI).
    pub listen: Vec<SocketAddr>,
    /// Plain-HTTP listeners for a reverse proxy that terminates TLS (nginx, Caddy). Keep them
    /// on loopback: clients must reach the server over TLS.
    pub listen_plain: Vec<SocketAddr>,
    /// The web side's public base URL per host, without a trailing slash; `{host}` stands
    /// for the host's domain. Upload URLs and host-meta are built from it.
    pub public_url: String,
    /// XMPP over WebSocket (RFC 7395) at `/xmpp-websocket`.
    pub websocket: bool,
    /// XMPP over BOSH (XEP-0206) at `/http-bind`.
    pub bosh: bool,
    /// The server's pages (`/`, `/privacy`, in German and English).
    pub pages: bool,
    /// WebSocket connections one IP address may hold at once (kept in memory only); 0: no
    /// limit.
    pub max_websockets_per_address: usize,
    /// BOSH sessions one IP address may hold at once (in memory only); 0: no limit.
    pub max_bosh_sessions_per_address: usize,
    /// Longest `wait` a BOSH client may ask for, in seconds.
    pub bosh_max_wait_secs: u64,
    /// A BOSH session without a request for this many seconds ends.
    pub bosh_inactivity_secs: u64,
    /// Largest request body other than an upload (BOSH bodies), in bytes.
    pub max_request_bytes: usize,
    /// A client must send its request headers within this many seconds (slow clients).
    pub request_timeout_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 5443))],
            listen_plain: Vec::new(),
            public_url: "https://{host}:5443".into(),
            websocket: true,
            bosh: true,
            pages: true,
            max_websockets_per_address: 20,
            max_bosh_sessions_per_address: 20,
            bosh_max_wait_secs: 60,
            bosh_inactivity_secs: 60,
            max_request_bytes: 256 * 1024,
            request_timeout_secs: 10,
        }
    }
}

impl HttpConfig {
    /// The public base URL of `host`'s web side (no trailing slash).
    pub fn url_of(&self, host: &str) -> String {
        self.public_url
            .replace("{host}", host)
            .trim_end_matches('/')
            .to_owned()
    }

    /// Whether anything listens.
    pub fn enabled(&self) -> bool {
        !self.listen.is_empty() || !self.listen_plain.is_empty()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let sample = self.url_of("example.org");
        if !(sample.starts_with("https://") || sample.starts_with("http://"))
            || sample.contains(char::is_whitespace)
        {
            return Err(err(
                "http.public_url",
                format!(
                    "{:?}: expected an http(s) URL such as \"https://{{host}}\"",
                    self.public_url
                ),
            ));
        }
        at_least_one(&[
            ("http.bosh_max_wait_secs", self.bosh_max_wait_secs),
            ("http.bosh_inactivity_secs", self.bosh_inactivity_secs),
            ("http.max_request_bytes", self.max_request_bytes as u64),
            ("http.request_timeout_secs", self.request_timeout_secs),
        ])
    }
}

/// XEP-0363 HTTP file upload: one upload service per host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    /// Whether each host has an upload service (it needs the web side).
    pub enabled: bool,
    /// The service's domain; `{host}` stands for the host's domain.
    pub domain: String,
    /// Largest file, in megabytes (advertised as `max-file-size`).
    pub max_file_size_mb: u64,
    /// What one account may have stored at once, in megabytes; 0: no quota.
    pub quota_mb: u64,
    /// Files are deleted this many days after their upload.
    pub expire_after_days: u64,
    /// Uploads one account may have in progress at once.
    pub max_concurrent_per_account: usize,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            enabled: true,
            domain: "upload.{host}".into(),
            max_file_size_mb: 100,
            quota_mb: 1024,
            expire_after_days: 30,
            max_concurrent_per_account: 3,
        }
    }
}

impl UploadConfig {
    /// The upload domain of `host`.
    pub fn domain_of(&self, host: &str) -> String {
        self.domain.replace("{host}", host)
    }

    /// Largest file in bytes.
    pub fn max_file_bytes(&self) -> u64 {
        self.max_file_size_mb.saturating_mul(1 << 20)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        at_least_one(&[
            ("upload.max_file_size_mb", self.max_file_size_mb),
            ("upload.expire_after_days", self.expire_after_days),
            (
                "upload.max_concurrent_per_account",
                self.max_concurrent_per_account as u64,
            ),
        ])
    }
}
