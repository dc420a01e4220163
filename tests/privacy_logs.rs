//! The privacy invariant, end to end: run the real `kleiber` binary at the most verbose log
//! level, register, log in, chat, fail a delivery and disconnect, then check that the log
//! holds no client address and no message content.

mod common;
use common::*;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ip_address_or_message_body_in_trace_logs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("kleiber.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\n[listen]\nc2s_starttls = [\"127.0.0.1:0\"]\nc2s_direct_tls = [\"127.0.0.1:0\"]\ns2s = [\"127.0.0.1:0\"]\ncomponents = [\"127.0.0.1:0\"]\n[http]\nlisten = [\"127.0.0.1:0\"]\n[proxy65]\nlisten = [\"127.0.0.1:0\"]\n[auth]\nbcrypt_cost = 4\nscram_iterations = 4096\n[[components]]\ndomain = \"gw.localhost\"\nsecret = \"gw-secret\"\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kleiber"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "trace")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    // Killed if the test fails half-way (a live server would hold the test's output open).
    let mut child = common::procs::Proc(child);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Learn the ports from the start-up lines.
    let mut ports = Vec::new();
    let mut log = Vec::new();
    let mut web = None;
    let mut component = None;
    while ports.len() < 2 || web.is_none() || component.is_none() {
        let line = rx.recv_timeout(WAIT).expect("server starts");
        let addr_after = |what: &str| -> Option<std::net::SocketAddr> {
            let rest = line.split(what).nth(1)?;
            Some(rest.split(' ').next().unwrap().parse().unwrap())
        };
        if let Some(addr) = addr_after("listening for clients on ") {
            ports.push(addr);
        }
        if let Some(addr) = addr_after("listening for the web on ") {
            web = Some(addr);
        }
        if let Some(addr) = addr_after("listening for components on ") {
            component = Some(addr);
        }
        log.push(line);
    }
    let component: std::net::SocketAddr = component.unwrap();
    let (starttls, direct, web) = (ports[0], ports[1], web.unwrap());

    let secret = "the-secret-body-7f3a9";
    let mut a = Client::starttls(starttls, "localhost").await;
    assert_eq!(
        a.register("alice", "pw").await.get_attr("type"),
        Some("result")
    );
    let mut b = Client::direct(direct, "localhost").await;
    assert_eq!(
        b.register("bob", "pw").await.get_attr("type"),
        Some("result")
    );
    a.auth_scram("SCRAM-SHA-256", "alice", "pw").await.unwrap();
    b.auth_plain("", "bob", "pw").await.unwrap();
    a.bind(Some("a")).await;
    b.bind(Some("b")).await;
    a.send(&format!(
        "<message to='bob@localhost/b' type='chat'><body>{secret}</body></message>"
    ))
    .await;
    assert!(b.recv_xml().await.contains(secret));
    a.send(&format!(
        "<message to='nobody@localhost' type='chat'><body>{secret}</body></message>"
    ))
    .await;
    assert_eq!(
        error_condition(&a.recv().await).as_deref(),
        Some("service-unavailable")
    );
    // An offline message, delivered at bob's next login: its body touches the disk, and
    // must be gone from every tree once delivered.
    let offline = "the-offline-body-42c1";
    b.send("<presence type='unavailable'/>").await;
    drop(b);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    a.send(&format!(
        "<message to='bob@localhost' type='chat'><body>{offline}</body></message>"
    ))
    .await;
    let mut b = Client::direct(direct, "localhost").await;
    b.auth_plain("", "bob", "pw").await.unwrap();
    b.bind(Some("b2")).await;
    b.send("<presence/>").await;
    loop {
        let e = b.recv().await;
        if e.name == "message" {
            assert!(e.to_xml("jabber:client").contains(offline));
            break;
        }
    }
    // The same over WebSocket, and a broken frame there.
    let mut w = common::ws::Ws::login(web, "alice", "pw", "w").await;
    w.send(&format!(
        "<message xmlns='jabber:client' to='bob@localhost/b2' type='chat'><body>{secret}</body></message>"
    ))
    .await;
    assert!(b.recv_xml().await.contains(secret));
    w.send("<message><body>not closed").await;
    w.send("</iq>").await;
    let web_port = w.ws.get_ref().get_ref().local_addr().unwrap().port();
    drop(w);
    // And over BOSH, with a damaged body at the end.
    let mut bosh = common::bosh::Bosh::login(web, "alice", "bosh").await;
    bosh.send(&format!(
        "<message xmlns='jabber:client' to='bob@localhost/b2' type='chat'><body>{secret}</body></message>"
    ))
    .await;
    assert!(b.recv_xml().await.contains(secret));
    let (_, damaged) = bosh.next_body("", "<message><body>not closed");
    let r = common::bosh::post(web, &damaged).await;
    assert_eq!(r.status, 200);
    // Through a gateway (XEP-0114) both ways, and a component with a wrong secret.
    use common::component::Comp;
    let mut gw = Comp::connect(component, "gw.localhost", "gw-secret").await;
    let gw_port = gw.writer.local_addr().unwrap().port();
    b.send(&format!(
        "<message to='someone@gw.localhost' type='chat'><body>{secret}</body></message>"
    ))
    .await;
    assert!(gw.recv_named("message").await.to_xml("x").contains(secret));
    gw.send(&format!(
        "<message from='someone@gw.localhost' to='bob@localhost/b2' type='chat'><body>{secret}</body></message>"
    ))
    .await;
    assert!(b.recv_xml().await.contains(secret));
    let mut bad = Comp::open(component, "gw.localhost").await;
    bad.handshake("wrong").await;
    bad.expect_stream_error("not-authorized").await;
    drop(gw);
    let local_ports = [a.local_port(), b.local_port(), web_port, gw_port];
    drop(a);
    drop(b);
    // A wrong password and garbage, for the error paths.
    let mut c = Client::starttls(starttls, "localhost").await;
    assert!(c.auth_plain("", "alice", "wrong").await.is_err());
    c.send("<iq type='get' id='x'><not-closed").await;
    c.send("&bogus;").await;
    drop(c);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let _ = Command::new("kill").arg(child.0.id().to_string()).status();
    let _ = child.0.wait();
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(2)) {
        log.push(line);
    }
    let text = log.join("\n");
    assert!(
        text.contains("logged in"),
        "the log shows session events:\n{text}"
    );
    assert!(text.contains("delivery failed"), "{text}");
    // Every byte of the data directory: no address, and no body of a message that was
    // delivered to an online recipient (such a message never touches disk).
    let data = dir.path().join("data");
    let mut files = vec![data.clone()];
    let mut scanned = 0;
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if !p.is_file() {
            continue; // the control socket
        }
        let bytes = std::fs::read(&p).unwrap();
        scanned += bytes.len();
        let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(!has("127.0.0.1"), "an address in {}", p.display());
        assert!(!has(secret), "an online message body in {}", p.display());
    }
    assert!(scanned > 0);
    // And in a snapshot of every tree: the delivered offline message is gone too.
    let snap = dir.path().join("all.snap");
    let out = Command::new(env!("CARGO_BIN_EXE_kleiber"))
        .args(["backup"])
        .arg(&snap)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&snap).unwrap();
    for needle in [secret, offline, "127.0.0.1"] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} in a snapshot"
        );
    }
    for line in &log {
        assert!(!line.contains(secret), "message body in the log: {line}");
        assert!(!line.contains(offline), "message body in the log: {line}");
        if !line.contains("listening for clients on")
            && !line.contains("listening for servers on")
            && !line.contains("listening for the web on")
            && !line.contains("listening for components on")
            && !line.contains("listening for file transfers on")
        {
            assert!(!line.contains("127.0.0.1"), "address in the log: {line}");
        }
        for p in local_ports {
            assert!(
                !line.contains(&format!(":{p}")),
                "client port in the log: {line}"
            );
        }
    }
}

