//! XEP-0313 archives of group-chat rooms: the operator allows them (`archive.rooms`), each
//! room's owner turns its own on (`muc#roomconfig_enablearchiving`); group messages then carry
//! the room's stanza id and can be searched by those who may enter the room (not outcasts,
//! members only in a members-only room); the archive never names a real JID and goes with
//! the room. Without the operator's consent the option is refused and queries are not served.

mod common;
use common::fed::wait_for;
use common::muc::*;
use common::*;
use kleiber::xml::Element;

const MAM: &str = "urn:xmpp:mam:2";
const SID: &str = "urn:xmpp:sid:0";

fn room_archives(c: &mut kleiber::config::Config) {
    c.archive.enabled = true;
    c.archive.retention_days = Some(7);
    c.archive.rooms = true;
}

/// Query `room`'s archive; the result messages' forwarded messages and the final IQ.
async fn query_room(c: &mut Client, room: &str, rsm: &str) -> (Vec<(String, Element)>, Element) {
    let id = next_id();
    c.send(&format!(
        "<iq type='set' id='{id}' to='{room}'><query xmlns='{MAM}' queryid='rq'><set xmlns='http://jabber.org/protocol/rsm'>{rsm}</set></query></iq>"
    ))
    .await;
    let mut out = Vec::new();
    loop {
        let e = wait_for(c, |e| {
            (e.name == "iq" && e.get_attr("id") == Some(id.as_str()))
                || e.get_child("result", MAM).is_some()
        })
        .await;
        if e.name == "iq" {
            return (out, e);
        }
        assert_eq!(e.get_attr("from"), Some(room));
        let r = e.get_child("result", MAM).unwrap();
        assert_eq!(r.get_attr("queryid"), Some("rq"));
        let m = r
            .get_child("forwarded", "urn:xmpp:forward:0")
            .and_then(|f| f.get_child("message", "jabber:client"))
            .unwrap()
            .clone();
        out.push((r.get_attr("id").unwrap().to_owned(), m));
    }
}

fn room_stanza_id(m: &Element) -> Option<String> {
    m.elements()
        .find(|e| e.is("stanza-id", SID) && e.get_attr("by") == Some(ROOM))
        .and_then(|e| e.get_attr("id").map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archived_room_can_be_searched_by_those_who_may_enter() {
    let s = TestServer::start_with(room_archives);
    for u in ["alice", "bob", "carol", "eve"] {
        s.add_user(u, "pw");
    }
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    let mut c = s.online("carol", "r").await;
    let mut e = s.online("eve", "r").await;
    create_room(&mut a, ROOM, "Alice", &[("enablearchiving", "1")]).await;
    assert_eq!(
        value(
            &config_of(&mut a, ROOM).await,
            "muc#roomconfig_enablearchiving"
        ),
        Some("1")
    );
    enter(&mut b, &format!("{ROOM}/Bob"), "").await;
    let mut ids = Vec::new();
    for (i, who) in ["a", "b", "a"].iter().enumerate() {
        let c = if *who == "a" { &mut a } else { &mut b };
        let mine = next_id();
        c.send(&format!(
            "<message to='{ROOM}' type='groupchat' id='{mine}'><body>m{i}</body><stanza-id xmlns='{SID}' by='{ROOM}' id='forged'/></message>"
        ))
        .await;
        let m = groupchat_id(c, &mine).await;
        let id = room_stanza_id(&m).expect("the room's stanza id");
        assert_ne!(id, "forged");
        ids.push(id);
    }
    // A chat state is not archived.
    b.send(&format!("<message to='{ROOM}' type='groupchat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>")).await;
    // Carol is not in the room but may enter it (an open room): she may read it.
    let (r, answer) = query_room(&mut c, ROOM, "<max>10</max>").await;
    assert_result(&answer);
    let got: Vec<String> = r.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(got, ids);
    let senders: Vec<&str> = r.iter().map(|(_, m)| m.get_attr("from").unwrap()).collect();
    assert_eq!(
        senders,
        [
            format!("{ROOM}/Alice"),
            format!("{ROOM}/Bob"),
            format!("{ROOM}/Alice")
        ]
    );
    // No real JID anywhere in the archive.
    let xml: String = r.iter().map(|(_, m)| m.to_xml("jabber:client")).collect();
    assert!(
        !xml.contains("alice@localhost") && !xml.contains("bob@localhost"),
        "{xml}"
    );
    let (last, _) = query_room(&mut c, ROOM, "<max>1</max><before/>").await;
    assert_eq!(last[0].0, ids[2]);
    // The room says it archives.
    let info = iq(
        &mut c,
        ROOM,
        "get",
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    )
    .await;
    assert!(info.to_xml("jabber:client").contains(MAM));
    // Eve is banned: no archive for her; in a members-only room, Carol is out too.
    admin_set(
        &mut a,
        ROOM,
        "<item affiliation='outcast' jid='eve@localhost'/>",
    )
    .await;
    let (_, answer) = query_room(&mut e, ROOM, "").await;
    assert_eq!(error_condition(&answer).as_deref(), Some("forbidden"));
    assert_result(&configure(&mut a, ROOM, &[("membersonly", "1")]).await);
    let (_, answer) = query_room(&mut c, ROOM, "").await;
    assert_eq!(error_condition(&answer).as_deref(), Some("forbidden"));
    // Destroying the room deletes its archive.
    let store = &s.shared().store;
    assert_eq!(store.archive.total(), 3);
    let r = iq(
        &mut a,
        ROOM,
        "set",
        &format!("<query xmlns='{MUC_OWNER}'><destroy/></query>"),
    )
    .await;
    assert_result(&r);
    for _ in 0..100 {
        if store.archive.total() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(store.archive.total(), 0);
    assert!(store.entries("archive_with").unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_archive_only_when_owner_and_operator_agree() {
    // The operator allows it, the owner did not turn it on: no ids, nothing kept.
    let s = TestServer::start_with(room_archives);
    let (mut a, _b) = alice_and_bob_in_room(&s, &[]).await;
    let m = say_and_wait(&mut a, ROOM, "x1", "not kept").await;
    assert_eq!(room_stanza_id(&m), None);
    let (r, answer) = query_room(&mut a, ROOM, "").await;
    assert_result(&answer);
    assert!(r.is_empty());
    assert_eq!(s.shared().store.archive.total(), 0);
    // The operator does not allow room archives: the option is refused, queries unserved.
    let s = TestServer::start_with(|c| {
        c.archive.enabled = true;
        c.archive.retention_days = Some(7);
    });
    let (mut a, _b) = alice_and_bob_in_room(&s, &[]).await;
    let r = configure(&mut a, ROOM, &[("enablearchiving", "1")]).await;
    assert_eq!(error_condition(&r).as_deref(), Some("not-acceptable"));
    assert_eq!(
        value(
            &config_of(&mut a, ROOM).await,
            "muc#roomconfig_enablearchiving"
        ),
        None
    );
    let (_, answer) = query_room(&mut a, ROOM, "").await;
    assert_eq!(
        error_condition(&answer).as_deref(),
        Some("service-unavailable")
    );
}
