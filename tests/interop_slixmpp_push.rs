//! Interop, push notifications (XEP-0357) with slixmpp (PyPI) on both ends
//! (`tests/interop/slixmpp_push.py`): a slixmpp client enables push for an app server, which
//! is a slixmpp `ComponentXMPP` connected to kleiber over XEP-0114; the client's stream
//! management session (resumption on) loses its connection, another slixmpp client writes to
//! it, and the app server gets exactly one notification for the burst: a pubsub publish from
//! the client's bare JID to its node, with the summary form (no sender, no body) and the
//! client's secret in the publish options. The client then resumes and gets every message.
//! Skipped without slixmpp unless `KLEIBER_REQUIRE_INTEROP=1` (as in `interop_slixmpp.rs`).

mod common;
use common::component::port_of;
use common::*;

use kleiber::config::ComponentConfig;

#[test]
fn slixmpp_app_server_is_notified_for_a_hibernated_session() {
    let Some(py) = interop_python_or_skip() else {
        return;
    };
    let s = TestServer::start_with(|c| {
        c.components = vec![ComponentConfig {
            domain: "push.localhost".into(),
            secret: "app-secret".into(),
            listen: None,
            parent: None,
        }];
    });
    let app_port = port_of(&s).port().to_string();
    let out = run_interop_with(
        &py,
        "slixmpp_push.py",
        s.starttls.port(),
        "starttls",
        "push",
        &[
            "--app-port",
            &app_port,
            "--app-domain",
            "push.localhost",
            "--app-secret",
            "app-secret",
        ],
    );
    assert!(out.contains("OK: push enabled, one notification"), "{out}");
    assert!(out.contains("app: notification checked"), "{out}");
    // The registration is kept for the account's next notification.
    let regs = s.shared().store.push.list("localhost", "pusha").unwrap();
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0].jid, "push.localhost");
}