/// Federation too: two real servers at trace level link up (dialback), chat, bounce a stanza
/// for an unreachable domain and meet a peer that fails; no address and no body in either log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ip_address_or_message_body_in_federation_logs() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb, dead) = (free_port(), free_port(), free_port());
    let config = |domain: &str, own: u16, other: &str, other_port: u16| {
        let data = dir.path().join(domain);
        format!(
            "data_dir = {data:?}\n[hosts.\"{domain}\"]\n[listen]\nc2s_starttls = [\"127.0.0.1:0\"]\nc2s_direct_tls = [\"127.0.0.1:0\"]\ns2s = [\"127.0.0.1:{own}\"]\n[http]\nlisten = [\"127.0.0.1:0\"]\n[proxy65]\nlisten = [\"127.0.0.1:0\"]\n[auth]\nbcrypt_cost = 4\nscram_iterations = 4096\n[s2s.routes]\n\"{other}\" = \"127.0.0.1:{other_port}\"\n\"dead.test\" = \"127.0.0.1:{dead}\"\n"
        )
    };
    let a = Binary::start_config(
        &dir.path().join("a.test"),
        &config("a.test", pa, "b.test", pb),
        "trace",
    );
    let b = Binary::start_config(
        &dir.path().join("b.test"),
        &config("b.test", pb, "a.test", pa),
        "trace",
    );
    let secret = "federated-secret-body-91c2";
    let mut alice = Client::starttls(a.starttls, "a.test").await;
    assert_eq!(
        alice.register("alice", "pw").await.get_attr("type"),
        Some("result")
    );
    let mut bob = Client::starttls(b.starttls, "b.test").await;
    assert_eq!(
        bob.register("bob", "pw").await.get_attr("type"),
        Some("result")
    );
    let mut alice = Client::starttls(a.starttls, "a.test").await;
    alice
        .auth_scram("SCRAM-SHA-256", "alice", "pw")
        .await
        .unwrap();
    alice.bind(Some("r")).await;
    let mut bob = Client::starttls(b.starttls, "b.test").await;
    bob.auth_scram("SCRAM-SHA-256", "bob", "pw").await.unwrap();
    bob.bind(Some("r")).await;
    bob.send("<presence/>").await;
    alice
        .send(&format!(
            "<message to='bob@b.test/r' type='chat'><body>{secret}</body></message>"
        ))
        .await;
    loop {
        let e = bob.recv().await;
        if e.name == "message" {
            break;
        }
    }
    alice
        .send(&format!(
            "<message to='x@dead.test' type='chat' id='d'><body>{secret}</body></message>"
        ))
        .await;
    loop {
        if alice.recv().await.get_attr("id") == Some("d") {
            break;
        }
    }
    // A peer that speaks nonsense on the server port.
    let mut junk = tokio::net::TcpStream::connect(("127.0.0.1", pb))
        .await
        .unwrap();
    let junk_port = junk.local_addr().unwrap().port();
    tokio::io::AsyncWriteExt::write_all(&mut junk, b"<stream:stream xmlns='jabber:client'>")
        .await
        .unwrap();
    let _ = read_to_close(&mut junk).await;
    let ports = [alice.local_port(), bob.local_port(), junk_port];
    drop((alice, bob));
    let mut lines = a.stop();
    lines.extend(b.stop());
    assert!(
        lines
            .iter()
            .any(|l| l.contains("link up a.test -> b.test (dialback)")),
        "the link was logged"
    );
    for line in &lines {
        assert!(!line.contains(secret), "message body in the log: {line}");
        if !line.contains("listening for") {
            assert!(!line.contains("127.0.0.1"), "address in the log: {line}");
        }
        for p in ports {
            assert!(
                !line.contains(&format!(":{p}")),
                "peer port in the log: {line}"
            );
        }
    }
}

