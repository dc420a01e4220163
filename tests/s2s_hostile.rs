//! Hostile input on the server-to-server port, table-driven like `rfc6120_streams.rs` for
//! clients: before TLS (plain bytes), and on an encrypted stream before and after a domain
//! was authenticated (a peer with a valid certificate for `evil.test`, SASL EXTERNAL). Each
//! case names its input and the stream error it must get; after every case the server still
//! serves a well-behaved peer.

mod common;
use common::s2s::*;
use common::*;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const HDR: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'";

/// Plain-text cases: (name, bytes, stream error).
fn before_tls() -> Vec<(&'static str, String, &'static str)> {
    vec![
        (
            "client namespace on the server port",
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='b.test' version='1.0'>".into(),
            "invalid-namespace",
        ),
        (
            "wrong stream namespace",
            "<stream:stream xmlns='jabber:server' xmlns:stream='urn:nope' to='b.test' version='1.0'>".into(),
            "invalid-namespace",
        ),
        (
            "no version (pre-RFC 3920 peer)",
            format!("{HDR} to='b.test' from='a.test'>"),
            "unsupported-version",
        ),
        (
            "host not served",
            format!("{HDR} to='elsewhere.test' from='a.test' version='1.0'>"),
            "host-unknown",
        ),
        (
            "no to",
            format!("{HDR} from='a.test' version='1.0'>"),
            "host-unknown",
        ),
        (
            "stanza before STARTTLS",
            format!("{HDR} to='b.test' from='a.test' version='1.0'><message from='x@a.test' to='y@b.test'><body>x</body></message>"),
            "policy-violation",
        ),
        (
            "dialback before STARTTLS",
            format!("{HDR} to='b.test' from='a.test' version='1.0'><db:result from='a.test' to='b.test'>k</db:result>"),
            "policy-violation",
        ),
        (
            "DOCTYPE",
            "<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><stream:stream/>".into(),
            "restricted-xml",
        ),
        (
            "not XML",
            "\u{0}\u{1}GET / HTTP/1.1\r\n\r\n".into(),
            "not-well-formed",
        ),
        (
            "an HTTP request",
            "GET / HTTP/1.1\r\nHost: b.test\r\n\r\n".into(),
            "not-well-formed",
        ),
        (
            "comment",
            format!("{HDR} to='b.test' version='1.0'><!-- hi -->"),
            "restricted-xml",
        ),
    ]
}

/// Cases on an encrypted stream, before any domain is authenticated: (name, XML, error).
fn after_tls_unauthenticated() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        (
            "stanza before authentication",
            "<message from='x@a.test' to='y@b.test'><body>x</body></message>",
            "not-authorized",
        ),
        (
            "iq before authentication",
            "<iq type='get' id='1' from='a.test' to='b.test'><ping xmlns='urn:xmpp:ping'/></iq>",
            "not-authorized",
        ),
        (
            "dialback result without addresses",
            "<db:result>k</db:result>",
            "improper-addressing",
        ),
        (
            "unknown dialback element",
            "<db:bogus from='a.test' to='b.test'/>",
            "unsupported-stanza-type",
        ),
        (
            "not a stanza",
            "<foo xmlns='urn:example'/>",
            "unsupported-stanza-type",
        ),
        (
            "stanza in the client namespace",
            "<message xmlns='jabber:client' from='x@a.test' to='y@b.test'/>",
            "unsupported-stanza-type",
        ),
        (
            "a stream element inside the stream",
            "<stream:stream xmlns='jabber:server' to='b.test' version='1.0'></stream:stream>",
            "unsupported-stanza-type",
        ),
        (
            "malformed XML",
            "<message><body></message>",
            "not-well-formed",
        ),
    ]
}

