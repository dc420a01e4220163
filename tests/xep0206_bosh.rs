//! XEP-0124/XEP-0206 BOSH at `/http-bind`, driven with raw HTTPS requests against a real
//! server: session creation with the stream features, SASL, restart, bind, messages both
//! ways (one received through a held request), rid replay and out-of-order rids, terminate,
//! the error conditions (unknown sid, bad XML, unknown host, oversized body, per-address
//! limit, stream errors) and the end of an idle session (resumable with XEP-0198 over TCP).

mod common;

use std::time::Duration;

use common::bosh::*;
use common::{Client, TestServer, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_creation_answers_with_the_stream_features() {
    let s = TestServer::start();
    let r = post(s.https(), &creation(42, "LocalHost")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/xml; charset=utf-8"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let e = r.element();
    assert_eq!((e.name.as_str(), e.ns.as_str()), ("body", HTTPBIND));
    let sid = e.get_attr("sid").unwrap();
    assert!(sid.len() >= 22, "128 bits of sid: {sid}");
    for (k, v) in [
        ("wait", "5"),
        ("hold", "1"),
        ("requests", "2"),
        ("ver", "1.6"),
        ("from", "localhost"),
        ("{urn:xmpp:xbosh}version", "1.0"),
        ("{urn:xmpp:xbosh}restartlogic", "true"),
    ] {
        assert_eq!(e.get_attr(k), Some(v), "{k} in {}", r.body);
    }
    for k in ["inactivity", "polling", "maxpause", "authid"] {
        assert!(e.get_attr(k).is_some(), "{k} in {}", r.body);
    }
    let features = e
        .get_child("features", "http://etherx.jabber.org/streams")
        .unwrap();
    let mechanisms = features
        .get_child("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl")
        .unwrap();
    assert!(mechanisms.elements().any(|m| m.text_content() == "PLAIN"));
    // No -PLUS mechanism: the HTTPS connection's TLS is not the stream's.
    assert!(!mechanisms
        .elements()
        .any(|m| m.text_content().ends_with("-PLUS")));

    // A longer wait than the server allows is cut to `http.bosh_max_wait_secs`.
    let long = creation(7, "localhost").replace("wait='5'", "wait='3600'");
    let r = post(s.https(), &long).await;
    assert_eq!(r.element().get_attr("wait"), Some("60"), "{}", r.body);

    // A browser's preflight.
    let pre = http(s.https(), "OPTIONS", b"").await;
    assert_eq!(pre.status, 200);
    assert_eq!(pre.header("access-control-allow-origin"), Some("*"));
    assert!(pre
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_bind_and_messages_both_ways() {
    let s = TestServer::start();
    s.add_user("alice", "pw");
    s.add_user("bob", "pw");
    let mut bob = s.online("bob", "tcp").await;
    let addr = s.https();
    let mut b = Bosh::login(addr, "alice", "web").await;
    b.send("<presence/>").await;
    b.expect("presence").await;

    // A repeated rid gets the same response again.
    b.send("<iq type='get' id='ping1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let pong = b.expect("iq").await;
    assert_eq!(pong.get_attr("id"), Some("ping1"));
    let replay = post(
        addr,
        &format!("<body rid='{}' sid='{}' xmlns='{HTTPBIND}'/>", b.rid, b.sid),
    )
    .await;
    assert_eq!(replay.body, b.last);

    // BOSH to TCP.
    b.send("<message to='bob@localhost/tcp' type='chat' id='m1'><body>hello bob &amp; co</body></message>").await;
    let m = bob.recv().await;
    assert_eq!(m.name, "message");
    assert_eq!(m.get_attr("from"), Some("alice@localhost/web"));
    assert_eq!(
        m.get_child("body", "jabber:client").unwrap().text_content(),
        "hello bob & co"
    );

    // TCP to BOSH, through a request held while the message is on its way.
    let (_, held) = b.next_body("", "");
    let waiting = tokio::spawn(async move { post(addr, &held).await });
    bob.send(
        "<message to='alice@localhost/web' type='chat' id='m2'><body>hi alice</body></message>",
    )
    .await;
    let r = waiting.await.unwrap();
    b.inbox.extend(r.element().elements().cloned());
    let m = b.expect("message").await;
    assert_eq!(m.ns, "jabber:client");
    assert_eq!(m.get_attr("from"), Some("bob@localhost/tcp"));
    assert_eq!(
        m.get_child("body", "jabber:client").unwrap().text_content(),
        "hi alice"
    );

    // Terminate: the last payload is delivered, then the sid is gone.
    let r = b
        .send_with(
            " type='terminate'",
            "<message to='bob@localhost/tcp' type='chat'><body>bye</body></message>",
        )
        .await;
    assert_eq!(terminated(&r), None);
    let m = bob.recv().await;
    assert_eq!(
        m.get_child("body", "jabber:client").unwrap().text_content(),
        "bye"
    );
    let r = b.send("").await;
    assert_eq!(terminated(&r).as_deref(), Some("item-not-found"));
    drop(bob);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_requests_wait_for_the_gap() {
    let s = TestServer::start();
    s.add_user("alice", "pw");
    let addr = s.https();
    let mut b = Bosh::login(addr, "alice", "web").await;
    let (_, first) = b.next_body(
        "",
        "<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    let (_, second) = b.next_body(
        "",
        "<iq type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    // The second request first: it waits until the first arrives. (The pause only makes
    // the test meaningful; the outcome is the same either way.)
    let later = tokio::spawn(async move { post(addr, &second).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let earlier = post(addr, &first).await;
    let later = later.await.unwrap();
    for r in [&earlier, &later] {
        assert_eq!(r.status, 200);
        b.inbox.extend(r.element().elements().cloned());
    }
    // The session read the first request's payload first.
    let one = b.expect("iq").await;
    let two = b.expect("iq").await;
    assert_eq!(
        [one.get_attr("id"), two.get_attr("id")],
        [Some("p1"), Some("p2")]
    );

    // A rid far beyond the window ends the session.
    let r = post(
        addr,
        &format!(
            "<body rid='{}' sid='{}' xmlns='{HTTPBIND}'/>",
            b.rid + 10,
            b.sid
        ),
    )
    .await;
    assert_eq!(terminated(&r).as_deref(), Some("item-not-found"));
    let r = b.send("").await;
    assert_eq!(terminated(&r).as_deref(), Some("item-not-found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_terminal_conditions() {
    let s = TestServer::start_with(|c| c.http.max_request_bytes = 4096);
    let addr = s.https();
    let unknown = post(
        addr,
        &format!("<body rid='5' sid='nonexistent' xmlns='{HTTPBIND}'/>"),
    )
    .await;
    assert_eq!(unknown.status, 200);
    assert_eq!(terminated(&unknown).as_deref(), Some("item-not-found"));
    for bad in [
        "<body rid='1' to='localhost'".to_owned(),
        "<body rid='1' to='localhost' xmlns='urn:wrong'/>".to_owned(),
        format!("<body to='localhost' xmlns='{HTTPBIND}'/>"),
        format!(
            "<!DOCTYPE body [<!ENTITY x 'y'>]><body rid='1' to='localhost' xmlns='{HTTPBIND}'/>"
        ),
        "\u{0}\u{1}garbage".to_owned(),
    ] {
        let r = post(addr, &bad).await;
        assert_eq!(r.status, 200, "{bad}");
        assert_eq!(terminated(&r).as_deref(), Some("bad-request"), "{bad}");
    }
    let r = post(addr, &creation(1, "elsewhere.example")).await;
    assert_eq!(terminated(&r).as_deref(), Some("host-unknown"));
    let big = format!(
        "<body rid='1' to='localhost' xmlns='{HTTPBIND}'>{}</body>",
        "<a/>".repeat(2000)
    );
    let r = post(addr, &big).await;
    assert_eq!(r.status, 413);
    // The server is unaffected.
    let (_, created) = Bosh::create(addr).await;
    assert!(created.get_attr("sid").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_error_terminates_with_remote_stream_error() {
    let s = TestServer::start();
    let (mut b, _) = Bosh::create(s.https()).await;
    // A stanza before authentication ends the stream with a stream error.
    let r = b
        .send("<message to='x@localhost'><body>x</body></message>")
        .await;
    let r = if r.element().get_attr("type") == Some("terminate") {
        r
    } else {
        b.send("").await
    };
    assert_eq!(terminated(&r).as_deref(), Some("remote-stream-error"));
    assert!(
        r.element()
            .get_child("error", "http://etherx.jabber.org/streams")
            .is_some(),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_address_are_limited() {
    let s = TestServer::start_with(|c| {
        c.http.max_bosh_sessions_per_address = 2;
        c.limits.exempt_loopback = false;
    });
    let addr = s.https();
    let (first, _) = Bosh::create(addr).await;
    let (_second, _) = Bosh::create(addr).await;
    let r = post(addr, &creation(7, "localhost")).await;
    assert_eq!(terminated(&r).as_deref(), Some("policy-violation"));
    // Ending a session gives its place back.
    let r = post(
        addr,
        &format!(
            "<body rid='1001' sid='{}' type='terminate' xmlns='{HTTPBIND}'/>",
            first.sid
        ),
    )
    .await;
    assert_eq!(terminated(&r), None);
    let (third, _) = Bosh::create(addr).await;
    assert!(!third.sid.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_ends_and_stays_resumable() {
    let s = TestServer::start_with(|c| c.http.bosh_inactivity_secs = 1);
    s.add_user("alice", "pw");
    let addr = s.https();
    let mut b = Bosh::login(addr, "alice", "web").await;
    b.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await;
    let enabled = b.expect("enabled").await;
    let id = enabled.get_attr("id").unwrap().to_owned();
    // The client goes away: no request for longer than `inactivity`.
    let deadline = tokio::time::Instant::now() + WAIT;
    while kleiber::http::bosh::session_count(s.shared()) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the idle session did not end"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = b.send("").await;
    assert_eq!(terminated(&r).as_deref(), Some("item-not-found"));
    // The XMPP session lost its transport as a TCP one would: it can be resumed.
    let mut c = Client::starttls(s.starttls, "localhost").await;
    c.auth_scram("SCRAM-SHA-256", "alice", "pw").await.unwrap();
    c.send(&format!(
        "<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='0'/>"
    ))
    .await;
    let resumed = c.recv().await;
    assert_eq!(
        resumed.name,
        "resumed",
        "{}",
        resumed.to_xml("jabber:client")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_beyond_hold_releases_the_held_one() {
    let s = TestServer::start();
    s.add_user("alice", "pw");
    let addr = s.https();
    let mut b = Bosh::login(addr, "alice", "web").await;
    let (_, first) = b.next_body("", "");
    let (_, second) = b.next_body(
        "",
        "<iq type='get' id='p3'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    let held = tokio::spawn(async move { post(addr, &first).await });
    let r = post(addr, &second).await;
    b.inbox.extend(r.element().elements().cloned());
    // hold='1': the second request answers the first at once, with nothing in it.
    let released = held.await.unwrap();
    assert_eq!(released.status, 200);
    assert_eq!(released.element().children.len(), 0, "{}", released.body);
    assert_eq!(released.element().get_attr("type"), None);
    let pong = b.expect("iq").await;
    assert_eq!(pong.get_attr("id"), Some("p3"));
}
