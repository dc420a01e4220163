//! `[turn]`: the STUN and TURN servers announced to the server's own users with XEP-0215
//! (external service discovery, `src/services/extdisco.rs`), and the secret shared with the
//! TURN server for time-limited credentials (the TURN REST API scheme: coturn's
//! `use-auth-secret` with `static-auth-secret`). No service listed: the feature is off.

use std::fmt;

use serde::Deserialize;

use super::{err, ConfigError};

/// Longest `turn.credential_ttl_secs`: a week. Credentials cannot be revoked (coturn only
/// checks the expiry and the HMAC), so a leaked one is good until then.
pub const MAX_CREDENTIAL_TTL_SECS: u64 = 7 * 24 * 3600;

/// Shortest `turn.secret`, in characters.
pub const MIN_SECRET_CHARS: usize = 16;

/// XEP-0215 services and TURN credentials.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TurnConfig {
    /// Shared with the TURN server (coturn's `static-auth-secret`); required when a `turn` or
    /// `turns` service is listed (a TURN server without credentials would be an open relay).
    pub secret: Option<String>,
    /// Issued credentials are valid for this many seconds (1 ..= a week).
    pub credential_ttl_secs: u64,
    /// The services, in the order announced; empty: XEP-0215 is not offered.
    pub services: Vec<ExternalService>,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            secret: None,
            credential_ttl_secs: 86_400,
            services: Vec::new(),
        }
    }
}

impl fmt::Debug for TurnConfig {
    /// Everything but the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnConfig")
            .field("secret", &self.secret.as_ref().map(|_| "(hidden)"))
            .field("credential_ttl_secs", &self.credential_ttl_secs)
            .field("services", &self.services)
            .finish()
    }
}

/// The XEP-0215 `type` of a service (from the XMPP registrar's list, the ones calls use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    Stun,
    Turn,
    /// TURN over TLS.
    Turns,
}

impl ServiceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Stun => "stun",
            ServiceKind::Turn => "turn",
            ServiceKind::Turns => "turns",
        }
    }

    /// TURN relays need credentials; STUN is anonymous.
    pub fn needs_credentials(self) -> bool {
        self != ServiceKind::Stun
    }
}

/// The XEP-0215 `transport` of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// One `[[turn.services]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalService {
    /// `stun`, `turn` or `turns`.
    #[serde(rename = "type")]
    pub kind: ServiceKind,
    /// Domain name or IP address clients connect to; `{host}` stands for the user's host.
    pub host: String,
    /// Default: 3478 (RFC 8489 / RFC 8656), 5349 for `turns`.
    pub port: Option<u16>,
    /// `udp` or `tcp`; default: `tcp` for `turns`, else `udp`.
    pub transport: Option<Transport>,
    /// A name clients may show.
    pub name: Option<String>,
}

impl ExternalService {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.kind {
            ServiceKind::Turns => 5349,
            _ => 3478,
        })
    }

    pub fn transport(&self) -> Transport {
        self.transport.unwrap_or(match self.kind {
            ServiceKind::Turns => Transport::Tcp,
            _ => Transport::Udp,
        })
    }

    /// The host announced to users of the account host `host`.
    pub fn host_for(&self, host: &str) -> String {
        self.host.replace("{host}", host)
    }
}

/// A domain name or an IP address.
fn is_host_name(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
        || (!s.is_empty()
            && !s.starts_with(['.', '-'])
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
}

impl TurnConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let ttl = self.credential_ttl_secs;
        if !(1..=MAX_CREDENTIAL_TTL_SECS).contains(&ttl) {
            return Err(err(
                "turn.credential_ttl_secs",
                format!("{ttl}: must be between 1 and {MAX_CREDENTIAL_TTL_SECS} (a week)"),
            ));
        }
        if let Some(s) = &self.secret {
            if s.chars().count() < MIN_SECRET_CHARS {
                return Err(err(
                    "turn.secret",
                    format!("too short: at least {MIN_SECRET_CHARS} characters (e.g. the output of `openssl rand -hex 32`)"),
                ));
            }
        }
        for (i, s) in self.services.iter().enumerate() {
            let key = |k: &str| format!("turn.services[{i}].{k}");
            if !is_host_name(&s.host_for("example.org")) {
                return Err(err(
                    &key("host"),
                    format!("{:?}: expected a domain name or an IP address", s.host),
                ));
            }
            if s.port == Some(0) {
                return Err(err(&key("port"), "must be between 1 and 65535"));
            }
            if s.kind.needs_credentials() && self.secret.is_none() {
                return Err(err(
                    "turn.secret",
                    format!(
                        "missing: turn.services[{i}] is a {} server, whose credentials are made with the secret it shares with kleiber (coturn's static-auth-secret)",
                        s.kind.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const SECRET: &str = "secret = \"0123456789abcdef\"\n";

    #[test]
    fn services_with_their_defaults() {
        let c = Config::parse(&format!(
            "[turn]\n{SECRET}[[turn.services]]\ntype = \"stun\"\nhost = \"turn.{{host}}\"\n\
             [[turn.services]]\ntype = \"turns\"\nhost = \"192.0.2.1\"\nname = \"relay\"\n"
        ))
        .unwrap();
        let t = &c.turn;
        assert_eq!(t.credential_ttl_secs, 86_400);
        assert_eq!(t.services[0].host_for("a.test"), "turn.a.test");
        assert_eq!(
            (t.services[0].port(), t.services[0].transport().as_str()),
            (3478, "udp")
        );
        assert_eq!(
            (t.services[1].port(), t.services[1].transport().as_str()),
            (5349, "tcp")
        );
        assert!(!format!("{t:?}").contains("0123456789abcdef"));
        assert!(Config::parse("[turn]\n").unwrap().turn.services.is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            (
                "[turn]\ncredential_ttl_secs = 0\n",
                "turn.credential_ttl_secs",
            ),
            (
                "[turn]\ncredential_ttl_secs = 604801\n",
                "turn.credential_ttl_secs",
            ),
            ("[turn]\nsecret = \"short\"\n", "turn.secret"),
            (
                "[[turn.services]]\ntype = \"turn\"\nhost = \"t.example\"\n",
                "turn.secret",
            ),
            (
                "[[turn.services]]\ntype = \"stunn\"\nhost = \"t.example\"\n",
                "turn.services[0].type",
            ),
            (
                "[[turn.services]]\ntype = \"stun\"\nhost = \"a b\"\n",
                "turn.services[0].host",
            ),
            (
                "[[turn.services]]\ntype = \"stun\"\nhost = \"t.example\"\nport = 0\n",
                "turn.services[0].port",
            ),
            (
                "[[turn.services]]\ntype = \"stun\"\nhost = \"h\"\ntransport = \"sctp\"\n",
                "turn.services[0].transport",
            ),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
        // STUN alone needs no secret.
        Config::parse("[[turn.services]]\ntype = \"stun\"\nhost = \"t.example\"\n").unwrap();
    }
}
