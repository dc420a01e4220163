//! Helpers for server-to-server tests: a test certificate authority, kleiber instances for
//! any domain with static routes, and a raw server-to-server peer.

use super::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, SubjectAlternativeName};
use openssl::x509::{X509NameBuilder, X509};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use kleiber::config::{Config, HostConfig};
use kleiber::xml::{Element, ReaderLimits, StreamEvent, XmlReader};

/// A certificate authority for the test, and certificates it issues.
pub struct TestCa {
    dir: tempfile::TempDir,
    cert: X509,
    key: PKey<Private>,
}

pub fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

pub fn builder(cn: &str, key: &PKey<Private>) -> openssl::x509::X509Builder {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = ec_key();
        let mut b = builder("kleiber test CA", &key);
        let mut issuer = X509NameBuilder::new().unwrap();
        issuer
            .append_entry_by_nid(Nid::COMMONNAME, "kleiber test CA")
            .unwrap();
        b.set_issuer_name(&issuer.build()).unwrap();
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let cert = b.build();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert.to_pem().unwrap()).unwrap();
        TestCa { dir, cert, key }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A certificate for `domain` signed by the CA: (certificate, key) paths.
    pub fn issue(&self, domain: &str) -> (PathBuf, PathBuf) {
        let key = ec_key();
        let mut b = builder(domain, &key);
        b.set_issuer_name(self.cert.subject_name()).unwrap();
        b.append_extension(BasicConstraints::new().build().unwrap())
            .unwrap();
        b.append_extension(
            ExtendedKeyUsage::new()
                .server_auth()
                .client_auth()
                .build()
                .unwrap(),
        )
        .unwrap();
        let san = SubjectAlternativeName::new()
            .dns(domain)
            .build(&b.x509v3_context(Some(&self.cert), None))
            .unwrap();
        b.append_extension(san).unwrap();
        b.sign(&self.key, MessageDigest::sha256()).unwrap();
        let cert = b.build();
        let (c, k) = (
            self.dir.path().join(format!("{domain}.crt")),
            self.dir.path().join(format!("{domain}.key")),
        );
        std::fs::write(&c, cert.to_pem().unwrap()).unwrap();
        std::fs::write(&k, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        (c, k)
    }
}

/// A loopback port that was free a moment ago.
/// A kleiber serving `domain` on server-to-server port `port`, routing `others` statically.
pub fn start_domain(
    domain: &str,
    port: u16,
    others: &[(&str, String)],
    ca: Option<&TestCa>,
    tweak: &dyn Fn(&mut Config),
) -> TestServer {
    start_domain_with(domain, port, others, ca, tweak, Vec::new())
}

/// As [`start_domain`], with internal services (service, parent host).
pub fn start_domain_with(
    domain: &str,
    port: u16,
    others: &[(&str, String)],
    ca: Option<&TestCa>,
    tweak: &dyn Fn(&mut Config),
    services: Vec<(kleiber::actors::ServiceSpec, String)>,
) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    let host = match ca {
        Some(ca) => {
            let (c, k) = ca.issue(domain);
            HostConfig {
                certificate: Some(c),
                key: Some(k),
            }
        }
        None => HostConfig::default(),
    };
    cfg.hosts = BTreeMap::from([(domain.to_owned(), host)]);
    cfg.listen.s2s = vec![format!("127.0.0.1:{port}").parse().unwrap()];
    for (d, r) in others {
        cfg.s2s.routes.insert((*d).to_owned(), r.clone());
    }
    // A CA that signed nothing of the peers' when testing dialback, so that the machine's
    // own trust store plays no part.
    let unrelated;
    cfg.s2s.ca_file = Some(match ca {
        Some(ca) => ca.ca_file(),
        None => {
            unrelated = TestCa::new();
            let f = dir.path().join("unrelated-ca.pem");
            std::fs::copy(unrelated.ca_file(), &f).unwrap();
            f
        }
    });
    tweak(&mut cfg);
    TestServer::start_with_services(dir, cfg, services)
}

/// `a.test` and `b.test`, routed to each other.
pub fn pair(ca: Option<&TestCa>) -> (TestServer, TestServer) {
    pair_with(ca, &[])
}

/// `a.test` and `b.test`, `b.test` routing `a.test` and its service domain `service` to
/// it: for users of `b.test` using a service of `a.test`.
pub fn pair_for_service(service: &str) -> (TestServer, TestServer) {
    pair_with(None, &[service])
}

