//! Interop, BOSH: Strophe.js (the BOSH library of Converse.js and many web clients, from npm,
//! `tests/interop/strophe/`), run in Node, logs in over `/http-bind`, sends a message to a TCP
//! client and receives its answer through BOSH.
//!
//! Needs `node` and `tests/interop/strophe/node_modules` (`.ci/run` runs `npm ci` there).
//! Skipped without them unless `KLEIBER_REQUIRE_INTEROP=1`.

mod common;

use common::{node_package_or_skip, TestServer, WAIT};

/// `STROPHE_TRACE=1` shows the client's traffic (with `--nocapture`).
fn piped_unless_traced() -> std::process::Stdio {
    if std::env::var_os("STROPHE_TRACE").is_some() {
        std::process::Stdio::inherit()
    } else {
        std::process::Stdio::piped()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strophe_logs_in_over_bosh_and_chats_with_a_tcp_client() {
    let Some(dir) = node_package_or_skip("strophe", "strophe.js") else {
        return;
    };
    let s = TestServer::start();
    s.add_user("alice", "pw");
    s.add_user("bob", "pw");
    let mut bob = s.online("bob", "tcp").await;
    let https = s.https();
    let child = tokio::process::Command::new("node")
        .current_dir(&dir)
        .arg("bosh.cjs")
        .arg(format!("https://127.0.0.1:{}/http-bind", https.port()))
        .args(["alice@localhost", "pw", "bob@localhost/tcp"])
        .env("NODE_TLS_REJECT_UNAUTHORIZED", "0")
        .env("NODE_NO_WARNINGS", "1")
        .kill_on_drop(true)
        .stdout(piped_unless_traced())
        .stderr(piped_unless_traced())
        .spawn()
        .expect("start node");

    let m = bob.recv().await;
    assert_eq!(m.name, "message", "{}", m.to_xml("jabber:client"));
    let from = m.get_attr("from").unwrap().to_owned();
    assert!(from.starts_with("alice@localhost/"), "{from}");
    assert_eq!(
        m.get_child("body", "jabber:client").unwrap().text_content(),
        "hello from strophe"
    );
    bob.send(&format!(
        "<message to='{from}' type='chat'><body>hello from tcp &amp; bob</body></message>"
    ))
    .await;

    let out = tokio::time::timeout(WAIT * 3, child.wait_with_output())
        .await
        .expect("strophe.js finished in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("RECEIVED hello from tcp & bob"),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("DISCONNECTED"), "{stdout}");
}
