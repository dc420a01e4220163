//! Federation interop with a real server not written here: Prosody from Debian's packages,
//! started by the test on loopback. kleiber (`kleiber.test`) and Prosody (`prosody.test`)
//! route to each other statically (Prosody through the fixture module
//! `tests/interop/prosody/mod_test_s2s_routes.lua`, as it only knows DNS); both use
//! self-signed certificates, so the links authenticate with dialback. A kleiber user and a
//! Prosody user subscribe to each other, see each other's presence and chat both ways.
//!
//! Group chat (XEP-0045) both ways: Prosody runs its MUC component (`conference.prosody.test`),
//! kleiber its group-chat service (`conference.kleiber.test`), each reachable from the other
//! over s2s. A kleiber user enters a room a Prosody user created on Prosody's MUC, and a
//! Prosody user enters a room a kleiber user created on kleiber's; in each they see each other
//! (the room's owner with the other's real JID), talk both ways (the sender gets its own
//! message back), exchange private messages through the room and leave (kleiber's room
//! kicks the Prosody user, 307).
//!
//! Skipped when `prosody` is not installed, unless `KLEIBER_REQUIRE_INTEROP=1` (as in CI),
//! where a missing Prosody fails the test.

mod common;
use common::fed::*;
use common::muc::{codes, create_instant, MUC, MUC_ADMIN, MUC_OWNER, MUC_USER};
use common::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use kleiber::actors::messages::S2sLinks;
use kleiber::config::HostConfig;
use kleiber::xml::Element;

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

