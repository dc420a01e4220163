//! Where a remote domain's server listens: a static route from `s2s.routes`, else DNS SRV
//! records (`_xmpps-server._tcp` for direct TLS, XEP-0368, and `_xmpp-server._tcp` for
//! STARTTLS, RFC 6120 §3.2), else the domain itself on port 5269.

use std::collections::HashMap;

use std::net::{IpAddr, SocketAddr};

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

    /// Whether `domain` has a static route (whose addresses are the operator's choice).
    pub fn is_routed(&self, domain: &str) -> bool {
        self.routes.contains_key(domain)
    }

    /// The targets for `domain`, best first.
    pub async fn targets(&self, domain: &str) -> Result<Vec<Target>, NoServer> {
        if let Some(r) = self.routes.get(domain) {
            return Ok(vec![r.clone()]);
        }
        if is_ip_literal(domain) {
            return Err(NoServer(format!(
                "{domain} is an IP address, not a domain: not federated"
            )));
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

/// A JID domain that is an IP address (`192.0.2.1`, `[2001:db8::1]`) rather than a name.
pub fn is_ip_literal(domain: &str) -> bool {
    let bare = domain
        .strip_prefix('[')
        .and_then(|d| d.strip_suffix(']'))
        .unwrap_or(domain);
    bare.parse::<IpAddr>().is_ok()
}

/// Whether `ip` is outside the public internet: loopback, private (RFC 1918, unique local),
/// link-local, shared (CGNAT), unspecified, broadcast, multicast or documentation ranges.
/// A peer must not be able to make the server connect there through DNS.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
        }
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
        assert!(rt.block_on(r.targets("127.0.0.9")).is_err());
        assert!(rt.block_on(r.targets("[::1]")).is_err());
    }

    #[test]
    fn internal_addresses() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(a.parse().unwrap()), "{a}");
        }
        for a in ["1.1.1.1", "2a01:4f8::1", "::ffff:8.8.8.8"] {
            assert!(!is_internal(a.parse().unwrap()), "{a}");
        }
        assert!(is_ip_literal("[2001:db8::1]") && is_ip_literal("192.0.2.1"));
        assert!(!is_ip_literal("example.org"));
    }
}
