//! XEP-0280 Message Carbons: sent and received copies to the account's other carbon-enabled
//! resources, the `<private/>` opt-out, disable, and no forged carbons.

mod common;
use common::*;

use kleiber::xml::Element;

const CARBONS: &str = "urn:xmpp:carbons:2";

async fn enable(c: &mut Client, on: bool) {
    let what = if on { "enable" } else { "disable" };
    c.send(&format!(
        "<iq type='set' id='cb'><{what} xmlns='urn:xmpp:carbons:2'/></iq>"
    ))
    .await;
    loop {
        let e = c.recv().await;
        if e.get_attr("id") == Some("cb") {
            assert_eq!(e.get_attr("type"), Some("result"));
            return;
        }
    }
}

/// The next message (presences, and carbons of the test's markers, skipped).
async fn next_message(c: &mut Client) -> Element {
    loop {
        let e = c.recv().await;
        let marker_copy = ["sent", "received"]
            .iter()
            .any(|k| carbon_of(&e, k).is_some_and(|m| m.get_attr("id") == Some("mk")));
        if e.name == "message" && !marker_copy {
            return e;
        }
    }
}

fn carbon_of(e: &Element, kind: &str) -> Option<Element> {
    e.get_child(kind, CARBONS)?
        .get_child("forwarded", "urn:xmpp:forward:0")?
        .get_child("message", "jabber:client")
        .cloned()
}

async fn marker(from: &mut Client, to: &mut Client, to_jid: &str) {
    from.send(&format!(
        "<message to='{to_jid}' type='chat' id='mk'><body>marker</body></message>"
    ))
    .await;
    let e = next_message(to).await;
    assert_eq!(
        e.get_attr("id"),
        Some("mk"),
        "expected nothing before the marker: {}",
        e.to_xml("jabber:client")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carbons() {
    let s = TestServer::start();
    for u in ["juliet", "romeo"] {
        s.add_user(u, "pw");
    }
    let mut r = s.online("romeo", "orchard").await;
    let mut a = s.online("juliet", "a").await;
    let mut b = s.online("juliet", "b").await;
    let mut c = s.online("juliet", "c").await;
    enable(&mut a, true).await;
    enable(&mut b, true).await;
    // Sent: a -> romeo; b gets a copy, c (not enabled) does not.
    a.send("<message to='romeo@localhost/orchard' type='chat' id='s1'><body>hi</body></message>")
        .await;
    assert_eq!(next_message(&mut r).await.get_attr("id"), Some("s1"));
    let copy = next_message(&mut b).await;
    assert_eq!(
        copy.get_attr("from"),
        Some("juliet@localhost"),
        "carbons come from the bare JID"
    );
    assert_eq!(copy.get_attr("to"), Some("juliet@localhost/b"));
    let inner = carbon_of(&copy, "sent").expect("a sent carbon");
    assert_eq!(
        (inner.get_attr("id"), inner.get_attr("from")),
        (Some("s1"), Some("juliet@localhost/a"))
    );
    marker(&mut r, &mut c, "juliet@localhost/c").await;
    // Received: romeo -> juliet/a; b gets a copy.
    r.send("<message to='juliet@localhost/a' type='chat' id='r1'><body>hello</body></message>")
        .await;
    assert_eq!(next_message(&mut a).await.get_attr("id"), Some("r1"));
    let copy = next_message(&mut b).await;
    assert_eq!(
        carbon_of(&copy, "received")
            .expect("a received carbon")
            .get_attr("id"),
        Some("r1"),
        "{}",
        copy.to_xml("jabber:client")
    );
    marker(&mut r, &mut c, "juliet@localhost/c").await;
    // To the bare JID: delivered to the highest priority (a); b gets a received carbon.
    a.send("<presence><priority>5</priority></presence>").await;
    loop {
        let e = b.recv().await;
        if e.name == "presence" && e.get_child("priority", "jabber:client").is_some() {
            break;
        }
    }
    r.send("<message to='juliet@localhost' type='chat' id='r2'><body>bare</body></message>")
        .await;
    assert_eq!(next_message(&mut a).await.get_attr("id"), Some("r2"));
    let copy = next_message(&mut b).await;
    assert_eq!(
        carbon_of(&copy, "received")
            .expect("a received carbon")
            .get_attr("id"),
        Some("r2")
    );
    // <private/>: no copy, and the marker is stripped before delivery.
    a.send("<message to='romeo@localhost/orchard' type='chat' id='p1'><body>secret</body><private xmlns='urn:xmpp:carbons:2'/></message>").await;
    let m = next_message(&mut r).await;
    assert_eq!(m.get_attr("id"), Some("p1"));
    assert!(m.get_child("private", CARBONS).is_none());
    marker(&mut r, &mut b, "juliet@localhost/b").await;
    // Disabled: no more copies for b.
    enable(&mut b, false).await;
    a.send(
        "<message to='romeo@localhost/orchard' type='chat' id='s2'><body>again</body></message>",
    )
    .await;
    assert_eq!(next_message(&mut r).await.get_attr("id"), Some("s2"));
    marker(&mut r, &mut b, "juliet@localhost/b").await;
    // A "carbon" forged by someone else arrives from them, not from juliet's bare JID.
    r.send("<message to='juliet@localhost/b' type='chat' id='f'><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='juliet@localhost/a' to='x@y' type='chat'><body>fake</body></message></forwarded></received></message>").await;
    let f = next_message(&mut b).await;
    assert_eq!(f.get_attr("from"), Some("romeo@localhost/orchard"));
}
