//! `[proxy65]`: the file-transfer proxy (XEP-0065 SOCKS5 bytestreams), its listeners, the
//! address it gives clients and its limits. See `src/proxy65/` and `actors/proxy65.rs` for what
//! they drive.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::{at_least_one, err, ConfigError};

/// XEP-0065 SOCKS5 bytestreams proxy: one service domain per host, one relay for all.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Proxy65Config {
    /// Whether each host has a proxy service.
    pub enabled: bool,
    /// The service's domain; `{host}` stands for the host's domain.
    pub domain: String,
    /// The SOCKS5 listeners (plain TCP, as XEP-0065 has it; the payload is the clients'
    /// business, usually end-to-end encrypted).
    pub listen: Vec<SocketAddr>,
    /// The host name or IP address clients are told to connect to; empty: the first
    /// listener's IP. The port is always the first listener's (the bound one for port 0).
    pub advertise: String,
    /// Bandwidth of one transfer, in bytes per second; 0: no limit.
    pub max_bytes_per_second: u64,
    /// Bandwidth of all transfers of one account together, in bytes per second; 0: no limit.
    pub max_account_bytes_per_second: u64,
    /// Largest transfer, in megabytes; a transfer is cut when it passes it; 0: no limit.
    pub max_transfer_mb: u64,
    /// A connection not activated within this many seconds, or a transfer during which
    /// nothing moves for as long, is closed.
    pub idle_timeout_secs: u64,
    /// Transfers one account may run at once.
    pub max_transfers_per_account: usize,
}

impl Default for Proxy65Config {
    fn default() -> Self {
        Proxy65Config {
            enabled: true,
            domain: "proxy.{host}".into(),
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 7777))],
            advertise: String::new(),
            max_bytes_per_second: 10_000_000,
            max_account_bytes_per_second: 20_000_000,
            max_transfer_mb: 2048,
            idle_timeout_secs: 60,
            max_transfers_per_account: 5,
        }
    }
}

impl Proxy65Config {
    /// The proxy domain of `host`.
    pub fn domain_of(&self, host: &str) -> String {
        self.domain.replace("{host}", host)
    }

    /// Largest transfer in bytes (`u64::MAX`: no limit).
    pub fn max_transfer_bytes(&self) -> u64 {
        match self.max_transfer_mb {
            0 => u64::MAX,
            mb => mb.saturating_mul(1 << 20),
        }
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// The host given to clients: `advertise`, or the first listener's IP.
    pub fn advertised_host(&self) -> String {
        match (self.advertise.as_str(), self.listen.first()) {
            ("", Some(a)) => a.ip().to_string(),
            (host, _) => host.to_owned(),
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        let Some(first) = self.listen.first() else {
            return Err(err(
                "proxy65.listen",
                "no listener; set proxy65.enabled = false to turn the proxy off",
            ));
        };
        let host = self.advertise.as_str();
        if host.is_empty() && first.ip().is_unspecified() {
            return Err(err(
                "proxy65.advertise",
                format!("needed when the first listener is {first}: the address clients reach the proxy at"),
            ));
        }
        let is_ip = host.parse::<std::net::IpAddr>().is_ok();
        let is_name = crate::xmpp::jid(host)
            .is_ok_and(|j| j.node().is_none() && j.resource().is_none() && !host.contains(':'));
        if !host.is_empty() && !is_ip && !is_name {
            return Err(err(
                "proxy65.advertise",
                format!("{host:?}: expected a host name or an IP address, without a port"),
            ));
        }
        at_least_one(&[
            ("proxy65.idle_timeout_secs", self.idle_timeout_secs),
            (
                "proxy65.max_transfers_per_account",
                self.max_transfers_per_account as u64,
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn defaults_and_errors_name_the_key() {
        let c = Config::parse("").unwrap();
        assert!(c.proxy65.enabled);
        assert_eq!(c.proxy65.domain_of("a.test"), "proxy.a.test");
        assert_eq!(c.proxy65.advertised_host(), "127.0.0.1");
        let c = Config::parse("[proxy65]\nadvertise = \"proxy.example.org\"\n").unwrap();
        assert_eq!(c.proxy65.advertised_host(), "proxy.example.org");
        for (text, key) in [
            ("[proxy65]\nlisten = []\n", "proxy65.listen"),
            (
                "[proxy65]\nlisten = [\"0.0.0.0:7777\"]\n",
                "proxy65.advertise",
            ),
            (
                "[proxy65]\nadvertise = \"a.test:7777\"\n",
                "proxy65.advertise",
            ),
            ("[proxy65]\nadvertise = \"a b\"\n", "proxy65.advertise"),
            (
                "[proxy65]\nidle_timeout_secs = 0\n",
                "proxy65.idle_timeout_secs",
            ),
            ("[proxy65]\ndomain = \"upload.{host}\"\n", "proxy65.domain"),
            ("[proxy65]\nbandwidth = 1\n", "proxy65"),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert!(e.key.starts_with(key), "{text}: {e}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
        let c = Config::parse("[proxy65]\nenabled = false\nlisten = []\n").unwrap();
        assert!(c
            .per_host_services()
            .iter()
            .all(|s| s.0 != "proxy65.domain"));
    }
}
