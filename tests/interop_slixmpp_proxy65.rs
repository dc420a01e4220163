//! Interop, SOCKS5 bytestreams proxy (XEP-0065) with slixmpp (PyPI) on both ends:
//! `tests/interop/proxy65.py` registers a sender and a receiver, the sender's xep_0065 plugin
//! discovers kleiber's proxy and its streamhost, negotiates a bytestream to the receiver with
//! the proxy as the streamhost and activates it; 300 KiB of random bytes pass through the
//! proxy and the receiver checks their SHA-256. The script's docstring lists every assertion.
//! Skipped without slixmpp unless `KLEIBER_REQUIRE_INTEROP=1` (as in `interop_slixmpp.rs`).

mod common;
use common::*;
use kleiber::actors::ListenerKind;

#[test]
fn slixmpp_sends_a_file_through_the_proxy() {
    let Some(py) = interop_python_or_skip() else {
        return;
    };
    let s = TestServer::start();
    let proxy = s.server.as_ref().unwrap().addr(ListenerKind::Proxy65);
    let out = run_interop(&py, "proxy65.py", s.starttls.port(), "starttls", "s5");
    println!("{out}");
    let streamhost = format!("proxy.localhost found at {}", proxy.expect("a proxy"));
    assert!(out.contains(&streamhost), "{out}");
    assert!(
        out.contains(&format!("received {} bytes", 300 * 1024)),
        "{out}"
    );
}
