//! XEP-0313 message archives for accounts, with XEP-0359 stanza ids, XEP-0441 preferences and
//! XEP-0059 paging, against a real server over TLS: what is archived (both sides, the fast
//! path to full JIDs included), queries by contact, time and id, pages both ways, metadata,
//! preferences, the offline spool next to the archive (no message twice), forged stanza ids,
//! retention, account deletion, and the archive switched off.

mod common;
use common::*;
use kleiber::xml::Element;

const MAM: &str = "urn:xmpp:mam:2";
const SID: &str = "urn:xmpp:sid:0";

fn archiving(c: &mut kleiber::config::Config) {
    c.archive.enabled = true;
    c.archive.retention_days = Some(30);
}

fn start() -> TestServer {
    let s = TestServer::start_with(archiving);
    for u in ["alice", "bob", "carol"] {
        s.add_user(u, "pw");
    }
    s
}

fn body(m: &Element) -> String {
    m.get_child("body", "jabber:client")
        .map(|b| b.text_content())
        .unwrap_or_default()
}

/// The stanza id `by` stamped on a message.
fn stanza_id(m: &Element, by: &str) -> Option<String> {
    m.elements()
        .find(|e| e.is("stanza-id", SID) && e.get_attr("by") == Some(by))
        .and_then(|e| e.get_attr("id").map(str::to_owned))
}

/// Run a query; returns the results (archive id, forwarded message) and the final IQ.
async fn query(
    c: &mut Client,
    form: &str,
    rsm: &str,
    extra: &str,
) -> (Vec<(String, Element)>, Element) {
    let x = if form.is_empty() {
        String::new()
    } else {
        format!(
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>{form}</x>"
        )
    };
    let set = if rsm.is_empty() {
        String::new()
    } else {
        format!("<set xmlns='http://jabber.org/protocol/rsm'>{rsm}</set>")
    };
    c.send(&format!(
        "<iq type='set' id='q'><query xmlns='{MAM}' queryid='qq'>{x}{set}{extra}</query></iq>"
    ))
    .await;
    let mut out = Vec::new();
    loop {
        let e = c.recv().await;
        if e.name == "iq" {
            assert_eq!(e.get_attr("id"), Some("q"));
            return (out, e);
        }
        let Some(r) = e.get_child("result", MAM) else {
            panic!("not a result: {}", e.to_xml("jabber:client"));
        };
        assert_eq!(r.get_attr("queryid"), Some("qq"));
        let fwd = r.get_child("forwarded", "urn:xmpp:forward:0").unwrap();
        assert!(fwd.get_child("delay", "urn:xmpp:delay").is_some());
        let m = fwd.get_child("message", "jabber:client").unwrap().clone();
        out.push((r.get_attr("id").unwrap().to_owned(), m));
    }
}

/// Send initial presence; returns the one offline message that comes with it (in whatever
/// order it and the own presence arrive).
async fn initial_presence(c: &mut Client) -> Element {
    c.send("<presence/>").await;
    let (mut own, mut msg) = (false, None);
    while !own || msg.is_none() {
        let e = c.recv().await;
        match e.name.as_str() {
            "presence" => own = true,
            _ => msg = Some(e),
        }
    }
    msg.unwrap()
}

fn field(var: &str, value: &str) -> String {
    format!("<field var='{var}'><value>{value}</value></field>")
}

fn bodies(r: &[(String, Element)]) -> Vec<String> {
    r.iter().map(|(_, m)| body(m)).collect()
}

fn fin(iq: &Element) -> &Element {
    assert_eq!(
        iq.get_attr("type"),
        Some("result"),
        "{}",
        iq.to_xml("jabber:client")
    );
    iq.get_child("fin", MAM).expect("fin")
}

fn rsm_text(iq: &Element, name: &str) -> String {
    fin(iq)
        .get_child("set", "http://jabber.org/protocol/rsm")
        .and_then(|s| s.get_child(name, "http://jabber.org/protocol/rsm"))
        .map(|e| e.text_content())
        .unwrap_or_default()
}

