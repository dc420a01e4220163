//! RFC 7395 XMPP over WebSocket at `/xmpp-websocket`: framing, login, chat with a TCP client,
//! stream management resumption, errors and limits, against a real server over TLS.

mod common;

use common::ws::{open_frame, parse_standalone, Ws, FRAMING};
use common::{Client, TestServer};

const STREAM_NS: &str = "http://etherx.jabber.org/streams";

#[tokio::test]
async fn open_features_and_login_are_framed() {
    let s = TestServer::start();
    s.add_user("alice", "pw");
    let mut ws = Ws::connect(s.https()).await;
    ws.send(&open_frame()).await;
    let open = ws.next_frame().await.unwrap();
    let open = parse_standalone(&open);
    assert!(open.is("open", FRAMING));
    assert_eq!(open.get_attr("from"), Some("localhost"));
    assert_eq!(open.get_attr("version"), Some("1.0"));
    assert!(open.get_attr("id").is_some_and(|id| !id.is_empty()));
    // Features stand alone: the stream prefix is declared in the frame.
    let raw = ws.next_frame().await.unwrap();
    assert!(
        raw.starts_with(&format!("<stream:features xmlns:stream='{STREAM_NS}'")),
        "{raw}"
    );
    let features = parse_standalone(&raw);
    let mechs: Vec<String> = features
        .get_child("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl")
        .expect("SASL mechanisms")
        .elements()
        .map(|m| m.text_content())
        .collect();
    assert!(mechs.contains(&"PLAIN".to_owned()), "{mechs:?}");
    assert!(mechs.contains(&"SCRAM-SHA-256".to_owned()), "{mechs:?}");
    // The WebSocket's TLS is not visible to the stream: nothing to bind a channel to.
    assert!(!mechs.iter().any(|m| m.ends_with("-PLUS")), "{mechs:?}");
    assert!(features
        .get_child("starttls", "urn:ietf:params:xml:ns:xmpp-tls")
        .is_none());

    assert_eq!(
        ws.auth_plain("alice", "wrong").await,
        Err("not-authorized".into())
    );
    ws.auth_plain("alice", "pw").await.unwrap();
    let features = ws.open().await;
    assert!(features
        .get_child("bind", "urn:ietf:params:xml:ns:xmpp-bind")
        .is_some());
    assert!(features.get_child("sm", "urn:xmpp:sm:3").is_some());
}

#[tokio::test]
async fn chat_between_websocket_and_tcp() {
    let s = TestServer::start();
    s.add_user("alice", "pw");
    s.add_user("bob", "pw");
    let mut ws = Ws::login(s.https(), "alice", "pw", "web").await;
    let mut bob = Client::bound(s.direct, "bob", "pw", "tcp").await;

    ws.send("<message xmlns='jabber:client' to='bob@localhost/tcp' type='chat' id='m1'><body>hallo über WebSocket</body></message>").await;
    let m = bob.recv().await;
    assert_eq!(m.name, "message");
    assert_eq!(m.get_attr("from"), Some("alice@localhost/web"));
    assert_eq!(
        m.get_child("body", "jabber:client").unwrap().text_content(),
        "hallo über WebSocket"
    );

    // A stanza without its own xmlns inherits jabber:client from the (virtual) stream.
    bob.send("<message to='alice@localhost/web' type='chat' id='m2'><body>&lt;zurück&gt;</body></message>").await;
    let raw = ws.next_frame().await.unwrap();
    assert!(raw.starts_with("<message xmlns='jabber:client'"), "{raw}");
    let m = parse_standalone(&raw);
    assert!(m.is("message", "jabber:client"));
    assert_eq!(m.get_attr("from"), Some("bob@localhost/tcp"));
    assert_eq!(
        m.get_child("body", "jabber:client").unwrap().text_content(),
        "<zurück>"
    );

    // Several stanzas at once arrive as several frames.
    for i in 0..20 {
        bob.send(&format!(
            "<message to='alice@localhost/web' id='b{i}'><body>{i}</body></message>"
        ))
        .await;
    }
    for i in 0..20 {
        let m = ws.recv().await;
        assert_eq!(m.get_attr("id"), Some(format!("b{i}").as_str()));
    }
}

#[tokio::test]
async fn close_frame_ends_the_stream() {
    let s = TestServer::start();
    s.add_user("alice", "pw");
    let mut ws = Ws::login(s.https(), "alice", "pw", "web").await;
    ws.send(&format!("<close xmlns='{FRAMING}'/>")).await;
    let close = ws.recv().await;
    assert!(close.is("close", FRAMING), "{}", close.to_xml(""));
    assert_eq!(ws.next_frame().await, None, "the WebSocket closes");
    // The session is gone: a TCP login with the same resource gets no conflict.
    let mut c = Client::bound(s.direct, "alice", "pw", "web").await;
    c.ping("after").await;
}

