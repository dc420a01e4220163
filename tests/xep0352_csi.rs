//! XEP-0352 client state indication, XEP-0115 caps and XEP-0157 contact addresses.

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_clients_get_presence_coalesced_and_messages_at_once() {
    let s = TestServer::start_with(|c| c.contact.abuse = vec!["mailto:abuse@localhost".into()]);
    for u in ["juliet", "romeo"] {
        s.add_user(u, "pw");
    }
    let mut j = s.online("juliet", "balcony").await;
    assert!(j.features.get_child("csi", "urn:xmpp:csi:0").is_some());
    assert!(j
        .features
        .get_child("ver", "urn:xmpp:features:rosterver")
        .is_some());
    let caps = j
        .features
        .get_child("c", "http://jabber.org/protocol/caps")
        .unwrap()
        .clone();
    assert_eq!(caps.get_attr("hash"), Some("sha-1"));
    let mut r = s.online("romeo", "orchard").await;
    r.send("<presence to='juliet@localhost/balcony'><status>1</status></presence>")
        .await;
    assert_eq!(j.recv().await.name, "presence");
    // Inactive: three presence updates from romeo are held and coalesced...
    j.send("<inactive xmlns='urn:xmpp:csi:0'/>").await;
    for n in 2..=4 {
        r.send(&format!(
            "<presence to='juliet@localhost/balcony'><status>{n}</status></presence>"
        ))
        .await;
    }
    // ... a message goes out at once, after the held presence (only the latest).
    r.send(
        "<message to='juliet@localhost/balcony' type='chat' id='m'><body>wake up</body></message>",
    )
    .await;
    let p = j.recv().await;
    assert_eq!(p.name, "presence");
    assert_eq!(
        p.get_child("status", "jabber:client")
            .unwrap()
            .text_content(),
        "4"
    );
    assert_eq!(j.recv().await.get_attr("id"), Some("m"));
    // Held again, flushed on <active/>.
    r.send("<presence to='juliet@localhost/balcony'><status>5</status></presence>")
        .await;
    j.send("<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    let d = j.recv().await;
    // The IQ result is not held (and the presence before it is flushed first or after).
    let info = if d.name == "presence" {
        j.recv().await
    } else {
        d
    };
    let q = info
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    let x = q.get_child("x", "jabber:x:data").expect("XEP-0157 form");
    assert!(x.to_xml("jabber:client").contains("mailto:abuse@localhost"));
    assert_eq!(
        kleiber::services::disco::caps_ver(q),
        caps.get_attr("ver").unwrap(),
        "caps hash matches disco#info"
    );
    j.send("<active xmlns='urn:xmpp:csi:0'/>").await;
    r.send("<presence to='juliet@localhost/balcony'><status>6</status></presence>")
        .await;
    let mut statuses = Vec::new();
    while !statuses.contains(&"6".to_owned()) {
        let p = j.recv().await;
        statuses.push(
            p.get_child("status", "jabber:client")
                .unwrap()
                .text_content(),
        );
    }
    assert!(!statuses.contains(&"2".to_owned()) && !statuses.contains(&"3".to_owned()));
}
