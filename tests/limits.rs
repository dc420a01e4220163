//! Abuse limits that need no timing: unauthenticated connections per address and in all
//! (slowloris), the loopback exemption, strangers, the shaper.

mod common;
use common::*;

use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_connections_per_address_are_capped() {
    let s = TestServer::start_with(|c| {
        c.limits.exempt_loopback = false;
        c.limits.max_unauthenticated_per_address = 2;
    });
    // Two connections that stop before TLS hold the address's places (each has had its
    // features, so the server surely counts it)...
    let held = vec![
        held_from(1, s.starttls).await,
        held_from(1, s.starttls).await,
    ];
    // ... so a third is closed at once, without a byte.
    let mut c = tokio::net::TcpStream::connect(s.starttls).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, c.read(&mut buf))
        .await
        .expect("closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // When they go, logins work again.
    drop(held);
    s.add_user("juliet", "pw");
    let mut ok = false;
    for _ in 0..100 {
        let tcp = tokio::net::TcpStream::connect(s.direct).await.unwrap();
        if let Ok(tls) = try_tls_connect(tcp, None).await {
            let mut cl = Client::over_tls(tls, "localhost").await;
            cl.auth_plain("", "juliet", "pw").await.unwrap();
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(ok);
}

/// A connection from `127.0.0.<last>` that has sent its header and had the features.
async fn held_from(last: u8, to: std::net::SocketAddr) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(std::net::SocketAddr::from(([127, 0, 0, last], 0)))
        .unwrap();
    let mut t = sock.connect(to).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut t, header("localhost").as_bytes())
        .await
        .unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 1024];
    while !got.contains("</stream:features>") {
        let n = t.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    t
}

/// A slowloris from many addresses: the cap on unfinished handshakes from all addresses
/// together closes further ones at once, and logged-in sessions go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_connections_in_all_are_capped() {
    let s = TestServer::start_with(|c| {
        c.limits.exempt_loopback = false;
        c.limits.max_unauthenticated_per_address = 5;
        c.limits.max_unauthenticated = 2;
    });
    s.add_user("juliet", "pw");
    let mut j = Client::bound(s.direct, "juliet", "pw", "r").await;
    let held = vec![
        held_from(2, s.starttls).await,
        held_from(3, s.starttls).await,
    ];
    // A third address, with no connection of its own yet, is closed at once.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(std::net::SocketAddr::from(([127, 0, 0, 4], 0)))
        .unwrap();
    let mut c = sock.connect(s.starttls).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, c.read(&mut buf))
        .await
        .expect("closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // The session that was logged in before is not affected.
    j.ping("still").await;
    // Once they go, new connections are served again.
    drop(held);
    let mut ok = false;
    for _ in 0..100 {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(std::net::SocketAddr::from(([127, 0, 0, 4], 0)))
            .unwrap();
        let mut t = sock.connect(s.starttls).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut t, header("localhost").as_bytes())
            .await
            .unwrap();
        if let Ok(Ok(n)) = tokio::time::timeout(WAIT, t.read(&mut buf)).await {
            if n > 0 {
                ok = true;
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(ok);
}

/// The traffic shaper slows a client down but loses nothing: everything it sends arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shaped_clients_are_slowed_not_cut() {
    // Burst = the stanza limit (10 kB here), so the 16 kB sent below must wait for tokens.
    let s = TestServer::start_with(|c| {
        c.limits.exempt_loopback = false;
        c.limits.max_bytes_per_second = 4000;
        c.limits.max_stanza_bytes = 10_000;
    });
    s.add_user("juliet", "pw");
    let mut j = s.online("juliet", "a").await;
    let filler = "y".repeat(500);
    let batch: String = (0..30)
        .map(|i| format!("<message to='juliet@localhost/a' type='chat' id='m{i}'><body>{filler}</body></message>"))
        .collect();
    j.send(&batch).await;
    for i in 0..30 {
        let e = j.recv().await;
        assert_eq!(e.get_attr("id"), Some(format!("m{i}").as_str()));
    }
}

/// Spam from strangers: messages from people not on the roster are limited per session and
/// hour; contacts are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_strangers_are_limited() {
    let s = TestServer::start_with(|c| {
        c.limits.exempt_loopback = false;
        c.limits.stranger_messages_per_hour = 2;
    });
    for u in ["juliet", "spammer", "romeo"] {
        s.add_user(u, "pw");
    }
    let both = kleiber::roster::Item {
        in_roster: true,
        to: true,
        from: true,
        ..Default::default()
    };
    s.shared()
        .store
        .rosters
        .put("localhost", "juliet", "romeo@localhost", &both)
        .unwrap();
    let mut j = s.online("juliet", "a").await;
    let mut sp = s.online("spammer", "x").await;
    let mut r = s.online("romeo", "y").await;
    third_is_refused(&mut sp, &mut j, "").await;
    // A contact is not limited.
    for i in 0..3 {
        r.send(&format!(
            "<message to='juliet@localhost/a' type='chat' id='r{i}'><body>hi</body></message>"
        ))
        .await;
        assert_eq!(
            j.recv().await.get_attr("id"),
            Some(format!("r{i}").as_str())
        );
    }
}

