//! Group chat (XEP-0045) with two client families not written here, from Debian's packages:
//! `go-sendxmpp` (Go, the go-xmpp library) and `profanity` (C, libstrophe), driven by their
//! command lines and, for profanity, through a terminal in tmux. Each joins a room our own test
//! client (Bob, its owner) created, talks in it both ways, is kicked, comes back, is banned and
//! is then refused; what the client itself shows or logs is checked, not only what Bob sees.
//!
//! Each client is skipped when it (or tmux) is not installed, unless
//! `KLEIBER_REQUIRE_INTEROP=1` (as in `.ci/run`, which installs them), where a missing one fails
//! the test. The time limits are hang guards, never assertions about speed.

mod common;
use common::fed::wait_for;
use common::muc::{codes, create_instant, MUC_ADMIN, MUC_USER};
use common::procs::{installed, Collected, Proc, PATIENCE};
use common::*;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use kleiber::xml::Element;

const ROOM: &str = "lounge@conference.localhost";

/// Read from `c` until `done` matches; returns everything read, the match last.
async fn until(c: &mut Client, done: impl Fn(&Element) -> bool) -> Vec<Element> {
    until_or(c, done, String::new).await
}

/// As [`until`]; if nothing matches, the panic message includes `context()` (a client's log).
async fn until_or(
    c: &mut Client,
    done: impl Fn(&Element) -> bool,
    context: impl Fn() -> String,
) -> Vec<Element> {
    use kleiber::xml::StreamEvent;
    let mut got = Vec::new();
    loop {
        let e = match tokio::time::timeout(PATIENCE, c.reader.next()).await {
            Ok(Ok(StreamEvent::Element(e))) => e,
            Ok(other) => panic!("stream ended: {other:?}; got {got:?}\n{}", context()),
            Err(_) => panic!("nothing expected came; got {got:?}\n{}", context()),
        };
        let stop = done(&e);
        got.push(e);
        if stop {
            return got;
        }
    }
}

fn presence(e: &Element, from: &str, kind: Option<&str>) -> bool {
    e.name == "presence" && e.get_attr("from") == Some(from) && e.get_attr("type") == kind
}

fn item_jid(e: &Element) -> Option<String> {
    e.get_child("x", MUC_USER)?
        .get_child("item", MUC_USER)?
        .get_attr("jid")
        .map(str::to_owned)
}

fn groupchat_body(e: &Element, from: &str) -> Option<String> {
    (e.name == "message"
        && e.get_attr("type") == Some("groupchat")
        && e.get_attr("from") == Some(from))
    .then(|| {
        e.get_child("body", "jabber:client")
            .map(Element::text_content)
    })
    .flatten()
}

/// Bob says `text` in the room (and gets it back).
async fn say(bob: &mut Client, text: &str) {
    bob.send(&format!(
        "<message to='{ROOM}' type='groupchat'><body>{text}</body></message>"
    ))
    .await;
    let me = format!("{ROOM}/Bob");
    until(bob, |e| groupchat_body(e, &me).as_deref() == Some(text)).await;
}

/// Bob, moderator and owner, changes `item` (a muc#admin `<item/>`): the IQ must succeed and
/// everyone still in the room must hear that `nick` left with `code`.
async fn remove(bob: &mut Client, item: &str, nick: &str, code: u16) {
    bob.send(&format!(
        "<iq type='set' id='rm{code}' to='{ROOM}'><query xmlns='{MUC_ADMIN}'>{item}</query></iq>"
    ))
    .await;
    let id = format!("rm{code}");
    let occupant = format!("{ROOM}/{nick}");
    let mut got = until(bob, |e| e.name == "iq" && e.get_attr("id") == Some(&id)).await;
    assert_eq!(
        got.last().unwrap().get_attr("type"),
        Some("result"),
        "{got:?}"
    );
    if !got
        .iter()
        .any(|e| presence(e, &occupant, Some("unavailable")))
    {
        got = until(bob, |e| presence(e, &occupant, Some("unavailable"))).await;
    }
    let gone = got
        .iter()
        .find(|e| presence(e, &occupant, Some("unavailable")))
        .unwrap();
    assert!(codes(gone).contains(&code), "{gone:?}");
}

/// In go-sendxmpp's debug log (every stanza it received): the unavailable presence from
/// `occupant` to itself (110) with `code`.
fn own_exit(log: &str, occupant: &str, code: u16) -> bool {
    let log = log.replace('"', "'");
    log.split("<presence").any(|p| {
        let p = p.split("</presence>").next().unwrap_or("");
        p.contains(&format!("from='{occupant}'"))
            && p.contains("type='unavailable'")
            && p.contains(&format!("code='{code}'"))
            && p.contains("code='110'")
    })
}

