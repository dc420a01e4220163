//! XEP-0077: In-Band Registration against a real server: the form, account creation and the
//! user names it accepts, closed registration, and after authentication the registration
//! query, password change and cancellation.

mod common;
use common::*;

use kleiber::xml::{Element, StreamEvent};

const REG: &str = "jabber:iq:register";
const REGISTER_FEATURE: &str = "<register xmlns='http://jabber.org/features/iq-register'/>";

fn set_iq(id: &str, user: &str, pw: &str) -> String {
    format!("<iq type='set' id='{id}'><query xmlns='jabber:iq:register'><username>{user}</username><password>{pw}</password></query></iq>")
}

fn get_iq(id: &str) -> String {
    format!("<iq type='get' id='{id}'><query xmlns='jabber:iq:register'/></iq>")
}

/// Send `iq` and return the reply.
async fn ask(c: &mut Client, iq: &str) -> Element {
    c.send(iq).await;
    c.recv().await
}

/// The reply is an error with `condition` and `type`.
fn assert_error(r: &Element, id: &str, condition: &str, kind: &str) {
    let xml = r.to_xml("jabber:client");
    assert_eq!(r.get_attr("type"), Some("error"), "{xml}");
    assert_eq!(r.get_attr("id"), Some(id), "{xml}");
    assert_eq!(error_condition(r).as_deref(), Some(condition), "{xml}");
    let e = r.get_child("error", "jabber:client").unwrap();
    assert_eq!(e.get_attr("type"), Some(kind), "{xml}");
}

fn exists(s: &TestServer, user: &str) -> bool {
    s.shared().store.accounts.exists("localhost", user).unwrap()
}

fn has_register_feature(c: &Client) -> bool {
    c.features
        .get_child("register", "http://jabber.org/features/iq-register")
        .is_some()
}

/// A fresh registration on its own connection; returns the reply.
async fn register(s: &TestServer, user: &str, pw: &str) -> Element {
    let mut c = Client::direct(s.direct, "localhost").await;
    ask(&mut c, &set_iq("reg", user, pw)).await
}

fn is_result(r: &Element, id: &str) -> bool {
    r.is("iq", "jabber:client")
        && r.get_attr("type") == Some("result")
        && r.get_attr("id") == Some(id)
}

/// Logging in as `user` with `pw` works with SCRAM-SHA-256, SCRAM-SHA-1 and PLAIN.
async fn assert_login(s: &TestServer, user: &str, pw: &str) {
    for mech in ["SCRAM-SHA-256", "SCRAM-SHA-1"] {
        let mut c = Client::direct(s.direct, "localhost").await;
        c.auth_scram(mech, user, pw)
            .await
            .unwrap_or_else(|e| panic!("{mech} {user}: {e}"));
    }
    let mut c = Client::direct(s.direct, "localhost").await;
    c.auth_plain("", user, pw)
        .await
        .unwrap_or_else(|e| panic!("PLAIN {user}: {e}"));
}

