//! XEP-0198 stream management: enable, acks both ways, and nothing lost when a connection
//! drops with messages unacknowledged (they are routed again: here, to the offline spool).

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_and_unacknowledged_messages_survive_a_drop() {
    let s = TestServer::start();
    for u in ["juliet", "romeo"] {
        s.add_user(u, "pw");
    }
    let mut r = s.online("romeo", "orchard").await;
    let mut j = Client::starttls(s.starttls, "localhost").await;
    j.auth_scram("SCRAM-SHA-256", "juliet", "pw").await.unwrap();
    assert!(j.features.get_child("sm", "urn:xmpp:sm:3").is_some());
    // Not before binding.
    j.send("<enable xmlns='urn:xmpp:sm:3'/>").await;
    assert_eq!(j.recv().await.name, "failed");
    j.bind(Some("phone")).await;
    j.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await;
    let en = j.recv().await;
    assert_eq!(en.name, "enabled");
    assert_eq!(en.get_attr("resume"), None, "resumption is not offered");
    // Client -> server acks: three handled stanzas.
    j.send("<presence/>").await;
    j.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    j.send("<iq type='get' id='p2' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    j.send("<r xmlns='urn:xmpp:sm:3'/>").await;
    let mut got_a = None;
    while got_a.is_none() {
        let e = j.recv().await;
        if e.name == "a" {
            got_a = e.get_attr("h").map(str::to_owned);
        }
    }
    assert_eq!(got_a.as_deref(), Some("3"));
    // Server -> client: the server asks for an ack every 10 stanzas; the client acks all.
    // (So far the client got: own presence, two ping results = 3 stanzas.)
    for i in 0..7 {
        r.send(&format!(
            "<message to='juliet@localhost/phone' type='chat' id='m{i}'><body>{i}</body></message>"
        ))
        .await;
    }
    let mut seen = 0;
    loop {
        let e = j.recv().await;
        if e.name == "message" {
            seen += 1;
        }
        if e.name == "r" {
            break;
        }
    }
    assert_eq!(seen, 7);
    j.send("<a xmlns='urn:xmpp:sm:3' h='10'/>").await;
    // Two more messages, never acknowledged; then the connection drops.
    for i in 7..9 {
        r.send(&format!(
            "<message to='juliet@localhost/phone' type='chat' id='m{i}'><body>{i}</body></message>"
        ))
        .await;
    }
    for _ in 0..2 {
        assert_eq!(j.recv().await.name, "message");
    }
    drop(j);
    // They were routed again: juliet has no other resource, so they wait offline.
    for _ in 0..200 {
        if s.shared()
            .store
            .offline
            .usage("localhost", "juliet")
            .unwrap()
            .count
            == 2
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    // (Logged in by hand: the kept messages may arrive before the own presence comes back.)
    let mut j = Client::starttls(s.starttls, "localhost").await;
    j.auth_scram("SCRAM-SHA-256", "juliet", "pw").await.unwrap();
    j.bind(Some("laptop")).await;
    j.send("<presence/>").await;
    let mut ids = Vec::new();
    while ids.len() < 2 {
        let e = j.recv().await;
        if e.name == "message" {
            ids.push(e.get_attr("id").unwrap().to_owned());
        }
    }
    assert_eq!(ids, ["m7", "m8"], "only the unacknowledged ones, once");
    // An ack for more than was sent is a protocol error.
    j.send("<enable xmlns='urn:xmpp:sm:3'/>").await;
    j.send("<a xmlns='urn:xmpp:sm:3' h='99'/>").await;
    loop {
        let e = j.recv().await;
        if e.name == "error" {
            assert!(e
                .get_child("undefined-condition", "urn:ietf:params:xml:ns:xmpp-streams")
                .is_some());
            break;
        }
    }
}
