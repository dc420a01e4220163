//! XEP-0357 push notifications against a real server, with the app server played by an
//! XEP-0114 component (`push.localhost`): enable and disable with their errors, the
//! notification for a message to an account without a session (summary only by default, the
//! sender and body when the operator allows them), one notification per burst for a
//! hibernated stream-management session and for an account without a session until the app
//! server answers, a connected client that does not acknowledge, subscription requests,
//! retries without an answer and after `wait` errors, the per-account rate limit,
//! registrations removed after a gone-type error and with the account, the app server's
//! answers consumed, and an app server on another server (over s2s both ways).

mod common;
use common::component::{port_of, Comp};
use common::fed::wait_for;
use common::*;

use kleiber::config::{ComponentConfig, Config};
use kleiber::xml::Element;

const APP: &str = "push.localhost";
const SECRET: &str = "s3cret";
const PUSH: &str = "urn:xmpp:push:0";
const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const FORMS: &str = "jabber:x:data";

fn with_app_server(extra: impl FnOnce(&mut Config)) -> impl FnOnce(&mut Config) {
    move |c: &mut Config| {
        c.components = vec![ComponentConfig {
            domain: APP.to_owned(),
            secret: SECRET.to_owned(),
            listen: None,
            parent: None,
        }];
        extra(c);
    }
}

async fn app_server(s: &TestServer) -> Comp {
    Comp::connect(port_of(s), APP, SECRET).await
}

/// Send an IQ and wait for its answer.
async fn iq(c: &mut Client, id: &str, body: &str) -> Element {
    c.send(&format!("<iq type='set' id='{id}'>{body}</iq>"))
        .await;
    wait_for(c, |e| e.name == "iq" && e.get_attr("id") == Some(id)).await
}

fn enable(node: &str) -> String {
    format!(
        "<enable xmlns='{PUSH}' jid='{APP}' node='{node}'><x xmlns='{FORMS}' type='submit'>\
         <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
         <field var='secret'><value>eruio234vzxc2kla-91</value></field></x></enable>"
    )
}

/// Juliet, with push enabled for `node` in a session that then goes unavailable (the
/// router has handled that once her own unavailable presence comes back) and ends.
async fn registered_then_offline(s: &TestServer, node: &str) {
    let mut j = s.online("juliet", "phone").await;
    let r = iq(&mut j, "en", &enable(node)).await;
    assert_eq!(
        r.get_attr("type"),
        Some("result"),
        "{}",
        r.to_xml("jabber:client")
    );
    j.send("<presence type='unavailable'/>").await;
    wait_for(&mut j, |e| {
        e.name == "presence" && e.get_attr("type") == Some("unavailable")
    })
    .await;
}

/// A server whose app server is connected, with juliet registered for `node` and away,
/// and romeo online: (server, app server, romeo).
async fn juliet_away(node: &str, cfg: impl FnOnce(&mut Config)) -> (TestServer, Comp, Client) {
    let s = TestServer::start_with(with_app_server(cfg));
    users(&s);
    let app = app_server(&s).await;
    registered_then_offline(&s, node).await;
    let r = s.online("romeo", "orchard").await;
    (s, app, r)
}

/// A chat message with `body` to juliet's bare JID.
async fn write(r: &mut Client, body: &str) {
    r.send(&format!(
        "<message to='juliet@localhost' type='chat'><body>{body}</body></message>"
    ))
    .await;
}

/// Wait (a hang guard, no timing assertion) until `done` holds; whether it did.
async fn eventually(done: impl Fn() -> bool) -> bool {
    for _ in 0..400 {
        if done() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    done()
}

/// A round trip to the server on `c`'s stream.
async fn sync(c: &mut Client, id: &str) {
    c.send(&format!(
        "<iq type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"
    ))
    .await;
    wait_for(c, |e| e.get_attr("id") == Some(id)).await;
}

/// The summary form's fields of a notification: (var, value).
fn summary(n: &Element) -> Vec<(String, String)> {
    let x = n
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("publish", PUBSUB))
        .and_then(|p| p.get_child("item", PUBSUB))
        .and_then(|i| i.get_child("notification", PUSH))
        .and_then(|n| n.get_child("x", FORMS))
        .expect("a notification with a summary form");
    x.elements()
        .map(|f| {
            let v = f.elements().map(Element::text_content).collect::<Vec<_>>();
            (
                f.get_attr("var").unwrap_or_default().to_owned(),
                v.join(","),
            )
        })
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], var: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == var)
        .map(|(_, v)| v.as_str())
}

