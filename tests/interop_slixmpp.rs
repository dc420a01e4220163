//! Interop with a client library not written here: slixmpp (PyPI) registers two accounts in
//! band, logs in over STARTTLS (and over direct TLS) and exchanges messages through kleiber.
//! `tests/interop/slixmpp_chat.py` is the client; `.ci/run` installs it into a venv.
//!
//! Without a Python that has slixmpp (`KLEIBER_PYTHON`, or `target/interop-venv`), the test
//! says so and passes, unless `KLEIBER_REQUIRE_INTEROP=1` (set by `.ci/run`) makes that a
//! failure.

mod common;
use common::*;

use std::path::PathBuf;
use std::process::Command;

fn run_client(py: &PathBuf, port: u16, mode: &str, prefix: &str) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/slixmpp_chat.py");
    let out = Command::new(py)
        .arg(script)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--domain",
            "localhost",
        ])
        .args(["--mode", mode, "--prefix", prefix])
        .output()
        .expect("run slixmpp client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "slixmpp {mode} failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("OK: registration, login, presence and both chat messages verified"),
        "{stdout}"
    );
}

#[test]
fn slixmpp_registers_logs_in_and_chats() {
    let Some(py) = interop_python() else {
        if std::env::var("KLEIBER_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!("slixmpp is not installed (KLEIBER_PYTHON / target/interop-venv)");
        }
        eprintln!("SKIPPED: no Python with slixmpp; run .ci/run or set KLEIBER_PYTHON");
        return;
    };
    let s = TestServer::start();
    run_client(&py, s.starttls.port(), "starttls", "st");
    run_client(&py, s.direct.port(), "direct-tls", "dt");
    // The accounts really exist now, stored as the privacy policy says: hashes only.
    for u in ["sta", "stb", "dta", "dtb"] {
        let rec = s
            .shared()
            .store
            .accounts
            .get("localhost", u)
            .unwrap()
            .expect("registered");
        assert_eq!(rec.credentials.len(), 3);
    }
}
