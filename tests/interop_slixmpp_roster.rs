//! Interop, rosters: two slixmpp clients (PyPI) subscribe to each other through kleiber, both
//! end with the other in `both`, and see each other's presence (`tests/interop/slixmpp_roster.py`).
//! Skipped without slixmpp unless `KLEIBER_REQUIRE_INTEROP=1` (as in `interop_slixmpp.rs`).

mod common;
use common::*;

#[test]
fn slixmpp_clients_subscribe_to_each_other() {
    let Some(py) = interop_python_or_skip() else {
        return;
    };
    let s = TestServer::start();
    for (port, mode, prefix) in [
        (s.starttls.port(), "starttls", "rs"),
        (s.direct.port(), "direct-tls", "rd"),
    ] {
        run_interop(&py, "slixmpp_roster.py", port, mode, prefix);
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