/// Clients on the machine itself (a local load generator) are exempt by default, as in Prosody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_clients_are_exempt_by_default() {
    let s = TestServer::start_with(|c| {
        c.limits.registrations_per_address_per_hour = 1;
        c.limits.stranger_messages_per_hour = 1;
    });
    for u in ["a", "b", "c"] {
        let mut cl = Client::starttls(s.starttls, "localhost").await;
        assert_eq!(
            cl.register(u, "pw").await.get_attr("type"),
            Some("result"),
            "{u}"
        );
    }
    let mut a = s.online("a", "r").await;
    let mut b = s.online("b", "r").await;
    for i in 0..3 {
        b.send(&format!(
            "<message to='a@localhost/r' type='chat' id='m{i}'><body>x</body></message>"
        ))
        .await;
        assert_eq!(
            a.recv().await.get_attr("id"),
            Some(format!("m{i}").as_str())
        );
    }
}

/// Issue 14.10: a `<delay/>` the sender puts in its message does not exempt it from the
/// stranger limit (only the account's own offline messages, marked by the server, are
/// exempt: all of them arrive at the next login).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_senders_delay_does_not_bypass_the_stranger_limit() {
    let s = TestServer::start_with(|c| {
        c.limits.exempt_loopback = false;
        c.limits.stranger_messages_per_hour = 2;
    });
    for u in ["juliet", "spammer"] {
        s.add_user(u, "pw");
    }
    let mut sp = s.online("spammer", "x").await;
    // Three while juliet is offline: stored, and all delivered at her login.
    for i in 0..3 {
        sp.send(&format!(
            "<message to='juliet@localhost' type='chat' id='o{i}'><body>stored</body></message>"
        ))
        .await;
    }
    wait_offline(&s, "localhost", "juliet", 3).await;
    // Offline messages and the own presence come in either order: no `online()` here.
    let mut j = Client::starttls(s.starttls, "localhost").await;
    j.auth_scram("SCRAM-SHA-256", "juliet", "pw").await.unwrap();
    j.bind(Some("a")).await;
    j.send("<presence/>").await;
    for i in 0..3 {
        let e = common::fed::wait_for(&mut j, |e| e.name == "message").await;
        assert_eq!(e.get_attr("id"), Some(format!("o{i}").as_str()));
    }
    let delay = "<delay xmlns='urn:xmpp:delay' stamp='2020-01-01T00:00:00Z'/>";
    third_is_refused(&mut sp, &mut j, delay).await;
}

/// With a limit of 2: the stranger `sp` sends three messages (each with `extra` in it) to
/// `juliet@localhost/a`; two arrive, the third is refused with `policy-violation`.
async fn third_is_refused(sp: &mut Client, j: &mut Client, extra: &str) {
    for i in 0..3 {
        sp.send(&format!(
            "<message to='juliet@localhost/a' type='chat' id='s{i}'><body>buy</body>{extra}</message>"
        ))
        .await;
    }
    for i in 0..2 {
        let e = common::fed::wait_for(j, |e| e.name == "message").await;
        assert_eq!(e.get_attr("id"), Some(format!("s{i}").as_str()));
    }
    let e = sp.recv().await;
    assert_eq!(
        (e.get_attr("id"), error_condition(&e).as_deref()),
        (Some("s2"), Some("policy-violation"))
    );
}

/// Group chat is not spam: messages from a local room, and from a room on another server the
/// user sent presence to (and private messages through it), do not count against the
/// stranger limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_the_user_is_in_are_not_strangers() {
    let s = TestServer::start_with(|c| {
        c.limits.exempt_loopback = false;
        c.limits.stranger_messages_per_hour = 1;
    });
    for u in ["juliet", "romeo"] {
        s.add_user(u, "pw");
    }
    let room = "verona@conference.localhost";
    let mut r = s.online("romeo", "y").await;
    common::muc::create_instant(&mut r, room, "Romeo").await;
    let mut j = s.online("juliet", "a").await;
    common::muc::enter(&mut j, &format!("{room}/Juliet"), "").await;
    for i in 0..3 {
        r.send(&format!(
            "<message to='{room}' type='groupchat' id='g{i}'><body>hi</body></message>"
        ))
        .await;
        let m = common::muc::groupchat(&mut j).await;
        assert_eq!(m.get_attr("id"), Some(format!("g{i}").as_str()));
    }
    for i in 0..3 {
        r.send(&format!(
            "<message to='{room}/Juliet' type='chat' id='p{i}'><body>psst</body></message>"
        ))
        .await;
        let m = common::fed::wait_for(&mut j, |e| e.name == "message").await;
        assert_eq!(m.get_attr("id"), Some(format!("p{i}").as_str()), "{m:?}");
    }
}
