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
    let proxy = s
        .server
        .as_ref()
        .unwrap()
        .addr(ListenerKind::Proxy65)
        .expect("a proxy listener");
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/proxy65.py");
    let out = std::process::Command::new(&py)
        .arg(script)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &s.starttls.port().to_string(),
        ])
        .args([
            "--domain",
            "localhost",
            "--mode",
            "starttls",
            "--prefix",
            "s5",
        ])
        .args(["--proxy-port", &proxy.port().to_string()])
        .output()
        .expect("run the slixmpp client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "proxy65.py failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("OK: file transfer through the SOCKS5 proxy"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("received {} bytes", 300 * 1024)),
        "{stdout}"
    );
}
