//! Federation interop with a real server not written here: Prosody from Debian's packages,
//! started by the test on loopback. kleiber (`kleiber.test`) and Prosody (`prosody.test`)
//! route to each other statically (Prosody through the fixture module
//! `tests/interop/prosody/mod_test_s2s_routes.lua`, as it only knows DNS); both use
//! self-signed certificates, so the links authenticate with dialback. A kleiber user and a
//! Prosody user subscribe to each other, see each other's presence and chat both ways.
//!
//! Skipped when `prosody` is not installed, unless `KLEIBER_REQUIRE_INTEROP=1` (as in CI),
//! where a missing Prosody fails the test.

mod common;
use common::fed::*;
use common::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use kleiber::actors::messages::S2sLinks;
use kleiber::config::HostConfig;

/// A Prosody process with its own config and data in a temp dir.
struct Prosody {
    child: Child,
    dir: tempfile::TempDir,
    c2s: u16,
    s2s: u16,
}

impl Drop for Prosody {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prosody_binary() -> Option<PathBuf> {
    let found = ["/usr/bin/prosody", "/usr/local/bin/prosody"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var("KLEIBER_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "prosody is not installed but KLEIBER_REQUIRE_INTEROP=1"
        );
        eprintln!("skipped: prosody is not installed (apt-get install prosody)");
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Prosody {
    fn start(binary: &Path, kleiber_s2s: u16) -> Prosody {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (c2s, s2s) = (free_port(), free_port());
        let (cert, key) = (d.join("prosody.test.crt"), d.join("prosody.test.key"));
        kleiber::tls::generate_self_signed("prosody.test", &cert, &key).unwrap();
        let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/prosody");
        std::fs::create_dir_all(d.join("data")).unwrap();
        let cfg = format!(
            r#"
run_as_root = true
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
plugin_paths = {{ "{plugins}" }}
log = {{ debug = "{d}/prosody.log" }}
interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
s2s_ports = {{ {s2s} }}
c2s_direct_tls_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
component_ports = {{ }}
network_settings = {{ nagle = false }}
modules_enabled = {{
    "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "register"; "vcard_legacy";
    "test_s2s_routes";
}}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = false
allow_registration = true
min_seconds_between_registrations = 0
registration_throttle_max = 1000000
test_s2s_routes = {{ ["kleiber.test"] = {{ "127.0.0.1", {kleiber_s2s} }} }}
VirtualHost "prosody.test"
    ssl = {{ certificate = "{cert}"; key = "{key}"; }}
"#,
            d = d.display(),
            plugins = plugins.display(),
            cert = cert.display(),
            key = key.display(),
        );
        let cfg_path = d.join("prosody.cfg.lua");
        std::fs::write(&cfg_path, cfg).unwrap();
        let child = Command::new(binary)
            .arg("--config")
            .arg(&cfg_path)
            .arg("-F")
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prosody starts");
        let p = Prosody {
            child,
            dir,
            c2s,
            s2s,
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", c2s)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", s2s)).is_ok()
            {
                return p;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("prosody did not open its ports; log:\n{}", p.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prosody.log")).unwrap_or_default()
    }
}

/// Log in on Prosody as `user@prosody.test/r` (registered in band first).
async fn prosody_login(p: &Prosody, user: &str) -> Client {
    let addr = format!("127.0.0.1:{}", p.c2s).parse().unwrap();
    let mut c = Client::starttls(addr, "prosody.test").await;
    let r = c.register(user, "pw").await;
    assert_eq!(
        r.get_attr("type"),
        Some("result"),
        "{}",
        r.to_xml("jabber:client")
    );
    let mut c = Client::starttls(addr, "prosody.test").await;
    c.auth_scram("SCRAM-SHA-1", user, "pw").await.unwrap();
    c.bind(Some("r")).await;
    c.send("<presence/>").await;
    let me = format!("{user}@prosody.test/r");
    wait_for(&mut c, |e| {
        e.name == "presence" && e.get_attr("from") == Some(me.as_str())
    })
    .await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kleiber_and_prosody_users_subscribe_and_chat() {
    let Some(binary) = prosody_binary() else {
        return;
    };
    let kleiber_s2s = free_port();
    let prosody = Prosody::start(&binary, kleiber_s2s);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.hosts = BTreeMap::from([("kleiber.test".to_owned(), HostConfig::default())]);
    cfg.listen.s2s = vec![format!("127.0.0.1:{kleiber_s2s}").parse().unwrap()];
    cfg.s2s
        .routes
        .insert("prosody.test".into(), format!("127.0.0.1:{}", prosody.s2s));
    let k = TestServer::start_in(dir, cfg);
    add_user(&k, "kleiber.test", "alice");

    let mut alice = login(&k, "kleiber.test", "alice").await;
    let mut bob = prosody_login(&prosody, "bob").await;
    let done = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        conversation(
            &mut alice,
            "alice@kleiber.test",
            &mut bob,
            "bob@prosody.test",
        ),
    )
    .await;
    assert!(
        done.is_ok(),
        "conversation stalled; prosody log:\n{}",
        prosody.log()
    );

    // A Prosody user writes to a kleiber user who is offline (bob has logged out).
    add_user(&k, "kleiber.test", "carol");
    let mut dave = prosody_login(&prosody, "dave").await;
    dave.send("<message to='carol@kleiber.test' type='chat'><body>from prosody</body></message>")
        .await;
    assert_eq!(
        wait_offline(&k, "kleiber.test", "carol", 1).await,
        1,
        "prosody's message was kept for carol"
    );

    let links = k
        .server
        .as_ref()
        .unwrap()
        .s2s
        .clone()
        .unwrap()
        .send(S2sLinks)
        .await
        .unwrap();
    assert!(
        links
            .iter()
            .any(|l| l.remote == "prosody.test" && l.outgoing && l.method == "dialback"),
        "{links:?}"
    );
    assert!(
        links
            .iter()
            .any(|l| l.remote == "prosody.test" && !l.outgoing && l.method == "dialback"),
        "{links:?}"
    );
}
