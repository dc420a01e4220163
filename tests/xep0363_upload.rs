//! HTTP File Upload (XEP-0363) end to end: slots over XMPP (TLS), `PUT`, `GET` and `HEAD` over
//! HTTPS against a real server; the slot's rules, the quota, the headers that keep shared
//! files from running as pages, CORS, restart, expiry by the scheduler and deletion with the
//! account.

mod common;
#[path = "upload_common/mod.rs"]
mod upload_common;

use common::*;
use kleiber::actors::ListenerKind;
use upload_common::*;

fn web(s: &TestServer) -> std::net::SocketAddr {
    s.server
        .as_ref()
        .unwrap()
        .addr(ListenerKind::Https)
        .expect("an HTTPS listener")
}

/// Bytes that are not text, so that any mangling shows.
fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Stop `s` and start a server on its data directory again.
fn restart(s: &mut TestServer) -> TestServer {
    s.stop();
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    let cfg = test_config(dir.path());
    TestServer::start_in(dir, cfg)
}

/// Wait (a hang guard, no timing assertion) until the file of `sl` is gone: `GET` says 404.
async fn wait_gone(s: &TestServer, sl: &SlotUrls) {
    let mut status = 0;
    for _ in 0..400 {
        status = get(web(s), "GET", &sl.get_path, &[]).await.status;
        if status == 404 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(status, 404);
}

/// `PUT` that must succeed.
async fn put_ok(s: &TestServer, sl: &SlotUrls, content_type: &str, body: &[u8]) {
    let r = put(web(s), sl, content_type, body).await;
    assert_eq!(r.status, 201, "{}", r.text());
}

async fn slot(c: &mut Client, name: &str, size: usize, content_type: &str) -> SlotUrls {
    let answer = request(
        c,
        &format!("filename='{name}' size='{size}' content-type='{content_type}'"),
    )
    .await;
    assert_eq!(answer.get_attr("type"), Some("result"));
    slot_of(&answer)
}

/// `<error/>`'s text.
fn error_text(e: &kleiber::xml::Element) -> String {
    e.get_child("error", "jabber:client")
        .and_then(|e| e.get_child("text", "urn:ietf:params:xml:ns:xmpp-stanzas"))
        .map(|t| t.text_content())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disco_lists_the_service_with_its_limit() {
    let s = TestServer::start();
    s.add_user("alice", "pw");
    let mut a = s.online("alice", "x").await;
    let items = iq(
        &mut a,
        "<iq type='get' to='localhost' id='i'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>",
        "i",
    )
    .await;
    assert!(
        items
            .to_xml("jabber:client")
            .contains("jid=\"upload.localhost\"")
            || items
                .to_xml("jabber:client")
                .contains("jid='upload.localhost'")
    );
    let info = iq(
        &mut a,
        &format!("<iq type='get' to='{SERVICE}' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"),
        "d",
    )
    .await;
    let q = info
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    let id = q.elements().find(|e| e.name == "identity").unwrap();
    assert_eq!(id.get_attr("category"), Some("store"));
    assert_eq!(id.get_attr("type"), Some("file"));
    assert!(q
        .elements()
        .any(|e| e.name == "feature" && e.get_attr("var") == Some(NS)));
    let xml = q.to_xml("jabber:client");
    assert!(xml.contains(NS), "FORM_TYPE: {xml}");
    assert!(xml.contains("max-file-size"), "{xml}");
    assert!(xml.contains(&(100u64 << 20).to_string()), "{xml}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_then_download_byte_identical_with_range_and_head() {
    let mut s = TestServer::start();
    s.add_user("alice", "pw");
    let mut a = s.online("alice", "x").await;
    let body = payload(300_000);
    let sl = slot(&mut a, "../holiday photo.png", body.len(), "image/png").await;
    assert!(sl.put_url.starts_with("https://localhost:5443/upload/"));
    assert_eq!(sl.put_url, sl.get_url);
    assert!(sl.get_url.ends_with("/holiday_photo.png"), "{}", sl.get_url);
    let token = sl.get_path.split('/').nth(2).unwrap().to_owned();
    assert!(token.len() >= 22, "at least 128 bits: {token}");
    assert_eq!(sl.headers.len(), 1);
    assert_eq!(sl.headers[0].0, "Authorization");

    let r = put(web(&s), &sl, "image/png", &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));

    let g = get(web(&s), "GET", &sl.get_path, &[]).await;
    assert_eq!(g.status, 200);
    assert!(g.body == body, "byte-identical");
    assert_eq!(g.header("content-type"), Some("image/png"));
    assert_eq!(g.header("x-content-type-options"), Some("nosniff"));
    let csp = g.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("sandbox"),
        "{csp}"
    );
    assert_eq!(g.header("access-control-allow-origin"), Some("*"));
    let cd = g.header("content-disposition").unwrap();
    assert!(cd.starts_with("inline"), "{cd}");

    let r = get(
        web(&s),
        "GET",
        &sl.get_path,
        &[("Range", "bytes=1000-1999")],
    )
    .await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &body[1000..2000]);
    assert_eq!(
        r.header("content-range"),
        Some(&*format!("bytes 1000-1999/{}", body.len()))
    );

    let h = get(web(&s), "HEAD", &sl.get_path, &[]).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), Some(&*body.len().to_string()));
    assert!(h.body.is_empty());

    // Files and directory for kleiber's user only.
    use std::os::unix::fs::PermissionsExt;
    let dir = s.dir.path().join("uploads");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(&token)), 0o600);
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "no partial file left"
    );

    // The slot is used up.
    let again = put(web(&s), &sl, "image/png", &body).await;
    assert_eq!(again.status, 404);

    // A restart keeps file and record.
    drop(a);
    let s = restart(&mut s);
    let g = get(web(&s), "GET", &sl.get_path, &[]).await;
    assert_eq!(g.status, 200);
    assert!(g.body == body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_must_match_the_slot() {
    let s = TestServer::start();
    s.add_user("alice", "pw");
    let mut a = s.online("alice", "x").await;
    let body = payload(5000);
    let sl = slot(&mut a, "notes.txt", body.len(), "text/plain").await;
    let w = web(&s);

    // Too short, too long, another type, no or a wrong secret.
    let r = put(w, &sl, "text/plain", &body[..4000]).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("Content-Length"), "{}", r.text());
    let mut longer = body.clone();
    longer.push(0);
    let r = put(w, &sl, "text/plain", &longer).await;
    assert_eq!(r.status, 413, "{}", r.text());
    let r = put(w, &sl, "text/html", &body).await;
    assert_eq!(r.status, 415, "{}", r.text());
    let mut no_auth = sl.clone();
    no_auth.headers.clear();
    assert_eq!(put(w, &no_auth, "text/plain", &body).await.status, 401);
    let mut wrong = sl.clone();
    wrong.headers[0].1 = "Bearer nope".into();
    assert_eq!(put(w, &wrong, "text/plain", &body).await.status, 403);
    // Another file name or an unknown token.
    let mut other = sl.clone();
    other.put_path = other.put_path.replace("notes.txt", "other.txt");
    assert_eq!(put(w, &other, "text/plain", &body).await.status, 404);
    let unknown = format!("/upload/{}/notes.txt", "A".repeat(24));
    assert_eq!(get(w, "GET", &unknown, &[]).await.status, 404);
    assert_eq!(
        get(w, "GET", "/upload/x/..%2F..%2Fetc", &[]).await.status,
        404
    );

    // An upload that breaks off leaves nothing, and the slot can be used again.
    use tokio::io::AsyncWriteExt;
    let mut tls = start_put(w, &sl, "text/plain", body.len()).await;
    tls.write_all(&body[..1000]).await.unwrap();
    tls.flush().await.unwrap();
    drop(tls);
    let mut status = 0;
    for _ in 0..400 {
        // The slot opens again once the server noticed the broken connection.
        status = put(w, &sl, "text/plain", &body).await.status;
        if status != 409 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(status, 201);
    // Only the complete file is left (the broken attempt's partial file is removed).
    let dir = s.dir.path().join("uploads");
    let mut left = Vec::new();
    for _ in 0..400 {
        left = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        if left.len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(!left[0].ends_with(".part"));
    let g = get(w, "GET", &sl.get_path, &[]).await;
    assert!(g.body == body);
    assert_eq!(g.header("content-type"), Some("text/plain"));
    assert!(g
        .header("content-disposition")
        .unwrap()
        .starts_with("inline"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_requests_are_checked() {
    let s = TestServer::start_with(|c| {
        c.upload.max_file_size_mb = 1;
        c.upload.quota_mb = 2;
    });
    s.add_user("alice", "pw");
    let mut a = s.online("alice", "x").await;

    let e = request(&mut a, "filename='big.bin' size='1048577'").await;
    assert_eq!(error_condition(&e).as_deref(), Some("not-acceptable"));
    let xml = e.to_xml("jabber:client");
    assert!(xml.contains("file-too-large"), "{xml}");
    assert!(
        xml.contains("<max-file-size>1048576</max-file-size>"),
        "{xml}"
    );
    for attrs in [
        "filename='a.bin'",
        "filename='a.bin' size='-1'",
        "filename='a.bin' size='many'",
        "size='10'",
        "filename='..' size='10'",
        "filename='a.bin' size='10' content-type='not a type'",
    ] {
        let e = request(&mut a, attrs).await;
        assert_eq!(
            error_condition(&e).as_deref(),
            Some("bad-request"),
            "{attrs}"
        );
        assert!(!error_text(&e).is_empty(), "{attrs}");
    }

    // The quota counts stored files and open slots: 2 MB = two slots of 1 MB, not three.
    let mb = 1 << 20;
    let s1 = slot(&mut a, "one.bin", mb, "application/octet-stream").await;
    let r = put(web(&s), &s1, "application/octet-stream", &payload(mb)).await;
    assert_eq!(r.status, 201);
    let _s2 = slot(&mut a, "two.bin", mb, "application/octet-stream").await;
    let e = request(&mut a, "filename='three.bin' size='10'").await;
    assert_eq!(error_condition(&e).as_deref(), Some("resource-constraint"));
    assert_eq!(
        e.get_child("error", "jabber:client")
            .unwrap()
            .get_attr("type"),
        Some("wait")
    );
    assert!(error_text(&e).contains("quota"), "{}", error_text(&e));
    // Other accounts have their own.
    s.add_user("bob", "pw");
    let mut b = s.online("bob", "x").await;
    slot(&mut b, "three.bin", 10, "text/plain").await;
    // Stanzas other than slot requests.
    let e = iq(
        &mut a,
        &format!("<iq type='set' to='{SERVICE}' id='u'><request xmlns='{NS}' filename='a' size='1'/></iq>"),
        "u",
    )
    .await;
    assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_content_is_an_attachment_and_cors_preflight_allows_uploads() {
    let s = TestServer::start();
    s.add_user("alice", "pw");
    let mut a = s.online("alice", "x").await;
    let w = web(&s);
    let page = b"<html><script>alert(1)</script></html>";
    for (name, ty) in [
        ("page.html", "text/html"),
        ("logo.svg", "image/svg+xml"),
        ("doc.pdf", "application/pdf"),
        ("data.xml", "application/xml"),
    ] {
        let sl = slot(&mut a, name, page.len(), ty).await;
        assert_eq!(put(w, &sl, ty, page).await.status, 201);
        let g = get(w, "GET", &sl.get_path, &[]).await;
        assert_eq!(g.header("content-type"), Some(ty));
        let cd = g.header("content-disposition").unwrap();
        assert!(cd.starts_with("attachment"), "{ty}: {cd}");
        assert!(cd.contains(name), "{cd}");
        assert_eq!(g.header("x-content-type-options"), Some("nosniff"));
        assert!(g
            .header("content-security-policy")
            .unwrap()
            .contains("sandbox"));
    }

    let sl = slot(&mut a, "x.png", 10, "image/png").await;
    let r = request_http(
        w,
        "OPTIONS",
        &sl.put_path,
        &[
            ("Origin", "https://converse.example"),
            ("Access-Control-Request-Method", "PUT"),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type",
            ),
        ],
        b"",
    )
    .await;
    assert!(r.status == 204 || r.status == 200, "{}", r.status);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let methods = r.header("access-control-allow-methods").unwrap();
    for m in ["GET", "HEAD", "PUT", "OPTIONS"] {
        assert!(methods.contains(m), "{methods}");
    }
    let allowed = r
        .header("access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_per_account_at_once_are_limited() {
    let s = TestServer::start_with(|c| c.upload.max_concurrent_per_account = 1);
    s.add_user("alice", "pw");
    let mut a = s.online("alice", "x").await;
    let w = web(&s);
    let body = payload(10_000);
    let first = slot(&mut a, "a.bin", body.len(), "application/octet-stream").await;
    let second = slot(&mut a, "b.bin", body.len(), "application/octet-stream").await;
    // The first PUT sends its head and half its body, and waits.
    use tokio::io::AsyncWriteExt;
    let mut tls = start_put(w, &first, "application/octet-stream", body.len()).await;
    tls.write_all(&body[..5000]).await.unwrap();
    tls.flush().await.unwrap();
    // Once the server is writing the first, the second must wait.
    let dir = s.dir.path().join("uploads");
    for _ in 0..400 {
        let writing = std::fs::read_dir(&dir).is_ok_and(|mut d| {
            d.any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".part"))
        });
        if writing {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let r = put(w, &second, "application/octet-stream", &body).await;
    let status = r.status;
    assert!(r.text().contains("too many uploads"), "{}", r.text());
    assert_eq!(status, 429);
    tls.write_all(&body[5000..]).await.unwrap();
    tls.flush().await.unwrap();
    let r = read_response(&mut tls, false).await;
    assert_eq!(r.status, 201);
    assert_eq!(
        put(w, &second, "application/octet-stream", &body)
            .await
            .status,
        201
    );
}

/// Expired files go when the scheduler's retention job runs (at start, then hourly).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_files_are_deleted_by_the_scheduler() {
    let mut s = TestServer::start();
    s.add_user("alice", "pw");
    let mut a = s.online("alice", "x").await;
    let body = payload(1000);
    let old = slot(&mut a, "old.bin", body.len(), "application/octet-stream").await;
    let new = slot(&mut a, "new.bin", body.len(), "application/octet-stream").await;
    for sl in [&old, &new] {
        put_ok(&s, sl, "application/octet-stream", &body).await;
    }
    // Back-date the first to 31 days ago (expire_after_days = 30).
    let uploads = &s.shared().store.uploads;
    let token = old.get_path.split('/').nth(2).unwrap();
    let mut rec = uploads.get(token).unwrap().unwrap();
    rec.uploaded = kleiber::store::now_secs() - 31 * 86_400;
    uploads.put(token, &rec).unwrap();
    drop(a);
    let s = restart(&mut s);
    wait_gone(&s, &old).await;
    assert!(!s.dir.path().join("uploads").join(token).exists());
    assert!(s.shared().store.uploads.get(token).unwrap().is_none());
    assert_eq!(get(web(&s), "GET", &new.get_path, &[]).await.status, 200);
}

/// In-band cancellation takes the account's files and open slots with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_deleted_with_the_account() {
    let s = TestServer::start();
    s.add_user("alice", "pw");
    s.add_user("bob", "pw");
    let mut a = s.online("alice", "x").await;
    let mut b = s.online("bob", "x").await;
    let body = payload(2000);
    let stored = slot(&mut a, "mine.bin", body.len(), "application/octet-stream").await;
    put_ok(&s, &stored, "application/octet-stream", &body).await;
    let open = slot(&mut a, "later.bin", body.len(), "application/octet-stream").await;
    let bobs = slot(&mut b, "bobs.bin", body.len(), "application/octet-stream").await;
    put_ok(&s, &bobs, "application/octet-stream", &body).await;

    let answer = iq(
        &mut a,
        "<iq type='set' id='del'><query xmlns='jabber:iq:register'><remove/></query></iq>",
        "del",
    )
    .await;
    assert_eq!(answer.get_attr("type"), Some("result"));
    wait_gone(&s, &stored).await;
    let token = stored.get_path.split('/').nth(2).unwrap();
    assert!(!s.dir.path().join("uploads").join(token).exists());
    let store = &s.shared().store;
    for (_, u) in store.uploads.all().unwrap() {
        assert_ne!(u.user, "alice");
    }
    assert_eq!(
        put(web(&s), &open, "application/octet-stream", &body)
            .await
            .status,
        404
    );
    assert_eq!(
        get(web(&s), "GET", &bobs.get_path, &[]).await.status,
        200,
        "bob's stay"
    );
}

/// The process's peak resident memory so far (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A 100 MiB upload (the default largest file) never sits in memory: the client streams it
/// from a generator and hashes the download as it arrives, so the process's peak memory
/// (client and server share it) grows by far less than the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_is_streamed_not_buffered() {
    use sha2::{Digest, Sha256};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SIZE: usize = 100 << 20;
    const CHUNK: usize = 256 << 10;
    let s = TestServer::start();
    s.add_user("alice", "pw");
    let mut a = s.online("alice", "x").await;
    let sl = slot(&mut a, "big.bin", SIZE, "application/octet-stream").await;
    let before = peak_rss_kib();
    let started = std::time::Instant::now();

    let mut tls = start_put(web(&s), &sl, "application/octet-stream", SIZE).await;
    let mut sent = Sha256::new();
    let mut chunk = payload(CHUNK);
    for i in 0..SIZE / CHUNK {
        chunk[0] = i as u8;
        sent.update(&chunk);
        tls.write_all(&chunk).await.unwrap();
    }
    tls.flush().await.unwrap();
    let r = read_response(&mut tls, false).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let uploaded = started.elapsed();

    let mut tls = connect(web(&s)).await;
    tls.write_all(head("GET", &sl.get_path, &[]).as_bytes())
        .await
        .unwrap();
    let mut got = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut head_seen = Vec::new();
    let mut body_bytes = 0usize;
    loop {
        let n = tls.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        if body_bytes == 0 && !head_seen.windows(4).any(|w| w == b"\r\n\r\n") {
            head_seen.extend_from_slice(&buf[..n]);
            if let Some(i) = head_seen.windows(4).position(|w| w == b"\r\n\r\n") {
                let rest = head_seen[i + 4..].to_vec();
                got.update(&rest);
                body_bytes += rest.len();
            }
            continue;
        }
        got.update(&buf[..n]);
        body_bytes += n;
    }
    assert_eq!(body_bytes, SIZE);
    assert_eq!(sent.finalize(), got.finalize(), "byte-identical");
    let grew_mib = peak_rss_kib().saturating_sub(before) / 1024;
    println!(
        "100 MiB: upload {:.1} s, upload+download {:.1} s, peak memory grew by {grew_mib} MiB",
        uploaded.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(grew_mib < 50, "peak memory grew by {grew_mib} MiB");
}

/// Users of other servers get no slots (`not-allowed`); the request crosses federation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_of_other_servers_get_no_slots() {
    use common::fed::{add_user, login};
    let (_a, b) = common::s2s::pair_for_service("upload.a.test");
    add_user(&b, "b.test", "bob");
    let mut bob = login(&b, "b.test", "bob").await;
    let e = iq(
        &mut bob,
        &format!("<iq type='get' to='upload.a.test' id='r'><request xmlns='{NS}' filename='a.txt' size='10'/></iq>"),
        "r",
    )
    .await;
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("not-allowed"),
        "{}",
        e.to_xml("jabber:client")
    );
}
