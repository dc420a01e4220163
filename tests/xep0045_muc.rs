//! Group chat (XEP-0045) end to end over TLS, the occupant's side: creating rooms (instant,
//! reserved and locked, cancelled), entering with and without the MUC `<x/>`, status codes,
//! talking, presence updates, history, subjects, nick changes, kicks and private messages.
//! Invitations, disco, self-pings, occupant ids, corrections, several sessions under one nick,
//! IQs to occupants and federation are in `xep0045_muc_more.rs`; moderation, affiliations,
//! persistence and limits in `xep0045_muc_admin.rs`.

mod common;
use common::fed::*;
use common::muc::*;
use common::*;

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
    assert_eq!(item_attr(alice, "affiliation"), Some("owner"));
    assert_eq!(item_attr(alice, "role"), Some("moderator"));
    // Semi-anonymous: Bob (a participant) does not see Alice's JID.
    assert_eq!(item_attr(alice, "jid"), None);
    let own = self_presence(&got);
    assert_eq!(own.get_attr("from"), Some(&*format!("{ROOM}/Bob")));
    assert_eq!(codes(own), [110], "no 100 in a semi-anonymous room");
    assert!(own.get_child("occupant-id", OCCUPANT_ID).is_some());
    let subject = got.last().unwrap();
    assert!(is_subject(subject));
    assert_eq!(subject.get_attr("from"), Some(ROOM));
    // Alice (moderator) sees Bob enter, with his real JID.
    let p = wait_for(&mut a, |e| is_presence(e, &format!("{ROOM}/Bob"), None)).await;
    assert_eq!(item_attr(&p, "jid"), Some("bob@localhost/work"));
    assert_eq!(codes(&p), Vec::<u16>::new());

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

    // A message to the room from someone who is not in it is refused.
    s.add_user("carol", "pw");
    let mut c = s.online("carol", "x").await;
    let e = say_and_wait(&mut c, ROOM, "out", "let me in").await;
    assert_eq!(error_condition(&e).as_deref(), Some("not-acceptable"));
    // A normal (not groupchat) message to the room is refused too.
    b.send(&format!(
        "<message to='{ROOM}' id='chat1'><body>hi</body></message>"
    ))
    .await;
    let e = wait_for(&mut b, |e| e.get_attr("id") == Some("chat1")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("bad-request"));

    // A presence update reaches everyone (Bob's own copy with 110); the MUC <x/> with its
    // password stays out of it.
    b.send(&format!("<presence to='{ROOM}/Bob'><show>away</show><status>lunch</status><x xmlns='{MUC}'><password>x</password></x></presence>")).await;
    let p = wait_for(&mut a, |e| is_presence(e, &format!("{ROOM}/Bob"), None)).await;
    assert_eq!(
        p.get_child("show", "jabber:client")
            .map(|s| s.text_content())
            .as_deref(),
        Some("away")
    );
    assert!(p.get_child("x", MUC).is_none());
    let own = wait_for(&mut b, |e| is_presence(e, &format!("{ROOM}/Bob"), None)).await;
    assert_eq!(codes(&own), [110]);
    assert_eq!(
        own.get_child("status", "jabber:client")
            .map(|s| s.text_content())
            .as_deref(),
        Some("lunch")
    );

    // Bob leaves: everyone sees it.
    let gone = leave(&mut b, &format!("{ROOM}/Bob")).await;
    assert_eq!(item_attr(&gone, "role"), Some("none"));
    wait_for(&mut a, |e| {
        is_presence(e, &format!("{ROOM}/Bob"), Some("unavailable"))
    })
    .await;

    // An occupant whose session bounces what the room sends is gone (what its server does
    // for a session that went away): Carol enters, and an error from her leaves her out.
    enter(&mut c, &format!("{ROOM}/Carol"), "").await;
    c.send(&format!(
        "<message to='{ROOM}' type='error' id='gone'><error type='cancel'><recipient-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
    ))
    .await;
    let p = wait_for(&mut a, |e| {
        is_presence(e, &format!("{ROOM}/Carol"), Some("unavailable"))
    })
    .await;
    assert_eq!(codes(&p), Vec::<u16>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entering_without_the_muc_x_makes_an_instant_room() {
    let s = TestServer::start();
    s.add_user("alice", "pw");
    s.add_user("bob", "pw");
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    // An old (groupchat 1.0) client: a bare presence creates an instant room at once.
    let got = enter_with(&mut a, &format!("{ROOM}/Alice"), "").await;
    let own = got.last().unwrap();
    assert_eq!(codes(own), [110, 201], "{got:?}");
    assert_eq!(item_attr(own, "affiliation"), Some("owner"));
    wait_for(&mut a, is_subject).await;
    // Not locked: others enter right away, also without the <x/>.
    let got = enter_with(&mut b, &format!("{ROOM}/Bob"), "").await;
    assert!(is_subject(got.last().unwrap()), "{got:?}");
    assert_eq!(codes(self_presence(&got)), [110]);
    // It is listed (public by default).
    let r = iq(
        &mut b,
        SERVICE,
        "get",
        &format!("<query xmlns='{DISCO_ITEMS}'/>"),
    )
    .await;
    assert!(r.to_xml("jabber:client").contains(ROOM), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_room_is_locked_until_configured() {
    let s = TestServer::start();
    s.add_user("alice", "pw");
    s.add_user("bob", "pw");
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    let got = enter(&mut a, &format!("{ROOM}/Alice"), "").await;
    let own = got.last().unwrap();
    assert_eq!(codes(own), [110, 201]);
    assert_eq!(item_attr(own, "role"), Some("moderator"));
    // No subject while locked; others cannot enter nor see it.
    assert!(!got.iter().any(is_subject));
    assert_eq!(
        enter_refused(&mut b, &format!("{ROOM}/Bob"), "").await,
        "item-not-found"
    );
    let r = iq(
        &mut b,
        ROOM,
        "get",
        &format!("<query xmlns='{DISCO_INFO}'/>"),
    )
    .await;
    assert_eq!(error_condition(&r).as_deref(), Some("item-not-found"));
    let r = iq(
        &mut b,
        SERVICE,
        "get",
        &format!("<query xmlns='{DISCO_ITEMS}'/>"),
    )
    .await;
    assert!(
        !r.to_xml("jabber:client").contains(ROOM),
        "locked: unlisted"
    );

    // The owner gets the form (with the defaults) ...
    let form = config_of(&mut a, ROOM).await;
    assert_eq!(
        value(&form, "FORM_TYPE"),
        Some("http://jabber.org/protocol/muc#roomconfig")
    );
    assert_eq!(value(&form, "muc#roomconfig_persistentroom"), Some("0"));
    assert_eq!(value(&form, "muc#roomconfig_whois"), Some("moderators"));
    // ... and no one else does.
    let r = iq(
        &mut b,
        ROOM,
        "get",
        &format!("<query xmlns='{MUC_OWNER}'/>"),
    )
    .await;
    assert!(r.get_attr("type") == Some("error"), "{r:?}");

    // A bad value is refused with the field named, and the room stays locked.
    let r = configure(&mut a, ROOM, &[("allowpm", "everybody")]).await;
    assert_eq!(error_condition(&r).as_deref(), Some("not-acceptable"));
    assert!(r.to_xml("jabber:client").contains("muc#roomconfig_allowpm"));
    let fields = [
        ("roomname", "Tea House"),
        ("roomdesc", "All about tea"),
        ("lang", "de"),
        ("persistentroom", "1"),
        ("publicroom", "0"),
        ("membersonly", "0"),
        ("moderatedroom", "0"),
        ("whois", "anyone"),
        ("maxusers", "50"),
        ("changesubject", "1"),
        ("allowinvites", "1"),
        ("allowpm", "moderators"),
    ];
    assert_result(&configure(&mut a, ROOM, &fields).await);
    // Unlocked: the subject comes, the values round-trip, Bob may enter.
    wait_for(&mut a, is_subject).await;
    let form = config_of(&mut a, ROOM).await;
    for (var, v) in fields {
        let got = value(&form, &format!("muc#roomconfig_{var}"));
        assert_eq!(got, Some(v), "{var}");
    }
    let got = enter(&mut b, &format!("{ROOM}/Bob"), "").await;
    // Non-anonymous: 100 on entering, and Bob sees Alice's JID.
    assert_eq!(codes(self_presence(&got)), [110, 100]);
    let alice = got
        .iter()
        .find(|e| is_presence(e, &format!("{ROOM}/Alice"), None))
        .unwrap();
    assert_eq!(item_attr(alice, "jid"), Some("alice@localhost/r"));
    // Stored (persistent).
    let rec = s.shared().store.muc.get(ROOM).unwrap().expect("stored");
    assert_eq!(rec.config.name, "Tea House");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_form_destroys_a_new_room() {
    let s = TestServer::start();
    s.add_user("alice", "pw");
    let mut a = s.online("alice", "r").await;
    let got = enter(&mut a, &format!("{ROOM}/Alice"), "").await;
    assert!(codes(got.last().unwrap()).contains(&201));
    let r = iq(
        &mut a,
        ROOM,
        "set",
        &format!("<query xmlns='{MUC_OWNER}'><x xmlns='{DATA}' type='cancel'/></query>"),
    )
    .await;
    assert_result(&r);
    let p = wait_for(&mut a, |e| {
        is_presence(e, &format!("{ROOM}/Alice"), Some("unavailable"))
    })
    .await;
    assert!(p
        .get_child("x", MUC_USER)
        .unwrap()
        .get_child("destroy", MUC_USER)
        .is_some());
    // The room is gone: entering again creates a new one.
    let got = enter(&mut a, &format!("{ROOM}/Alice"), "").await;
    assert_eq!(codes(got.last().unwrap()), [110, 201], "{got:?}");
    // Cancelling the form of a configured room changes nothing.
    assert_result(&configure(&mut a, ROOM, &[]).await);
    wait_for(&mut a, is_subject).await;
    let r = iq(
        &mut a,
        ROOM,
        "set",
        &format!("<query xmlns='{MUC_OWNER}'><x xmlns='{DATA}' type='cancel'/></query>"),
    )
    .await;
    assert_result(&r);
    let m = say_and_wait(&mut a, ROOM, "still", "still here").await;
    assert_eq!(m.get_attr("type"), Some("groupchat"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_changes_are_announced_with_status_codes() {
    let s = TestServer::start();
    let (mut a, mut b) = alice_and_bob_in_room(&s, &["carol"]).await;
    let status_message = |e: &kleiber::xml::Element| {
        e.name == "message" && e.get_attr("from") == Some(ROOM) && !codes(e).is_empty()
    };

    // Now non-anonymous: 104 and 172, to everyone.
    assert_result(&configure(&mut a, ROOM, &[("whois", "anyone")]).await);
    for c in [&mut a, &mut b] {
        let m = wait_for(c, status_message).await;
        assert_eq!(codes(&m), [104, 172]);
        assert_eq!(m.get_attr("type"), Some("groupchat"));
    }
    // Whoever enters now gets 100 and sees real JIDs.
    let mut c = s.online("carol", "r").await;
    let got = enter(&mut c, &format!("{ROOM}/Carol"), "").await;
    assert_eq!(codes(self_presence(&got)), [110, 100]);
    let bob = got
        .iter()
        .find(|e| is_presence(e, &format!("{ROOM}/Bob"), None))
        .unwrap();
    assert_eq!(item_attr(bob, "jid"), Some("bob@localhost/r"));
    // A change that does not touch privacy: 104 alone.
    assert_result(&configure(&mut a, ROOM, &[("roomname", "Tea")]).await);
    let m = wait_for(&mut c, status_message).await;
    assert_eq!(codes(&m), [104]);
    // Semi-anonymous again: 104 and 173.
    assert_result(&configure(&mut a, ROOM, &[("whois", "moderators")]).await);
    let m = wait_for(&mut b, status_message).await;
    assert_eq!(codes(&m), [104]);
    let m = wait_for(&mut b, status_message).await;
    assert_eq!(codes(&m), [104, 173]);
    // Submitting the same configuration announces nothing: the next thing Carol gets after
    // the last announcement is a marker message.
    assert_result(&configure(&mut a, ROOM, &[("whois", "moderators")]).await);
    say(&mut a, ROOM, "marker", "after").await;
    let got = until_groupchat(&mut c, "marker").await;
    let announced: Vec<Vec<u16>> = got
        .iter()
        .filter(|e| status_message(e))
        .map(codes)
        .collect();
    assert_eq!(announced, [vec![104, 173]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_on_entering_with_filters_and_delays() {
    let s = TestServer::start_with(|c| c.muc.history_messages = 3);
    s.add_user("alice", "pw");
    s.add_user("bob", "pw");
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    create_instant(&mut a, ROOM, "Alice").await;
    for i in 1..=5 {
        say_and_wait(&mut a, ROOM, &format!("h{i}"), &format!("message {i}")).await;
    }
    // Messages without a body (chat states) are not kept.
    a.send(&format!("<message to='{ROOM}' type='groupchat' id='cs'><active xmlns='http://jabber.org/protocol/chatstates'/></message>")).await;
    groupchat_id(&mut a, "cs").await;
    let me = format!("{ROOM}/Bob");
    let history = |got: &[kleiber::xml::Element]| -> Vec<String> {
        got.iter()
            .filter(|e| e.name == "message" && body(e).is_some())
            .map(|e| e.get_attr("id").unwrap().to_owned())
            .collect()
    };
    // No filter: everything kept (the last 3), oldest first, with delays, before the subject.
    let got = enter(&mut b, &me, "").await;
    assert_eq!(history(&got), ["h3", "h4", "h5"]);
    for m in got.iter().filter(|e| body(e).is_some()) {
        assert_eq!(m.get_attr("from"), Some(&*format!("{ROOM}/Alice")));
        assert_eq!(m.get_attr("type"), Some("groupchat"));
        let d = m.get_child("delay", DELAY).expect("a delay");
        assert_eq!(d.get_attr("from"), Some(ROOM));
        let stamp = d.get_attr("stamp").unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
            "{stamp}"
        );
        assert!(m.get_child("occupant-id", OCCUPANT_ID).is_some());
    }
    assert!(is_subject(got.last().unwrap()));
    leave(&mut b, &me).await;
    for (filter, want) in [
        ("<history maxstanzas='2'/>", &["h4", "h5"][..]),
        ("<history maxstanzas='0'/>", &[]),
        ("<history maxchars='0'/>", &[]),
        ("<history maxchars='100000'/>", &["h3", "h4", "h5"]),
        ("<history seconds='86400'/>", &["h3", "h4", "h5"]),
        (
            "<history since='2000-01-01T00:00:00Z'/>",
            &["h3", "h4", "h5"],
        ),
        ("<history since='2999-01-01T00:00:00Z'/>", &[]),
        (
            "<history since='2000-01-01T00:00:00Z' maxstanzas='1'/>",
            &["h5"],
        ),
    ] {
        let got = enter(&mut b, &me, filter).await;
        assert_eq!(history(&got), want, "{filter}");
        leave(&mut b, &me).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subjects_who_may_change_them_and_delivery_on_entering() {
    let s = TestServer::start_with(|c| c.muc.max_subject_chars = 20);
    let (mut a, mut b) = alice_and_bob_in_room(&s, &["carol"]).await;
    let set_subject = |id: &str, text: &str| {
        format!(
            "<message to='{ROOM}' type='groupchat' id='{id}'><subject>{text}</subject></message>"
        )
    };
    // A participant may not change it by default.
    b.send(&set_subject("s1", "Bob's topic")).await;
    let e = wait_for(&mut b, |e| e.get_attr("id") == Some("s1")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("forbidden"));
    // A moderator may; everyone gets it from the moderator's room JID.
    a.send(&set_subject("s2", "Tea time")).await;
    for c in [&mut a, &mut b] {
        let m = wait_for(c, is_subject).await;
        assert_eq!(m.get_attr("from"), Some(&*format!("{ROOM}/Alice")));
        assert_eq!(
            m.get_child("subject", "jabber:client")
                .unwrap()
                .text_content(),
            "Tea time"
        );
        assert!(body(&m).is_none());
    }
    // Whoever enters gets it last.
    let mut c = s.online("carol", "r").await;
    let got = enter(&mut c, &format!("{ROOM}/Carol"), "").await;
    let last = got.last().unwrap();
    assert_eq!(last.get_attr("from"), Some(&*format!("{ROOM}/Alice")));
    assert_eq!(
        last.get_child("subject", "jabber:client")
            .unwrap()
            .text_content(),
        "Tea time"
    );
    // With muc#roomconfig_changesubject participants may.
    assert_result(&configure(&mut a, ROOM, &[("changesubject", "1")]).await);
    b.send(&set_subject("s3", "Bob's topic")).await;
    let m = wait_for(&mut c, is_subject).await;
    assert_eq!(m.get_attr("from"), Some(&*format!("{ROOM}/Bob")));
    // Too long (muc.max_subject_chars): refused with the limit in the text.
    b.send(&set_subject("s4", &"x".repeat(21))).await;
    let e = wait_for(&mut b, |e| e.get_attr("id") == Some("s4")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("not-acceptable"));
    assert!(e.to_xml("jabber:client").contains("20"), "{e:?}");
    // Visitors may not, whatever the configuration.
    assert_result(&configure(&mut a, ROOM, &[("moderatedroom", "1")]).await);
    assert_result(&admin_set(&mut a, ROOM, "<item nick='Carol' role='visitor'/>").await);
    c.send(&set_subject("s5", "Carol's topic")).await;
    let e = wait_for(&mut c, |e| e.get_attr("id") == Some("s5")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("forbidden"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nick_conflict_change_private_message_and_kick() {
    let s = TestServer::start_with(|c| c.muc.max_nick_chars = 10);
    for u in ["alice", "bob", "carol"] {
        s.add_user(u, "pw");
    }
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    let mut c = s.online("carol", "r").await;
    // A nick longer than muc.max_nick_chars: refused, and the room it would have created
    // does not exist (not listed; the next one to enter creates it).
    let other = "other@conference.localhost";
    assert_eq!(
        enter_refused(&mut c, &format!("{other}/CarolineTheGreat"), "").await,
        "not-acceptable"
    );
    let r = iq(
        &mut b,
        SERVICE,
        "get",
        &format!("<query xmlns='{DISCO_ITEMS}'/>"),
    )
    .await;
    assert!(!r.to_xml("jabber:client").contains(other), "{r:?}");
    let got = enter(&mut b, &format!("{other}/Bob"), "").await;
    assert_eq!(codes(got.last().unwrap()), [110, 201]);

    create_instant(&mut a, ROOM, "Alice").await;
    enter(&mut b, &format!("{ROOM}/Bob"), "").await;
    // Carol cannot take Bob's nick, nor one longer than muc.max_nick_chars.
    assert_eq!(
        enter_refused(&mut c, &format!("{ROOM}/Bob"), "").await,
        "conflict"
    );
    assert_eq!(
        enter_refused(&mut c, &format!("{ROOM}/CarolineTheGreat"), "").await,
        "not-acceptable"
    );
    enter(&mut c, &format!("{ROOM}/Carol"), "").await;
    // Nor can she change to Bob's.
    c.send(&format!("<presence to='{ROOM}/Bob'/>")).await;
    let e = wait_for(&mut c, |e| e.get_attr("type") == Some("error")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("conflict"));

    // Bob becomes Robert: 303 with the new nick, then the new presence.
    b.send(&format!("<presence to='{ROOM}/Robert'/>")).await;
    let p = wait_for(&mut c, |e| e.name == "presence" && codes(e).contains(&303)).await;
    assert_eq!(p.get_attr("from"), Some(&*format!("{ROOM}/Bob")));
    assert_eq!(p.get_attr("type"), Some("unavailable"));
    assert_eq!(item_attr(&p, "nick"), Some("Robert"));
    wait_for(&mut c, |e| is_presence(e, &format!("{ROOM}/Robert"), None)).await;
    // Bob's own copies carry 110.
    let own = wait_for(&mut b, |e| e.name == "presence" && codes(e).contains(&303)).await;
    assert_eq!(codes(&own), [303, 110]);
    let own = wait_for(&mut b, |e| is_presence(e, &format!("{ROOM}/Robert"), None)).await;
    assert_eq!(codes(&own), [110]);

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
    assert!(m.get_child("x", MUC_USER).is_some());

    // Alice (moderator) kicks Carol: 307 with the actor and the reason.
    a.send(&format!("<iq type='set' id='k' to='{ROOM}'><query xmlns='{MUC_ADMIN}'><item nick='Carol' role='none'><reason>rude</reason></item></query></iq>")).await;
    let r = wait_for(&mut a, |e| e.get_attr("id") == Some("k")).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r:?}");
    let p = wait_for(&mut c, |e| e.name == "presence" && codes(e).contains(&307)).await;
    assert_eq!(codes(&p), [307, 110]);
    let i = item(&p);
    assert_eq!(i.get_attr("role"), Some("none"));
    assert_eq!(
        i.get_child("actor", MUC_USER)
            .and_then(|a| a.get_attr("nick")),
        Some("Alice")
    );
    assert_eq!(
        i.get_child("reason", MUC_USER)
            .map(|r| r.text_content())
            .as_deref(),
        Some("rude")
    );
    let p = wait_for(&mut b, |e| {
        is_presence(e, &format!("{ROOM}/Carol"), Some("unavailable"))
    })
    .await;
    assert_eq!(codes(&p), [307]);
    // Kicked, not banned: Carol may come back.
    enter(&mut c, &format!("{ROOM}/Carol"), "").await;
    // Bob (participant) may not kick Alice.
    b.send(&format!("<iq type='set' id='k2' to='{ROOM}'><query xmlns='{MUC_ADMIN}'><item nick='Alice' role='none'/></query></iq>")).await;
    let r = wait_for(&mut b, |e| e.get_attr("id") == Some("k2")).await;
    assert_eq!(error_condition(&r).as_deref(), Some("forbidden"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_messages_follow_allowpm() {
    let s = TestServer::start();
    for u in ["alice", "bob", "carol", "dave"] {
        s.add_user(u, "pw");
    }
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    let mut c = s.online("carol", "r").await;
    let mut d = s.online("dave", "r").await;
    create_instant(&mut a, ROOM, "Alice").await;
    enter(&mut b, &format!("{ROOM}/Bob"), "").await;
    enter(&mut c, &format!("{ROOM}/Carol"), "").await;
    let pm = |to: &str, id: &str| {
        format!("<message to='{ROOM}/{to}' type='chat' id='{id}'><body>{id}</body></message>")
    };
    // Anyone (the default).
    b.send(&pm("Carol", "p1")).await;
    let m = stanza_id(&mut c, "p1").await;
    assert_eq!(m.get_attr("from"), Some(&*format!("{ROOM}/Bob")));
    assert_eq!(m.get_attr("type"), Some("chat"));
    // To a nick nobody has, and from someone not in the room.
    b.send(&pm("Nobody", "p2")).await;
    let e = stanza_id(&mut b, "p2").await;
    assert_eq!(error_condition(&e).as_deref(), Some("item-not-found"));
    d.send(&pm("Carol", "p3")).await;
    let e = stanza_id(&mut d, "p3").await;
    assert_eq!(error_condition(&e).as_deref(), Some("not-acceptable"));
    // Moderators only.
    assert_result(&configure(&mut a, ROOM, &[("allowpm", "moderators")]).await);
    b.send(&pm("Carol", "p4")).await;
    let e = stanza_id(&mut b, "p4").await;
    assert_eq!(error_condition(&e).as_deref(), Some("forbidden"));
    a.send(&pm("Carol", "p5")).await;
    let m = stanza_id(&mut c, "p5").await;
    assert_eq!(m.get_attr("from"), Some(&*format!("{ROOM}/Alice")));
    // Nobody.
    assert_result(&configure(&mut a, ROOM, &[("allowpm", "none")]).await);
    a.send(&pm("Carol", "p6")).await;
    let e = stanza_id(&mut a, "p6").await;
    assert_eq!(error_condition(&e).as_deref(), Some("forbidden"));
    // Participants: visitors may not.
    assert_result(
        &configure(
            &mut a,
            ROOM,
            &[("allowpm", "participants"), ("moderatedroom", "1")],
        )
        .await,
    );
    assert_result(&admin_set(&mut a, ROOM, "<item nick='Carol' role='visitor'/>").await);
    c.send(&pm("Bob", "p7")).await;
    let e = stanza_id(&mut c, "p7").await;
    assert_eq!(error_condition(&e).as_deref(), Some("forbidden"));
    b.send(&pm("Carol", "p8")).await;
    stanza_id(&mut c, "p8").await;
}

/// An occupant whose connection ends leaves its rooms (its unavailable presence reaches them
/// as directed presence, RFC 6121 §4.6), and one that goes unavailable without leaving does
/// too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn occupants_leave_with_their_connection() {
    let s = TestServer::start();
    for u in ["alice", "bob", "carol"] {
        s.add_user(u, "pw");
    }
    let mut a = s.online("alice", "r").await;
    create_instant(&mut a, ROOM, "Alice").await;
    let mut b = s.online("bob", "r").await;
    enter(&mut b, &format!("{ROOM}/Bob"), "").await;
    b.send("</stream:stream>").await;
    drop(b);
    let p = wait_for(&mut a, |e| {
        is_presence(e, &format!("{ROOM}/Bob"), Some("unavailable"))
    })
    .await;
    assert!(!codes(&p).contains(&110));
    // XEP-0421: every presence from an occupant's JID carries its occupant id.
    assert!(p
        .get_child("occupant-id", "urn:xmpp:occupant-id:0")
        .is_some());
    let mut c = s.online("carol", "r").await;
    enter(&mut c, &format!("{ROOM}/Carol"), "").await;
    c.send("<presence type='unavailable'/>").await;
    wait_for(&mut a, |e| {
        is_presence(e, &format!("{ROOM}/Carol"), Some("unavailable"))
    })
    .await;
}

/// When the server stops, every occupant hears that it was removed because the service is
/// shutting down (332), before its stream closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn occupants_hear_of_a_shutdown() {
    let mut s = TestServer::start();
    s.add_user("alice", "pw");
    s.add_user("bob", "pw");
    let mut a = s.online("alice", "r").await;
    create_instant(&mut a, ROOM, "Alice").await;
    let mut b = s.online("bob", "r").await;
    enter(&mut b, &format!("{ROOM}/Bob"), "").await;
    let server = s.server.take().expect("running");
    let stopping = std::thread::spawn(move || server.stop());
    for c in [&mut a, &mut b] {
        let p = wait_for(c, |e| e.name == "presence" && codes(e).contains(&332)).await;
        assert_eq!(p.get_attr("type"), Some("unavailable"));
        assert!(codes(&p).contains(&110));
    }
    stopping.join().unwrap();
}
