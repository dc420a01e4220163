//! The server's own web pages and XEP-0156 discovery (`src/http/pages/`), over real HTTPS:
//! host-meta in XML and JSON, language negotiation, the live configuration's figures on the
//! privacy page, registration closed by the config and by the runtime switch, escaping,
//! security headers, `http.pages = false`.
//!
//! `browser_renders_the_key_statements` loads the pages in headless Chromium and reads the
//! screenshots back with Tesseract OCR, so what a visitor sees is checked, not just the HTML.
//! It is skipped when `chromium` or `tesseract` (with `tesseract-ocr-deu`) is missing, unless
//! `KLEIBER_REQUIRE_INTEROP=1` (set by `.ci/run`, which installs them) makes that a failure.
//! `KLEIBER_SCREENSHOTS=DIR` keeps the screenshots there.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kleiber::actors::ListenerKind;
use kleiber::config::HostConfig;
use tokio::io::AsyncWriteExt;

use common::{read_to_close, tls_connect, TestServer};

/// One HTTP response.
struct Response {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

/// The server's HTTPS listener.
fn https(srv: &TestServer) -> SocketAddr {
    srv.server
        .as_ref()
        .unwrap()
        .addr(ListenerKind::Https)
        .expect("an HTTPS listener")
}

/// `GET path` over HTTPS with `Host: host` and extra headers.
async fn get(addr: SocketAddr, host: &str, path: &str, extra: &[(&str, &str)]) -> Response {
    request(addr, "GET", host, path, extra).await
}

/// `method path` over HTTPS; HTTP/1.1, connection closed after the response.
async fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> Response {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = tls_connect(tcp, false).await;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let raw = read_to_close(&mut tls).await;
    parse(&raw)
}

/// Split a raw response into status, headers (lower-case names) and body (un-chunked).
fn parse(raw: &str) -> Response {
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        unchunk(body)
    } else {
        body.to_owned()
    };
    Response {
        status: status.parse().unwrap(),
        headers,
        body,
    }
}

fn unchunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

#[tokio::test]
async fn host_meta_lists_the_enabled_endpoints_of_the_host_asked_for() {
    let srv = TestServer::start_with(|c| {
        c.hosts.insert("b.test".into(), HostConfig::default());
        c.http.public_url = "https://web.{host}".into();
    });
    let addr = https(&srv);
    let r = get(addr, "b.test:5443", "/.well-known/host-meta", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").starts_with("application/xrd+xml"));
    assert_eq!(r.header("access-control-allow-origin"), "*");
    assert!(r
        .body
        .contains("<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>"));
    assert!(r.body.contains("<Link rel=\"urn:xmpp:alt-connections:websocket\" href=\"wss://web.b.test/xmpp-websocket\"/>"), "{}", r.body);
    assert!(
        r.body.contains(
            "<Link rel=\"urn:xmpp:alt-connections:xbosh\" href=\"https://web.b.test/http-bind\"/>"
        ),
        "{}",
        r.body
    );

    let r = get(addr, "LOCALHOST", "/.well-known/host-meta.json", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("access-control-allow-origin"), "*");
    let j: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        j,
        serde_json::json!({"links": [
            {"rel": "urn:xmpp:alt-connections:websocket", "href": "wss://web.localhost/xmpp-websocket"},
            {"rel": "urn:xmpp:alt-connections:xbosh", "href": "https://web.localhost/http-bind"},
        ]})
    );
    // An unknown host gets the default host's (the first configured: b.test sorts first).
    let r = get(
        addr,
        "elsewhere.example",
        "/.well-known/host-meta.json",
        &[],
    )
    .await;
    assert!(r.body.contains("web.b.test"), "{}", r.body);
}

#[tokio::test]
async fn host_meta_leaves_out_disabled_endpoints_and_stays_without_pages() {
    let srv = TestServer::start_with(|c| {
        c.http.websocket = false;
        c.http.pages = false;
    });
    let addr = https(&srv);
    let r = get(addr, "localhost", "/.well-known/host-meta", &[]).await;
    assert_eq!(r.status, 200);
    assert!(!r.body.contains("websocket"), "{}", r.body);
    assert!(
        r.body.contains("https://localhost:5443/http-bind"),
        "{}",
        r.body
    );
    for path in ["/", "/privacy", "/privacy?lang=de"] {
        let r = get(addr, "localhost", path, &[]).await;
        assert_eq!(r.status, 404, "{path}");
    }
}

