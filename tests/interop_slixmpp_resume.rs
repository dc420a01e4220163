//! Interop, stream resumption (XEP-0198) with slixmpp (PyPI) as the client
//! (`tests/interop/slixmpp_resume.py`): a slixmpp client with its xep_0198 plugin (resumption
//! allowed) gets `<enabled resume='true'/>`, receives messages (some acknowledged, some not),
//! then loses its TCP connection without `</stream:stream>`, once with a FIN and once with a
//! RST. Messages sent to it meanwhile wait in the hibernating session; slixmpp reconnects,
//! authenticates again and resumes: `session_resumed` fires with the same id and
//! `session_start` never fires a second time. Every message arrives exactly once and in order,
//! both ways: what the client had received but not acknowledged is not sent again (its `h` is
//! honoured), and the server's `h` in `<resumed/>` lets slixmpp send again only what the server
//! had not handled. Over STARTTLS and over direct TLS. Skipped without slixmpp unless
//! `KLEIBER_REQUIRE_INTEROP=1` (as in `interop_slixmpp.rs`).

mod common;
use common::*;

#[test]
fn slixmpp_resumes_after_connection_loss() {
    let Some(py) = interop_python_or_skip() else {
        return;
    };
    let s = TestServer::start();
    for (port, mode, prefix) in [
        (s.starttls.port(), "starttls", "ss"),
        (s.direct.port(), "direct-tls", "sd"),
    ] {
        let out = run_interop(&py, "slixmpp_resume.py", port, mode, prefix);
        assert!(
            out.contains("OK: two cuts resumed (session_resumed, no new session)"),
            "{out}"
        );
        assert_eq!(
            out.matches("a: session resumed: previd").count(),
            2,
            "{out}"
        );
    }
}
