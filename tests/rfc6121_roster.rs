//! RFC 6121 §2-4 and XEP-0191 over TLS with real sessions: roster get/set/remove with pushes
//! and versions, the subscription flows (subscribe, approve, deny, cancel, unsubscribe,
//! remove, pre-approval), requests kept for offline users across a restart, presence
//! broadcast, probes, directed presence, unavailable on disconnect, and blocking.

mod common;
use common::*;

use kleiber::xml::Element;

const CLIENT: &str = "jabber:client";
const ROSTER: &str = "jabber:iq:roster";

/// Receive until an element matching `pred` arrives; everything else skipped must satisfy
/// `skip` (so nothing unexpected slips by).
async fn recv_until(
    c: &mut Client,
    pred: impl Fn(&Element) -> bool,
    skip: impl Fn(&Element) -> bool,
) -> Element {
    loop {
        let e = c.recv().await;
        if pred(&e) {
            return e;
        }
        assert!(skip(&e), "unexpected {}", e.to_xml(CLIENT));
    }
}

fn is_push(e: &Element) -> bool {
    e.name == "iq" && e.get_attr("type") == Some("set") && e.get_child("query", ROSTER).is_some()
}

fn push_item(e: &Element) -> Element {
    e.get_child("query", ROSTER)
        .unwrap()
        .get_child("item", ROSTER)
        .unwrap()
        .clone()
}

fn is_presence(e: &Element) -> bool {
    e.name == "presence"
}

async fn roster_get(c: &mut Client, ver: Option<&str>) -> Element {
    let v = ver.map(|v| format!(" ver='{v}'")).unwrap_or_default();
    c.send(&format!(
        "<iq type='get' id='rg'><query xmlns='jabber:iq:roster'{v}/></iq>"
    ))
    .await;
    recv_until(
        c,
        |e| e.get_attr("id") == Some("rg"),
        |e| is_push(e) || is_presence(e) || e.get_attr("type") == Some("result"),
    )
    .await
}

