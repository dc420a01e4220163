//! Interop with two command-line clients from Debian, each its own XMPP implementation:
//! `go-sendxmpp` (Go, the go-xmpp library) and `sendxmpp` (Perl, Net::XMPP). Against a real
//! server on loopback with its self-signed certificate (both clients are told not to verify
//! it), they log in with PLAIN over STARTTLS (go-sendxmpp also over direct TLS), send chat
//! messages a test client receives, and go-sendxmpp in listening mode receives one.
//!
//! Each client is skipped when it is not installed, unless `KLEIBER_REQUIRE_INTEROP=1` (as
//! in `.ci/run`, which installs both), where a missing client fails the test.

mod common;
use common::*;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Is `bin` installed? If not, skip (or fail under `KLEIBER_REQUIRE_INTEROP=1`).
fn installed(bin: &str) -> bool {
    if Path::new(bin).exists() {
        return true;
    }
    assert!(
        std::env::var("KLEIBER_REQUIRE_INTEROP").as_deref() != Ok("1"),
        "{bin} is not installed but KLEIBER_REQUIRE_INTEROP=1"
    );
    eprintln!("{bin} is not installed: skipped");
    false
}

/// Run a sending client with `body` on standard input; it must exit with success.
fn send_with(mut cmd: Command, body: &str) {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the client");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The next chat message `c` receives: (from, body).
async fn next_chat(c: &mut Client) -> (String, String) {
    loop {
        let el = tokio::time::timeout(Duration::from_secs(20), c.recv())
            .await
            .expect("no message within 20 s");
        if el.name == "message" {
            let body = el
                .get_child("body", "jabber:client")
                .map(|b| b.text_content())
                .unwrap_or_default();
            return (el.get_attr("from").unwrap_or("").to_owned(), body);
        }
    }
}

/// A server with the accounts alice (password `pw-alice`, for the client `bin` under test) and
/// bob (online as our own test client); `None` when `bin` is not installed (skip).
async fn alice_and_bob(bin: &str) -> Option<(TestServer, Client)> {
    if !installed(bin) {
        return None;
    }
    let s = TestServer::start();
    s.add_user("alice", "pw-alice");
    s.add_user("bob", "pw");
    let bob = s.online("bob", "desk").await;
    Some((s, bob))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_sendxmpp_sends_and_receives() {
    const BIN: &str = "/usr/bin/go-sendxmpp";
    let Some((s, mut bob)) = alice_and_bob(BIN).await else {
        return;
    };

    // Over STARTTLS, then over direct TLS.
    for (server, tls, text) in [
        (s.starttls, false, "hello from go-sendxmpp over STARTTLS"),
        (s.direct, true, "hello from go-sendxmpp over direct TLS"),
    ] {
        let mut cmd = Command::new(BIN);
        cmd.args(["-n", "-u", "alice@localhost", "-p", "pw-alice", "-j"])
            .arg(server.to_string());
        if tls {
            cmd.arg("-t");
        }
        cmd.arg("bob@localhost");
        tokio::task::spawn_blocking(move || send_with(cmd, text))
            .await
            .unwrap();
        let (from, body) = next_chat(&mut bob).await;
        assert!(from.starts_with("alice@localhost/"), "from {from}");
        assert_eq!(body, text);
    }

    // Listening: go-sendxmpp as alice prints what bob sends it.
    let mut listener = Command::new(BIN)
        .args(["-n", "-l", "-u", "alice@localhost", "-p", "pw-alice", "-j"])
        .arg(s.starttls.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = listener.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("alice, this is bob"))
    });
    // Send until the listener is online and has printed the message (it may still be
    // logging in: a message to the bare JID of an offline user would wait offline, so aim
    // at its session, whatever its resource, once it is there).
    let mut delivered = false;
    for i in 0..100 {
        if lines.is_finished() {
            delivered = true;
            break;
        }
        if i % 10 == 0 {
            bob.send("<message to='alice@localhost' type='chat'><body>alice, this is bob</body></message>")
                .await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = listener.kill();
    let _ = listener.wait();
    assert!(delivered, "go-sendxmpp -l printed nothing within 20 s");
    let line = lines.join().unwrap().expect("listener output");
    assert!(line.contains("bob@localhost"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perl_sendxmpp_sends() {
    const BIN: &str = "/usr/bin/sendxmpp";
    let Some((s, mut bob)) = alice_and_bob(BIN).await else {
        return;
    };
    let text = "hello from Perl sendxmpp";
    let mut cmd = Command::new(BIN);
    // Net::XMPP takes the stream's `to` from the host part of -j: the domain, not an address.
    cmd.args([
        "-u",
        "alice",
        "-p",
        "pw-alice",
        "--tls",
        "--no-tls-verify",
        "-j",
    ])
    .arg(format!("localhost:{}", s.starttls.port()))
    .arg("bob@localhost");
    tokio::task::spawn_blocking(move || send_with(cmd, text))
        .await
        .unwrap();
    let (from, body) = next_chat(&mut bob).await;
    assert_eq!(from, "alice@localhost/sendxmpp");
    assert_eq!(body.trim_end(), text);
}
