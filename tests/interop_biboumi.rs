//! A real gateway on the component port (XEP-0114): Debian's biboumi connects to kleiber as
//! the component `irc.localhost`, Debian's ngircd is the IRC network on a loopback address of
//! its own, and `tests/interop/biboumi.py` has a slixmpp user and a raw IRC client talk in
//! an IRC channel and in private, both ways (its docstring lists each step). Then biboumi is
//! killed and started again, and kleiber takes it back without operator action.
//!
//! Skipped when biboumi, ngircd or slixmpp is missing, unless `KLEIBER_REQUIRE_INTEROP=1` (as
//! in `.ci/run`, which installs them), where a missing one fails the test.

mod common;
use common::procs::{installed, Collected, Proc};
use common::*;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kleiber::config::ComponentConfig;

const GATEWAY: &str = "irc.localhost";
const SECRET: &str = "biboumi-test-secret";

/// A loopback address of the IRC server's own (IRC clients and biboumi use port 6667), chosen
/// per process so a second run on the machine does not collide.
fn irc_address() -> String {
    let n = std::process::id();
    format!(
        "127.{}.{}.{}",
        100 + n % 100,
        (n / 100) % 250 + 1,
        (n / 25_000) % 250 + 2
    )
}

/// ngircd on `addr`:6667, in the foreground, with its log collected.
fn start_ngircd(dir: &Path, addr: &str) -> (Proc, Collected) {
    let conf = dir.join("ngircd.conf");
    std::fs::write(
        &conf,
        format!(
            "[Global]\nName = irc.kleiber.test\nInfo = kleiber test network\n\
             Listen = {addr}\nPorts = 6667\nMotdPhrase = \"test\"\n\
             [Limits]\nMaxConnectionsIP = 0\n\
             [Options]\nIdent = no\nPAM = no\nDNS = no\n"
        ),
    )
    .unwrap();
    let mut child = Command::new("ngircd")
        .arg("-n")
        .arg("-f")
        .arg(&conf)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ngircd");
    let log = Collected::of(child.stderr.take().unwrap());
    let _ = Collected::of(child.stdout.take().unwrap());
    (Proc(child), log)
}

/// biboumi with a config naming kleiber's component port, its log collected.
fn start_biboumi(dir: &Path, port: u16) -> (Proc, Collected) {
    let conf = dir.join("biboumi.cfg");
    std::fs::write(
        &conf,
        format!(
            "hostname={GATEWAY}\npassword={SECRET}\nxmpp_server_ip=127.0.0.1\nport={port}\n\
             admin=\nidentd_port=0\nlog_level=0\nlog_file=\nrealname_customization=true\n\
             db_name={}\npolicy_directory={}\n",
            dir.join("biboumi.sqlite").display(),
            dir.display()
        ),
    )
    .unwrap();
    let mut child = Command::new("biboumi")
        .arg(&conf)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start biboumi");
    let out = Collected::of(child.stdout.take().unwrap());
    let _ = Collected::of(child.stderr.take().unwrap());
    (Proc(child), out)
}

/// Wait (a hang guard) until `cond` holds.
fn wait_until(what: &str, context: impl Fn() -> String, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what}: not within a minute\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_script(py: &Path, s: &TestServer, irc: &str, prefix: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/biboumi.py");
    let out = Command::new(py)
        .arg(path)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &s.starttls.port().to_string(),
        ])
        .args(["--domain", "localhost", "--prefix", prefix])
        .args(["--gateway", GATEWAY, "--irc-host", irc])
        .output()
        .expect("run biboumi.py");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "biboumi.py failed:\n{stdout}\n{stderr}"
    );
    stdout
}

#[test]
fn slixmpp_talks_to_irc_through_biboumi() {
    if !installed("biboumi") || !installed("ngircd") {
        return;
    }
    let Some(py) = interop_python_or_skip() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let irc = irc_address();
    let (_ngircd, irc_log) = start_ngircd(work.path(), &irc);
    let irc_addr: SocketAddr = format!("{irc}:6667").parse().unwrap();
    wait_until(
        "ngircd listening",
        || irc_log.text(),
        || std::net::TcpStream::connect(irc_addr).is_ok(),
    );

    let s = TestServer::start_with(|c| {
        c.components = vec![ComponentConfig {
            domain: GATEWAY.into(),
            secret: SECRET.into(),
            listen: None,
            parent: None,
        }];
    });
    let port = common::component::port_of(&s).port();
    let connected = || s.shared().components.is_connected(GATEWAY);
    let (bib, log) = start_biboumi(work.path(), port);
    wait_until("biboumi connected", || log.text(), connected);

    let out = run_script(&py, &s, &irc, "bib");
    println!("{out}");
    assert!(out.contains("OK: IRC channel"), "{out}");

    // The gateway goes away and comes back: kleiber frees the domain and takes it again.
    drop(bib);
    wait_until("biboumi gone", String::new, || !connected());
    let (_bib, log) = start_biboumi(work.path(), port);
    wait_until("biboumi connected again", || log.text(), connected);
    let out = run_script(&py, &s, &irc, "bib2");
    assert!(out.contains("OK: IRC channel"), "{out}");
}
