//! Certificate validation of peer servers (PKIX with a configurable CA store, RFC 6125
//! DNS-ID matching), done by hand after the handshake so that a peer whose certificate does
//! not validate can still authenticate with dialback instead of failing the TLS handshake.

use std::path::Path;

use openssl::nid::Nid;
use openssl::ssl::SslRef;
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::{X509StoreContext, X509};

/// The trusted certificate authorities.
pub struct Pki {
    store: X509Store,
}

/// A peer's certificate and the chain it sent, kept to check domains it claims later.
#[derive(Clone)]
pub struct PeerCert {
    cert: X509,
    chain: Vec<X509>,
}

impl PeerCert {
    /// The certificate the peer presented in `ssl`, if any.
    pub fn of(ssl: &SslRef) -> Option<PeerCert> {
        let cert = ssl.peer_certificate()?;
        let chain = ssl
            .peer_cert_chain()
            .map(|c| c.iter().map(|x| x.to_owned()).collect())
            .unwrap_or_default();
        Some(PeerCert { cert, chain })
    }
}

impl Pki {
    /// Trust the certificates in the PEM file `ca_file`, or the system's store when `None`.
    pub fn new(ca_file: Option<&Path>) -> Result<Pki, String> {
        let e = |e: openssl::error::ErrorStack| format!("openssl: {e}");
        let mut b = X509StoreBuilder::new().map_err(e)?;
        match ca_file {
            Some(f) => {
                let pem = std::fs::read(f).map_err(|err| format!("{}: {err}", f.display()))?;
                let certs = X509::stack_from_pem(&pem)
                    .map_err(|_| format!("{}: not a PEM certificate file", f.display()))?;
                if certs.is_empty() {
                    return Err(format!("{}: no certificate in the file", f.display()));
                }
                for c in certs {
                    b.add_cert(c).map_err(e)?;
                }
            }
            None => b.set_default_paths().map_err(e)?,
        }
        Ok(Pki { store: b.build() })
    }

    /// Does `peer` chain up to a trusted CA and name `domain` (RFC 6125 DNS-ID)?
    pub fn valid_for(&self, peer: &PeerCert, domain: &str) -> bool {
        if !names_domain(&peer.cert, domain) {
            return false;
        }
        let Ok(mut chain) = Stack::new() else {
            return false;
        };
        for c in &peer.chain {
            if chain.push(c.clone()).is_err() {
                return false;
            }
        }
        let Ok(mut ctx) = X509StoreContext::new() else {
            return false;
        };
        ctx.init(&self.store, &peer.cert, &chain, |c| c.verify_cert())
            .unwrap_or(false)
    }
}

/// Does the certificate name `domain`: a subjectAltName dNSName (with a wildcard only as the
/// whole leftmost label), or the common name when there is no dNSName at all?
pub fn names_domain(cert: &X509, domain: &str) -> bool {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let dns: Vec<String> = cert
        .subject_alt_names()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.dnsname().map(str::to_ascii_lowercase))
                .collect()
        })
        .unwrap_or_default();
    let matches = |pattern: &str| {
        let pattern = pattern.trim_end_matches('.');
        if let Some(rest) = pattern.strip_prefix("*.") {
            match domain.split_once('.') {
                Some((label, parent)) => !label.is_empty() && parent == rest,
                None => false,
            }
        } else {
            pattern == domain
        }
    };
    if !dns.is_empty() {
        return dns.iter().any(|d| matches(d));
    }
    cert.subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .filter_map(|e| e.data().to_string().ok())
        .any(|cn| matches(&cn.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_for(names: &[&str]) -> X509 {
        let dir = tempfile_dir();
        let (c, k) = (dir.join("c.pem"), dir.join("k.pem"));
        crate::tls::generate_self_signed(names[0], &c, &k).unwrap();
        let x = X509::from_pem(&std::fs::read(&c).unwrap()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        x
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("kleiber-pki-{}", crate::xmpp::random_id(8)));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn dns_names_match_exactly_or_by_one_wildcard_label() {
        let c = cert_for(&["a.test"]);
        assert!(names_domain(&c, "a.test"));
        assert!(names_domain(&c, "A.TEST"));
        assert!(!names_domain(&c, "b.test"));
        assert!(!names_domain(&c, "x.a.test"));
        let w = cert_for(&["*.example.org"]);
        assert!(names_domain(&w, "chat.example.org"));
        assert!(!names_domain(&w, "example.org"));
        assert!(!names_domain(&w, "a.b.example.org"));
    }

    #[test]
    fn self_signed_does_not_validate() {
        let c = cert_for(&["a.test"]);
        let pki = Pki::new(None).unwrap();
        let peer = PeerCert {
            cert: c,
            chain: Vec::new(),
        };
        assert!(!pki.valid_for(&peer, "a.test"));
    }
}
