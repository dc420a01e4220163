//! Group-chat helpers for the tests: entering a room, configuring it, the admin protocol, and
//! reading what the room sends.

use std::sync::atomic::{AtomicU64, Ordering};

use super::fed::wait_for;
use super::Client;
use kleiber::xml::Element;

/// The room most tests use, and its service.
pub const ROOM: &str = "tea@conference.localhost";
pub const SERVICE: &str = "conference.localhost";

pub const MUC: &str = "http://jabber.org/protocol/muc";
pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
pub const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
pub const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
pub const DATA: &str = "jabber:x:data";
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
pub const OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
pub const DELAY: &str = "urn:xmpp:delay";
const CLIENT: &str = "jabber:client";

/// The status codes of a room stanza.
pub fn codes(e: &Element) -> Vec<u16> {
    kleiber::muc::presence::codes(e)
}

/// The `muc#user` `<item/>` of a room stanza.
pub fn item(e: &Element) -> &Element {
    e.get_child("x", MUC_USER)
        .and_then(|x| x.get_child("item", MUC_USER))
        .unwrap_or_else(|| panic!("no muc#user item: {}", e.to_xml(CLIENT)))
}

/// An attribute of the `muc#user` item.
pub fn item_attr<'a>(e: &'a Element, a: &str) -> Option<&'a str> {
    item(e).get_attr(a)
}

/// The occupant id of a room stanza.
pub fn occupant_id(e: &Element) -> String {
    e.get_child("occupant-id", OCCUPANT_ID)
        .and_then(|o| o.get_attr("id"))
        .unwrap_or_else(|| panic!("no occupant-id: {}", e.to_xml(CLIENT)))
        .to_owned()
}

/// Is `e` a presence from `from` (of type `kind`)?
pub fn is_presence(e: &Element, from: &str, kind: Option<&str>) -> bool {
    e.name == "presence" && e.get_attr("from") == Some(from) && e.get_attr("type") == kind
}

/// Is `e` a subject message?
pub fn is_subject(e: &Element) -> bool {
    e.name == "message" && e.get_child("subject", CLIENT).is_some()
}

/// Send a presence to `room_nick` (with `inner` as its children) and read up to and including
/// the subject (or, for a locked new room, the self-presence, or an error). Returns
/// everything received.
pub async fn enter_with(c: &mut Client, room_nick: &str, inner: &str) -> Vec<Element> {
    c.send(&format!("<presence to='{room_nick}'>{inner}</presence>"))
        .await;
    let mut got = Vec::new();
    loop {
        let e = c.recv().await;
        let done = is_subject(&e)
            || (e.name == "presence" && codes(&e).contains(&201))
            || (e.name == "presence" && e.get_attr("type") == Some("error"));
        got.push(e);
        if done {
            return got;
        }
    }
}

/// Enter `room/nick` (with the MUC `<x/>` and `extra` inside it); see [`enter_with`].
pub async fn enter(c: &mut Client, room_nick: &str, extra: &str) -> Vec<Element> {
    enter_with(c, room_nick, &format!("<x xmlns='{MUC}'>{extra}</x>")).await
}

/// Enter and expect to be refused: the error condition.
pub async fn enter_refused(c: &mut Client, room_nick: &str, extra: &str) -> String {
    let got = enter(c, room_nick, extra).await;
    let last = got.last().unwrap();
    assert_eq!(last.get_attr("type"), Some("error"), "{got:?}");
    assert_eq!(last.get_attr("from"), Some(room_nick));
    super::error_condition(last).expect("an error condition")
}

/// The self-presence among what [`enter`] returned.
pub fn self_presence(got: &[Element]) -> &Element {
    got.iter()
        .find(|e| e.name == "presence" && codes(e).contains(&110))
        .unwrap_or_else(|| panic!("no self-presence in {got:?}"))
}

static IDS: AtomicU64 = AtomicU64::new(0);

/// A fresh stanza id.
pub fn next_id() -> String {
    format!("t{}", IDS.fetch_add(1, Ordering::Relaxed))
}

