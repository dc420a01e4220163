//! A full disk: below `storage.min_free_mb` the real binary refuses new writes with
//! `resource-constraint` (registration, roster change, private storage, an offline message,
//! which bounces to its sender), logs the state once, keeps serving the sessions it has
//! (messages between online users, reads, pings), loses nothing it had accepted, and accepts
//! writes again once space returns.
//!
//! The disk is really filled: the reserve is set just under the free space the test finds,
//! and a file of 1 GiB is allocated (`posix_fallocate`) on the same file system, then removed.

mod common;
use common::fed::{body, wait_for};
use common::*;

use std::time::Duration;

use kleiber::store::space::available;
use kleiber::xml::StreamEvent;

const MIB: u64 = 1 << 20;

/// Wait for a log line containing `needle`, keeping the lines read.
fn wait_log(b: &mut Binary, needle: &str) -> String {
    if let Some(l) = b.lines.iter().find(|l| l.contains(needle)) {
        return l.clone();
    }
    loop {
        let line = b
            .log
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
        b.lines.push(line.clone());
        if line.contains(needle) {
            return line;
        }
    }
}

fn fill(path: &std::path::Path, bytes: u64) {
    use std::os::unix::io::AsRawFd;
    let f = std::fs::File::create(path).unwrap();
    // SAFETY: a valid open file descriptor.
    let rc = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, bytes as libc::off_t) };
    assert_eq!(rc, 0, "posix_fallocate failed: {rc}");
    f.sync_all().unwrap();
}

async fn iq(c: &mut Client, id: &str, xml: &str) -> kleiber::xml::Element {
    c.send(&xml.replace("ID", id)).await;
    wait_for(c, |e| e.name == "iq" && e.get_attr("id") == Some(id)).await
}

const ROSTER_SET: &str =
    "<iq type='set' id='ID'><query xmlns='jabber:iq:roster'><item jid='CONTACT'/></query></iq>";
