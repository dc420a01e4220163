//! XEP-0160 offline messages against the real binary: kept across SIGKILL once the flush
//! window has passed, and across a clean restart; the quota; delivery order and stamps.

mod common;
use common::*;

async fn register_and_login(addr: std::net::SocketAddr, user: &str) -> Client {
    let mut c = Client::starttls(addr, "localhost").await;
    let r = c.register(user, "pw").await;
    assert_eq!(
        r.get_attr("type"),
        Some("result"),
        "{}",
        r.to_xml("jabber:client")
    );
    c.auth_scram("SCRAM-SHA-256", user, "pw").await.unwrap();
    c.bind(Some("r")).await;
    c
}

async fn login(addr: std::net::SocketAddr, user: &str) -> Client {
    let mut c = Client::starttls(addr, "localhost").await;
    c.auth_scram("SCRAM-SHA-256", user, "pw").await.unwrap();
    c.bind(Some("r")).await;
    c
}

/// Send `<presence/>` and collect the offline messages that follow (until the own presence
/// and `n` messages have arrived).
async fn collect(c: &mut Client, n: usize) -> Vec<String> {
    c.send("<presence/>").await;
    let mut bodies = Vec::new();
    while bodies.len() < n {
        let e = c.recv().await;
        if e.name == "message" {
            assert!(e.get_child("delay", "urn:xmpp:delay").is_some());
            bodies.push(e.get_child("body", "jabber:client").unwrap().text_content());
        }
    }
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_survive_sigkill_after_the_flush_window() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let extra = "[storage]\nflush_window_ms = 100\n";
    let b = Binary::start(&data, extra, "info");
    let mut romeo = register_and_login(b.starttls, "romeo").await;
    drop(register_and_login(b.starttls, "juliet").await);
    let mut batch = String::new();
    for i in 0..200 {
        batch.push_str(&format!(
            "<message to='juliet@localhost' type='chat'><body>m{i}</body></message>"
        ));
    }
    romeo.send(&batch).await;
    // A ping round trip: the server has routed everything before it (one stream, in order),
    // and the spool handled it before...
    romeo
        .send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(romeo.recv().await.get_attr("id"), Some("p"));
    // ... the flush window (100 ms) passes, with margin for a loaded machine.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    b.kill9();
    let b = Binary::start(&data, extra, "info");
    let mut juliet = login(b.starttls, "juliet").await;
    let bodies = collect(&mut juliet, 200).await;
    let want: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, want, "all kept, oldest first");
    drop(juliet);
    // Delivered means gone: a second login gets nothing.
    let mut juliet = login(b.starttls, "juliet").await;
    juliet.send("<presence/>").await;
    assert_eq!(juliet.recv().await.name, "presence");
    juliet
        .send("<iq type='get' id='p2' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(juliet.recv().await.get_attr("id"), Some("p2"));
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_shutdown_keeps_everything_and_quota_bounces() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A long flush window: only the clean shutdown's flush can save the messages.
    let extra = "[storage]\nflush_window_ms = 10000\n[offline]\nmax_messages_per_user = 3\n";
    let b = Binary::start(&data, extra, "info");
    let mut romeo = register_and_login(b.starttls, "romeo").await;
    drop(register_and_login(b.starttls, "juliet").await);
    for i in 0..4 {
        romeo
            .send(&format!(
                "<message to='juliet@localhost' type='chat' id='q{i}'><body>q{i}</body></message>"
            ))
            .await;
    }
    // The fourth is over the quota.
    let e = romeo.recv().await;
    assert_eq!(
        (e.get_attr("id"), error_condition(&e).as_deref()),
        (Some("q3"), Some("service-unavailable"))
    );
    let lines = b.stop();
    assert!(
        lines.iter().any(|l| l.contains("offline storage full")),
        "logged as a delivery error"
    );
    let b = Binary::start(&data, extra, "info");
    let mut juliet = login(b.starttls, "juliet").await;
    assert_eq!(collect(&mut juliet, 3).await, ["q0", "q1", "q2"]);
    b.stop();
}

/// A backlog larger than the output queue limit is handed over in chunks as the client reads,
/// not all at once (which would trip the slow-reader limit and lose messages).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_backlog_is_delivered_completely() {
    let s = TestServer::start_with(|c| {
        c.offline.max_messages_per_user = 5000;
        c.offline.max_bytes_per_user = 8 * 1024 * 1024;
    });
    s.add_user("romeo", "pw");
    s.add_user("juliet", "pw");
    let mut r = s.online("romeo", "orchard").await;
    let filler = "x".repeat(1000);
    let n = 1500;
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let batch: String = chunk
            .iter()
            .map(|i| format!("<message to='juliet@localhost' type='chat'><body>{i} {filler}</body></message>"))
            .collect();
        r.send(&batch).await;
    }
    r.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(r.recv().await.get_attr("id"), Some("p"));
    for _ in 0..200 {
        if s.shared()
            .store
            .offline
            .usage("localhost", "juliet")
            .unwrap()
            .count
            == n
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let mut j = login(s.starttls, "juliet").await;
    let bodies = collect(&mut j, n as usize).await;
    for (i, b) in bodies.iter().enumerate() {
        assert!(
            b.starts_with(&format!("{i} ")),
            "message {i} out of order or missing"
        );
    }
    assert_eq!(s.shared().store.offline.total(), 0);
}
