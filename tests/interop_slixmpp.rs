//! Interop with a client library not written here: slixmpp (PyPI) registers two accounts in
//! band, logs in over STARTTLS (and over direct TLS) and exchanges messages through kleiber.
//! `tests/interop/slixmpp_chat.py` is the client; `.ci/run` installs it into a venv.
//!
//! Without a Python that has slixmpp (`KLEIBER_PYTHON`, or `target/interop-venv`), the test
//! says so and passes, unless `KLEIBER_REQUIRE_INTEROP=1` (set by `.ci/run`) makes that a
//! failure.

mod common;
use common::*;

#[test]
fn slixmpp_registers_logs_in_and_chats() {
    let Some(py) = interop_python_or_skip() else {
        return;
    };
    let s = TestServer::start();
    for (port, mode, prefix) in [
        (s.starttls.port(), "starttls", "st"),
        (s.direct.port(), "direct-tls", "dt"),
    ] {
        let out = run_interop(&py, "slixmpp_chat.py", port, mode, prefix);
        assert!(
            out.contains("OK: registration, login, presence and both chat messages verified"),
            "{out}"
        );
    }
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
