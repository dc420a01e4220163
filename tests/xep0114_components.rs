//! External components (XEP-0114): the handshake and its errors, routing to and from a
//! component for local users, users of another server (over s2s) and other components,
//! the component's address rules, bounces while it is away, reconnects and a restart.

mod common;
use common::component::{port_of, Comp, NS_ACCEPT};
use common::fed::*;
use common::s2s::*;
use common::*;

use kleiber::config::{ComponentConfig, Config};
use kleiber::xml::Element;

const SECRET: &str = "s3cret";

fn component(domain: &str) -> ComponentConfig {
    ComponentConfig {
        domain: domain.to_owned(),
        secret: SECRET.to_owned(),
        listen: None,
        parent: None,
    }
}

fn with_components<'a>(domains: &'a [&'a str]) -> impl FnOnce(&mut Config) + 'a {
    move |c: &mut Config| {
        c.components = domains.iter().map(|d| component(d)).collect();
    }
}

async fn iq(c: &mut Client, id: &str, body: &str) -> Element {
    c.send(&body.replace("ID", id)).await;
    wait_for(c, |e| e.name == "iq" && e.get_attr("id") == Some(id)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_errors_follow_the_xep() {
    let s = TestServer::start_with(with_components(&["irc.localhost"]));
    let addr = port_of(&s);

    // Wrong secret.
    let mut c = Comp::open(addr, "irc.localhost").await;
    c.handshake("wrong").await;
    c.expect_stream_error("not-authorized").await;
    // A domain that is not a component here.
    let mut c = Comp::open(addr, "gw.localhost").await;
    c.expect_stream_error("host-unknown").await;
    // The client namespace on the component port.
    let header = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='irc.localhost'>";
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (r, mut w) = tcp.into_split();
    tokio::io::AsyncWriteExt::write_all(&mut w, header.as_bytes())
        .await
        .unwrap();
    let mut raw = r;
    let text = read_to_close(&mut raw).await;
    assert!(text.contains("<invalid-namespace"), "{text}");
    assert!(text.contains(NS_ACCEPT), "{text}");
    // Something else than a handshake.
    let mut c = Comp::open(addr, "irc.localhost").await;
    c.send("<message to='x@localhost'/>").await;
    c.expect_stream_error("not-authorized").await;

    // The right secret; a second stream for the same domain is refused with conflict and
    // the first one keeps working.
    let mut first = Comp::connect(addr, "irc.localhost", SECRET).await;
    let mut second = Comp::open(addr, "irc.localhost").await;
    second.handshake(SECRET).await;
    second.expect_stream_error("conflict").await;
    s.add_user("juliet", "pw");
    let mut j = s.online("juliet", "r").await;
    j.send("<message to='#room@irc.localhost' type='chat'><body>still there?</body></message>")
        .await;
    let m = first.recv_named("message").await;
    assert_eq!(m.get_attr("from"), Some("juliet@localhost/r"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_users_and_components_talk_both_ways() {
    let s = TestServer::start_with(with_components(&["irc.localhost", "mail.localhost"]));
    let addr = port_of(&s);
    let mut irc = Comp::connect(addr, "irc.localhost", SECRET).await;
    let mut mail = Comp::connect(addr, "mail.localhost", SECRET).await;
    s.add_user("juliet", "pw");
    let mut j = s.online("juliet", "r").await;

    // User -> component, to the domain and to JIDs in it; the stanza arrives in the
    // component's namespace, with the user's full JID.
    for to in ["irc.localhost", "#room%irc.net@irc.localhost/nick"] {
        j.send(&format!(
            "<message to='{to}' type='chat' id='u1'><body>hello</body></message>"
        ))
        .await;
        let m = irc.recv_named("message").await;
        assert_eq!(m.ns, NS_ACCEPT);
        assert_eq!(m.get_attr("to"), Some(to));
        assert_eq!(m.get_attr("from"), Some("juliet@localhost/r"));
        assert_eq!(
            m.get_child("body", NS_ACCEPT).map(Element::text_content),
            Some("hello".into())
        );
    }
    // Component -> user, from any JID of its domain.
    irc.send("<message from='#room%irc.net@irc.localhost/romeo' to='juliet@localhost/r' type='groupchat'><body>hi juliet</body></message>").await;
    let m = wait_for(&mut j, |e| e.name == "message").await;
    assert_eq!(
        m.get_attr("from"),
        Some("#room%irc.net@irc.localhost/romeo")
    );
    assert_eq!(body(&m).as_deref(), Some("hi juliet"));
    // No from: the component's domain.
    irc.send("<message to='juliet@localhost/r'><body>from the gateway</body></message>")
        .await;
    let m = wait_for(&mut j, |e| e.name == "message").await;
    assert_eq!(m.get_attr("from"), Some("irc.localhost"));
    // Component -> component.
    irc.send(
        "<message from='bot@irc.localhost' to='inbox@mail.localhost'><body>fwd</body></message>",
    )
    .await;
    let m = mail.recv_named("message").await;
    assert_eq!(m.get_attr("from"), Some("bot@irc.localhost"));
    // IQs to the host and to an account's bare JID are answered by the server.
    irc.send("<iq type='get' id='d1' from='irc.localhost' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    let r = irc.recv_named("iq").await;
    assert_eq!(
        r.get_attr("type"),
        Some("result"),
        "{}",
        r.to_xml(NS_ACCEPT)
    );
    assert_eq!(r.get_attr("id"), Some("d1"));
    irc.send("<iq type='get' id='v1' to='juliet@localhost'><vCard xmlns='vcard-temp'/></iq>")
        .await;
    let r = irc.recv_named("iq").await;
    assert_eq!(r.get_attr("id"), Some("v1"));
    assert_ne!(r.get_attr("type"), Some("error"), "{}", r.to_xml(NS_ACCEPT));
    // Listed in the host's disco#items.
    let items = "http://jabber.org/protocol/disco#items";
    let r = iq(
        &mut j,
        "i1",
        &format!("<iq type='get' id='ID' to='localhost'><query xmlns='{items}'/></iq>"),
    )
    .await;
    let listed: Vec<_> = r
        .get_child("query", items)
        .unwrap()
        .elements()
        .filter_map(|i| i.get_attr("jid"))
        .collect();
    assert!(listed.contains(&"irc.localhost") && listed.contains(&"mail.localhost"));

    // A stanza without `to` gets bad-request; the stream stays.
    irc.send("<message id='nt'><body>nowhere</body></message>")
        .await;
    let e = irc.recv_named("message").await;
    assert_eq!(e.get_attr("type"), Some("error"));
    let error = e
        .get_child("error", NS_ACCEPT)
        .expect("an error in the stream's namespace");
    assert!(error
        .get_child("bad-request", "urn:ietf:params:xml:ns:xmpp-stanzas")
        .is_some());
    // Sending from another domain ends the stream with invalid-from.
    irc.send("<message from='romeo@localhost' to='juliet@localhost'><body>spoof</body></message>")
        .await;
    irc.expect_stream_error("invalid-from").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn away_components_bounce_and_come_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    with_components(&["irc.localhost"])(&mut cfg);
    let mut s = TestServer::start_in(dir, cfg.clone());
    s.add_user("juliet", "pw");
    let mut j = s.online("juliet", "r").await;

    // Never connected: bounced and logged.
    j.send("<message to='#a@irc.localhost' type='chat' id='m1'><body>x</body></message>")
        .await;
    let e = wait_for(&mut j, |e| e.name == "message").await;
    assert_eq!(e.get_attr("id"), Some("m1"));
    assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));
    let logged = delivery_error(&s, "#a@irc.localhost").await;
    assert!(
        logged.reason.starts_with("service-unavailable"),
        "{logged:?}"
    );

    // Connected, then gone, then back: the domain is free again at once.
    let addr = port_of(&s);
    let c = Comp::connect(addr, "irc.localhost", SECRET).await;
    drop(c);
    let mut back = loop {
        let mut c = Comp::open(addr, "irc.localhost").await;
        c.handshake(SECRET).await;
        let e = c.recv().await;
        if e.name == "handshake" {
            break c;
        }
        // The old stream's end may not have been seen yet.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    j.send("<message to='#a@irc.localhost' type='chat' id='m2'><body>y</body></message>")
        .await;
    assert_eq!(back.recv_named("message").await.get_attr("id"), Some("m2"));

    // A restart: the component is told, and connects to the new server like the first time.
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    s.stop();
    back.expect_stream_error("system-shutdown").await;
    drop(j);
    let s = TestServer::start_in(dir, cfg);
    let mut c = Comp::connect(port_of(&s), "irc.localhost", SECRET).await;
    let mut j = s.online("juliet", "r").await;
    j.send("<message to='#a@irc.localhost' type='chat' id='m3'><body>z</body></message>")
        .await;
    assert_eq!(c.recv_named("message").await.get_attr("id"), Some("m3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_stanzas_end_the_component_stream() {
    let s = TestServer::start_with(|c| {
        with_components(&["irc.localhost"])(c);
        c.limits.max_stanza_bytes = 4096;
    });
    let mut c = Comp::connect(port_of(&s), "irc.localhost", SECRET).await;
    let big = "x".repeat(8192);
    c.send(&format!(
        "<message to='juliet@localhost'><body>{big}</body></message>"
    ))
    .await;
    c.expect_stream_error("policy-violation").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_users_reach_a_component_over_federation() {
    let (pa, pb) = (free_port(), free_port());
    let route_a = format!("127.0.0.1:{pa}");
    let a = start_domain(
        "a.test",
        pa,
        &[("b.test", format!("127.0.0.1:{pb}"))],
        None,
        &|c| with_components(&["irc.a.test"])(c),
    );
    let b = start_domain(
        "b.test",
        pb,
        &[("a.test", route_a.clone()), ("irc.a.test", route_a)],
        None,
        &|_| {},
    );
    let mut irc = Comp::connect(port_of(&a), "irc.a.test", SECRET).await;
    add_user(&b, "b.test", "bob");
    let mut bob = login(&b, "b.test", "bob").await;
    bob.send("<message to='#chan@irc.a.test' type='chat' id='f1'><body>from afar</body></message>")
        .await;
    let m = irc.recv_named("message").await;
    assert_eq!(m.get_attr("from"), Some("bob@b.test/r"));
    assert_eq!(m.get_attr("id"), Some("f1"));
    irc.send("<message from='#chan@irc.a.test/alice' to='bob@b.test/r' type='chat'><body>welcome</body></message>").await;
    let m = wait_for(&mut bob, |e| e.name == "message").await;
    assert_eq!(m.get_attr("from"), Some("#chan@irc.a.test/alice"));
    assert_eq!(body(&m).as_deref(), Some("welcome"));
}
