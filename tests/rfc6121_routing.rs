//! RFC 6121 §8 routing between local users: every cell of `doc/routing.md`.
//!
//! "Not delivered" is asserted without timing: after the stanza under test, the sender sends a
//! marker message to the same recipient; stanzas from one sender reach one recipient in order,
//! so the recipient's next stanza must be the marker.

mod common;
use common::*;

use kleiber::xml::Element;

const CLIENT: &str = "jabber:client";

async fn marker(from: &mut Client, to: &mut Client, to_jid: &str) {
    from.send(&format!(
        "<message to='{to_jid}' type='chat' id='marker'><body>marker</body></message>"
    ))
    .await;
    let got = to.recv().await;
    assert_eq!(
        got.get_attr("id"),
        Some("marker"),
        "expected the marker, got {}",
        got.to_xml(CLIENT)
    );
}

async fn logged_error(s: &TestServer, to: &str) -> String {
    let e = delivery_error(s, to).await;
    format!("{} -> {}: {}", e.from, e.to, e.reason)
}

fn body(e: &Element) -> String {
    e.get_child("body", CLIENT)
        .map(Element::text_content)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row1_stanzas_to_the_server() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    let mut j = s.online("juliet", "balcony").await;
    // IQs: disco, ping, version, time; unknown namespaces get service-unavailable.
    j.send("<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    let r = j.recv().await;
    assert_eq!(r.get_attr("type"), Some("result"));
    assert_eq!(r.get_attr("from"), Some("localhost"));
    let q = r
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    let id = q
        .get_child("identity", "http://jabber.org/protocol/disco#info")
        .unwrap();
    assert_eq!(
        (id.get_attr("category"), id.get_attr("type")),
        (Some("server"), Some("im"))
    );
    let features: Vec<_> = q.elements().filter_map(|f| f.get_attr("var")).collect();
    for f in [
        "urn:xmpp:ping",
        "jabber:iq:version",
        "urn:xmpp:time",
        "jabber:iq:register",
    ] {
        assert!(features.contains(&f), "{f} in {features:?}");
    }
    j.send("<iq type='get' id='d2' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>").await;
    assert_eq!(
        j.recv_xml().await,
        // The host's services: group chat, file-transfer proxy and upload, on by default.
        "<iq type='result' id='d2' from='localhost' to='juliet@localhost/balcony'><query xmlns='http://jabber.org/protocol/disco#items'><item jid='conference.localhost'/><item jid='proxy.localhost'/><item jid='upload.localhost'/></query></iq>"
    );
    j.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(
        j.recv_xml().await,
        "<iq type='result' id='p1' from='localhost' to='juliet@localhost/balcony'/>"
    );
    j.send("<iq type='get' id='v1'><query xmlns='jabber:iq:version'/></iq>")
        .await;
    let v = j.recv().await;
    assert_eq!(
        v.get_child("query", "jabber:iq:version")
            .unwrap()
            .get_child("name", "jabber:iq:version")
            .unwrap()
            .text_content(),
        "kleiber"
    );
    j.send("<iq type='get' id='t1' to='localhost'><time xmlns='urn:xmpp:time'/></iq>")
        .await;
    assert!(j.recv().await.get_child("time", "urn:xmpp:time").is_some());
    j.send("<iq type='get' id='u1' to='localhost'><query xmlns='urn:example:unknown'/></iq>")
        .await;
    assert_eq!(
        j.recv_xml().await,
        "<iq id='u1' from='localhost' to='juliet@localhost/balcony' type='error'><query xmlns='urn:example:unknown'/>\
         <error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
    );
    // An IQ without id, or with two payloads, is a bad request.
    j.send("<iq type='get' id='x2' to='localhost'><ping xmlns='urn:xmpp:ping'/><ping xmlns='urn:xmpp:ping'/></iq>").await;
    assert_eq!(
        error_condition(&j.recv().await).as_deref(),
        Some("bad-request")
    );
    // A chat message to the server is not served.
    j.send("<message to='localhost' type='chat' id='m1'><body>hi server</body></message>")
        .await;
    let e = j.recv().await;
    assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));
    assert!(
        e.get_child("body", CLIENT).is_none(),
        "bounces carry no content"
    );
    // Presence to the server domain is dropped; the next answer is the ping's.
    j.send("<presence to='localhost'/>").await;
    j.send("<iq type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(j.recv().await.get_attr("id"), Some("p2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row1_broadcast_presence_reaches_own_resources() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    let mut a = s.online("juliet", "a").await;
    let mut b = s.online("juliet", "b").await;
    // a sees b come online.
    let p = a.recv().await;
    assert_eq!(
        (p.name.as_str(), p.get_attr("from")),
        ("presence", Some("juliet@localhost/b"))
    );
    b.send("<presence><show>away</show><priority>5</priority></presence>")
        .await;
    let p = a.recv().await;
    assert_eq!(p.get_attr("from"), Some("juliet@localhost/b"));
    assert_eq!(p.get_child("show", CLIENT).unwrap().text_content(), "away");
    assert_eq!(b.recv().await.get_attr("from"), Some("juliet@localhost/b"));
    b.send("<presence type='unavailable'/>").await;
    let p = a.recv().await;
    assert_eq!(p.get_attr("type"), Some("unavailable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row2_own_bare_jid() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    let mut a = s.online("juliet", "a").await;
    a.send("<iq type='get' id='d' to='juliet@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    let r = a.recv().await;
    let id = r
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .and_then(|q| q.get_child("identity", "http://jabber.org/protocol/disco#info"))
        .unwrap();
    assert_eq!(
        (id.get_attr("category"), id.get_attr("type")),
        (Some("account"), Some("registered"))
    );
    a.send("<iq type='get' id='u' to='juliet@localhost'><query xmlns='urn:example:x'/></iq>")
        .await;
    assert_eq!(
        error_condition(&a.recv().await).as_deref(),
        Some("service-unavailable")
    );
    // A message to one's own bare JID reaches one's (highest priority) resource.
    a.send("<message to='juliet@localhost' type='chat'><body>note to self</body></message>")
        .await;
    let m = a.recv().await;
    assert_eq!(
        (m.get_attr("from"), body(&m).as_str()),
        (Some("juliet@localhost/a"), "note to self")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row3_bare_jid_delivery_by_priority() {
    let s = TestServer::start();
    for u in ["juliet", "romeo"] {
        s.add_user(u, "pw");
    }
    let mut r = s.online("romeo", "orchard").await;
    let mut low = s.online("juliet", "low").await;
    let mut high = s.online("juliet", "high").await;
    let mut neg = s.online("juliet", "neg").await;
    // Presence of each new resource reaches the others; drain it.
    for _ in 0..2 {
        low.recv().await;
    }
    high.recv().await;
    low.send("<presence><priority>1</priority></presence>")
        .await;
    high.send("<presence><priority>10</priority></presence>")
        .await;
    neg.send("<presence><priority>-5</priority></presence>")
        .await;
    // Each resource sees three presence updates (its own included): drain them.
    for c in [&mut low, &mut high, &mut neg] {
        for _ in 0..3 {
            assert_eq!(c.recv().await.name, "presence");
        }
    }
    // chat/normal: highest non-negative priority only; `from` is stamped.
    r.send(
        "<message to='juliet@localhost' type='chat' id='c1'><body>to the highest</body></message>",
    )
    .await;
    let m = high.recv().await;
    assert_eq!(
        m.to_xml(CLIENT),
        "<message to='juliet@localhost' type='chat' id='c1' from='romeo@localhost/orchard'><body>to the highest</body></message>"
    );
    marker(&mut r, &mut low, "juliet@localhost/low").await;
    marker(&mut r, &mut neg, "juliet@localhost/neg").await;
    r.send("<message to='juliet@localhost' id='n1'><body>normal</body></message>")
        .await;
    assert_eq!(high.recv().await.get_attr("id"), Some("n1"));
    // headline: every non-negative resource.
    r.send("<message to='juliet@localhost' type='headline' id='h1'><body>news</body></message>")
        .await;
    assert_eq!(high.recv().await.get_attr("id"), Some("h1"));
    assert_eq!(low.recv().await.get_attr("id"), Some("h1"));
    marker(&mut r, &mut neg, "juliet@localhost/neg").await;
    // groupchat to a user: service-unavailable.
    r.send("<message to='juliet@localhost' type='groupchat' id='g1'><body>x</body></message>")
        .await;
    assert_eq!(
        error_condition(&r.recv().await).as_deref(),
        Some("service-unavailable")
    );
    // error messages to a bare JID are dropped.
    r.send("<message to='juliet@localhost' type='error' id='e1'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>").await;
    marker(&mut r, &mut high, "juliet@localhost/high").await;
    // presence to the bare JID: every available resource.
    r.send("<presence to='juliet@localhost'/>").await;
    for c in [&mut low, &mut high, &mut neg] {
        let p = c.recv().await;
        assert_eq!(
            (p.name.as_str(), p.get_attr("from")),
            ("presence", Some("romeo@localhost/orchard"))
        );
    }
    // IQ to someone else's bare JID: answered by the server with service-unavailable.
    r.send("<iq type='get' id='i1' to='juliet@localhost'><query xmlns='jabber:iq:version'/></iq>")
        .await;
    let e = r.recv().await;
    assert_eq!(
        (e.get_attr("from"), error_condition(&e).as_deref()),
        (Some("juliet@localhost"), Some("service-unavailable"))
    );
    // With every resource at the same priority, all of them get the message.
    low.send("<presence><priority>10</priority></presence>")
        .await;
    for c in [&mut low, &mut high, &mut neg] {
        assert_eq!(c.recv().await.name, "presence");
    }
    r.send("<message to='juliet@localhost' type='chat' id='c2'><body>both</body></message>")
        .await;
    assert_eq!(high.recv().await.get_attr("id"), Some("c2"));
    assert_eq!(low.recv().await.get_attr("id"), Some("c2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row4_full_jid_delivery_and_iq_round_trip() {
    let s = TestServer::start();
    for u in ["juliet", "romeo"] {
        s.add_user(u, "pw");
    }
    let mut r = s.online("romeo", "orchard").await;
    let mut j = s.online("juliet", "balcony").await;
    // Negative priority does not stop full-JID delivery.
    j.send("<presence><priority>-1</priority></presence>").await;
    j.recv().await;
    r.send("<message to='juliet@localhost/balcony' type='chat' id='m'><body>hi</body></message>")
        .await;
    assert_eq!(body(&j.recv().await), "hi");
    r.send("<presence to='juliet@localhost/balcony'><status>directed</status></presence>")
        .await;
    let p = j.recv().await;
    assert_eq!(
        (p.name.as_str(), p.get_attr("from")),
        ("presence", Some("romeo@localhost/orchard"))
    );
    // An IQ between clients is delivered and its result routed back.
    r.send("<iq type='get' id='v' to='juliet@localhost/balcony'><query xmlns='jabber:iq:version'/></iq>").await;
    let iq = j.recv().await;
    assert_eq!(iq.get_attr("from"), Some("romeo@localhost/orchard"));
    j.send("<iq type='result' id='v' to='romeo@localhost/orchard'><query xmlns='jabber:iq:version'><name>test</name></query></iq>").await;
    let res = r.recv().await;
    assert_eq!(
        (res.get_attr("type"), res.get_attr("from")),
        (Some("result"), Some("juliet@localhost/balcony"))
    );
    // A spoof attempt in the payload's from is irrelevant: the stanza from is stamped.
    j.send("<message to='romeo@localhost/orchard'><body>stamped</body></message>")
        .await;
    assert_eq!(
        r.recv().await.get_attr("from"),
        Some("juliet@localhost/balcony")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row5_resource_gone_or_user_offline() {
    let s = TestServer::start();
    for u in ["juliet", "romeo", "nurse"] {
        s.add_user(u, "pw");
    }
    let mut r = s.online("romeo", "orchard").await;
    let mut j = s.online("juliet", "balcony").await;
    // chat to a resource that is gone: delivered as to the bare JID.
    r.send(
        "<message to='juliet@localhost/gone' type='chat' id='c'><body>still you</body></message>",
    )
    .await;
    let m = j.recv().await;
    assert_eq!(
        (m.get_attr("id"), m.get_attr("to")),
        (Some("c"), Some("juliet@localhost/gone"))
    );
    // presence to a gone resource: dropped; IQ: service-unavailable; groupchat: service-unavailable.
    r.send("<presence to='juliet@localhost/gone'/>").await;
    marker(&mut r, &mut j, "juliet@localhost/balcony").await;
    r.send("<iq type='get' id='i' to='juliet@localhost/gone'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(
        error_condition(&r.recv().await).as_deref(),
        Some("service-unavailable")
    );
    r.send("<message to='juliet@localhost/gone' type='groupchat'><body>x</body></message>")
        .await;
    assert_eq!(
        error_condition(&r.recv().await).as_deref(),
        Some("service-unavailable")
    );
    // The nurse exists but is offline: the chat message is kept for her (XEP-0160); a
    // headline is not, a groupchat bounces.
    r.send("<message to='nurse@localhost' type='chat' id='o'><body>secret words</body></message>")
        .await;
    r.send("<message to='nurse@localhost' type='headline' id='h'><body>news</body></message>")
        .await;
    r.send("<message to='nurse@localhost' type='groupchat' id='g'><body>x</body></message>")
        .await;
    let e = r.recv().await;
    assert_eq!(
        (e.get_attr("id"), error_condition(&e).as_deref()),
        (Some("g"), Some("service-unavailable"))
    );
    r.send("<iq type='get' id='i2' to='nurse@localhost/x'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(
        error_condition(&r.recv().await).as_deref(),
        Some("service-unavailable")
    );
    r.send("<presence to='nurse@localhost'/>").await;
    r.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(
        r.recv().await.get_attr("id"),
        Some("p"),
        "presence to an offline user is dropped"
    );
    // Logged-in but not available (no initial presence): bare-JID chat goes offline too...
    let mut nurse = Client::starttls(s.starttls, "localhost").await;
    nurse
        .auth_scram("SCRAM-SHA-256", "nurse", "pw")
        .await
        .unwrap();
    nurse.bind(Some("x")).await;
    r.send("<message to='nurse@localhost' type='chat' id='o2'><body>x</body></message>")
        .await;
    // ... but its full JID is reachable.
    r.send("<message to='nurse@localhost/x' type='chat' id='f'><body>direct</body></message>")
        .await;
    assert_eq!(nurse.recv().await.get_attr("id"), Some("f"));
    // At initial presence the kept messages arrive, oldest first, stamped (XEP-0203).
    nurse.send("<presence/>").await;
    let mut got = Vec::new();
    while got.len() < 2 {
        let e = nurse.recv().await;
        if e.name == "message" {
            let delay = e.get_child("delay", "urn:xmpp:delay").expect("delay");
            assert_eq!(delay.get_attr("from"), Some("localhost"));
            assert!(delay.get_attr("stamp").unwrap().ends_with('Z'));
            assert_eq!(e.get_attr("from"), Some("romeo@localhost/orchard"));
            got.push(e.get_attr("id").unwrap().to_owned());
        }
    }
    assert_eq!(got, ["o", "o2"]);
    assert_eq!(
        s.shared().store.offline.total(),
        0,
        "delivered messages leave the store"
    );
    // No message body is ever written to the delivery-error log.
    for e in s.shared().store.delivery_errors.since(0, 1000).unwrap() {
        assert!(!e.reason.contains("secret"), "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row6_unknown_user() {
    let s = TestServer::start();
    s.add_user("romeo", "pw");
    let mut r = s.online("romeo", "orchard").await;
    r.send("<message to='ghost@localhost' type='chat' id='g'><body>boo</body></message>")
        .await;
    let e = r.recv().await;
    assert_eq!(
        (e.get_attr("id"), error_condition(&e).as_deref()),
        (Some("g"), Some("service-unavailable"))
    );
    assert_eq!(
        logged_error(&s, "ghost@localhost").await,
        "romeo@localhost -> ghost@localhost: service-unavailable"
    );
    r.send("<iq type='get' id='i' to='ghost@localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(
        error_condition(&r.recv().await).as_deref(),
        Some("service-unavailable")
    );
    r.send("<presence to='ghost@localhost' type='subscribe'/>")
        .await;
    r.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(r.recv().await.get_attr("id"), Some("p"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row7_remote_domains_and_malformed_jids() {
    // With federation switched off (with it on, see tests/s2s_federation.rs).
    let s = TestServer::start_with(|c| c.s2s.enabled = false);
    s.add_user("romeo", "pw");
    let mut r = s.online("romeo", "orchard").await;
    r.send("<message to='juliet@capulet.example' type='chat' id='m'><body>x</body></message>")
        .await;
    let e = r.recv().await;
    assert_eq!(
        (e.get_attr("from"), error_condition(&e).as_deref()),
        (
            Some("juliet@capulet.example"),
            Some("remote-server-not-found")
        )
    );
    assert_eq!(
        logged_error(&s, "juliet@capulet.example").await,
        "romeo@localhost -> juliet@capulet.example: remote-server-not-found: federation disabled"
    );
    r.send("<iq type='get' id='i' to='capulet.example'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(
        error_condition(&r.recv().await).as_deref(),
        Some("remote-server-not-found")
    );
    r.send("<presence to='juliet@capulet.example'/>").await;
    // Malformed JIDs: jid-malformed.
    for bad in [
        "a@b@c",
        "@localhost",
        "juliet@",
        &format!("{}@localhost", "x".repeat(1100)),
    ] {
        r.send(&format!(
            "<message to='{bad}' id='j'><body>x</body></message>"
        ))
        .await;
        let e = r.recv().await;
        assert_eq!(
            error_condition(&e).as_deref(),
            Some("jid-malformed"),
            "{bad}: {}",
            e.to_xml(CLIENT)
        );
    }
}

/// RFC 6120 §10.1: stanzas from one sender to one recipient arrive in order, also when some
/// go through the router (bare JID, presence) and others take the direct path to a bound full
/// JID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_order_across_bare_and_full_jid() {
    let s = TestServer::start();
    for u in ["juliet", "romeo"] {
        s.add_user(u, "pw");
    }
    let mut r = s.online("romeo", "orchard").await;
    let mut j = s.online("juliet", "balcony").await;
    let mut batch = String::new();
    for i in 0..300 {
        let to = if i % 3 == 0 {
            "juliet@localhost"
        } else {
            "juliet@localhost/balcony"
        };
        batch.push_str(&format!(
            "<message to='{to}' type='chat' id='o{i}'><body>{i}</body></message>"
        ));
        if i % 50 == 0 {
            batch.push_str("<presence to='juliet@localhost/balcony'/>");
        }
    }
    r.send(&batch).await;
    let mut next = 0;
    while next < 300 {
        let e = j.recv().await;
        if e.name == "presence" {
            continue;
        }
        assert_eq!(
            e.get_attr("id"),
            Some(format!("o{next}").as_str()),
            "out of order"
        );
        next += 1;
    }
}