#[tokio::test]
async fn language_follows_the_query_then_accept_language() {
    let srv = TestServer::start();
    let addr = https(&srv);
    let cases = [
        ("/", None, "en"),
        ("/", Some("de-DE,de;q=0.9,en;q=0.8"), "de"),
        ("/", Some("en-US,en;q=0.9,de;q=0.8"), "en"),
        ("/", Some("fr, de;q=0.5"), "de"),
        ("/?lang=en", Some("de"), "en"),
        ("/privacy?lang=de", None, "de"),
        ("/privacy", Some("it"), "en"),
    ];
    for (path, accept, want) in cases {
        let extra: Vec<(&str, &str)> = accept.map(|a| ("Accept-Language", a)).into_iter().collect();
        let r = get(addr, "localhost", path, &extra).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.body.contains(&format!("<html lang=\"{want}\">")),
            "{path} {accept:?}"
        );
        assert_eq!(r.header("content-language"), want);
        let other = if want == "de" { "en" } else { "de" };
        assert!(
            r.body.contains(&format!("?lang={other}\"")),
            "no switch link: {path}"
        );
    }
    let r = get(addr, "localhost", "/?lang=de", &[]).await;
    assert!(r.body.contains("Registrierung geöffnet"));
    assert!(
        r.body.contains("Conversations") && r.body.contains("Monal") && r.body.contains("Gajim")
    );
    assert!(r.body.contains("conference.localhost"));
    assert!(r.body.contains("href=\"/privacy?lang=de\""));
}

#[tokio::test]
async fn pages_carry_security_headers_and_no_script() {
    let srv = TestServer::start();
    let addr = https(&srv);
    for path in ["/", "/privacy", "/nothing-here"] {
        let r = get(addr, "localhost", path, &[]).await;
        let csp = r.header("content-security-policy");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("style-src 'self'"),
            "{path}: {csp}"
        );
        assert_eq!(r.header("x-frame-options"), "DENY");
        assert!(r
            .header("content-type")
            .starts_with("text/html; charset=utf-8"));
        assert!(r.body.contains("name=\"viewport\""));
        assert!(!r.body.to_ascii_lowercase().contains("<script"), "{path}");
    }
    assert_eq!(
        get(addr, "localhost", "/nothing-here", &[]).await.status,
        404
    );
    let css = get(addr, "localhost", "/style.css", &[]).await;
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").starts_with("text/css"));
}

#[tokio::test]
async fn privacy_page_shows_the_configured_figures() {
    let srv = TestServer::start_with(|c| {
        c.accounts.delete_inactive_after_days = 90;
        c.snapshots.interval_hours = 12;
        c.snapshots.keep_days = 14;
        c.delivery_errors.retention_days = 7;
        c.muc.delete_unused_rooms_after_days = 200;
        c.upload.expire_after_days = 9;
        c.offline.max_messages_per_user = 123;
    });
    let addr = https(&srv);
    let en = get(addr, "localhost", "/privacy?lang=en", &[]).await.body;
    for phrase in [
        "No IP addresses are stored",
        "<strong>90 days</strong>",
        "every 12 hours",
        "<strong>14 days</strong>",
        "deleted after 7 days",
        "nobody entered for 200 days",
        "deleted 9 days after their upload",
        "at most 123 messages",
        "no password recovery",
        "End-to-end encryption",
    ] {
        assert!(
            en.to_lowercase().contains(&phrase.to_lowercase()),
            "missing {phrase:?}"
        );
    }
    let de = get(addr, "localhost", "/privacy?lang=de", &[]).await.body;
    for phrase in [
        "keine IP-Adressen gespeichert",
        "<strong>90 Tage</strong> lang",
        "alle 12 Stunden",
        "nach 7 Tagen gelöscht",
        "Passwort vergessen",
    ] {
        assert!(de.contains(phrase), "missing {phrase:?}");
    }
    let home = get(addr, "localhost", "/", &[]).await.body;
    assert!(home.contains("accounts unused for 90 days (no login) are deleted"));
    assert!(home.contains("deleted 9 days after their upload"));
    // Switched-off features are not promised, and "never" is said as such.
    let srv = TestServer::start_with(|c| {
        c.allow_longer_retention = true;
        c.accounts.delete_inactive_after_days = 0;
        c.muc.enabled = false;
        c.upload.enabled = false;
        c.snapshots.interval_hours = 0;
    });
    let en = get(https(&srv), "localhost", "/privacy", &[]).await.body;
    assert!(en.contains("Accounts are not deleted for inactivity"));
    assert!(en.contains("No automatic snapshots are taken"));
    assert!(!en.contains("group chat") && !en.contains("Group chat"));
    assert!(!en.contains("Shared files"));
}

#[tokio::test]
async fn registration_closed_by_config_or_at_runtime_is_said() {
    let srv = TestServer::start_with(|c| c.registration.open = false);
    let addr = https(&srv);
    let r = get(addr, "localhost", "/", &[]).await;
    assert!(r.body.contains("Registration is closed"));
    assert!(!r.body.contains("Registration is open"));
    srv.shared().set_registration_open(true);
    let r = get(addr, "localhost", "/?lang=de", &[]).await;
    assert!(r.body.contains("Registrierung geöffnet"));
    srv.shared().set_registration_open(false);
    let r = get(addr, "localhost", "/?lang=de", &[]).await;
    assert!(r.body.contains("Registrierung geschlossen"));
}