/// Wait for the stanza with `id`.
pub async fn stanza_id(c: &mut Client, id: &str) -> Element {
    wait_for(c, |e| e.get_attr("id") == Some(id)).await
}

/// Send an IQ of `kind` to `to` with `payload`; returns the answer.
pub async fn iq(c: &mut Client, to: &str, kind: &str, payload: &str) -> Element {
    let id = next_id();
    c.send(&format!(
        "<iq type='{kind}' id='{id}' to='{to}'>{payload}</iq>"
    ))
    .await;
    wait_for(c, |e| e.name == "iq" && e.get_attr("id") == Some(&id)).await
}

/// Assert `r` is an IQ result.
pub fn assert_result(r: &Element) {
    assert_eq!(r.get_attr("type"), Some("result"), "{}", r.to_xml(CLIENT));
}

/// A submitted `muc#roomconfig` form with `fields`.
pub fn config_submit(fields: &[(&str, &str)]) -> String {
    let mut x = format!(
        "<x xmlns='{DATA}' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>"
    );
    for (var, v) in fields {
        x.push_str(&format!(
            "<field var='muc#roomconfig_{var}'><value>{v}</value></field>"
        ));
    }
    x.push_str("</x>");
    x
}

/// Submit the configuration `fields` (short names: `roomname`, `persistentroom`, ...);
/// returns the answer.
pub async fn configure(c: &mut Client, room: &str, fields: &[(&str, &str)]) -> Element {
    let q = format!(
        "<query xmlns='{MUC_OWNER}'>{}</query>",
        config_submit(fields)
    );
    iq(c, room, "set", &q).await
}

/// The configuration form's values, as the owner gets them.
pub async fn config_of(c: &mut Client, room: &str) -> Vec<(String, String)> {
    let r = iq(c, room, "get", &format!("<query xmlns='{MUC_OWNER}'/>")).await;
    assert_result(&r);
    let x = r
        .get_child("query", MUC_OWNER)
        .and_then(|q| q.get_child("x", DATA))
        .expect("a form");
    form_values(x)
}

/// `(var, value)` of every field of a data form (multiple values joined with newlines).
pub fn form_values(x: &Element) -> Vec<(String, String)> {
    x.elements()
        .filter(|f| f.name == "field")
        .map(|f| {
            let values: Vec<String> = f
                .elements()
                .filter(|v| v.name == "value")
                .map(Element::text_content)
                .collect();
            (
                f.get_attr("var").unwrap_or_default().to_owned(),
                values.join("\n"),
            )
        })
        .collect()
}

/// The value of `var` in `values`.
pub fn value<'a>(values: &'a [(String, String)], var: &str) -> Option<&'a str> {
    values
        .iter()
        .find(|(v, _)| v == var)
        .map(|(_, x)| x.as_str())
}

/// Create `room` as an instant room (enter, then accept the default configuration).
pub async fn create_instant(c: &mut Client, room: &str, nick: &str) {
    create_room(c, room, nick, &[]).await;
}

/// Create `room` as a reserved room with the configuration `fields`: enter (201), submit
/// the form, read the subject that follows the unlocking.
pub async fn create_room(c: &mut Client, room: &str, nick: &str, fields: &[(&str, &str)]) {
    let got = enter(c, &format!("{room}/{nick}"), "").await;
    assert!(
        codes(got.last().unwrap()).contains(&201),
        "room created: {got:?}"
    );
    let r = configure(c, room, fields).await;
    assert_result(&r);
    // The subject follows once the room is unlocked.
    wait_for(c, is_subject).await;
}

/// A muc#admin set with `items`; returns the answer.
pub async fn admin_set(c: &mut Client, room: &str, items: &str) -> Element {
    iq(
        c,
        room,
        "set",
        &format!("<query xmlns='{MUC_ADMIN}'>{items}</query>"),
    )
    .await
}

/// Ask for the muc#admin list of `attr` = `v` (`affiliation` or `role`); returns the answer.
pub async fn admin_list(c: &mut Client, room: &str, attr: &str, v: &str) -> Element {
    iq(
        c,
        room,
        "get",
        &format!("<query xmlns='{MUC_ADMIN}'><item {attr}='{v}'/></query>"),
    )
    .await
}

