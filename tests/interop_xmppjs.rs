//! Interop, WebSocket: xmpp.js (`@xmpp/client` from npm, `tests/interop/xmppjs/`) logs in over
//! RFC 7395 WebSocket and chats with a raw TCP client through kleiber.
//!
//! Needs `node` and `tests/interop/xmppjs/node_modules` (`.ci/run` runs `npm ci` there).
//! Skipped without them unless `KLEIBER_REQUIRE_INTEROP=1`.

mod common;
use common::*;

#[tokio::test]
async fn xmppjs_chats_over_websocket_with_a_tcp_client() {
    let Some(dir) = node_package_or_skip("xmppjs", "@xmpp/client") else {
        return;
    };
    let s = TestServer::start();
    s.add_user("alice", "pw");
    s.add_user("bob", "pw");
    let mut bob = Client::bound(s.direct, "bob", "pw", "tcp").await;
    let url = format!("wss://localhost:{}/xmpp-websocket", s.https().port());
    let child = tokio::process::Command::new("node")
        .current_dir(&dir)
        .env("NODE_TLS_REJECT_UNAUTHORIZED", "0")
        .args(["chat.mjs", &url, "alice", "pw", "bob@localhost/tcp"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run node");

    let m = bob.recv().await;
    assert_eq!(m.name, "message", "{}", m.to_xml("jabber:client"));
    assert_eq!(m.get_attr("from"), Some("alice@localhost/xmppjs"));
    assert_eq!(
        m.get_child("body", "jabber:client").unwrap().text_content(),
        "Grüße von xmpp.js"
    );
    bob.send(
        "<message to='alice@localhost/xmppjs' type='chat'><body>Antwort über TCP</body></message>",
    )
    .await;
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("xmpp.js finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "xmpp.js failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ONLINE alice@localhost/xmppjs"), "{stdout}");
    assert!(
        stdout.contains("REPLY bob@localhost/tcp Antwort über TCP"),
        "{stdout}"
    );
}
