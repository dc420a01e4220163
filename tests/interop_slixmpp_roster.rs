//! Interop, rosters: two slixmpp clients (PyPI) subscribe to each other through kleiber, both
//! end with the other in `both`, and see each other's presence (`tests/interop/slixmpp_roster.py`).
//! Skipped without slixmpp unless `KLEIBER_REQUIRE_INTEROP=1` (as in `interop_slixmpp.rs`).

mod common;
use common::*;

use std::path::PathBuf;
use std::process::Command;

#[test]
fn slixmpp_clients_subscribe_to_each_other() {
    let Some(py) = interop_python() else {
        if std::env::var("KLEIBER_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!("slixmpp is not installed (KLEIBER_PYTHON / target/interop-venv)");
        }
        eprintln!("SKIPPED: no Python with slixmpp; run .ci/run or set KLEIBER_PYTHON");
        return;
    };
    let s = TestServer::start();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/slixmpp_roster.py");
    for (port, mode, prefix) in [
        (s.starttls.port(), "starttls", "rs"),
        (s.direct.port(), "direct-tls", "rd"),
    ] {
        let out = Command::new(&py)
            .arg(&script)
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
            .expect("run slixmpp roster client");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "slixmpp roster {mode} failed:\n{stdout}\n{stderr}"
        );
        // Both rosters hold the other in `both`, as stored.
        let item = s
            .shared()
            .store
            .rosters
            .get(
                "localhost",
                &format!("{prefix}a"),
                &format!("{prefix}b@localhost"),
            )
            .unwrap()
            .expect("roster item");
        assert!(item.to && item.from, "{item:?}");
    }
}
