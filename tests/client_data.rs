//! Client data: vCard-temp (XEP-0054), private XML storage (XEP-0049), last activity
//! (XEP-0012), and that deleting an account removes them.

mod common;
use common::*;

async fn ask(c: &mut Client, xml: &str) -> kleiber::xml::Element {
    c.send(xml).await;
    loop {
        let e = c.recv().await;
        if e.name == "iq" && e.get_attr("id") == Some("q") {
            return e;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vcard_private_last_activity() {
    let s = TestServer::start_with(|c| c.limits.max_vcard_bytes = 2000);
    for u in ["romeo", "juliet", "nurse"] {
        s.add_user(u, "pw");
    }
    let mut j = s.online("juliet", "balcony").await;
    let mut r = s.online("romeo", "orchard").await;
    // vCard: empty at first, set by the owner, readable by anyone, not writable by others.
    let e = ask(
        &mut j,
        "<iq type='get' id='q'><vCard xmlns='vcard-temp'/></iq>",
    )
    .await;
    assert_eq!(
        e.to_xml("jabber:client"),
        "<iq type='result' id='q' to='juliet@localhost/balcony'><vCard xmlns='vcard-temp'/></iq>"
    );
    let e = ask(&mut j, "<iq type='set' id='q'><vCard xmlns='vcard-temp'><FN>Juliet Capulet</FN><NICKNAME>J</NICKNAME></vCard></iq>").await;
    assert_eq!(e.get_attr("type"), Some("result"));
    let e = ask(
        &mut r,
        "<iq type='get' id='q' to='juliet@localhost'><vCard xmlns='vcard-temp'/></iq>",
    )
    .await;
    assert_eq!(
        e.get_child("vCard", "vcard-temp")
            .unwrap()
            .to_xml("jabber:client"),
        "<vCard xmlns='vcard-temp'><FN>Juliet Capulet</FN><NICKNAME>J</NICKNAME></vCard>"
    );
    assert_eq!(e.get_attr("from"), Some("juliet@localhost"));
    let e = ask(&mut r, "<iq type='set' id='q' to='juliet@localhost'><vCard xmlns='vcard-temp'><FN>Romeo</FN></vCard></iq>").await;
    assert_eq!(error_condition(&e).as_deref(), Some("forbidden"));
    let big = format!(
        "<iq type='set' id='q'><vCard xmlns='vcard-temp'><DESC>{}</DESC></vCard></iq>",
        "x".repeat(3000)
    );
    assert_eq!(
        error_condition(&ask(&mut j, &big).await).as_deref(),
        Some("not-acceptable")
    );
    let e = ask(
        &mut r,
        "<iq type='get' id='q' to='ghost@localhost'><vCard xmlns='vcard-temp'/></iq>",
    )
    .await;
    assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));
    // Private storage: owner only, per namespace, reserved namespaces refused.
    let e = ask(&mut j, "<iq type='set' id='q'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'><conference jid='tomb@chat.example' name='Tomb'/></storage></query></iq>").await;
    assert_eq!(e.get_attr("type"), Some("result"));
    let e = ask(&mut j, "<iq type='get' id='q'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>").await;
    // (Bookmarks come back from their XEP-0402 form, XEP-0411: autojoin is explicit.)
    assert_eq!(
        e.get_child("query", "jabber:iq:private").unwrap().to_xml("jabber:client"),
        "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'><conference jid='tomb@chat.example' name='Tomb' autojoin='false'/></storage></query>"
    );
    // ... and are in PEP for XEP-0402 clients.
    let e = ask(&mut j, "<iq type='get' id='q'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:bookmarks:1'/></pubsub></iq>").await;
    assert!(
        e.to_xml("jabber:client").contains("<item id='tomb@chat.example'><conference xmlns='urn:xmpp:bookmarks:1' name='Tomb'/></item>"),
        "{}",
        e.to_xml("jabber:client")
    );
    let e = ask(&mut j, "<iq type='get' id='q'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:unset'/></query></iq>").await;
    assert!(e
        .get_child("query", "jabber:iq:private")
        .unwrap()
        .get_child("prefs", "urn:example:unset")
        .is_some());
    let e = ask(&mut j, "<iq type='set' id='q'><query xmlns='jabber:iq:private'><x xmlns='jabber:iq:roster'/></query></iq>").await;
    assert_eq!(error_condition(&e).as_deref(), Some("not-acceptable"));
    let e = ask(&mut r, "<iq type='get' id='q' to='juliet@localhost'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>").await;
    assert_eq!(error_condition(&e).as_deref(), Some("forbidden"));
    // Last activity: server uptime; contacts with `from` only.
    let e = ask(
        &mut r,
        "<iq type='get' id='q' to='localhost'><query xmlns='jabber:iq:last'/></iq>",
    )
    .await;
    assert!(e
        .get_child("query", "jabber:iq:last")
        .unwrap()
        .get_attr("seconds")
        .is_some());
    let e = ask(
        &mut r,
        "<iq type='get' id='q' to='juliet@localhost'><query xmlns='jabber:iq:last'/></iq>",
    )
    .await;
    assert_eq!(error_condition(&e).as_deref(), Some("forbidden"));
    // Make romeo a subscriber of juliet's presence, then he may ask.
    r.send("<presence to='juliet@localhost' type='subscribe'/>")
        .await;
    loop {
        let e = j.recv().await;
        if e.get_attr("type") == Some("subscribe") {
            break;
        }
    }
    j.send("<presence to='romeo@localhost' type='subscribed'/>")
        .await;
    let n = s.online("nurse", "kitchen").await;
    drop(n.writer);
    let e = loop {
        let e = ask(
            &mut r,
            "<iq type='get' id='q' to='juliet@localhost'><query xmlns='jabber:iq:last'/></iq>",
        )
        .await;
        if e.get_attr("type") == Some("result") {
            break e;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(
        e.get_child("query", "jabber:iq:last")
            .unwrap()
            .get_attr("seconds"),
        Some("0"),
        "online"
    );
    // Deleting juliet removes her vCard and private data.
    j.send("<iq type='set' id='del'><query xmlns='jabber:iq:register'><remove/></query></iq>")
        .await;
    loop {
        let e = j.recv().await;
        if e.name == "error" {
            assert!(e
                .get_child("not-authorized", "urn:ietf:params:xml:ns:xmpp-streams")
                .is_some());
            break;
        }
    }
    let cd = &s.shared().store.client_data;
    for _ in 0..100 {
        if cd.vcard("localhost", "juliet").unwrap().is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(cd.vcard("localhost", "juliet").unwrap().is_none());
    assert!(cd
        .private("localhost", "juliet", "storage:bookmarks")
        .unwrap()
        .is_none());
}