impl Prosody {
    fn start(binary: &Path, kleiber_s2s: u16) -> Prosody {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (c2s, s2s) = (free_port(), free_port());
        let (cert, key) = (d.join("prosody.test.crt"), d.join("prosody.test.key"));
        kleiber::tls::generate_self_signed("prosody.test", &cert, &key).unwrap();
        let (mcert, mkey) = (
            d.join("conference.prosody.test.crt"),
            d.join("conference.prosody.test.key"),
        );
        kleiber::tls::generate_self_signed("conference.prosody.test", &mcert, &mkey).unwrap();
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
test_s2s_routes = {{
    ["kleiber.test"] = {{ "127.0.0.1", {kleiber_s2s} }};
    ["conference.kleiber.test"] = {{ "127.0.0.1", {kleiber_s2s} }};
}}
VirtualHost "prosody.test"
    ssl = {{ certificate = "{cert}"; key = "{key}"; }}
Component "conference.prosody.test" "muc"
    ssl = {{ certificate = "{mcert}"; key = "{mkey}"; }}
"#,
            d = d.display(),
            plugins = plugins.display(),
            cert = cert.display(),
            key = key.display(),
            mcert = mcert.display(),
            mkey = mkey.display(),
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

/// kleiber serving `kleiber.test` (and its group-chat service `conference.kleiber.test`) on
/// `kleiber_s2s`, with static routes to Prosody's domain and its MUC component.
fn kleiber_for(prosody: &Prosody, kleiber_s2s: u16) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.hosts = BTreeMap::from([("kleiber.test".to_owned(), HostConfig::default())]);
    cfg.listen.s2s = vec![format!("127.0.0.1:{kleiber_s2s}").parse().unwrap()];
    for domain in ["prosody.test", "conference.prosody.test"] {
        cfg.s2s
            .routes
            .insert(domain.into(), format!("127.0.0.1:{}", prosody.s2s));
    }
    TestServer::start_in(dir, cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kleiber_and_prosody_users_subscribe_and_chat() {
    let Some(binary) = prosody_binary() else {
        return;
    };
    let kleiber_s2s = free_port();
    let prosody = Prosody::start(&binary, kleiber_s2s);
    let k = kleiber_for(&prosody, kleiber_s2s);
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

/// Read from `c` until `done` matches; returns everything read, the match last. The time
/// limit is a hang guard (s2s links are set up on the way), with `log()` in its message.
async fn collect(
    c: &mut Client,
    done: impl Fn(&Element) -> bool,
    log: impl Fn() -> String,
) -> Vec<Element> {
    use kleiber::xml::StreamEvent;
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(60), c.reader.next()).await {
            Ok(Ok(StreamEvent::Element(e))) => {
                let stop = done(&e);
                got.push(e);
                if stop {
                    return got;
                }
            }
            other => panic!("{other:?} after {got:?}; prosody log:\n{}", log()),
        }
    }
}

fn item_attr(e: &Element, attr: &str) -> Option<String> {
    e.get_child("x", MUC_USER)?
        .get_child("item", MUC_USER)?
        .get_attr(attr)
        .map(str::to_owned)
}

fn groupchat_from(e: &Element, from: &str, text: &str) -> bool {
    e.name == "message"
        && e.get_attr("type") == Some("groupchat")
        && e.get_attr("from") == Some(from)
        && body(e).as_deref() == Some(text)
}

/// `c` enters `room` as `nick`: returns what came up to its own presence (110), which must
/// not be an error.
async fn enter_room(
    c: &mut Client,
    room: &str,
    nick: &str,
    log: impl Fn() -> String,
) -> Vec<Element> {
    let me = format!("{room}/{nick}");
    c.send(&format!(
        "<presence to='{me}'><x xmlns='{MUC}'/></presence>"
    ))
    .await;
    let got = collect(
        c,
        |e| {
            e.name == "presence"
                && e.get_attr("from") == Some(me.as_str())
                && (codes(e).contains(&110) || e.get_attr("type") == Some("error"))
        },
        &log,
    )
    .await;
    let own = got.last().unwrap();
    assert_ne!(own.get_attr("type"), Some("error"), "{own:?}\n{}", log());
    got
}

/// The two talk in `room` (each gets its own message back, the other gets it from the
/// sender's occupant JID), then `b` sends `a` a private message through the room.
async fn talk_in_room(
    a: &mut Client,
    a_nick: &str,
    b: &mut Client,
    b_nick: &str,
    room: &str,
    log: impl Fn() -> String,
) {
    let (a_occ, b_occ) = (format!("{room}/{a_nick}"), format!("{room}/{b_nick}"));
    for (sender, from, text) in [(0, &a_occ, "hello from a"), (1, &b_occ, "hello from b")] {
        let (me, other) = if sender == 0 {
            (&mut *a, &mut *b)
        } else {
            (&mut *b, &mut *a)
        };
        me.send(&format!(
            "<message to='{room}' type='groupchat' id='g{sender}'><body>{text}</body></message>"
        ))
        .await;
        let echo = collect(me, |e| groupchat_from(e, from, text), &log).await;
        assert_eq!(
            echo.last().unwrap().get_attr("id"),
            Some(&*format!("g{sender}"))
        );
        collect(other, |e| groupchat_from(e, from, text), &log).await;
    }
    b.send(&format!(
        "<message to='{a_occ}' type='chat' id='pm'><body>psst</body></message>"
    ))
    .await;
    let pm = collect(
        a,
        |e| e.name == "message" && body(e).as_deref() == Some("psst"),
        &log,
    )
    .await;
    let pm = pm.last().unwrap();
    assert_eq!(pm.get_attr("from"), Some(b_occ.as_str()), "{pm:?}");
    assert!(pm.get_child("x", MUC_USER).is_some(), "{pm:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kleiber_user_in_a_prosody_room() {
    let Some(binary) = prosody_binary() else {
        return;
    };
    let kleiber_s2s = free_port();
    let prosody = Prosody::start(&binary, kleiber_s2s);
    let k = kleiber_for(&prosody, kleiber_s2s);
    add_user(&k, "kleiber.test", "alice");
    let log = || prosody.log();
    let room = "lobby@conference.prosody.test";

    // Bob creates the room on Prosody's MUC (an instant room if Prosody locks new rooms).
    let mut bob = prosody_login(&prosody, "bob").await;
    let got = enter_room(&mut bob, room, "Bob", log).await;
    if codes(got.last().unwrap()).contains(&201) {
        bob.send(&format!(
            "<iq type='set' id='inst' to='{room}'><query xmlns='{MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
        ))
        .await;
        let r = collect(&mut bob, |e| e.get_attr("id") == Some("inst"), log).await;
        assert_eq!(r.last().unwrap().get_attr("type"), Some("result"), "{r:?}");
    }

    // Alice, on kleiber, enters over s2s: Bob's presence first, then her own.
    let mut alice = login(&k, "kleiber.test", "alice").await;
    let got = enter_room(&mut alice, room, "Alice", log).await;
    let bob_occ = format!("{room}/Bob");
    let owner = got
        .iter()
        .find(|e| presence_from(e, &bob_occ, None))
        .unwrap_or_else(|| panic!("no presence of Bob before Alice's own: {got:?}"));
    assert_eq!(item_attr(owner, "affiliation").as_deref(), Some("owner"));
    // Bob, the owner (a moderator), sees Alice's real JID.
    let p = collect(
        &mut bob,
        |e| presence_from(e, &format!("{room}/Alice"), None),
        log,
    )
    .await;
    assert_eq!(
        item_attr(p.last().unwrap(), "jid").as_deref(),
        Some("alice@kleiber.test/r")
    );

    talk_in_room(&mut alice, "Alice", &mut bob, "Bob", room, log).await;

    // Alice leaves: she gets her own unavailable presence, Bob sees her go.
    alice
        .send(&format!("<presence to='{room}/Alice' type='unavailable'/>"))
        .await;
    let own = collect(
        &mut alice,
        |e| presence_from(e, &format!("{room}/Alice"), Some("unavailable")),
        log,
    )
    .await;
    assert!(codes(own.last().unwrap()).contains(&110), "{own:?}");
    collect(
        &mut bob,
        |e| presence_from(e, &format!("{room}/Alice"), Some("unavailable")),
        log,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_user_in_a_kleiber_room() {
    let Some(binary) = prosody_binary() else {
        return;
    };
    let kleiber_s2s = free_port();
    let prosody = Prosody::start(&binary, kleiber_s2s);
    let k = kleiber_for(&prosody, kleiber_s2s);
    add_user(&k, "kleiber.test", "alice");
    let log = || prosody.log();
    let room = "tea@conference.kleiber.test";

    let mut alice = login(&k, "kleiber.test", "alice").await;
    create_instant(&mut alice, room, "Alice").await;

    // Bob, on Prosody, enters over s2s: Alice's presence first, then his own.
    let mut bob = prosody_login(&prosody, "bob").await;
    let got = enter_room(&mut bob, room, "Bob", log).await;
    let alice_occ = format!("{room}/Alice");
    let owner = got
        .iter()
        .find(|e| presence_from(e, &alice_occ, None))
        .unwrap_or_else(|| panic!("no presence of Alice before Bob's own: {got:?}"));
    assert_eq!(item_attr(owner, "affiliation").as_deref(), Some("owner"));
    assert_eq!(item_attr(owner, "jid"), None, "semi-anonymous: {owner:?}");
    let bob_occ = format!("{room}/Bob");
    let p = collect(&mut alice, |e| presence_from(e, &bob_occ, None), log).await;
    assert_eq!(
        item_attr(p.last().unwrap(), "jid").as_deref(),
        Some("bob@prosody.test/r")
    );

    talk_in_room(&mut bob, "Bob", &mut alice, "Alice", room, log).await;

    // Alice kicks Bob: he gets his own unavailable presence with 307 over s2s.
    alice
        .send(&format!(
            "<iq type='set' id='kick' to='{room}'><query xmlns='{MUC_ADMIN}'><item nick='Bob' role='none'><reason>bye</reason></item></query></iq>"
        ))
        .await;
    let r = collect(&mut alice, |e| e.get_attr("id") == Some("kick"), log).await;
    assert_eq!(r.last().unwrap().get_attr("type"), Some("result"), "{r:?}");
    let gone = collect(
        &mut bob,
        |e| presence_from(e, &bob_occ, Some("unavailable")),
        log,
    )
    .await;
    let gone = gone.last().unwrap();
    assert!(
        codes(gone).contains(&307) && codes(gone).contains(&110),
        "{gone:?}"
    );
}
