//! Interop with the slixmpp Debian ships (`python3-slixmpp`, 1.8.3 in Debian 12), the library
//! of Debian's poezio, run by Debian's own `/usr/bin/python3`. Its SASL predates XEP-0440:
//! for SCRAM-*-PLUS it sends the channel-binding type `tls-unique` whatever kleiber
//! advertises (kleiber has only `tls-exporter` and `tls-server-end-point`), then plain SCRAM
//! with the `y` flag (refused: -PLUS is offered, RFC 5802 downgrade protection), and ends on
//! PLAIN. The test asserts that this walk really ends in a session (every refusal is one of
//! those two kinds, the client moves on, nothing locks it out), that messages flow, and, for
//! slixmpp 1.8, the exact sequence. `doc/sasl-clients.md` has the other Debian clients.
//!
//! `tests/interop/debian_slixmpp_login.py` is the client. Without Debian's slixmpp the test
//! says so and passes, unless `KLEIBER_REQUIRE_INTEROP=1` (set by `.ci/run`, which installs
//! `python3-slixmpp`) makes that a failure. `KLEIBER_DEBIAN_PYTHON` overrides the Python.

mod common;
use common::*;

use std::path::PathBuf;
use std::process::Command;

/// Debian's Python when it can import slixmpp; `None` (skip) otherwise, or a panic under
/// `KLEIBER_REQUIRE_INTEROP=1`.
fn debian_python_or_skip() -> Option<PathBuf> {
    let py = PathBuf::from(
        std::env::var_os("KLEIBER_DEBIAN_PYTHON").unwrap_or_else(|| "/usr/bin/python3".into()),
    );
    let ok = Command::new(&py)
        .args(["-c", "import slixmpp"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return Some(py);
    }
    assert!(
        std::env::var("KLEIBER_REQUIRE_INTEROP").as_deref() != Ok("1"),
        "{} cannot import slixmpp (apt-get install python3-slixmpp) but KLEIBER_REQUIRE_INTEROP=1",
        py.display()
    );
    eprintln!(
        "SKIPPED: {} has no slixmpp (apt-get install python3-slixmpp)",
        py.display()
    );
    None
}

/// One SASL attempt as the script reports it: `SASL <label> <MECH> cb=<flag> -> <outcome>`.
#[derive(Debug, PartialEq)]
struct Attempt {
    mech: String,
    cb: String,
    success: bool,
}

fn attempts(out: &str, label: &str) -> Vec<Attempt> {
    out.lines()
        .filter_map(|l| l.strip_prefix(&format!("SASL {label} ")))
        .map(|l| {
            let (lhs, outcome) = l.split_once(" -> ").expect("SASL line with outcome");
            let (mech, cb) = lhs.split_once(" cb=").expect("SASL line with cb");
            Attempt {
                mech: mech.to_owned(),
                cb: cb.to_owned(),
                success: outcome == "success",
            }
        })
        .collect()
}

fn attempt(mech: &str, cb: &str, success: bool) -> Attempt {
    Attempt {
        mech: mech.into(),
        cb: cb.into(),
        success,
    }
}

#[test]
fn debian_slixmpp_logs_in_and_chats() {
    let Some(py) = debian_python_or_skip() else {
        return;
    };
    let s = TestServer::start();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/debian_slixmpp_login.py");
    for (port, mode, prefix) in [
        (s.starttls.port(), "starttls", "st"),
        (s.direct.port(), "direct-tls", "dt"),
    ] {
        s.add_user(&format!("{prefix}a"), "pw-debian");
        s.add_user(&format!("{prefix}b"), "pw-debian");
        let out = Command::new(&py)
            .arg(&script)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--domain", "localhost", "--mode", mode, "--prefix", prefix])
            .args(["--password", "pw-debian"])
            .output()
            .expect("run Debian's python3");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains("OK: login and chat verified"),
            "{mode}: debian_slixmpp_login.py failed:\n{stdout}\n{stderr}"
        );
        let version = stdout
            .lines()
            .find_map(|l| l.strip_prefix("slixmpp "))
            .expect("version line")
            .to_owned();
        for label in ["a", "b"] {
            let tried = attempts(&stdout, label);
            // Whatever the version: exactly one success, the last attempt; every refusal is
            // a -PLUS with a channel binding kleiber does not have, or the `y` flag while
            // -PLUS is offered.
            let (last, refused) = tried.split_last().expect("at least one SASL attempt");
            assert!(last.success, "{mode} {label}: {tried:?}");
            for a in refused {
                assert!(!a.success, "{mode} {label}: {tried:?}");
                let bad_cb = a.mech.ends_with("-PLUS")
                    && !["p=tls-exporter", "p=tls-server-end-point"].contains(&a.cb.as_str());
                assert!(
                    bad_cb || a.cb == "y",
                    "{mode} {label}: refused an attempt that should pass: {a:?} in {tried:?}"
                );
            }
            assert!(
                stdout.contains(&format!(
                    "FINAL {label} {} refusals={}",
                    last.mech,
                    refused.len()
                )),
                "{stdout}"
            );
            // Debian 12's slixmpp 1.8: tls-unique for -PLUS (Python's get_channel_binding()),
            // then `y`, each hash in turn, and PLAIN in the end (doc/sasl-clients.md).
            if version.starts_with("1.8.") {
                assert_eq!(
                    tried,
                    vec![
                        attempt("SCRAM-SHA-256-PLUS", "p=tls-unique", false),
                        attempt("SCRAM-SHA-1-PLUS", "p=tls-unique", false),
                        attempt("SCRAM-SHA-256", "y", false),
                        attempt("SCRAM-SHA-1", "y", false),
                        attempt("PLAIN", "-", true),
                    ],
                    "{mode} {label} with slixmpp {version}"
                );
            } else {
                eprintln!(
                    "slixmpp {version} ({mode} {label}) ended on {}: {tried:?}",
                    last.mech
                );
            }
        }
    }
}
