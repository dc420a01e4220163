//! The file-transfer proxy (XEP-0065 SOCKS5 bytestreams) end to end: discovery and the
//! streamhost over XMPP, SOCKS5 (RFC 1928) over raw TCP, activation by the initiator only,
//! a transfer of a few megabytes in both directions with its content checked, the size
//! limit, the limit of transfers per account, unactivated connections timing out, bad SOCKS5
//! requests, and users of other servers refused. No timing assertions: waits are hang guards.

mod common;

use common::muc::{assert_result, iq};
use common::*;
use kleiber::actors::ListenerKind;
use kleiber::proxy65::destination;
use kleiber::xml::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NS: &str = "http://jabber.org/protocol/bytestreams";
const PROXY: &str = "proxy.localhost";
/// The proxy of `a.test`, for users of `b.test`.
const PROXY_A: &str = "proxy.a.test";

fn proxy_addr(s: &TestServer) -> std::net::SocketAddr {
    s.server
        .as_ref()
        .unwrap()
        .addr(ListenerKind::Proxy65)
        .expect("a proxy listener")
}

/// SOCKS5 no-auth greeting and `CONNECT` to `hash`:0; returns the connection and the reply
/// code.
async fn socks(addr: std::net::SocketAddr, hash: &str) -> (TcpStream, u8) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&[5, 1, 0]).await.unwrap();
    let mut method = [0u8; 2];
    tcp.read_exact(&mut method).await.unwrap();
    assert_eq!(method, [5, 0]);
    let mut req = vec![5, 1, 0, 3, hash.len() as u8];
    req.extend_from_slice(hash.as_bytes());
    req.extend_from_slice(&[0, 0]);
    tcp.write_all(&req).await.unwrap();
    let mut head = [0u8; 5];
    tokio::time::timeout(WAIT, tcp.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    let rest = if head[3] == 3 {
        head[4] as usize + 2
    } else {
        5
    };
    let mut tail = vec![0u8; rest];
    tcp.read_exact(&mut tail).await.unwrap();
    if head[1] == 0 {
        assert_eq!(&tail[..hash.len()], hash.as_bytes(), "bound address");
    }
    (tcp, head[1])
}

/// A connection the proxy accepted.
async fn connected(addr: std::net::SocketAddr, hash: &str) -> TcpStream {
    let (tcp, code) = socks(addr, hash).await;
    assert_eq!(code, 0, "SOCKS5 reply");
    tcp
}

fn activate(sid: &str, target: &str) -> String {
    format!("<query xmlns='{NS}' sid='{sid}'><activate>{target}</activate></query>")
}

/// Bytes that are not text, so that any mangling shows.
fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A server whose proxy has `f` applied; alice (initiator) and bob (target) online.
async fn two(f: impl FnOnce(&mut kleiber::config::Config)) -> (TestServer, Client, Client) {
    let s = TestServer::start_with(f);
    s.add_user("alice", "pw");
    s.add_user("bob", "pw");
    let a = s.online("alice", "a").await;
    let b = s.online("bob", "b").await;
    (s, a, b)
}