/// At the default level (`info`) the log is no login history: a workload of registrations,
/// SCRAM and PLAIN logins, chat, a message to an offline user, a failed delivery, a session
/// replaced and logouts leaves lines with connection ids and counts, and no JID, user name,
/// resource or address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_jid_resource_or_address_in_info_logs() {
    let dir = tempfile::tempdir().unwrap();
    let b = Binary::start(&dir.path().join("data"), "", "info");
    let (alice, bob) = ("alicexq", "bobzv");
    let (res_a, res_b) = ("phone-r7k", "desk-w2m");
    let mut a = Client::starttls(b.starttls, "localhost").await;
    assert_eq!(
        a.register(alice, "pw").await.get_attr("type"),
        Some("result")
    );
    let mut c = Client::direct(b.direct, "localhost").await;
    assert_eq!(c.register(bob, "pw").await.get_attr("type"), Some("result"));
    a.auth_scram("SCRAM-SHA-256", alice, "pw").await.unwrap();
    a.bind(Some(res_a)).await;
    a.send("<presence/>").await;
    c.auth_plain("", bob, "pw").await.unwrap();
    c.bind(Some(res_b)).await;
    a.send(&format!(
        "<message to='{bob}@localhost/{res_b}' type='chat'><body>hi</body></message>"
    ))
    .await;
    loop {
        if c.recv().await.name == "message" {
            break;
        }
    }
    // The same resource again replaces the session.
    let mut c2 = Client::starttls(b.starttls, "localhost").await;
    c2.auth_plain("", bob, "pw").await.unwrap();
    c2.bind(Some(res_b)).await;
    drop(c2);
    drop(c);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // bob is offline now: kept for him. nobody does not exist: a delivery error.
    for to in [format!("{bob}@localhost"), "nobody@localhost".to_owned()] {
        a.send(&format!(
            "<message to='{to}' type='chat' id='m'><body>x</body></message>"
        ))
        .await;
    }
    loop {
        let e = a.recv().await;
        if e.get_attr("id") == Some("m") && e.get_attr("type") == Some("error") {
            break;
        }
    }
    a.send("<presence type='unavailable'/>").await;
    let port = a.local_port();
    drop(a);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let lines = b.stop();
    let text = lines.join("\n");
    for event in [
        "registered",
        "logged in",
        "logged out",
        "replaced",
        "delivery failed",
    ] {
        assert!(text.contains(event), "no {event:?} line:\n{text}");
    }
    for line in &lines {
        for needle in [alice, bob, res_a, res_b, "@localhost", "nobody"] {
            assert!(!line.contains(needle), "{needle} in an info line: {line}");
        }
        if !line.contains("listening for") {
            assert!(!line.contains("127.0.0.1"), "address in the log: {line}");
        }
        assert!(!line.contains(&format!(":{port}")), "client port: {line}");
    }
    eprintln!("{} info lines checked:\n{text}", lines.len());
}

