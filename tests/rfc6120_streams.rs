//! RFC 6120 streams against a real server: STARTTLS and direct TLS (no renegotiation), stream
//! headers, restricted XML (§11.1), well-formedness, size and depth limits, stanza types,
//! `from` checking, timeouts, shutdown, whitespace keepalives and a client that stops reading.
//!
//! Hostile inputs are tables of (name, stage, bytes, expected stream error). For each, the
//! test asserts the exact condition, that nothing but the stream header and features came
//! before it, that the stream was closed (`</stream:stream>`) and that the server then closed
//! the connection; afterwards another client still logs in and pings.

mod common;
use common::*;

use kleiber::xml::{Element, StreamEvent};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const STARTTLS_FEATURES: &str = "<features xmlns='http://etherx.jabber.org/streams'><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></features>";
const STARTTLS: &str = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
const REGISTER_X: &str = "<iq type='set' id='r1'><query xmlns='jabber:iq:register'><username>x</username><password>pw</password></query></iq>";
/// `limits.max_stanza_bytes` of the servers in the size tests.
const MAX_STANZA: usize = 20_000;
/// The default `limits.max_stanza_bytes_before_auth`.
const MAX_PREAUTH: usize = 8192;
/// Before STARTTLS the server allows a quarter of the pre-authentication limit.
const MAX_PLAIN: usize = MAX_PREAUTH / 4;

/// Where a hostile input is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// STARTTLS port, plaintext, as the first bytes of the connection.
    Plain,
    /// STARTTLS port, plaintext, after the stream header and the `<starttls/>` feature.
    PlainOpen,
    /// Direct TLS port, as the first bytes over TLS.
    Tls,
    /// Direct TLS, after the stream header and the features (before authentication).
    TlsOpen,
    /// After SASL and the stream restart, before resource binding.
    Authed,
    /// After resource binding.
    Bound,
}
use Stage::*;

struct Case {
    name: &'static str,
    stage: Stage,
    send: Vec<u8>,
    expect: &'static str,
}

fn case(name: &'static str, stage: Stage, send: impl AsRef<[u8]>, expect: &'static str) -> Case {
    Case {
        name,
        stage,
        send: send.as_ref().to_vec(),
        expect,
    }
}

/// The same input at several stages.
fn cases(
    name: &'static str,
    stages: &[Stage],
    send: impl AsRef<[u8]>,
    expect: &'static str,
) -> Vec<Case> {
    stages
        .iter()
        .map(|s| case(name, *s, send.as_ref(), expect))
        .collect()
}

/// A stream header with the given attributes (and the usual `<?xml?>` declaration).
fn stream_open(attrs: &str) -> String {
    format!("<?xml version='1.0'?><stream:stream {attrs}>")
}

/// A correct header's namespace declarations.
const NS: &str = "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'";

fn billion_laughs(root: &str) -> String {
    let mut s = String::from("<!DOCTYPE lolz [<!ENTITY lol0 'lol'>");
    for i in 1..10 {
        s.push_str(&format!(
            "<!ENTITY lol{i} '{}'>",
            format!("&lol{};", i - 1).repeat(10)
        ));
    }
    s.push_str(&format!("]>{root}&lol9;"));
    s
}

/// A message of exactly `size` bytes.
fn message_of_size(to: &str, id: &str, size: usize) -> String {
    let head = format!("<message to='{to}' type='chat' id='{id}'><body>");
    let tail = "</body></message>";
    let n = size - head.len() - tail.len();
    format!("{head}{}{tail}", "x".repeat(n))
}

/// A registration form request of exactly `size` bytes (padded in the id).
fn form_request_of_size(size: usize) -> (String, String) {
    let head = "<iq type='get' id='";
    let tail = "'><query xmlns='jabber:iq:register'/></iq>";
    let id = "i".repeat(size - head.len() - tail.len());
    (format!("{head}{id}{tail}"), id)
}

fn deep(n: usize) -> String {
    format!("<message>{}", "<a>".repeat(n))
}

fn many_attributes(n: usize) -> String {
    let mut s = String::from("<message");
    for i in 0..n {
        s.push_str(&format!(" a{i}='x'"));
    }
    s.push_str("/>");
    s
}

/// A stanza that never ends: `len` bytes of body.
fn endless(start: &str, len: usize) -> Vec<u8> {
    let mut v = start.as_bytes().to_vec();
    v.resize(start.len() + len, b'a');
    v
}

// ---------------------------------------------------------------------------------------------
// The table runner.

