//! Running kleiber as an operator does: the real binary as a child process, operator
//! commands while it runs and while it is stopped, registration toggling, SIGHUP with a
//! renewed certificate, SIGTERM with connected clients, a second instance, check-config.

mod common;
use common::*;

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn kleiber(args: &[&str], cfg: &std::path::Path, stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kleiber"))
        .args(args)
        .arg("--config")
        .arg(cfg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_registration_commands_while_running_and_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = data.with_extension("toml");
    let b = Binary::start(&data, "", "info");
    // While running: through the control socket.
    let o = kleiber(&["user", "add", "bob@localhost"], &cfg, Some("hunter2\n"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut bob = Client::starttls(b.starttls, "localhost").await;
    bob.auth_plain("", "bob", "hunter2").await.unwrap();
    bob.bind(Some("r")).await;
    assert_eq!(
        stdout(&kleiber(&["user", "list"], &cfg, None)),
        "bob@localhost\n"
    );
    let st = stdout(&kleiber(&["status"], &cfg, None));
    assert!(
        st.contains("sessions: 1 (localhost 1)")
            && st.contains("accounts: 1")
            && st.contains("components: none"),
        "{st}"
    );
    let o = kleiber(&["user", "add", "bob@localhost"], &cfg, Some("x\n"));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    // Registration closed: the feature disappears and attempts are refused at once.
    assert!(kleiber(&["registration", "close"], &cfg, None)
        .status
        .success());
    let mut c = Client::starttls(b.starttls, "localhost").await;
    assert!(c
        .features
        .get_child("register", "http://jabber.org/features/iq-register")
        .is_none());
    assert_eq!(
        error_condition(&c.register("eve", "pw").await).as_deref(),
        Some("not-allowed")
    );
    // Deleting a user ends its session.
    assert!(kleiber(&["user", "del", "bob@localhost"], &cfg, None)
        .status
        .success());
    bob.expect_stream_error("not-authorized").await;
    b.stop();
    // While stopped: the data directory directly; the registration choice was kept.
    assert!(
        kleiber(&["user", "add", "carol@localhost"], &cfg, Some("pw\n"))
            .status
            .success()
    );
    assert_eq!(
        stdout(&kleiber(&["registration", "status"], &cfg, None)),
        "closed (server not running)\n"
    );
    assert!(!kleiber(&["status"], &cfg, None).status.success());
    let b = Binary::start(&data, "", "info");
    let mut c = Client::starttls(b.starttls, "localhost").await;
    assert!(c
        .features
        .get_child("register", "http://jabber.org/features/iq-register")
        .is_none());
    c.auth_plain("", "carol", "pw").await.unwrap();
    assert!(kleiber(&["registration", "open"], &cfg, None)
        .status
        .success());
    let mut c = Client::starttls(b.starttls, "localhost").await;
    assert_eq!(
        c.register("eve", "pw").await.get_attr("type"),
        Some("result")
    );
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_without_dropping_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (crt, key) = (
        dir.path().join("fullchain.pem"),
        dir.path().join("privkey.pem"),
    );
    kleiber::tls::generate_self_signed("localhost", &crt, &key).unwrap();
    let extra = format!("[hosts.\"localhost\"]\ncertificate = {crt:?}\nkey = {key:?}\n");
    let b = Binary::start(&data, &extra, "info");
    let cfg = data.with_extension("toml");
    assert!(
        kleiber(&["user", "add", "alice@localhost"], &cfg, Some("pw\n"))
            .status
            .success()
    );
    let mut old = Client::starttls(b.starttls, "localhost").await;
    let first = old.end_point.clone().unwrap();
    old.auth_plain("", "alice", "pw").await.unwrap();
    old.bind(Some("old")).await;
    // Let's Encrypt renewed the certificate.
    kleiber::tls::generate_self_signed("localhost", &crt, &key).unwrap();
    Command::new("kill")
        .args(["-HUP", &b.child.id().to_string()])
        .status()
        .unwrap();
    let mut renewed = None;
    for _ in 0..100 {
        let c = Client::starttls(b.starttls, "localhost").await;
        if c.end_point.clone().unwrap() != first {
            renewed = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(renewed.is_some(), "new clients see the new certificate");
    old.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(
        old.recv().await.get_attr("id"),
        Some("p"),
        "the old session is still up"
    );
    // A broken certificate is refused and the current one stays.
    std::fs::write(&crt, "not a certificate").unwrap();
    Command::new("kill")
        .args(["-HUP", &b.child.id().to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let c = Client::starttls(b.starttls, "localhost").await;
    assert!(c.end_point.is_some());
    let lines = b.stop();
    assert!(
        lines.iter().any(|l| l.contains("certificates reloaded")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("certificates not reloaded")),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_second_instance_and_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = data.with_extension("toml");
    let b = Binary::start(&data, "", "info");
    // A second instance on the same data directory fails at once, clearly.
    let o = Command::new(env!("CARGO_BIN_EXE_kleiber"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("in use by another kleiber process"));
    assert!(
        kleiber(&["user", "add", "alice@localhost"], &cfg, Some("pw\n"))
            .status
            .success()
    );
    let mut a = Client::starttls(b.starttls, "localhost").await;
    a.auth_plain("", "alice", "pw").await.unwrap();
    a.bind(Some("r")).await;
    let lines = b.stop();
    a.expect_stream_error("system-shutdown").await;
    assert!(lines.iter().any(|l| l.contains("stopped")), "{lines:?}");
    // check-config: good and broken files.
    let o = Command::new(env!("CARGO_BIN_EXE_kleiber"))
        .args(["check-config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(stdout(&o).contains("config OK"));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[limits]\nmax_stanza_bytes = \"big\"\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_kleiber"))
        .args(["check-config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("limits.max_stanza_bytes") && err.lines().count() == 1,
        "{err}"
    );
}

/// The hourly cap on registrations from all addresses together (`limits.registrations_per_hour`)
/// locks newcomers out until the hour has passed: the refusal says when to come back, the
/// operator is told once in the log (not once per attempt) and `kleiber status` shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_registration_cap_says_when_and_is_shown_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = data.with_extension("toml");
    let b = Binary::start(&data, "[limits]\nregistrations_per_hour = 2\n", "info");
    for (i, want) in ["result", "result", "error", "error", "error"]
        .iter()
        .enumerate()
    {
        let mut c = Client::starttls(b.starttls, "localhost").await;
        let r = c.register(&format!("u{i}"), "pw").await;
        assert_eq!(
            r.get_attr("type"),
            Some(*want),
            "{}",
            r.to_xml("jabber:client")
        );
        if *want == "error" {
            assert_eq!(error_condition(&r).as_deref(), Some("policy-violation"));
            let text = r.to_xml("jabber:client");
            assert!(
                text.contains("too many new accounts on this server in the last hour; try again in 60 minutes"),
                "{text}"
            );
        }
    }
    let st = stdout(&kleiber(&["status"], &cfg, None));
    assert!(
        st.contains(
            "registration: open, but the hourly cap (limits.registrations_per_hour = 2) is reached"
        ),
        "{st}"
    );
    let log = b.stop();
    let noticed = log
        .iter()
        .filter(|l| l.contains("limits.registrations_per_hour (2) reached"))
        .count();
    assert_eq!(noticed, 1, "{log:#?}");
}
