//! External Service Discovery (XEP-0215) for STUN and TURN: the listing, its type filter and
//! the credentials query for the host's own users; the feature off without services; users
//! of other servers and unauthenticated streams refused; and the TURN REST API credentials
//! against a real coturn (Debian's `coturn`: `turnserver`, `turnutils_uclient`,
//! `turnutils_peer`, on loopback): accepted while valid, refused with 401 once expired.

mod common;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::procs::{installed, Proc};
use common::s2s::start_domain;
use common::*;
use kleiber::config::{Config, TurnConfig};
use kleiber::xml::Element;

const NS: &str = "urn:xmpp:extdisco:2";
const SECRET: &str = "a-secret-shared-with-coturn-0123";

/// `[turn]` with `secret`, `credential_ttl_secs = ttl` and `services` (TOML array entries).
fn turn(ttl: u64, services: &str) -> TurnConfig {
    Config::parse(&format!(
        "[turn]\nsecret = \"{SECRET}\"\ncredential_ttl_secs = {ttl}\n{services}"
    ))
    .unwrap()
    .turn
}

/// A STUN server, a TURN server on UDP and TCP, and TURN over TLS.
const SERVICES: &str = "\
[[turn.services]]\ntype = \"stun\"\nhost = \"stun.{host}\"\n\
[[turn.services]]\ntype = \"turn\"\nhost = \"turn.{host}\"\nname = \"Relay\"\n\
[[turn.services]]\ntype = \"turn\"\nhost = \"turn.{host}\"\ntransport = \"tcp\"\n\
[[turn.services]]\ntype = \"turns\"\nhost = \"turn.{host}\"\nport = 443\n";

/// Send `payload` in an IQ get to `to`; the answer.
async fn ask(c: &mut Client, to: &str, payload: &str) -> Element {
    let id = format!("x{}", rand::random::<u32>());
    c.send(&format!(
        "<iq type='get' id='{id}' to='{to}'>{payload}</iq>"
    ))
    .await;
    loop {
        let e = c.recv().await;
        if e.name == "iq" && e.get_attr("id") == Some(id.as_str()) {
            return e;
        }
    }
}

/// The `<service/>`s of an answer's `<services/>` or `<credentials/>`.
fn listed(answer: &Element) -> Vec<Element> {
    assert_eq!(
        answer.get_attr("type"),
        Some("result"),
        "{}",
        answer.to_xml("jabber:client")
    );
    let list = answer.elements().next().expect("a payload");
    assert_eq!(list.ns, NS);
    list.elements().cloned().collect()
}

fn attr<'a>(e: &'a Element, name: &str) -> &'a str {
    e.get_attr(name)
        .unwrap_or_else(|| panic!("{name} missing: {}", e.to_xml("jabber:client")))
}

/// base64(HMAC-SHA1(secret, user name)), computed with OpenSSL rather than kleiber's code.
fn expected_password(username: &str) -> String {
    use base64::Engine;
    let key = openssl::pkey::PKey::hmac(SECRET.as_bytes()).unwrap();
    let mut s = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha1(), &key).unwrap();
    s.update(username.as_bytes()).unwrap();
    base64::engine::general_purpose::STANDARD.encode(s.sign_to_vec().unwrap())
}

/// Checks a TURN service's credentials (user name `<expiry>:<random id>`, no JID, the REST
/// API password); returns (user name, password, expiry).
fn credentials_of(s: &Element) -> (String, String, u64) {
    assert_eq!(attr(s, "restricted"), "1");
    let (user, pass) = (attr(s, "username"), attr(s, "password"));
    let (expiry, id) = user.split_once(':').expect("expiry:id");
    assert!(
        id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{user}"
    );
    assert!(!user.contains("alice") && !user.contains("localhost"));
    assert_eq!(pass, expected_password(user));
    let expiry: u64 = expiry.parse().unwrap();
    let expires = chrono::DateTime::from_timestamp(expiry as i64, 0).unwrap();
    assert_eq!(
        attr(s, "expires"),
        expires.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    );
    (user.to_owned(), pass.to_owned(), expiry)
}

fn server_with(t: TurnConfig) -> TestServer {
    let s = TestServer::start_with(|c| c.turn = t);
    s.add_user("alice", "pw");
    s
}

fn offers(info: &Element) -> bool {
    let q = info
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    q.elements()
        .any(|f| f.name == "feature" && f.get_attr("var") == Some(NS))
}

