//! XEP-0198 stream management: enable, acks both ways, nothing lost when a connection drops
//! with messages unacknowledged (routed again: here, to the offline spool), and resumption:
//! a dropped session resumed with everything unacknowledged sent again exactly once, one not
//! resumed in time ending with its messages in the spool, and resumption refused for unknown
//! ids and other users.

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
    j.send("<enable xmlns='urn:xmpp:sm:3'/>").await;
    let en = j.recv().await;
    assert_eq!(en.name, "enabled");
    assert_eq!(en.get_attr("resume"), None, "resumption was not asked for");
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

/// Log in as `user` without binding (for `<resume/>`).
async fn authenticated(s: &TestServer, user: &str) -> Client {
    let mut c = Client::starttls(s.starttls, "localhost").await;
    c.auth_scram("SCRAM-SHA-256", user, "pw").await.unwrap();
    c
}

/// Bind, available, SM with resumption; returns the resumption id.
async fn resumable(c: &mut Client, resource: &str) -> String {
    c.bind(Some(resource)).await;
    c.send("<presence/>").await;
    assert_eq!(c.recv().await.name, "presence");
    c.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await;
    let en = c.recv().await;
    assert_eq!(en.name, "enabled", "{}", en.to_xml("jabber:client"));
    assert_eq!(en.get_attr("resume"), Some("true"));
    assert!(en.get_attr("max").is_some());
    en.get_attr("id").unwrap().to_owned()
}

/// The ids of the next `n` messages (acks requests skipped).
async fn message_ids(c: &mut Client, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    while ids.len() < n {
        let e = c.recv().await;
        if e.name == "message" {
            ids.push(e.get_attr("id").unwrap().to_owned());
        } else {
            assert_eq!(e.name, "r", "{}", e.to_xml("jabber:client"));
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_session_gets_everything_unacknowledged_exactly_once() {
    let s = TestServer::start();
    for u in ["juliet", "romeo"] {
        s.add_user(u, "pw");
    }
    let mut r = s.online("romeo", "orchard").await;
    let mut j = authenticated(&s, "juliet").await;
    let id = resumable(&mut j, "phone").await;
    let send = |i: usize| {
        format!(
            "<message to='juliet@localhost/phone' type='chat' id='m{i}'><body>{i}</body></message>"
        )
    };
    for i in 0..5 {
        r.send(&send(i)).await;
    }
    assert_eq!(message_ids(&mut j, 5).await, ["m0", "m1", "m2", "m3", "m4"]);
    // The client handled m0..m2 (and acknowledges them), and one stanza of its own.
    j.send("<a xmlns='urn:xmpp:sm:3' h='3'/>").await;
    j.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(j.recv().await.get_attr("id"), Some("p"));
    // The connection drops: the session waits; messages keep coming meanwhile.
    drop(j);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for i in 5..8 {
        r.send(&send(i)).await;
    }
    r.send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(r.recv().await.get_attr("id"), Some("sync"));
    // Nothing went to the spool: the session is still there.
    assert_eq!(
        s.shared()
            .store
            .offline
            .usage("localhost", "juliet")
            .unwrap()
            .count,
        0
    );
    let mut j = authenticated(&s, "juliet").await;
    // Since SM was enabled the client got m0..m4 and the ping result: it has handled 6.
    j.send(&format!(
        "<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='6'/>"
    ))
    .await;
    let resumed = j.recv().await;
    assert_eq!(
        resumed.name,
        "resumed",
        "{}",
        resumed.to_xml("jabber:client")
    );
    assert_eq!(resumed.get_attr("previd"), Some(id.as_str()));
    // Since SM was enabled the server handled one stanza of ours (the ping; acks do not
    // count).
    assert_eq!(resumed.get_attr("h"), Some("1"));
    assert_eq!(message_ids(&mut j, 3).await, ["m5", "m6", "m7"]);
    // The resumed session works as before, with its old full JID.
    r.send(&send(8)).await;
    assert_eq!(message_ids(&mut j, 1).await, ["m8"]);
    j.send("<message to='romeo@localhost' type='chat' id='back'><body>x</body></message>")
        .await;
    loop {
        let e = r.recv().await;
        if e.name == "message" {
            assert_eq!(e.get_attr("from"), Some("juliet@localhost/phone"));
            break;
        }
    }
    j.send("<r xmlns='urn:xmpp:sm:3'/>").await;
    loop {
        let e = j.recv().await;
        if e.name == "a" {
            // The ping and the message.
            assert_eq!(e.get_attr("h"), Some("2"));
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_not_resumed_in_time_sends_its_messages_to_the_spool() {
    let s = TestServer::start_with(|c| c.limits.sm_resume_timeout_secs = 1);
    for u in ["juliet", "romeo"] {
        s.add_user(u, "pw");
    }
    let mut r = s.online("romeo", "orchard").await;
    let mut j = authenticated(&s, "juliet").await;
    let id = resumable(&mut j, "phone").await;
    r.send("<message to='juliet@localhost/phone' type='chat' id='u1'><body>1</body></message>")
        .await;
    assert_eq!(message_ids(&mut j, 1).await, ["u1"]);
    drop(j);
    r.send("<message to='juliet@localhost' type='chat' id='u2'><body>2</body></message>")
        .await;
    // Both wait in the session until it ends, then in the spool.
    assert_eq!(
        wait_offline(&s, "localhost", "juliet", 2).await,
        2,
        "both unacknowledged messages kept offline"
    );
    // Too late to resume.
    let mut j = authenticated(&s, "juliet").await;
    j.send(&format!(
        "<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='0'/>"
    ))
    .await;
    assert_eq!(j.recv().await.name, "failed");
    j.bind(Some("phone")).await;
    j.send("<presence/>").await;
    let mut ids = Vec::new();
    while ids.len() < 2 {
        let e = j.recv().await;
        if e.name == "message" {
            ids.push(e.get_attr("id").unwrap().to_owned());
        }
    }
    assert_eq!(ids, ["u1", "u2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumption_is_refused_for_unknown_ids_and_other_users() {
    let s = TestServer::start();
    for u in ["juliet", "romeo"] {
        s.add_user(u, "pw");
    }
    let mut j = authenticated(&s, "juliet").await;
    let id = resumable(&mut j, "phone").await;
    drop(j);
    // Romeo cannot take over juliet's session, even knowing its id.
    let mut r = authenticated(&s, "romeo").await;
    r.send(&format!(
        "<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='0'/>"
    ))
    .await;
    assert_eq!(r.recv().await.name, "failed");
    // ... and after the failure the stream goes on as a normal one.
    assert_eq!(r.bind(Some("x")).await, "romeo@localhost/x");
    let mut j = authenticated(&s, "juliet").await;
    j.send("<resume xmlns='urn:xmpp:sm:3' previd='nonsense' h='0'/>")
        .await;
    assert_eq!(j.recv().await.name, "failed");
    // The right id still works for juliet.
    let mut j = authenticated(&s, "juliet").await;
    j.send(&format!(
        "<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='0'/>"
    ))
    .await;
    let e = j.recv().await;
    assert_eq!(e.name, "resumed", "{}", e.to_xml("jabber:client"));
}