#[tokio::test]
async fn the_xmpp_subprotocol_is_required() {
    let s = TestServer::start();
    assert_eq!(Ws::try_connect(s.https(), None).await.err(), Some(400));
    assert_eq!(
        Ws::try_connect(s.https(), Some("chat")).await.err(),
        Some(400)
    );
    assert!(Ws::try_connect(s.https(), Some("chat, xmpp")).await.is_ok());
}

#[tokio::test]
async fn malformed_xml_is_a_stream_error_and_others_go_on() {
    let s = TestServer::start();
    s.add_user("alice", "pw");
    s.add_user("bob", "pw");
    let mut bob = Ws::login(s.https(), "bob", "pw", "web").await;
    let mut ws = Ws::login(s.https(), "alice", "pw", "web").await;
    ws.send("<message><body>unclosed</message>").await;
    let err = ws.recv().await;
    assert!(err.is("error", STREAM_NS), "{}", err.to_xml(""));
    assert!(err
        .get_child("not-well-formed", "urn:ietf:params:xml:ns:xmpp-streams")
        .is_some());
    assert!(ws.recv().await.is("close", FRAMING));
    assert_eq!(ws.next_frame().await, None);
    bob.send("<iq xmlns='jabber:client' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let r = bob.recv().await;
    assert_eq!(r.get_attr("type"), Some("result"));
}

#[tokio::test]
async fn an_open_in_the_wrong_namespace_is_refused() {
    let s = TestServer::start();
    let mut ws = Ws::connect(s.https()).await;
    ws.send("<open to='localhost' version='1.0'/>").await;
    // Not a stream header: the server answers with its own header and a stream error.
    let open = ws.recv().await;
    assert!(open.is("open", FRAMING));
    let err = ws.recv().await;
    assert!(err.is("error", STREAM_NS), "{}", err.to_xml(""));
    assert!(ws.recv().await.is("close", FRAMING));
}

#[tokio::test]
async fn stream_management_resumes_on_a_new_websocket() {
    let s = TestServer::start();
    s.add_user("alice", "pw");
    s.add_user("bob", "pw");
    let mut ws = Ws::login(s.https(), "alice", "pw", "web").await;
    ws.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await;
    let enabled = ws.recv().await;
    assert_eq!(enabled.name, "enabled", "{}", enabled.to_xml(""));
    let previd = enabled.get_attr("id").unwrap().to_owned();
    ws.send("<presence xmlns='jabber:client'/>").await;
    let _own = ws.recv().await;
    // The WebSocket drops without <close/>; a message arrives meanwhile.
    drop(ws);
    let mut bob = Client::bound(s.direct, "bob", "pw", "tcp").await;
    bob.send("<message to='alice@localhost/web' id='while-away'><body>x</body></message>")
        .await;
    bob.ping("sent").await;

    let mut ws = Ws::connect(s.https()).await;
    ws.open().await;
    ws.auth_plain("alice", "pw").await.unwrap();
    ws.open().await;
    ws.send(&format!(
        "<resume xmlns='urn:xmpp:sm:3' h='1' previd='{previd}'/>"
    ))
    .await;
    let resumed = ws.recv().await;
    assert_eq!(resumed.name, "resumed", "{}", resumed.to_xml(""));
    // What was not acknowledged comes again, the message that came meanwhile among it.
    let mut got = false;
    for _ in 0..4 {
        let el = ws.recv().await;
        if el.name == "message" && el.get_attr("id") == Some("while-away") {
            got = true;
            break;
        }
    }
    assert!(got, "the message sent while the WebSocket was gone");
}

#[tokio::test]
async fn websockets_per_address_are_limited() {
    let s = TestServer::start_with(|c| {
        c.limits.exempt_loopback = false;
        c.http.max_websockets_per_address = 2;
    });
    let a = Ws::connect(s.https()).await;
    let _b = Ws::connect(s.https()).await;
    assert_eq!(
        Ws::try_connect(s.https(), Some("xmpp")).await.err(),
        Some(429)
    );
    drop(a);
    // The place is given back once the first WebSocket is gone.
    let mut ok = false;
    for _ in 0..100 {
        if Ws::try_connect(s.https(), Some("xmpp")).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ok);
}