const DISCO_INFO: &str = "<query xmlns='http://jabber.org/protocol/disco#info'/>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_are_listed_with_fresh_credentials_and_filtered_by_type() {
    let s = server_with(turn(3600, SERVICES));
    let mut a = s.online("alice", "x").await;
    assert!(offers(&ask(&mut a, "localhost", DISCO_INFO).await));
    let before = kleiber::store::now_secs();
    let all = listed(&ask(&mut a, "localhost", &format!("<services xmlns='{NS}'/>")).await);
    let kinds: Vec<(&str, &str, &str, &str)> = all
        .iter()
        .map(|e| {
            (
                attr(e, "type"),
                attr(e, "host"),
                attr(e, "port"),
                attr(e, "transport"),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("stun", "stun.localhost", "3478", "udp"),
            ("turn", "turn.localhost", "3478", "udp"),
            ("turn", "turn.localhost", "3478", "tcp"),
            ("turns", "turn.localhost", "443", "tcp"),
        ]
    );
    assert_eq!(all[0].get_attr("username"), None);
    assert_eq!(all[0].get_attr("restricted"), None);
    assert_eq!(all[1].get_attr("name"), Some("Relay"));
    let mut users = Vec::new();
    for t in &all[1..] {
        let (user, _, expiry) = credentials_of(t);
        assert!(expiry >= before + 3600 && expiry <= kleiber::store::now_secs() + 3600);
        users.push(user);
    }
    users.dedup();
    assert_eq!(users.len(), 3, "one random id per credential: {users:?}");

    let only = ask(
        &mut a,
        "localhost",
        &format!("<services xmlns='{NS}' type='turns'/>"),
    )
    .await;
    let only = listed(&only);
    assert_eq!(only.len(), 1);
    assert_eq!(attr(&only[0], "type"), "turns");
    credentials_of(&only[0]);
    // Without `to`: the user's own server, the same answer.
    a.send(&format!(
        "<iq type='get' id='n'><services xmlns='{NS}' type='stun'/></iq>"
    ))
    .await;
    let r = a.recv().await;
    assert_eq!(r.get_attr("id"), Some("n"));
    assert_eq!(listed(&r).len(), 1);
    let none = ask(
        &mut a,
        "localhost",
        &format!("<services xmlns='{NS}' type='ftp'/>"),
    )
    .await;
    assert!(listed(&none).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_query_for_one_service_and_its_errors() {
    let s = server_with(turn(3600, SERVICES));
    let mut a = s.online("alice", "x").await;
    let q = |inner: &str| format!("<credentials xmlns='{NS}'>{inner}</credentials>");
    let r = ask(
        &mut a,
        "localhost",
        &q("<service type='turns' host='turn.localhost' port='443'/>"),
    )
    .await;
    let got = listed(&r);
    assert_eq!(got.len(), 1);
    assert_eq!(attr(&got[0], "type"), "turns");
    credentials_of(&got[0]);
    // Without a port: the service on each transport.
    let r = ask(
        &mut a,
        "localhost",
        &q("<service type='turn' host='turn.localhost'/>"),
    )
    .await;
    assert_eq!(listed(&r).len(), 2);
    for (inner, condition) in [
        ("", "bad-request"),
        ("<service type='turn'/>", "bad-request"),
        (
            "<service type='turn' host='turn.localhost' port='99999'/>",
            "bad-request",
        ),
        (
            "<service type='turn' host='turn.localhost' port='3479'/>",
            "item-not-found",
        ),
        (
            "<service type='turn' host='elsewhere.example'/>",
            "item-not-found",
        ),
        (
            "<service type='stun' host='stun.localhost'/>",
            "item-not-found",
        ),
    ] {
        let r = ask(&mut a, "localhost", &q(inner)).await;
        assert_eq!(r.get_attr("type"), Some("error"));
        assert_eq!(error_condition(&r).as_deref(), Some(condition), "{inner}");
    }
    let r = ask(&mut a, "localhost", &format!("<nonsense xmlns='{NS}'/>")).await;
    assert_eq!(error_condition(&r).as_deref(), Some("bad-request"));
    a.send(&format!(
        "<iq type='set' id='s'><services xmlns='{NS}'/></iq>"
    ))
    .await;
    let r = a.recv().await;
    assert_eq!(error_condition(&r).as_deref(), Some("bad-request"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_services_the_feature_is_off() {
    let s = server_with(TurnConfig::default());
    let mut a = s.online("alice", "x").await;
    assert!(!offers(&ask(&mut a, "localhost", DISCO_INFO).await));
    let r = ask(&mut a, "localhost", &format!("<services xmlns='{NS}'/>")).await;
    assert_eq!(error_condition(&r).as_deref(), Some("service-unavailable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_streams_get_nothing() {
    let s = server_with(turn(3600, SERVICES));
    let mut c = Client::starttls(s.starttls, "localhost").await;
    c.send(&format!(
        "<iq type='get' id='u' to='localhost'><services xmlns='{NS}'/></iq>"
    ))
    .await;
    c.expect_stream_error("not-authorized").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_of_other_servers_are_refused() {
    let (pa, pb) = (free_port(), free_port());
    let route = |p: u16| format!("127.0.0.1:{p}");
    let a = start_domain("a.test", pa, &[("b.test", route(pb))], None, &|_| {});
    let _b = start_domain("b.test", pb, &[("a.test", route(pa))], None, &|c| {
        c.turn = turn(3600, SERVICES)
    });
    fed::add_user(&a, "a.test", "alice");
    let mut alice = fed::login(&a, "a.test", "alice").await;
    // The feature is public; the services and their credentials are not.
    assert!(offers(&ask(&mut alice, "b.test", DISCO_INFO).await));
    for payload in [
        format!("<services xmlns='{NS}'/>"),
        format!(
            "<credentials xmlns='{NS}'><service type='turn' host='turn.b.test'/></credentials>"
        ),
    ] {
        let r = ask(&mut alice, "b.test", &payload).await;
        assert_eq!(
            r.get_attr("type"),
            Some("error"),
            "{}",
            r.to_xml("jabber:client")
        );
        assert_eq!(error_condition(&r).as_deref(), Some("forbidden"));
        assert!(!r.to_xml("jabber:client").contains("password"));
    }
}

/// Whether coturn's programs are installed; else the test is skipped, or fails under
/// `KLEIBER_REQUIRE_INTEROP=1` (set by `.ci/run`).
fn coturn_or_skip() -> bool {
    ["turnserver", "turnutils_uclient", "turnutils_peer"]
        .into_iter()
        .all(installed)
}

/// coturn on a loopback port with the TURN REST API (`use-auth-secret`), its log lines
/// collected; a UDP echo peer (`turnutils_peer`) for the relayed traffic.
struct Coturn {
    port: u16,
    peer_port: u16,
    log: Arc<Mutex<Vec<String>>>,
    _server: Proc,
    _peer: Proc,
    _dir: tempfile::TempDir,
}

impl Coturn {
    fn start() -> Coturn {
        let dir = tempfile::tempdir().unwrap();
        let (port, peer_port) = (free_port(), free_port());
        let d = dir.path().display();
        let mut server = Command::new("turnserver")
            .current_dir(dir.path())
            // -n: no configuration file; -v: sessions with their user names in the log.
            .args(["-n", "-v", "--use-auth-secret", "--realm=test"])
            .arg(format!("--static-auth-secret={SECRET}"))
            .arg(format!("--listening-port={port}"))
            .args(["--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
            .args([
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--allow-loopback-peers",
            ])
            .args(["--log-file=stdout", "--simple-log"])
            .arg(format!("--pidfile={d}/turnserver.pid"))
            .arg(format!("--userdb={d}/turndb"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start turnserver");
        let out = server.stdout.take().unwrap();
        let server = Proc(server);
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let peer = Command::new("turnutils_peer")
            .args(["-L", "127.0.0.1", "-p", &peer_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start turnutils_peer");
        let c = Coturn {
            port,
            peer_port,
            log,
            _server: server,
            _peer: Proc(peer),
            _dir: dir,
        };
        c.wait_log(|l| l.contains("Total General servers"));
        c
    }

    /// Wait (a hang guard) for a log line matching `pred`.
    fn wait_log(&self, pred: impl Fn(&str) -> bool) -> String {
        for _ in 0..400 {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| pred(l)) {
                return l.clone();
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("coturn did not log that: {:#?}", self.log.lock().unwrap());
    }

    /// A TURN allocation over UDP with these credentials, then a few messages relayed
    /// through it to the peer and back (`turnutils_uclient`); (success, its output).
    async fn allocate(&self, user: &str, pass: &str) -> (bool, String) {
        let run = tokio::process::Command::new("turnutils_uclient")
            .args(["-p", &self.port.to_string(), "-u", user, "-w", pass])
            .args(["-n", "1", "-m", "1", "-c", "-e", "127.0.0.1"])
            .args(["-r", &self.peer_port.to_string(), "127.0.0.1"])
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("turnutils_uclient finished")
            .expect("run turnutils_uclient");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }
}

/// The credentials of the first TURN service `s` lists for alice.
async fn turn_credentials(s: &TestServer) -> (String, String, u64) {
    let mut a = s.online("alice", "x").await;
    let r = ask(
        &mut a,
        "localhost",
        &format!("<credentials xmlns='{NS}'><service type='turn' host='127.0.0.1'/></credentials>"),
    )
    .await;
    credentials_of(&listed(&r)[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_accepts_the_credentials_until_they_expire() {
    if !coturn_or_skip() {
        return;
    }
    let coturn = Coturn::start();
    let service = format!(
        "[[turn.services]]\ntype = \"turn\"\nhost = \"127.0.0.1\"\nport = {}\n",
        coturn.port
    );

    let s = server_with(turn(3600, &service));
    let (user, pass, _) = turn_credentials(&s).await;
    let (ok, out) = coturn.allocate(&user, &pass).await;
    assert!(ok, "coturn refused fresh credentials:\n{out}");
    coturn.wait_log(|l| {
        l.contains(&format!(
            "user <{user}>: incoming packet ALLOCATE processed, success"
        ))
    });

    let short = server_with(turn(1, &service));
    let (user, pass, expiry) = turn_credentials(&short).await;
    while kleiber::store::now_secs() <= expiry {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, out) = coturn.allocate(&user, &pass).await;
    assert!(!ok, "coturn took expired credentials:\n{out}");
    assert!(out.contains("Cannot complete Allocation"), "{out}");
    let refused =
        coturn.wait_log(|l| l.contains(&format!("user <{user}>")) && l.contains("error 401"));
    assert!(refused.contains("Unauthorized"), "{refused}");
}