async fn run_table(s: &TestServer, table: &[Case]) {
    s.add_user("hostile", "pw");
    let mut failures = Vec::new();
    for (i, c) in table.iter().enumerate() {
        let r = match c.stage {
            Plain | PlainOpen | Tls | TlsOpen => raw_case(s, c).await,
            Authed | Bound => session_case(s, i, c).await,
        };
        if let Err(e) = r {
            failures.push(format!("- {} at {:?}: {e}", c.name, c.stage));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
    still_serving(s).await;
}

/// After hostile clients were thrown out, others log in and are served.
async fn still_serving(s: &TestServer) {
    let mut c = Client::bound(s.direct, "hostile", "pw", "after").await;
    c.ping("still-there").await;
    let mut c = Client::starttls(s.starttls, "localhost").await;
    c.auth_scram("SCRAM-SHA-256", "hostile", "pw")
        .await
        .unwrap();
    c.bind(Some("after2")).await;
    c.ping("still-there-2").await;
}

async fn raw_case(s: &TestServer, c: &Case) -> Result<(), String> {
    let (bytes, closed) = match c.stage {
        Plain | PlainOpen => {
            let mut tcp = TcpStream::connect(s.starttls).await.unwrap();
            let (mut r, mut w) = tcp.split();
            let mut sofar = Vec::new();
            if c.stage == PlainOpen {
                w.write_all(header("localhost").as_bytes()).await.unwrap();
                read_until(&mut r, &mut sofar, "</stream:features>").await;
            }
            send_and_read_to_close(&mut r, &mut w, sofar, &c.send).await
        }
        _ => {
            let (mut r, mut w) = tokio::io::split(raw_direct(s.direct).await);
            let mut sofar = Vec::new();
            if c.stage == TlsOpen {
                w.write_all(header("localhost").as_bytes()).await.unwrap();
                read_until(&mut r, &mut sofar, "</stream:features>").await;
            }
            send_and_read_to_close(&mut r, &mut w, sofar, &c.send).await
        }
    };
    check_output(&bytes, closed, c.expect).await
}

/// The whole output of a connection: our header, at most the features, the stream error with
/// `expect`, `</stream:stream>`, and then the connection closed.
async fn check_output(bytes: &[u8], closed: bool, expect: &str) -> Result<(), String> {
    let text = String::from_utf8_lossy(bytes);
    let out = ServerOutput::parse(bytes).await;
    let h = out
        .header
        .as_ref()
        .ok_or_else(|| format!("no stream header first: {text}"))?;
    let ok_header = h.name == "stream"
        && h.ns == "http://etherx.jabber.org/streams"
        && h.prefix == "stream"
        && h.default_ns == "jabber:client"
        && h.attrs.get("from").map(String::as_str) == Some("localhost")
        && h.attrs.get("version").map(String::as_str) == Some("1.0")
        && h.attrs.get("id").is_some_and(|id| !id.is_empty());
    if !ok_header {
        return Err(format!("unexpected server header {h:?}"));
    }
    if out.stream_error().as_deref() != Some(expect) {
        return Err(format!("expected stream error {expect}, got: {text}"));
    }
    let before = &out.elements[..out.elements.len() - 1];
    if before.len() > 1
        || before
            .iter()
            .any(|e| !e.is("features", "http://etherx.jabber.org/streams"))
    {
        return Err(format!("more than the features before the error: {text}"));
    }
    if let Some(p) = &out.problem {
        return Err(format!("server output not well-formed ({p}): {text}"));
    }
    if !out.end {
        return Err(format!("no </stream:stream>: {text}"));
    }
    if !closed {
        return Err("the server did not close the connection".into());
    }
    Ok(())
}

async fn session_case(s: &TestServer, i: usize, c: &Case) -> Result<(), String> {
    let mut cl = Client::direct(s.direct, "localhost").await;
    cl.auth_plain("", "hostile", "pw").await.unwrap();
    if c.stage == Bound {
        cl.bind(Some(&format!("r{i}"))).await;
    }
    let ev = cl.send_and_next(&c.send).await;
    expect_error_and_close(cl, ev, c.expect).await
}

/// `ev` is the stream error `expect`; then the stream ends and the connection closes.
async fn expect_error_and_close(
    mut cl: Client,
    ev: Result<StreamEvent, kleiber::xml::ParseError>,
    expect: &str,
) -> Result<(), String> {
    match ev {
        Ok(StreamEvent::Element(e)) if stream_error_condition(&e).as_deref() == Some(expect) => {}
        Ok(StreamEvent::Element(e)) => {
            return Err(format!(
                "expected stream error {expect}, got {}",
                e.to_xml("jabber:client")
            ))
        }
        other => return Err(format!("expected stream error {expect}, got {other:?}")),
    }
    match tokio::time::timeout(WAIT, cl.reader.next()).await {
        Ok(Ok(StreamEvent::End)) => {}
        other => return Err(format!("expected </stream:stream>, got {other:?}")),
    }
    let Client {
        reader, writer: _w, ..
    } = cl;
    let (rest, closed) = read_until_closed(&mut reader.into_inner()).await;
    if !rest.is_empty() {
        return Err(format!(
            "data after the stream: {}",
            String::from_utf8_lossy(&rest)
        ));
    }
    if !closed {
        return Err("the server did not close the connection".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// STARTTLS and direct TLS.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_is_the_only_feature_and_required() {
    let s = TestServer::start();
    let mut tcp = TcpStream::connect(s.starttls).await.unwrap();
    tcp.write_all(header("localhost").as_bytes()).await.unwrap();
    let mut got = Vec::new();
    read_until(&mut tcp, &mut got, "</stream:features>").await;
    let out = ServerOutput::parse(&got).await;
    let h = out.header.unwrap();
    assert_eq!(h.attrs.get("from").map(String::as_str), Some("localhost"));
    assert_eq!(h.attrs.get("version").map(String::as_str), Some("1.0"));
    assert_eq!(out.elements.len(), 1);
    assert_eq!(out.elements[0].to_xml("jabber:client"), STARTTLS_FEATURES);
    // Whitespace before <starttls/> is a keepalive.
    tcp.write_all(b" \n ").await.unwrap();
    tcp.write_all(STARTTLS.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    read_until(&mut tcp, &mut got, "/>").await;
    assert_eq!(
        String::from_utf8_lossy(&got),
        "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    );
    let mut c = Client::over_tls(try_tls_connect(tcp, None).await.unwrap(), "localhost").await;
    // Over TLS: SASL and registration are offered.
    assert!(!c.mechanisms().is_empty());
    assert!(c
        .features
        .get_child("register", "http://jabber.org/features/iq-register")
        .is_some());
    assert!(c
        .features
        .get_child("starttls", "urn:ietf:params:xml:ns:xmpp-tls")
        .is_none());
    s.add_user("juliet", "pw");
    c.auth_scram("SCRAM-SHA-256", "juliet", "pw").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_processed_before_tls() {
    let s = TestServer::start();
    let table = [
        case(
            "message",
            PlainOpen,
            "<message to='juliet@localhost'><body>hi</body></message>",
            "not-authorized",
        ),
        case("presence", PlainOpen, "<presence/>", "not-authorized"),
        case("registration", PlainOpen, REGISTER_X, "not-authorized"),
        case(
            "registration form",
            PlainOpen,
            "<iq type='get' id='f'><query xmlns='jabber:iq:register'/></iq>",
            "not-authorized",
        ),
        case(
            "SASL PLAIN",
            PlainOpen,
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AHgAcHc=</auth>",
            "not-authorized",
        ),
        case(
            "bind",
            PlainOpen,
            "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
            "not-authorized",
        ),
        case(
            "unknown element",
            PlainOpen,
            "<foo xmlns='jabber:client'/>",
            "not-authorized",
        ),
        case(
            "starttls with the wrong namespace",
            PlainOpen,
            "<starttls xmlns='urn:example'/>",
            "not-authorized",
        ),
    ];
    run_table(&s, &table).await;
    assert!(!s.shared().store.accounts.exists("localhost", "x").unwrap());
}

/// Plaintext pipelined after `<starttls/>` in the same write must never be executed: it is
/// either dropped with the plaintext parser (the handshake then works) or read as a broken TLS
/// record (the handshake fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_pipelined_after_starttls_is_not_executed() {
    let s = TestServer::start();
    let trailers = [
        REGISTER_X.to_owned(),
        format!("{}{REGISTER_X}", header("localhost")),
        format!(
            "{}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AHgAcHc=</auth>",
            header("localhost")
        ),
    ];
    for trailer in trailers {
        let mut tcp = TcpStream::connect(s.starttls).await.unwrap();
        tcp.write_all(header("localhost").as_bytes()).await.unwrap();
        let mut got = Vec::new();
        read_until(&mut tcp, &mut got, "</stream:features>").await;
        tcp.write_all(format!("{STARTTLS}{trailer}").as_bytes())
            .await
            .unwrap();
        let mut got = Vec::new();
        read_until(
            &mut tcp,
            &mut got,
            "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        )
        .await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
        );
        if let Ok(tls) = try_tls_connect(tcp, None).await {
            // A fresh stream: nothing answered the pipelined IQ, the first reply is to ours.
            let mut c = Client::over_tls(tls, "localhost").await;
            c.send("<iq type='get' id='form'><query xmlns='jabber:iq:register'/></iq>")
                .await;
            let r = c.recv().await;
            assert_eq!(
                r.get_attr("id"),
                Some("form"),
                "{}",
                r.to_xml("jabber:client")
            );
            assert_eq!(r.get_attr("type"), Some("result"));
        }
        assert!(
            !s.shared().store.accounts.exists("localhost", "x").unwrap(),
            "{trailer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_with_alpn() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    let tcp = TcpStream::connect(s.direct).await.unwrap();
    let tls = try_tls_connect(tcp, Some(b"\x0bxmpp-client"))
        .await
        .unwrap();
    assert_eq!(
        tls.ssl().selected_alpn_protocol(),
        Some(&b"xmpp-client"[..])
    );
    let mut c = Client::over_tls(tls, "localhost").await;
    assert!(c
        .features
        .get_child("starttls", "urn:ietf:params:xml:ns:xmpp-tls")
        .is_none());
    c.auth_scram("SCRAM-SHA-256", "juliet", "pw").await.unwrap();
    c.bind(Some("direct")).await;
    c.ping("p1").await;
    // Without ALPN too.
    let mut c = Client::bound(s.direct, "juliet", "pw", "direct2").await;
    c.ping("p2").await;
}

/// A client that tries to renegotiate TLS 1.2 (RFC 5746 renegotiation, a classic CPU and
/// injection attack) is refused: the server answers `no_renegotiation`, the renegotiation
/// never completes, and everyone else is served as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_renegotiation_is_refused() {
    use foreign_types::ForeignTypeRef;
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
    use std::io::{Read, Write};
    extern "C" {
        // In libssl, which the openssl crate links, but not bound by openssl-sys.
        fn SSL_renegotiate(ssl: *mut openssl_sys::SSL) -> std::os::raw::c_int;
    }
    let s = TestServer::start();
    s.add_user("hostile", "pw");
    let addr = s.direct;
    let handshake = tokio::task::spawn_blocking(move || {
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
        b.set_verify(SslVerifyMode::NONE);
        b.set_max_proto_version(Some(SslVersion::TLS1_2)).unwrap();
        let mut cfg = b.build().configure().unwrap();
        cfg.set_verify_hostname(false);
        let mut tls = cfg.connect("localhost", tcp).unwrap();
        tls.write_all(header("localhost").as_bytes()).unwrap();
        // Everything the server has to say first (a record arriving mid-handshake would fail
        // the renegotiation on the client's side, whatever the server does).
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("</stream:features>") {
            let n = tls.read(&mut buf).unwrap();
            assert!(n > 0, "closed before the features");
            got.extend_from_slice(&buf[..n]);
        }
        // SAFETY: the pointer is the live SSL of `tls`, used on this thread only.
        let ssl = tls.ssl().as_ptr();
        assert_eq!(
            unsafe { SSL_renegotiate(ssl) },
            1,
            "renegotiation not started"
        );
        let r = unsafe { openssl_sys::SSL_do_handshake(ssl) };
        (r, openssl::error::ErrorStack::get().to_string())
    })
    .await
    .unwrap();
    assert!(handshake.0 <= 0, "the server renegotiated");
    assert!(
        handshake.1.contains("no renegotiation"),
        "not refused with no_renegotiation: {}",
        handshake.1
    );
    still_serving(&s).await;
}

// ---------------------------------------------------------------------------------------------
// Stream headers.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_header_errors() {
    let s = TestServer::start();
    let both = [Plain, Tls];
    let streams = "xmlns:stream='http://etherx.jabber.org/streams'";
    let table: Vec<Case> = [
        (
            "wrong stream namespace",
            stream_open("xmlns='jabber:client' xmlns:stream='urn:example:streams' to='localhost' version='1.0'"),
            "invalid-namespace",
        ),
        (
            "default namespace jabber:server",
            stream_open(&format!("xmlns='jabber:server' {streams} to='localhost' version='1.0'")),
            "invalid-namespace",
        ),
        (
            "default namespace urn:example",
            stream_open(&format!("xmlns='urn:example' {streams} to='localhost' version='1.0'")),
            "invalid-namespace",
        ),
        (
            "no default namespace",
            stream_open(&format!("{streams} to='localhost' version='1.0'")),
            "invalid-namespace",
        ),
        (
            "prefix other than stream",
            "<foobar:stream xmlns='jabber:client' xmlns:foobar='http://etherx.jabber.org/streams' to='localhost' version='1.0'>".to_owned(),
            "bad-namespace-prefix",
        ),
        ("unknown host", stream_open(&format!("{NS} to='example.org' version='1.0'")), "host-unknown"),
        ("missing to", stream_open(&format!("{NS} version='1.0'")), "host-unknown"),
        ("to with a localpart", stream_open(&format!("{NS} to='juliet@localhost' version='1.0'")), "host-unknown"),
        ("version 2.0", stream_open(&format!("{NS} to='localhost' version='2.0'")), "unsupported-version"),
        ("no version (pre-1.0)", stream_open(&format!("{NS} to='localhost'")), "unsupported-version"),
        ("version 0.9", stream_open(&format!("{NS} to='localhost' version='0.9'")), "unsupported-version"),
        ("empty-element header", format!("<stream:stream {NS} to='localhost' version='1.0'/>"), "not-well-formed"),
        ("undeclared stream prefix", "<stream:stream xmlns='jabber:client' to='localhost' version='1.0'>".to_owned(), "not-well-formed"),
        ("text before the header", format!("hello{}", header("localhost")), "not-well-formed"),
        // Refused at once, not after the handshake timeout (no `<` ever comes).
        ("an HTTP request", "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_owned(), "not-well-formed"),
        ("binary junk", "\u{1}\u{2}\u{3}\u{4}".to_owned(), "not-well-formed"),
        ("duplicate attribute", stream_open(&format!("{NS} to='localhost' to='localhost' version='1.0'")), "not-well-formed"),
        ("DOCTYPE", format!("<?xml version='1.0'?><!DOCTYPE stream:stream>{}", stream_open(&format!("{NS} to='localhost' version='1.0'"))), "restricted-xml"),
        ("billion laughs", format!("<?xml version='1.0'?>{}", billion_laughs(&format!("<stream:stream {NS} to='localhost' version='1.0'>"))), "restricted-xml"),
        ("comment before the header", format!("<!-- hello -->{}", header("localhost")), "restricted-xml"),
        ("processing instruction before the header", format!("<?foo bar?>{}", header("localhost")), "restricted-xml"),
        ("entity in the header", stream_open(&format!("{NS} to='&host;' version='1.0'")), "restricted-xml"),
        (
            "oversized header",
            stream_open(&format!("{NS} to='localhost' version='1.0' x='{}'", "y".repeat(200_000))),
            "policy-violation",
        ),
    ]
    .into_iter()
    .flat_map(|(name, send, expect)| cases(name, &both, send, expect))
    .collect();
    let mut table = table;
    let mut bad = stream_open(&format!("{NS} to='local host' version='1.0'")).into_bytes();
    let at = bad.windows(6).position(|w| w == b"local ").unwrap() + 5;
    bad[at] = 0xff;
    table.extend(cases(
        "invalid UTF-8 in the header",
        &both,
        bad,
        "not-well-formed",
    ));
    run_table(&s, &table).await;
}

/// RFC 6120 §4.7.5: a higher minor version is fine, and leading zeros are ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_versions_that_are_accepted() {
    let s = TestServer::start();
    for v in ["1.0", "1.1", "1.10", "01.0"] {
        for port in [s.starttls, s.direct] {
            let mut tcp = TcpStream::connect(port).await.unwrap();
            let mut sofar = Vec::new();
            if port == s.direct {
                let (mut r, mut w) = tokio::io::split(try_tls_connect(tcp, None).await.unwrap());
                w.write_all(stream_open(&format!("{NS} to='localhost' version='{v}'")).as_bytes())
                    .await
                    .unwrap();
                read_until(&mut r, &mut sofar, "</stream:features>").await;
            } else {
                tcp.write_all(
                    stream_open(&format!("{NS} to='localhost' version='{v}'")).as_bytes(),
                )
                .await
                .unwrap();
                read_until(&mut tcp, &mut sofar, "</stream:features>").await;
            }
            let out = ServerOutput::parse(&sofar).await;
            assert_eq!(out.header.unwrap().attrs["version"], "1.0", "{v}");
            assert!(out.problem.is_none(), "{v}");
            assert_eq!(out.elements.len(), 1, "{v}");
            assert!(
                out.elements[0].is("features", "http://etherx.jabber.org/streams"),
                "{v}"
            );
        }
    }
}

/// The header of the restarted stream after SASL is checked like the first one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_header_errors_after_sasl() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    let plain =
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGp1bGlldABwdw==</auth>";
    for (hdr, expect) in [
        (stream_open(&format!("{NS} to='example.org' version='1.0'")), "host-unknown"),
        (stream_open("xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'"), "invalid-namespace"),
        (stream_open(&format!("{NS} to='localhost' version='2.0'")), "unsupported-version"),
        (format!("<!DOCTYPE x>{}", header("localhost")), "restricted-xml"),
    ] {
        let mut c = Client::direct(s.direct, "localhost").await;
        c.send(plain).await;
        assert_eq!(c.recv().await.name, "success");
        c.reader.reset();
        c.send(&hdr).await;
        match c.next().await {
            StreamEvent::Header(h) => assert_eq!(h.attrs.get("from").map(String::as_str), Some("localhost")),
            other => panic!("{expect}: expected a header, got {other:?}"),
        }
        let ev = c.reader.next().await;
        expect_error_and_close(c, ev, expect).await.unwrap_or_else(|e| panic!("{expect}: {e}"));
    }
}

// ---------------------------------------------------------------------------------------------
// Restricted XML and well-formedness.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_xml() {
    let s = TestServer::start();
    let everywhere = [PlainOpen, TlsOpen, Authed, Bound];
    let table: Vec<Case> = [
        ("DOCTYPE", "<!DOCTYPE foo>".to_owned()),
        (
            "DOCTYPE with an internal subset",
            "<!DOCTYPE foo [<!ENTITY x 'y'>]>".to_owned(),
        ),
        ("billion laughs", billion_laughs("<message><body>")),
        ("comment", "<!-- hello -->".to_owned()),
        (
            "comment in a stanza",
            "<message><body>a<!-- hello -->b</body></message>".to_owned(),
        ),
        ("processing instruction", "<?foo bar?>".to_owned()),
        (
            "processing instruction in a stanza",
            "<message><?foo bar?></message>".to_owned(),
        ),
        (
            "XML declaration in the stream",
            "<?xml version='1.0'?>".to_owned(),
        ),
        (
            "undefined entity",
            "<message><body>&foo;</body></message>".to_owned(),
        ),
        (
            "undefined entity in an attribute",
            "<message id='&foo;'/>".to_owned(),
        ),
        (
            "external entity",
            "<message><body>&xxe;</body></message>".to_owned(),
        ),
    ]
    .into_iter()
    .flat_map(|(name, send)| cases(name, &everywhere, send, "restricted-xml"))
    .collect();
    run_table(&s, &table).await;
}

/// RFC 6120 §11.1: predefined entities and character references are allowed and decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predefined_entities_and_character_references_are_delivered() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    s.add_user("romeo", "pw");
    let mut j = s.online("juliet", "balcony").await;
    let mut r = s.online("romeo", "orchard").await;
    r.send(
        "<message to='juliet@localhost/balcony' type='chat' id='e&amp;1'>\
         <body>&amp; &lt; &gt; &quot; &apos; &#x41;&#66;&#xe9;&#x1F600; é <![CDATA[<b>&amp;</b>]]></body></message>",
    )
    .await;
    let m = j.recv().await;
    assert_eq!(
        m.get_child("body", "jabber:client").unwrap().text_content(),
        "& < > \" ' ABé\u{1F600} é <b>&amp;</b>"
    );
    assert_eq!(
        m.to_xml("jabber:client"),
        "<message to='juliet@localhost/balcony' type='chat' id='e&amp;1' from='romeo@localhost/orchard'>\
         <body>&amp; &lt; &gt; \" ' ABé\u{1F600} é &lt;b&gt;&amp;amp;&lt;/b&gt;</body></message>"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_well_formed() {
    let s = TestServer::start();
    let everywhere = [PlainOpen, TlsOpen, Authed, Bound];
    let strings = [
        ("mismatched end tag", "<message><body>x</message>"),
        ("end tag without a start tag", "</message>"),
        ("end tag of the stream with the wrong name", "</stream:foo>"),
        ("NUL byte", "<message><body>a\0b</body></message>"),
        (
            "control character",
            "<message><body>a\u{7}b</body></message>",
        ),
        ("reference to NUL", "<message><body>&#0;</body></message>"),
        ("reference to NUL in an attribute", "<message id='&#0;'/>"),
        (
            "reference to a control character",
            "<message><body>&#x1;</body></message>",
        ),
        (
            "reference to a control character in an attribute",
            "<message id='&#x1;'/>",
        ),
        (
            "reference to a surrogate",
            "<message><body>&#xD800;</body></message>",
        ),
        (
            "reference to a surrogate in an attribute",
            "<message id='&#xD800;'/>",
        ),
        (
            "reference beyond Unicode",
            "<message><body>&#x110000;</body></message>",
        ),
        (
            "malformed character reference",
            "<message><body>&#xZZ;</body></message>",
        ),
        (
            "unescaped ampersand",
            "<message><body>a & b</body></message>",
        ),
        (
            "unescaped ampersand in an attribute",
            "<message id='a & b'/>",
        ),
        (
            "duplicate attribute",
            "<message to='a@localhost' to='b@localhost'/>",
        ),
        ("undeclared element prefix", "<x:message/>"),
        ("undeclared attribute prefix", "<message x:id='1'/>"),
        ("unquoted attribute", "<message id=1/>"),
        ("attribute without a value", "<message id/>"),
        ("text at the stream level", "hello<message/>"),
        ("']]>' in text", "<message><body>a]]>b</body></message>"),
        ("'<' in an attribute value", "<message id='a<b'/>"),
        ("element name starting with a digit", "<1message/>"),
        ("element name with a control character", "<mess\u{1}age/>"),
        (
            "child element name with '&'",
            "<message><a&amp;b/></message>",
        ),
        ("child element name with '='", "<message><a=b/></message>"),
        (
            "element name with two colons",
            "<message><a:b:c xmlns:a='urn:x'/></message>",
        ),
        ("attribute name starting with a digit", "<message 1d='x'/>"),
        (
            "attribute name with a control character",
            "<message \u{1}='x'/>",
        ),
        ("empty namespace name for a prefix", "<message xmlns:x=''/>"),
        (
            "control character in a namespace name",
            "<message><a xmlns='urn:\u{1}'/></message>",
        ),
        (
            "same attribute through two prefixes",
            "<message xmlns:a='urn:x' xmlns:b='urn:x' a:id='1' b:id='2'/>",
        ),
        (
            "duplicate namespace declaration",
            "<message xmlns:a='urn:x' xmlns:a='urn:y'/>",
        ),
        (
            "duplicate default namespace",
            "<message xmlns='jabber:client' xmlns='jabber:client'/>",
        ),
        (
            "binding the xml prefix elsewhere",
            "<message xmlns:xml='urn:x'/>",
        ),
    ];
    let mut table: Vec<Case> = strings
        .into_iter()
        .flat_map(|(name, send)| cases(name, &everywhere, send, "not-well-formed"))
        .collect();
    let bytes: [(&'static str, &[u8]); 4] = [
        (
            "invalid UTF-8 in text",
            b"<message><body>\xff\xfe</body></message>",
        ),
        (
            "truncated UTF-8 sequence",
            b"<message><body>\xc3(</body></message>",
        ),
        ("invalid UTF-8 in an attribute", b"<message id='\xc3('/>"),
        ("invalid UTF-8 in a name", b"<mess\xffage/>"),
    ];
    for (name, send) in bytes {
        table.extend(cases(name, &everywhere, send, "not-well-formed"));
    }
    table.push(case(
        "text after a stanza",
        Bound,
        "<presence type='probe' to='x@localhost'/>hello<presence/>",
        "not-well-formed",
    ));
    // Before STARTTLS the stream must be well-formed too.
    table.push(case(
        "mismatched end tag before STARTTLS",
        Plain,
        format!("{}<starttls></x>", header("localhost")),
        "not-well-formed",
    ));
    run_table(&s, &table).await;
}

// ---------------------------------------------------------------------------------------------
// Sizes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_and_depth_limits() {
    let s = TestServer::start_with(|c| c.limits.max_stanza_bytes = MAX_STANZA);
    let mut table = Vec::new();
    let body = "<message to='hostile@localhost' type='chat'><body>";
    let over = |limit: usize| message_of_size("hostile@localhost", "big", limit + 1);
    table.push(case(
        "stanza over the STARTTLS limit",
        PlainOpen,
        over(MAX_PLAIN),
        "policy-violation",
    ));
    table.push(case(
        "stanza over the pre-auth limit",
        TlsOpen,
        over(MAX_PREAUTH),
        "policy-violation",
    ));
    table.push(case(
        "registration over the pre-auth limit",
        TlsOpen,
        form_request_of_size(MAX_PREAUTH + 1).0,
        "policy-violation",
    ));
    for stage in [Authed, Bound] {
        table.push(case(
            "stanza over max_stanza_bytes",
            stage,
            over(MAX_STANZA),
            "policy-violation",
        ));
    }
    for stage in [PlainOpen, TlsOpen, Authed, Bound] {
        table.push(case(
            "10 MB body never closed",
            stage,
            endless(body, 10_000_000),
            "policy-violation",
        ));
        table.push(case(
            "10,000-deep nesting",
            stage,
            deep(10_000),
            "policy-violation",
        ));
        table.push(case(
            "100,000 attributes",
            stage,
            many_attributes(100_000),
            "policy-violation",
        ));
        table.push(case(
            "10 MB attribute value",
            stage,
            endless("<message id='", 10_000_000),
            "policy-violation",
        ));
    }
    for stage in [Plain, Tls] {
        table.push(case(
            "10 MB stream header",
            stage,
            endless("<stream:stream x='", 10_000_000),
            "policy-violation",
        ));
    }
    run_table(&s, &table).await;
}

/// Many attributes (checked for duplicates in linear time) and namespaced attributes are
/// delivered intact; a namespace name may contain '}' (the attribute key is `{ns}local`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_are_delivered_intact() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    s.add_user("romeo", "pw");
    let mut j = Client::bound(s.direct, "juliet", "pw", "balcony").await;
    let mut r = Client::bound(s.direct, "romeo", "pw", "orchard").await;
    let attrs: String = (0..2000).map(|i| format!(" x{i}='{i}'")).collect();
    r.send(&format!(
        "<message to='juliet@localhost/balcony' type='chat' id='many'{attrs}/>"
    ))
    .await;
    let m = j.recv().await;
    assert_eq!(m.attrs.len(), 2004);
    assert!((0..2000).all(|i| m.get_attr(&format!("x{i}")) == Some(i.to_string().as_str())));
    r.send(
        "<message to='juliet@localhost/balcony' type='chat' id='ns' xmlns:p='urn:a}b' p:x='1'>\
         <body>hi</body><q xmlns='urn:q' p:y='2'/></message>",
    )
    .await;
    assert_eq!(
        j.recv_xml().await,
        "<message to='juliet@localhost/balcony' type='chat' id='ns' xmlns:a0='urn:a}b' a0:x='1' \
         from='romeo@localhost/orchard'><body>hi</body>\
         <q xmlns='urn:q' xmlns:a0='urn:a}b' a0:y='2'/></message>"
    );
}

/// A stanza of exactly the limit is accepted and delivered intact; one byte more is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stanza_at_the_limit_is_delivered() {
    let s = TestServer::start_with(|c| c.limits.max_stanza_bytes = MAX_STANZA);
    s.add_user("juliet", "pw");
    s.add_user("romeo", "pw");
    let mut j = Client::bound(s.direct, "juliet", "pw", "balcony").await;
    let mut r = Client::bound(s.direct, "romeo", "pw", "orchard").await;
    let limits = r
        .features
        .get_child("limits", "urn:xmpp:stream-limits:0")
        .unwrap();
    assert_eq!(
        limits
            .get_child("max-bytes", "urn:xmpp:stream-limits:0")
            .unwrap()
            .text_content(),
        "20000"
    );
    let m = message_of_size("juliet@localhost/balcony", "m1", MAX_STANZA);
    r.send(&m).await;
    let got = j.recv().await;
    assert_eq!(got.get_attr("id"), Some("m1"));
    assert_eq!(got.get_attr("from"), Some("romeo@localhost/orchard"));
    let body = got
        .get_child("body", "jabber:client")
        .unwrap()
        .text_content();
    assert_eq!(
        body.len(),
        MAX_STANZA
            - "<message to='juliet@localhost/balcony' type='chat' id='m1'><body></body></message>"
                .len()
    );
    assert!(body.bytes().all(|b| b == b'x'));
    // Whitespace between stanzas does not count towards the next one.
    r.send(" \n ").await;
    r.send(&message_of_size(
        "juliet@localhost/balcony",
        "m2",
        MAX_STANZA,
    ))
    .await;
    assert_eq!(j.recv().await.get_attr("id"), Some("m2"));
    let ev = r
        .send_and_next(message_of_size("juliet@localhost/balcony", "m3", MAX_STANZA + 1).as_bytes())
        .await;
    expect_error_and_close(r, ev, "policy-violation")
        .await
        .unwrap();
    j.ping("j1").await;

    // The same before authentication.
    let mut c = Client::direct(s.direct, "localhost").await;
    let (req, id) = form_request_of_size(MAX_PREAUTH);
    c.send(&req).await;
    let form = c.recv().await;
    assert_eq!(form.get_attr("id"), Some(id.as_str()));
    assert_eq!(form.get_attr("type"), Some("result"));
    let ev = c
        .send_and_next(form_request_of_size(MAX_PREAUTH + 1).0.as_bytes())
        .await;
    expect_error_and_close(c, ev, "policy-violation")
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Stanza types, authorisation, `from`.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stanza_types_and_authorisation() {
    let s = TestServer::start();
    let table = vec![
        case("unknown element", TlsOpen, "<foo xmlns='jabber:client'/>", "unsupported-stanza-type"),
        case("message in another namespace", TlsOpen, "<message xmlns='urn:example'/>", "unsupported-stanza-type"),
        case("message before authentication", TlsOpen, "<message to='juliet@localhost'><body>hi</body></message>", "not-authorized"),
        case("presence before authentication", TlsOpen, "<presence/>", "not-authorized"),
        case("ping before authentication", TlsOpen, "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>", "not-authorized"),
        case("bind before authentication", TlsOpen, "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>", "not-authorized"),
        case("second STARTTLS", TlsOpen, STARTTLS, "policy-violation"),
        case("unknown element before bind", Authed, "<foo xmlns='jabber:client'/>", "unsupported-stanza-type"),
        case("presence before bind", Authed, "<presence/>", "not-authorized"),
        case("message before bind", Authed, "<message to='juliet@localhost'><body>hi</body></message>", "not-authorized"),
        case("unknown element", Bound, "<foo xmlns='jabber:client'/>", "unsupported-stanza-type"),
        case("message in another namespace", Bound, "<message xmlns='urn:example'/>", "unsupported-stanza-type"),
        case("jabber:server stanza on a client stream", Bound, "<message xmlns='jabber:server' to='hostile@localhost'/>", "unsupported-stanza-type"),
        case("STARTTLS after authentication", Bound, STARTTLS, "unsupported-stanza-type"),
        case("SASL after authentication", Bound, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGhvc3RpbGUAcHc=</auth>", "unsupported-stanza-type"),
        case("from someone else", Bound, "<message from='someone@else' to='hostile@localhost'><body>x</body></message>", "invalid-from"),
        case("from another local user", Bound, "<message from='juliet@localhost/balcony' to='hostile@localhost'/>", "invalid-from"),
        case("from another resource", Bound, "<message from='hostile@localhost/other' to='hostile@localhost'/>", "invalid-from"),
        case("from the server", Bound, "<iq type='get' id='x' from='localhost'><ping xmlns='urn:xmpp:ping'/></iq>", "invalid-from"),
        case("from an invalid JID", Bound, "<presence from='@@'/>", "invalid-from"),
    ];
    run_table(&s, &table).await;
}

/// RFC 6120 §8.1.2.1: a client may name itself (full or bare JID) in `from`; the server
/// stamps the full JID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_with_own_jid_is_accepted() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    s.add_user("romeo", "pw");
    let mut j = Client::bound(s.direct, "juliet", "pw", "balcony").await;
    let mut r = Client::bound(s.direct, "romeo", "pw", "orchard").await;
    for (i, from) in [
        "romeo@localhost/orchard",
        "romeo@localhost",
        "Romeo@LocalHost/orchard",
    ]
    .iter()
    .enumerate()
    {
        r.send(&format!("<message from='{from}' to='juliet@localhost/balcony' type='chat' id='m{i}'><body>hi</body></message>")).await;
        assert_eq!(
            j.recv_xml().await,
            format!("<message from='romeo@localhost/orchard' to='juliet@localhost/balcony' type='chat' id='m{i}'><body>hi</body></message>"),
            "{from}"
        );
    }
    r.send(
        "<iq type='get' id='p' from='romeo@localhost/orchard'><ping xmlns='urn:xmpp:ping'/></iq>",
    )
    .await;
    assert_eq!(
        r.recv_xml().await,
        "<iq type='result' id='p' to='romeo@localhost/orchard'/>"
    );
}

// ---------------------------------------------------------------------------------------------
// Keepalives, timeouts, shutdown.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whitespace_keepalives() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    // Before TLS (STARTTLS proceeds after keepalives).
    let mut tcp = TcpStream::connect(s.starttls).await.unwrap();
    tcp.write_all(format!("\n{}", header("localhost")).as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    read_until(&mut tcp, &mut got, "</stream:features>").await;
    for ka in [" ", "\n", "\r\n", "\t"] {
        tcp.write_all(ka.as_bytes()).await.unwrap();
    }
    tcp.write_all(STARTTLS.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    read_until(&mut tcp, &mut got, "<proceed").await;
    let mut c = Client::over_tls(try_tls_connect(tcp, None).await.unwrap(), "localhost").await;
    // Before authentication.
    for ka in [" ", "\n", "  \n\t "] {
        c.send(ka).await;
    }
    c.send("<iq type='get' id='f'><query xmlns='jabber:iq:register'/></iq>")
        .await;
    assert_eq!(c.recv().await.get_attr("id"), Some("f"));
    c.send("\n").await;
    c.auth_plain("", "juliet", "pw").await.unwrap();
    // After authentication, before and after bind.
    c.send(" ").await;
    c.bind(Some("ka")).await;
    for (i, ka) in [" ", "\n", " \n \n"].iter().enumerate() {
        c.send(ka).await;
        c.ping(&format!("p{i}")).await;
    }
    // Between the parts of a stanza sent separately.
    c.send("<iq type='get' id='split'>").await;
    c.send("\n").await;
    c.send("<ping xmlns='urn:xmpp:ping'/></iq> ").await;
    assert_eq!(c.recv().await.get_attr("id"), Some("split"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_timeout() {
    let s = TestServer::start_with(|c| c.limits.handshake_timeout_secs = 1);
    s.add_user("juliet", "pw");
    // TLS and the stream header, then nothing.
    let (mut r, mut w) = tokio::io::split(raw_direct(s.direct).await);
    let (out, closed) =
        send_and_read_to_close(&mut r, &mut w, Vec::new(), header("localhost").as_bytes()).await;
    check_output(&out, closed, "connection-timeout")
        .await
        .unwrap();
    // TLS, then not even a header.
    let (mut r, mut w) = tokio::io::split(raw_direct(s.direct).await);
    let (out, closed) = send_and_read_to_close(&mut r, &mut w, Vec::new(), b"").await;
    check_output(&out, closed, "connection-timeout")
        .await
        .unwrap();
    // In the middle of SASL.
    let mut c = Client::direct(s.direct, "localhost").await;
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>biwsbj1qdWxpZXQscj1hYmNkZWY=</auth>").await;
    assert_eq!(c.recv().await.name, "challenge");
    let ev = c.reader.next().await;
    expect_error_and_close(c, ev, "connection-timeout")
        .await
        .unwrap();
    // No TLS handshake at all: closed, with nothing to say in plaintext.
    let mut tcp = TcpStream::connect(s.direct).await.unwrap();
    let (out, closed) = read_until_closed(&mut tcp).await;
    assert!(closed && out.is_empty(), "{closed} {out:?}");
    // An authenticated session is not subject to the handshake deadline.
    let mut c = Client::bound(s.direct, "juliet", "pw", "r").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.ping("alive").await;
}

/// A client that opens a stream but never starts TLS gets a `connection-timeout` stream error
/// when the handshake deadline passes, and the connection is closed: the deadline before
/// STARTTLS ends the stream with an error, not silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_timeout_before_starttls() {
    let s = TestServer::start_with(|c| c.limits.handshake_timeout_secs = 1);
    let mut tcp = TcpStream::connect(s.starttls).await.unwrap();
    let (mut r, mut w) = tcp.split();
    let (out, closed) =
        send_and_read_to_close(&mut r, &mut w, Vec::new(), header("localhost").as_bytes()).await;
    check_output(&out, closed, "connection-timeout")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_shutdown_for_bound_sessions() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    let mut a = Client::bound(s.direct, "juliet", "pw", "a").await;
    let mut b = s.online("juliet", "b").await;
    a.ping("before").await;
    let stopper = tokio::task::spawn_blocking(move || {
        let mut s = s;
        s.stop();
        s
    });
    let ev = a.reader.next().await;
    expect_error_and_close(a, ev, "system-shutdown")
        .await
        .unwrap();
    // b was available: it may first see a's presence going... it has no subscription, so no.
    let ev = b.reader.next().await;
    expect_error_and_close(b, ev, "system-shutdown")
        .await
        .unwrap();
    let _s = stopper.await.unwrap();
}

async fn shutdown_with(c: Client, s: TestServer) -> Result<(), String> {
    let mut c = c;
    let stopper = tokio::task::spawn_blocking(move || {
        let mut s = s;
        s.stop();
        s
    });
    let ev = tokio::time::timeout(WAIT, c.reader.next())
        .await
        .map_err(|_| "nothing arrived".to_owned())?;
    let r = expect_error_and_close(c, ev, "system-shutdown").await;
    let _s = stopper.await.unwrap();
    r
}

/// A session that has authenticated but not yet bound a resource gets `system-shutdown` and
/// is closed when the server stops: shutdown reaches every authenticated connection, not only
/// the sessions bound in the router.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_shutdown_after_authentication_before_bind() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    let mut c = Client::direct(s.direct, "localhost").await;
    c.auth_plain("", "juliet", "pw").await.unwrap();
    shutdown_with(c, s).await.unwrap();
}

/// A connection still in SASL (TLS done, not authenticated) gets `system-shutdown` and is
/// closed when the server stops, before `stop()` returns (not left to the handshake timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_shutdown_before_authentication() {
    let s = TestServer::start();
    let c = Client::direct(s.direct, "localhost").await;
    shutdown_with(c, s).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// A client that stops reading.

/// The server's writer blocks once the socket buffers towards a client that does not read are
/// full; its queue then grows past `limits.max_outbound_queue_bytes` and the server closes that
/// stream with `policy-violation`. The sender notices through bounces (the session is gone)
/// and keeps working. How much fits in the kernel's buffers varies (on Linux loopback 4-9 MB
/// were sent), so the flood goes on until the first bounce, up to a generous cap. The slow
/// client then reads a gap-free prefix of the flood, the stream error, and the end: while it
/// does not read, the server's writer stays blocked (up to its 120 s write timeout), so the
/// connection itself is only closed once the client reads or that timeout passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected() {
    const MAX_QUEUE: usize = 300_000;
    const CAP_BYTES: usize = 200_000_000;
    let s = TestServer::start_with(|c| c.limits.max_outbound_queue_bytes = MAX_QUEUE);
    s.add_user("slow", "pw");
    s.add_user("flood", "pw");
    let mut slow = s.online("slow", "r").await;
    let mut flood = s.online("flood", "r").await;
    let body = "x".repeat(60_000);
    let msg = |i: usize| {
        format!(
            "<message to='slow@localhost/r' type='chat' id='m{i}'><body>{body}</body></message>"
        )
    };
    let count = CAP_BYTES / msg(0).len();
    eprintln!("flood: up to {count} messages");
    // Write whole messages only (a cancelled TLS write cannot be resumed with other data):
    // the writer stops at a message boundary once the reader has seen the first bounce.
    let stop = AtomicBool::new(false);
    let (sent, first) = {
        let Client { reader, writer, .. } = &mut flood;
        let write = async {
            let mut i = 0;
            while i < count && !stop.load(Ordering::Relaxed) {
                writer.write_all(msg(i).as_bytes()).await.unwrap();
                i += 1;
            }
            writer.flush().await.unwrap();
            i
        };
        let read = async {
            // A hang guard only: the bounce normally comes after a few megabytes.
            let ev = tokio::time::timeout(Duration::from_secs(300), reader.next()).await;
            stop.store(true, Ordering::Relaxed);
            ev
        };
        let (sent, ev) = tokio::join!(write, read);
        let ev = ev.unwrap_or_else(|_| {
            panic!("the slow client was never disconnected ({sent} messages sent)")
        });
        (sent, ev.unwrap())
    };
    let bounced = |e: &Element| {
        e.is("message", "jabber:client")
            && e.get_attr("type") == Some("error")
            && matches!(
                error_condition(e).as_deref(),
                Some("service-unavailable" | "resource-constraint")
            )
    };
    match first {
        StreamEvent::Element(e) => assert!(bounced(&e), "{}", e.to_xml("jabber:client")),
        other => panic!("{other:?}"),
    }
    // The flooder keeps working (past the bounces still on their way).
    flood
        .send("<iq type='get' id='still'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    loop {
        let e = flood.recv().await;
        if e.get_attr("id") == Some("still") {
            assert_eq!(e.get_attr("type"), Some("result"));
            break;
        }
        assert!(bounced(&e), "{}", e.to_xml("jabber:client"));
    }
    // The slow client, reading at last, finds a gap-free prefix of the flood, then the
    // connection is gone: the server dropped it rather than wait for it to read.
    let mut delivered = 0;
    loop {
        match tokio::time::timeout(WAIT, slow.reader.next()).await {
            Ok(Ok(StreamEvent::Element(e))) if e.is("message", "jabber:client") => {
                assert_eq!(e.get_attr("id"), Some(format!("m{delivered}").as_str()));
                delivered += 1;
            }
            Ok(Ok(StreamEvent::Element(e))) => {
                // The stream error may make it out before the socket closes.
                assert_eq!(
                    stream_error_condition(&e).as_deref(),
                    Some("policy-violation")
                );
            }
            Ok(Ok(StreamEvent::End)) | Ok(Err(_)) => break,
            other => panic!("expected the connection to close, got {other:?}"),
        }
    }
    eprintln!("flood: {sent} messages sent, {delivered} delivered before the disconnect");
    assert!(delivered < sent, "{delivered} of {sent}");
}

/// Issue 14.7 (RFC 6120 §8.2.3): every get/set IQ gets exactly one answer, whatever its
/// payload and wherever it is addressed: two payloads, none, or an unknown one, with no `to`,
/// to the own bare JID, to the server, to another account and to a full JID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_iq_get_or_set_gets_exactly_one_answer() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    s.add_user("romeo", "pw");
    let mut j = s.online("juliet", "balcony").await;
    let mut r = s.online("romeo", "orchard").await;
    let payloads = [
        "<query xmlns='jabber:iq:private'><n xmlns='x:n'/></query><vCard xmlns='vcard-temp'/>",
        "<query xmlns='jabber:iq:roster'/><blocklist xmlns='urn:xmpp:blocking'/>",
        "<vCard xmlns='vcard-temp'/><vCard xmlns='vcard-temp'/>",
        "",
        "<unknown xmlns='urn:example:unknown'/>",
    ];
    let targets = [
        "",
        " to='juliet@localhost'",
        " to='localhost'",
        " to='romeo@localhost'",
        " to='romeo@localhost/orchard'",
    ];
    let mut n = 0;
    for kind in ["get", "set"] {
        for (pi, payload) in payloads.iter().enumerate() {
            for to in targets {
                let id = format!("q{n}");
                n += 1;
                j.send(&format!("<iq type='{kind}' id='{id}'{to}>{payload}</iq>"))
                    .await;
                if to.contains("/orchard") && pi == 4 {
                    // A single payload to a full JID is the client's to answer.
                    let q = r.recv().await;
                    assert_eq!(q.get_attr("id"), Some(id.as_str()));
                    r.send(&format!(
                        "<iq type='error' id='{id}' to='juliet@localhost/balcony'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
                    ))
                    .await;
                }
                let a = j.recv().await;
                assert_eq!(a.get_attr("id"), Some(id.as_str()), "{kind} {payload} {to}");
                assert!(
                    matches!(a.get_attr("type"), Some("result" | "error")),
                    "{}",
                    a.to_xml("jabber:client")
                );
            }
        }
    }
    // Exactly one each: nothing else is waiting.
    j.send("<iq type='get' id='last' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(j.recv().await.get_attr("id"), Some("last"));
}
