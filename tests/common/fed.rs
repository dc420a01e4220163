//! Helpers for federation tests: accounts on any domain, logins, and the conversation two
//! users on different servers have (subscription both ways, presence, chat, IQs).

use super::*;
use kleiber::xml::Element;

const CLIENT: &str = "jabber:client";

pub fn add_user(s: &TestServer, domain: &str, user: &str) {
    let creds = kleiber::credentials::derive("pw", 4, 4096).unwrap();
    let rec = kleiber::store::AccountRecord::new(creds, kleiber::store::now_secs());
    assert!(s
        .shared()
        .store
        .accounts
        .create(domain, user, &rec)
        .unwrap());
}

/// Log in as `user@domain/r` with initial presence (own presence consumed).
pub async fn login(s: &TestServer, domain: &str, user: &str) -> Client {
    let mut c = Client::starttls(s.starttls, domain).await;
    c.auth_scram("SCRAM-SHA-256", user, "pw").await.unwrap();
    c.bind(Some("r")).await;
    c.send("<presence/>").await;
    wait_for(&mut c, |e| {
        e.name == "presence" && e.get_attr("from") == Some(&format!("{user}@{domain}/r"))
    })
    .await;
    c
}

/// Skip everything until an element matching `pred` arrives.
pub async fn wait_for(c: &mut Client, pred: impl Fn(&Element) -> bool) -> Element {
    loop {
        let e = c.recv().await;
        if pred(&e) {
            return e;
        }
    }
}

pub fn presence_from(e: &Element, from: &str, kind: Option<&str>) -> bool {
    e.name == "presence" && e.get_attr("from") == Some(from) && e.get_attr("type") == kind
}

pub fn body(e: &Element) -> Option<String> {
    e.get_child("body", CLIENT).map(Element::text_content)
}

/// Mutual subscription, presence both ways, chat both ways, roster state, IQs across.
/// `alice` and `bob` are logged in (resource `r`, initial presence sent) on two servers.
pub async fn conversation(alice: &mut Client, alice_jid: &str, bob: &mut Client, bob_jid: &str) {
    let alice_full = format!("{alice_jid}/r");
    let bob_full = format!("{bob_jid}/r");
    let bob_domain = bob_jid.split('@').nth(1).unwrap();

    alice
        .send(&format!("<presence to='{bob_jid}' type='subscribe'/>"))
        .await;
    wait_for(bob, |e| presence_from(e, alice_jid, Some("subscribe"))).await;
    bob.send(&format!("<presence to='{alice_jid}' type='subscribed'/>"))
        .await;
    bob.send(&format!("<presence to='{alice_jid}' type='subscribe'/>"))
        .await;
    wait_for(alice, |e| presence_from(e, bob_jid, Some("subscribed"))).await;
    // Now alice sees bob's presence (pushed by bob's server or probed by alice's).
    wait_for(alice, |e| presence_from(e, &bob_full, None)).await;
    wait_for(alice, |e| presence_from(e, bob_jid, Some("subscribe"))).await;
    alice
        .send(&format!("<presence to='{bob_jid}' type='subscribed'/>"))
        .await;
    wait_for(bob, |e| presence_from(e, &alice_full, None)).await;

    // The rosters on both servers say `both`.
    for (c, contact) in [(&mut *alice, bob_jid), (&mut *bob, alice_jid)] {
        c.send("<iq type='get' id='rg'><query xmlns='jabber:iq:roster'/></iq>")
            .await;
        let r = wait_for(c, |e| e.get_attr("id") == Some("rg")).await;
        let item = r
            .get_child("query", "jabber:iq:roster")
            .unwrap()
            .elements()
            .find(|i| i.get_attr("jid") == Some(contact))
            .cloned()
            .unwrap_or_else(|| panic!("{contact} on the roster: {}", r.to_xml(CLIENT)));
        assert_eq!(item.get_attr("subscription"), Some("both"));
    }

    // Chat both ways.
    alice
        .send(&format!(
            "<message to='{bob_jid}' type='chat' id='m1'><body>hello bob</body></message>"
        ))
        .await;
    let m = wait_for(bob, |e| e.name == "message").await;
    assert_eq!(m.get_attr("from"), Some(alice_full.as_str()));
    assert_eq!(m.get_attr("to"), Some(bob_jid));
    assert_eq!(body(&m).as_deref(), Some("hello bob"));
    bob.send(&format!(
        "<message to='{alice_full}' type='chat'><body>hi alice</body></message>"
    ))
    .await;
    let m = wait_for(alice, |e| e.name == "message").await;
    assert_eq!(m.get_attr("from"), Some(bob_full.as_str()));
    assert_eq!(body(&m).as_deref(), Some("hi alice"));

    // An IQ to a full JID is routed to the client, and its answer back.
    alice
        .send(&format!(
            "<iq to='{bob_full}' type='get' id='v1'><query xmlns='jabber:iq:version'/></iq>"
        ))
        .await;
    let iq = wait_for(bob, |e| e.name == "iq").await;
    assert_eq!(iq.get_attr("from"), Some(alice_full.as_str()));
    bob.send(&format!(
        "<iq to='{alice_full}' type='result' id='{}'><query xmlns='jabber:iq:version'><name>test</name></query></iq>",
        iq.get_attr("id").unwrap()
    ))
    .await;
    let r = wait_for(alice, |e| e.get_attr("id") == Some("v1")).await;
    assert_eq!(r.get_attr("type"), Some("result"));
    assert_eq!(r.get_attr("from"), Some(bob_full.as_str()));

    // The other server answers IQs to itself.
    alice
        .send(&format!(
            "<iq to='{bob_domain}' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await;
    let r = wait_for(alice, |e| e.get_attr("id") == Some("p1")).await;
    assert_eq!(r.get_attr("type"), Some("result"));
    assert_eq!(r.get_attr("from"), Some(bob_domain));

    // Bob going offline is seen across.
    bob.send("</stream:stream>").await;
    wait_for(alice, |e| presence_from(e, &bob_full, Some("unavailable"))).await;
}