/// The JIDs of an affiliation list answer.
pub fn list_jids(r: &Element) -> Vec<String> {
    assert_result(r);
    let mut v: Vec<String> = r
        .get_child("query", MUC_ADMIN)
        .unwrap()
        .elements()
        .filter_map(|i| i.get_attr("jid").map(str::to_owned))
        .collect();
    v.sort();
    v
}

/// Send a groupchat message with `body` (and `id`).
pub async fn say(c: &mut Client, room: &str, id: &str, body: &str) {
    c.send(&format!(
        "<message to='{room}' type='groupchat' id='{id}'><body>{body}</body></message>"
    ))
    .await;
}

/// Wait for a groupchat message with a body.
pub async fn groupchat(c: &mut Client) -> Element {
    wait_for(c, |e| {
        e.name == "message"
            && e.get_attr("type") == Some("groupchat")
            && e.get_child("body", CLIENT).is_some()
    })
    .await
}

/// Wait for the groupchat message with `id`.
pub async fn groupchat_id(c: &mut Client, id: &str) -> Element {
    wait_for(c, |e| {
        e.name == "message"
            && e.get_attr("type") == Some("groupchat")
            && e.get_attr("id") == Some(id)
    })
    .await
}

/// Send a message with `id` and wait for the answer with that id (its reflection or an
/// error).
pub async fn say_and_wait(c: &mut Client, room: &str, id: &str, body: &str) -> Element {
    say(c, room, id, body).await;
    wait_for(c, |e| e.name == "message" && e.get_attr("id") == Some(id)).await
}

/// Everything `c` receives up to and including the groupchat message with `id`: a barrier
/// that shows what a client did (not) get before it.
pub async fn until_groupchat(c: &mut Client, id: &str) -> Vec<Element> {
    let mut got = Vec::new();
    loop {
        let e = c.recv().await;
        let done = e.name == "message" && e.get_attr("id") == Some(id);
        got.push(e);
        if done {
            return got;
        }
    }
}

/// Leave `room_nick` and wait for the own unavailable presence.
pub async fn leave(c: &mut Client, room_nick: &str) -> Element {
    c.send(&format!("<presence to='{room_nick}' type='unavailable'/>"))
        .await;
    wait_for(c, |e| {
        e.name == "presence" && e.get_attr("type") == Some("unavailable") && codes(e).contains(&110)
    })
    .await
}

/// Accounts `alice`, `bob` and `others` on `s`; Alice (online as `alice@localhost/r`)
/// creates [`ROOM`] as an instant room under the nick `Alice`, and Bob (`bob@localhost/r`)
/// enters it as `Bob`.
pub async fn alice_and_bob_in_room(s: &super::TestServer, others: &[&str]) -> (Client, Client) {
    for u in ["alice", "bob"].iter().chain(others) {
        s.add_user(u, "pw");
    }
    let mut a = s.online("alice", "r").await;
    let mut b = s.online("bob", "r").await;
    create_instant(&mut a, ROOM, "Alice").await;
    enter(&mut b, &format!("{ROOM}/Bob"), "").await;
    (a, b)
}

/// [`ROOM`] is gone: its disco#info is `item-not-found`, the service does not list it, and
/// the store has no record of it.
pub async fn assert_room_gone(s: &super::TestServer, c: &mut Client) {
    const INFO: &str = "http://jabber.org/protocol/disco#info";
    const ITEMS: &str = "http://jabber.org/protocol/disco#items";
    let r = iq(c, ROOM, "get", &format!("<query xmlns='{INFO}'/>")).await;
    assert_eq!(
        super::error_condition(&r).as_deref(),
        Some("item-not-found")
    );
    let r = iq(c, SERVICE, "get", &format!("<query xmlns='{ITEMS}'/>")).await;
    assert!(!r.to_xml("jabber:client").contains(ROOM));
    assert!(s.shared().store.muc.get(ROOM).unwrap().is_none());
}
