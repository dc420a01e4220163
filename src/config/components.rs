//! External components (XEP-0114): `[[components]]`, one entry per gateway or bot that
//! connects to the component port with a shared secret and then owns a domain of its own.
//! See `src/component.rs` for the handshake and `actors/component.rs` for the stream.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{err, Config, ConfigError};

/// One external component.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentConfig {
    /// The domain the component serves, e.g. `irc.example.org`.
    pub domain: String,
    /// The shared secret of the XEP-0114 handshake.
    pub secret: String,
    /// A listener of its own; unset: the shared `listen.components` port.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// The account host it belongs to (its disco#items, its certificate); unset: the host
    /// the domain is a subdomain of, else the default host.
    #[serde(default)]
    pub parent: Option<String>,
}

impl Config {
    /// The account host the component `c` belongs to.
    pub fn component_parent(&self, c: &ComponentConfig) -> String {
        if let Some(p) = &c.parent {
            return p.clone();
        }
        self.hosts
            .keys()
            .filter(|h| c.domain.ends_with(&format!(".{h}")))
            .max_by_key(|h| h.len())
            .map_or_else(|| self.default_host().to_owned(), Clone::clone)
    }

    /// Does any component use the shared `listen.components` listener?
    pub fn shared_component_listener(&self) -> bool {
        self.components.iter().any(|c| c.listen.is_none())
    }

    /// `components`: each a normalised domain of its own (no host, no per-host service, no
    /// other component), a secret, a parent that is a host.
    pub(super) fn validate_components(&self) -> Result<(), ConfigError> {
        let services: std::collections::BTreeSet<String> = self
            .per_host_services()
            .iter()
            .flat_map(|(_, _, t)| self.hosts.keys().map(move |h| t.replace("{host}", h)))
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for (i, c) in self.components.iter().enumerate() {
            let key = |k: &str| format!("components[{i}].{k}");
            let normalised = crate::xmpp::jid(&c.domain).is_ok_and(|j| {
                j.node().is_none() && j.resource().is_none() && j.as_str() == c.domain
            });
            if !normalised {
                return Err(err(
                    &key("domain"),
                    format!("{:?}: not a normalised domain name", c.domain),
                ));
            }
            if self.hosts.contains_key(&c.domain)
                || services.contains(&c.domain)
                || !seen.insert(c.domain.as_str())
            {
                return Err(err(
                    &key("domain"),
                    format!(
                        "{}: already a host, a service or another component",
                        c.domain
                    ),
                ));
            }
            if c.secret.trim().is_empty() {
                return Err(err(&key("secret"), "must not be empty"));
            }
            if let Some(p) = &c.parent {
                if !self.hosts.contains_key(p) {
                    return Err(err(&key("parent"), format!("{p}: not one of the hosts")));
                }
            }
        }
        if self.shared_component_listener() && self.listen.components.is_empty() {
            return Err(err(
                "listen.components",
                "a component without a listener of its own needs this port",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[hosts.\"a.test\"]\n[hosts.\"b.test\"]\n";

    #[test]
    fn parent_is_the_host_above_or_the_default() {
        let c = Config::parse(&format!(
            "{BASE}[[components]]\ndomain = \"irc.b.test\"\nsecret = \"s\"\n\
             [[components]]\ndomain = \"gw.other.test\"\nsecret = \"s\"\nlisten = \"127.0.0.1:5348\"\n"
        ))
        .unwrap();
        assert_eq!(c.component_parent(&c.components[0]), "b.test");
        assert_eq!(c.component_parent(&c.components[1]), "a.test");
        assert!(c.shared_component_listener());
    }

    #[test]
    fn bad_components_name_the_key() {
        for (entry, key) in [
            (
                "domain = \"a.test\"\nsecret = \"s\"",
                "components[0].domain",
            ),
            (
                "domain = \"conference.a.test\"\nsecret = \"s\"",
                "components[0].domain",
            ),
            (
                "domain = \"Irc.a.test\"\nsecret = \"s\"",
                "components[0].domain",
            ),
            (
                "domain = \"irc.a.test\"\nsecret = \" \"",
                "components[0].secret",
            ),
            (
                "domain = \"irc.a.test\"\nsecret = \"s\"\nparent = \"c.test\"",
                "components[0].parent",
            ),
            ("domain = \"irc.a.test\"", "components"),
        ] {
            let e = Config::parse(&format!("{BASE}[[components]]\n{entry}\n")).unwrap_err();
            assert!(e.key.starts_with(key), "{entry}: {e}");
        }
        let twice = "[[components]]\ndomain = \"irc.a.test\"\nsecret = \"s\"\n";
        let e = Config::parse(&format!("{BASE}{twice}{twice}")).unwrap_err();
        assert_eq!(e.key, "components[1].domain");
        let e = Config::parse(&format!("{BASE}[listen]\ncomponents = []\n{twice}")).unwrap_err();
        assert_eq!(e.key, "listen.components");
    }
}