/// [`pair`], both servers configured by `tweak` as well.
pub fn pair_tweaked(tweak: &dyn Fn(&mut Config)) -> (TestServer, TestServer) {
    pair_with_tweak(None, &[], tweak)
}

/// [`pair`], with `b.test` also routing the domains `a_services` to `a.test`.
fn pair_with(ca: Option<&TestCa>, a_services: &[&str]) -> (TestServer, TestServer) {
    pair_with_tweak(ca, a_services, &|_| {})
}

fn pair_with_tweak(
    ca: Option<&TestCa>,
    a_services: &[&str],
    tweak: &dyn Fn(&mut Config),
) -> (TestServer, TestServer) {
    let (pa, pb) = (free_port(), free_port());
    let a_route = format!("127.0.0.1:{pa}");
    let a = start_domain(
        "a.test",
        pa,
        &[("b.test", format!("127.0.0.1:{pb}"))],
        ca,
        tweak,
    );
    let b_routes: Vec<(&str, String)> = std::iter::once("a.test")
        .chain(a_services.iter().copied())
        .map(|d| (d, a_route.clone()))
        .collect();
    let b = start_domain("b.test", pb, &b_routes, ca, tweak);
    (a, b)
}

/// A raw server-to-server peer over STARTTLS, optionally presenting a certificate.
pub struct Peer {
    pub reader: XmlReader<tokio::io::ReadHalf<Tls>>,
    pub writer: tokio::io::WriteHalf<Tls>,
    pub features: Element,
    stream_id: String,
}

pub fn s2s_header(from: &str, to: &str) -> String {
    format!("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='{from}' to='{to}' version='1.0'>")
}

impl Peer {
    pub async fn connect(
        addr: std::net::SocketAddr,
        from: &str,
        to: &str,
        cert: Option<(&Path, &Path)>,
    ) -> Peer {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(s2s_header(from, to).as_bytes())
            .await
            .unwrap();
        let mut got = Vec::new();
        read_until(&mut tcp, &mut got, "</stream:features>").await;
        let text = String::from_utf8_lossy(&got).to_string();
        assert!(text.contains("<starttls"), "{text}");
        tcp.write_all(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await
            .unwrap();
        let mut got = Vec::new();
        read_until(&mut tcp, &mut got, "<proceed").await;
        let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
        b.set_verify(SslVerifyMode::NONE);
        if let Some((c, k)) = cert {
            b.set_certificate_chain_file(c).unwrap();
            b.set_private_key_file(k, openssl::ssl::SslFiletype::PEM)
                .unwrap();
        }
        let mut conf = b.build().configure().unwrap();
        conf.set_verify_hostname(false);
        let ssl = conf.into_ssl(to).unwrap();
        let mut s = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
        std::pin::Pin::new(&mut s).connect().await.unwrap();
        let (r, w) = tokio::io::split(s);
        let mut p = Peer {
            reader: XmlReader::new(r, ReaderLimits::default()),
            writer: w,
            features: Element::default(),
            stream_id: String::new(),
        };
        p.open(from, to).await;
        p
    }

    pub async fn open(&mut self, from: &str, to: &str) {
        self.send(&s2s_header(from, to)).await;
        match self.next().await {
            StreamEvent::Header(h) => self.stream_id = h.attrs.get("id").cloned().unwrap(),
            other => panic!("expected a header, got {other:?}"),
        }
        self.features = self.recv().await;
        assert_eq!(self.features.name, "features");
    }

    pub async fn send(&mut self, s: &str) {
        self.writer.write_all(s.as_bytes()).await.unwrap();
    }

    pub async fn next(&mut self) -> StreamEvent {
        tokio::time::timeout(WAIT, self.reader.next())
            .await
            .expect("answer in time")
            .expect("well-formed")
    }

    pub async fn recv(&mut self) -> Element {
        match self.next().await {
            StreamEvent::Element(e) => e,
            other => panic!("expected an element, got {other:?}"),
        }
    }

    pub async fn expect_stream_error(&mut self, condition: &str) {
        let e = self.recv().await;
        assert_eq!(
            stream_error_condition(&e).as_deref(),
            Some(condition),
            "{}",
            e.to_xml("jabber:server")
        );
        match tokio::time::timeout(WAIT, self.reader.next())
            .await
            .expect("closed in time")
        {
            Ok(StreamEvent::End) | Err(_) => {}
            Ok(other) => panic!("expected the end of the stream, got {other:?}"),
        }
    }
}
