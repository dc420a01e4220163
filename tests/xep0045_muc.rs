//! Group chat (XEP-0045) end to end over TLS, the occupant's side: creating rooms (instant,
//! reserved and locked, cancelled), entering with and without the MUC `<x/>`, status codes,
//! talking, history, subjects, nick changes, private messages, invitations (mediated and
//! XEP-0249 direct), disco, XEP-0410 self-pings, XEP-0421 occupant ids, corrections and
//! retractions, several sessions under one nick, IQs to occupants, and a user of another
//! server in a local room. Moderation, affiliations, persistence and limits are in
//! `xep0045_muc_admin.rs`.

mod common;
use common::fed::*;
use common::muc::*;
use common::*;

const ROOM: &str = "tea@conference.localhost";
const SERVICE: &str = "conference.localhost";

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
    for u in ["alice", "bob", "carol"] {
        s.add_user(u, "pw");
    }
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    create_instant(&mut a, ROOM, "Alice").await;
    enter(&mut b, &format!("{ROOM}/Bob"), "").await;
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
    for u in ["alice", "bob", "carol"] {
        s.add_user(u, "pw");
    }
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    create_instant(&mut a, ROOM, "Alice").await;
    enter(&mut b, &format!("{ROOM}/Bob"), "").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mediated_and_direct_invitations() {
    let s = TestServer::start();
    for u in ["alice", "bob", "carol", "dave"] {
        s.add_user(u, "pw");
    }
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    let mut c = s.online("carol", "r").await;
    let mut d = s.online("dave", "r").await;
    create_room(
        &mut a,
        ROOM,
        "Alice",
        &[("passwordprotectedroom", "1"), ("roomsecret", "oolong")],
    )
    .await;
    // Alice invites Carol through the room.
    a.send(&format!("<message to='{ROOM}' id='inv'><x xmlns='{MUC_USER}'><invite to='carol@localhost'><reason>Join us</reason></invite></x></message>")).await;
    let m = wait_for(&mut c, |e| e.name == "message").await;
    assert_eq!(m.get_attr("from"), Some(ROOM));
    let x = m.get_child("x", MUC_USER).unwrap();
    let invite = x.get_child("invite", MUC_USER).unwrap();
    assert_eq!(invite.get_attr("from"), Some("alice@localhost"));
    assert_eq!(
        invite.get_child("reason", MUC_USER).unwrap().text_content(),
        "Join us"
    );
    // The password comes with it, and the XEP-0249 form for clients that prefer it.
    assert_eq!(
        x.get_child("password", MUC_USER).unwrap().text_content(),
        "oolong"
    );
    assert_eq!(
        m.get_child("x", "jabber:x:conference")
            .and_then(|x| x.get_attr("jid")),
        Some(ROOM)
    );
    // Carol declines: Alice hears it from the room.
    c.send(&format!("<message to='{ROOM}'><x xmlns='{MUC_USER}'><decline to='alice@localhost'><reason>Busy</reason></decline></x></message>")).await;
    let m = wait_for(&mut a, |e| {
        e.name == "message"
            && e.get_child("x", MUC_USER)
                .is_some_and(|x| x.get_child("decline", MUC_USER).is_some())
    })
    .await;
    assert_eq!(m.get_attr("from"), Some(ROOM));
    let decline = m
        .get_child("x", MUC_USER)
        .unwrap()
        .get_child("decline", MUC_USER)
        .unwrap();
    assert_eq!(decline.get_attr("from"), Some("carol@localhost"));
    assert_eq!(
        decline
            .get_child("reason", MUC_USER)
            .unwrap()
            .text_content(),
        "Busy"
    );
    // Only occupants invite.
    b.send(&format!("<message to='{ROOM}' id='inv2'><x xmlns='{MUC_USER}'><invite to='carol@localhost'/></x></message>")).await;
    let e = wait_for(&mut b, |e| e.get_attr("id") == Some("inv2")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("not-acceptable"));

    // A members-only room: an invitation by an admin makes the invitee a member; a member
    // may invite only when the room allows it.
    let club = "club@conference.localhost";
    create_room(&mut a, club, "Alice", &[("membersonly", "1")]).await;
    a.send(&format!(
        "<message to='{club}'><x xmlns='{MUC_USER}'><invite to='bob@localhost'/></x></message>"
    ))
    .await;
    wait_for(&mut b, |e| {
        e.name == "message" && e.get_attr("from") == Some(club)
    })
    .await;
    let members = list_jids(&admin_list(&mut a, club, "affiliation", "member").await);
    assert_eq!(members, ["bob@localhost"]);
    enter(&mut b, &format!("{club}/Bob"), "").await;
    b.send(&format!("<message to='{club}' id='inv3'><x xmlns='{MUC_USER}'><invite to='dave@localhost'/></x></message>")).await;
    let e = wait_for(&mut b, |e| e.get_attr("id") == Some("inv3")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("forbidden"));
    assert_result(&configure(&mut a, club, &[("allowinvites", "1")]).await);
    b.send(&format!("<message to='{club}' id='inv4'><x xmlns='{MUC_USER}'><invite to='dave@localhost'/></x></message>")).await;
    // Dave's membership is announced to those who see real JIDs (the owner).
    let m = wait_for(&mut a, |e| {
        e.name == "message"
            && e.get_attr("from") == Some(club)
            && e.get_child("x", MUC_USER)
                .and_then(|x| x.get_child("item", MUC_USER))
                .is_some_and(|i| i.get_attr("jid") == Some("dave@localhost"))
    })
    .await;
    assert_eq!(item_attr(&m, "affiliation"), Some("member"));
    enter(&mut d, &format!("{club}/Dave"), "").await;

    // A direct invitation (XEP-0249) goes from user to user, unchanged.
    let direct =
        format!("<x xmlns='jabber:x:conference' jid='{ROOM}' password='oolong' reason='Tea?'/>");
    a.send(&format!(
        "<message to='carol@localhost' id='dinv'>{direct}</message>"
    ))
    .await;
    let m = wait_for(&mut c, |e| e.get_attr("id") == Some("dinv")).await;
    assert_eq!(m.get_attr("from"), Some("alice@localhost/r"));
    let x = m.get_child("x", "jabber:x:conference").unwrap();
    assert_eq!(x.get_attr("jid"), Some(ROOM));
    assert_eq!(x.get_attr("password"), Some("oolong"));
    assert_eq!(x.get_attr("reason"), Some("Tea?"));
    assert!(m.get_child("x", MUC_USER).is_none());
    enter(
        &mut c,
        &format!("{ROOM}/Carol"),
        "<password>oolong</password>",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disco_of_rooms_the_service_and_the_host() {
    let s = TestServer::start();
    s.add_user("alice", "pw");
    s.add_user("bob", "pw");
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    create_room(
        &mut a,
        ROOM,
        "Alice",
        &[("roomname", "Tea House"), ("roomdesc", "All about tea")],
    )
    .await;
    let hidden = "den@conference.localhost";
    create_room(
        &mut a,
        hidden,
        "Alice",
        &[
            ("publicroom", "0"),
            ("membersonly", "1"),
            ("whois", "anyone"),
        ],
    )
    .await;
    let locked = "new@conference.localhost";
    enter(&mut a, &format!("{locked}/Alice"), "").await;

    // The room: identity, features, muc#roominfo.
    let r = iq(
        &mut b,
        ROOM,
        "get",
        &format!("<query xmlns='{DISCO_INFO}'/>"),
    )
    .await;
    assert_result(&r);
    let q = r.get_child("query", DISCO_INFO).unwrap();
    let id = q.get_child("identity", DISCO_INFO).unwrap();
    assert_eq!(id.get_attr("category"), Some("conference"));
    assert_eq!(id.get_attr("type"), Some("text"));
    assert_eq!(id.get_attr("name"), Some("Tea House"));
    let features: Vec<&str> = q
        .elements()
        .filter(|f| f.name == "feature")
        .filter_map(|f| f.get_attr("var"))
        .collect();
    for f in [
        MUC,
        OCCUPANT_ID,
        "http://jabber.org/protocol/muc#self-ping-optimization",
        "muc_public",
        "muc_temporary",
        "muc_open",
        "muc_unmoderated",
        "muc_semianonymous",
        "muc_unsecured",
    ] {
        assert!(features.contains(&f), "{f} in {features:?}");
    }
    let info = form_values(q.get_child("x", DATA).unwrap());
    assert_eq!(
        value(&info, "FORM_TYPE"),
        Some("http://jabber.org/protocol/muc#roominfo")
    );
    assert_eq!(
        value(&info, "muc#roominfo_description"),
        Some("All about tea")
    );
    assert_eq!(value(&info, "muc#roominfo_occupants"), Some("1"));
    let r = iq(
        &mut b,
        hidden,
        "get",
        &format!("<query xmlns='{DISCO_INFO}'/>"),
    )
    .await;
    let xml = r.to_xml("jabber:client");
    for f in ["muc_hidden", "muc_membersonly", "muc_nonanonymous"] {
        assert!(xml.contains(f), "{f}: {xml}");
    }

    // The service: identity and the MUC feature; public rooms only in its items.
    let r = iq(
        &mut b,
        SERVICE,
        "get",
        &format!("<query xmlns='{DISCO_INFO}'/>"),
    )
    .await;
    let q = r.get_child("query", DISCO_INFO).unwrap();
    let id = q.get_child("identity", DISCO_INFO).unwrap();
    assert_eq!(id.get_attr("category"), Some("conference"));
    assert!(q.elements().any(|f| f.get_attr("var") == Some(MUC)));
    let r = iq(
        &mut b,
        SERVICE,
        "get",
        &format!("<query xmlns='{DISCO_ITEMS}'/>"),
    )
    .await;
    let items: Vec<(String, Option<String>)> = r
        .get_child("query", DISCO_ITEMS)
        .unwrap()
        .elements()
        .map(|i| {
            (
                i.get_attr("jid").unwrap().to_owned(),
                i.get_attr("name").map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(items, [(ROOM.to_owned(), Some("Tea House".to_owned()))]);
    // A room made hidden leaves the list; made public, it is back.
    assert_result(&configure(&mut a, ROOM, &[("publicroom", "0")]).await);
    let r = iq(
        &mut b,
        SERVICE,
        "get",
        &format!("<query xmlns='{DISCO_ITEMS}'/>"),
    )
    .await;
    assert!(!r.to_xml("jabber:client").contains(ROOM));
    assert_result(&configure(&mut a, hidden, &[("publicroom", "1")]).await);
    let r = iq(
        &mut b,
        SERVICE,
        "get",
        &format!("<query xmlns='{DISCO_ITEMS}'/>"),
    )
    .await;
    assert!(r.to_xml("jabber:client").contains(hidden));

    // The host lists its group-chat service.
    let r = iq(
        &mut b,
        "localhost",
        "get",
        &format!("<query xmlns='{DISCO_ITEMS}'/>"),
    )
    .await;
    let listed: Vec<&str> = r
        .get_child("query", DISCO_ITEMS)
        .unwrap()
        .elements()
        .filter_map(|i| i.get_attr("jid"))
        .collect();
    assert!(listed.contains(&SERVICE), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_pings_and_occupant_ids() {
    let s = TestServer::start();
    for u in ["alice", "bob", "carol"] {
        s.add_user(u, "pw");
    }
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    let mut c = s.online("carol", "r").await;
    create_instant(&mut a, ROOM, "Alice").await;
    let got = enter(&mut b, &format!("{ROOM}/Bob"), "").await;
    let bob_id = occupant_id(self_presence(&got));
    let alice_id = occupant_id(
        got.iter()
            .find(|e| is_presence(e, &format!("{ROOM}/Alice"), None))
            .unwrap(),
    );
    assert_ne!(bob_id, alice_id, "one id per user");
    // Alice sees the same id for Bob, on his presence and on his messages.
    let p = wait_for(&mut a, |e| is_presence(e, &format!("{ROOM}/Bob"), None)).await;
    assert_eq!(occupant_id(&p), bob_id);
    say(&mut b, ROOM, "m", "hi").await;
    assert_eq!(occupant_id(&groupchat_id(&mut a, "m").await), bob_id);

    // XEP-0410: joined, the room answers the self-ping itself.
    let ping = "<ping xmlns='urn:xmpp:ping'/>";
    let r = iq(&mut b, &format!("{ROOM}/Bob"), "get", ping).await;
    assert_result(&r);
    assert_eq!(r.get_attr("from"), Some(&*format!("{ROOM}/Bob")));
    // Not joined: not-acceptable, whatever nick.
    for nick in ["Carol", "Bob"] {
        let r = iq(&mut c, &format!("{ROOM}/{nick}"), "get", ping).await;
        assert_eq!(
            error_condition(&r).as_deref(),
            Some("not-acceptable"),
            "{nick}"
        );
    }
    // After leaving, neither.
    leave(&mut b, &format!("{ROOM}/Bob")).await;
    let r = iq(&mut b, &format!("{ROOM}/Bob"), "get", ping).await;
    assert_eq!(error_condition(&r).as_deref(), Some("not-acceptable"));

    // The id is stable across a rejoin (under another nick too), and differs per room.
    let got = enter(&mut b, &format!("{ROOM}/Robert"), "").await;
    assert_eq!(occupant_id(self_presence(&got)), bob_id);
    let other = "coffee@conference.localhost";
    create_instant(&mut a, other, "Alice").await;
    let got = enter(&mut b, &format!("{other}/Bob"), "").await;
    assert_ne!(occupant_id(self_presence(&got)), bob_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrections_and_retractions_pass_through() {
    let s = TestServer::start();
    s.add_user("alice", "pw");
    s.add_user("bob", "pw");
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    create_instant(&mut a, ROOM, "Alice").await;
    enter(&mut b, &format!("{ROOM}/Bob"), "").await;
    say(&mut b, ROOM, "orig", "helo").await;
    groupchat_id(&mut a, "orig").await;
    // XEP-0308: a correction.
    b.send(&format!("<message to='{ROOM}' type='groupchat' id='fix'><body>hello</body><replace xmlns='urn:xmpp:message-correct:0' id='orig'/></message>")).await;
    let m = groupchat_id(&mut a, "fix").await;
    assert_eq!(body(&m).as_deref(), Some("hello"));
    assert_eq!(
        m.get_child("replace", "urn:xmpp:message-correct:0")
            .and_then(|r| r.get_attr("id")),
        Some("orig")
    );
    assert_eq!(m.get_attr("from"), Some(&*format!("{ROOM}/Bob")));
    // XEP-0424: a retraction, with its fallback body.
    b.send(&format!("<message to='{ROOM}' type='groupchat' id='gone'><retract xmlns='urn:xmpp:message-retract:1' id='orig'/><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:message-retract:1'/><body>retracted</body><store xmlns='urn:xmpp:hints'/></message>")).await;
    for c in [&mut a, &mut b] {
        let m = groupchat_id(c, "gone").await;
        assert_eq!(
            m.get_child("retract", "urn:xmpp:message-retract:1")
                .and_then(|r| r.get_attr("id")),
            Some("orig")
        );
        assert!(m.get_child("fallback", "urn:xmpp:fallback:0").is_some());
        assert!(m.get_child("store", "urn:xmpp:hints").is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_sessions_under_one_nick() {
    let s = TestServer::start();
    s.add_user("alice", "pw");
    s.add_user("bob", "pw");
    let mut phone = s.online("alice", "phone").await;
    let mut laptop = s.online("alice", "laptop").await;
    let mut b = s.online("bob", "r").await;
    create_instant(&mut b, ROOM, "Bob").await;
    let got = enter(&mut phone, &format!("{ROOM}/Alice"), "").await;
    let phone_id = occupant_id(self_presence(&got));
    // The second session joins the same occupant: the room's state, its own presence and
    // the subject, with the same occupant id and role.
    let got = enter(&mut laptop, &format!("{ROOM}/Alice"), "").await;
    assert!(got
        .iter()
        .any(|e| is_presence(e, &format!("{ROOM}/Bob"), None)));
    let own = self_presence(&got);
    assert_eq!(occupant_id(own), phone_id);
    assert_eq!(item_attr(own, "role"), Some("participant"));
    // Bob saw one occupant enter: one presence from Alice before the marker.
    say(&mut b, ROOM, "marker1", "marker").await;
    let seen = until_groupchat(&mut b, "marker1").await;
    let alices = seen
        .iter()
        .filter(|e| e.name == "presence" && e.get_attr("from") == Some(&*format!("{ROOM}/Alice")))
        .count();
    assert_eq!(alices, 1, "{seen:?}");
    // Both sessions get group messages and private messages, and Alice's own reflections.
    for c in [&mut phone, &mut laptop] {
        groupchat_id(c, "marker1").await;
    }
    b.send(&format!(
        "<message to='{ROOM}/Alice' type='chat' id='pm'><body>psst</body></message>"
    ))
    .await;
    for c in [&mut phone, &mut laptop] {
        let m = wait_for(c, |e| e.get_attr("id") == Some("pm")).await;
        assert_eq!(m.get_attr("from"), Some(&*format!("{ROOM}/Bob")));
    }
    say(&mut phone, ROOM, "from-phone", "sent from the phone").await;
    for c in [&mut laptop, &mut b] {
        let m = groupchat_id(c, "from-phone").await;
        assert_eq!(m.get_attr("from"), Some(&*format!("{ROOM}/Alice")));
    }
    // The phone leaves: it hears so, the occupant stays (Bob sees nothing), the laptop
    // still gets messages.
    let gone = leave(&mut phone, &format!("{ROOM}/Alice")).await;
    assert_eq!(gone.get_attr("from"), Some(&*format!("{ROOM}/Alice")));
    say(&mut b, ROOM, "marker2", "still there?").await;
    let seen = until_groupchat(&mut b, "marker2").await;
    assert!(
        !seen.iter().any(|e| e.name == "presence"),
        "no presence for Bob: {seen:?}"
    );
    groupchat_id(&mut laptop, "marker2").await;
    // The laptop leaves too: now Alice is gone.
    leave(&mut laptop, &format!("{ROOM}/Alice")).await;
    wait_for(&mut b, |e| {
        is_presence(e, &format!("{ROOM}/Alice"), Some("unavailable"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iqs_to_occupants_are_forwarded_and_answered() {
    let s = TestServer::start();
    for u in ["alice", "bob", "carol"] {
        s.add_user(u, "pw");
    }
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    create_instant(&mut a, ROOM, "Alice").await;
    enter(&mut b, &format!("{ROOM}/Bob"), "").await;
    // A software-version request reaches Bob's session from Alice's room JID, with an id of
    // the room's; Bob's answer comes back to Alice from Bob's room JID, with her id.
    a.send(&format!(
        "<iq type='get' id='ver' to='{ROOM}/Bob'><query xmlns='jabber:iq:version'/></iq>"
    ))
    .await;
    let q = wait_for(&mut b, |e| e.name == "iq").await;
    assert_eq!(q.get_attr("from"), Some(&*format!("{ROOM}/Alice")));
    assert_eq!(q.get_attr("to"), Some("bob@localhost/r"));
    let id = q.get_attr("id").unwrap().to_owned();
    assert_ne!(id, "ver");
    // An answer from someone else with that id is not taken for Bob's.
    let mut c = s.online("carol", "r").await;
    enter(&mut c, &format!("{ROOM}/Carol"), "").await;
    c.send(&format!(
        "<iq type='result' id='{id}' to='{ROOM}/Alice'><query xmlns='jabber:iq:version'><name>fake</name></query></iq>"
    ))
    .await;
    b.send(&format!(
        "<iq type='result' id='{id}' to='{ROOM}/Alice'><query xmlns='jabber:iq:version'><name>bobclient</name></query></iq>"
    ))
    .await;
    let r = wait_for(&mut a, |e| e.get_attr("id") == Some("ver")).await;
    assert_result(&r);
    assert_eq!(r.get_attr("from"), Some(&*format!("{ROOM}/Bob")));
    assert!(r.to_xml("jabber:client").contains("bobclient"), "{r:?}");
    // vCards (avatars) are answered by the occupant's server for the account.
    b.send("<iq type='set' id='vs'><vCard xmlns='vcard-temp'><FN>Bob B.</FN></vCard></iq>")
        .await;
    assert_result(&wait_for(&mut b, |e| e.get_attr("id") == Some("vs")).await);
    let r = iq(
        &mut a,
        &format!("{ROOM}/Bob"),
        "get",
        "<vCard xmlns='vcard-temp'/>",
    )
    .await;
    assert_result(&r);
    assert_eq!(r.get_attr("from"), Some(&*format!("{ROOM}/Bob")));
    assert!(r.to_xml("jabber:client").contains("Bob B."), "{r:?}");
    // Someone not in the room, or a nick nobody has: errors.
    let mut d = s.online("carol", "other").await;
    let r = iq(
        &mut d,
        &format!("{ROOM}/Bob"),
        "get",
        "<query xmlns='jabber:iq:version'/>",
    )
    .await;
    assert_eq!(error_condition(&r).as_deref(), Some("not-acceptable"));
    let r = iq(
        &mut a,
        &format!("{ROOM}/Nobody"),
        "get",
        "<query xmlns='jabber:iq:version'/>",
    )
    .await;
    assert_eq!(error_condition(&r).as_deref(), Some("item-not-found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_of_another_server_joins_a_local_room() {
    use common::s2s::{free_port, start_domain};
    let (pa, pb) = (free_port(), free_port());
    let a_route = format!("127.0.0.1:{pa}");
    let a = start_domain(
        "a.test",
        pa,
        &[("b.test", format!("127.0.0.1:{pb}"))],
        None,
        &|_| {},
    );
    let b = start_domain(
        "b.test",
        pb,
        &[("a.test", a_route.clone()), ("conference.a.test", a_route)],
        None,
        &|_| {},
    );
    add_user(&a, "a.test", "alice");
    add_user(&b, "b.test", "bob");
    let mut alice = login(&a, "a.test", "alice").await;
    let mut bob = login(&b, "b.test", "bob").await;
    let room = "lounge@conference.a.test";
    create_instant(&mut alice, room, "Alice").await;

    // Bob enters from b.test: Alice's presence, his own, the subject.
    let got = enter(&mut bob, &format!("{room}/Bob"), "").await;
    assert!(is_subject(got.last().unwrap()), "{got:?}");
    assert!(got
        .iter()
        .any(|e| is_presence(e, &format!("{room}/Alice"), None)));
    let p = wait_for(&mut alice, |e| is_presence(e, &format!("{room}/Bob"), None)).await;
    assert_eq!(item_attr(&p, "jid"), Some("bob@b.test/r"));
    // Remote users may not create rooms here (muc.create_rooms = "local").
    let refused = enter_refused(&mut bob, "new@conference.a.test/Bob", "").await;
    assert_eq!(refused, "not-allowed");
    // Talk both ways, a private message, and leaving.
    say(&mut bob, room, "from-b", "hello from b.test").await;
    for c in [&mut alice, &mut bob] {
        let m = groupchat_id(c, "from-b").await;
        assert_eq!(m.get_attr("from"), Some(&*format!("{room}/Bob")));
    }
    say(&mut alice, room, "from-a", "welcome").await;
    groupchat_id(&mut bob, "from-a").await;
    alice
        .send(&format!(
            "<message to='{room}/Bob' type='chat' id='pm'><body>psst</body></message>"
        ))
        .await;
    let m = wait_for(&mut bob, |e| e.get_attr("id") == Some("pm")).await;
    assert_eq!(m.get_attr("from"), Some(&*format!("{room}/Alice")));
    let r = iq(
        &mut bob,
        &format!("{room}/Bob"),
        "get",
        "<ping xmlns='urn:xmpp:ping'/>",
    )
    .await;
    assert_result(&r);
    leave(&mut bob, &format!("{room}/Bob")).await;
    wait_for(&mut alice, |e| {
        is_presence(e, &format!("{room}/Bob"), Some("unavailable"))
    })
    .await;
}
