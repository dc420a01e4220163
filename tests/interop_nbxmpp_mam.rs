//! Interop of the message archive with a second client library: nbxmpp, the XMPP library of
//! Gajim, as Debian ships it (`python3-nbxmpp`, 4.2.2 in Debian 12), run by Debian's own
//! `/usr/bin/python3` (it needs GLib/Gio through `python3-gi`). aioxmpp was the first choice
//! but its last release on PyPI (0.13.3, 2023) has no XEP-0313 module at all (MAM exists only
//! on its development branch) and installs only from source; nbxmpp is maintained with Gajim
//! and has its own MAM module (queries with a form and RSM `max`/`after`, `<result/>`
//! unwrapping with archive id and timestamp, preferences).
//!
//! `tests/interop/nbxmpp_mam.py` registers three accounts in band the way Gajim does
//! (nbxmpp's REGISTER mode), has them chat (46 messages), and queries one archive through the
//! MAM module: forward paging by 10 until `<fin complete='true'/>`, every item's id equal to
//! the live message's `<stanza-id/>`, `with` and `start`/`end` filters, then the
//! preferences (default `never` with an `always` list). The script's docstring lists every
//! assertion; it was checked against Prosody 0.12.3 with `mod_mam` before kleiber's archive
//! existed.
//!
//! Without Debian's nbxmpp the test says so and passes, unless `KLEIBER_REQUIRE_INTEROP=1`
//! (set by `.ci/run`, which installs `python3-nbxmpp`) makes that a failure.
//! `KLEIBER_DEBIAN_PYTHON` overrides the Python.

mod common;
use common::*;

use std::path::PathBuf;
use std::process::Command;

/// kleiber's archive, on for everyone (the config keys of the archive: `[archive]`).
pub const ARCHIVE: &str =
    "[archive]\nenabled = true\nretention_days = 30\ndefault_mode = \"always\"\n";

/// Debian's Python when it can import nbxmpp; `None` (skip) otherwise, or a panic under
/// `KLEIBER_REQUIRE_INTEROP=1`.
fn nbxmpp_python_or_skip() -> Option<PathBuf> {
    let py = PathBuf::from(
        std::env::var_os("KLEIBER_DEBIAN_PYTHON").unwrap_or_else(|| "/usr/bin/python3".into()),
    );
    let ok = Command::new(&py)
        .args(["-c", "import nbxmpp"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return Some(py);
    }
    assert!(
        std::env::var("KLEIBER_REQUIRE_INTEROP").as_deref() != Ok("1"),
        "{} cannot import nbxmpp (apt-get install python3-nbxmpp) but KLEIBER_REQUIRE_INTEROP=1",
        py.display()
    );
    eprintln!(
        "SKIPPED: {} has no nbxmpp (apt-get install python3-nbxmpp)",
        py.display()
    );
    None
}

#[test]
fn nbxmpp_queries_pages_and_filters_the_archive() {
    let Some(py) = nbxmpp_python_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config_with(dir.path(), ARCHIVE);
    let s = TestServer::start_in(dir, cfg);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/nbxmpp_mam.py");
    let out = Command::new(&py)
        .arg(&script)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &s.starttls.port().to_string(),
        ])
        .args(["--domain", "localhost", "--prefix", "nb"])
        .output()
        .expect("run Debian's python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "nbxmpp_mam.py failed:\n{stdout}\n{stderr}"
    );
    for ok in [
        "OK: 40 chat messages a<->b; the 20 a received carried a stanza-id",
        "OK: MAM paging forward (max 10, after): 5 pages, 46 messages in order",
        "OK: MAM filters: with=b (40), with=c (6), start/end",
        "OK: MAM preferences: default always; never with c in always",
        "OK: archive (XEP-0313 query, RSM paging, filters, stanza ids, preferences) verified",
    ] {
        assert!(stdout.contains(ok), "missing {ok:?} in:\n{stdout}");
    }
}
