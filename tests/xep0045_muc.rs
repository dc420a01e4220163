//! Group chat (XEP-0045) end to end over TLS: creating rooms, entering, talking, history,
//! subjects, nick changes, private messages, roles and affiliations, configuration,
//! persistence across a restart and destruction.

mod common;
use common::fed::*;
use common::muc::*;
use common::*;

const ROOM: &str = "tea@conference.localhost";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_enter_talk_and_leave() {
    let s = TestServer::start();
    s.add_user("alice", "pw");
    s.add_user("bob", "pw");
    let mut a = s.online("alice", "home").await;
    let mut b = s.online("bob", "work").await;
    create_instant(&mut a, ROOM, "Alice").await;

    let got = enter(&mut b, &format!("{ROOM}/Bob"), "").await;
    // Alice's presence first, then Bob's own (110), then the (empty) subject.
    let alice = &got[0];
    assert_eq!(alice.get_attr("from"), Some(&*format!("{ROOM}/Alice")));
    let item = alice
        .get_child("x", MUC_USER)
        .unwrap()
        .get_child("item", MUC_USER)
        .unwrap();
    assert_eq!(item.get_attr("affiliation"), Some("owner"));
    assert_eq!(item.get_attr("role"), Some("moderator"));
    // Semi-anonymous: Bob (a participant) does not see Alice's JID.
    assert_eq!(item.get_attr("jid"), None);
    let own = got
        .iter()
        .find(|e| codes(e).contains(&110))
        .expect("self presence");
    assert_eq!(own.get_attr("from"), Some(&*format!("{ROOM}/Bob")));
    assert!(own
        .get_child("occupant-id", "urn:xmpp:occupant-id:0")
        .is_some());
    // Alice (moderator) sees Bob enter, with his real JID.
    let p = wait_for(&mut a, |e| {
        e.name == "presence" && e.get_attr("from") == Some(&*format!("{ROOM}/Bob"))
    })
    .await;
    let item = p
        .get_child("x", MUC_USER)
        .unwrap()
        .get_child("item", MUC_USER)
        .unwrap();
    assert_eq!(item.get_attr("jid"), Some("bob@localhost/work"));

    b.send(&format!("<message to='{ROOM}' type='groupchat' id='m1'><body>hello</body><occupant-id xmlns='urn:xmpp:occupant-id:0' id='forged'/></message>")).await;
    for c in [&mut a, &mut b] {
        let m = groupchat(c).await;
        assert_eq!(m.get_attr("from"), Some(&*format!("{ROOM}/Bob")));
        assert_eq!(m.get_attr("id"), Some("m1"));
        assert_eq!(body(&m).as_deref(), Some("hello"));
        let ids: Vec<_> = m
            .elements()
            .filter(|e| e.name == "occupant-id")
            .map(|e| e.get_attr("id").unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 1);
        assert_ne!(ids[0], "forged");
    }

    // A third user gets the history with a delay.
    s.add_user("carol", "pw");
    let mut c = s.online("carol", "x").await;
    let got = enter(
        &mut c,
        &format!("{ROOM}/Carol"),
        "<history maxstanzas='5'/>",
    )
    .await;
    let h = got
        .iter()
        .find(|e| e.name == "message" && body(e).is_some())
        .expect("history");
    assert!(h.get_child("delay", "urn:xmpp:delay").is_some());

    // Bob leaves: everyone sees it.
    b.send(&format!("<presence to='{ROOM}/Bob' type='unavailable'/>"))
        .await;
    let gone = wait_for(&mut b, |e| {
        e.name == "presence" && e.get_attr("type") == Some("unavailable")
    })
    .await;
    assert!(codes(&gone).contains(&110));
    wait_for(&mut a, |e| {
        e.name == "presence" && e.get_attr("type") == Some("unavailable")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nick_conflict_change_private_message_and_kick() {
    let s = TestServer::start();
    for u in ["alice", "bob", "carol"] {
        s.add_user(u, "pw");
    }
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    let mut c = s.online("carol", "r").await;
    create_instant(&mut a, ROOM, "Alice").await;
    enter(&mut b, &format!("{ROOM}/Bob"), "").await;
    // Carol cannot take Bob's nick.
    let got = enter(&mut c, &format!("{ROOM}/Bob"), "").await;
    assert_eq!(
        error_condition(got.last().unwrap()).as_deref(),
        Some("conflict")
    );
    enter(&mut c, &format!("{ROOM}/Carol"), "").await;

    // Bob becomes Robert: 303 with the new nick, then the new presence.
    b.send(&format!("<presence to='{ROOM}/Robert'/>")).await;
    let p = wait_for(&mut c, |e| e.name == "presence" && codes(e).contains(&303)).await;
    let item = p
        .get_child("x", MUC_USER)
        .unwrap()
        .get_child("item", MUC_USER)
        .unwrap();
    assert_eq!(item.get_attr("nick"), Some("Robert"));
    wait_for(&mut c, |e| {
        e.get_attr("from") == Some(&*format!("{ROOM}/Robert"))
    })
    .await;

    // A private message through the room.
    c.send(&format!(
        "<message to='{ROOM}/Robert' type='chat'><body>psst</body></message>"
    ))
    .await;
    let m = wait_for(&mut b, |e| {
        e.name == "message" && body(e).as_deref() == Some("psst")
    })
    .await;
    assert_eq!(m.get_attr("from"), Some(&*format!("{ROOM}/Carol")));

    // Alice (moderator) kicks Carol.
    a.send(&format!("<iq type='set' id='k' to='{ROOM}'><query xmlns='{MUC_ADMIN}'><item nick='Carol' role='none'><reason>rude</reason></item></query></iq>")).await;
    let r = wait_for(&mut a, |e| e.get_attr("id") == Some("k")).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r:?}");
    let p = wait_for(&mut c, |e| e.name == "presence" && codes(e).contains(&307)).await;
    assert!(codes(&p).contains(&110));
    // Bob (participant) may not kick Alice.
    b.send(&format!("<iq type='set' id='k2' to='{ROOM}'><query xmlns='{MUC_ADMIN}'><item nick='Alice' role='none'/></query></iq>")).await;
    let r = wait_for(&mut b, |e| e.get_attr("id") == Some("k2")).await;
    assert_eq!(error_condition(&r).as_deref(), Some("forbidden"));
}
