//! Interop, HTTP File Upload (XEP-0363) with slixmpp (PyPI) as the client:
//! `tests/interop/upload.py` registers an account, finds the upload service with slixmpp's
//! xep_0363 plugin, uploads 200 KiB with `upload_file` (slot over XMPP, `PUT` over HTTPS with
//! aiohttp), fetches the file back (whole and a range) and compares the bytes, and checks that
//! a file over `max-file-size` is refused by slixmpp (from the advertised limit) and by the
//! server. The script's docstring lists every assertion.
//! Skipped without slixmpp unless `KLEIBER_REQUIRE_INTEROP=1` (as in `interop_slixmpp.rs`).

mod common;
use common::*;

#[test]
fn slixmpp_uploads_and_downloads_a_file() {
    let Some(py) = interop_python_or_skip() else {
        return;
    };
    // The URLs the service hands out must reach the test's listener: a port chosen first.
    let port = free_port();
    let s = TestServer::start_with(|c| {
        c.http.listen = vec![std::net::SocketAddr::from(([127, 0, 0, 1], port))];
        c.http.public_url = format!("https://127.0.0.1:{port}");
        c.upload.max_file_size_mb = 1;
    });
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/upload.py");
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
            "upl",
        ])
        .args(["--max-size", &(1u64 << 20).to_string()])
        .output()
        .expect("run the slixmpp client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "upload.py failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("OK: HTTP file upload"), "{stdout}");
    let uploads = s.shared().store.uploads.all().unwrap();
    assert_eq!(uploads.len(), 1);
    let (token, u) = &uploads[0];
    assert_eq!((u.user.as_str(), u.size), ("upla", 200 * 1024));
    assert_eq!(u.filename, "interop_test.bin");
    let file = s.dir.path().join("uploads").join(token);
    assert_eq!(std::fs::metadata(file).unwrap().len(), 200 * 1024);
}
