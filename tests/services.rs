//! Internal services on the destination table (issue 15): a service domain owned by an actor
//! (the test echo service of `tests/common/echo.rs`) is reached by local users and, over
//! server-to-server links, by users of other servers; it is listed in its host's disco#items;
//! stanzas for it bounce with `service-unavailable` (into the delivery-error log) while it is
//! down.

mod common;
use common::echo::echo;
use common::fed::*;
use common::s2s::*;
use common::*;

use kleiber::xml::Element;

fn with_echo(domain: &str, parent: &str) -> Vec<(kleiber::actors::ServiceSpec, String)> {
    vec![(echo(domain), parent.to_owned())]
}

async fn iq(c: &mut Client, id: &str, body: &str) -> Element {
    c.send(&body.replace("ID", id)).await;
    wait_for(c, |e| e.name == "iq" && e.get_attr("id") == Some(id)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_users_reach_a_service_and_get_errors_when_it_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(dir.path());
    let s = TestServer::start_with_services(dir, cfg, with_echo("echo.localhost", "localhost"));
    s.add_user("juliet", "pw");
    let mut j = s.online("juliet", "balcony").await;

    for to in [
        "echo.localhost",
        "room@echo.localhost",
        "room@echo.localhost/nick",
    ] {
        j.send(&format!(
            "<message to='{to}' type='chat'><body>hi</body></message>"
        ))
        .await;
        let m = wait_for(&mut j, |e| e.name == "message").await;
        assert_eq!(m.get_attr("from"), Some(to));
        assert_eq!(body(&m).as_deref(), Some("echo: hi"));
    }
    // The service answers for its domain, not the server.
    let info = "http://jabber.org/protocol/disco#info";
    let r = iq(
        &mut j,
        "i1",
        &format!("<iq type='get' id='ID' to='echo.localhost'><query xmlns='{info}'/></iq>"),
    )
    .await;
    let id = r
        .get_child("query", info)
        .unwrap()
        .get_child("identity", info)
        .unwrap();
    assert_eq!(id.get_attr("category"), Some("component"));
    // Listed under its host.
    let items = "http://jabber.org/protocol/disco#items";
    let r = iq(
        &mut j,
        "i2",
        &format!("<iq type='get' id='ID' to='localhost'><query xmlns='{items}'/></iq>"),
    )
    .await;
    let listed: Vec<_> = r
        .get_child("query", items)
        .unwrap()
        .elements()
        .filter_map(|i| i.get_attr("jid"))
        .collect();
    // With the group-chat, upload and file-transfer proxy services every host has by default.
    assert_eq!(
        listed,
        [
            "conference.localhost",
            "echo.localhost",
            "proxy.localhost",
            "upload.localhost"
        ]
    );

    // Down: messages and IQs bounce, and the failure is logged.
    j.send("<message to='echo.localhost'><body>stop</body></message>")
        .await;
    j.send("<message to='room@echo.localhost' type='chat' id='m1'><body>anyone?</body></message>")
        .await;
    let e = wait_for(&mut j, |e| e.name == "message").await;
    assert_eq!(e.get_attr("type"), Some("error"));
    assert_eq!(e.get_attr("id"), Some("m1"));
    assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));
    let r = iq(
        &mut j,
        "i3",
        &format!("<iq type='get' id='ID' to='echo.localhost'><query xmlns='{info}'/></iq>"),
    )
    .await;
    assert_eq!(error_condition(&r).as_deref(), Some("service-unavailable"));
    let logged = delivery_error(&s, "room@echo.localhost").await;
    assert!(
        logged.reason.starts_with("service-unavailable"),
        "{logged:?}"
    );
}

/// A service's IQ to a local account's bare JID (a room fetching an occupant's vCard) is
/// answered by the server on the account's behalf, through the router; one to an account
/// that does not exist gets `service-unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_asks_for_an_accounts_vcard() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(dir.path());
    let s = TestServer::start_with_services(dir, cfg, with_echo("echo.localhost", "localhost"));
    s.add_user("juliet", "pw");
    s.add_user("romeo", "pw");
    let mut j = s.online("juliet", "balcony").await;
    let vcard = "<vCard xmlns='vcard-temp'><FN>Romeo</FN></vCard>";
    let r = iq(
        &mut j,
        "v0",
        &format!("<iq type='set' id='ID'>{vcard}</iq>"),
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"));
    for (who, answer) in [
        ("romeo@localhost", "answer: result"),
        ("juliet@localhost", "answer: result"),
        ("nobody@localhost", "answer: error service-unavailable"),
    ] {
        j.send(&format!(
            "<message to='echo.localhost' type='chat'><body>ask {who}</body></message>"
        ))
        .await;
        let m = wait_for(&mut j, |e| e.name == "message").await;
        assert_eq!(body(&m).as_deref(), Some(answer), "{who}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_users_reach_a_service_over_federation() {
    let (pa, pb) = (free_port(), free_port());
    let route_a = format!("127.0.0.1:{pa}");
    let a = start_domain_with(
        "a.test",
        pa,
        &[("b.test", format!("127.0.0.1:{pb}"))],
        None,
        &|_| {},
        with_echo("echo.a.test", "a.test"),
    );
    let b = start_domain(
        "b.test",
        pb,
        &[("a.test", route_a.clone()), ("echo.a.test", route_a)],
        None,
        &|_| {},
    );
    add_user(&b, "b.test", "bob");
    let mut bob = login(&b, "b.test", "bob").await;
    bob.send("<message to='room@echo.a.test/x' type='chat'><body>from afar</body></message>")
        .await;
    let m = wait_for(&mut bob, |e| e.name == "message").await;
    assert_eq!(m.get_attr("from"), Some("room@echo.a.test/x"));
    assert_eq!(body(&m).as_deref(), Some("echo: from afar"));
    drop(a);
}