/// Push notifications (XEP-0357) with sender and body allowed: a registration with a secret,
/// a message kept offline and its notification to the app server (a component), which
/// answers that the registration is gone. Returns the server's log lines.
async fn push_scenario(rust_log: &str, body: &str, secret: &str) -> Vec<String> {
    use common::component::Comp;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let comp_port = free_port();
    let config = format!(
        "data_dir = {data:?}\n[listen]\nc2s_starttls = [\"127.0.0.1:0\"]\nc2s_direct_tls = [\"127.0.0.1:0\"]\ns2s = [\"127.0.0.1:0\"]\ncomponents = [\"127.0.0.1:{comp_port}\"]\n[http]\nlisten = [\"127.0.0.1:0\"]\n[proxy65]\nlisten = [\"127.0.0.1:0\"]\n[auth]\nbcrypt_cost = 4\nscram_iterations = 4096\n[push]\ninclude_sender = true\ninclude_body = true\n[[components]]\ndomain = \"apppush.localhost\"\nsecret = \"app-secret\"\n"
    );
    let b = Binary::start_config(&data, &config, rust_log);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], comp_port).into();
    let mut app = Comp::connect(addr, "apppush.localhost", "app-secret").await;
    let mut j = Client::starttls(b.starttls, "localhost").await;
    assert_eq!(
        j.register("julietpq", "pw").await.get_attr("type"),
        Some("result")
    );
    j.auth_scram("SCRAM-SHA-256", "julietpq", "pw")
        .await
        .unwrap();
    j.bind(Some("phone-k3")).await;
    j.send(&format!(
        "<iq type='set' id='en'><enable xmlns='urn:xmpp:push:0' jid='apppush.localhost' node='node-x9'>\
         <x xmlns='jabber:x:data' type='submit'><field var='secret'><value>{secret}</value></field></x></enable></iq>"
    ))
    .await;
    assert_eq!(j.recv().await.get_attr("type"), Some("result"));
    drop(j);
    let mut r = Client::direct(b.direct, "localhost").await;
    assert_eq!(
        r.register("romeoqz", "pw").await.get_attr("type"),
        Some("result")
    );
    r.auth_plain("", "romeoqz", "pw").await.unwrap();
    r.bind(Some("desk-v8")).await;
    r.send(&format!(
        "<message to='julietpq@localhost' type='chat'><body>{body}</body></message>"
    ))
    .await;
    let n = app.recv_named("iq").await;
    let xml = n.to_xml("jabber:client");
    assert!(xml.contains(body) && xml.contains(secret), "{xml}");
    app.send(&format!(
        "<iq type='error' id='{}' from='apppush.localhost' to='julietpq@localhost'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        n.get_attr("id").unwrap()
    ))
    .await;
    // The removal is the last thing logged at info.
    let mut lines = Vec::new();
    while !lines
        .iter()
        .any(|l: &String| l.contains("registration removed"))
    {
        lines.push(
            b.log
                .recv_timeout(WAIT)
                .expect("the registration is removed"),
        );
    }
    let mut rest = b.stop();
    rest.extend(lines);
    rest
}

/// Push notifications log no body, secret or address at any level, and no JID, node or
/// app server at `info`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_notifications_keep_the_log_clean() {
    let (body, secret) = ("push-body-5d2e", "push-secret-81fa");
    let trace = push_scenario("trace", body, secret).await;
    assert!(
        trace.iter().any(|l| l.contains("push")),
        "no push line at trace"
    );
    for line in &trace {
        for needle in [body, secret] {
            assert!(!line.contains(needle), "{needle} in the log: {line}");
        }
        if !line.contains("listening for") {
            assert!(!line.contains("127.0.0.1"), "address in the log: {line}");
        }
    }
    let info = push_scenario("info", body, secret).await;
    for line in &info {
        for needle in [
            "julietpq", "romeoqz", "phone-k3", "node-x9", "apppush", body, secret,
        ] {
            assert!(!line.contains(needle), "{needle} in an info line: {line}");
        }
    }
}
