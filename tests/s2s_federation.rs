//! Federation (RFC 6120 server-to-server, XEP-0220 dialback, XEP-0178 SASL EXTERNAL) between
//! two real kleiber instances on loopback, `a.test` and `b.test`, with static routes:
//! subscriptions, presence, messages online and offline, vCard and IQ routing, bounces for
//! unreachable domains, and a hostile peer (unauthenticated stanzas, spoofed `from`, dialback
//! for a domain it does not hold, `to` for a host not served).

mod common;
use common::fed::*;
use common::s2s::*;
use common::*;

use kleiber::actors::messages::S2sLinks;

use kleiber::xml::Element;

const CLIENT: &str = "jabber:client";

async fn links(s: &TestServer) -> Vec<(String, bool, String)> {
    let addr = s.server.as_ref().unwrap().s2s.clone().unwrap();
    addr.send(S2sLinks)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.remote, l.outgoing, l.method))
        .collect()
}

/// The whole conversation between alice@a.test and bob@b.test.
async fn full_conversation(a: &TestServer, b: &TestServer) {
    add_user(a, "a.test", "alice");
    add_user(b, "b.test", "bob");
    let mut alice = login(a, "a.test", "alice").await;
    let mut bob = login(b, "b.test", "bob").await;
    conversation(&mut alice, "alice@a.test", &mut bob, "bob@b.test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_with_valid_certificates_uses_sasl_external() {
    let ca = TestCa::new();
    let (a, b) = pair(Some(&ca));
    full_conversation(&a, &b).await;
    let la = links(&a).await;
    assert!(
        la.contains(&("b.test".into(), true, "SASL EXTERNAL".into())),
        "{la:?}"
    );
    assert!(
        la.contains(&("b.test".into(), false, "SASL EXTERNAL".into())),
        "{la:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_with_self_signed_certificates_uses_dialback() {
    let (a, b) = pair(None);
    full_conversation(&a, &b).await;
    let lb = links(&b).await;
    assert!(
        lb.contains(&("a.test".into(), true, "dialback".into())),
        "{lb:?}"
    );
    assert!(
        lb.contains(&("a.test".into(), false, "dialback".into())),
        "{lb:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_message_and_vcard_across_servers() {
    let (a, b) = pair(None);
    add_user(&a, "a.test", "alice");
    add_user(&b, "b.test", "bob");
    let mut alice = login(&a, "a.test", "alice").await;

    // Bob is offline: the message waits on b.test and comes with its delay at login.
    alice
        .send("<message to='bob@b.test' type='chat'><body>while you were away</body></message>")
        .await;
    assert_eq!(
        wait_offline(&b, "b.test", "bob", 1).await,
        1,
        "the message was stored on b.test"
    );
    let mut bob = Client::starttls(b.starttls, "b.test").await;
    bob.auth_scram("SCRAM-SHA-256", "bob", "pw").await.unwrap();
    bob.bind(Some("r")).await;
    bob.send("<presence/>").await;
    let m = wait_for(&mut bob, |e| e.name == "message").await;
    assert_eq!(body(&m).as_deref(), Some("while you were away"));
    assert_eq!(m.get_attr("from"), Some("alice@a.test/r"));
    assert!(m.get_child("delay", "urn:xmpp:delay").is_some());

    // vCards are fetched from the other server.
    bob.send("<iq type='set' id='vs'><vCard xmlns='vcard-temp'><FN>Bob B.</FN></vCard></iq>")
        .await;
    let r = wait_for(&mut bob, |e| e.get_attr("id") == Some("vs")).await;
    assert_eq!(r.get_attr("type"), Some("result"));
    alice
        .send("<iq to='bob@b.test' type='get' id='vg'><vCard xmlns='vcard-temp'/></iq>")
        .await;
    let r = wait_for(&mut alice, |e| e.get_attr("id") == Some("vg")).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{}", r.to_xml(CLIENT));
    assert_eq!(r.get_attr("from"), Some("bob@b.test"));
    let fn_ = r
        .get_child("vCard", "vcard-temp")
        .and_then(|v| v.get_child("FN", "vcard-temp"))
        .map(Element::text_content);
    assert_eq!(fn_.as_deref(), Some("Bob B."));

    // A user that does not exist over there: service-unavailable, from the other server.
    alice
        .send("<message to='nobody@b.test' type='chat' id='nb'><body>x</body></message>")
        .await;
    let e = wait_for(&mut alice, |e| e.get_attr("id") == Some("nb")).await;
    assert_eq!(e.get_attr("type"), Some("error"));
    assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));
}

async fn logged(s: &TestServer, to: &str) -> String {
    delivery_error(s, to).await.reason
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_servers_bounce_and_are_logged() {
    // c.test: nothing listens; d.test: accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let a = start_domain(
        "a.test",
        free_port(),
        &[
            ("c.test", format!("127.0.0.1:{}", free_port())),
            ("d.test", format!("127.0.0.1:{silent_port}")),
        ],
        None,
        &|c| c.s2s.connect_timeout_secs = 1,
    );
    add_user(&a, "a.test", "alice");
    let mut alice = login(&a, "a.test", "alice").await;
    alice
        .send("<message to='x@c.test' type='chat' id='c1'><body>1</body></message>")
        .await;
    alice
        .send("<iq to='c.test' type='get' id='c2'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    for id in ["c1", "c2"] {
        let e = wait_for(&mut alice, |e| e.get_attr("id") == Some(id)).await;
        assert_eq!(e.get_attr("type"), Some("error"));
        assert_eq!(
            error_condition(&e).as_deref(),
            Some("remote-server-not-found")
        );
    }
    assert!(logged(&a, "x@c.test")
        .await
        .starts_with("remote-server-not-found"));

    alice
        .send("<message to='y@d.test' type='chat' id='d1'><body>2</body></message>")
        .await;
    let e = wait_for(&mut alice, |e| e.get_attr("id") == Some("d1")).await;
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("remote-server-timeout")
    );
    let reason = logged(&a, "y@d.test").await;
    assert!(reason.starts_with("remote-server-timeout"), "{reason}");
    // Neither the body nor an address is in the log.
    for e in a.shared().store.delivery_errors.since(0, 100).unwrap() {
        assert!(!e.reason.contains("127.0.0.1"), "{}", e.reason);
    }
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stanza_before_authentication_is_refused() {
    let (_a, b) = pair(None);
    let mut p = Peer::connect(b.s2s.unwrap(), "a.test", "b.test", None).await;
    assert!(p
        .features
        .get_child("dialback", "urn:xmpp:features:dialback")
        .is_some());
    // Without a valid certificate there is no SASL EXTERNAL on offer.
    assert!(p
        .features
        .get_child("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl")
        .is_none());
    p.send("<message from='alice@a.test/r' to='bob@b.test'><body>x</body></message>")
        .await;
    p.expect_stream_error("not-authorized").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialback_for_a_domain_the_peer_does_not_hold_is_invalid() {
    let (_a, b) = pair(None);
    let mut p = Peer::connect(b.s2s.unwrap(), "a.test", "b.test", None).await;
    // We are not a.test's server: the real one denies the key when b.test asks it.
    p.send("<db:result from='a.test' to='b.test'>0123456789abcdef</db:result>")
        .await;
    let r = p.recv().await;
    assert!(
        r.name == "result" && r.ns == "jabber:server:dialback",
        "{}",
        r.to_xml("jabber:server")
    );
    assert_eq!(r.get_attr("type"), Some("invalid"));
    assert_eq!(r.get_attr("from"), Some("b.test"));
    assert_eq!(r.get_attr("to"), Some("a.test"));
    // ... and stanzas from a.test are still refused on this stream.
    p.send("<message from='alice@a.test/r' to='bob@b.test'><body>x</body></message>")
        .await;
    p.expect_stream_error("not-authorized").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_from_and_foreign_to_close_the_stream() {
    let ca = TestCa::new();
    let (_a, b) = pair(Some(&ca));
    // evil.test holds a valid certificate for itself, and authenticates with it.
    let (c, k) = ca.issue("evil.test");
    let connect = || Peer::connect(b.s2s.unwrap(), "evil.test", "b.test", Some((&c, &k)));
    let mut p = connect().await;
    assert!(p
        .features
        .get_child("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl")
        .is_some());
    p.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
        .await;
    assert_eq!(p.recv().await.name, "success");
    p.reader.reset();
    p.open("evil.test", "b.test").await;
    // Claiming to speak for a.test is refused.
    p.send("<message from='alice@a.test/r' to='bob@b.test'><body>x</body></message>")
        .await;
    p.expect_stream_error("invalid-from").await;

    let mut p = connect().await;
    // SASL EXTERNAL for a domain the certificate does not name fails.
    p.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>YS50ZXN0</auth>")
        .await;
    assert_eq!(p.recv().await.name, "failure");
    // Dialback with the valid certificate (XEP-0344) authenticates evil.test at once.
    p.send("<db:result from='evil.test' to='b.test'>k</db:result>")
        .await;
    let r = p.recv().await;
    assert_eq!(r.get_attr("type"), Some("valid"));
    // A stanza for a host not served here.
    p.send(
        "<message from='mallory@evil.test/r' to='someone@elsewhere.test'><body>x</body></message>",
    )
    .await;
    p.expect_stream_error("host-unknown").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialback_verify_answers_only_for_our_own_keys() {
    let (a, _b) = pair(None);
    let mut p = Peer::connect(a.s2s.unwrap(), "b.test", "a.test", None).await;
    let secret = a.shared().store.dialback_secret().unwrap();
    let good = kleiber::s2s::dialback::key(&secret, "b.test", "a.test", "S1");
    p.send(&format!(
        "<db:verify from='b.test' to='a.test' id='S1'>{good}</db:verify>"
    ))
    .await;
    let r = p.recv().await;
    assert_eq!(r.get_attr("type"), Some("valid"));
    assert_eq!(r.get_attr("id"), Some("S1"));
    p.send("<db:verify from='b.test' to='a.test' id='S2'>00ff</db:verify>")
        .await;
    assert_eq!(p.recv().await.get_attr("type"), Some("invalid"));
    p.send(&format!(
        "<db:verify from='b.test' to='nothere.test' id='S1'>{good}</db:verify>"
    ))
    .await;
    assert_eq!(p.recv().await.get_attr("type"), Some("error"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_links_close_when_idle_and_reopen() {
    // b.test takes servers on direct TLS (XEP-0368); a.test routes there with tls://.
    let (pa, pb_direct) = (free_port(), free_port());
    let idle = |c: &mut kleiber::config::Config| c.s2s.idle_timeout_secs = 1;
    let a = start_domain(
        "a.test",
        pa,
        &[("b.test", format!("tls://127.0.0.1:{pb_direct}"))],
        None,
        &idle,
    );
    let b = start_domain(
        "b.test",
        free_port(),
        &[("a.test", format!("127.0.0.1:{pa}"))],
        None,
        &move |c| {
            idle(c);
            c.listen.s2s_direct_tls = vec![format!("127.0.0.1:{pb_direct}").parse().unwrap()];
        },
    );
    add_user(&a, "a.test", "alice");
    add_user(&b, "b.test", "bob");
    let mut alice = login(&a, "a.test", "alice").await;
    let mut bob = login(&b, "b.test", "bob").await;
    for round in ["first", "second"] {
        alice
            .send(&format!(
                "<message to='bob@b.test/r' type='chat'><body>{round}</body></message>"
            ))
            .await;
        let m = wait_for(&mut bob, |e| e.name == "message").await;
        assert_eq!(body(&m).as_deref(), Some(round));
        assert!(links(&a)
            .await
            .iter()
            .any(|l| l.0 == "b.test" && l.1 && l.2 == "dialback"));
        // Idle for a second: both ends close the link ...
        let mut closed = false;
        for _ in 0..200 {
            if links(&a).await.is_empty() && links(&b).await.is_empty() {
                closed = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(closed, "idle links closed: {:?}", links(&a).await);
        // ... and the next message opens a new one.
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_valid_certificates_refuses_dialback() {
    // b.test accepts only peers with valid certificates; a.test's is self-signed.
    let (pa, pb) = (free_port(), free_port());
    let a = start_domain(
        "a.test",
        pa,
        &[("b.test", format!("127.0.0.1:{pb}"))],
        None,
        &|_| {},
    );
    let _b = start_domain(
        "b.test",
        pb,
        &[("a.test", format!("127.0.0.1:{pa}"))],
        None,
        &|c| c.s2s.require_valid_certificates = true,
    );
    add_user(&a, "a.test", "alice");
    let mut alice = login(&a, "a.test", "alice").await;
    alice
        .send("<message to='bob@b.test' type='chat' id='x'><body>x</body></message>")
        .await;
    let e = wait_for(&mut alice, |e| e.get_attr("id") == Some("x")).await;
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("remote-server-not-found")
    );
    assert!(logged(&a, "bob@b.test")
        .await
        .contains("refused our dialback key"));
}

/// A DNS server on loopback (UDP) answering SRV queries from `table`: (name, priority, port,
/// target); other queries get an empty answer.
async fn fake_dns(table: Vec<(String, u16, u16, &'static str)>) -> std::net::SocketAddr {
    use hickory_resolver::proto::op::Message;
    use hickory_resolver::proto::rr::rdata::SRV;
    use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::response(q.metadata.id, q.metadata.op_code);
            r.metadata.recursion_desired = q.metadata.recursion_desired;
            r.metadata.recursion_available = true;
            r.metadata.authoritative = true;
            r.add_queries(q.queries.clone());
            for query in &q.queries {
                if query.query_type() != RecordType::SRV {
                    continue;
                }
                let asked = query.name().to_ascii().to_ascii_lowercase();
                for (name, prio, port, target) in &table {
                    if asked.trim_end_matches('.') == name.trim_end_matches('.') {
                        let srv = SRV::new(*prio, 0, *port, Name::from_ascii(target).unwrap());
                        r.add_answer(Record::from_rdata(
                            query.name().clone(),
                            60,
                            RData::SRV(srv),
                        ));
                    }
                }
            }
            let _ = sock.send_to(&r.to_vec().unwrap(), peer).await;
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_are_found_through_srv_records() {
    // No static routes: both servers ask a DNS server for each other's SRV records. b.test's
    // preferred record (direct TLS, priority 0) points at a dead port, so its second one
    // (STARTTLS, priority 10) is used.
    let (pa, pb) = (free_port(), free_port());
    let dead = free_port();
    let dns = fake_dns(vec![
        ("_xmpp-server._tcp.a.test.".into(), 5, pa, "localhost."),
        ("_xmpps-server._tcp.b.test.".into(), 0, dead, "localhost."),
        ("_xmpp-server._tcp.b.test.".into(), 10, pb, "localhost."),
    ])
    .await;
    let with_dns = move |c: &mut kleiber::config::Config| {
        c.s2s.dns_servers = vec![dns];
        // The SRV targets are on loopback, which is refused unless allowed (issue 14.2).
        c.s2s.allow_private_addresses = true;
    };
    let a = start_domain("a.test", pa, &[], None, &with_dns);
    let b = start_domain("b.test", pb, &[], None, &with_dns);
    add_user(&a, "a.test", "alice");
    add_user(&b, "b.test", "bob");
    let mut alice = login(&a, "a.test", "alice").await;
    let mut bob = login(&b, "b.test", "bob").await;
    alice
        .send("<message to='bob@b.test' type='chat'><body>via SRV</body></message>")
        .await;
    let m = wait_for(&mut bob, |e| e.name == "message").await;
    assert_eq!(body(&m).as_deref(), Some("via SRV"));
    bob.send("<message to='alice@a.test/r' type='chat'><body>back</body></message>")
        .await;
    let m = wait_for(&mut alice, |e| e.name == "message").await;
    assert_eq!(body(&m).as_deref(), Some("back"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pep_notifications_and_items_cross_servers() {
    use common::pep::{answer_caps, login_with_caps};
    const DEVICES: &str = "eu.siacs.conversations.axolotl.devicelist";
    let (a, b) = pair(None);
    add_user(&a, "a.test", "alice");
    add_user(&b, "b.test", "bob");
    let mut alice = login(&a, "a.test", "alice").await;
    // Bob's client wants OMEMO device lists (caps asked across the link and checked).
    let mut bob = login_with_caps(b.starttls, "b.test", "bob", "r", &[DEVICES]).await;
    alice
        .send("<presence to='bob@b.test' type='subscribe'/>")
        .await;
    wait_for(&mut bob, |e| {
        presence_from(e, "alice@a.test", Some("subscribe"))
    })
    .await;
    bob.send("<presence to='alice@a.test' type='subscribed'/><presence to='alice@a.test' type='subscribe'/>")
        .await;
    wait_for(&mut alice, |e| {
        presence_from(e, "bob@b.test", Some("subscribe"))
    })
    .await;
    alice
        .send("<presence to='bob@b.test' type='subscribed'/>")
        .await;
    // a.test learns bob's caps from his presence and asks his client what they mean.
    answer_caps(&mut bob, &[DEVICES]).await;
    // Once alice sees bob online, a.test knows him; whether his caps are resolved before or
    // after the publish, he gets the item (as a notification, or as the last item).
    wait_for(&mut alice, |e| presence_from(e, "bob@b.test/r", None)).await;
    alice
        .send("<iq type='set' id='pub'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='eu.siacs.conversations.axolotl.devicelist'><item id='current'><list xmlns='eu.siacs.conversations.axolotl'><device id='1234'/></list></item></publish></pubsub></iq>")
        .await;
    let r = wait_for(&mut alice, |e| e.get_attr("id") == Some("pub")).await;
    assert_eq!(r.get_attr("type"), Some("result"));
    let ev = wait_for(&mut bob, |e| {
        e.name == "message"
            && e.get_child("event", "http://jabber.org/protocol/pubsub#event")
                .is_some()
    })
    .await;
    assert_eq!(ev.get_attr("from"), Some("alice@a.test"));
    assert!(ev.to_xml("jabber:client").contains("<device id='1234'/>"));
    // Bob fetches the list (and would fetch bundles the same way) from alice's server.
    bob.send("<iq type='get' id='get' to='alice@a.test'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='eu.siacs.conversations.axolotl.devicelist'/></pubsub></iq>")
        .await;
    let got = wait_for(&mut bob, |e| e.get_attr("id") == Some("get")).await;
    assert_eq!(
        got.get_attr("type"),
        Some("result"),
        "{}",
        got.to_xml("jabber:client")
    );
    assert!(got.to_xml("jabber:client").contains("<device id='1234'/>"));
}

/// Issue 14.1: a peer holding a certificate valid for the server's own domain (whoever hosts
/// the domain's website has one) cannot authenticate as that domain, with SASL EXTERNAL or
/// with dialback, and cannot send stanzas "from" a local user: the message does not reach the
/// other local user and the private XML storage of the first is not overwritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_our_own_domain_does_not_make_a_peer_a_local_user() {
    let ca = TestCa::new();
    let (_a, b) = pair(Some(&ca));
    add_user(&b, "b.test", "alice");
    add_user(&b, "b.test", "bob");
    let mut alice = login(&b, "b.test", "alice").await;
    alice
        .send("<iq type='set' id='p1'><query xmlns='jabber:iq:private'><n xmlns='x:n'>mine</n></query></iq>")
        .await;
    assert_eq!(alice.recv().await.get_attr("type"), Some("result"));
    let mut bob = login(&b, "b.test", "bob").await;
    let (c, k) = ca.issue("b.test");
    let forged = [
        "<message from='alice@b.test/x' to='bob@b.test' type='chat'><body>forged</body></message>",
        "<iq from='alice@b.test/x' to='alice@b.test' type='set' id='s1'><query xmlns='jabber:iq:private'><n xmlns='x:n'>evil</n></query></iq>",
    ];
    // SASL EXTERNAL is neither offered nor accepted for b.test.
    let mut p = Peer::connect(b.s2s.unwrap(), "b.test", "b.test", Some((&c, &k))).await;
    assert!(p
        .features
        .get_child("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl")
        .is_none());
    p.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
        .await;
    let f = p.recv().await;
    assert_eq!(f.name, "failure");
    assert!(f
        .get_child("not-authorized", "urn:ietf:params:xml:ns:xmpp-sasl")
        .is_some());
    for s in forged {
        p.send(s).await;
    }
    p.expect_stream_error("not-authorized").await;
    // Dialback for b.test, even with the valid certificate (XEP-0344), ends the stream.
    let mut p = Peer::connect(b.s2s.unwrap(), "b.test", "b.test", Some((&c, &k))).await;
    p.send("<db:result from='b.test' to='b.test'>k</db:result>")
        .await;
    p.expect_stream_error("invalid-from").await;
    // A peer authenticated for its own domain cannot send from a local one either.
    let (c, k) = ca.issue("evil.test");
    let mut p = Peer::connect(b.s2s.unwrap(), "evil.test", "b.test", Some((&c, &k))).await;
    p.send("<db:result from='evil.test' to='b.test'>k</db:result>")
        .await;
    assert_eq!(p.recv().await.get_attr("type"), Some("valid"));
    p.send(forged[0]).await;
    p.expect_stream_error("invalid-from").await;

    bob.expect_silence(std::time::Duration::from_millis(300))
        .await;
    alice
        .send(
            "<iq type='get' id='p2'><query xmlns='jabber:iq:private'><n xmlns='x:n'/></query></iq>",
        )
        .await;
    let r = alice.recv_xml().await;
    assert!(r.contains("mine") && !r.contains("evil"), "{r}");
}

/// Issue 14.2: a peer's DNS cannot make the server connect into the local network. SRV records
/// that point at loopback are not followed by default (the message bounces), IP-literal
/// domains are not federated, and dialback for an IP literal is refused without a connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_and_ip_literals_cannot_point_the_server_at_internal_addresses() {
    // Something listening on loopback that would see a connection if one were made.
    let internal = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = internal.local_addr().unwrap().port();
    let dns = fake_dns(vec![(
        "_xmpp-server._tcp.intranet.test.".into(),
        0,
        port,
        "localhost.",
    )])
    .await;
    let pa = free_port();
    let a = start_domain("a.test", pa, &[], None, &move |c| {
        c.s2s.dns_servers = vec![dns];
    });
    add_user(&a, "a.test", "alice");
    let mut alice = login(&a, "a.test", "alice").await;
    for to in ["bob@intranet.test", "bob@127.0.0.1", "bob@[::1]"] {
        alice
            .send(&format!(
                "<message to='{to}' type='chat'><body>x</body></message>"
            ))
            .await;
        let e = wait_for(&mut alice, |e| e.name == "message").await;
        assert_eq!(e.get_attr("type"), Some("error"), "{to}");
        assert_eq!(
            error_condition(&e).as_deref(),
            Some("remote-server-not-found"),
            "{to}"
        );
    }
    let mut p = Peer::connect(a.s2s.unwrap(), "127.0.0.1", "a.test", None).await;
    p.send("<db:result from='127.0.0.1' to='a.test'>k</db:result>")
        .await;
    assert_eq!(p.recv().await.get_attr("type"), Some("error"));
    let accepted =
        tokio::time::timeout(std::time::Duration::from_millis(300), internal.accept()).await;
    assert!(
        accepted.is_err(),
        "the server connected to a loopback address"
    );
}

/// Issue 14.10: a remote server's bare domain is a stranger like its users: its messages count
/// toward `limits.stranger_messages_per_hour` (only this server's own domains are exempt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_domain_is_limited_like_a_stranger() {
    let ca = TestCa::new();
    let pb = free_port();
    let b = start_domain("b.test", pb, &[], Some(&ca), &|c| {
        c.limits.exempt_loopback = false;
        c.limits.stranger_messages_per_hour = 2;
    });
    add_user(&b, "b.test", "juliet");
    let mut j = login(&b, "b.test", "juliet").await;
    let (c, k) = ca.issue("evil.test");
    let mut p = Peer::connect(b.s2s.unwrap(), "evil.test", "b.test", Some((&c, &k))).await;
    p.send("<db:result from='evil.test' to='b.test'>k</db:result>")
        .await;
    assert_eq!(p.recv().await.get_attr("type"), Some("valid"));
    for i in 0..3 {
        p.send(&format!(
            "<message from='evil.test' to='juliet@b.test/r' type='chat' id='d{i}'><body>buy</body></message>"
        ))
        .await;
    }
    for i in 0..2 {
        let e = wait_for(&mut j, |e| e.name == "message").await;
        assert_eq!(e.get_attr("id"), Some(format!("d{i}").as_str()));
    }
    j.expect_silence(std::time::Duration::from_millis(500))
        .await;
}
