//! Group-chat helpers for the tests: entering a room and reading what the room sends.

use super::fed::wait_for;
use super::Client;
use kleiber::xml::Element;

pub const MUC: &str = "http://jabber.org/protocol/muc";
pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
pub const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
pub const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";

/// The status codes of a room stanza.
pub fn codes(e: &Element) -> Vec<u16> {
    kleiber::muc::presence::codes(e)
}

/// Enter `room/nick` (with the MUC `<x/>` and `extra` inside it) and read up to and including
/// the subject (or, for a locked new room, the self-presence). Returns everything received.
pub async fn enter(c: &mut Client, room_nick: &str, extra: &str) -> Vec<Element> {
    c.send(&format!(
        "<presence to='{room_nick}'><x xmlns='{MUC}'>{extra}</x></presence>"
    ))
    .await;
    let mut got = Vec::new();
    loop {
        let e = c.recv().await;
        let done = (e.name == "message" && e.get_child("subject", "jabber:client").is_some())
            || (e.name == "presence" && codes(&e).contains(&201))
            || e.get_attr("type") == Some("error");
        got.push(e);
        if done {
            return got;
        }
    }
}

/// Create `room` as an instant room (enter, then accept the default configuration).
pub async fn create_instant(c: &mut Client, room: &str, nick: &str) {
    let got = enter(c, &format!("{room}/{nick}"), "").await;
    assert!(
        codes(got.last().unwrap()).contains(&201),
        "room created: {got:?}"
    );
    c.send(&format!(
        "<iq type='set' id='inst' to='{room}'><query xmlns='{MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
    ))
    .await;
    let r = wait_for(c, |e| e.name == "iq" && e.get_attr("id") == Some("inst")).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r:?}");
    // The subject follows once the room is unlocked.
    wait_for(c, |e| e.get_child("subject", "jabber:client").is_some()).await;
}

/// Wait for a groupchat message with a body.
pub async fn groupchat(c: &mut Client) -> Element {
    wait_for(c, |e| {
        e.name == "message"
            && e.get_attr("type") == Some("groupchat")
            && e.get_child("body", "jabber:client").is_some()
    })
    .await
}