/// Send `n` chat messages from `from` to `to_jid` and wait until `to` has them all.
async fn chat(
    from: &mut Client,
    to: &mut Client,
    to_jid: &str,
    prefix: &str,
    n: usize,
) -> Vec<Element> {
    for i in 0..n {
        from.send(&format!(
            "<message to='{to_jid}' type='chat' id='{prefix}{i}'><body>{prefix}{i}</body></message>"
        ))
        .await;
    }
    let mut got = Vec::new();
    while got.len() < n {
        let m = to.recv().await;
        if m.name == "message" && !body(&m).is_empty() {
            got.push(m);
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_are_archived_and_stamped() {
    let s = start();
    let mut alice = s.online("alice", "a").await;
    let mut bob = s.online("bob", "b").await;
    // To the bare JID (through the router) and to a full JID (the sender's fast path).
    let mut got = chat(&mut alice, &mut bob, "bob@localhost", "bare", 2).await;
    got.extend(chat(&mut alice, &mut bob, "bob@localhost/b", "full", 2).await);
    // The chat state notification is not archived but arrives.
    alice
        .send("<message to='bob@localhost' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>")
        .await;
    let state = bob.recv().await;
    assert!(state
        .get_child("active", "http://jabber.org/protocol/chatstates")
        .is_some());
    assert_eq!(stanza_id(&state, "bob@localhost"), None);
    let ids: Vec<String> = got
        .iter()
        .map(|m| stanza_id(m, "bob@localhost").expect("stanza-id by bob"))
        .collect();
    let (results, iq) = query(&mut bob, "", "", "").await;
    assert_eq!(bodies(&results), ["bare0", "bare1", "full0", "full1"]);
    let archived: Vec<String> = results.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(archived, ids, "the stanza ids are the archive's ids");
    assert_eq!(fin(&iq).get_attr("complete"), Some("true"));
    assert_eq!(rsm_text(&iq, "first"), ids[0]);
    assert_eq!(rsm_text(&iq, "last"), ids[3]);
    // Alice's archive has her side: sent to bob.
    let (results, _) = query(&mut alice, "", "", "").await;
    assert_eq!(bodies(&results), ["bare0", "bare1", "full0", "full1"]);
    assert!(results
        .iter()
        .all(|(_, m)| m.get_attr("from").unwrap().starts_with("alice@localhost/a")));
    // The account advertises the archive.
    bob.send("<iq type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    let d = bob.recv_xml().await;
    for f in [MAM, "urn:xmpp:mam:2#extended", SID] {
        assert!(d.contains(&format!("var='{f}'")), "{f}: {d}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_filter_and_page_both_ways() {
    let s = start();
    let mut alice = s.online("alice", "a").await;
    let mut bob = s.online("bob", "b").await;
    let mut carol = s.online("carol", "c").await;
    chat(&mut alice, &mut bob, "bob@localhost", "a", 12).await;
    let before_carol = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    chat(&mut carol, &mut bob, "bob@localhost", "c", 3).await;
    // By contact: the last page of 5 with alice, in time order, not complete.
    let with_alice = field("with", "alice@localhost");
    let (r, iq) = query(&mut bob, &with_alice, "<max>5</max><before/>", "").await;
    assert_eq!(bodies(&r), ["a7", "a8", "a9", "a10", "a11"]);
    assert_eq!(fin(&iq).get_attr("complete"), None);
    // Backward from the first of that page, then forward from the start.
    let first = rsm_text(&iq, "first");
    let (r2, _) = query(
        &mut bob,
        &with_alice,
        &format!("<max>5</max><before>{first}</before>"),
        "",
    )
    .await;
    assert_eq!(bodies(&r2), ["a2", "a3", "a4", "a5", "a6"]);
    let (r3, iq3) = query(
        &mut bob,
        &with_alice,
        &format!("<max>5</max><before>{}</before>", r2[0].0),
        "",
    )
    .await;
    assert_eq!(bodies(&r3), ["a0", "a1"]);
    assert_eq!(fin(&iq3).get_attr("complete"), Some("true"));
    let (f1, iq) = query(&mut bob, "", "<max>10</max>", "").await;
    assert_eq!(f1.len(), 10);
    let (f2, iq2) = query(
        &mut bob,
        "",
        &format!("<max>10</max><after>{}</after>", rsm_text(&iq, "last")),
        "",
    )
    .await;
    assert_eq!(bodies(&f2), ["a10", "a11", "c0", "c1", "c2"]);
    assert_eq!(fin(&iq2).get_attr("complete"), Some("true"));
    // flip-page: the same page, newest first.
    let (r, _) = query(
        &mut bob,
        &with_alice,
        "<max>3</max><before/>",
        "<flip-page/>",
    )
    .await;
    assert_eq!(bodies(&r), ["a11", "a10", "a9"]);
    // By full JID, by domain, by time, by ids and by before-id / after-id.
    let (r, _) = query(&mut bob, &field("with", "carol@localhost/c"), "", "").await;
    assert_eq!(bodies(&r), ["c0", "c1", "c2"]);
    let (r, _) = query(&mut bob, &field("with", "carol@localhost/other"), "", "").await;
    assert!(r.is_empty());
    let (r, _) = query(&mut bob, &field("with", "localhost"), "", "").await;
    assert_eq!(r.len(), 15);
    let start = field(
        "start",
        &before_carol.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    );
    let (r, _) = query(&mut bob, &start, "", "").await;
    assert_eq!(bodies(&r), ["c0", "c1", "c2"]);
    let end = field(
        "end",
        &before_carol.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    );
    let (r, _) = query(&mut bob, &end, "", "").await;
    assert_eq!(r.len(), 12);
    let ids = format!(
        "<field var='ids'><value>{}</value><value>{}</value></field>",
        f1[3].0, f2[2].0
    );
    let (r, _) = query(&mut bob, &ids, "", "").await;
    assert_eq!(bodies(&r), ["a3", "c0"]);
    let range = format!(
        "{}{}",
        field("after-id", &f1[0].0),
        field("before-id", &f1[3].0)
    );
    let (r, _) = query(&mut bob, &range, "", "").await;
    assert_eq!(bodies(&r), ["a1", "a2"]);
    // Errors: an unknown id, a bad date, an unknown field, paging by index.
    let (_, e) = query(&mut bob, "", "<after>0000000000000001</after>", "").await;
    assert_eq!(error_condition(&e).as_deref(), Some("item-not-found"));
    let (_, e) = query(&mut bob, &field("start", "last tuesday"), "", "").await;
    assert_eq!(error_condition(&e).as_deref(), Some("bad-request"));
    let (_, e) = query(&mut bob, &field("colour", "blue"), "", "").await;
    assert_eq!(error_condition(&e).as_deref(), Some("bad-request"));
    let (_, e) = query(&mut bob, "", "<index>3</index>", "").await;
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("feature-not-implemented")
    );
    // Metadata: the oldest and newest message.
    bob.send(&format!(
        "<iq type='get' id='m'><metadata xmlns='{MAM}'/></iq>"
    ))
    .await;
    let m = bob.recv().await;
    let md = m.get_child("metadata", MAM).unwrap();
    assert_eq!(
        md.get_child("start", MAM).unwrap().get_attr("id"),
        Some(f1[0].0.as_str())
    );
    assert_eq!(
        md.get_child("end", MAM).unwrap().get_attr("id"),
        Some(f2[4].0.as_str())
    );
    // The search form lists the fields.
    bob.send(&format!(
        "<iq type='get' id='f'><query xmlns='{MAM}'/></iq>"
    ))
    .await;
    let f = bob.recv_xml().await;
    for var in ["with", "start", "end", "before-id", "after-id", "ids"] {
        assert!(f.contains(&format!("var='{var}'")), "{f}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferences_decide_what_is_kept() {
    let s = start();
    let mut alice = s.online("alice", "a").await;
    let mut bob = s.online("bob", "b").await;
    let mut carol = s.online("carol", "c").await;
    bob.send(&format!(
        "<iq type='get' id='p'><prefs xmlns='{MAM}'/></iq>"
    ))
    .await;
    let p = bob.recv().await;
    assert_eq!(
        p.get_child("prefs", MAM).unwrap().get_attr("default"),
        Some("always")
    );
    // Roster only, carol always: alice (not on bob's roster) is not archived on bob's side.
    bob.send(&format!(
        "<iq type='set' id='p2'><prefs xmlns='{MAM}' default='roster'><always><jid>carol@localhost</jid></always><never/></prefs></iq>"
    ))
    .await;
    let p = bob.recv().await;
    assert_eq!(p.get_attr("type"), Some("result"));
    assert_eq!(
        p.get_child("prefs", MAM).unwrap().get_attr("default"),
        Some("roster")
    );
    let from_alice = chat(&mut alice, &mut bob, "bob@localhost", "x", 1).await;
    assert_eq!(
        stanza_id(&from_alice[0], "bob@localhost"),
        None,
        "not archived, no id"
    );
    chat(&mut carol, &mut bob, "bob@localhost", "y", 1).await;
    let (r, _) = query(&mut bob, "", "", "").await;
    assert_eq!(bodies(&r), ["y0"]);
    // Alice's own archive still has what she sent (her preferences are hers).
    let (r, _) = query(&mut alice, "", "", "").await;
    assert_eq!(bodies(&r), ["x0"]);
    // A bad default is refused.
    bob.send(&format!(
        "<iq type='set' id='p3'><prefs xmlns='{MAM}' default='sometimes'/></iq>"
    ))
    .await;
    assert_eq!(
        error_condition(&bob.recv().await).as_deref(),
        Some("bad-request")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_are_not_delivered_twice() {
    let s = start();
    let mut alice = s.online("alice", "a").await;
    for i in 0..3 {
        alice
            .send(&format!(
                "<message to='bob@localhost' type='chat'><body>o{i}</body></message>"
            ))
            .await;
    }
    alice.ping("sync").await;
    wait_offline(&s, "localhost", "bob", 3).await;
    // A client that catches up from the archive before its initial presence...
    let mut bob = Client::starttls(s.starttls, "localhost").await;
    bob.auth_scram("SCRAM-SHA-256", "bob", "pw").await.unwrap();
    bob.bind(Some("phone")).await;
    let (r, _) = query(&mut bob, "", "<max>50</max><before/>", "").await;
    assert_eq!(bodies(&r), ["o0", "o1", "o2"]);
    // ... does not get them again from the offline spool.
    bob.send("<presence/>").await;
    assert_eq!(bob.recv().await.name, "presence");
    for _ in 0..400 {
        let left = s
            .shared()
            .store
            .offline
            .usage("localhost", "bob")
            .unwrap()
            .count;
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(
        s.shared()
            .store
            .offline
            .usage("localhost", "bob")
            .unwrap()
            .count,
        0
    );
    bob.expect_silence(std::time::Duration::from_millis(500))
        .await;
    // A client that does not query the archive gets offline messages, with the same ids.
    alice
        .send("<message to='carol@localhost' type='chat'><body>late</body></message>")
        .await;
    alice.ping("sync2").await;
    wait_offline(&s, "localhost", "carol", 1).await;
    let mut carol = Client::starttls(s.starttls, "localhost").await;
    carol
        .auth_scram("SCRAM-SHA-256", "carol", "pw")
        .await
        .unwrap();
    carol.bind(Some("c")).await;
    // Reading one conversation first is not a catch-up: the offline message still comes.
    let (r, _) = query(&mut carol, &field("with", "alice@localhost"), "", "").await;
    assert_eq!(bodies(&r), ["late"]);
    let msg = initial_presence(&mut carol).await;
    assert_eq!(body(&msg), "late");
    let id = stanza_id(&msg, "carol@localhost").expect("offline message has its stanza id");
    let (r, _) = query(&mut carol, "", "", "").await;
    assert_eq!(r[0].0, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stanza_ids_are_removed() {
    let s = start();
    let mut alice = s.online("alice", "a").await;
    let mut bob = s.online("bob", "b").await;
    alice
        .send("<message to='bob@localhost' type='chat'><body>hi</body><stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='forged'/><stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='kept'/></message>")
        .await;
    let m = bob.recv().await;
    let by_bob: Vec<&Element> = m
        .elements()
        .filter(|e| e.is("stanza-id", SID) && e.get_attr("by") == Some("bob@localhost"))
        .collect();
    assert_eq!(by_bob.len(), 1);
    assert_ne!(by_bob[0].get_attr("id"), Some("forged"));
    assert_eq!(stanza_id(&m, "alice@localhost").as_deref(), Some("kept"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_and_deletion_remove_archives() {
    let s = start();
    let mut alice = s.online("alice", "a").await;
    let mut bob = s.online("bob", "b").await;
    chat(&mut alice, &mut bob, "bob@localhost", "m", 2).await;
    let store = &s.shared().store;
    // An entry from 40 days ago is past the 30-day retention; today's are not.
    let old = kleiber::store::now_ms() - 40 * 86_400_000;
    let entry = kleiber::store::archive::Entry {
        id: kleiber::store::archive::id_at(old),
        with: "alice@localhost/a".into(),
        outgoing: false,
        xml: "<message xmlns='jabber:client'><body>old</body></message>".into(),
    };
    store.archive.append("localhost", "bob", &entry).unwrap();
    let (r, _) = query(&mut bob, "", "", "").await;
    assert_eq!(bodies(&r), ["old", "m0", "m1"]);
    kleiber::actors::scheduler::prune_archive(s.shared());
    let (r, _) = query(&mut bob, "", "", "").await;
    assert_eq!(bodies(&r), ["m0", "m1"]);
    // In-band cancellation deletes bob's archive and preferences, not alice's.
    bob.send("<iq type='set' id='c'><query xmlns='jabber:iq:register'><remove/></query></iq>")
        .await;
    let _ = bob.recv().await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let page = |user: &str| {
        let q = kleiber::store::archive::Query {
            until_id: u64::MAX,
            max: 100,
            ..Default::default()
        };
        store
            .archive
            .query("localhost", user, &q)
            .unwrap()
            .entries
            .len()
    };
    assert_eq!(page("bob"), 0);
    assert_eq!(page("alice"), 2);
    let with_bob: Vec<_> = store
        .entries("archive_with")
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.starts_with(b"localhost\0bob\0"))
        .collect();
    assert!(with_bob.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switched_off_nothing_is_archived_and_offline_ids_remain() {
    let s = TestServer::start();
    for u in ["alice", "bob"] {
        s.add_user(u, "pw");
    }
    let mut alice = s.online("alice", "a").await;
    alice
        .send(&format!(
            "<iq type='set' id='q'><query xmlns='{MAM}'/></iq>"
        ))
        .await;
    assert_eq!(
        error_condition(&alice.recv().await).as_deref(),
        Some("service-unavailable")
    );
    alice
        .send("<iq type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    assert!(!alice.recv_xml().await.contains(MAM));
    alice
        .send("<message to='bob@localhost' type='chat'><body>hi</body><stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='forged'/></message>")
        .await;
    alice.ping("sync").await;
    wait_offline(&s, "localhost", "bob", 1).await;
    let mut bob = Client::starttls(s.starttls, "localhost").await;
    bob.auth_scram("SCRAM-SHA-256", "bob", "pw").await.unwrap();
    bob.bind(Some("b")).await;
    let m = initial_presence(&mut bob).await;
    let id = stanza_id(&m, "bob@localhost").expect("an offline message has a stanza id");
    assert_ne!(id, "forged");
    assert_eq!(s.shared().store.archive.total(), 0);
}

#[test]
fn the_archive_needs_a_retention_within_the_policy() {
    use kleiber::config::Config;
    let e = Config::parse("[archive]\nenabled = true\n").unwrap_err();
    assert_eq!(e.key, "archive.retention_days");
    let e = Config::parse("[archive]\nenabled = true\nretention_days = 400\n").unwrap_err();
    assert_eq!(e.key, "archive.retention_days");
    Config::parse(
        "allow_longer_retention = true\n[archive]\nenabled = true\nretention_days = 400\n",
    )
    .unwrap();
    let e = Config::parse("[archive]\nrooms = true\n").unwrap_err();
    assert_eq!(e.key, "archive.rooms");
    let e = Config::parse(
        "[archive]\nenabled = true\nretention_days = 7\ndefault_mode = \"sometimes\"\n",
    )
    .unwrap_err();
    assert!(e.key.starts_with("archive"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_management_acks_and_rerouting_keep_one_copy() {
    let s = start();
    let mut alice = s.online("alice", "a").await;
    alice.send("<enable xmlns='urn:xmpp:sm:3'/>").await;
    assert_eq!(alice.recv().await.name, "enabled");
    let mut bob = s.online("bob", "b").await;
    bob.send("<enable xmlns='urn:xmpp:sm:3'/>").await;
    assert_eq!(bob.recv().await.name, "enabled");
    let got = chat(&mut alice, &mut bob, "bob@localhost", "sm", 2).await;
    // Alice's ack covers what passed the archive: both messages handled.
    alice.send("<r xmlns='urn:xmpp:sm:3'/>").await;
    let a = alice.recv().await;
    assert_eq!((a.name.as_str(), a.get_attr("h")), ("a", Some("2")));
    // Bob never acks and his connection drops: the two messages go to the offline spool,
    // not into the archive a second time.
    drop(bob);
    assert_eq!(wait_offline(&s, "localhost", "bob", 2).await, 2);
    let q = kleiber::store::archive::Query {
        until_id: u64::MAX,
        max: 100,
        ..Default::default()
    };
    let archived = s
        .shared()
        .store
        .archive
        .query("localhost", "bob", &q)
        .unwrap();
    assert_eq!(archived.entries.len(), 2);
    let mut bob = Client::starttls(s.starttls, "localhost").await;
    bob.auth_scram("SCRAM-SHA-256", "bob", "pw").await.unwrap();
    bob.bind(Some("b2")).await;
    bob.send("<presence/>").await;
    let mut again = Vec::new();
    while again.len() < 2 {
        let e = bob.recv().await;
        if e.name == "message" {
            again.push(stanza_id(&e, "bob@localhost").unwrap());
        }
    }
    let first: Vec<String> = got
        .iter()
        .map(|m| stanza_id(m, "bob@localhost").unwrap())
        .collect();
    assert_eq!(again, first, "the same ids as the first delivery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_across_servers_are_archived_on_each_side() {
    use common::fed::{add_user, login, wait_for};
    let (a, b) = common::s2s::pair_tweaked(&archiving);
    add_user(&a, "a.test", "alice");
    add_user(&b, "b.test", "bob");
    let mut alice = login(&a, "a.test", "alice").await;
    let mut bob = login(&b, "b.test", "bob").await;
    alice
        .send("<message to='bob@b.test' type='chat'><body>over there</body><stanza-id xmlns='urn:xmpp:sid:0' by='bob@b.test' id='forged'/></message>")
        .await;
    let m = wait_for(&mut bob, |e| e.name == "message").await;
    let id = stanza_id(&m, "bob@b.test").expect("stamped by bob's server");
    assert_ne!(id, "forged");
    let (r, _) = query(&mut bob, "", "", "").await;
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].0.as_str(), body(&r[0].1).as_str()),
        (id.as_str(), "over there")
    );
    assert_eq!(r[0].1.get_attr("from"), Some("alice@a.test/r"));
    let (r, _) = query(&mut alice, "", "", "").await;
    assert_eq!(bodies(&r), ["over there"]);
    assert_eq!(r[0].1.get_attr("to"), Some("bob@b.test"));
}