/// Cases after `evil.test` authenticated: (name, XML, error).
fn after_auth() -> Vec<(&'static str, String, &'static str)> {
    vec![
        (
            "from another domain",
            "<message from='alice@a.test/r' to='bob@b.test'><body>x</body></message>".into(),
            "invalid-from",
        ),
        (
            "from a subdomain of the authenticated one",
            "<message from='x@sub.evil.test' to='bob@b.test'><body>x</body></message>".into(),
            "invalid-from",
        ),
        (
            "malformed from",
            "<message from='a@b@evil.test' to='bob@b.test'><body>x</body></message>".into(),
            "invalid-from",
        ),
        (
            "no from",
            "<message to='bob@b.test'><body>x</body></message>".into(),
            "improper-addressing",
        ),
        (
            "no to",
            "<message from='m@evil.test'><body>x</body></message>".into(),
            "improper-addressing",
        ),
        (
            "to a host not served",
            "<message from='m@evil.test' to='x@elsewhere.test'><body>x</body></message>".into(),
            "host-unknown",
        ),
        (
            "10,000-deep nesting",
            format!(
                "<message from='m@evil.test' to='bob@b.test'>{}",
                "<a>".repeat(10_000)
            ),
            "policy-violation",
        ),
        (
            "a stanza over the size limit",
            format!(
                "<message from='m@evil.test' to='bob@b.test'><body>{}</body></message>",
                "x".repeat(300 * 1024)
            ),
            "policy-violation",
        ),
        (
            "unknown stanza kind",
            "<presents from='m@evil.test' to='bob@b.test'/>".into(),
            "unsupported-stanza-type",
        ),
        (
            "SASL again after authentication",
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>".into(),
            "unsupported-stanza-type",
        ),
    ]
}

/// b.test (certificates from `ca`) with a route to a.test (the well-behaved peer).
fn servers(ca: &TestCa) -> (TestServer, TestServer) {
    pair(Some(ca))
}

/// The peer still works: a.test's user reaches b.test's.
async fn still_serves(a: &TestServer, b: &TestServer, n: usize) {
    let user = format!("u{n}");
    common::fed::add_user(a, "a.test", &user);
    common::fed::add_user(b, "b.test", &user);
    let mut x = common::fed::login(a, "a.test", &user).await;
    let mut y = common::fed::login(b, "b.test", &user).await;
    x.send(&format!(
        "<message to='{user}@b.test/r' type='chat'><body>ok</body></message>"
    ))
    .await;
    common::fed::wait_for(&mut y, |e| e.name == "message").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_on_the_server_port() {
    let ca = TestCa::new();
    let (a, b) = servers(&ca);
    let port = b.s2s.unwrap();
    let mut n = 0;
    let mut failures = Vec::new();

    for (name, bytes, want) in before_tls() {
        let tcp = TcpStream::connect(port).await.unwrap();
        let (mut r, mut w) = tokio::io::split(tcp);
        let (out, _) = send_and_read_to_close(&mut r, &mut w, Vec::new(), bytes.as_bytes()).await;
        let got = ServerOutput::parse(&out).await.stream_error();
        if got.as_deref() != Some(want) {
            failures.push(format!(
                "{name}: want {want}, got {got:?} in {:?}",
                String::from_utf8_lossy(&out)
            ));
        }
    }

    for (name, xml, want) in after_tls_unauthenticated() {
        let mut p = Peer::connect(port, "a.test", "b.test", None).await;
        p.send(xml).await;
        let e = p.recv().await;
        let got = stream_error_condition(&e);
        if got.as_deref() != Some(want) {
            failures.push(format!(
                "{name}: want {want}, got {}",
                e.to_xml("jabber:server")
            ));
        }
    }

    let (c, k) = ca.issue("evil.test");
    for (name, xml, want) in after_auth() {
        let mut p = Peer::connect(port, "evil.test", "b.test", Some((&c, &k))).await;
        p.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
            .await;
        assert_eq!(p.recv().await.name, "success");
        p.reader.reset();
        p.open("evil.test", "b.test").await;
        let _ = p.writer.write_all(xml.as_bytes()).await;
        let e = p.recv().await;
        let got = stream_error_condition(&e);
        if got.as_deref() != Some(want) {
            failures.push(format!(
                "{name}: want {want}, got {}",
                e.to_xml("jabber:server")
            ));
        }
        n += 1;
        if n % 5 == 0 {
            still_serves(&a, &b, n).await;
        }
    }
    still_serves(&a, &b, 0).await;
    let total = before_tls().len() + after_tls_unauthenticated().len() + after_auth().len();
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