/// Target then initiator connect for `sid` (alice to bob).
async fn pair(s: &TestServer, sid: &str) -> (TcpStream, TcpStream) {
    let hash = destination(sid, "alice@localhost/a", "bob@localhost/b");
    let target = connected(proxy_addr(s), &hash).await;
    let initiator = connected(proxy_addr(s), &hash).await;
    (target, initiator)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disco_lists_the_proxy_and_gives_its_streamhost() {
    let (s, mut a, _b) = two(|_| {}).await;
    let items = iq(
        &mut a,
        "localhost",
        "get",
        "<query xmlns='http://jabber.org/protocol/disco#items'/>",
    )
    .await;
    assert!(
        items.to_xml("jabber:client").contains(PROXY),
        "{}",
        items.to_xml("jabber:client")
    );
    let info = iq(
        &mut a,
        PROXY,
        "get",
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    )
    .await;
    let q = info
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    let id = q.elements().find(|e| e.name == "identity").unwrap();
    assert_eq!(id.get_attr("category"), Some("proxy"));
    assert_eq!(id.get_attr("type"), Some("bytestreams"));
    assert!(q
        .elements()
        .any(|e| e.name == "feature" && e.get_attr("var") == Some(NS)));
    let r = iq(&mut a, PROXY, "get", &format!("<query xmlns='{NS}'/>")).await;
    assert_result(&r);
    let sh = r
        .get_child("query", NS)
        .and_then(|q| q.get_child("streamhost", NS))
        .unwrap_or_else(|| panic!("{}", r.to_xml("jabber:client")));
    assert_eq!(sh.get_attr("jid"), Some(PROXY));
    assert_eq!(sh.get_attr("host"), Some("127.0.0.1"));
    let port = proxy_addr(&s).port().to_string();
    assert_eq!(sh.get_attr("port"), Some(port.as_str()));
}

/// Send `data` on `w` and close its direction; read everything from `r` until it ends.
async fn send_and_receive(
    w: &mut (impl AsyncWriteExt + Unpin),
    r: &mut (impl AsyncReadExt + Unpin),
    data: &[u8],
) -> Vec<u8> {
    let send = async {
        w.write_all(data).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let receive = async {
        let mut got = Vec::new();
        tokio::time::timeout(WAIT, r.read_to_end(&mut got))
            .await
            .expect("the transfer finishes")
            .unwrap();
        got
    };
    tokio::join!(send, receive).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_passes_both_ways_byte_identical() {
    let (s, mut a, _b) = two(|c| c.proxy65.max_bytes_per_second = 0).await;
    let (mut target, mut initiator) = pair(&s, "s1").await;
    assert_result(&iq(&mut a, PROXY, "set", &activate("s1", "bob@localhost/b")).await);
    let (mut tr, mut tw) = target.split();
    let (mut ir, mut iw) = initiator.split();
    let file = payload(4 << 20);
    let answer = payload(1000);
    let (there, back) = tokio::join!(
        send_and_receive(&mut iw, &mut tr, &file),
        send_and_receive(&mut tw, &mut ir, &answer)
    );
    assert!(
        there == file,
        "{} of {} bytes, or different",
        there.len(),
        file.len()
    );
    assert!(back == answer);
    // The server still serves.
    a.ping("p").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_initiator_activates_and_only_both_sides_together() {
    let (s, mut a, mut b) = two(|_| {}).await;
    let cond = |e: &Element| error_condition(e);
    // Nothing connected: unknown.
    let r = iq(&mut a, PROXY, "set", &activate("s2", "bob@localhost/b")).await;
    assert_eq!(cond(&r).as_deref(), Some("item-not-found"));
    // The target alone: not-allowed.
    let hash = destination("s2", "alice@localhost/a", "bob@localhost/b");
    let mut target = connected(proxy_addr(&s), &hash).await;
    let r = iq(&mut a, PROXY, "set", &activate("s2", "bob@localhost/b")).await;
    assert_eq!(cond(&r).as_deref(), Some("not-allowed"));
    let mut initiator = connected(proxy_addr(&s), &hash).await;
    // A third connection for the hash is refused (RFC 1928 reply 2).
    assert_eq!(socks(proxy_addr(&s), &hash).await.1, 2);
    // The target (or anyone but alice) cannot activate: the hash has the sender's JID.
    for target_jid in ["alice@localhost/a", "bob@localhost/b"] {
        let r = iq(&mut b, PROXY, "set", &activate("s2", target_jid)).await;
        assert_eq!(cond(&r).as_deref(), Some("item-not-found"));
    }
    // Malformed activations.
    let r = iq(
        &mut a,
        PROXY,
        "set",
        &format!("<query xmlns='{NS}' sid='s2'/>"),
    )
    .await;
    assert_eq!(cond(&r).as_deref(), Some("bad-request"));
    let r = iq(&mut a, PROXY, "set", &activate("s2", "a@b@c")).await;
    assert_eq!(cond(&r).as_deref(), Some("jid-malformed"));
    // The initiator can, and then the pair is gone.
    assert_result(&iq(&mut a, PROXY, "set", &activate("s2", "bob@localhost/b")).await);
    let r = iq(&mut a, PROXY, "set", &activate("s2", "bob@localhost/b")).await;
    assert_eq!(cond(&r).as_deref(), Some("item-not-found"));
    initiator.write_all(b"hello").await.unwrap();
    let mut got = [0u8; 5];
    target.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_socks5_requests_get_their_reply_and_the_proxy_goes_on() {
    let s = TestServer::start();
    let addr = proxy_addr(&s);
    // Not a hash; a port other than 0.
    assert_eq!(socks(addr, "example.org").await.1, 2);
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let hash = destination("x", "y", "z");
    let mut req = vec![5, 1, 0, 5, 1, 0, 3, 40];
    req.extend_from_slice(hash.as_bytes());
    req.extend_from_slice(&[0, 80]);
    tcp.write_all(&req).await.unwrap();
    let (out, closed) = read_until_closed(&mut tcp).await;
    assert!(closed);
    assert_eq!(&out[..4], [5, 0, 5, 2]);
    // Authentication only: no acceptable method.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&[5, 1, 2]).await.unwrap();
    let (out, closed) = read_until_closed(&mut tcp).await;
    assert!(closed);
    assert_eq!(out, [5, 0xFF]);
    // Not SOCKS at all.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let (out, closed) = read_until_closed(&mut tcp).await;
    assert!(closed && out.is_empty());
    // A good request still works.
    connected(addr, &hash).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_size_limit_cuts_a_transfer() {
    let (s, mut a, _b) = two(|c| {
        c.proxy65.max_transfer_mb = 1;
        c.proxy65.max_bytes_per_second = 0;
    })
    .await;
    let (mut target, mut initiator) = pair(&s, "s3").await;
    assert_result(&iq(&mut a, PROXY, "set", &activate("s3", "bob@localhost/b")).await);
    let file = payload(3 << 20);
    let (got, closed) =
        send_and_read_to_close(&mut target, &mut initiator, Vec::new(), &file).await;
    assert!(closed, "the target's connection was closed");
    assert!(got.len() <= 1 << 20, "{} bytes passed", got.len());
    assert!(got == file[..got.len()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_runs_at_most_its_transfers_at_once() {
    let (s, mut a, _b) = two(|c| c.proxy65.max_transfers_per_account = 1).await;
    let (_t1, _i1) = pair(&s, "s4").await;
    assert_result(&iq(&mut a, PROXY, "set", &activate("s4", "bob@localhost/b")).await);
    let (mut t2, _i2) = pair(&s, "s5").await;
    let r = iq(&mut a, PROXY, "set", &activate("s5", "bob@localhost/b")).await;
    assert_eq!(error_condition(&r).as_deref(), Some("resource-constraint"));
    // The refused pair is closed.
    assert!(read_until_closed(&mut t2).await.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_transfers_and_unactivated_connections_are_closed() {
    let (s, mut a, _b) = two(|c| c.proxy65.idle_timeout_secs = 1).await;
    let (mut target, mut initiator) = pair(&s, "s6").await;
    assert_result(&iq(&mut a, PROXY, "set", &activate("s6", "bob@localhost/b")).await);
    initiator.write_all(b"x").await.unwrap();
    let (got, closed) = read_until_closed(&mut target).await;
    assert!(closed);
    assert_eq!(got, b"x");
    let hash = destination("s7", "alice@localhost/a", "bob@localhost/b");
    let mut lone = connected(proxy_addr(&s), &hash).await;
    assert!(read_until_closed(&mut lone).await.1);
}

/// Unfinished SOCKS5 handshakes are capped per address like unauthenticated XMPP
/// connections: past `limits.max_unauthenticated_per_address`, a new connection is closed at
/// once; once the first one finishes its handshake, the next is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_handshakes_are_capped_per_address() {
    let s = TestServer::start_with(|c| {
        c.limits.exempt_loopback = false;
        c.limits.max_unauthenticated_per_address = 1;
    });
    let addr = proxy_addr(&s);
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(&[5, 1, 0]).await.unwrap();
    let mut method = [0u8; 2];
    slow.read_exact(&mut method).await.unwrap();
    let mut refused = TcpStream::connect(addr).await.unwrap();
    let (got, closed) = read_until_closed(&mut refused).await;
    assert!(
        closed && got.is_empty(),
        "a second handshake from the address: {got:?}"
    );
    let hash = destination("s9", "alice@localhost/a", "bob@localhost/b");
    let mut req = vec![5, 1, 0, 3, hash.len() as u8];
    req.extend_from_slice(hash.as_bytes());
    req.extend_from_slice(&[0, 0]);
    slow.write_all(&req).await.unwrap();
    let mut head = [0u8; 2];
    slow.read_exact(&mut head).await.unwrap();
    assert_eq!(head, [5, 0], "the first one is served");
    connected(
        addr,
        &destination("s10", "alice@localhost/a", "bob@localhost/b"),
    )
    .await;
}

/// Users of other servers get no streamhost and cannot activate (`forbidden`); the requests
/// cross federation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_of_other_servers_are_refused() {
    use common::fed::{add_user, login};
    let (_a, b) = common::s2s::pair_for_service(PROXY_A);
    add_user(&b, "b.test", "bob");
    let mut bob = login(&b, "b.test", "bob").await;
    for (kind, q) in [
        ("get", format!("<query xmlns='{NS}'/>")),
        ("set", activate("s7", "x@a.test/r")),
    ] {
        let e = iq(&mut bob, PROXY_A, kind, &q).await;
        assert_eq!(
            error_condition(&e).as_deref(),
            Some("forbidden"),
            "{}",
            e.to_xml("jabber:client")
        );
    }
}

/// The privacy invariant for the proxy: the real binary at trace level relays a transfer;
/// its log has no address, no port of the clients' connections and nothing of the content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_holds_no_address_or_content_of_a_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Binary::start(&dir.path().join("data"), "", "trace");
    let listener = |l: &String| -> Option<std::net::SocketAddr> {
        let rest = l.split("listening for file transfers on ").nth(1)?;
        rest.split(' ').next()?.parse().ok()
    };
    while !b.lines.iter().any(|l| listener(l).is_some()) {
        let line = b
            .log
            .recv_timeout(WAIT)
            .expect("the proxy's listener is logged");
        b.lines.push(line);
    }
    let proxy = b.lines.iter().find_map(listener).unwrap();
    let login = |user: &'static str, res: &'static str| async move {
        let mut c = Client::starttls(b.starttls, "localhost").await;
        assert_eq!(
            c.register(user, "pw").await.get_attr("type"),
            Some("result")
        );
        c.auth_scram("SCRAM-SHA-256", user, "pw").await.unwrap();
        c.bind(Some(res)).await;
        c
    };
    let mut alice = login("alice", "a").await;
    let _bob = login("bob", "b").await;
    let hash = destination("s8", "alice@localhost/a", "bob@localhost/b");
    let mut target = connected(proxy, &hash).await;
    let mut initiator = connected(proxy, &hash).await;
    let ports = [&target, &initiator].map(|t| t.local_addr().unwrap().port());
    assert_result(&iq(&mut alice, PROXY, "set", &activate("s8", "bob@localhost/b")).await);
    let secret = b"proxy-secret-payload-5d1e".repeat(1000);
    let got = send_and_receive(&mut initiator, &mut target, &secret).await;
    assert!(got == secret);
    drop((target, initiator));
    let lines = b.stop();
    assert!(lines.iter().any(|l| l.contains("proxy#")), "{lines:?}");
    for line in &lines {
        assert!(
            !line.contains("proxy-secret-payload"),
            "content in the log: {line}"
        );
        if !line.contains("listening for") {
            assert!(!line.contains("127.0.0.1"), "address in the log: {line}");
        }
        for p in ports {
            assert!(!line.contains(&format!(":{p}")), "client port: {line}");
        }
    }
}
