//! XEP-0163 PEP over TLS with real sessions: publish with and without publish-options
//! (XEP-0223 preconditions), notifications only to resources whose caps (XEP-0115, checked
//! against their hash) ask for `node+notify`, each access model (presence, open, roster,
//! whitelist), retrieval, retract, configure and delete by the owner only, the last item sent
//! when a contact comes online, and PEP data removed with the account.

mod common;
use common::fed::wait_for;
use common::pep::*;
use common::*;

use kleiber::xml::Element;

const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
const AVATAR: &str = "urn:xmpp:avatar:metadata";
const DEVICES: &str = "eu.siacs.conversations.axolotl.devicelist";

async fn iq(c: &mut Client, id: &str, body: &str) -> Element {
    c.send(&body.replace("ID", id)).await;
    wait_for(c, |e| e.name == "iq" && e.get_attr("id") == Some(id)).await
}

fn publish(node: &str, item: &str, payload: &str, options: &str) -> String {
    let opts = if options.is_empty() {
        String::new()
    } else {
        format!("<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>{options}</x></publish-options>")
    };
    format!("<iq type='set' id='ID'><pubsub xmlns='{PUBSUB}'><publish node='{node}'><item id='{item}'>{payload}</item></publish>{opts}</pubsub></iq>")
}

fn items(owner: &str, node: &str) -> String {
    format!("<iq type='get' id='ID' to='{owner}'><pubsub xmlns='{PUBSUB}'><items node='{node}'/></pubsub></iq>")
}

fn field(var: &str, value: &str) -> String {
    format!("<field var='{var}'><value>{value}</value></field>")
}

fn pubsub_error(e: &Element) -> (Option<String>, Option<String>) {
    let err = e.get_child("error", "jabber:client");
    let cond = error_condition(e);
    let specific = err.and_then(|x| {
        x.elements()
            .find(|c| c.ns == ERRORS)
            .map(|c| c.name.clone())
    });
    (cond, specific)
}

fn event_items(e: &Element) -> Option<(String, Vec<String>)> {
    let items = e.get_child("event", EVENT)?.get_child("items", EVENT)?;
    Some((
        items.get_attr("node")?.to_owned(),
        items
            .elements()
            .filter_map(|i| i.get_attr("id").map(str::to_owned))
            .collect(),
    ))
}

/// Mutual presence subscription between two online clients.
async fn befriend(a: &mut Client, a_jid: &str, b: &mut Client, b_jid: &str) {
    a.send(&format!("<presence to='{b_jid}' type='subscribe'/>"))
        .await;
    wait_for(b, |e| {
        e.name == "presence" && e.get_attr("type") == Some("subscribe")
    })
    .await;
    b.send(&format!("<presence to='{a_jid}' type='subscribed'/>"))
        .await;
    wait_for(a, |e| {
        e.name == "presence" && e.get_attr("type") == Some("subscribed")
    })
    .await;
    b.send(&format!("<presence to='{a_jid}' type='subscribe'/>"))
        .await;
    wait_for(a, |e| {
        e.name == "presence" && e.get_attr("type") == Some("subscribe")
    })
    .await;
    a.send(&format!("<presence to='{b_jid}' type='subscribed'/>"))
        .await;
    wait_for(b, |e| {
        e.name == "presence" && e.get_attr("type") == Some("subscribed")
    })
    .await;
}