const PRIVATE_SET: &str = "<iq type='set' id='ID'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'>VALUE</prefs></query></iq>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_new_writes_keeps_sessions_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let free = available(dir.path()).unwrap();
    if free < 3 << 30 {
        // Filling a nearly full disk further would hurt the machine more than it proves.
        eprintln!("skipped: only {} MiB free", free / MIB);
        return;
    }
    // Half a GiB of margin either way: other writers on the machine do not flip the state.
    let reserve_mb = (free - (512 * MIB)) / MIB;
    let mut b = Binary::start(
        &dir.path().join("data"),
        &format!("[storage]\nmin_free_mb = {reserve_mb}\n"),
        "info",
    );
    for u in ["juliet", "romeo", "nurse"] {
        let mut c = Client::starttls(b.starttls, "localhost").await;
        let r = c.register(u, "pw").await;
        assert_eq!(
            r.get_attr("type"),
            Some("result"),
            "{}",
            r.to_xml("jabber:client")
        );
    }
    let mut j = Client::bound(b.direct, "juliet", "pw", "balcony").await;
    let mut r = Client::bound(b.direct, "romeo", "pw", "orchard").await;
    j.send("<presence/>").await;
    r.send("<presence/>").await;
    wait_for(&mut r, |e| e.name == "presence").await;
    // Accepted before the disk fills: must survive it.
    j.send("<message to='nurse@localhost' type='chat' id='m1'><body>before</body></message>")
        .await;
    let e = iq(
        &mut j,
        "r1",
        &ROSTER_SET.replace("CONTACT", "tybalt@localhost"),
    )
    .await;
    assert_eq!(e.get_attr("type"), Some("result"));

    fill(&dir.path().join("ballast"), 1 << 30);
    // The guard looks at most twice a second; the first refused write notices.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let e = iq(
        &mut j,
        "r2",
        &ROSTER_SET.replace("CONTACT", "mercutio@localhost"),
    )
    .await;
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("resource-constraint"),
        "{}",
        e.to_xml("jabber:client")
    );
    let err = e.get_child("error", "jabber:client").unwrap();
    assert_eq!(err.get_attr("type"), Some("wait"));
    let line = wait_log(&mut b, "disk: ");
    assert!(line.contains("refused"), "{line}");
    let e = iq(&mut j, "p1", &PRIVATE_SET.replace("VALUE", "dark")).await;
    assert_eq!(error_condition(&e).as_deref(), Some("resource-constraint"));
    // An offline message cannot be kept: it bounces to its sender, who knows to retry.
    j.send("<message to='nurse@localhost' type='chat' id='m2'><body>during</body></message>")
        .await;
    let e = wait_for(&mut j, |e| {
        e.name == "message" && e.get_attr("id") == Some("m2")
    })
    .await;
    assert_eq!(e.get_attr("type"), Some("error"));
    assert_eq!(error_condition(&e).as_deref(), Some("resource-constraint"));
    // No new accounts.
    let mut c = Client::starttls(b.starttls, "localhost").await;
    let e = c.register("paris", "pw").await;
    assert_eq!(error_condition(&e).as_deref(), Some("resource-constraint"));

    // Everything that needs no new write goes on.
    r.send("<message to='juliet@localhost/balcony' type='chat' id='m3'><body>still here</body></message>")
        .await;
    let m = wait_for(&mut j, |e| {
        e.name == "message" && e.get_attr("id") == Some("m3")
    })
    .await;
    assert_eq!(body(&m).as_deref(), Some("still here"));
    let e = iq(
        &mut j,
        "g1",
        "<iq type='get' id='ID'><query xmlns='jabber:iq:roster'/></iq>",
    )
    .await;
    assert!(e.to_xml("jabber:client").contains("tybalt@localhost"));
    j.ping("ping1").await;
    // A client may still log in (the last-login time is kept whatever the reserve).
    let mut r2 = Client::bound(b.direct, "romeo", "pw", "phone").await;
    r2.ping("ping2").await;

    // Space returns: writes are accepted again.
    std::fs::remove_file(dir.path().join("ballast")).unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let e = iq(
        &mut j,
        "r3",
        &ROSTER_SET.replace("CONTACT", "mercutio@localhost"),
    )
    .await;
    assert_eq!(
        e.get_attr("type"),
        Some("result"),
        "{}",
        e.to_xml("jabber:client")
    );
    let line = wait_log(&mut b, "writes accepted");
    assert!(line.contains("disk: "), "{line}");
    let e = iq(&mut j, "p2", &PRIVATE_SET.replace("VALUE", "light")).await;
    assert_eq!(e.get_attr("type"), Some("result"));
    j.send("<message to='nurse@localhost' type='chat' id='m4'><body>after</body></message>")
        .await;
    let e = c.register("paris", "pw").await;
    assert_eq!(e.get_attr("type"), Some("result"));

    // The nurse gets what was accepted, and only that.
    let mut n = Client::bound(b.direct, "nurse", "pw", "kitchen").await;
    n.send("<presence/>").await;
    let first = wait_for(&mut n, |e| e.name == "message").await;
    let second = wait_for(&mut n, |e| e.name == "message").await;
    assert_eq!(body(&first).as_deref(), Some("before"));
    assert_eq!(body(&second).as_deref(), Some("after"));
    // ... and no third one (the refused message was not kept).
    n.send("<iq type='get' id='last'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let e = wait_for(&mut n, |e| {
        e.name == "message" || e.get_attr("id") == Some("last")
    })
    .await;
    assert_eq!(e.name, "iq", "{}", e.to_xml("jabber:client"));
    let lines = b.stop();
    assert!(!lines.iter().any(|l| l.contains("panicked")));
}

/// A data directory that cannot be used (here: below a regular file, which no amount of
/// privileges makes writable) stops the server at start with one line naming `data_dir`.
#[test]
fn unusable_data_dir_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), "").unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\n[listen]\nc2s_starttls = [\"127.0.0.1:0\"]\nc2s_direct_tls = []\ns2s = []\n[http]\nlisten = [\"127.0.0.1:0\"]\n[proxy65]\nlisten = [\"127.0.0.1:0\"]\n",
            dir.path().join("file").join("data")
        ),
    )
    .unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_kleiber"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let err: Vec<&str> = err.lines().filter(|l| l.contains("data_dir")).collect();
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(err[0].contains("Not a directory"), "{err:?}");
}

