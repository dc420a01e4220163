//! The privacy policy's retention promises: inactive accounts are deleted with everything
//! stored for them (and their contacts are told), a deleted name cannot be taken over at
//! once, and snapshots round-trip all data through `kleiber backup` / `kleiber restore`.

mod common;
use common::*;

use kleiber::store::{now_secs, AccountRecord, Store};

/// Every byte of every tree, as one blob (via a snapshot file).
fn all_bytes(store: &Store, dir: &std::path::Path) -> Vec<u8> {
    let p = dir.join("scan.snap");
    store.snapshot(&p).unwrap();
    std::fs::read(&p).unwrap()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_accounts_are_deleted_completely() {
    let dir = tempfile::tempdir().unwrap();
    {
        // Before the server starts: "oldtimer" last logged in two years ago and is mutually
        // subscribed with "juliet", with a vCard, private data and an offline message.
        let store = Store::open(dir.path()).unwrap();
        let creds = kleiber::credentials::derive("pw", 4, 4096).unwrap();
        let mut old = AccountRecord::new(creds.clone(), now_secs() - 2 * 365 * 86_400);
        old.last_logout = old.last_login;
        store
            .accounts
            .create("localhost", "oldtimer", &old)
            .unwrap();
        store
            .accounts
            .create(
                "localhost",
                "juliet",
                &AccountRecord::new(creds, now_secs()),
            )
            .unwrap();
        let both = kleiber::roster::Item {
            in_roster: true,
            to: true,
            from: true,
            ..Default::default()
        };
        store
            .rosters
            .put("localhost", "oldtimer", "juliet@localhost", &both)
            .unwrap();
        store
            .rosters
            .put("localhost", "juliet", "oldtimer@localhost", &both)
            .unwrap();
        store
            .client_data
            .set_vcard(
                "localhost",
                "oldtimer",
                "<vCard xmlns='vcard-temp'><FN>Old</FN></vCard>",
            )
            .unwrap();
        store
            .client_data
            .set_private(
                "localhost",
                "oldtimer",
                "storage:bookmarks",
                "<storage xmlns='storage:bookmarks'/>",
            )
            .unwrap();
        store
            .offline
            .push(
                "localhost",
                "oldtimer",
                1,
                "<message><body>for oldtimer</body></message>".into(),
            )
            .unwrap();
        store
            .rosters
            .set_blocked("localhost", "oldtimer", "spam.example", true)
            .unwrap();
        store.flush().unwrap();
    }
    let mut cfg = test_config(dir.path());
    cfg.accounts.delete_inactive_after_days = 365;
    let scan_dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir, cfg);
    for _ in 0..200 {
        if !s
            .shared()
            .store
            .accounts
            .exists("localhost", "oldtimer")
            .unwrap()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(!s
        .shared()
        .store
        .accounts
        .exists("localhost", "oldtimer")
        .unwrap());
    assert!(
        s.shared()
            .store
            .accounts
            .exists("localhost", "juliet")
            .unwrap(),
        "active accounts stay"
    );
    // The contact was unsubscribed (RFC 6121): juliet's item for the old account is `none`.
    let mut item = None;
    for _ in 0..200 {
        item = s
            .shared()
            .store
            .rosters
            .get("localhost", "juliet", "oldtimer@localhost")
            .unwrap();
        if item.as_ref().is_some_and(|i| !i.to && !i.from) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let item = item.unwrap();
    assert!(!item.to && !item.from, "{item:?}");
    // Nothing in any tree names the deleted account except juliet's own roster entry (her
    // data, which she can remove).
    s.shared()
        .store
        .rosters
        .put(
            "localhost",
            "juliet",
            "oldtimer@localhost",
            &Default::default(),
        )
        .unwrap();
    let bytes = all_bytes(&s.shared().store, scan_dir.path());
    assert!(
        !contains(&bytes, "oldtimer"),
        "a tree still names the deleted account"
    );
    assert!(!contains(&bytes, "for oldtimer"));
    // The name cannot be registered again at once.
    let mut c = Client::starttls(s.starttls, "localhost").await;
    let r = c.register("oldtimer", "new").await;
    assert_eq!(error_condition(&r).as_deref(), Some("conflict"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let b = Binary::start(&data, "", "info");
    let mut a = Client::starttls(b.starttls, "localhost").await;
    assert_eq!(
        a.register("alice", "pw").await.get_attr("type"),
        Some("result")
    );
    a.auth_scram("SCRAM-SHA-256", "alice", "pw").await.unwrap();
    a.bind(Some("r")).await;
    let mut c = Client::starttls(b.starttls, "localhost").await;
    assert_eq!(
        c.register("bob", "pw").await.get_attr("type"),
        Some("result")
    );
    for xml in [
        "<iq type='set' id='1'><vCard xmlns='vcard-temp'><FN>Alice</FN></vCard></iq>",
        "<iq type='set' id='2'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'><conference jid='a@b'/></storage></query></iq>",
        "<iq type='set' id='3'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bob'/></query></iq>",
    ] {
        a.send(xml).await;
    }
    a.send("<message to='bob@localhost' type='chat'><body>kept</body></message>")
        .await;
    a.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    // Every IQ answered (they may be answered in any order).
    let mut waiting: std::collections::HashSet<&str> = ["1", "2", "3", "p"].into();
    while !waiting.is_empty() {
        let e = a.recv().await;
        if let Some(id) = e.get_attr("id") {
            waiting.remove(id);
        }
    }
    drop(a);
    drop(c);
    b.stop();
    let cfg = data.with_extension("toml");
    let snap = dir.path().join("backup.snap");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kleiber"))
        .args(["backup"])
        .arg(&snap)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Restore into a new data directory and run the server on it.
    let data2 = dir.path().join("data2");
    let cfg2 = data2.with_extension("toml");
    std::fs::write(
        &cfg2,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace(&format!("{data:?}"), &format!("{data2:?}")),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kleiber"))
        .args(["restore"])
        .arg(&snap)
        .arg("--config")
        .arg(&cfg2)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Restoring over an existing database is refused.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kleiber"))
        .args(["restore"])
        .arg(&snap)
        .arg("--config")
        .arg(&cfg2)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let b = Binary::start(&data2, "", "info");
    let mut a = Client::starttls(b.starttls, "localhost").await;
    a.auth_scram("SCRAM-SHA-256", "alice", "pw").await.unwrap();
    a.bind(Some("r")).await;
    a.send("<iq type='get' id='v'><vCard xmlns='vcard-temp'/></iq>")
        .await;
    assert!(a.recv_xml().await.contains("<FN>Alice</FN>"));
    a.send("<iq type='get' id='pv'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>").await;
    assert!(a.recv_xml().await.contains("conference jid='a@b'"));
    a.send("<iq type='get' id='rg'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    assert!(a.recv_xml().await.contains("name='Bob'"));
    let mut bob = Client::starttls(b.starttls, "localhost").await;
    bob.auth_plain("", "bob", "pw").await.unwrap();
    bob.bind(Some("r")).await;
    bob.send("<presence/>").await;
    loop {
        let e = bob.recv().await;
        if e.name == "message" {
            assert_eq!(
                e.get_child("body", "jabber:client").unwrap().text_content(),
                "kept"
            );
            break;
        }
    }
    b.stop();
}

/// Data about `alice@localhost` that other accounts hold or that names her: roster items both
/// ways, a PEP node of juliet's where alice is a `member` and subscribed (bare and full), a
/// delivery-error entry, and alice's own data of every kind (a push registration too).
fn seed_alice_everywhere(store: &Store) {
    use kleiber::store::pep::{AccessModel, Affiliation, Node};
    let creds = kleiber::credentials::derive("pw", 4, 4096).unwrap();
    for u in ["alice", "juliet"] {
        let rec = AccountRecord::new(creds.clone(), now_secs());
        store.accounts.create("localhost", u, &rec).unwrap();
    }
    let both = kleiber::roster::Item {
        in_roster: true,
        to: true,
        from: true,
        ..Default::default()
    };
    let r = &store.rosters;
    r.put("localhost", "alice", "juliet@localhost", &both)
        .unwrap();
    r.put("localhost", "juliet", "alice@localhost", &both)
        .unwrap();
    r.set_blocked("localhost", "alice", "spam.example", true)
        .unwrap();
    let mut node = Node {
        access_model: AccessModel::Whitelist,
        max_items: 1,
        items: vec![("1".into(), "<x xmlns='urn:example'/>".into())],
        ..Default::default()
    };
    node.affiliations
        .insert("alice@localhost".into(), Affiliation::Member);
    node.affiliations
        .insert("romeo@localhost".into(), Affiliation::Member);
    node.subscribers
        .insert("alice@localhost".into(), "s1".into());
    node.subscribers
        .insert("alice@localhost/phone".into(), "s2".into());
    store
        .pep
        .put("localhost", "juliet", "urn:example", &node)
        .unwrap();
    store
        .pep
        .put("localhost", "alice", "urn:example", &node)
        .unwrap();
    let c = &store.client_data;
    c.set_vcard("localhost", "alice", "<vCard xmlns='vcard-temp'/>")
        .unwrap();
    c.set_private(
        "localhost",
        "alice",
        "urn:example",
        "<x xmlns='urn:example'/>",
    )
    .unwrap();
    store
        .offline
        .push(
            "localhost",
            "alice",
            1,
            "<message><body>hi</body></message>".into(),
        )
        .unwrap();
    let e = kleiber::store::DeliveryError {
        time_ms: now_secs() * 1000,
        from: "alice@localhost/phone".into(),
        to: "nobody@localhost".into(),
        reason: "service-unavailable".into(),
    };
    store.delivery_errors.append(&e, 1).unwrap();
    let push = kleiber::store::push::Registration {
        v: 1,
        jid: "push.example".into(),
        node: "alice-phone".into(),
        options: Default::default(),
        registered: now_secs(),
    };
    store.push.put("localhost", "alice", &push, 5).unwrap();
    // Message archives (XEP-0313): alice's, with her preferences, and juliet's with alice.
    use kleiber::store::archive::{Entry, Mode, Prefs};
    for (owner, with) in [
        ("alice", "juliet@localhost/r"),
        ("juliet", "alice@localhost/phone"),
    ] {
        let entry = Entry {
            id: store.archive.next_id(),
            with: with.into(),
            outgoing: false,
            xml: format!("<message xmlns='jabber:client' from='{with}'><body>hi</body></message>"),
        };
        store.archive.append("localhost", owner, &entry).unwrap();
    }
    store
        .archive
        .set_prefs("localhost", "alice", &Prefs::with_default(Mode::Roster))
        .unwrap();
    store.flush().unwrap();
}

/// Tree by tree, every key and value: nothing names alice (her user name, hence her bare
/// JID), except juliet's roster item for her (juliet's data, subscription `none` now).
/// Returns the number of entries checked.
fn assert_alice_gone(store: &Store) -> usize {
    let mut checked = 0;
    for tree in store.tree_names() {
        for (k, v) in store.entries(&tree).unwrap() {
            checked += 1;
            // Juliet's archive of her chat with alice is juliet's.
            if tree.starts_with("archive") && k.starts_with(b"localhost\0juliet\0") {
                continue;
            }
            if tree == "roster" && k.starts_with(b"localhost\0juliet\0") {
                let item: kleiber::roster::Item = serde_json::from_slice(&v).unwrap();
                assert!(!item.to && !item.from && !item.pending_in && !item.pending_out);
                continue;
            }
            for part in [&k, &v] {
                assert!(
                    !contains(part, "alice"),
                    "tree {tree} still names alice: {} = {}",
                    String::from_utf8_lossy(&k),
                    String::from_utf8_lossy(&v)
                );
            }
        }
    }
    let node = store.pep.get("localhost", "juliet", "urn:example").unwrap();
    assert_eq!(node.unwrap().affiliations.len(), 1, "romeo keeps his");
    checked
}

/// In-band cancellation on a running server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_band_deletion_leaves_no_trace_in_any_tree() {
    let dir = tempfile::tempdir().unwrap();
    seed_alice_everywhere(&Store::open(dir.path()).unwrap());
    let mut cfg = test_config(dir.path());
    cfg.archive.enabled = true;
    cfg.archive.retention_days = Some(30);
    let s = TestServer::start_in(dir, cfg);
    let mut a = Client::starttls(s.starttls, "localhost").await;
    a.auth_scram("SCRAM-SHA-256", "alice", "pw").await.unwrap();
    a.bind(Some("phone")).await;
    a.send("<iq type='set' id='del'><query xmlns='jabber:iq:register'><remove/></query></iq>")
        .await;
    loop {
        let e = a.recv().await;
        if e.get_attr("id") == Some("del") {
            assert_eq!(e.get_attr("type"), Some("result"));
            break;
        }
    }
    // juliet's roster is updated by the roster store shortly after.
    for _ in 0..200 {
        let item = s
            .shared()
            .store
            .rosters
            .get("localhost", "juliet", "alice@localhost")
            .unwrap();
        if item.is_some_and(|i| !i.to && !i.from) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let n = assert_alice_gone(&s.shared().store);
    assert!(n > 5, "{n} entries");
    // Juliet's archive stays hers.
    assert_eq!(s.shared().store.archive.total(), 1);
}

/// `kleiber user del` with the server stopped: the same store part.
#[test]
fn offline_cli_deletion_leaves_no_trace_in_any_tree() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    seed_alice_everywhere(&Store::open(&data).unwrap());
    let cfg = dir.path().join("k.toml");
    std::fs::write(&cfg, format!("data_dir = {data:?}\n")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kleiber"))
        .args(["user", "del", "alice@localhost", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let store = Store::open(&data).unwrap();
    let n = assert_alice_gone(&store);
    assert!(n > 5, "{n} entries");
    assert!(store.is_tombstoned("localhost", "alice").unwrap());
}

/// The delivery-error log keeps who -> whom as bare JIDs, and does not tell the operator that
/// the recipient blocks the sender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_errors_keep_bare_jids_and_hide_blocks() {
    let s = TestServer::start();
    s.add_user("alice", "pw");
    s.add_user("bob", "pw");
    s.shared()
        .store
        .rosters
        .set_blocked("localhost", "bob", "alice@localhost", true)
        .unwrap();
    let mut a = s.online("alice", "phone").await;
    a.send("<message to='bob@localhost' type='chat' id='m'><body>x</body></message>")
        .await;
    loop {
        let e = a.recv().await;
        if e.get_attr("id") == Some("m") {
            assert_eq!(error_condition(&e).as_deref(), Some("service-unavailable"));
            break;
        }
    }
    let mut entries = Vec::new();
    for _ in 0..200 {
        entries = s.shared().store.delivery_errors.since(0, 10).unwrap();
        if !entries.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!(
        (e.from.as_str(), e.to.as_str(), e.reason.as_str()),
        ("alice@localhost", "bob@localhost", "service-unavailable")
    );
}

/// Expired snapshots and stale `.tmp` files go at start, with snapshots switched off; fresh
/// ones and files that are not kleiber's stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_snapshots_are_pruned_at_start_even_when_snapshots_are_off() {
    let dir = tempfile::tempdir().unwrap();
    let snaps = dir.path().join("snapshots");
    std::fs::create_dir(&snaps).unwrap();
    let day = std::time::Duration::from_secs(86_400);
    let now = std::time::SystemTime::now();
    let files = [
        ("kleiber-20260101-000000.snap", now - 40 * day, false),
        ("kleiber-20260102-000000.tmp", now - day, false),
        ("kleiber-20261201-000000.snap", now - 2 * day, true),
        ("kleiber-20261207-000000.tmp", now, true),
        ("operator-copy.snap", now - 40 * day, true),
    ];
    for (name, mtime, _) in files {
        let f = std::fs::File::create(snaps.join(name)).unwrap();
        f.set_modified(mtime).unwrap();
    }
    let mut cfg = test_config(dir.path());
    cfg.snapshots.interval_hours = 0;
    cfg.snapshots.keep_days = 30;
    let _s = TestServer::start_in(dir, cfg);
    for _ in 0..200 {
        if !snaps.join(files[0].0).exists() && !snaps.join(files[1].0).exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    for (name, _, stays) in files {
        assert_eq!(snaps.join(name).exists(), stays, "{name}");
    }
}

/// A retention beyond the privacy policy is refused with one line naming the key, unless
/// `allow_longer_retention = true`, and then the server warns at start.
#[test]
fn longer_retention_is_refused_or_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let body = format!(
        "data_dir = {data:?}\n{{allow}}[listen]\nc2s_starttls = [\"127.0.0.1:0\"]\nc2s_direct_tls = [\"127.0.0.1:0\"]\ns2s = []\n[http]\nlisten = [\"127.0.0.1:0\"]\n[proxy65]\nlisten = [\"127.0.0.1:0\"]\n[snapshots]\nkeep_days = 60\n"
    );
    let cfg = dir.path().join("k.toml");
    std::fs::write(&cfg, body.replace("{allow}", "")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kleiber"))
        .args(["check-config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("snapshots.keep_days"), "{err}");
    let b = Binary::start_config(
        &data,
        &body.replace("{allow}", "allow_longer_retention = true\n"),
        "info",
    );
    let lines = b.stop();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("snapshots.keep_days")),
        "{lines:?}"
    );
}
