//! Group chat (XEP-0045) end to end, the moderator's and the operator's side: voice and
//! moderated rooms with voice requests, bans, affiliation lists and who may change them,
//! members-only rooms with their member list, passwords, destruction, persistence across a
//! restart, temporary rooms, account deletion, the removal of unused rooms, and the limits.

mod common;
use common::fed::*;
use common::muc::*;
use common::*;

use kleiber::muc::{Affiliation, RoomRecord};

const REQUEST: &str = "http://jabber.org/protocol/muc#request";

fn users(s: &TestServer, names: &[&str]) {
    for u in names {
        s.add_user(u, "pw");
    }
}

/// Wait for the presence of `room/nick` (available) and return its item's role.
async fn role_of(c: &mut Client, room_nick: &str) -> String {
    let p = wait_for(c, |e| is_presence(e, room_nick, None)).await;
    item_attr(&p, "role").unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_in_moderated_rooms_and_voice_requests() {
    let s = TestServer::start();
    users(&s, &["alice", "bob", "carol"]);
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    let mut c = s.online("carol", "r").await;
    create_room(&mut a, ROOM, "Alice", &[("moderatedroom", "1")]).await;
    let bob = format!("{ROOM}/Bob");
    let got = enter(&mut b, &bob, "").await;
    assert_eq!(item_attr(self_presence(&got), "role"), Some("visitor"));
    enter(&mut c, &format!("{ROOM}/Carol"), "").await;
    // A visitor may not talk.
    let e = say_and_wait(&mut b, ROOM, "v1", "may I?").await;
    assert_eq!(error_condition(&e).as_deref(), Some("forbidden"));

    // Bob asks for voice; the moderator gets the request form.
    b.send(&format!("<message to='{ROOM}' id='vr'><x xmlns='{DATA}' type='submit'><field var='FORM_TYPE'><value>{REQUEST}</value></field><field var='muc#role' type='list-single'><value>participant</value></field></x></message>")).await;
    let m = wait_for(&mut a, |e| {
        e.name == "message" && e.get_child("x", DATA).is_some()
    })
    .await;
    assert_eq!(m.get_attr("from"), Some(ROOM));
    let form = form_values(m.get_child("x", DATA).unwrap());
    assert_eq!(value(&form, "FORM_TYPE"), Some(REQUEST));
    assert_eq!(value(&form, "muc#roomnick"), Some("Bob"));
    assert_eq!(value(&form, "muc#jid"), Some("bob@localhost/r"));
    assert_eq!(value(&form, "muc#request_allow"), Some("0"));
    // Carol (visitor too) does not get it: the next thing she sees is a marker.
    say(&mut a, ROOM, "marker", "marker").await;
    let seen = until_groupchat(&mut c, "marker").await;
    assert!(
        !seen.iter().any(|e| e.get_child("x", DATA).is_some()),
        "{seen:?}"
    );
    // Alice approves: Bob becomes a participant and may talk.
    a.send(&format!("<message to='{ROOM}'><x xmlns='{DATA}' type='submit'><field var='FORM_TYPE'><value>{REQUEST}</value></field><field var='muc#role'><value>participant</value></field><field var='muc#jid'><value>bob@localhost/r</value></field><field var='muc#roomnick'><value>Bob</value></field><field var='muc#request_allow'><value>true</value></field></x></message>")).await;
    assert_eq!(role_of(&mut b, &bob).await, "participant");
    assert_eq!(role_of(&mut c, &bob).await, "participant");
    let m = say_and_wait(&mut b, ROOM, "v2", "thanks").await;
    assert_eq!(m.get_attr("type"), Some("groupchat"));
    // A participant asking for voice: it has it already.
    b.send(&format!("<message to='{ROOM}' id='vr2'><x xmlns='{DATA}' type='submit'><field var='FORM_TYPE'><value>{REQUEST}</value></field></x></message>")).await;
    let e = stanza_id(&mut b, "vr2").await;
    assert_eq!(error_condition(&e).as_deref(), Some("not-acceptable"));

    // Revoking and granting voice through the admin protocol.
    let r = admin_set(
        &mut a,
        ROOM,
        "<item nick='Bob' role='visitor'><reason>shh</reason></item>",
    )
    .await;
    assert_result(&r);
    assert_eq!(role_of(&mut b, &bob).await, "visitor");
    let e = say_and_wait(&mut b, ROOM, "v3", "hey").await;
    assert_eq!(error_condition(&e).as_deref(), Some("forbidden"));
    // A participant may not grant voice; a moderator may.
    let carol = format!("{ROOM}/Carol");
    assert_result(&admin_set(&mut a, ROOM, "<item nick='Bob' role='participant'/>").await);
    assert_eq!(role_of(&mut b, &bob).await, "participant");
    let r = admin_set(&mut b, ROOM, "<item nick='Carol' role='participant'/>").await;
    assert_eq!(error_condition(&r).as_deref(), Some("forbidden"));
    // Moderation is the admins' to give: Alice makes Bob a moderator, who may then give
    // voice but not take Alice's role.
    assert_result(&admin_set(&mut a, ROOM, "<item nick='Bob' role='moderator'/>").await);
    assert_eq!(role_of(&mut b, &bob).await, "moderator");
    // A new moderator of a semi-anonymous room gets the others' presences with real JIDs.
    let p = wait_for(&mut b, |e| is_presence(e, &carol, None)).await;
    assert_eq!(item_attr(&p, "jid"), Some("carol@localhost/r"));
    assert_result(&admin_set(&mut b, ROOM, "<item nick='Carol' role='participant'/>").await);
    assert_eq!(role_of(&mut c, &carol).await, "participant");
    let r = admin_set(&mut b, ROOM, "<item nick='Alice' role='visitor'/>").await;
    assert_eq!(error_condition(&r).as_deref(), Some("not-allowed"));
    // Role lists, for moderators.
    let r = admin_list(&mut a, ROOM, "role", "moderator").await;
    assert_result(&r);
    let nicks: Vec<&str> = r
        .get_child("query", MUC_ADMIN)
        .unwrap()
        .elements()
        .filter_map(|i| i.get_attr("nick"))
        .collect();
    assert_eq!(nicks, ["Alice", "Bob"]);
    let r = admin_list(&mut c, ROOM, "role", "moderator").await;
    assert_eq!(error_condition(&r).as_deref(), Some("forbidden"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_and_the_outcast_list() {
    let s = TestServer::start();
    users(&s, &["alice", "bob", "carol"]);
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    let mut c = s.online("carol", "r").await;
    create_instant(&mut a, ROOM, "Alice").await;
    enter(&mut b, &format!("{ROOM}/Bob"), "").await;
    enter(&mut c, &format!("{ROOM}/Carol"), "").await;
    // Bob may not ban.
    let r = admin_set(
        &mut b,
        ROOM,
        "<item affiliation='outcast' jid='carol@localhost'/>",
    )
    .await;
    assert_eq!(error_condition(&r).as_deref(), Some("forbidden"));
    // Alice bans Bob: 301, with the actor and the reason; everyone sees him go.
    let r = admin_set(
        &mut a,
        ROOM,
        "<item affiliation='outcast' jid='bob@localhost'><reason>spam</reason></item>",
    )
    .await;
    assert_result(&r);
    let p = wait_for(&mut b, |e| {
        e.name == "presence" && e.get_attr("type") == Some("unavailable")
    })
    .await;
    assert_eq!(codes(&p), [301, 110]);
    let i = item(&p);
    assert_eq!(i.get_attr("affiliation"), Some("outcast"));
    assert_eq!(i.get_attr("role"), Some("none"));
    assert_eq!(
        i.get_child("actor", MUC_USER)
            .and_then(|a| a.get_attr("nick")),
        Some("Alice")
    );
    assert_eq!(
        i.get_child("reason", MUC_USER).unwrap().text_content(),
        "spam"
    );
    let p = wait_for(&mut c, |e| {
        is_presence(e, &format!("{ROOM}/Bob"), Some("unavailable"))
    })
    .await;
    assert_eq!(codes(&p), [301]);
    // Banned: forbidden, under any nick, from any resource.
    assert_eq!(
        enter_refused(&mut b, &format!("{ROOM}/Bobby"), "").await,
        "forbidden"
    );
    let mut b2 = s.online("bob", "other").await;
    assert_eq!(
        enter_refused(&mut b2, &format!("{ROOM}/Bob"), "").await,
        "forbidden"
    );
    // A ban by nick; the outcast list.
    assert_result(&admin_set(&mut a, ROOM, "<item affiliation='outcast' nick='Carol'/>").await);
    wait_for(&mut c, |e| e.name == "presence" && codes(e).contains(&301)).await;
    let outcasts = list_jids(&admin_list(&mut a, ROOM, "affiliation", "outcast").await);
    assert_eq!(outcasts, ["bob@localhost", "carol@localhost"]);
    // Lifting the ban.
    assert_result(
        &admin_set(
            &mut a,
            ROOM,
            "<item affiliation='none' jid='bob@localhost'/>",
        )
        .await,
    );
    enter(&mut b, &format!("{ROOM}/Bob"), "").await;
    let outcasts = list_jids(&admin_list(&mut a, ROOM, "affiliation", "outcast").await);
    assert_eq!(outcasts, ["carol@localhost"]);
    // A whole domain may be banned: its users go (not those with an affiliation of their
    // own, like the owner) and cannot come back.
    assert_result(
        &admin_set(
            &mut a,
            ROOM,
            "<item affiliation='outcast' jid='localhost'/>",
        )
        .await,
    );
    let p = wait_for(&mut b, |e| e.name == "presence" && codes(e).contains(&301)).await;
    assert_eq!(p.get_attr("from"), Some(&*format!("{ROOM}/Bob")));
    assert_eq!(
        enter_refused(&mut b2, &format!("{ROOM}/Bob"), "").await,
        "forbidden"
    );
    let m = say_and_wait(&mut a, ROOM, "owner", "still here").await;
    assert_eq!(m.get_attr("type"), Some("groupchat"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affiliation_lists_and_who_may_change_them() {
    let s = TestServer::start();
    users(&s, &["alice", "bob", "carol", "dave"]);
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    let mut c = s.online("carol", "r").await;
    create_room(&mut a, ROOM, "Alice", &[("persistentroom", "1")]).await;
    let bob = format!("{ROOM}/Bob");
    enter(&mut b, &bob, "").await;
    // The member list: set two at once, get it back.
    let r = admin_set(
        &mut a,
        ROOM,
        "<item affiliation='member' jid='bob@localhost'/><item affiliation='member' jid='carol@localhost'/>",
    )
    .await;
    assert_result(&r);
    let members = list_jids(&admin_list(&mut a, ROOM, "affiliation", "member").await);
    assert_eq!(members, ["bob@localhost", "carol@localhost"]);
    // Bob, in the room, sees his new affiliation.
    let p = wait_for(&mut b, |e| is_presence(e, &bob, None)).await;
    assert_eq!(item_attr(&p, "affiliation"), Some("member"));
    assert_eq!(codes(&p), [110]);
    // Members do not see the lists, nor change them.
    let r = admin_list(&mut b, ROOM, "affiliation", "member").await;
    assert_eq!(error_condition(&r).as_deref(), Some("forbidden"));
    let r = admin_set(
        &mut b,
        ROOM,
        "<item affiliation='member' jid='dave@localhost'/>",
    )
    .await;
    assert_eq!(error_condition(&r).as_deref(), Some("forbidden"));
    // Admins are made by owners; an admin in the room becomes a moderator.
    assert_result(
        &admin_set(
            &mut a,
            ROOM,
            "<item affiliation='admin' jid='bob@localhost'/>",
        )
        .await,
    );
    let p = wait_for(&mut b, |e| is_presence(e, &bob, None)).await;
    assert_eq!(item_attr(&p, "affiliation"), Some("admin"));
    assert_eq!(item_attr(&p, "role"), Some("moderator"));
    let admins = list_jids(&admin_list(&mut a, ROOM, "affiliation", "admin").await);
    assert_eq!(admins, ["bob@localhost"]);
    // An admin may change members and outcasts, not admins and owners.
    assert_result(
        &admin_set(
            &mut b,
            ROOM,
            "<item affiliation='member' jid='dave@localhost'/>",
        )
        .await,
    );
    assert_result(
        &admin_set(
            &mut b,
            ROOM,
            "<item affiliation='none' jid='carol@localhost'/>",
        )
        .await,
    );
    for item in [
        "<item affiliation='admin' jid='dave@localhost'/>",
        "<item affiliation='owner' jid='dave@localhost'/>",
        "<item affiliation='member' jid='alice@localhost'/>",
        "<item affiliation='outcast' jid='alice@localhost'/>",
    ] {
        let r = admin_set(&mut b, ROOM, item).await;
        assert_eq!(
            error_condition(&r).as_deref(),
            Some("not-allowed"),
            "{item}"
        );
    }
    // A refused item refuses the whole request.
    let r = admin_set(
        &mut b,
        ROOM,
        "<item affiliation='outcast' jid='mallory@localhost'/><item affiliation='owner' jid='dave@localhost'/>",
    )
    .await;
    assert_eq!(error_condition(&r).as_deref(), Some("not-allowed"));
    let members = list_jids(&admin_list(&mut a, ROOM, "affiliation", "member").await);
    assert_eq!(members, ["dave@localhost"]);
    let outcasts = list_jids(&admin_list(&mut a, ROOM, "affiliation", "outcast").await);
    assert!(outcasts.is_empty());
    // The owner list; the last owner cannot go.
    let owners = list_jids(&admin_list(&mut a, ROOM, "affiliation", "owner").await);
    assert_eq!(owners, ["alice@localhost"]);
    let r = admin_set(
        &mut a,
        ROOM,
        "<item affiliation='admin' jid='alice@localhost'/>",
    )
    .await;
    assert_eq!(error_condition(&r).as_deref(), Some("conflict"));
    // Handing the room over in one request is fine.
    let r = admin_set(
        &mut a,
        ROOM,
        "<item affiliation='admin' jid='alice@localhost'/><item affiliation='owner' jid='carol@localhost'/>",
    )
    .await;
    assert_result(&r);
    // Alice (now an admin) no longer configures the room; Carol (owner) does.
    let r = iq(
        &mut a,
        ROOM,
        "get",
        &format!("<query xmlns='{MUC_OWNER}'/>"),
    )
    .await;
    assert_eq!(error_condition(&r).as_deref(), Some("forbidden"));
    assert!(!config_of(&mut c, ROOM).await.is_empty());
    let rec = s.shared().store.muc.get(ROOM).unwrap().unwrap();
    assert_eq!(rec.affiliation("carol@localhost"), Affiliation::Owner);
    assert_eq!(rec.affiliation("alice@localhost"), Affiliation::Admin);
    // Two owners: one may step down.
    assert_result(
        &admin_set(
            &mut c,
            ROOM,
            "<item affiliation='owner' jid='alice@localhost'/>",
        )
        .await,
    );
    assert_result(
        &admin_set(
            &mut a,
            ROOM,
            "<item affiliation='none' jid='carol@localhost'/>",
        )
        .await,
    );
    let owners = list_jids(&admin_list(&mut a, ROOM, "affiliation", "owner").await);
    assert_eq!(owners, ["alice@localhost"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_only_rooms_and_their_member_list() {
    let s = TestServer::start();
    users(&s, &["alice", "bob", "carol", "dave"]);
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    let mut c = s.online("carol", "r").await;
    let mut d = s.online("dave", "r").await;
    let club = "club@conference.localhost";
    create_room(&mut a, club, "Alice", &[("membersonly", "1")]).await;
    // Not a member: registration-required.
    assert_eq!(
        enter_refused(&mut b, &format!("{club}/Bob"), "").await,
        "registration-required"
    );
    // Alice adds Bob: the occupants who see real JIDs hear of it (the member list).
    // (The announcement comes before the answer to the IQ.)
    a.send(&format!("<iq type='set' id='add' to='{club}'><query xmlns='{MUC_ADMIN}'><item affiliation='member' jid='bob@localhost'/></query></iq>")).await;
    let m = wait_for(&mut a, |e| {
        e.name == "message" && e.get_attr("from") == Some(club)
    })
    .await;
    assert_result(&stanza_id(&mut a, "add").await);
    assert_eq!(item_attr(&m, "jid"), Some("bob@localhost"));
    assert_eq!(item_attr(&m, "affiliation"), Some("member"));
    let got = enter(&mut b, &format!("{club}/Bob"), "").await;
    assert_eq!(
        item_attr(self_presence(&got), "affiliation"),
        Some("member")
    );
    // Losing the membership while in the room: removed with 321.
    a.send(&format!("<iq type='set' id='rm' to='{club}'><query xmlns='{MUC_ADMIN}'><item affiliation='none' jid='bob@localhost'/></query></iq>")).await;
    let p = wait_for(&mut b, |e| {
        e.name == "presence" && e.get_attr("type") == Some("unavailable")
    })
    .await;
    assert_eq!(codes(&p), [321, 110]);
    let p = wait_for(&mut a, |e| {
        is_presence(e, &format!("{club}/Bob"), Some("unavailable"))
    })
    .await;
    assert_eq!(codes(&p), [321]);
    assert_result(&stanza_id(&mut a, "rm").await);
    assert_eq!(
        enter_refused(&mut b, &format!("{club}/Bob"), "").await,
        "registration-required"
    );

    // An open room made members-only: non-members go with 322, members stay.
    create_instant(&mut a, ROOM, "Alice").await;
    enter(&mut c, &format!("{ROOM}/Carol"), "").await;
    enter(&mut d, &format!("{ROOM}/Dave"), "").await;
    assert_result(
        &admin_set(
            &mut a,
            ROOM,
            "<item affiliation='member' jid='dave@localhost'/>",
        )
        .await,
    );
    assert_result(&configure(&mut a, ROOM, &[("membersonly", "1")]).await);
    let p = wait_for(&mut c, |e| {
        e.name == "presence" && e.get_attr("type") == Some("unavailable")
    })
    .await;
    assert_eq!(codes(&p), [322, 110]);
    let p = wait_for(&mut d, |e| {
        is_presence(e, &format!("{ROOM}/Carol"), Some("unavailable"))
    })
    .await;
    assert_eq!(codes(&p), [322]);
    let m = wait_for(&mut d, |e| {
        e.name == "message" && e.get_attr("from") == Some(ROOM) && !codes(e).is_empty()
    })
    .await;
    assert_eq!(codes(&m), [104]);
    let m = say_and_wait(&mut d, ROOM, "still", "still here").await;
    assert_eq!(m.get_attr("type"), Some("groupchat"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_protected_rooms() {
    let s = TestServer::start();
    users(&s, &["alice", "bob"]);
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    create_room(
        &mut a,
        ROOM,
        "Alice",
        &[("passwordprotectedroom", "1"), ("roomsecret", "s3cret")],
    )
    .await;
    let bob = format!("{ROOM}/Bob");
    assert_eq!(enter_refused(&mut b, &bob, "").await, "not-authorized");
    assert_eq!(
        enter_refused(&mut b, &bob, "<password>guess</password>").await,
        "not-authorized"
    );
    // Without the MUC <x/> there is no password either.
    let got = enter_with(&mut b, &bob, "").await;
    assert_eq!(
        error_condition(got.last().unwrap()).as_deref(),
        Some("not-authorized")
    );
    let r = iq(
        &mut b,
        ROOM,
        "get",
        &format!("<query xmlns='{DISCO_INFO}'/>"),
    )
    .await;
    assert!(r.to_xml("jabber:client").contains("muc_passwordprotected"));
    let got = enter(&mut b, &bob, "<password>s3cret</password>").await;
    assert!(is_subject(got.last().unwrap()));
    // The password is not passed on to the others.
    let p = wait_for(&mut a, |e| is_presence(e, &bob, None)).await;
    assert!(!p.to_xml("jabber:client").contains("s3cret"));
    // The form does not offer a protected room without a password.
    let r = configure(
        &mut a,
        ROOM,
        &[("passwordprotectedroom", "1"), ("roomsecret", "")],
    )
    .await;
    assert_eq!(error_condition(&r).as_deref(), Some("not-acceptable"));
    assert_result(&configure(&mut a, ROOM, &[("passwordprotectedroom", "0")]).await);
    leave(&mut b, &bob).await;
    enter(&mut b, &bob, "").await;
    let r = iq(
        &mut b,
        ROOM,
        "get",
        &format!("<query xmlns='{DISCO_INFO}'/>"),
    )
    .await;
    assert!(r.to_xml("jabber:client").contains("muc_unsecured"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroying_a_room_with_a_reason_and_an_alternate_venue() {
    let s = TestServer::start();
    users(&s, &["alice", "bob"]);
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    create_room(&mut a, ROOM, "Alice", &[("persistentroom", "1")]).await;
    enter(&mut b, &format!("{ROOM}/Bob"), "").await;
    assert!(s.shared().store.muc.get(ROOM).unwrap().is_some());
    let destroy = format!(
        "<query xmlns='{MUC_OWNER}'><destroy jid='coffee@conference.localhost'><reason>Moved to coffee</reason></destroy></query>"
    );
    // Only owners destroy.
    let r = iq(&mut b, ROOM, "set", &destroy).await;
    assert_eq!(error_condition(&r).as_deref(), Some("forbidden"));
    assert_result(&iq(&mut a, ROOM, "set", &destroy).await);
    for (c, nick) in [(&mut b, "Bob"), (&mut a, "Alice")] {
        let p = wait_for(c, |e| {
            is_presence(e, &format!("{ROOM}/{nick}"), Some("unavailable"))
        })
        .await;
        assert_eq!(item_attr(&p, "role"), Some("none"));
        let d = p
            .get_child("x", MUC_USER)
            .unwrap()
            .get_child("destroy", MUC_USER)
            .expect("destroy");
        assert_eq!(d.get_attr("jid"), Some("coffee@conference.localhost"));
        assert_eq!(
            d.get_child("reason", MUC_USER).unwrap().text_content(),
            "Moved to coffee"
        );
    }
    // Gone: for disco, from the list, and (the room did that before it answered anything
    // more) from the store.
    assert_room_gone(&s, &mut b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_rooms_survive_a_restart_without_occupants_or_history() {
    let mut s = TestServer::start();
    users(&s, &["alice", "bob", "carol"]);
    {
        let mut a = s.online("alice", "r").await;
        let mut b = s.online("bob", "r").await;
        create_room(
            &mut a,
            ROOM,
            "Alice",
            &[
                ("persistentroom", "1"),
                ("roomname", "Tea House"),
                ("whois", "anyone"),
                ("allowpm", "participants"),
            ],
        )
        .await;
        a.send(&format!(
            "<message to='{ROOM}' type='groupchat'><subject>Darjeeling</subject></message>"
        ))
        .await;
        wait_for(&mut a, is_subject).await;
        assert_result(&admin_set(&mut a, ROOM, "<item affiliation='member' jid='bob@localhost'/><item affiliation='outcast' jid='carol@localhost'/>").await);
        enter(&mut b, &format!("{ROOM}/Bob"), "").await;
        say_and_wait(&mut b, ROOM, "old", "before the restart").await;
    }
    s.stop();
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    let cfg = test_config(dir.path());
    let s = TestServer::start_in(dir, cfg);
    let mut a = s.online("alice", "r").await;
    // The room is there (no 201), empty (no one else's presence), with no history, and
    // with its subject.
    let got = enter(&mut a, &format!("{ROOM}/Alice"), "").await;
    let own = self_presence(&got);
    assert_eq!(codes(own), [110, 100]);
    assert_eq!(item_attr(own, "affiliation"), Some("owner"));
    assert_eq!(got.len(), 2, "self-presence and subject only: {got:?}");
    let subject = got.last().unwrap();
    assert_eq!(
        subject
            .get_child("subject", "jabber:client")
            .unwrap()
            .text_content(),
        "Darjeeling"
    );
    assert_eq!(subject.get_attr("from"), Some(&*format!("{ROOM}/Alice")));
    // Its configuration and affiliations.
    let form = config_of(&mut a, ROOM).await;
    assert_eq!(value(&form, "muc#roomconfig_roomname"), Some("Tea House"));
    assert_eq!(value(&form, "muc#roomconfig_persistentroom"), Some("1"));
    assert_eq!(value(&form, "muc#roomconfig_whois"), Some("anyone"));
    assert_eq!(value(&form, "muc#roomconfig_allowpm"), Some("participants"));
    let members = list_jids(&admin_list(&mut a, ROOM, "affiliation", "member").await);
    assert_eq!(members, ["bob@localhost"]);
    let mut c = s.online("carol", "r").await;
    assert_eq!(
        enter_refused(&mut c, &format!("{ROOM}/Carol"), "").await,
        "forbidden"
    );
    // Listed with its name.
    let r = iq(
        &mut c,
        SERVICE,
        "get",
        &format!("<query xmlns='{DISCO_ITEMS}'/>"),
    )
    .await;
    assert!(r.to_xml("jabber:client").contains("Tea House"));
    // An empty persistent room is kept; making it temporary removes the record, and it goes
    // when the last occupant leaves.
    assert_result(&configure(&mut a, ROOM, &[("persistentroom", "0")]).await);
    leave(&mut a, &format!("{ROOM}/Alice")).await;
    assert!(s.shared().store.muc.get(ROOM).unwrap().is_none());
    let got = enter(&mut a, &format!("{ROOM}/Alice"), "").await;
    assert_eq!(codes(got.last().unwrap()), [110, 201]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_rooms_go_when_the_last_occupant_leaves() {
    let s = TestServer::start();
    users(&s, &["alice", "bob"]);
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    create_instant(&mut a, ROOM, "Alice").await;
    enter(&mut b, &format!("{ROOM}/Bob"), "").await;
    leave(&mut a, &format!("{ROOM}/Alice")).await;
    // Still there while Bob is.
    let r = iq(
        &mut a,
        ROOM,
        "get",
        &format!("<query xmlns='{DISCO_INFO}'/>"),
    )
    .await;
    assert_result(&r);
    leave(&mut b, &format!("{ROOM}/Bob")).await;
    assert_room_gone(&s, &mut a).await;
    // Bob cannot enter it (he would create a new one, and may: he gets 201).
    let got = enter(&mut b, &format!("{ROOM}/Bob"), "").await;
    assert_eq!(codes(got.last().unwrap()), [110, 201]);
    // Leaving and entering again at once (a client rejoining): the room the leave empties
    // goes, and the presence right behind it makes a new one.
    b.send(&format!(
        "<presence to='{ROOM}/Bob' type='unavailable'/><presence to='{ROOM}/Bob'><x xmlns='{MUC}'/></presence>"
    ))
    .await;
    let p = wait_for(&mut b, |e| {
        e.name == "presence" && e.get_attr("type") != Some("unavailable")
    })
    .await;
    assert_eq!(codes(&p), [110, 201], "{p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_account_removes_its_affiliations_and_the_rooms_it_alone_owned() {
    let s = TestServer::start();
    users(&s, &["alice", "bob", "carol"]);
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    let solo = "solo@conference.localhost";
    let shared = "shared@conference.localhost";
    create_room(&mut a, solo, "Alice", &[("persistentroom", "1")]).await;
    enter(&mut b, &format!("{solo}/Bob"), "").await;
    create_room(&mut a, shared, "Alice", &[("persistentroom", "1")]).await;
    assert_result(&admin_set(&mut a, shared, "<item affiliation='owner' jid='carol@localhost'/><item affiliation='member' jid='bob@localhost'/>").await);
    // A stored room that is not running, and one Alice is only a member of.
    let mut idle = RoomRecord::default();
    idle.config.persistent = true;
    idle.set_affiliation("alice@localhost", Affiliation::Owner);
    s.shared()
        .store
        .muc
        .put("idle@conference.localhost", &idle)
        .unwrap();
    let mut other = RoomRecord::default();
    other.config.persistent = true;
    other.set_affiliation("carol@localhost", Affiliation::Owner);
    other.set_affiliation("alice@localhost", Affiliation::Member);
    s.shared()
        .store
        .muc
        .put("other@conference.localhost", &other)
        .unwrap();

    a.send("<iq type='set' id='del'><query xmlns='jabber:iq:register'><remove/></query></iq>")
        .await;
    assert_result(&stanza_id(&mut a, "del").await);
    // Bob, in the room Alice alone owned, sees it destroyed.
    let p = wait_for(&mut b, |e| {
        is_presence(e, &format!("{solo}/Bob"), Some("unavailable"))
    })
    .await;
    assert!(
        p.get_child("x", MUC_USER)
            .unwrap()
            .get_child("destroy", MUC_USER)
            .is_some(),
        "{p:?}"
    );
    let store = &s.shared().store.muc;
    let mut gone = false;
    for _ in 0..400 {
        gone = store.get(solo).unwrap().is_none()
            && store.get("idle@conference.localhost").unwrap().is_none()
            && store.get(shared).unwrap().unwrap().affiliations.len() == 2
            && store
                .get("other@conference.localhost")
                .unwrap()
                .unwrap()
                .affiliations
                .len()
                == 1;
        if gone {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(gone, "{:?}", store.of_service(SERVICE).unwrap());
    assert_eq!(
        store
            .count_affiliated("alice@localhost", Affiliation::Owner)
            .unwrap()
            + store
                .count_affiliated("alice@localhost", Affiliation::Member)
                .unwrap(),
        0
    );
    let rec = store.get(shared).unwrap().unwrap();
    assert_eq!(rec.affiliation("carol@localhost"), Affiliation::Owner);
    assert_eq!(rec.affiliation("bob@localhost"), Affiliation::Member);
    // The live room agrees.
    let mut c = s.online("carol", "r").await;
    enter(&mut c, &format!("{shared}/Carol"), "").await;
    let owners = list_jids(&admin_list(&mut c, shared, "affiliation", "owner").await);
    assert_eq!(owners, ["carol@localhost"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_persistent_rooms_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let now = kleiber::store::now_secs();
    {
        let store = kleiber::store::Store::open(dir.path()).unwrap();
        for (room, days) in [("old", 400), ("recent", 30)] {
            let mut r = RoomRecord::default();
            r.config.persistent = true;
            r.set_affiliation("alice@localhost", Affiliation::Owner);
            r.last_used = now - days * 86_400;
            store
                .muc
                .put(&format!("{room}@conference.localhost"), &r)
                .unwrap();
        }
        store.flush().unwrap();
    }
    let mut cfg = test_config(dir.path());
    cfg.muc.delete_unused_rooms_after_days = 365;
    let s = TestServer::start_in(dir, cfg);
    let store = &s.shared().store.muc;
    for _ in 0..400 {
        if store.get("old@conference.localhost").unwrap().is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(store.get("old@conference.localhost").unwrap().is_none());
    assert!(store.get("recent@conference.localhost").unwrap().is_some());
    // Entering a room marks it used.
    s.add_user("alice", "pw");
    let mut a = s.online("alice", "r").await;
    enter(&mut a, "recent@conference.localhost/Alice", "").await;
    let mut last_used = 0;
    for _ in 0..400 {
        last_used = store
            .get("recent@conference.localhost")
            .unwrap()
            .unwrap()
            .last_used;
        if last_used >= now {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(last_used >= now, "{last_used}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_on_rooms_and_occupants() {
    let s = TestServer::start_with(|c| {
        c.muc.max_rooms_created_per_hour = 2;
        c.muc.max_rooms_per_session = 2;
        c.muc.max_occupants = 3;
    });
    users(&s, &["alice", "bob", "carol", "dave"]);
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    let mut c = s.online("carol", "r").await;
    let mut d = s.online("dave", "r").await;
    let room = |n: u32| format!("r{n}@conference.localhost");
    // Rooms created per account per hour.
    create_instant(&mut a, &room(1), "Alice").await;
    create_instant(&mut a, &room(2), "Alice").await;
    let mut a2 = s.online("alice", "other").await;
    let got = enter(&mut a2, &format!("{}/Alice", room(3)), "").await;
    let e = got.last().unwrap();
    assert_eq!(error_condition(e).as_deref(), Some("policy-violation"));
    assert!(e.to_xml("jabber:client").contains("hour"), "{e:?}");
    // Rooms per session.
    create_instant(&mut c, &room(3), "Carol").await;
    enter(&mut b, &format!("{}/Bob", room(1)), "").await;
    enter(&mut b, &format!("{}/Bob", room(2)), "").await;
    let got = enter(&mut b, &format!("{}/Bob", room(3)), "").await;
    let e = got.last().unwrap();
    assert_eq!(error_condition(e).as_deref(), Some("policy-violation"));
    assert!(e.to_xml("jabber:client").contains("at once"), "{e:?}");
    leave(&mut b, &format!("{}/Bob", room(2))).await;
    enter(&mut b, &format!("{}/Bob", room(3)), "").await;
    // Occupants per room: the form offers no more than muc.max_occupants, and a full room
    // is refused with service-unavailable.
    let form = config_of(&mut a, &room(1)).await;
    assert_eq!(value(&form, "muc#roomconfig_maxusers"), Some("3"));
    let r = configure(&mut a, &room(1), &[("maxusers", "4")]).await;
    assert_eq!(error_condition(&r).as_deref(), Some("not-acceptable"));
    assert_result(&configure(&mut a, &room(1), &[("maxusers", "2")]).await);
    assert_eq!(
        enter_refused(&mut d, &format!("{}/Dave", room(1)), "").await,
        "service-unavailable"
    );
    // A second session under an occupant's nick does not count.
    let mut b2 = s.online("bob", "other").await;
    enter(&mut b2, &format!("{}/Bob", room(1)), "").await;
    // Other fields of the form have their limits too.
    let r = configure(&mut a, &room(1), &[("roomname", &"x".repeat(201))]).await;
    assert_eq!(error_condition(&r).as_deref(), Some("not-acceptable"));
    assert!(r.to_xml("jabber:client").contains("roomname"));
    let r = configure(&mut a, &room(1), &[("enablelogging", "1")]).await;
    assert_eq!(error_condition(&r).as_deref(), Some("not-acceptable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_per_second_are_limited() {
    let s = TestServer::start_with(|c| c.muc.max_messages_per_second = 1);
    users(&s, &["alice"]);
    let mut a = s.online("alice", "r").await;
    create_instant(&mut a, ROOM, "Alice").await;
    // Far more than a burst (twice the rate) in one go: some are refused, with
    // resource-constraint; the others are reflected.
    let n = 50;
    let mut burst = String::new();
    for i in 0..n {
        burst.push_str(&format!(
            "<message to='{ROOM}' type='groupchat' id='b{i}'><body>{i}</body></message>"
        ));
    }
    a.send(&burst).await;
    let (mut ok, mut refused) = (0, 0);
    for i in 0..n {
        let m = stanza_id(&mut a, &format!("b{i}")).await;
        match m.get_attr("type") {
            Some("groupchat") => ok += 1,
            _ => {
                assert_eq!(error_condition(&m).as_deref(), Some("resource-constraint"));
                refused += 1;
            }
        }
    }
    assert!(ok >= 1 && refused >= 1, "{ok} sent, {refused} refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_create_rooms() {
    let s = TestServer::start_with(|c| {
        c.muc.create_rooms = kleiber::config::RoomCreators::Jids(vec!["alice@localhost".into()]);
    });
    users(&s, &["alice", "bob"]);
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    let refused = enter_refused(&mut b, "bobs@conference.localhost/Bob", "").await;
    assert_eq!(refused, "not-allowed");
    create_instant(&mut a, ROOM, "Alice").await;
    // Others may enter the rooms that exist.
    enter(&mut b, &format!("{ROOM}/Bob"), "").await;
}
