//! Group chat (XEP-0045) end to end, what goes with it: mediated invitations and declines and
//! XEP-0249 direct invitations, disco of rooms, the service and the host, XEP-0410 self-pings,
//! XEP-0421 occupant ids, XEP-0308 corrections and XEP-0424 retractions, several sessions
//! under one nick (§7.2.12), IQs to occupants, and users of another server in local rooms and
//! local users in rooms over there.

mod common;
use common::fed::*;
use common::muc::*;
use common::*;

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
    // The phone is back, and its presence (updated last) is the one the room shows; when it
    // leaves, the others see the laptop's again (with its JID, for Bob the moderator).
    enter(&mut phone, &format!("{ROOM}/Alice"), "").await;
    phone
        .send(&format!(
            "<presence to='{ROOM}/Alice'><show>dnd</show></presence>"
        ))
        .await;
    let p = wait_for(&mut b, |e| is_presence(e, &format!("{ROOM}/Alice"), None)).await;
    assert_eq!(item_attr(&p, "jid"), Some("alice@localhost/phone"));
    assert!(p.get_child("show", "jabber:client").is_some());
    leave(&mut phone, &format!("{ROOM}/Alice")).await;
    let p = wait_for(&mut b, |e| e.name == "presence").await;
    assert!(is_presence(&p, &format!("{ROOM}/Alice"), None), "{p:?}");
    assert_eq!(item_attr(&p, "jid"), Some("alice@localhost/laptop"));
    assert!(p.get_child("show", "jabber:client").is_none());
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
    let (mut a, mut b) = alice_and_bob_in_room(&s, &["carol"]).await;
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
async fn users_of_another_server_in_local_rooms_and_back() {
    use common::s2s::start_domain;
    let (pa, pb) = (free_port(), free_port());
    let a_route = format!("127.0.0.1:{pa}");
    let b_route = format!("127.0.0.1:{pb}");
    let a = start_domain(
        "a.test",
        pa,
        &[("b.test", b_route.clone()), ("conference.b.test", b_route)],
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

    // And the other way: Alice joins a room on b.test.
    let garden = "garden@conference.b.test";
    create_instant(&mut bob, garden, "Bob").await;
    let got = enter(&mut alice, &format!("{garden}/Alice"), "").await;
    assert!(is_subject(got.last().unwrap()), "{got:?}");
    say(&mut alice, garden, "g1", "hello from a.test").await;
    let m = groupchat_id(&mut bob, "g1").await;
    assert_eq!(m.get_attr("from"), Some(&*format!("{garden}/Alice")));
    groupchat_id(&mut alice, "g1").await;
}
