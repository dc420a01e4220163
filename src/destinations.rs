//! The destination table: what each domain served here is. The router resolves the domain of
//! every `to` with it, and every "is this ours?" check asks it:
//!
//! - an **account host** (`[hosts]` in the config): accounts log in there, their bare JIDs are
//!   PEP services, the server answers for it (disco, ping, version, registration);
//! - a **service domain** (e.g. `conference.example.org`): an actor owns it and receives every
//!   stanza addressed to it or to any JID in it ([`crate::actors::messages::ToService`]). It
//!   belongs to a parent account host, whose certificate it uses (unless it has its own),
//!   under which it is listed in disco#items, and it is reachable over server-to-server links
//!   like the host. Internal services (group chat, upload, ...) and external components
//!   (XEP-0114) are both service domains: the router cannot tell them apart.
//!
//! Every other domain is remote (federation). The table is fixed when the server starts;
//! whether a service is up right now is the router's to know (it bounces stanzas for a
//! service that is down with `service-unavailable`).

use std::collections::BTreeMap;

/// What a served domain is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Accounts live here.
    AccountHost,
    /// An actor owns the domain; `parent` is the account host it belongs to.
    Service { parent: String },
}

/// Every domain served here.
#[derive(Debug, Clone, Default)]
pub struct Destinations {
    domains: BTreeMap<String, Destination>,
}

impl Destinations {
    /// The account hosts of the config (`hosts`) and its service domains (`services`:
    /// service domain -> parent host).
    pub fn from_config(cfg: &crate::config::Config) -> Destinations {
        let mut domains: BTreeMap<String, Destination> = cfg
            .hosts
            .keys()
            .map(|h| (h.clone(), Destination::AccountHost))
            .collect();
        for (domain, parent) in &cfg.services {
            domains
                .entry(domain.clone())
                .or_insert_with(|| Destination::Service {
                    parent: parent.clone(),
                });
        }
        Destinations { domains }
    }

    /// What `domain` is here; `None`: a remote domain.
    pub fn get(&self, domain: &str) -> Option<&Destination> {
        self.domains.get(domain)
    }

    /// Is `domain` served here (an account host or a service)?
    pub fn serves(&self, domain: &str) -> bool {
        self.domains.contains_key(domain)
    }

    /// Is `domain` one of the account hosts?
    pub fn is_account_host(&self, domain: &str) -> bool {
        matches!(self.domains.get(domain), Some(Destination::AccountHost))
    }

    /// Is `domain` a service domain?
    pub fn is_service(&self, domain: &str) -> bool {
        matches!(self.domains.get(domain), Some(Destination::Service { .. }))
    }

    /// The service domains that belong to the account host `host` (its disco#items).
    pub fn services_of<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.domains.iter().filter_map(move |(d, k)| match k {
            Destination::Service { parent } if parent == host => Some(d.as_str()),
            _ => None,
        })
    }

    /// The account hosts.
    pub fn account_hosts(&self) -> impl Iterator<Item = &str> {
        self.domains
            .iter()
            .filter(|(_, k)| **k == Destination::AccountHost)
            .map(|(d, _)| d.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_services() {
        let mut cfg = crate::config::Config::parse("[hosts.\"a.test\"]\n[hosts.\"b.test\"]\n")
            .expect("config");
        cfg.services
            .insert("conference.a.test".into(), "a.test".into());
        // A service cannot shadow an account host.
        cfg.services.insert("b.test".into(), "a.test".into());
        let d = Destinations::from_config(&cfg);
        assert!(d.is_account_host("a.test") && d.is_account_host("b.test"));
        assert!(d.is_service("conference.a.test") && !d.is_account_host("conference.a.test"));
        assert!(d.serves("conference.a.test") && !d.serves("c.test"));
        assert_eq!(d.get("c.test"), None);
        assert_eq!(
            d.services_of("a.test").collect::<Vec<_>>(),
            ["conference.a.test"]
        );
        assert_eq!(d.services_of("b.test").count(), 0);
        assert_eq!(d.account_hosts().collect::<Vec<_>>(), ["a.test", "b.test"]);
    }
}