fn items(result: &Element) -> Vec<(String, String, Option<String>)> {
    result
        .get_child("query", ROSTER)
        .map(|q| {
            q.elements()
                .map(|i| {
                    (
                        i.get_attr("jid").unwrap().to_owned(),
                        i.get_attr("subscription").unwrap().to_owned(),
                        i.get_attr("ask").map(str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Wait for the roster push about `jid` and return (subscription, ask).
async fn expect_push(c: &mut Client, jid: &str) -> (String, Option<String>) {
    let p = recv_until(
        c,
        |e| is_push(e) && push_item(e).get_attr("jid") == Some(jid),
        |e| is_push(e) || is_presence(e),
    )
    .await;
    // Acknowledge the push, as clients do.
    let id = p.get_attr("id").unwrap().to_owned();
    c.send(&format!("<iq type='result' id='{id}'/>")).await;
    let item = push_item(&p);
    (
        item.get_attr("subscription").unwrap().to_owned(),
        item.get_attr("ask").map(str::to_owned),
    )
}

/// Wait for a presence of `kind` (None = available) from `from` (bare or full prefix).
async fn expect_presence(c: &mut Client, from: &str, kind: Option<&str>) -> Element {
    recv_until(
        c,
        |e| {
            is_presence(e)
                && e.get_attr("from").is_some_and(|f| f.starts_with(from))
                && e.get_attr("type") == kind
        },
        |e| is_push(e) || is_presence(e),
    )
    .await
}

/// romeo and juliet online, rosters requested, mutually subscribed (`both`).
async fn both(s: &TestServer) -> (Client, Client) {
    let mut r = s.online("romeo", "orchard").await;
    let mut j = s.online("juliet", "balcony").await;
    roster_get(&mut r, None).await;
    roster_get(&mut j, None).await;
    subscribe(&mut r, "romeo", &mut j, "juliet").await;
    subscribe(&mut j, "juliet", &mut r, "romeo").await;
    (r, j)
}

/// `a` subscribes to `b`'s presence and `b` approves.
async fn subscribe(a: &mut Client, a_name: &str, b: &mut Client, b_name: &str) {
    let (a_jid, b_jid) = (format!("{a_name}@localhost"), format!("{b_name}@localhost"));
    a.send(&format!("<presence to='{b_jid}' type='subscribe'/>"))
        .await;
    let (_, ask) = expect_push(a, &b_jid).await;
    assert_eq!(ask.as_deref(), Some("subscribe"));
    let req = expect_presence(b, &a_jid, Some("subscribe")).await;
    assert_eq!(
        req.get_attr("from"),
        Some(a_jid.as_str()),
        "subscription stanzas carry bare JIDs"
    );
    b.send(&format!("<presence to='{a_jid}' type='subscribed'/>"))
        .await;
    let (sub, _) = expect_push(b, &a_jid).await;
    assert!(sub == "from" || sub == "both", "{sub}");
    let (sub, ask) = expect_push(a, &b_jid).await;
    assert!(sub == "to" || sub == "both", "{sub}");
    assert_eq!(ask, None);
    expect_presence(a, &b_jid, Some("subscribed")).await;
    // b's current presence follows the approval (§3.1.5).
    expect_presence(a, &b_jid, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_set_get_remove_with_pushes_and_errors() {
    let s = TestServer::start_with(|c| c.limits.max_roster_items = 2);
    s.add_user("juliet", "pw");
    let mut a = s.online("juliet", "a").await;
    let mut b = s.online("juliet", "b").await;
    expect_presence(&mut a, "juliet@localhost/b", None).await;
    let r = roster_get(&mut a, None).await;
    assert_eq!(
        r.get_child("query", ROSTER).unwrap().get_attr("ver"),
        Some("0")
    );
    assert!(items(&r).is_empty());
    a.send("<iq type='set' id='s1'><query xmlns='jabber:iq:roster'><item jid='Nurse@localhost' name='Nurse'><group>Servants</group></item></query></iq>").await;
    // The push and the result, in either order.
    let (mut push, mut result) = (None, None);
    while push.is_none() || result.is_none() {
        let e = a.recv().await;
        if is_push(&e) {
            push = Some(e);
        } else if e.get_attr("id") == Some("s1") {
            result = Some(e);
        } else {
            assert!(is_presence(&e), "{}", e.to_xml(CLIENT));
        }
    }
    let p = push.unwrap();
    assert_eq!(
        push_item(&p).to_xml(ROSTER),
        "<item jid='nurse@localhost' subscription='none' name='Nurse'><group>Servants</group></item>"
    );
    assert_eq!(
        p.get_child("query", ROSTER).unwrap().get_attr("ver"),
        Some("1")
    );
    assert_eq!(result.unwrap().get_attr("type"), Some("result"));
    // b never asked for the roster: no push for it.
    b.send("<iq type='get' id='ping'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(b.recv().await.get_attr("id"), Some("ping"));
    // Errors.
    for (set, cond) in [
        (
            "<item jid='a@localhost'/><item jid='b@localhost'/>",
            "bad-request",
        ),
        (
            &format!("<item jid='a@localhost' name='{}'/>", "n".repeat(2000)) as &str,
            "not-acceptable",
        ),
        ("<item jid='a@localhost'><group/></item>", "not-acceptable"),
        (
            "<item jid='ghost@localhost' subscription='remove'/>",
            "item-not-found",
        ),
        ("<item jid='juliet@localhost'/>", "not-allowed"),
    ] {
        a.send(&format!(
            "<iq type='set' id='e'><query xmlns='jabber:iq:roster'>{set}</query></iq>"
        ))
        .await;
        let e = recv_until(&mut a, |e| e.get_attr("id") == Some("e"), is_push).await;
        assert_eq!(error_condition(&e).as_deref(), Some(cond), "{set}");
    }
    // The roster limit (2 here).
    a.send("<iq type='set' id='s2'><query xmlns='jabber:iq:roster'><item jid='tybalt@localhost'/></query></iq>").await;
    recv_until(&mut a, |e| e.get_attr("id") == Some("s2"), is_push).await;
    a.send("<iq type='set' id='s3'><query xmlns='jabber:iq:roster'><item jid='paris@localhost'/></query></iq>").await;
    let e = recv_until(&mut a, |e| e.get_attr("id") == Some("s3"), is_push).await;
    assert_eq!(error_condition(&e).as_deref(), Some("resource-constraint"));
    // Versions (XEP-0237): unchanged -> empty result; older -> only the changes as pushes.
    let r = roster_get(&mut a, Some("2")).await;
    assert!(r.elements().next().is_none(), "unchanged: empty result");
    let r = roster_get(&mut a, Some("1")).await;
    assert!(r.elements().next().is_none());
    let p = recv_until(&mut a, is_push, is_presence).await;
    assert_eq!(push_item(&p).get_attr("jid"), Some("tybalt@localhost"));
    // Remove: pushed as subscription='remove'; then old versions get the full roster.
    a.send("<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='nurse@localhost' subscription='remove'/></query></iq>").await;
    let p = recv_until(&mut a, is_push, |e| {
        is_presence(e) || e.get_attr("id") == Some("rm")
    })
    .await;
    assert_eq!(
        push_item(&p).to_xml(ROSTER),
        "<item jid='nurse@localhost' subscription='remove'/>"
    );
    let r = roster_get(&mut a, Some("2")).await;
    assert_eq!(
        items(&r),
        vec![("tybalt@localhost".into(), "none".into(), None)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_approve_both_then_presence_flows() {
    let s = TestServer::start();
    for u in ["romeo", "juliet", "nurse"] {
        s.add_user(u, "pw");
    }
    let (mut r, mut j) = both(&s).await;
    assert_eq!(
        items(&roster_get(&mut r, None).await),
        vec![("juliet@localhost".into(), "both".into(), None)]
    );
    assert_eq!(
        items(&roster_get(&mut j, None).await),
        vec![("romeo@localhost".into(), "both".into(), None)]
    );
    // Broadcast: juliet's presence change reaches romeo, not the nurse (not subscribed).
    let mut n = s.online("nurse", "kitchen").await;
    j.send("<presence><show>away</show><status>on the balcony</status></presence>")
        .await;
    let p = expect_presence(&mut r, "juliet@localhost/balcony", None).await;
    assert_eq!(
        p.get_child("status", CLIENT).unwrap().text_content(),
        "on the balcony"
    );
    j.send(
        "<message to='nurse@localhost/kitchen' type='chat' id='mk'><body>marker</body></message>",
    )
    .await;
    assert_eq!(
        n.recv().await.get_attr("id"),
        Some("mk"),
        "the nurse got no presence"
    );
    // Probes: a second romeo resource comes online and learns juliet's presence at once.
    let mut r2 = s.online("romeo", "study").await;
    let p = expect_presence(&mut r2, "juliet@localhost/balcony", None).await;
    assert_eq!(p.get_child("show", CLIENT).unwrap().text_content(), "away");
    // ... and juliet sees the new resource.
    expect_presence(&mut j, "romeo@localhost/study", None).await;
    // Directed presence to the nurse, closed when the session ends.
    r2.send("<presence to='nurse@localhost'><status>hello</status></presence>")
        .await;
    expect_presence(&mut n, "romeo@localhost/study", None).await;
    drop(r2);
    expect_presence(&mut n, "romeo@localhost/study", Some("unavailable")).await;
    expect_presence(&mut j, "romeo@localhost/study", Some("unavailable")).await;
    // Unavailable on logout and when a connection drops.
    r.send("<presence type='unavailable'/>").await;
    expect_presence(&mut j, "romeo@localhost/orchard", Some("unavailable")).await;
    r.send("<presence/>").await;
    expect_presence(&mut j, "romeo@localhost/orchard", None).await;
    drop(r);
    expect_presence(&mut j, "romeo@localhost/orchard", Some("unavailable")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_cancel_unsubscribe_and_remove() {
    let s = TestServer::start();
    for u in ["romeo", "juliet"] {
        s.add_user(u, "pw");
    }
    let mut r = s.online("romeo", "orchard").await;
    let mut j = s.online("juliet", "balcony").await;
    roster_get(&mut r, None).await;
    roster_get(&mut j, None).await;
    // Deny.
    r.send("<presence to='juliet@localhost' type='subscribe'/>")
        .await;
    expect_push(&mut r, "juliet@localhost").await;
    expect_presence(&mut j, "romeo@localhost", Some("subscribe")).await;
    j.send("<presence to='romeo@localhost' type='unsubscribed'/>")
        .await;
    assert_eq!(
        expect_push(&mut r, "juliet@localhost").await,
        ("none".into(), None)
    );
    expect_presence(&mut r, "juliet@localhost", Some("unsubscribed")).await;
    // Subscribe again, approve, then romeo unsubscribes (stops receiving juliet's presence).
    subscribe(&mut r, "romeo", &mut j, "juliet").await;
    r.send("<presence to='juliet@localhost' type='unsubscribe'/>")
        .await;
    assert_eq!(expect_push(&mut r, "juliet@localhost").await.0, "none");
    assert_eq!(expect_push(&mut j, "romeo@localhost").await.0, "none");
    expect_presence(&mut j, "romeo@localhost", Some("unsubscribe")).await;
    // Subscribe again, then juliet cancels romeo's subscription (unsubscribed).
    subscribe(&mut r, "romeo", &mut j, "juliet").await;
    j.send("<presence to='romeo@localhost' type='unsubscribed'/>")
        .await;
    assert_eq!(expect_push(&mut j, "romeo@localhost").await.0, "none");
    assert_eq!(expect_push(&mut r, "juliet@localhost").await.0, "none");
    expect_presence(&mut r, "juliet@localhost", Some("unsubscribed")).await;
    // Both ways, then juliet removes romeo: he gets unsubscribe and unsubscribed (§2.5.2).
    subscribe(&mut r, "romeo", &mut j, "juliet").await;
    subscribe(&mut j, "juliet", &mut r, "romeo").await;
    j.send("<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='romeo@localhost' subscription='remove'/></query></iq>").await;
    let p = recv_until(&mut j, is_push, |e| {
        is_presence(e) || e.get_attr("id") == Some("rm")
    })
    .await;
    assert_eq!(push_item(&p).get_attr("subscription"), Some("remove"));
    let mut got = Vec::new();
    while got.len() < 2 {
        let e = recv_until(
            &mut r,
            |e| {
                is_presence(e) && matches!(e.get_attr("type"), Some("unsubscribe" | "unsubscribed"))
            },
            |e| is_push(e) || is_presence(e),
        )
        .await;
        got.push(e.get_attr("type").unwrap().to_owned());
    }
    got.sort();
    assert_eq!(got, ["unsubscribe", "unsubscribed"]);
    assert_eq!(
        items(&roster_get(&mut r, None).await),
        vec![("juliet@localhost".into(), "none".into(), None)]
    );
    assert!(items(&roster_get(&mut j, None).await).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_approval() {
    let s = TestServer::start();
    for u in ["romeo", "juliet"] {
        s.add_user(u, "pw");
    }
    let mut r = s.online("romeo", "orchard").await;
    let mut j = s.online("juliet", "balcony").await;
    roster_get(&mut r, None).await;
    roster_get(&mut j, None).await;
    j.send("<presence to='romeo@localhost' type='subscribed'/>")
        .await;
    let p = recv_until(&mut j, is_push, is_presence).await;
    assert_eq!(push_item(&p).get_attr("approved"), Some("true"));
    r.send("<presence to='juliet@localhost' type='subscribe'/>")
        .await;
    // Approved at once, without asking juliet.
    expect_presence(&mut r, "juliet@localhost", Some("subscribed")).await;
    assert_eq!(expect_push(&mut j, "romeo@localhost").await.0, "from");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_to_offline_user_survives_restart() {
    let mut s = TestServer::start();
    for u in ["romeo", "juliet"] {
        s.add_user(u, "pw");
    }
    let mut r = s.online("romeo", "orchard").await;
    r.send("<presence to='juliet@localhost' type='subscribe'><status>it is I</status></presence>")
        .await;
    roster_get(&mut r, None).await;
    drop(r);
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    s.stop();
    let cfg = test_config(dir.path());
    let s = TestServer::start_in(dir, cfg);
    let mut j = Client::starttls(s.starttls, "localhost").await;
    j.auth_scram("SCRAM-SHA-256", "juliet", "pw").await.unwrap();
    j.bind(Some("balcony")).await;
    j.send("<presence/>").await;
    let req = expect_presence(&mut j, "romeo@localhost", Some("subscribe")).await;
    assert_eq!(req.get_attr("to"), Some("juliet@localhost"));
    // Not on juliet's roster until she answers; on romeo's with ask='subscribe'.
    assert!(items(&roster_get(&mut j, None).await).is_empty());
    j.send("<presence to='romeo@localhost' type='subscribed'/>")
        .await;
    assert_eq!(expect_push(&mut j, "romeo@localhost").await.0, "from");
    let mut r = s.online("romeo", "orchard").await;
    // romeo now probes juliet at login and sees her.
    expect_presence(&mut r, "juliet@localhost/balcony", None).await;
    assert_eq!(
        items(&roster_get(&mut r, None).await),
        vec![("juliet@localhost".into(), "to".into(), None)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking() {
    let s = TestServer::start();
    for u in ["romeo", "juliet"] {
        s.add_user(u, "pw");
    }
    let (mut r, mut j) = both(&s).await;
    j.send("<iq type='get' id='bl'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
        .await;
    let bl = recv_until(
        &mut j,
        |e| e.get_attr("id") == Some("bl"),
        |e| is_push(e) || is_presence(e),
    )
    .await;
    assert_eq!(
        bl.get_child("blocklist", "urn:xmpp:blocking")
            .unwrap()
            .elements()
            .count(),
        0
    );
    j.send("<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='romeo@localhost'/></block></iq>").await;
    let push = recv_until(
        &mut j,
        |e| e.get_child("block", "urn:xmpp:blocking").is_some(),
        |e| e.get_attr("id") == Some("b1") || is_presence(e),
    )
    .await;
    assert_eq!(push.get_attr("type"), Some("set"));
    // romeo sees juliet go unavailable.
    expect_presence(&mut r, "juliet@localhost/balcony", Some("unavailable")).await;
    // His messages bounce; hers to him are refused with <blocked/>.
    r.send("<message to='juliet@localhost/balcony' type='chat' id='m1'><body>hi</body></message>")
        .await;
    let e = recv_until(&mut r, |e| e.get_attr("id") == Some("m1"), is_presence).await;
    assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));
    j.send("<message to='romeo@localhost' type='chat' id='m2'><body>hi</body></message>")
        .await;
    let e = recv_until(
        &mut j,
        |e| e.get_attr("id") == Some("m2"),
        |e| is_presence(e) || e.get_attr("id") == Some("b1"),
    )
    .await;
    assert_eq!(error_condition(&e).as_deref(), Some("not-acceptable"));
    assert!(e
        .get_child("error", CLIENT)
        .unwrap()
        .get_child("blocked", "urn:xmpp:blocking:errors")
        .is_some());
    // Her presence changes do not reach him.
    j.send("<presence><status>hidden</status></presence>").await;
    j.send("<iq type='set' id='u1'><unblock xmlns='urn:xmpp:blocking'/></iq>")
        .await;
    recv_until(
        &mut j,
        |e| e.get_child("unblock", "urn:xmpp:blocking").is_some(),
        |e| is_presence(e) || e.get_attr("id").is_some(),
    )
    .await;
    r.send(
        "<message to='juliet@localhost/balcony' type='chat' id='m3'><body>again</body></message>",
    )
    .await;
    // The results of the block and unblock IQs wait until they are on disk (group commit),
    // so under load they may come after the pushes and messages that followed.
    let m = recv_until(
        &mut j,
        |e| e.get_attr("id") == Some("m3"),
        |e| is_presence(e) || matches!(e.get_attr("id"), Some("u1" | "b1")),
    )
    .await;
    assert_eq!(m.get_attr("type"), Some("chat"));
    // Nothing of the hidden status reached romeo before the message marker.
    j.send(
        "<message to='romeo@localhost/orchard' type='chat' id='mk'><body>marker</body></message>",
    )
    .await;
    loop {
        let e = r.recv().await;
        if e.get_attr("id") == Some("mk") {
            break;
        }
        let status = e.get_child("status", CLIENT).map(|s| s.text_content());
        assert_ne!(
            status.as_deref(),
            Some("hidden"),
            "presence leaked to a blocked contact"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_account_unsubscribes_its_contacts() {
    let s = TestServer::start();
    for u in ["romeo", "juliet"] {
        s.add_user(u, "pw");
    }
    let (mut r, mut j) = both(&s).await;
    r.send("<iq type='set' id='del'><query xmlns='jabber:iq:register'><remove/></query></iq>")
        .await;
    assert_eq!(expect_push(&mut j, "romeo@localhost").await.0, "to");
    assert_eq!(expect_push(&mut j, "romeo@localhost").await.0, "none");
    assert_eq!(
        items(&roster_get(&mut j, None).await),
        vec![("romeo@localhost".into(), "none".into(), None)]
    );
    let _ = r;
}

/// A burst of subscription requests (as a client adding a whole address book does) loses
/// nothing: every contact ends up with the pending request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_subscriptions_loses_nothing() {
    let s = TestServer::start();
    s.add_user("romeo", "pw");
    for i in 0..60 {
        s.add_user(&format!("c{i}"), "pw");
    }
    let mut r = s.online("romeo", "orchard").await;
    let batch: String = (0..60)
        .map(|i| format!("<presence to='c{i}@localhost' type='subscribe'/>"))
        .collect();
    r.send(&batch).await;
    let got = items(&roster_get(&mut r, None).await);
    // The roster get is answered after the store handled every earlier request.
    assert_eq!(got.len(), 60);
    assert!(got
        .iter()
        .all(|(_, sub, ask)| sub == "none" && ask.as_deref() == Some("subscribe")));
    for _ in 0..200 {
        let pending = (0..60)
            .filter(|i| {
                s.shared()
                    .store
                    .rosters
                    .get("localhost", &format!("c{i}"), "romeo@localhost")
                    .unwrap()
                    .is_some_and(|it| it.pending_in)
            })
            .count();
        if pending == 60 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("not every contact got the request");
}

/// A blocked sender's messages are not kept for the user while offline either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_senders_get_nothing_stored_offline() {
    let s = TestServer::start();
    for u in ["romeo", "juliet"] {
        s.add_user(u, "pw");
    }
    s.shared()
        .store
        .rosters
        .set_blocked("localhost", "juliet", "romeo@localhost", true)
        .unwrap();
    let mut r = s.online("romeo", "orchard").await;
    r.send("<message to='juliet@localhost' type='chat' id='x'><body>let me in</body></message>")
        .await;
    let e = r.recv().await;
    assert_eq!(
        (e.get_attr("id"), error_condition(&e).as_deref()),
        (Some("x"), Some("service-unavailable"))
    );
    assert_eq!(s.shared().store.offline.total(), 0);
}

/// Spam: subscription requests from strangers are limited per account and hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stranger_requests_are_limited() {
    let s = TestServer::start_with(|c| c.limits.stranger_subscriptions_per_hour = 2);
    s.add_user("juliet", "pw");
    for i in 0..3 {
        s.add_user(&format!("s{i}"), "pw");
    }
    for i in 0..3 {
        let mut c = s.online(&format!("s{i}"), "r").await;
        c.send("<presence to='juliet@localhost' type='subscribe'/>")
            .await;
        roster_get(&mut c, None).await;
    }
    let mut pending = 0;
    for _ in 0..100 {
        pending = (0..3)
            .filter(|i| {
                s.shared()
                    .store
                    .rosters
                    .get("localhost", "juliet", &format!("s{i}@localhost"))
                    .unwrap()
                    .is_some_and(|it| it.pending_in)
            })
            .count();
        if pending >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    // Give a third request the same chance to land before checking it did not.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let pending_now = (0..3)
        .filter(|i| {
            s.shared()
                .store
                .rosters
                .get("localhost", "juliet", &format!("s{i}@localhost"))
                .unwrap()
                .is_some_and(|it| it.pending_in)
        })
        .count();
    assert_eq!((pending, pending_now), (2, 2));
}

/// A request that the server keeps after the user's session is bound but before its initial
/// presence is shown at that initial presence (RFC 6121 §3.1.3), not at the next login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_between_bind_and_initial_presence_is_shown() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    s.add_user("romeo", "pw");
    let mut j = Client::starttls(s.starttls, "localhost").await;
    j.auth_plain("", "juliet", "pw").await.unwrap();
    j.bind(Some("balcony")).await;
    let mut r = s.online("romeo", "orchard").await;
    // Romeo's stream-management ack comes once the server has kept the request.
    r.send("<enable xmlns='urn:xmpp:sm:3'/>").await;
    let e = r.recv().await;
    assert_eq!(e.name, "enabled");
    r.send("<presence to='juliet@localhost' type='subscribe'/><r xmlns='urn:xmpp:sm:3'/>")
        .await;
    let a = recv_until(&mut r, |e| e.name == "a", |_| true).await;
    assert!(a.get_attr("h").is_some());
    j.send("<presence/>").await;
    let p = recv_until(
        &mut j,
        |e| e.name == "presence" && e.get_attr("type") == Some("subscribe"),
        |e| e.name == "presence",
    )
    .await;
    assert_eq!(p.get_attr("from"), Some("romeo@localhost"));
    // Once only.
    j.ping("after").await;
}
