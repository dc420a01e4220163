//! Where a remote domain's server listens: a static route from `s2s.routes`, else DNS SRV
//! records (`_xmpps-server._tcp` for direct TLS, XEP-0368, and `_xmpp-server._tcp` for
//! STARTTLS, RFC 6120 §3.2), else the domain itself on port 5269.

use std::collections::HashMap;

use std::net::SocketAddr;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

use crate::config::{S2sConfig, StaticRoute};

/// One place to try, in order.
pub type Target = StaticRoute;

/// The default server-to-server port (RFC 6120 §14.7).
pub const DEFAULT_PORT: u16 = 5269;

/// Why a domain has no server to connect to.
#[derive(Debug)]
pub struct NoServer(pub String);

/// Resolves remote domains to connection targets.
pub struct Resolver {
    routes: HashMap<String, Target>,
    /// `s2s.dns_servers`; empty = the system's.
    dns_servers: Vec<SocketAddr>,
}

impl Resolver {
    /// A resolver with the configured static routes.
    pub fn new(cfg: &S2sConfig) -> Resolver {
        let routes = cfg
            .routes
            .iter()
            .filter_map(|(d, r)| Some((d.clone(), StaticRoute::parse(r).ok()?)))
            .collect();
        Resolver {
            routes,
            dns_servers: cfg.dns_servers.clone(),
        }
    }

    fn dns(&self) -> Result<TokioResolver, String> {
        if self.dns_servers.is_empty() {
            return TokioResolver::builder_tokio()
                .and_then(|b| b.build())
                .map_err(|e| e.to_string());
        }
        let servers = self
            .dns_servers
            .iter()
            .map(|a| {
                let (mut udp, mut tcp) = (ConnectionConfig::udp(), ConnectionConfig::tcp());
                udp.port = a.port();
                tcp.port = a.port();
                NameServerConfig::new(a.ip(), true, vec![udp, tcp])
            })
            .collect();
        let cfg = ResolverConfig::from_parts(None, Vec::new(), servers);
        TokioResolver::builder_with_config(cfg, TokioRuntimeProvider::default())
            .build()
            .map_err(|e| e.to_string())
    }

    /// The targets for `domain`, best first.
    pub async fn targets(&self, domain: &str) -> Result<Vec<Target>, NoServer> {
        if let Some(r) = self.routes.get(domain) {
            return Ok(vec![r.clone()]);
        }
        if domain.parse::<std::net::IpAddr>().is_ok() {
            return Ok(vec![fallback(domain)]);
        }
        // A resolver per lookup: links are set up rarely, and this keeps its background tasks
        // on the thread that asks.
        let dns = match self.dns() {
            Ok(r) => r,
            Err(e) => {
                log::warn!("s2s: no DNS resolver ({e}); trying {domain} on port {DEFAULT_PORT}");
                return Ok(vec![fallback(domain)]);
            }
        };
        let fqdn = |service: &str| format!("{service}.{domain}.");
        let (tls, tcp) = tokio::join!(
            dns.srv_lookup(fqdn("_xmpps-server._tcp")),
            dns.srv_lookup(fqdn("_xmpp-server._tcp"))
        );
        let mut records: Vec<(u16, u16, bool, String, u16)> = Vec::new();
        for (direct_tls, result) in [(true, tls), (false, tcp)] {
            let Ok(lookup) = result else { continue };
            for rec in lookup.answers() {
                if let RData::SRV(srv) = &rec.data {
                    let target = srv.target.to_ascii();
                    records.push((
                        srv.priority,
                        srv.weight,
                        direct_tls,
                        target.trim_end_matches('.').to_owned(),
                        srv.port,
                    ));
                }
            }
        }
        if records.is_empty() {
            return Ok(vec![fallback(domain)]);
        }
        // RFC 2782: a single record with target "." says the service is not offered.
        records.retain(|r| !r.3.is_empty());
        if records.is_empty() {
            return Err(NoServer(format!(
                "{domain} offers no server-to-server service"
            )));
        }
        // Lowest priority first; direct TLS first among equals (XEP-0368 §3); then heavier
        // weights first (a deterministic stand-in for RFC 2782's weighted random order).
        records.sort_by(|a, b| a.0.cmp(&b.0).then(b.2.cmp(&a.2)).then(b.1.cmp(&a.1)));
        Ok(records
            .into_iter()
            .map(|(_, _, direct_tls, host, port)| Target {
                host,
                port,
                direct_tls,
            })
            .collect())
    }
}

fn fallback(domain: &str) -> Target {
    Target {
        host: domain.to_owned(),
        port: DEFAULT_PORT,
        direct_tls: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_routes_win() {
        let mut cfg = S2sConfig::default();
        cfg.routes
            .insert("b.test".into(), "tls://127.0.0.1:5999".into());
        let r = Resolver::new(&cfg);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let t = rt.block_on(r.targets("b.test")).unwrap();
        assert_eq!(
            t,
            vec![Target {
                host: "127.0.0.1".into(),
                port: 5999,
                direct_tls: true
            }]
        );
        let t = rt.block_on(r.targets("127.0.0.9")).unwrap();
        assert_eq!(t[0].port, DEFAULT_PORT);
    }
}