/// The disk fills up under the database anyway (the reserve turned off): sled fails to write.
/// Acknowledgements stop there, the stream ends with `resource-constraint`, messages that
/// cannot be kept bounce, and after space returns and a restart every acknowledged message is
/// delivered, each once. Needs a size-limited file system: a tmpfs is mounted if the machine
/// allows it (root with CAP_SYS_ADMIN), else the test says so and skips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_that_hits_a_full_disk_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mount = |size: &str, remount: bool| {
        let opts = if remount {
            format!("remount,size={size}")
        } else {
            format!("size={size}")
        };
        std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &opts, "tmpfs"])
            .arg(&mnt)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !mount("24m", false) {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let data = mnt.join("data");
    let extra = "[storage]\nmin_free_mb = 0\n[offline]\nmax_messages_per_user = 100000\nmax_bytes_per_user = 1000000000\n";
    let b = Binary::start(&data, extra, "info");
    for u in ["fa", "fb"] {
        let mut c = Client::starttls(b.starttls, "localhost").await;
        assert_eq!(c.register(u, "pw").await.get_attr("type"), Some("result"));
    }
    let mut a = Client::bound(b.direct, "fa", "pw", "r").await;
    a.send("<enable xmlns='urn:xmpp:sm:3'/>").await;
    assert_eq!(a.recv().await.name, "enabled");
    let body = "x".repeat(7000);
    let (mut sent, mut acked, mut bounced) = (0u32, 0u32, 0u32);
    let mut ended = false;
    while !ended && sent < 20_000 {
        let mut batch = String::new();
        for i in sent..sent + 50 {
            batch.push_str(&format!(
                "<message to='fb@localhost' type='chat' id='m{i}'><body>{body}</body></message>"
            ));
        }
        sent += 50;
        a.send(&format!("{batch}<r xmlns='urn:xmpp:sm:3'/>")).await;
        loop {
            match a.next().await {
                StreamEvent::Element(e) if e.name == "a" => {
                    acked = e.get_attr("h").unwrap().parse().unwrap();
                    break;
                }
                StreamEvent::Element(e) if e.name == "message" => {
                    assert_eq!(error_condition(&e).as_deref(), Some("resource-constraint"));
                    bounced += 1;
                }
                StreamEvent::Element(e) if e.name == "error" => {
                    assert!(e.to_xml("jabber:client").contains("resource-constraint"));
                    ended = true;
                }
                StreamEvent::Element(e) if e.name == "r" => {
                    // Our stanzas received since <enabled/>: only the bounces.
                    a.send(&format!("<a xmlns='urn:xmpp:sm:3' h='{bounced}'/>"))
                        .await;
                }
                StreamEvent::End => {
                    ended = true;
                    break;
                }
                StreamEvent::Element(e) => panic!("unexpected {}", e.to_xml("jabber:client")),
                StreamEvent::Header(_) => panic!("header"),
            }
        }
    }
    assert!(ended, "the disk never filled");
    assert!(acked > 0 && acked < sent, "acked {acked} of {sent}");
    let lines = b.stop();
    assert!(
        lines.iter().any(|l| l.contains("database write failed")),
        "{lines:?}"
    );
    // Space returns; after a restart everything acknowledged is there, once.
    assert!(mount("200m", true));
    let b = Binary::start(&data, extra, "info");
    let mut r = Client::bound(b.direct, "fb", "pw", "r").await;
    r.send("<presence/><iq type='get' id='done'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let mut seen = std::collections::HashSet::new();
    let mut got = 0u32;
    loop {
        let e = tokio::time::timeout(Duration::from_secs(5), r.recv()).await;
        let Ok(e) = e else { break };
        if e.name == "message" {
            got += 1;
            assert!(
                seen.insert(e.get_attr("id").unwrap().to_owned()),
                "duplicate"
            );
        }
    }
    eprintln!(
        "sent {sent}, acknowledged {acked}, bounced {bounced}, delivered after restart {got}"
    );
    for i in 0..acked {
        assert!(
            seen.contains(&format!("m{i}")),
            "acknowledged m{i} lost ({got} delivered, {acked} acked, {bounced} bounced)"
        );
    }
    b.stop();
}