#[tokio::test]
async fn configured_values_are_escaped() {
    let srv = TestServer::start_with(|c| {
        c.contact.abuse = vec!["mailto:<script>alert(1)</script>@example.org".into()];
        c.contact.admin = vec!["javascript:alert(\"x\")".into()];
        c.contact.support = vec!["https://example.org/?a=1&b='2'".into()];
    });
    let addr = https(&srv);
    for path in ["/", "/privacy"] {
        let body = get(addr, "localhost", path, &[]).await.body;
        assert!(!body.contains("<script>"), "{path}");
        assert!(
            body.contains("&lt;script&gt;alert(1)&lt;/script&gt;@example.org"),
            "{path}"
        );
        assert!(!body.contains("href=\"javascript:"), "{path}");
        assert!(body.contains("javascript:alert(&quot;x&quot;)"), "{path}");
        assert!(
            body.contains("href=\"https://example.org/?a=1&amp;b=&#39;2&#39;\""),
            "{path}"
        );
    }
}

// --- the browser ------------------------------------------------------------------------

/// `bin` on the PATH, or `None` (skip) unless `KLEIBER_REQUIRE_INTEROP=1`.
fn tool(bin: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(bin))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("KLEIBER_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "{bin} is not installed but KLEIBER_REQUIRE_INTEROP=1"
        );
        eprintln!("SKIPPED: {bin} is not installed (apt-get install chromium tesseract-ocr tesseract-ocr-deu)");
    }
    found
}

/// Run `cmd` to its end (killed after two minutes: a hang guard) and return its stdout.
fn run(mut cmd: Command) -> String {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{cmd:?} failed: {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} did not finish");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap()
}

/// Headless Chromium on `url`: the rendered DOM, and a screenshot at `png`.
fn chromium(bin: &Path, profile: &Path, url: &str, png: &Path, size: &str) -> String {
    let _ = std::fs::remove_file(png);
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--ignore-certificate-errors",
        "--hide-scrollbars",
        "--no-first-run",
        "--force-device-scale-factor=1",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--window-size={size}"))
    .arg(format!("--screenshot={}", png.display()))
    .arg("--dump-dom")
    .arg(url);
    let dom = run(cmd);
    assert!(png.is_file(), "no screenshot of {url}");
    dom
}

/// The text Tesseract reads in `png`, lower case, whitespace collapsed.
fn ocr(bin: &Path, png: &Path, lang: &str) -> String {
    let mut cmd = Command::new(bin);
    cmd.arg(png).arg("stdout").args(["-l", lang]);
    normalise(&run(cmd))
}

fn normalise(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Load `path` in the browser and check `phrases` in the rendered DOM and in the screenshot.
fn check_rendered(
    tools: &(PathBuf, PathBuf),
    dir: &Path,
    url: &str,
    (ocr_lang, size): (&str, &str),
    phrases: &[&str],
) {
    let name = url.rsplit('/').next().unwrap().replace(['?', '='], "_");
    let png = dir.join(format!("{ocr_lang}{name}.png"));
    let dom = chromium(&tools.0, &dir.join("profile"), url, &png, size);
    let text = ocr(&tools.1, &png, ocr_lang);
    // KLEIBER_SCREENSHOTS=DIR keeps the screenshots for a look.
    if let Some(keep) = std::env::var_os("KLEIBER_SCREENSHOTS") {
        let _ = std::fs::copy(&png, Path::new(&keep).join(png.file_name().unwrap()));
    }
    let dom = normalise(&dom);
    for p in phrases {
        let p = p.to_lowercase();
        assert!(dom.contains(&p), "{url}: DOM lacks {p:?}");
        assert!(
            text.contains(&p),
            "{url}: screenshot lacks {p:?}; OCR read:\n{text}"
        );
    }
}

#[test]
fn browser_renders_the_key_statements() {
    let (Some(chrome), Some(tess)) = (tool("chromium"), tool("tesseract")) else {
        return;
    };
    let tools = (chrome, tess);
    let srv = TestServer::start_with(|c| c.accounts.delete_inactive_after_days = 90);
    let base = format!("https://localhost:{}", https(&srv).port());
    let dir = tempfile::tempdir().unwrap();
    let phone = "412,2400";
    let desk = "1000,3600";
    check_rendered(
        &tools,
        dir.path(),
        &format!("{base}/?lang=en"),
        ("eng", phone),
        &["registration is open", "conversations"],
    );
    check_rendered(
        &tools,
        dir.path(),
        &format!("{base}/privacy?lang=en"),
        ("eng", desk),
        &[
            "no ip addresses are stored",
            "90 days",
            "no password recovery",
        ],
    );
    check_rendered(
        &tools,
        dir.path(),
        &format!("{base}/privacy?lang=de"),
        ("deu", desk),
        &[
            "keine ip-adressen gespeichert",
            "90 tage",
            "passwort vergessen",
        ],
    );
    srv.shared().set_registration_open(false);
    check_rendered(
        &tools,
        dir.path(),
        &format!("{base}/?lang=en"),
        ("eng", phone),
        &["registration is closed"],
    );
    check_rendered(
        &tools,
        dir.path(),
        &format!("{base}/?lang=de"),
        ("deu", phone),
        &["registrierung geschlossen"],
    );
}