/// A server with alice (password `pw-alice`, for the client under test) and Bob online as our
/// own test client, owner of the instant room `ROOM`.
async fn room_with_bob(user: &str) -> (TestServer, Client) {
    let s = TestServer::start();
    s.add_user(user, &format!("pw-{user}"));
    s.add_user("bob", "pw");
    let mut bob = s.online("bob", "desk").await;
    create_instant(&mut bob, ROOM, "Bob").await;
    (s, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_sendxmpp_joins_talks_is_kicked_and_banned() {
    const BIN: &str = "/usr/bin/go-sendxmpp";
    if !installed(BIN) {
        return;
    }
    let (s, mut bob) = room_with_bob("alice").await;
    let port = s.starttls.port().to_string();
    // go-sendxmpp as alice in the room under `nick`, listening (-l) or sending what it reads
    // on its input; -d logs every stanza it receives on its standard error.
    let go = |nick: &str, listen: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["-d", "-n", "-u", "alice@localhost", "-p", "pw-alice", "-j"])
            .arg(format!("127.0.0.1:{port}"));
        if listen {
            cmd.arg("-l");
        }
        cmd.args(["-c", "-a", nick, ROOM])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start go-sendxmpp");
        let out = Collected::of(child.stdout.take().unwrap());
        let log = Collected::of(child.stderr.take().unwrap());
        (Proc(child), out, log)
    };
    // Sending mode: it enters the room, says `text` and ends its session. (Each time under a
    // nick of its own: whether the room hears of a session that ends without leaving is not
    // what this test is about.)
    let send = |nick: &str, text: &'static str| {
        let (mut p, out, log) = go(nick, false);
        async move {
            use std::io::Write;
            let mut stdin = p.0.stdin.take().unwrap();
            stdin.write_all(text.as_bytes()).unwrap();
            drop(stdin);
            let status = tokio::task::spawn_blocking(move || p.0.wait())
                .await
                .unwrap()
                .unwrap();
            assert!(status.success(), "{}\n{}", out.text(), log.text());
            log.text()
        }
    };
    let said = |nick: &str, text: &str| {
        let from = format!("{ROOM}/{nick}");
        let text = text.to_owned();
        move |e: &Element| groupchat_body(e, &from).as_deref() == Some(text.as_str())
    };

    // 1. It enters and talks; Bob (a moderator) sees its real JID.
    let log = send("Gopher-1", "hello from go-sendxmpp").await;
    let got = until_or(&mut bob, said("Gopher-1", "hello from go-sendxmpp"), || {
        log.clone()
    })
    .await;
    let entered = got
        .iter()
        .find(|e| presence(e, &format!("{ROOM}/Gopher-1"), None))
        .expect("Gopher-1 entered before talking");
    assert!(
        item_jid(entered).is_some_and(|j| j.starts_with("alice@localhost/")),
        "{entered:?}"
    );

    // 2. Listening in the room, it prints what Bob says.
    let gopher = format!("{ROOM}/Gopher");
    let (listener, out, log) = go("Gopher", true);
    until_or(
        &mut bob,
        |e| presence(e, &gopher, None),
        || format!("{}\n{}", out.text(), log.text()),
    )
    .await;
    say(&mut bob, "hello listener").await;
    out.until("go-sendxmpp -l prints Bob's message", |t| {
        t.contains(&format!("{ROOM}/Bob: hello listener"))
    })
    .await;

    // 3. Bob kicks it: it gets its own unavailable presence with 307.
    remove(
        &mut bob,
        "<item nick='Gopher' role='none'><reason>be nice</reason></item>",
        "Gopher",
        307,
    )
    .await;
    log.until("go-sendxmpp gets its kick (307, 110)", |t| {
        own_exit(t, &gopher, 307)
    })
    .await;
    drop(listener);

    // 4. Kicked is not banned: it comes back and talks.
    let log = send("Gopher-2", "back after the kick").await;
    until_or(&mut bob, said("Gopher-2", "back after the kick"), || {
        log.clone()
    })
    .await;

    // 5. Listening again, Bob bans its account: 301.
    let (listener, out, log) = go("Gopher", true);
    until_or(
        &mut bob,
        |e| presence(e, &gopher, None),
        || format!("{}\n{}", out.text(), log.text()),
    )
    .await;
    remove(
        &mut bob,
        "<item jid='alice@localhost' affiliation='outcast'><reason>spam</reason></item>",
        "Gopher",
        301,
    )
    .await;
    log.until("go-sendxmpp gets its ban (301, 110)", |t| {
        own_exit(t, &gopher, 301)
    })
    .await;
    drop(listener);

    // 6. Banned: its entry is refused (forbidden) and so is its message (not in the room).
    let log = send("Gopher-3", "am I banned?").await.replace('"', "'");
    let refused = log
        .split("<presence")
        .any(|p| p.contains(&format!("from='{ROOM}/Gopher-3'")) && p.contains("<forbidden "));
    assert!(refused, "no forbidden presence error in\n{log}");
    let bounced = log
        .split("<message")
        .any(|m| m.contains("type='error'") && m.contains("<not-acceptable "));
    assert!(bounced, "no message error in\n{log}");
    // The outcast list has its account.
    bob.send(&format!(
        "<iq type='get' id='out' to='{ROOM}'><query xmlns='{MUC_ADMIN}'><item affiliation='outcast'/></query></iq>"
    ))
    .await;
    let r = wait_for(&mut bob, |e| e.get_attr("id") == Some("out")).await;
    assert!(
        r.to_xml("jabber:client").contains("alice@localhost"),
        "{r:?}"
    );
}

