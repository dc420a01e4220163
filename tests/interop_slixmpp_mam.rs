//! Interop of the message archive with a client library not written here: slixmpp's own
//! XEP-0313 plugin (with XEP-0059 RSM, XEP-0359 stanza ids) and its XEP-0441 preferences
//! plugin. `tests/interop/slixmpp_mam.py` registers three accounts in band, has them chat (70
//! messages), then queries the archive of one of them: all of it through the plugin's RSM
//! iterator, paging forward with `after` and backward from an empty `<before/>` (max 10,
//! `<fin complete='true'/>` on the last page only), `after`/`before` an id in the middle,
//! `with` and `start`/`end` filters; every archived item must carry its forwarded message, an
//! XEP-0203 delay and an id equal to the `<stanza-id by='own bare JID'/>` the live message
//! carried. Then the preferences: default `never` with an `always` list, checked by what is
//! archived. The script's docstring lists every assertion; it was checked against Prosody
//! 0.12.3 with `mod_mam` (internal storage) before kleiber's archive existed.
//!
//! Without a Python that has slixmpp (`KLEIBER_PYTHON`, or `target/interop-venv`), the test
//! says so and passes, unless `KLEIBER_REQUIRE_INTEROP=1` (set by `.ci/run`) makes that a
//! failure.

mod common;
use common::*;

/// kleiber's archive, on for everyone (the config keys of the archive: `[archive]`).
pub const ARCHIVE: &str =
    "[archive]\nenabled = true\nretention_days = 30\ndefault_mode = \"always\"\n";

#[test]
fn slixmpp_queries_pages_and_filters_the_archive() {
    let Some(py) = interop_python_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config_with(dir.path(), ARCHIVE);
    let s = TestServer::start_in(dir, cfg);
    let out = run_interop(&py, "slixmpp_mam.py", s.starttls.port(), "starttls", "mam");
    for ok in [
        "OK: 60 chat messages a<->b; the 30 a received each carried a stanza-id",
        "OK: whole archive via the plugin's iterator: 70 messages in order",
        "OK: paging forward with after: 7 pages of max 10",
        "OK: paging backward from <before/>: 7 pages",
        "OK: after=<id> and before=<id> in the middle",
        "OK: with=<bare JID> filters",
        "OK: start/end filters",
        "OK: get_preferences: default=always",
        "OK: set_preferences(default='never', always=[c]) and read back",
        "OK: XEP-0441: under default 'never' a message to b was not archived",
        "OK: archive (XEP-0313, RSM, stanza ids, XEP-0441 preferences) verified",
    ] {
        assert!(out.contains(ok), "missing {ok:?} in:\n{out}");
    }
}