/// Nothing matching `pred` arrives before a round trip to the server.
async fn nothing_before_ping(c: &mut Client, pred: impl Fn(&Element) -> bool) {
    c.send("<iq type='get' id='marker' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    loop {
        let e = c.recv().await;
        assert!(!pred(&e), "unexpected {}", e.to_xml("jabber:client"));
        if e.get_attr("id") == Some("marker") {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_notify_and_access_models() {
    let s = TestServer::start();
    for u in ["juliet", "romeo", "nurse"] {
        s.add_user(u, "pw");
    }
    let mut j = online_with_caps(&s, "juliet", "balcony", &[AVATAR]).await;
    answer_caps(&mut j, &[AVATAR]).await;
    let mut r = online_with_caps(&s, "romeo", "orchard", &[AVATAR]).await;
    // Same caps as juliet's: known already, not asked again.
    let mut n = online_with_caps(&s, "nurse", "kitchen", &[]).await;
    answer_caps(&mut n, &[]).await;
    befriend(&mut j, "juliet@localhost", &mut r, "romeo@localhost").await;

    // Default access model `presence`: romeo (subscribed, +notify) is told; nurse is not.
    j.send(&publish(AVATAR, "h1", "<metadata xmlns='urn:xmpp:avatar:metadata'><info id='h1' bytes='10' type='image/png'/></metadata>", "").replace("ID", "p1")).await;
    // The publisher's own +notify resource is told too (the result and the notification
    // may come in either order).
    let (mut res, mut own) = (None, None);
    while res.is_none() || own.is_none() {
        let e = j.recv().await;
        if e.get_attr("id") == Some("p1") {
            res = Some(e);
        } else if event_items(&e).is_some() {
            own = Some(e);
        }
    }
    let (res, own) = (res.unwrap(), own.unwrap());
    assert_eq!(own.get_attr("to"), Some("juliet@localhost/balcony"));
    assert_eq!(
        res.get_attr("type"),
        Some("result"),
        "{}",
        res.to_xml("jabber:client")
    );
    let item_id = res
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("publish", PUBSUB))
        .and_then(|p| p.get_child("item", PUBSUB))
        .and_then(|i| i.get_attr("id"));
    assert_eq!(item_id, Some("h1"));
    let ev = wait_for(&mut r, |e| e.name == "message" && event_items(e).is_some()).await;
    assert_eq!(ev.get_attr("from"), Some("juliet@localhost"));
    assert_eq!(
        event_items(&ev),
        Some((AVATAR.to_owned(), vec!["h1".to_owned()]))
    );
    nothing_before_ping(&mut n, |e| e.name == "message").await;

    // Retrieval: romeo may, nurse may not.
    let got = iq(&mut r, "g1", &items("juliet@localhost", AVATAR)).await;
    assert_eq!(got.get_attr("type"), Some("result"));
    assert!(got.to_xml("jabber:client").contains("<info id='h1'"));
    let denied = iq(&mut n, "g2", &items("juliet@localhost", AVATAR)).await;
    assert_eq!(
        pubsub_error(&denied),
        (
            Some("not-authorized".into()),
            Some("presence-subscription-required".into())
        )
    );

    // publish-options: an `open` node anyone may read.
    let res = iq(
        &mut j,
        "p2",
        &publish(
            DEVICES,
            "current",
            "<list xmlns='eu.siacs.conversations.axolotl'><device id='42'/></list>",
            &field("pubsub#access_model", "open"),
        ),
    )
    .await;
    assert_eq!(res.get_attr("type"), Some("result"));
    let got = iq(&mut n, "g3", &items("juliet@localhost", DEVICES)).await;
    assert!(got.to_xml("jabber:client").contains("<device id='42'/>"));
    // ... whose configuration a publish must match (XEP-0223).
    let res = iq(
        &mut j,
        "p3",
        &publish(
            DEVICES,
            "current",
            "<list xmlns='eu.siacs.conversations.axolotl'/>",
            &field("pubsub#access_model", "presence"),
        ),
    )
    .await;
    assert_eq!(
        pubsub_error(&res),
        (Some("conflict".into()), Some("precondition-not-met".into()))
    );

    // `whitelist`: only the owner.
    let res = iq(
        &mut j,
        "p4",
        &publish(
            "urn:xmpp:bookmarks:1",
            "room@chat.example",
            "<conference xmlns='urn:xmpp:bookmarks:1' autojoin='true'/>",
            &(field("pubsub#access_model", "whitelist")
                + &field("pubsub#max_items", "max")
                + &field("pubsub#send_last_published_item", "never")
                + &field("pubsub#persist_items", "true")),
        ),
    )
    .await;
    assert_eq!(
        res.get_attr("type"),
        Some("result"),
        "{}",
        res.to_xml("jabber:client")
    );
    let denied = iq(
        &mut r,
        "g4",
        &items("juliet@localhost", "urn:xmpp:bookmarks:1"),
    )
    .await;
    assert_eq!(
        pubsub_error(&denied),
        (Some("not-allowed".into()), Some("closed-node".into()))
    );
    let mine = iq(&mut j, "g5", &format!("<iq type='get' id='ID'><pubsub xmlns='{PUBSUB}'><items node='urn:xmpp:bookmarks:1'/></pubsub></iq>")).await;
    assert!(mine.to_xml("jabber:client").contains("room@chat.example"));

    // `roster`: juliet's contacts only.
    let res = iq(
        &mut j,
        "p5",
        &publish(
            "urn:xmpp:nick",
            "current",
            "<nick xmlns='http://jabber.org/protocol/nick'>Juliet</nick>",
            &field("pubsub#access_model", "roster"),
        ),
    )
    .await;
    assert_eq!(res.get_attr("type"), Some("result"));
    let ok = iq(&mut r, "g6", &items("juliet@localhost", "urn:xmpp:nick")).await;
    assert!(ok.to_xml("jabber:client").contains(">Juliet<"));
    let denied = iq(&mut n, "g7", &items("juliet@localhost", "urn:xmpp:nick")).await;
    assert_eq!(
        pubsub_error(&denied),
        (
            Some("not-authorized".into()),
            Some("not-in-roster-group".into())
        )
    );

    // Only the owner changes a node.
    let forbidden = iq(
        &mut r,
        "p6",
        &publish(
            AVATAR,
            "x",
            "<metadata xmlns='urn:xmpp:avatar:metadata'/>",
            "",
        )
        .replace("<iq type='set'", "<iq type='set' to='juliet@localhost'"),
    )
    .await;
    assert_eq!(error_condition(&forbidden).as_deref(), Some("forbidden"));

    // Configure: the form, and a change (max_items 2 keeps two items).
    let form = iq(&mut j, "c1", &format!("<iq type='get' id='ID'><pubsub xmlns='{PUBSUB}#owner'><configure node='{AVATAR}'/></pubsub></iq>")).await;
    let xml = form.to_xml("jabber:client");
    assert!(
        xml.contains("pubsub#access_model") && xml.contains("<value>presence</value>"),
        "{xml}"
    );
    let set = iq(&mut j, "c2", &format!("<iq type='set' id='ID'><pubsub xmlns='{PUBSUB}#owner'><configure node='{AVATAR}'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>{}</x></configure></pubsub></iq>", field("pubsub#max_items", "2"))).await;
    assert_eq!(
        set.get_attr("type"),
        Some("result"),
        "{}",
        set.to_xml("jabber:client")
    );
    iq(
        &mut j,
        "p7",
        &publish(
            AVATAR,
            "h2",
            "<metadata xmlns='urn:xmpp:avatar:metadata'/>",
            "",
        ),
    )
    .await;
    iq(
        &mut j,
        "p8",
        &publish(
            AVATAR,
            "h3",
            "<metadata xmlns='urn:xmpp:avatar:metadata'/>",
            "",
        ),
    )
    .await;
    let got = iq(&mut r, "g8", &items("juliet@localhost", AVATAR)).await;
    let ids: Vec<String> = got
        .get_child("pubsub", PUBSUB)
        .unwrap()
        .get_child("items", PUBSUB)
        .unwrap()
        .elements()
        .filter_map(|i| i.get_attr("id").map(str::to_owned))
        .collect();
    assert_eq!(ids, ["h2", "h3"]);

    // Retract with notify, and delete: romeo hears of both.
    let res = iq(&mut j, "r1", &format!("<iq type='set' id='ID'><pubsub xmlns='{PUBSUB}'><retract node='{AVATAR}' notify='true'><item id='h3'/></retract></pubsub></iq>")).await;
    assert_eq!(res.get_attr("type"), Some("result"));
    wait_for(&mut r, |e| {
        e.get_child("event", EVENT)
            .and_then(|ev| ev.get_child("items", EVENT))
            .and_then(|i| i.get_child("retract", EVENT))
            .is_some_and(|x| x.get_attr("id") == Some("h3"))
    })
    .await;
    let res = iq(&mut j, "d1", &format!("<iq type='set' id='ID'><pubsub xmlns='{PUBSUB}#owner'><delete node='{AVATAR}'/></pubsub></iq>")).await;
    assert_eq!(res.get_attr("type"), Some("result"));
    wait_for(&mut r, |e| {
        e.get_child("event", EVENT)
            .and_then(|ev| ev.get_child("delete", EVENT))
            .is_some()
    })
    .await;
    let gone = iq(&mut r, "g9", &items("juliet@localhost", AVATAR)).await;
    assert_eq!(error_condition(&gone).as_deref(), Some("item-not-found"));

    // The account advertises PEP.
    let info = iq(&mut j, "i1", "<iq type='get' id='ID' to='juliet@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    let xml = info.to_xml("jabber:client");
    assert!(xml.contains("category='pubsub' type='pep'"), "{xml}");
    assert!(xml.contains("pubsub#publish-options"), "{xml}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_item_on_presence_only_with_notify_and_data_goes_with_the_account() {
    let s = TestServer::start();
    for u in ["juliet", "romeo"] {
        s.add_user(u, "pw");
    }
    let mut j = online_with_caps(&s, "juliet", "balcony", &[]).await;
    answer_caps(&mut j, &[]).await;
    let mut r = online_with_caps(&s, "romeo", "orchard", &[DEVICES]).await;
    answer_caps(&mut r, &[DEVICES]).await;
    befriend(&mut j, "juliet@localhost", &mut r, "romeo@localhost").await;
    iq(
        &mut j,
        "p1",
        &publish(
            DEVICES,
            "current",
            "<list xmlns='eu.siacs.conversations.axolotl'><device id='7'/></list>",
            "",
        ),
    )
    .await;
    wait_for(&mut r, |e| event_items(e).is_some()).await;
    // Juliet's own resource did not ask for the node: no notification for it.
    nothing_before_ping(&mut j, |e| event_items(e).is_some()).await;
    drop(r);

    // Romeo comes back with another resource: the last item arrives once he is online.
    let mut r = online_with_caps(&s, "romeo", "phone", &[DEVICES]).await;
    let ev = wait_for(&mut r, |e| event_items(e).is_some()).await;
    assert_eq!(
        event_items(&ev),
        Some((DEVICES.to_owned(), vec!["current".to_owned()]))
    );
    assert_eq!(ev.get_attr("to"), Some("romeo@localhost/phone"));

    // A wrong caps answer is not believed: no notifications for a lying version.
    let mut liar = Client::starttls(s.starttls, "localhost").await;
    liar.auth_scram("SCRAM-SHA-256", "romeo", "pw")
        .await
        .unwrap();
    liar.bind(Some("liar")).await;
    liar.send("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='x' ver='AAAAAAAAAAAAAAAAAAAAAAAAAAA='/></presence>")
        .await;
    answer_caps(&mut liar, &[DEVICES]).await;
    nothing_before_ping(&mut liar, |e| event_items(e).is_some()).await;

    // The data goes with the account.
    assert!(!s
        .shared()
        .store
        .pep
        .nodes("localhost", "juliet")
        .unwrap()
        .is_empty());
    s.shared()
        .store
        .delete_account("localhost", "juliet")
        .unwrap();
    assert!(s
        .shared()
        .store
        .pep
        .nodes("localhost", "juliet")
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avatars_convert_between_pep_and_vcard() {
    const META: &str = "urn:xmpp:avatar:metadata";
    let s = TestServer::start();
    for u in ["juliet", "romeo"] {
        s.add_user(u, "pw");
    }
    let mut j = online_with_caps(&s, "juliet", "balcony", &[]).await;
    answer_caps(&mut j, &[]).await;
    let mut r = online_with_caps(&s, "romeo", "orchard", &[META]).await;
    answer_caps(&mut r, &[META]).await;
    befriend(&mut j, "juliet@localhost", &mut r, "romeo@localhost").await;

    // A legacy client sets a vCard with a photo ("hello"): PEP clients are told of it.
    let res = iq(&mut j, "v1", "<iq type='set' id='ID'><vCard xmlns='vcard-temp'><FN>Juliet</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>aGVsbG8=</BINVAL></PHOTO></vCard></iq>").await;
    assert_eq!(res.get_attr("type"), Some("result"));
    let hello = "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d";
    let ev = wait_for(&mut r, |e| event_items(e).is_some()).await;
    assert_eq!(
        event_items(&ev),
        Some((META.to_owned(), vec![hello.to_owned()]))
    );
    let data = iq(&mut r, "d1", &format!("<iq type='get' id='ID' to='juliet@localhost'><pubsub xmlns='{PUBSUB}'><items node='urn:xmpp:avatar:data'/></pubsub></iq>")).await;
    assert!(
        data.to_xml("jabber:client").contains(">aGVsbG8=<"),
        "{}",
        data.to_xml("jabber:client")
    );
    // Her presence now carries the hash (XEP-0153), for legacy clients.
    j.send("<presence><x xmlns='vcard-temp:x:update'><photo>stale</photo></x></presence>")
        .await;
    let p = wait_for(&mut r, |e| {
        e.name == "presence" && e.get_attr("from") == Some("juliet@localhost/balcony")
    })
    .await;
    let photo = p
        .get_child("x", "vcard-temp:x:update")
        .and_then(|x| x.get_child("photo", "vcard-temp:x:update"))
        .map(Element::text_content);
    assert_eq!(photo.as_deref(), Some(hello));

    // A PEP client publishes another avatar ("world"): the vCard follows.
    let world = "7c211433f02071597741e6ff5a8ea34789abbf43";
    iq(
        &mut j,
        "a1",
        &publish(
            "urn:xmpp:avatar:data",
            world,
            "<data xmlns='urn:xmpp:avatar:data'>d29ybGQ=</data>",
            "",
        ),
    )
    .await;
    iq(&mut j, "a2", &publish(META, world, &format!("<metadata xmlns='urn:xmpp:avatar:metadata'><info id='{world}' type='image/jpeg' bytes='5'/></metadata>"), "")).await;
    let card = iq(
        &mut r,
        "v2",
        "<iq type='get' id='ID' to='juliet@localhost'><vCard xmlns='vcard-temp'/></iq>",
    )
    .await;
    let xml = card.to_xml("jabber:client");
    assert!(
        xml.contains("<BINVAL>d29ybGQ=</BINVAL>") && xml.contains("<TYPE>image/jpeg</TYPE>"),
        "{xml}"
    );
    assert!(
        xml.contains("<FN>Juliet</FN>"),
        "the rest of the vCard is kept: {xml}"
    );
}

/// Send an IQ that also causes a pubsub event; the two may come in either order.
async fn iq_and_event(c: &mut Client, id: &str, body: &str) -> (Element, Element) {
    c.send(&body.replace("ID", id)).await;
    let (mut res, mut ev) = (None, None);
    while res.is_none() || ev.is_none() {
        let e = c.recv().await;
        if e.get_attr("id") == Some(id) {
            res = Some(e);
        } else if event_items(&e).is_some() {
            ev = Some(e);
        }
    }
    (res.unwrap(), ev.unwrap())
}

fn sub_req(op: &str, node: &str, jid: &str) -> String {
    format!("<iq type='set' id='ID'><pubsub xmlns='{PUBSUB}'><{op} node='{node}' jid='{jid}'/></pubsub></iq>")
        .replace("<iq ", "<iq to='juliet@localhost' ")
}

fn owner_req(kind: &str, inner: &str) -> String {
    format!("<iq type='{kind}' id='ID'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>{inner}</pubsub></iq>")
}

fn disco(to: &str, which: &str, node: &str) -> String {
    let node = if node.is_empty() {
        String::new()
    } else {
        format!(" node='{node}'")
    };
    format!("<iq type='get' id='ID' to='{to}'><query xmlns='http://jabber.org/protocol/disco#{which}'{node}/></iq>")
}

fn disco_nodes(e: &Element) -> Vec<String> {
    e.get_child("query", "http://jabber.org/protocol/disco#items")
        .map(|q| {
            q.elements()
                .filter_map(|i| i.get_attr("node").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_subscriptions_affiliations_and_disco() {
    const OPEN: &str = "urn:example:open";
    const WL: &str = "urn:example:whitelist";
    let s = TestServer::start();
    for u in ["juliet", "romeo", "nurse"] {
        s.add_user(u, "pw");
    }
    // Nobody asks for +notify: everything romeo hears comes from his explicit subscription.
    let mut j = online_with_caps(&s, "juliet", "balcony", &[]).await;
    answer_caps(&mut j, &[]).await;
    let mut r = online_with_caps(&s, "romeo", "orchard", &[]).await;
    let mut n = online_with_caps(&s, "nurse", "kitchen", &[]).await;
    let access = |m: &str| field("pubsub#access_model", m);
    let e = iq(
        &mut j,
        "p1",
        &publish(
            OPEN,
            "i1",
            "<x xmlns='urn:example'>one</x>",
            &access("open"),
        ),
    )
    .await;
    assert_eq!(e.get_attr("type"), Some("result"));

    // Romeo (no roster relation at all) subscribes to the open node: subscribed, with a subid,
    // and the last item follows.
    let (e, ev) = iq_and_event(&mut r, "s1", &sub_req("subscribe", OPEN, "romeo@localhost")).await;
    let sub = e
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("subscription", PUBSUB))
        .expect("subscription in the result");
    assert_eq!(sub.get_attr("subscription"), Some("subscribed"));
    assert_eq!(sub.get_attr("jid"), Some("romeo@localhost"));
    assert!(sub.get_attr("subid").is_some_and(|i| !i.is_empty()));
    assert_eq!(
        event_items(&ev),
        Some((OPEN.to_owned(), vec!["i1".to_owned()]))
    );
    // Someone else's JID may not be subscribed.
    let e = iq(&mut r, "s2", &sub_req("subscribe", OPEN, "nurse@localhost")).await;
    assert_eq!(
        pubsub_error(&e),
        (Some("bad-request".into()), Some("invalid-jid".into()))
    );

    // A new item reaches the subscriber, through his bare JID.
    iq(
        &mut j,
        "p2",
        &publish(OPEN, "i2", "<x xmlns='urn:example'>two</x>", ""),
    )
    .await;
    let ev = wait_for(&mut r, |e| event_items(e).is_some()).await;
    assert_eq!(
        event_items(&ev),
        Some((OPEN.to_owned(), vec!["i2".to_owned()]))
    );
    assert_eq!(ev.get_attr("from"), Some("juliet@localhost"));

    // Both sides can list the subscription.
    let e = iq(&mut r, "l1", &format!("<iq type='get' id='ID' to='juliet@localhost'><pubsub xmlns='{PUBSUB}'><subscriptions/></pubsub></iq>")).await;
    let xml = e.to_xml("jabber:client");
    assert!(
        xml.contains(&format!("node='{OPEN}'")) && xml.contains("jid='romeo@localhost'"),
        "{xml}"
    );
    let e = iq(
        &mut j,
        "l2",
        &owner_req("get", &format!("<subscriptions node='{OPEN}'/>")),
    )
    .await;
    assert!(e.to_xml("jabber:client").contains("jid='romeo@localhost'"));
    // Others may not read the node's administration.
    let e = iq(
        &mut n,
        "l3",
        &owner_req("get", &format!("<subscriptions node='{OPEN}'/>"))
            .replace("<iq ", "<iq to='juliet@localhost' "),
    )
    .await;
    assert_eq!(error_condition(&e).as_deref(), Some("forbidden"));

    // A whitelist node: closed to the nurse until juliet makes her a member.
    iq(
        &mut j,
        "p3",
        &publish(
            WL,
            "w1",
            "<x xmlns='urn:example'>secret</x>",
            &access("whitelist"),
        ),
    )
    .await;
    let e = iq(&mut n, "i1", &items("juliet@localhost", WL)).await;
    assert_eq!(
        pubsub_error(&e),
        (Some("not-allowed".into()), Some("closed-node".into()))
    );
    let e = iq(&mut j, "a1", &owner_req("set", &format!("<affiliations node='{WL}'><affiliation jid='nurse@localhost' affiliation='member'/></affiliations>"))).await;
    assert_eq!(e.get_attr("type"), Some("result"));
    let e = iq(&mut n, "i2", &items("juliet@localhost", WL)).await;
    assert!(e.to_xml("jabber:client").contains("<item id='w1'>"));
    let e = iq(
        &mut j,
        "a2",
        &owner_req("get", &format!("<affiliations node='{WL}'/>")),
    )
    .await;
    let xml = e.to_xml("jabber:client");
    assert!(
        xml.contains("jid='juliet@localhost' affiliation='owner'"),
        "{xml}"
    );
    assert!(
        xml.contains("jid='nurse@localhost' affiliation='member'"),
        "{xml}"
    );
    let e = iq(&mut n, "a3", &format!("<iq type='get' id='ID' to='juliet@localhost'><pubsub xmlns='{PUBSUB}'><affiliations/></pubsub></iq>")).await;
    assert!(e
        .to_xml("jabber:client")
        .contains(&format!("node='{WL}' affiliation='member'")));
    // The owner's own affiliation cannot be changed.
    let e = iq(&mut j, "a4", &owner_req("set", &format!("<affiliations node='{WL}'><affiliation jid='juliet@localhost' affiliation='none'/></affiliations>"))).await;
    assert_eq!(error_condition(&e).as_deref(), Some("not-acceptable"));

    // disco#items lists the nodes each may see; disco#info describes a visible node.
    let e = iq(&mut n, "d1", &disco("juliet@localhost", "items", "")).await;
    let mut seen = disco_nodes(&e);
    seen.sort();
    assert_eq!(seen, vec![OPEN.to_owned(), WL.to_owned()]);
    let e = iq(&mut r, "d2", &disco("juliet@localhost", "items", "")).await;
    assert_eq!(disco_nodes(&e), vec![OPEN.to_owned()]);
    let e = iq(&mut r, "d3", &disco("juliet@localhost", "info", WL)).await;
    assert_eq!(error_condition(&e).as_deref(), Some("item-not-found"));
    let e = iq(&mut n, "d4", &disco("juliet@localhost", "info", WL)).await;
    assert!(e
        .to_xml("jabber:client")
        .contains("category='pubsub' type='leaf'"));
    let e = iq(&mut n, "d5", &disco("juliet@localhost", "items", OPEN)).await;
    let xml = e.to_xml("jabber:client");
    // The node keeps one item (max_items defaults to 1).
    assert!(
        xml.contains("name='i2'") && !xml.contains("name='i1'"),
        "{xml}"
    );
    // The account itself answers disco#info for others too; an unknown account does not.
    let e = iq(&mut n, "d6", &disco("juliet@localhost", "info", "")).await;
    assert!(e
        .to_xml("jabber:client")
        .contains("category='pubsub' type='pep'"));
    let e = iq(&mut n, "d7", &disco("ghost@localhost", "info", "")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));

    // Romeo made an outcast: his subscription ends, he may not read, and he hears nothing.
    iq(&mut j, "a5", &owner_req("set", &format!("<affiliations node='{OPEN}'><affiliation jid='romeo@localhost' affiliation='outcast'/></affiliations>"))).await;
    let e = iq(&mut r, "i3", &items("juliet@localhost", OPEN)).await;
    assert_eq!(error_condition(&e).as_deref(), Some("forbidden"));
    iq(
        &mut j,
        "p4",
        &publish(OPEN, "i3", "<x xmlns='urn:example'>three</x>", ""),
    )
    .await;
    nothing_before_ping(&mut r, |e| event_items(e).is_some()).await;
    let e = iq(
        &mut r,
        "u1",
        &sub_req("unsubscribe", OPEN, "romeo@localhost"),
    )
    .await;
    assert_eq!(
        pubsub_error(&e),
        (
            Some("unexpected-request".into()),
            Some("not-subscribed".into())
        )
    );

    // The nurse subscribes and unsubscribes: no more events after that.
    iq_and_event(
        &mut n,
        "s3",
        &sub_req("subscribe", OPEN, "nurse@localhost/kitchen"),
    )
    .await;
    let e = iq(
        &mut n,
        "u2",
        &sub_req("unsubscribe", OPEN, "nurse@localhost/kitchen"),
    )
    .await;
    assert_eq!(e.get_attr("type"), Some("result"));
    iq(
        &mut j,
        "p5",
        &publish(OPEN, "i4", "<x xmlns='urn:example'>four</x>", ""),
    )
    .await;
    nothing_before_ping(&mut n, |e| event_items(e).is_some()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xep0048_bookmarks_node_is_a_view_of_xep0402() {
    const NATIVE: &str = "urn:xmpp:bookmarks:1";
    const LEGACY: &str = "storage:bookmarks";
    let s = TestServer::start();
    for u in ["juliet", "romeo"] {
        s.add_user(u, "pw");
    }
    // An old client following the XEP-0048 node, a new one following XEP-0402's.
    let mut old = online_with_caps(&s, "juliet", "old", &[LEGACY]).await;
    answer_caps(&mut old, &[LEGACY]).await;
    let mut new = online_with_caps(&s, "juliet", "new", &[NATIVE]).await;
    answer_caps(&mut new, &[NATIVE]).await;
    let mut r = online_with_caps(&s, "romeo", "orchard", &[]).await;
    answer_caps(&mut r, &[]).await;

    // The old client publishes the whole document, as XEP-0048 §3.3 shows.
    let (e, own) = iq_and_event(&mut old, "p1", &publish(LEGACY, "current", "<storage xmlns='storage:bookmarks'><conference jid='orchard@chat.example' name='Orchard' autojoin='true'><nick>J</nick></conference></storage>", &format!("{}{}", field("pubsub#persist_items", "true"), field("pubsub#access_model", "whitelist")))).await;
    assert_eq!(
        e.get_attr("type"),
        Some("result"),
        "{}",
        e.to_xml("jabber:client")
    );
    let ev = wait_for(&mut new, |e| event_items(e).is_some()).await;
    assert_eq!(
        event_items(&ev),
        Some((NATIVE.to_owned(), vec!["orchard@chat.example".to_owned()]))
    );
    assert!(ev.to_xml("jabber:client").contains("<conference xmlns='urn:xmpp:bookmarks:1' name='Orchard' autojoin='true'><nick>J</nick></conference>"));
    assert_eq!(
        event_items(&own),
        Some((LEGACY.to_owned(), vec!["current".to_owned()]))
    );

    // The new client adds one the XEP-0402 way: the old one gets the whole document again.
    iq(
        &mut new,
        "p2",
        &publish(
            NATIVE,
            "tomb@chat.example",
            "<conference xmlns='urn:xmpp:bookmarks:1' name='Tomb'/>",
            "",
        ),
    )
    .await;
    let ev = wait_for(&mut old, |e| event_items(e).is_some()).await;
    let xml = ev.to_xml("jabber:client");
    assert!(
        xml.contains("jid='orchard@chat.example'") && xml.contains("jid='tomb@chat.example'"),
        "{xml}"
    );

    // Reading the XEP-0048 node, and private storage, give the same two.
    let e = iq(&mut old, "g1", &items("juliet@localhost", LEGACY)).await;
    let xml = e.to_xml("jabber:client");
    assert!(
        xml.contains("<item id='current'><storage xmlns='storage:bookmarks'>"),
        "{xml}"
    );
    assert!(
        xml.contains("jid='orchard@chat.example'") && xml.contains("jid='tomb@chat.example'"),
        "{xml}"
    );
    let e = iq(&mut old, "g2", "<iq type='get' id='ID'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>").await;
    let xml = e.to_xml("jabber:client");
    assert!(
        xml.contains("jid='orchard@chat.example'") && xml.contains("jid='tomb@chat.example'"),
        "{xml}"
    );

    // Bookmarks are the owner's only; a different access model is a failed precondition.
    let e = iq(&mut r, "g3", &items("juliet@localhost", LEGACY)).await;
    assert_eq!(
        pubsub_error(&e),
        (Some("not-allowed".into()), Some("closed-node".into()))
    );
    let e = iq(
        &mut old,
        "p3",
        &publish(
            LEGACY,
            "current",
            "<storage xmlns='storage:bookmarks'/>",
            &field("pubsub#access_model", "open"),
        ),
    )
    .await;
    assert_eq!(
        pubsub_error(&e),
        (Some("conflict".into()), Some("precondition-not-met".into()))
    );
    let e = iq(&mut old, "d1", &disco("juliet@localhost", "items", "")).await;
    let mut nodes = disco_nodes(&e);
    nodes.sort();
    assert_eq!(nodes, vec![LEGACY.to_owned(), NATIVE.to_owned()]);

    // An empty document removes them all: the new client hears the retraction.
    iq(
        &mut old,
        "p4",
        &publish(
            LEGACY,
            "current",
            "<storage xmlns='storage:bookmarks'/>",
            "",
        ),
    )
    .await;
    let ev = wait_for(&mut new, |e| {
        e.get_child("event", EVENT)
            .and_then(|ev| ev.get_child("items", EVENT))
            .is_some_and(|i| i.elements().any(|c| c.name == "retract"))
    })
    .await;
    let xml = ev.to_xml("jabber:client");
    assert!(
        xml.contains("<retract id='orchard@chat.example'/>")
            && xml.contains("<retract id='tomb@chat.example'/>"),
        "{xml}"
    );
}

/// Issue 14.3: a contact on the user's block list learns nothing: no notification of a new
/// avatar, no items when it asks, no last activity ("online 0 s ago"); unblocked, it does
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_contact_gets_no_pep_data_and_no_last_activity() {
    let s = TestServer::start();
    for u in ["juliet", "romeo"] {
        s.add_user(u, "pw");
    }
    let mut j = online_with_caps(&s, "juliet", "balcony", &[]).await;
    answer_caps(&mut j, &[]).await;
    let mut r = online_with_caps(&s, "romeo", "orchard", &[AVATAR]).await;
    answer_caps(&mut r, &[AVATAR]).await;
    befriend(&mut j, "juliet@localhost", &mut r, "romeo@localhost").await;
    let last = "<iq type='get' id='ID' to='juliet@localhost'><query xmlns='jabber:iq:last'/></iq>";
    assert_eq!(
        iq(&mut r, "l0", last).await.get_attr("type"),
        Some("result")
    );

    let b = iq(&mut j, "b1", "<iq type='set' id='ID'><block xmlns='urn:xmpp:blocking'><item jid='romeo@localhost'/></block></iq>").await;
    assert_eq!(b.get_attr("type"), Some("result"));
    let meta = "<metadata xmlns='urn:xmpp:avatar:metadata'><info id='h1' bytes='10' type='image/png'/></metadata>";
    let p = iq(&mut j, "p1", &publish(AVATAR, "h1", meta, "")).await;
    assert_eq!(p.get_attr("type"), Some("result"));
    // Romeo's session still exists for the server; nothing of juliet's reaches it.
    nothing_before_ping(&mut r, |e| event_items(e).is_some()).await;
    let e = iq(&mut r, "i1", &items("juliet@localhost", AVATAR)).await;
    assert_eq!(e.get_attr("type"), Some("error"));
    assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));
    let e = iq(&mut r, "l1", last).await;
    assert_eq!(
        e.get_attr("type"),
        Some("error"),
        "{}",
        e.to_xml("jabber:client")
    );
    assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));

    let u = iq(&mut j, "u1", "<iq type='set' id='ID'><unblock xmlns='urn:xmpp:blocking'><item jid='romeo@localhost'/></unblock></iq>").await;
    assert_eq!(u.get_attr("type"), Some("result"));
    let e = iq(&mut r, "i2", &items("juliet@localhost", AVATAR)).await;
    assert_eq!(e.get_attr("type"), Some("result"));
    assert_eq!(
        iq(&mut r, "l2", last).await.get_attr("type"),
        Some("result")
    );
}

/// Issue 14.4: directed presence with a new caps version from a stranger (no subscription
/// either way) makes the server send no disco#info query and is not tracked for
/// notifications; a contact's does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_caps_make_no_query() {
    let s = TestServer::start();
    for u in ["juliet", "mallory"] {
        s.add_user(u, "pw");
    }
    let mut j = online_with_caps(&s, "juliet", "balcony", &[]).await;
    answer_caps(&mut j, &[]).await;
    let mut m = Client::bound(s.direct, "mallory", "pw", "m").await;
    for i in 0..20 {
        m.send(&format!(
            "<presence to='juliet@localhost'><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://evil.test' ver='v{i}AAAAAAAAAAAAAAAAAAAAAAAAAA='/></presence>"
        ))
        .await;
    }
    nothing_before_ping(&mut m, |e| {
        e.name == "iq" && e.get_attr("type") == Some("get")
    })
    .await;
    // The query would come from the PEP actor, after the ping's answer: give it time.
    m.expect_silence(std::time::Duration::from_millis(500))
        .await;
}

/// Issue 14.8 (RFC 6120 §10.3.3): disco#info without `to` is about the account, not the
/// domain: `account/registered` and `pubsub/pep` with the PEP features, as aioxmpp asks to
/// learn whether the account supports PEP. The server's own info (with `msgoffline`,
/// XEP-0160 §5) is at its domain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disco_info_without_to_describes_the_account() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    let mut j = s.online("juliet", "balcony").await;
    let info = "http://jabber.org/protocol/disco#info";
    let identities = |e: &Element| -> Vec<String> {
        e.get_child("query", info)
            .unwrap()
            .elements()
            .filter(|c| c.name == "identity")
            .map(|c| {
                format!(
                    "{}/{}",
                    c.get_attr("category").unwrap(),
                    c.get_attr("type").unwrap()
                )
            })
            .collect()
    };
    let features = |e: &Element| -> Vec<String> {
        e.get_child("query", info)
            .unwrap()
            .elements()
            .filter(|c| c.name == "feature")
            .map(|c| c.get_attr("var").unwrap().to_owned())
            .collect()
    };
    let own = iq(
        &mut j,
        "d1",
        &format!("<iq type='get' id='ID'><query xmlns='{info}'/></iq>"),
    )
    .await;
    let bare = iq(
        &mut j,
        "d2",
        &format!("<iq type='get' id='ID' to='juliet@localhost'><query xmlns='{info}'/></iq>"),
    )
    .await;
    assert_eq!(identities(&own), ["account/registered", "pubsub/pep"]);
    assert_eq!(features(&own), features(&bare));
    assert!(features(&own).contains(&"http://jabber.org/protocol/pubsub#publish".to_owned()));
    let server = iq(
        &mut j,
        "d3",
        &format!("<iq type='get' id='ID' to='localhost'><query xmlns='{info}'/></iq>"),
    )
    .await;
    assert_eq!(identities(&server), ["server/im"]);
    assert!(features(&server).contains(&"msgoffline".to_owned()));
}
