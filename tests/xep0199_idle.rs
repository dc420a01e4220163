//! XEP-0199 pings of silent sessions: a client that answers stays, one that does not is
//! closed with `connection-timeout` (a phone that lost its network must not stay "online").

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sessions_are_pinged_and_dead_ones_closed() {
    let s = TestServer::start_with(|c| {
        c.limits.idle_ping_secs = 1;
        c.limits.ping_timeout_secs = 1;
    });
    s.add_user("juliet", "pw");
    s.add_user("romeo", "pw");
    let mut alive = s.online("juliet", "alive").await;
    let mut dead = s.online("romeo", "dead").await;
    // The live client answers two pings and is still there.
    for _ in 0..2 {
        let ping = loop {
            let e = alive.recv().await;
            if e.get_child("ping", "urn:xmpp:ping").is_some() {
                break e;
            }
        };
        assert_eq!(ping.get_attr("from"), Some("localhost"));
        let id = ping.get_attr("id").unwrap();
        alive
            .send(&format!("<iq type='result' id='{id}' to='localhost'/>"))
            .await;
    }
    // The silent one gets a ping, does not answer, and is closed.
    loop {
        let e = dead.recv().await;
        if e.name == "error" {
            assert!(e
                .get_child("connection-timeout", "urn:ietf:params:xml:ns:xmpp-streams")
                .is_some());
            break;
        }
    }
    alive
        .send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    loop {
        let e = alive.recv().await;
        if e.get_attr("id") == Some("p") {
            break;
        }
        if let Some(id) = e.get_child("ping", "urn:xmpp:ping").and(e.get_attr("id")) {
            alive
                .send(&format!("<iq type='result' id='{id}' to='localhost'/>"))
                .await;
        }
    }
}