/// Logging in as `user` with `pw` fails with every mechanism.
async fn assert_no_login(s: &TestServer, user: &str, pw: &str) {
    for mech in ["SCRAM-SHA-256", "SCRAM-SHA-1"] {
        let mut c = Client::direct(s.direct, "localhost").await;
        assert_eq!(
            c.auth_scram(mech, user, pw).await,
            Err("not-authorized".into()),
            "{mech} {user}"
        );
    }
    let mut c = Client::direct(s.direct, "localhost").await;
    assert_eq!(
        c.auth_plain("", user, pw).await,
        Err("not-authorized".into()),
        "PLAIN {user}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_before_authentication() {
    let s = TestServer::start();
    for mut c in [
        Client::starttls(s.starttls, "localhost").await,
        Client::direct(s.direct, "localhost").await,
    ] {
        let feature = c
            .features
            .get_child("register", "http://jabber.org/features/iq-register")
            .unwrap();
        assert_eq!(feature.to_xml("jabber:client"), REGISTER_FEATURE);
        let r = ask(&mut c, &get_iq("f1")).await;
        assert!(is_result(&r, "f1"), "{}", r.to_xml("jabber:client"));
        // No addresses on a stream without JIDs.
        assert_eq!(r.attrs.len(), 2, "{}", r.to_xml("jabber:client"));
        let q = r.get_child("query", REG).unwrap();
        let names: Vec<&str> = q.elements().map(|e| e.name.as_str()).collect();
        // User name and password only: no e-mail, no data form, no other field.
        assert_eq!(names, ["instructions", "username", "password"]);
        assert!(q.elements().all(|e| e.ns == REG));
        for f in ["username", "password"] {
            assert!(q.get_child(f, REG).unwrap().children.is_empty(), "{f}");
        }
        assert!(!q
            .get_child("instructions", REG)
            .unwrap()
            .text_content()
            .is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_then_log_in() {
    let s = TestServer::start();
    let mut c = Client::starttls(s.starttls, "localhost").await;
    let r = c.register("romeo", "s3cret").await;
    assert_eq!(r.to_xml("jabber:client"), "<iq type='result' id='reg1'/>");
    assert!(exists(&s, "romeo"));
    // On the same stream, right away.
    c.auth_scram("SCRAM-SHA-256", "romeo", "s3cret")
        .await
        .unwrap();
    assert_eq!(c.bind(Some("orchard")).await, "romeo@localhost/orchard");
    c.ping("p1").await;
    // And on new ones, with every mechanism.
    assert_login(&s, "romeo", "s3cret").await;
    assert_no_login(&s, "romeo", "wrong").await;
    // Over direct TLS too.
    let r = register(&s, "benvolio", "pw").await;
    assert_eq!(r.to_xml("jabber:client"), "<iq type='result' id='reg'/>");
    assert_login(&s, "benvolio", "pw").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taken_name_is_a_conflict() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    assert!(is_result(&register(&s, "romeo", "first").await, "reg"));
    for (user, pw) in [("romeo", "second"), ("ROMEO", "third"), ("juliet", "x")] {
        let r = register(&s, user, pw).await;
        assert_error(&r, "reg", "conflict", "cancel");
    }
    // The first registration's password is untouched.
    assert_login(&s, "romeo", "first").await;
    assert_no_login(&s, "romeo", "second").await;
    assert_login(&s, "juliet", "pw").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_user_names_are_not_acceptable() {
    let s = TestServer::start();
    let long = "x".repeat(1024);
    let bad = [
        "a@b",
        "a b",
        "",
        " ",
        "a/b",
        "a:b",
        "a&amp;b",
        "a&lt;b",
        "a&gt;b",
        "a&apos;b",
        "a&quot;b",
        "\u{FFFD}",
        "a\u{E000}b",
        "a\u{3000}b",
        long.as_str(),
    ];
    let mut c = Client::direct(s.direct, "localhost").await;
    for (i, user) in bad.iter().enumerate() {
        let id = format!("r{i}");
        let r = ask(&mut c, &set_iq(&id, user, "pw")).await;
        assert_error(&r, &id, "not-acceptable", "modify");
    }
    // The stream is still fine, and nothing was created.
    assert!(is_result(&ask(&mut c, &get_iq("g")).await, "g"));
    for user in ["a@b", "a b", "a", "b", "ab", "a/b"] {
        assert!(!exists(&s, user), "{user}");
    }
    // Missing fields are a bad request.
    let r = ask(&mut c, "<iq type='set' id='m'><query xmlns='jabber:iq:register'><password>pw</password></query></iq>").await;
    assert_error(&r, "m", "bad-request", "modify");
    let r = ask(&mut c, "<iq type='set' id='n'><query xmlns='jabber:iq:register'><username>nopw</username></query></iq>").await;
    assert_error(&r, "n", "bad-request", "modify");
    assert!(!exists(&s, "nopw"));
    // A localpart of 1023 bytes is the longest allowed, and it works.
    let longest = "x".repeat(1023);
    assert!(is_result(
        &ask(&mut c, &set_iq("l", &longest, "pw")).await,
        "l"
    ));
    let mut l = Client::bound(s.direct, &longest, "pw", "r").await;
    l.ping("p").await;
    // U+0000 cannot even be sent: the stream ends.
    let ev = c
        .send_and_next(set_iq("z", "a&#0;b", "pw").as_bytes())
        .await;
    match ev {
        Ok(StreamEvent::Element(e)) => {
            assert_eq!(
                stream_error_condition(&e).as_deref(),
                Some("not-well-formed")
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_names_are_normalised() {
    let s = TestServer::start();
    assert!(is_result(&register(&s, "Juliet", "pw").await, "reg"));
    assert!(exists(&s, "juliet"));
    assert!(!exists(&s, "Juliet"));
    assert_login(&s, "juliet", "pw").await;
    assert_login(&s, "JULIET", "pw").await;
    let mut c = Client::direct(s.direct, "localhost").await;
    c.auth_plain("", "JuLiEt", "pw").await.unwrap();
    assert_eq!(c.bind(Some("b")).await, "juliet@localhost/b");
    // Compatibility forms are folded too (NFKC): fullwidth R.
    assert!(is_result(&register(&s, "\u{FF32}omeo", "pw").await, "reg"));
    assert!(exists(&s, "romeo"));
    assert_login(&s, "romeo", "pw").await;
    assert_error(
        &register(&s, "ROMEO", "pw").await,
        "reg",
        "conflict",
        "cancel",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_registration() {
    let s = TestServer::start_with(|c| c.registration.open = false);
    s.add_user("juliet", "pw");
    for mut c in [
        Client::starttls(s.starttls, "localhost").await,
        Client::direct(s.direct, "localhost").await,
    ] {
        assert!(!has_register_feature(&c), "{:?}", c.features);
        assert_error(
            &ask(&mut c, &get_iq("g")).await,
            "g",
            "not-allowed",
            "cancel",
        );
        assert_error(
            &ask(&mut c, &set_iq("s", "romeo", "pw")).await,
            "s",
            "not-allowed",
            "cancel",
        );
        // The stream goes on: the client may still log in.
        c.auth_plain("", "juliet", "pw").await.unwrap();
    }
    assert!(!exists(&s, "romeo"));
    // Existing users still see their registration and may change their password.
    let mut c = Client::bound(s.direct, "juliet", "pw", "r").await;
    assert!(is_result(&ask(&mut c, &get_iq("g")).await, "g"));
    assert!(is_result(
        &ask(&mut c, &set_iq("c", "juliet", "new")).await,
        "c"
    ));
    assert_login(&s, "juliet", "new").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_registration_is_advertised_before_authentication_only() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    let mut c = Client::starttls(s.starttls, "localhost").await;
    assert!(has_register_feature(&c));
    c.auth_plain("", "juliet", "pw").await.unwrap();
    assert!(!has_register_feature(&c), "{:?}", c.features);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_query_after_authentication() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    let mut c = Client::direct(s.direct, "localhost").await;
    c.auth_plain("", "juliet", "pw").await.unwrap();
    // Before bind.
    assert_eq!(
        ask(&mut c, &get_iq("g0")).await.to_xml("jabber:client"),
        "<iq type='result' id='g0'><query xmlns='jabber:iq:register'><registered/><username>juliet</username><password/></query></iq>"
    );
    c.bind(Some("balcony")).await;
    assert_eq!(
        ask(&mut c, &get_iq("g1")).await.to_xml("jabber:client"),
        "<iq type='result' id='g1' to='juliet@localhost/balcony'><query xmlns='jabber:iq:register'><registered/><username>juliet</username><password/></query></iq>"
    );
    // Addressed to the server explicitly.
    assert_eq!(
        ask(&mut c, "<iq type='get' id='g2' to='localhost'><query xmlns='jabber:iq:register'/></iq>").await.to_xml("jabber:client"),
        "<iq type='result' id='g2' from='localhost' to='juliet@localhost/balcony'><query xmlns='jabber:iq:register'><registered/><username>juliet</username><password/></query></iq>"
    );
    // A logged-in user cannot register (or change) another account.
    let r = ask(&mut c, &set_iq("o", "romeo", "pw")).await;
    assert_error(&r, "o", "not-allowed", "cancel");
    assert!(!exists(&s, "romeo"));
    assert_login(&s, "juliet", "pw").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change() {
    let s = TestServer::start();
    s.add_user("juliet", "old");
    let mut c = Client::bound(s.direct, "juliet", "old", "balcony").await;
    assert_eq!(
        ask(&mut c, &set_iq("c1", "juliet", "new"))
            .await
            .to_xml("jabber:client"),
        "<iq type='result' id='c1' to='juliet@localhost/balcony'/>"
    );
    assert_no_login(&s, "juliet", "old").await;
    assert_login(&s, "juliet", "new").await;
    // The user name may be given in any case; invalid passwords are refused and change nothing.
    assert!(is_result(
        &ask(&mut c, &set_iq("c2", "Juliet", "newer")).await,
        "c2"
    ));
    for (i, pw) in [String::new(), "a".repeat(72), "pw\u{FFFD}".into()]
        .iter()
        .enumerate()
    {
        let id = format!("bad{i}");
        assert_error(
            &ask(&mut c, &set_iq(&id, "juliet", pw)).await,
            &id,
            "not-acceptable",
            "modify",
        );
    }
    assert_login(&s, "juliet", "newer").await;
    // The session itself goes on.
    c.ping("p").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    s.add_user("nurse", "pw");
    let mut a = Client::bound(s.direct, "juliet", "pw", "a").await;
    let mut b = s.online("juliet", "b").await;
    let mut other = Client::bound(s.direct, "nurse", "pw", "n").await;
    a.send("<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>")
        .await;
    assert_eq!(
        a.recv_xml().await,
        "<iq type='result' id='rm' to='juliet@localhost/a'/>"
    );
    a.expect_stream_error("not-authorized").await;
    a.expect_closed().await;
    // The account's other session is closed as well.
    b.expect_stream_error("not-authorized").await;
    b.expect_closed().await;
    assert!(!exists(&s, "juliet"));
    assert_no_login(&s, "juliet", "pw").await;
    // Other accounts are untouched; the name is blocked for a while (a stranger must not
    // take it over and receive what was meant for the old owner).
    other.ping("p").await;
    let r = register(&s, "juliet", "again").await;
    assert_eq!(error_condition(&r).as_deref(), Some("conflict"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_before_bind() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    let mut b = Client::bound(s.direct, "juliet", "pw", "b").await;
    let mut a = Client::direct(s.direct, "localhost").await;
    a.auth_plain("", "juliet", "pw").await.unwrap();
    a.send("<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>")
        .await;
    assert_eq!(a.recv_xml().await, "<iq type='result' id='rm'/>");
    a.expect_stream_error("not-authorized").await;
    a.expect_closed().await;
    b.expect_stream_error("not-authorized").await;
    b.expect_closed().await;
    assert!(!exists(&s, "juliet"));
}

/// Cancelling an account: its bound sessions are closed at once; a session that
/// authenticated before the deletion but had not bound yet can never come online (its bind
/// ends the stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_closes_unbound_sessions() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    let mut unbound = Client::direct(s.direct, "localhost").await;
    unbound.auth_plain("", "juliet", "pw").await.unwrap();
    let mut a = Client::bound(s.direct, "juliet", "pw", "a").await;
    a.send("<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>")
        .await;
    assert_eq!(
        a.recv_xml().await,
        "<iq type='result' id='rm' to='juliet@localhost/a'/>"
    );
    a.expect_stream_error("not-authorized").await;
    unbound
        .send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        .await;
    unbound.expect_stream_error("not-authorized").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_is_refused_before_authentication() {
    let s = TestServer::start();
    s.add_user("juliet", "pw");
    let mut c = Client::direct(s.direct, "localhost").await;
    let r = ask(
        &mut c,
        "<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>",
    )
    .await;
    assert_error(&r, "rm", "not-authorized", "auth");
    assert!(exists(&s, "juliet"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_rules() {
    let s = TestServer::start();
    // bcrypt uses 72 bytes; the server refuses anything it would have to truncate.
    let ok71 = "a".repeat(71);
    let ok71_multibyte = format!("{}a", "\u{E9}".repeat(35));
    for (user, pw) in [
        ("ascii", ok71.as_str()),
        ("accents", ok71_multibyte.as_str()),
    ] {
        assert_eq!(pw.len(), 71);
        assert!(is_result(&register(&s, user, pw).await, "reg"), "{user}");
        assert_login(&s, user, pw).await;
    }
    let too_long = "a".repeat(72);
    let too_long_multibyte = "\u{E9}".repeat(36);
    for (i, pw) in [
        too_long.as_str(),
        too_long_multibyte.as_str(),
        "",
        "pw\u{FFFD}",
        "a\u{E000}b",
    ]
    .iter()
    .enumerate()
    {
        let user = format!("refused{i}");
        assert_error(
            &register(&s, &user, pw).await,
            "reg",
            "not-acceptable",
            "modify",
        );
        assert!(!exists(&s, &user), "{pw:?}");
    }
}

/// Spam registrations: at most `limits.registrations_per_address_per_hour` from one address;
/// the address is held in memory only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_rate_limited_per_address() {
    let s = TestServer::start_with(|c| {
        c.limits.exempt_loopback = false;
        c.limits.registrations_per_address_per_hour = 2;
    });
    for (i, want) in [(0, None), (1, None), (2, Some("policy-violation"))] {
        let mut c = Client::starttls(s.starttls, "localhost").await;
        let r = c.register(&format!("spam{i}"), "pw").await;
        assert_eq!(error_condition(&r).as_deref(), want, "{i}");
    }
    assert!(!s
        .shared()
        .store
        .accounts
        .exists("localhost", "spam2")
        .unwrap());
}