fn registrations(s: &TestServer) -> Vec<String> {
    let list = s.shared().store.push.list("localhost", "juliet").unwrap();
    list.into_iter().map(|r| r.node).collect()
}

fn users(s: &TestServer) {
    for u in ["juliet", "romeo"] {
        s.add_user(u, "pw");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_disable_and_their_errors() {
    let s = TestServer::start_with(with_app_server(|c| c.push.max_per_account = 2));
    users(&s);
    let mut j = s.online("juliet", "phone").await;
    // XEP-0357 §5: the account advertises the feature.
    j.send("<iq type='get' id='d' to='juliet@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    let d = wait_for(&mut j, |e| e.get_attr("id") == Some("d")).await;
    assert!(d
        .to_xml("jabber:client")
        .contains(&format!("<feature var='{PUSH}'/>")));
    for (i, node) in ["n1", "n2", "n2", "n3"].iter().enumerate() {
        let r = iq(&mut j, &format!("e{i}"), &enable(node)).await;
        assert_eq!(r.get_attr("type"), Some("result"));
    }
    // At most two: n1, the oldest, made room for n3; n2 enabled twice is one registration.
    assert_eq!(registrations(&s), ["n2", "n3"]);
    let stored = &s.shared().store.push.list("localhost", "juliet").unwrap()[0];
    assert_eq!(
        stored.options.0,
        [("secret".to_owned(), vec!["eruio234vzxc2kla-91".to_owned()])]
    );
    let r = iq(
        &mut j,
        "d1",
        &format!("<disable xmlns='{PUSH}' jid='{APP}' node='n2'/>"),
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"));
    assert_eq!(registrations(&s), ["n3"]);
    let r = iq(
        &mut j,
        "d2",
        &format!("<disable xmlns='{PUSH}' jid='{APP}'/>"),
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"));
    assert!(registrations(&s).is_empty());
    for (body, condition) in [
        (format!("<enable xmlns='{PUSH}' node='n'/>"), "bad-request"),
        (format!("<disable xmlns='{PUSH}'/>"), "bad-request"),
        (
            format!("<enable xmlns='{PUSH}' jid='a@@b' node='n'/>"),
            "jid-malformed",
        ),
        (
            format!("<enable xmlns='{PUSH}' jid='juliet@localhost' node='n'/>"),
            "bad-request",
        ),
    ] {
        let r = iq(&mut j, "bad", &body).await;
        assert_eq!(error_condition(&r).as_deref(), Some(condition), "{body}");
    }
    j.send(&format!(
        "<iq type='get' id='g'><enable xmlns='{PUSH}' jid='{APP}'/></iq>"
    ))
    .await;
    let r = wait_for(&mut j, |e| e.get_attr("id") == Some("g")).await;
    assert_eq!(error_condition(&r).as_deref(), Some("bad-request"));
    assert!(registrations(&s).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switched_off_push_is_not_offered() {
    let s = TestServer::start_with(|c| c.push.enabled = false);
    users(&s);
    let mut j = s.online("juliet", "phone").await;
    j.send("<iq type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    let d = wait_for(&mut j, |e| e.get_attr("id") == Some("d")).await;
    assert!(!d.to_xml("jabber:client").contains(PUSH));
    let r = iq(&mut j, "e", &enable("n")).await;
    assert_eq!(error_condition(&r).as_deref(), Some("service-unavailable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_message_pushes_the_summary_only() {
    let (_server, mut app, mut r) = juliet_away("yxs32uqsflafdk3iuqo", |_| {}).await;
    // A chat state alone is kept offline but is no reason to wake the phone.
    r.send("<message to='juliet@localhost' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>").await;
    write(&mut r, "Wherefore art thou?").await;
    let n = app.recv_named("iq").await;
    let xml = n.to_xml("jabber:client");
    assert_eq!(n.get_attr("type"), Some("set"));
    assert_eq!(n.get_attr("from"), Some("juliet@localhost"), "{xml}");
    assert_eq!(n.get_attr("to"), Some(APP));
    let publish = n
        .get_child("pubsub", PUBSUB)
        .unwrap()
        .get_child("publish", PUBSUB)
        .unwrap();
    assert_eq!(publish.get_attr("node"), Some("yxs32uqsflafdk3iuqo"));
    // Triggered by the second message: both wait.
    assert_eq!(
        summary(&n),
        [
            ("FORM_TYPE".to_owned(), "urn:xmpp:push:summary".to_owned()),
            ("message-count".to_owned(), "2".to_owned()),
        ],
        "{xml}"
    );
    assert!(
        !xml.contains("Wherefore") && !xml.contains("romeo"),
        "{xml}"
    );
    assert!(
        xml.contains("<publish-options><x xmlns='jabber:x:data' type='submit'>"),
        "{xml}"
    );
    assert!(
        xml.contains(
            "<field var='secret' type='text-single'><value>eruio234vzxc2kla-91</value></field>"
        ),
        "{xml}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_and_body_only_when_the_operator_allows_them() {
    let (_server, mut app, mut r) = juliet_away("n", |c| {
        c.push.include_sender = true;
        c.push.include_body = true;
    })
    .await;
    write(&mut r, "Wherefore art thou?").await;
    let f = summary(&next_push(&mut app, Some(RESULT)).await);
    assert_eq!(field(&f, "last-message-sender"), Some("romeo@localhost"));
    assert_eq!(field(&f, "last-message-body"), Some("Wherefore art thou?"));
    // An encrypted message: its fallback body is not the message, and is not sent.
    r.send("<message to='juliet@localhost' type='chat'><body>OMEMO</body><encrypted xmlns='eu.siacs.conversations.axolotl'><payload>x</payload></encrypted></message>").await;
    let f = summary(&next_push(&mut app, Some(RESULT)).await);
    assert_eq!(field(&f, "message-count"), Some("2"));
    assert_eq!(field(&f, "last-message-sender"), Some("romeo@localhost"));
    assert_eq!(field(&f, "last-message-body"), None);
    // An incoming call (XEP-0353).
    r.send("<message to='juliet@localhost' type='chat'><propose xmlns='urn:xmpp:jingle-message:0' id='c1'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose></message>").await;
    let f = summary(&next_push(&mut app, Some(RESULT)).await);
    assert_eq!(field(&f, "message-count"), Some("3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_request_to_an_account_without_session_pushes() {
    let (_server, mut app, mut r) = juliet_away("n", |_| {}).await;
    r.send("<presence to='juliet@localhost' type='subscribe'/>")
        .await;
    let f = summary(&next_push(&mut app, Some(RESULT)).await);
    assert_eq!(field(&f, "pending-subscription-count"), Some("1"));
    assert_eq!(field(&f, "message-count"), Some("0"));
}

/// Log in, bind, be available, enable push for `node` and SM with resumption; returns the
/// resumption id.
async fn resumable_with_push(s: &TestServer, node: &str) -> (Client, String) {
    let mut j = s.online("juliet", "phone").await;
    let r = iq(&mut j, "en", &enable(node)).await;
    assert_eq!(r.get_attr("type"), Some("result"));
    j.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await;
    let en = wait_for(&mut j, |e| e.name == "enabled").await;
    (j, en.get_attr("id").unwrap().to_owned())
}

/// Resume `id` with everything acknowledged, reading the `n` messages sent again.
async fn resume(s: &TestServer, id: &str, n: usize) -> Client {
    let mut j = Client::starttls(s.starttls, "localhost").await;
    j.auth_scram("SCRAM-SHA-256", "juliet", "pw").await.unwrap();
    j.send(&format!(
        "<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='0'/>"
    ))
    .await;
    let e = j.recv().await;
    assert_eq!(e.name, "resumed", "{}", e.to_xml("jabber:client"));
    let mut seen = 0;
    while seen < n {
        if j.recv().await.name == "message" {
            seen += 1;
        }
    }
    j
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hibernated_session_gets_one_push_per_burst() {
    let s = TestServer::start_with(with_app_server(|_| {}));
    users(&s);
    let mut app = app_server(&s).await;
    let (j, id) = resumable_with_push(&s, "n").await;
    let mut r = s.online("romeo", "orchard").await;
    drop(j);
    // Messages until the server noticed the connection is gone and the first notification
    // comes; then more of the same burst.
    let msg = "<message to='juliet@localhost/phone' type='chat'><body>hi</body></message>";
    let mut sent = 0;
    let first = loop {
        r.send(msg).await;
        sent += 1;
        let got = tokio::time::timeout(std::time::Duration::from_millis(200), app.recv()).await;
        if let Ok(e) = got {
            break e;
        }
        assert!(sent < 50, "no notification for a hibernated session");
    };
    assert_eq!(first.get_attr("from"), Some("juliet@localhost"));
    let f = summary(&first);
    assert_eq!(field(&f, "pending-subscription-count"), None);
    answer_push(&mut app, &first, RESULT).await;
    for _ in 0..5 {
        r.send(msg).await;
    }
    sync(&mut r, "sync").await;
    // Nothing went offline: the session waits for its client.
    let spool = s.shared().store.offline.usage("localhost", "juliet");
    assert_eq!(spool.unwrap().count, 0);
    // The client comes back (a new burst may then begin), and goes again: a subscription
    // request is the next thing the app server hears of, not another push of the burst.
    let j = resume(&s, &id, sent + 5).await;
    drop(j);
    let mut first_of_next = None;
    for _ in 0..50 {
        r.send("<presence to='juliet@localhost' type='subscribe'/>")
            .await;
        let got = tokio::time::timeout(std::time::Duration::from_millis(200), app.recv()).await;
        if let Ok(e) = got {
            first_of_next = Some(e);
            break;
        }
    }
    let f = summary(&first_of_next.expect("a notification for the second hibernation"));
    assert_eq!(field(&f, "pending-subscription-count"), Some("1"), "{f:?}");
}

/// The app server's next notification, answered with `answer` (`ID` stands for its id), if
/// given; then the push service has the answer (see [`app_sync`]).
async fn next_push(app: &mut Comp, answer: Option<&str>) -> Element {
    let n = app.recv_named("iq").await;
    if let Some(a) = answer {
        answer_push(app, &n, a).await;
    }
    n
}

/// Answer the notification `n` with `answer` (`ID` stands for its id); then the push
/// service has the answer (see [`app_sync`]).
async fn answer_push(app: &mut Comp, n: &Element, answer: &str) {
    let a = answer
        .replace("ID", n.get_attr("id").unwrap())
        .replace("FROM", APP)
        .replace("TO", "juliet@localhost");
    app.send(&a).await;
    app_sync(app).await;
}

/// A ping of the server from the app server, answered: what the app server sent before (an
/// answer to a notification) is with the push service before anything sent after this
/// reaches it. No notification may come meanwhile.
async fn app_sync(app: &mut Comp) {
    app.send(&format!(
        "<iq type='get' id='sync' from='{APP}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
    ))
    .await;
    let r = app.recv_named("iq").await;
    assert_eq!(
        r.get_attr("id"),
        Some("sync"),
        "{}",
        r.to_xml("jabber:client")
    );
}

const RESULT: &str = "<iq type='result' id='ID' from='FROM' to='TO'/>";

fn error(kind: &str, condition: &str) -> String {
    format!("<iq type='error' id='ID' from='FROM' to='TO'><error type='{kind}'><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
}

fn quick_retries(c: &mut Config) {
    c.push.timeout_secs = 1;
    c.push.retry_backoff_secs = 1;
    c.push.retries = 3;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_without_an_answer_and_after_wait_errors() {
    let (s, mut app, mut r) = juliet_away("n", quick_retries).await;
    write(&mut r, "1").await;
    // No answer: sent again (a new id, the same notification); then a `wait` error: again.
    let first = next_push(&mut app, None).await;
    let second = next_push(&mut app, Some(&error("wait", "resource-constraint"))).await;
    assert_ne!(first.get_attr("id"), second.get_attr("id"));
    assert_eq!(summary(&first), summary(&second));
    // An answer from another JID than the app server's does not count.
    let third = next_push(
        &mut app,
        Some(&RESULT.replace("FROM", "someone@push.localhost")),
    )
    .await;
    let fourth = next_push(&mut app, Some(RESULT)).await;
    assert_eq!(summary(&first), summary(&third));
    assert_eq!(summary(&first), summary(&fourth));
    // Accepted: the registration stays and the next message has its own notification (two
    // messages wait), after more than a retry's time without one of the first again.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    write(&mut r, "2").await;
    let f = summary(&next_push(&mut app, Some(RESULT)).await);
    assert_eq!(field(&f, "message-count"), Some("2"));
    assert_eq!(registrations(&s), ["n"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_consumed_and_failed_ones_not_retried() {
    let (s, mut app, mut r) = juliet_away("n", quick_retries).await;
    write(&mut r, "1").await;
    // A refusal that is not about the registration: dropped, not retried, registration kept.
    next_push(&mut app, Some(&error("modify", "bad-request"))).await;
    // (More than a retry's time, in which a retry of it would come.)
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    write(&mut r, "2").await;
    let f = summary(&next_push(&mut app, Some(RESULT)).await);
    assert_eq!(
        field(&f, "message-count"),
        Some("2"),
        "the refused one was sent again"
    );
    assert_eq!(registrations(&s), ["n"]);
    // The answers went to the push service, not to juliet (who gets nothing when she logs in
    // but her two messages).
    // (Logged in by hand: the kept messages may come before the own presence.)
    let mut j = Client::starttls(s.starttls, "localhost").await;
    j.auth_scram("SCRAM-SHA-256", "juliet", "pw").await.unwrap();
    j.bind(Some("laptop")).await;
    j.send("<presence/>").await;
    for _ in 0..2 {
        let m = wait_for(&mut j, |e| e.name != "presence").await;
        assert_eq!(m.name, "message", "{}", m.to_xml("jabber:client"));
    }
    j.send("<iq type='get' id='after'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let last = wait_for(&mut j, |e| e.name != "presence").await;
    assert_eq!(
        last.get_attr("id"),
        Some("after"),
        "{}",
        last.to_xml("jabber:client")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_registration_is_removed() {
    let (s, mut app, mut r) = juliet_away("n", quick_retries).await;
    write(&mut r, "1").await;
    next_push(&mut app, Some(&error("cancel", "item-not-found"))).await;
    let gone = eventually(|| registrations(&s).is_empty()).await;
    assert!(gone, "item-not-found removes the registration");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_deletion_removes_the_registrations() {
    let s = TestServer::start_with(with_app_server(|_| {}));
    users(&s);
    let mut j = s.online("juliet", "phone").await;
    for node in ["a", "b"] {
        iq(&mut j, node, &enable(node)).await;
    }
    assert_eq!(registrations(&s).len(), 2);
    let r = iq(
        &mut j,
        "bye",
        "<query xmlns='jabber:iq:register'><remove/></query>",
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"));
    assert!(s.shared().store.entries("push").unwrap().is_empty());
}

/// The app server on another server: the notification goes over s2s (from the user's bare
/// JID) to a component of `b.test`, and its answer comes back over s2s to the push service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_app_server_over_s2s() {
    use common::fed::{add_user, login};
    use common::s2s::start_domain;
    let (pa, pb) = (free_port(), free_port());
    let (to_a, to_b) = (format!("127.0.0.1:{pa}"), format!("127.0.0.1:{pb}"));
    let a = start_domain(
        "a.test",
        pa,
        &[("b.test", to_b.clone()), ("push.b.test", to_b)],
        None,
        &|_| {},
    );
    let b = start_domain("b.test", pb, &[("a.test", to_a)], None, &|c| {
        c.components = vec![ComponentConfig {
            domain: "push.b.test".to_owned(),
            secret: SECRET.to_owned(),
            listen: None,
            parent: Some("b.test".to_owned()),
        }];
    });
    let mut app = Comp::connect(port_of(&b), "push.b.test", SECRET).await;
    for u in ["juliet", "romeo"] {
        add_user(&a, "a.test", u);
    }
    let mut j = login(&a, "a.test", "juliet").await;
    let en = enable("n").replace(APP, "push.b.test");
    assert_eq!(iq(&mut j, "en", &en).await.get_attr("type"), Some("result"));
    j.send("<presence type='unavailable'/>").await;
    wait_for(&mut j, |e| e.get_attr("type") == Some("unavailable")).await;
    let mut r = login(&a, "a.test", "romeo").await;
    r.send("<message to='juliet@a.test' type='chat'><body>far</body></message>")
        .await;
    let n = app.recv_named("iq").await;
    assert_eq!(n.get_attr("from"), Some("juliet@a.test"));
    assert_eq!(field(&summary(&n), "message-count"), Some("1"));
    app.send(&format!(
        "<iq type='error' id='{}' from='push.b.test' to='juliet@a.test'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        n.get_attr("id").unwrap()
    ))
    .await;
    let store = &a.shared().store.push;
    let gone = eventually(|| store.list("a.test", "juliet").unwrap().is_empty()).await;
    assert!(gone, "the answer came back over s2s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_burst_gets_one_push_until_the_app_server_answers() {
    let (_server, mut app, mut r) = juliet_away("n", |_| {}).await;
    for body in ["1", "2", "3"] {
        write(&mut r, body).await;
    }
    // A bounce from the spool: it has handled the three before.
    r.send("<message to='nobody@localhost' type='chat' id='x'><body>?</body></message>")
        .await;
    wait_for(&mut r, |e| e.get_attr("id") == Some("x")).await;
    let first = next_push(&mut app, Some(RESULT)).await;
    let count = field(&summary(&first), "message-count")
        .unwrap()
        .parse::<u32>();
    assert!(matches!(count, Ok(1..=3)), "{count:?}");
    // Answered: the next message has a notification of its own, and it is the next one the
    // app server gets (none for messages 2 and 3).
    write(&mut r, "4").await;
    let next = next_push(&mut app, Some(RESULT)).await;
    assert_eq!(field(&summary(&next), "message-count"), Some("4"));
}

/// The next stanza for `j` (acks requests counted out), adding it to `received`.
async fn stanza(j: &mut Client, received: &mut u32) -> Element {
    loop {
        let e = j.recv().await;
        if e.name != "r" {
            *received += 1;
            return e;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_but_silent_client_is_notified_after_the_ack_delay() {
    let s = TestServer::start_with(with_app_server(|c| {
        c.push.ack_delay_secs = 2;
        c.push.include_body = true;
    }));
    users(&s);
    let mut app = app_server(&s).await;
    let (mut j, _) = resumable_with_push(&s, "n").await;
    let mut r = s.online("romeo", "orchard").await;
    let to_j = |body: &str| {
        format!("<message to='juliet@localhost/phone' type='chat'><body>{body}</body></message>")
    };
    let mut received = 0;
    let pause = std::time::Duration::from_millis(3500);
    // A client that acknowledges in time: no notification (a later one would say "one").
    r.send(&to_j("one")).await;
    assert_eq!(stanza(&mut j, &mut received).await.name, "message");
    j.send(&format!("<a xmlns='urn:xmpp:sm:3' h='{received}'/>"))
        .await;
    tokio::time::sleep(pause).await;
    // Silent: notified once, for the first message ...
    r.send(&to_j("two")).await;
    stanza(&mut j, &mut received).await;
    let f = summary(&next_push(&mut app, Some(RESULT)).await);
    assert_eq!(field(&f, "last-message-body"), Some("two"));
    // ... and not again while it stays silent (a notification would say "three").
    r.send(&to_j("three")).await;
    stanza(&mut j, &mut received).await;
    tokio::time::sleep(pause).await;
    // Awake again, then silent again: a new burst.
    j.send(&format!("<a xmlns='urn:xmpp:sm:3' h='{received}'/>"))
        .await;
    sync(&mut j, "awake").await;
    r.send(&to_j("four")).await;
    let f = summary(&next_push(&mut app, Some(RESULT)).await);
    assert_eq!(field(&f, "last-message-body"), Some("four"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_per_account_are_rate_limited() {
    let s = TestServer::start_with(with_app_server(|c| c.push.max_per_minute = 1));
    users(&s);
    let mut app = app_server(&s).await;
    // Two devices of juliet's: one message would notify both, but one a minute may go.
    let mut j = s.online("juliet", "phone").await;
    for node in ["a", "b"] {
        let r = iq(&mut j, node, &enable(node)).await;
        assert_eq!(r.get_attr("type"), Some("result"));
    }
    j.send("<presence type='unavailable'/>").await;
    wait_for(&mut j, |e| e.get_attr("type") == Some("unavailable")).await;
    let mut r = s.online("romeo", "orchard").await;
    write(&mut r, "1").await;
    // The second would have been routed right behind the first, ahead of the sync's answer.
    next_push(&mut app, Some(RESULT)).await;
}