/// A tmux server of our own (its socket in a temp dir) running one client in a terminal;
/// on drop the tmux server and the client (by its process id) are killed.
struct Tmux {
    dir: tempfile::TempDir,
    socket: PathBuf,
    pid: Option<u32>,
}

impl Tmux {
    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket).args(["-f", "/dev/null"]);
        c
    }

    /// Start `program` (with HOME and the XDG directories in our temp dir).
    fn start(program: &str) -> Tmux {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("tmux.sock");
        let mut t = Tmux {
            socket,
            pid: None,
            dir,
        };
        let home = t.dir.path().display().to_string();
        let env = format!(
            "env HOME={home} XDG_CONFIG_HOME={home}/config XDG_DATA_HOME={home}/data TERM=screen {program}"
        );
        let ok = t
            .tmux()
            .args([
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                "250",
                "-y",
                "50",
                &env,
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux new-session");
        let out = t
            .tmux()
            .args(["display-message", "-p", "-t", "t", "#{pane_pid}"])
            .output()
            .unwrap();
        t.pid = String::from_utf8_lossy(&out.stdout).trim().parse().ok();
        t
    }

    /// Type `line` and Enter.
    fn type_line(&self, line: &str) {
        let ok = self
            .tmux()
            .args(["send-keys", "-t", "t", "-l", line])
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux send-keys");
        self.tmux()
            .args(["send-keys", "-t", "t", "Enter"])
            .status()
            .unwrap();
    }

    /// What the terminal shows, with its scrollback.
    fn screen(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-J", "-S", "-2000", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Wait until the terminal shows `text` (`n` times at least).
    async fn until_shown(&self, text: &str, n: usize) {
        let start = std::time::Instant::now();
        loop {
            let s = self.screen();
            if s.matches(text).count() >= n {
                return;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "the terminal does not show {text:?} ({n}x):\n{s}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").status();
        if let Some(pid) = self.pid {
            let _ = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profanity_joins_talks_is_kicked_and_banned() {
    const BIN: &str = "/usr/bin/profanity";
    if !installed(BIN) || !installed("/usr/bin/tmux") {
        return;
    }
    let (s, mut bob) = room_with_bob("carol").await;
    let pro = format!("{ROOM}/Pro");
    let t = Tmux::start(BIN);
    t.until_shown("/help", 1).await;
    t.type_line(&format!(
        "/connect carol@localhost server 127.0.0.1 port {} tls trust",
        s.starttls.port()
    ));
    t.until_shown("Enter password", 1).await;
    t.type_line("pw-carol");
    t.until_shown("logged in successfully", 1).await;

    // Entering and talking both ways.
    t.type_line(&format!("/join {ROOM} nick Pro"));
    t.until_shown("You have joined the room as Pro", 1).await;
    let p = wait_for(&mut bob, |e| presence(e, &pro, None)).await;
    assert!(
        item_jid(&p).is_some_and(|j| j.starts_with("carol@localhost/")),
        "{p:?}"
    );
    say(&mut bob, "hello profanity").await;
    t.until_shown("hello profanity", 1).await;
    t.type_line("hello from profanity");
    wait_for(&mut bob, |e| {
        groupchat_body(e, &pro).as_deref() == Some("hello from profanity")
    })
    .await;

    // Kicked: profanity says so, with the moderator and the reason.
    remove(
        &mut bob,
        "<item nick='Pro' role='none'><reason>be nice</reason></item>",
        "Pro",
        307,
    )
    .await;
    t.until_shown(&format!("Kicked from {ROOM} by Bob, reason: be nice"), 1)
        .await;

    // Back in, then banned.
    t.type_line(&format!("/join {ROOM} nick Pro"));
    wait_for(&mut bob, |e| presence(e, &pro, None)).await;
    t.until_shown("You have joined the room as Pro", 1).await;
    remove(
        &mut bob,
        "<item jid='carol@localhost' affiliation='outcast'><reason>spam</reason></item>",
        "Pro",
        301,
    )
    .await;
    t.until_shown(&format!("Banned from {ROOM} by Bob, reason: spam"), 1)
        .await;

    // Banned: entering again is refused.
    t.type_line(&format!("/join {ROOM} nick Pro"));
    t.until_shown(&format!("Error joining room {ROOM}, reason: forbidden"), 1)
        .await;
    t.type_line("/quit");
}
