//! Crash safety under load: what the server acknowledged survives SIGKILL.
//!
//! The real `kleiber` binary runs on a temporary data directory while tokio tasks write to it
//! concurrently over TLS: in-band registrations of new accounts (XEP-0077), roster sets that
//! add, rename and remove contacts (RFC 6121 §2), subscription handshakes between local users
//! that take both roster items through none, ask, to/from, both and back (RFC 6121 §3, with
//! XEP-0198 acks), messages to offline users (XEP-0160) from senders with stream management
//! (XEP-0198), and vCard (XEP-0054) and private XML storage (XEP-0049) sets. Each task writes
//! down exactly what the server acknowledged: an IQ `result`, or a stream management
//! `<a h='…'/>` whose `h` covers the stanza. In the middle of that load (1 to 3 s in, while
//! every task is still writing) the server gets SIGKILL; it is started again on the same data
//! directory and the test proves that
//!
//! - every acknowledged registration logs in with its password;
//! - every roster item is in its last acknowledged state, or, when a later change had been
//!   sent and not answered, in the state that change asked for; nothing else is on the roster;
//! - every subscription handshake step acknowledged to its sender is in both users' rosters;
//! - every offline message the sender's `h` covered is delivered to its recipient at the next
//!   login, each message at most once, and nothing is delivered again later;
//! - every acknowledged vCard and private XML document reads back.
//!
//! Three rounds on the same data directory, killed at different moments, each also checking
//! that what earlier rounds left behind is unchanged. A second test picks the least forgiving
//! moment: bursts of every kind of write, pipelined, and SIGKILL the instant the last
//! acknowledgement has arrived. Timeouts only guard against hangs.
//!
//! So they check that an acknowledgement comes only after the write is on disk (roster, vCard,
//! private storage and offline messages: `Store::durable`, group commit, not sled's background
//! flush), and that a XEP-0198 `<a h/>` covers only stanzas the roster store and spool have
//! handled (`sm.rs`, `settled`).

mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kleiber::xml::{Element, StreamEvent};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const ROUNDS: usize = 3;
const SM: &str = "urn:xmpp:sm:3";
const CLIENT: &str = "jabber:client";
const ROSTER: &str = "jabber:iq:roster";
const PRIVATE: &str = "jabber:iq:private";
const VCARD: &str = "vcard-temp";
/// Contacts each roster-set task works on.
const CONTACTS: usize = 12;
/// Private XML namespaces each data task writes (besides the vCard).
const PRIVATE_KEYS: usize = 3;
/// Messages an offline sender sends before asking for an ack.
const BATCH: usize = 8;
/// Acknowledged operations every task must have before the kill (so the kill lands in the
/// middle of the load of every kind, not before it started).
const MIN_PROGRESS: usize = 3;

/// No abuse limits, quotas large enough that no offline message bounces, and an output queue
/// large enough that all offline messages of a user come in one hand-over (so a sentinel
/// message stored last arrives last).
const CONFIG: &str = "[limits]
registrations_per_address_per_hour = 0
registrations_per_hour = 0
max_bytes_per_second = 0
stranger_messages_per_hour = 0
stranger_subscriptions_per_hour = 0
max_outbound_queue_bytes = 67108864
[offline]
max_messages_per_user = 1000000
max_bytes_per_user = 1000000000
";

// ---------------------------------------------------------------------------------------------
// Client I/O that reports a dead server instead of panicking (the load runs into the kill).

type Io<T> = Result<T, String>;

async fn tx(c: &mut Client, s: &str) -> Io<()> {
    c.writer
        .write_all(s.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    c.writer.flush().await.map_err(|e| format!("write: {e}"))
}

async fn rx(c: &mut Client) -> Io<Element> {
    match tokio::time::timeout(WAIT, c.reader.next()).await {
        Ok(Ok(StreamEvent::Element(e))) => Ok(e),
        Ok(Ok(other)) => Err(format!("stream event {other:?}")),
        Ok(Err(e)) => Err(format!("read: {e:?}")),
        Err(_) => Err("timed out waiting for the server".into()),
    }
}

/// A new direct-TLS stream (XEP-0368), header and features read.
async fn try_direct(addr: SocketAddr) -> Io<Client> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let tls = try_tls_connect(tcp, None).await?;
    let mut c = Client::unopened(tls, "localhost");
    tx(&mut c, &header("localhost")).await?;
    match tokio::time::timeout(WAIT, c.reader.next()).await {
        Ok(Ok(StreamEvent::Header(_))) => {}
        other => return Err(format!("stream header: {other:?}")),
    }
    c.features = rx(&mut c).await?;
    Ok(c)
}

/// Log in with PLAIN over direct TLS and bind (for the checks: the server is up).
async fn try_login(addr: SocketAddr, user: &str, pw: &str) -> Io<Client> {
    let mut c = try_direct(addr).await?;
    c.auth_plain("", user, pw)
        .await
        .map_err(|e| format!("login as {user} failed: {e}"))?;
    c.bind(Some("check")).await;
    Ok(c)
}

/// Send an IQ and wait for the reply with its id (anything else is skipped).
async fn iq(c: &mut Client, id: &str, xml: &str) -> Io<Element> {
    tx(c, xml).await?;
    loop {
        let e = rx(c).await?;
        if e.name == "iq" && e.get_attr("id") == Some(id) {
            return Ok(e);
        }
    }
}

fn is_result(e: &Element) -> bool {
    e.is("iq", CLIENT) && e.get_attr("type") == Some("result")
}

/// XEP-0077 registration on a new stream; returns the server's answer.
async fn try_register(addr: SocketAddr, user: &str, pw: &str) -> Io<Element> {
    let mut c = try_direct(addr).await?;
    iq(
        &mut c,
        "reg",
        &format!("<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>{user}</username><password>{pw}</password></query></iq>"),
    )
    .await
}

/// A bound session with stream management: counts the stanzas it sent (what the server's `h`
/// counts) and received (for the server's `<r/>`).
struct SmClient {
    c: Client,
    sent: u32,
    received: u32,
    /// Stanzas read while waiting for something else.
    stash: Vec<Element>,
    /// The last elements received (for failure messages).
    recent: std::collections::VecDeque<String>,
}

impl SmClient {
    /// Log in (the server is up: setup may panic), bind, enable SM, optionally be available.
    async fn start(addr: SocketAddr, user: &str, available: bool) -> SmClient {
        let mut c = try_login(addr, user, "pw").await.unwrap();
        c.send(&format!("<enable xmlns='{SM}'/>")).await;
        let e = c.recv().await;
        assert_eq!(e.name, "enabled", "{}", e.to_xml(CLIENT));
        let mut s = SmClient {
            c,
            sent: 0,
            received: 0,
            stash: Vec::new(),
            recent: Default::default(),
        };
        if available {
            // Available once the own presence comes back (the router has it): a subscription
            // request routed before that would be kept for the next login instead.
            s.stanza("<presence/>").await.unwrap();
            let me = s.c.jid.clone();
            loop {
                let e = s.next().await.unwrap();
                if e.name == "presence" && e.get_attr("from") == Some(me.as_str()) {
                    break;
                }
            }
        }
        s
    }

    /// Send one stanza; returns its number (the `h` that covers it).
    async fn stanza(&mut self, xml: &str) -> Io<u32> {
        tx(&mut self.c, xml).await?;
        self.sent += 1;
        Ok(self.sent)
    }

    /// The next element that is not an ack request (those are answered).
    async fn next(&mut self) -> Io<Element> {
        loop {
            let e = rx(&mut self.c).await?;
            if e.is("r", SM) {
                let a = format!("<a xmlns='{SM}' h='{}'/>", self.received);
                tx(&mut self.c, &a).await?;
                continue;
            }
            self.recent.push_back(e.to_xml(CLIENT));
            if self.recent.len() > 12 {
                self.recent.pop_front();
            }
            if e.ns == CLIENT && matches!(e.name.as_str(), "message" | "presence" | "iq") {
                self.received += 1;
            }
            return Ok(e);
        }
    }

    /// Ask for an ack and return the server's `h`.
    async fn ack(&mut self) -> Io<u32> {
        tx(&mut self.c, &format!("<r xmlns='{SM}'/>")).await?;
        loop {
            let e = self.next().await?;
            if e.is("a", SM) {
                return e
                    .get_attr("h")
                    .and_then(|h| h.parse().ok())
                    .ok_or_else(|| format!("malformed ack {}", e.to_xml(CLIENT)));
            }
            self.stash.push(e);
        }
    }

    /// Wait for a presence of `kind` from `from` (a bare JID).
    async fn presence_from(&mut self, from: &str, kind: &str) -> Io<()> {
        let want = |e: &Element| {
            e.name == "presence"
                && e.get_attr("type") == Some(kind)
                && e.get_attr("from")
                    .map(|f| f.split('/').next() == Some(from))
                    == Some(true)
        };
        if let Some(pos) = self.stash.iter().position(&want) {
            self.stash.drain(..=pos);
            return Ok(());
        }
        self.stash.clear();
        loop {
            if want(&self.next().await?) {
                return Ok(());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What was acknowledged.

/// A roster item as `jabber:iq:roster` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    name: Option<String>,
    groups: Vec<String>,
    sub: String,
    ask: Option<String>,
}

impl Item {
    fn sub(sub: &str, ask: Option<&str>) -> Item {
        Item {
            name: None,
            groups: Vec::new(),
            sub: sub.into(),
            ask: ask.map(Into::into),
        }
    }
}

/// A value the server acknowledged, and a later change sent without an answer (either state
/// is acceptable after the crash).
#[derive(Debug, Clone, Default)]
struct Slot<T> {
    acked: T,
    /// When the acknowledgement arrived (`None`: settled in an earlier round).
    at: Option<Instant>,
    pending: Option<T>,
}

/// Offline messages for one recipient.
#[derive(Debug, Default)]
struct Mailbox {
    /// Covered by the sender's `h`, with the time the ack arrived.
    acked: BTreeMap<String, Instant>,
    /// Sent (acknowledged or not).
    sent: BTreeSet<String>,
    /// Checked in an earlier round: only the sentinel may arrive.
    settled: bool,
}

/// One subscription handshake between `a` and `b`: steps sent, acknowledged to their sender,
/// and seen by the other user.
#[derive(Debug, Default, Clone)]
struct Pair {
    a: String,
    b: String,
    sent: usize,
    acked: usize,
    acked_at: Option<Instant>,
    delivered: usize,
}

#[derive(Default)]
struct Model {
    /// Accounts that must log in: (user, password, when the registration was acknowledged).
    accounts: Vec<(String, String, Option<Instant>)>,
    /// Registrations sent without an answer: they may or may not exist.
    maybe_accounts: Vec<(String, String)>,
    /// (user, contact) -> item (`None`: not on the roster).
    roster: BTreeMap<(String, String), Slot<Option<Item>>>,
    /// (user, "vcard" or a private namespace) -> the value written (`None`: never written).
    data: BTreeMap<(String, String), Slot<Option<String>>>,
    pairs: Vec<Pair>,
    offline: BTreeMap<String, Mailbox>,
}

/// Step `n` (from 1) of the handshake cycle: does A send it, and the presence type.
fn step(n: usize) -> (bool, &'static str) {
    match (n - 1) % 6 {
        0 => (true, "subscribe"),
        1 => (false, "subscribed"),
        2 => (false, "subscribe"),
        3 => (true, "subscribed"),
        4 => (true, "unsubscribe"),
        _ => (false, "unsubscribe"),
    }
}

/// A's item for B and B's item for A after `n` steps (RFC 6121 §3 and Appendix A).
fn pair_state(n: usize) -> (Option<Item>, Option<Item>) {
    if n == 0 {
        return (None, None);
    }
    let s = |sub, ask| Some(Item::sub(sub, ask));
    match (n - 1) % 6 {
        // B's request is pending (not shown); B has A on the roster from the second cycle on.
        0 => (
            s("none", Some("subscribe")),
            (n > 1).then(|| Item::sub("none", None)),
        ),
        1 => (s("to", None), s("from", None)),
        2 => (s("to", None), s("from", Some("subscribe"))),
        3 => (s("both", None), s("both", None)),
        4 => (s("from", None), s("to", None)),
        _ => (s("none", None), s("none", None)),
    }
}

// ---------------------------------------------------------------------------------------------
// The load: each task runs until the server dies under it.

/// Why a task stopped, and anything the server did that the test did not expect.
#[derive(Debug, Default)]
struct End {
    why: String,
    problems: Vec<String>,
}

enum Log {
    Registrations {
        acked: Vec<(String, String, Instant)>,
        unanswered: Vec<(String, String)>,
        end: End,
    },
    Roster {
        user: String,
        slots: BTreeMap<String, Slot<Option<Item>>>,
        end: End,
    },
    Data {
        user: String,
        slots: BTreeMap<String, Slot<Option<String>>>,
        end: End,
    },
    Pair(Pair, End),
    Offline {
        sent: Vec<(String, String)>,
        acked_at: Vec<Instant>,
        end: End,
    },
}

impl Log {
    fn end(&self) -> &End {
        match self {
            Log::Registrations { end, .. }
            | Log::Roster { end, .. }
            | Log::Data { end, .. }
            | Log::Pair(_, end)
            | Log::Offline { end, .. } => end,
        }
    }
}

async fn registrations(addr: SocketAddr, prefix: String, done: Arc<AtomicUsize>) -> Log {
    let (mut acked, mut unanswered, mut end) = (Vec::new(), Vec::new(), End::default());
    for i in 0.. {
        let user = format!("{prefix}n{i}");
        let pw = format!("pw-{user}");
        let mut c = match try_direct(addr).await {
            Ok(c) => c,
            Err(e) => {
                end.why = e;
                break;
            }
        };
        let id = "reg";
        let sent = tx(
            &mut c,
            &format!("<iq type='set' id='{id}'><query xmlns='jabber:iq:register'><username>{user}</username><password>{pw}</password></query></iq>"),
        )
        .await;
        let reply = match sent {
            Ok(()) => rx(&mut c).await,
            Err(e) => Err(e),
        };
        match reply {
            Ok(r) if is_result(&r) => {
                acked.push((user, pw, Instant::now()));
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => {
                end.problems
                    .push(format!("registration of {user}: {}", r.to_xml(CLIENT)));
                end.why = "unexpected answer".into();
                break;
            }
            Err(e) => {
                unanswered.push((user, pw));
                end.why = e;
                break;
            }
        }
    }
    Log::Registrations {
        acked,
        unanswered,
        end,
    }
}

async fn roster_sets(addr: SocketAddr, user: String, seed: u64, done: Arc<AtomicUsize>) -> Log {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut slots: BTreeMap<String, Slot<Option<Item>>> = BTreeMap::new();
    let mut end = End::default();
    let mut c = try_login(addr, &user, "pw").await.unwrap();
    for n in 0.. {
        let contact = format!("c{}@contacts.example", rng.gen_range(0..CONTACTS));
        let slot = slots.entry(contact.clone()).or_default();
        let id = format!("s{n}");
        let (payload, new) = if slot.acked.is_some() && rng.gen_bool(0.3) {
            (
                format!("<item jid='{contact}' subscription='remove'/>"),
                None,
            )
        } else {
            let item = Item {
                name: Some(format!("name {n}")),
                groups: vec![format!("group {}", n % 3)],
                sub: "none".into(),
                ask: None,
            };
            (
                format!(
                    "<item jid='{contact}' name='name {n}'><group>group {}</group></item>",
                    n % 3
                ),
                Some(item),
            )
        };
        slot.pending = Some(new.clone());
        let xml =
            format!("<iq type='set' id='{id}'><query xmlns='{ROSTER}'>{payload}</query></iq>");
        match iq(&mut c, &id, &xml).await {
            Ok(r) if is_result(&r) => {
                slot.acked = new;
                slot.at = Some(Instant::now());
                slot.pending = None;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => {
                end.problems.push(format!(
                    "roster set by {user}: {xml} -> {}",
                    r.to_xml(CLIENT)
                ));
                slot.pending = None;
                end.why = "unexpected answer".into();
                break;
            }
            Err(e) => {
                end.why = e;
                break;
            }
        }
    }
    Log::Roster { user, slots, end }
}

/// The vCard, or the private document of the `k`th namespace.
fn data_key(k: usize) -> String {
    if k == PRIVATE_KEYS {
        "vcard".into()
    } else {
        format!("urn:example:crash:{k}")
    }
}

fn data_set(id: &str, key: &str, value: &str) -> String {
    if key == "vcard" {
        format!("<iq type='set' id='{id}'><vCard xmlns='{VCARD}'><FN>{value}</FN></vCard></iq>")
    } else {
        format!("<iq type='set' id='{id}'><query xmlns='{PRIVATE}'><x xmlns='{key}'>{value}</x></query></iq>")
    }
}

async fn data_sets(addr: SocketAddr, user: String, seed: u64, done: Arc<AtomicUsize>) -> Log {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut slots: BTreeMap<String, Slot<Option<String>>> = BTreeMap::new();
    let mut end = End::default();
    let mut c = try_login(addr, &user, "pw").await.unwrap();
    for n in 0.. {
        let key = data_key(rng.gen_range(0..=PRIVATE_KEYS));
        let slot = slots.entry(key.clone()).or_default();
        let id = format!("d{n}");
        let value = format!("value {n}");
        slot.pending = Some(Some(value.clone()));
        let xml = data_set(&id, &key, &value);
        match iq(&mut c, &id, &xml).await {
            Ok(r) if is_result(&r) => {
                slot.acked = Some(value);
                slot.at = Some(Instant::now());
                slot.pending = None;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => {
                end.problems
                    .push(format!("{user}: {xml} -> {}", r.to_xml(CLIENT)));
                slot.pending = None;
                end.why = "unexpected answer".into();
                break;
            }
            Err(e) => {
                end.why = e;
                break;
            }
        }
    }
    Log::Data { user, slots, end }
}

/// Subscription handshakes between `a` and `b`, one step at a time: a step is sent once the
/// previous one was acknowledged to its sender and shown to the other user.
async fn handshakes(addr: SocketAddr, a: String, b: String, done: Arc<AtomicUsize>) -> Log {
    let mut ca = SmClient::start(addr, &a, true).await;
    let mut cb = SmClient::start(addr, &b, true).await;
    let mut p = Pair {
        a: a.clone(),
        b: b.clone(),
        ..Pair::default()
    };
    let mut end = End::default();
    for n in 1.. {
        let (a_sends, kind) = step(n);
        let (snd, rcv, from, to) = if a_sends {
            (&mut ca, &mut cb, &a, &b)
        } else {
            (&mut cb, &mut ca, &b, &a)
        };
        let number = match snd
            .stanza(&format!("<presence to='{to}@localhost' type='{kind}'/>"))
            .await
        {
            Ok(number) => number,
            Err(e) => {
                // Possibly written in part: it may have arrived.
                p.sent = n;
                end.why = e;
                break;
            }
        };
        p.sent = n;
        match snd.ack().await {
            Ok(h) if h >= number => {
                p.acked = n;
                p.acked_at = Some(Instant::now());
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(h) => {
                end.problems
                    .push(format!("{from}: h={h} after stanza {number} (step {n})"));
                end.why = "ack too low".into();
                break;
            }
            Err(e) => {
                end.why = format!("step {n} ({from} sent {kind}): waiting for the ack: {e}");
                break;
            }
        }
        match rcv.presence_from(&format!("{from}@localhost"), kind).await {
            Ok(()) => p.delivered = n,
            Err(e) => {
                end.why = format!("step {n} ({from} sent {kind}): waiting for the delivery to {to}: {e}; {to} got last: {:?}", rcv.recent);
                break;
            }
        }
    }
    Log::Pair(p, end)
}

/// Messages to offline users in batches, each followed by `<r/>`; the server's `h` tells which
/// of them it took responsibility for.
async fn offline_sender(
    addr: SocketAddr,
    user: String,
    recipients: Vec<String>,
    done: Arc<AtomicUsize>,
) -> Log {
    let mut c = SmClient::start(addr, &user, false).await;
    let mut sent: Vec<(String, String)> = Vec::new();
    let mut acked_at: Vec<Instant> = Vec::new();
    let mut end = End::default();
    loop {
        let mut batch = String::new();
        for _ in 0..BATCH {
            let to = recipients[sent.len() % recipients.len()].clone();
            let id = format!("{user}.{}", sent.len());
            batch.push_str(&format!(
                "<message to='{to}@localhost' type='chat' id='{id}'><body>{id}</body></message>"
            ));
            sent.push((id, to));
        }
        if let Err(e) = tx(&mut c.c, &batch).await {
            end.why = e;
            break;
        }
        c.sent += BATCH as u32;
        match c.ack().await {
            Ok(h) if h as usize <= sent.len() => {
                let now = Instant::now();
                while acked_at.len() < h as usize {
                    acked_at.push(now);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(h) => {
                end.problems
                    .push(format!("{user}: h={h} but only {} sent", sent.len()));
                end.why = "ack too high".into();
                break;
            }
            Err(e) => {
                end.why = e;
                break;
            }
        }
        // Nothing should bounce: the recipients exist and the quota is large.
        for e in c.stash.drain(..) {
            if e.name == "message" && e.get_attr("type") == Some("error") {
                end.problems
                    .push(format!("{user}: bounced {}", e.to_xml(CLIENT)));
            }
        }
        if !end.problems.is_empty() {
            end.why = "a message bounced".into();
            break;
        }
    }
    Log::Offline {
        sent,
        acked_at,
        end,
    }
}

/// The users of round `r`.
struct Users {
    roster: Vec<String>,
    pairs: Vec<(String, String)>,
    senders: Vec<String>,
    recipients: Vec<String>,
    data: Vec<String>,
}

impl Users {
    fn of_round(r: usize) -> Users {
        Users {
            roster: (0..3).map(|i| format!("ros{r}u{i}")).collect(),
            pairs: (0..2)
                .map(|i| (format!("pa{r}p{i}"), format!("pb{r}p{i}")))
                .collect(),
            senders: (0..2).map(|i| format!("snd{r}s{i}")).collect(),
            recipients: (0..3).map(|i| format!("off{r}r{i}")).collect(),
            data: (0..2).map(|i| format!("dat{r}u{i}")).collect(),
        }
    }

    fn all(&self) -> Vec<String> {
        let mut v = self.roster.clone();
        for (a, b) in &self.pairs {
            v.push(a.clone());
            v.push(b.clone());
        }
        v.extend(self.senders.iter().cloned());
        v.extend(self.recipients.iter().cloned());
        v.extend(self.data.iter().cloned());
        v
    }
}

/// Register `users` (password `pw`) while the server is up and idle.
async fn setup(addr: SocketAddr, users: &[String], model: &mut Model) {
    for u in users {
        let r = try_register(addr, u, "pw").await.unwrap();
        assert!(is_result(&r), "register {u}: {}", r.to_xml(CLIENT));
        model.accounts.push((u.clone(), "pw".into(), None));
    }
}

/// Run the load of round `r`, SIGKILL the server in its middle, and record what was
/// acknowledged. Returns when the kill happened.
async fn load_and_kill(b: Binary, r: usize, rng: &mut StdRng, model: &mut Model) -> Instant {
    let addr = b.direct;
    let users = Users::of_round(r);
    type Task = (String, Arc<AtomicUsize>, tokio::task::JoinHandle<Log>);
    let mut tasks: Vec<Task> = Vec::new();
    let counter = || Arc::new(AtomicUsize::new(0));
    for t in 0..2 {
        let d = counter();
        let f = registrations(addr, format!("reg{r}t{t}"), d.clone());
        tasks.push((format!("registrations {t}"), d, tokio::spawn(f)));
    }
    for u in &users.roster {
        let d = counter();
        let f = roster_sets(addr, u.clone(), rng.gen(), d.clone());
        tasks.push((format!("roster sets of {u}"), d, tokio::spawn(f)));
    }
    for u in &users.data {
        let d = counter();
        let f = data_sets(addr, u.clone(), rng.gen(), d.clone());
        tasks.push((format!("vCard/private sets of {u}"), d, tokio::spawn(f)));
    }
    for (a, bb) in &users.pairs {
        let d = counter();
        let f = handshakes(addr, a.clone(), bb.clone(), d.clone());
        tasks.push((format!("handshakes {a}/{bb}"), d, tokio::spawn(f)));
    }
    for s in &users.senders {
        let d = counter();
        let f = offline_sender(addr, s.clone(), users.recipients.clone(), d.clone());
        tasks.push((format!("offline messages from {s}"), d, tokio::spawn(f)));
    }
    // A different moment each round: 1.0-1.4 s, 1.8-2.2 s, 2.6-3.0 s (and later, if the machine
    // is so slow that some task has not got going yet).
    let delay = Duration::from_millis(1000 + 800 * r as u64 + rng.gen_range(0..400));
    let start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if tasks.iter().any(|(_, _, h)| h.is_finished()) {
            break;
        }
        let ready = tasks
            .iter()
            .all(|(_, d, _)| d.load(Ordering::Relaxed) >= MIN_PROGRESS);
        if ready && start.elapsed() >= delay {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the load did not get going: {:?}",
            tasks
                .iter()
                .map(|(n, d, _)| (n.clone(), d.load(Ordering::Relaxed)))
                .collect::<Vec<_>>()
        );
    }
    let early: Vec<String> = tasks
        .iter()
        .filter(|(_, _, h)| h.is_finished())
        .map(|(n, _, _)| n.clone())
        .collect();
    let killed_at = Instant::now();
    b.kill9();
    let load_ms = killed_at.duration_since(start).as_millis();

    let mut stats = BTreeMap::<&str, usize>::new();
    let mut problems = Vec::new();
    for (name, done, h) in tasks {
        let log = match tokio::time::timeout(Duration::from_secs(60), h).await {
            Ok(Ok(log)) => log,
            Ok(Err(e)) => panic!("task {name} failed: {e}"),
            Err(_) => panic!("task {name} did not notice the kill"),
        };
        let end = log.end();
        for p in &end.problems {
            problems.push(format!("{name}: {p}"));
        }
        if early.contains(&name) {
            problems.push(format!("{name} stopped before the kill: {}", end.why));
        }
        let acks = done.load(Ordering::Relaxed);
        match log {
            Log::Registrations {
                acked, unanswered, ..
            } => {
                *stats.entry("registrations").or_default() += acked.len();
                model
                    .accounts
                    .extend(acked.into_iter().map(|(u, p, t)| (u, p, Some(t))));
                model.maybe_accounts.extend(unanswered);
            }
            Log::Roster { user, slots, .. } => {
                *stats.entry("roster sets").or_default() += acks;
                for (contact, slot) in slots {
                    model.roster.insert((user.clone(), contact), slot);
                }
            }
            Log::Data { user, slots, .. } => {
                *stats.entry("vCard/private sets").or_default() += acks;
                for (key, slot) in slots {
                    model.data.insert((user.clone(), key), slot);
                }
            }
            Log::Pair(p, _) => {
                *stats.entry("handshake steps").or_default() += p.acked;
                model.pairs.push(p);
            }
            Log::Offline { sent, acked_at, .. } => {
                *stats.entry("offline messages").or_default() += acked_at.len();
                for (i, (id, to)) in sent.into_iter().enumerate() {
                    let mb = model.offline.entry(to).or_default();
                    if let Some(t) = acked_at.get(i) {
                        mb.acked.insert(id.clone(), *t);
                    }
                    mb.sent.insert(id);
                }
            }
        }
    }
    eprintln!("round {r}: SIGKILL after {load_ms} ms of load; acknowledged: {stats:?}");
    assert!(
        problems.is_empty(),
        "round {r}: the load went wrong before the kill:\n{}",
        problems.join("\n")
    );
    killed_at
}

// ---------------------------------------------------------------------------------------------
// The checks after the restart.

fn ago(killed_at: Instant, at: Option<Instant>) -> String {
    match at {
        Some(t) => format!(
            "acknowledged {} ms before the kill",
            killed_at.saturating_duration_since(t).as_millis()
        ),
        None => "settled in an earlier round".into(),
    }
}

/// An item as the roster shows it, or "absent".
fn show(item: &Option<Item>) -> String {
    let Some(i) = item else {
        return "absent".into();
    };
    let mut s = format!("subscription={}", i.sub);
    if let Some(a) = &i.ask {
        s.push_str(&format!(" ask={a}"));
    }
    if let Some(n) = &i.name {
        s.push_str(&format!(" name={n:?}"));
    }
    if !i.groups.is_empty() {
        s.push_str(&format!(" groups={:?}", i.groups));
    }
    s
}

fn later(pending: Option<String>) -> String {
    match pending {
        Some(p) => format!(" (a later change to {p} was sent without an answer)"),
        None => String::new(),
    }
}

async fn roster_of(c: &mut Client) -> Io<BTreeMap<String, Item>> {
    let r = iq(
        c,
        "rg",
        &format!("<iq type='get' id='rg'><query xmlns='{ROSTER}'/></iq>"),
    )
    .await?;
    let q = r
        .get_child("query", ROSTER)
        .ok_or_else(|| format!("roster get: {}", r.to_xml(CLIENT)))?;
    Ok(q.elements()
        .filter(|e| e.name == "item")
        .map(|it| {
            let mut groups: Vec<String> = it
                .elements()
                .filter(|g| g.name == "group")
                .map(|g| g.text_content())
                .collect();
            groups.sort();
            (
                it.get_attr("jid").unwrap_or_default().to_owned(),
                Item {
                    name: it.get_attr("name").map(Into::into),
                    groups,
                    sub: it.get_attr("subscription").unwrap_or("none").into(),
                    ask: it.get_attr("ask").map(Into::into),
                },
            )
        })
        .collect())
}

async fn data_of(c: &mut Client, key: &str) -> Io<Option<String>> {
    let value = if key == "vcard" {
        let r = iq(
            c,
            "vg",
            &format!("<iq type='get' id='vg'><vCard xmlns='{VCARD}'/></iq>"),
        )
        .await?;
        r.get_child("vCard", VCARD)
            .and_then(|v| v.get_child("FN", VCARD))
            .map(|f| f.text_content())
    } else {
        let r = iq(
            c,
            "pg",
            &format!(
                "<iq type='get' id='pg'><query xmlns='{PRIVATE}'><x xmlns='{key}'/></query></iq>"
            ),
        )
        .await?;
        r.get_child("query", PRIVATE)
            .and_then(|q| q.get_child("x", key))
            .map(|x| x.text_content())
    };
    Ok(value.filter(|v| !v.is_empty()))
}

/// Check everything the model holds against the restarted server; returns the violations and
/// settles the model (what is there now is what later rounds must find).
async fn check(addr: SocketAddr, r: usize, killed_at: Instant, model: &mut Model) -> Vec<String> {
    let mut bad = Vec::new();

    // Accounts: every acknowledged registration logs in with its password.
    let accounts = std::mem::take(&mut model.accounts);
    for chunk in accounts.chunks(8) {
        let logins = chunk.iter().map(|(u, pw, _)| async move {
            let mut c = try_direct(addr).await?;
            c.auth_plain("", u, pw).await
        });
        for ((u, _, at), res) in chunk
            .iter()
            .zip(futures_util::future::join_all(logins).await)
        {
            if let Err(e) = res {
                bad.push(format!(
                    "registration of {u} ({}) lost: login fails with {e}",
                    ago(killed_at, *at)
                ));
            }
        }
    }
    model.accounts = accounts.into_iter().map(|(u, p, _)| (u, p, None)).collect();
    // Unanswered registrations may or may not have happened; those that did must keep working.
    for (u, pw) in std::mem::take(&mut model.maybe_accounts) {
        let mut c = try_direct(addr).await.unwrap();
        if c.auth_plain("", &u, &pw).await.is_ok() {
            model.accounts.push((u, pw, None));
        }
    }

    // Rosters: per user, every item the load touched, and nothing else.
    let pairs = std::mem::take(&mut model.pairs);
    let mut by_user: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (u, c) in model.roster.keys() {
        by_user.entry(u.clone()).or_default().push(c.clone());
    }
    for p in &pairs {
        by_user.entry(p.a.clone()).or_default();
        by_user.entry(p.b.clone()).or_default();
    }
    let mut rosters = BTreeMap::new();
    for (user, contacts) in &by_user {
        let roster = match try_login(addr, user, "pw").await {
            Ok(mut c) => roster_of(&mut c).await.unwrap(),
            Err(e) => {
                bad.push(e);
                continue;
            }
        };
        for contact in contacts {
            let slot = model
                .roster
                .get_mut(&(user.clone(), contact.clone()))
                .unwrap();
            let actual = roster.get(contact).cloned();
            let ok = actual == slot.acked || slot.pending.as_ref() == Some(&actual);
            if !ok {
                bad.push(format!(
                    "roster of {user}: {contact} is {}, but {} was {}{}",
                    show(&actual),
                    show(&slot.acked),
                    ago(killed_at, slot.at),
                    later(slot.pending.as_ref().map(show))
                ));
            }
            *slot = Slot {
                acked: actual,
                at: None,
                pending: None,
            };
        }
        for (contact, item) in &roster {
            let known = model.roster.contains_key(&(user.clone(), contact.clone()))
                || pairs.iter().any(|p| {
                    (&p.a == user && p.b == contact.split('@').next().unwrap())
                        || (&p.b == user && p.a == contact.split('@').next().unwrap())
                });
            if !known {
                bad.push(format!(
                    "roster of {user}: unexpected item {contact} ({})",
                    show(&Some(item.clone()))
                ));
            }
        }
        rosters.insert(user.clone(), roster);
    }

    // Subscription handshakes: both items in the state of a step between the last one
    // acknowledged to its sender and the last one sent.
    for p in &pairs {
        let (Some(ra), Some(rb)) = (rosters.get(&p.a), rosters.get(&p.b)) else {
            continue;
        };
        let a_item = ra.get(&format!("{}@localhost", p.b)).cloned();
        let b_item = rb.get(&format!("{}@localhost", p.a)).cloned();
        let steps = p.acked..=p.sent.max(p.acked);
        for (who, whom, actual, pick) in [(&p.a, &p.b, &a_item, true), (&p.b, &p.a, &b_item, false)]
        {
            let allowed: Vec<Option<Item>> = steps
                .clone()
                .map(|n| {
                    let (x, y) = pair_state(n);
                    if pick {
                        x
                    } else {
                        y
                    }
                })
                .collect();
            if !allowed.contains(actual) {
                let (sender, kind) = step(p.acked.max(1));
                bad.push(format!(
                    "subscriptions {}/{}: {who}'s item for {whom} is {}, expected {}: step {} ({} sent `{kind}`) was {}, {} (steps sent: {}, shown to the other user: {})",
                    p.a,
                    p.b,
                    show(actual),
                    allowed.iter().map(show).collect::<Vec<_>>().join(" or "),
                    p.acked,
                    if sender { &p.a } else { &p.b },
                    ago(killed_at, p.acked_at),
                    if p.delivered >= p.acked { "and shown to the other user" } else { "not yet shown to the other user" },
                    p.sent,
                    p.delivered,
                ));
            }
        }
        // Settled: later rounds must find the same.
        for (u, c, item) in [(&p.a, &p.b, a_item), (&p.b, &p.a, b_item)] {
            model.roster.insert(
                (u.clone(), format!("{c}@localhost")),
                Slot {
                    acked: item,
                    at: None,
                    pending: None,
                },
            );
        }
    }

    // Private data and vCards.
    let mut data_users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (u, k) in model.data.keys() {
        data_users.entry(u.clone()).or_default().push(k.clone());
    }
    for (user, keys) in data_users {
        let mut c = match try_login(addr, &user, "pw").await {
            Ok(c) => c,
            Err(e) => {
                bad.push(e);
                continue;
            }
        };
        for key in keys {
            let actual = data_of(&mut c, &key).await.unwrap();
            let slot = model.data.get_mut(&(user.clone(), key.clone())).unwrap();
            if actual != slot.acked && slot.pending.as_ref() != Some(&actual) {
                bad.push(format!(
                    "{} of {user} is {actual:?}, but {:?} was {}{}",
                    if key == "vcard" {
                        "vCard FN".to_owned()
                    } else {
                        format!("private {key}")
                    },
                    slot.acked,
                    ago(killed_at, slot.at),
                    later(slot.pending.as_ref().map(|p| format!("{p:?}")))
                ));
            }
            *slot = Slot {
                acked: actual,
                at: None,
                pending: None,
            };
        }
    }

    // Offline messages: a sentinel to every recipient, stored after everything else (the
    // sender's ack means the spool has it queued before any later login asks for messages);
    // then each recipient logs in and reads up to its sentinel.
    let sentinel = format!("sentinel{r}");
    let mut v = SmClient::start(addr, "verifier", false).await;
    for rcpt in model.offline.keys() {
        v.stanza(&format!(
            "<message to='{rcpt}@localhost' type='chat' id='{sentinel}'><body>end</body></message>"
        ))
        .await
        .unwrap();
    }
    assert_eq!(v.ack().await.unwrap(), v.sent, "sentinels acknowledged");
    for (rcpt, mb) in model.offline.iter_mut() {
        let mut c = match try_login(addr, rcpt, "pw").await {
            Ok(c) => c,
            Err(e) => {
                bad.push(e);
                continue;
            }
        };
        c.send("<presence/>").await;
        let mut got: Vec<String> = Vec::new();
        loop {
            match rx(&mut c).await {
                Ok(e) if e.name == "message" => {
                    let id = e.get_attr("id").unwrap_or_default().to_owned();
                    if id == sentinel {
                        break;
                    }
                    got.push(id);
                }
                Ok(_) => {}
                Err(e) => {
                    bad.push(format!(
                        "{rcpt}: no sentinel message after the restart: {e}"
                    ));
                    break;
                }
            }
        }
        let mut seen = BTreeSet::new();
        for id in &got {
            if !seen.insert(id) {
                bad.push(format!("{rcpt}: offline message {id} delivered twice"));
            } else if mb.settled || !mb.sent.contains(id) {
                bad.push(format!(
                    "{rcpt}: offline message {id} delivered again (or never sent)"
                ));
            }
        }
        if !mb.settled {
            let lost: Vec<(&String, &Instant)> = mb
                .acked
                .iter()
                .filter(|(id, _)| !seen.contains(id))
                .collect();
            if !lost.is_empty() {
                let newest = lost
                    .iter()
                    .map(|(_, t)| killed_at.saturating_duration_since(**t).as_millis())
                    .min()
                    .unwrap_or(0);
                let oldest = lost
                    .iter()
                    .map(|(_, t)| killed_at.saturating_duration_since(**t).as_millis())
                    .max()
                    .unwrap_or(0);
                bad.push(format!(
                    "{rcpt}: {} of {} acknowledged offline messages lost (acknowledged {newest}-{oldest} ms before the kill), e.g. {}; {} delivered of {} sent",
                    lost.len(),
                    mb.acked.len(),
                    lost.iter().take(5).map(|(id, _)| id.as_str()).collect::<Vec<_>>().join(", "),
                    got.len(),
                    mb.sent.len()
                ));
            }
        }
        *mb = Mailbox {
            settled: true,
            ..Mailbox::default()
        };
    }
    bad
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn acknowledged_writes_survive_sigkill_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let seed: u64 = std::env::var("KLEIBER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("seed {seed} (KLEIBER_CRASH_SEED={seed} repeats the choices)");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::default();
    let mut b = Binary::start(&data, CONFIG, "info");
    setup(b.direct, &["verifier".to_owned()], &mut model).await;
    for r in 0..ROUNDS {
        setup(b.direct, &Users::of_round(r).all(), &mut model).await;
        let killed_at = load_and_kill(b, r, &mut rng, &mut model).await;
        b = Binary::start(&data, CONFIG, "info");
        let bad = check(b.direct, r, killed_at, &mut model).await;
        assert!(
            bad.is_empty(),
            "round {r}: {} acknowledged writes lost or changed by SIGKILL:\n{}",
            bad.len(),
            bad.join("\n")
        );
    }
    b.stop();
}

/// The least forgiving moment: bursts of writes of every kind, pipelined on four streams at
/// once, and SIGKILL the instant the last acknowledgement has arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn acknowledged_writes_survive_sigkill_the_moment_they_are_acknowledged() {
    const MESSAGES: usize = 1000;
    const SUBSCRIPTIONS: usize = 200;
    const ROSTER_SETS: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let b = Binary::start(&data, CONFIG, "info");
    let mut model = Model::default();
    let users = ["verifier", "sender", "asker", "writer", "inbox"].map(String::from);
    setup(b.direct, &users, &mut model).await;
    let addr = b.direct;

    // Messages to an offline user, then `<r/>`: returns the ack's `h` and when it came.
    let messages = tokio::spawn(async move {
        let mut c = SmClient::start(addr, "sender", false).await;
        let burst: String = (0..MESSAGES)
            .map(|i| format!("<message to='inbox@localhost' type='chat' id='burst.{i}'><body>{i}</body></message>"))
            .collect();
        tx(&mut c.c, &burst).await.unwrap();
        c.sent += MESSAGES as u32;
        (c.ack().await.unwrap(), Instant::now(), c)
    });
    // Subscription requests to accounts that do not exist (only the asker's roster changes).
    let subscriptions = tokio::spawn(async move {
        let mut c = SmClient::start(addr, "asker", false).await;
        let burst: String = (0..SUBSCRIPTIONS)
            .map(|i| format!("<presence to='ghost{i}@localhost' type='subscribe'/>"))
            .collect();
        tx(&mut c.c, &burst).await.unwrap();
        c.sent += SUBSCRIPTIONS as u32;
        (c.ack().await.unwrap(), Instant::now(), c)
    });
    // Roster sets, the vCard and private documents: id -> (roster contact or data key, when
    // the result came).
    let sets = tokio::spawn(async move {
        let mut c = try_login(addr, "writer", "pw").await.unwrap();
        let mut ids = BTreeMap::new();
        let mut burst = String::new();
        for i in 0..ROSTER_SETS {
            let id = format!("rs{i}");
            burst.push_str(&format!("<iq type='set' id='{id}'><query xmlns='{ROSTER}'><item jid='r{i}@contacts.example' name='r {i}'><group>burst</group></item></query></iq>"));
            ids.insert(id, format!("r{i}@contacts.example"));
        }
        for k in 0..=PRIVATE_KEYS {
            let id = format!("d{k}");
            burst.push_str(&data_set(&id, &data_key(k), &format!("burst {k}")));
            ids.insert(id, data_key(k));
        }
        tx(&mut c, &burst).await.unwrap();
        let mut answered = BTreeMap::new();
        while answered.len() < ids.len() {
            let e = rx(&mut c).await.unwrap();
            if e.name == "iq" {
                assert!(is_result(&e), "{}", e.to_xml(CLIENT));
                let id = e.get_attr("id").unwrap().to_owned();
                answered.insert(id.clone(), (ids[&id].clone(), Instant::now()));
            }
        }
        (answered, c)
    });
    let registration = tokio::spawn(async move {
        let r = try_register(addr, "newcomer", "pw-newcomer").await.unwrap();
        assert!(is_result(&r), "{}", r.to_xml(CLIENT));
        Instant::now()
    });
    // (The clients are kept until the kill: the server must not see them leave.)
    let ((h_messages, messages_at, _c1), (h_subscriptions, subscriptions_at, _c2)) =
        (messages.await.unwrap(), subscriptions.await.unwrap());
    let ((answered, _c3), registered_at) = (sets.await.unwrap(), registration.await.unwrap());
    let killed_at = Instant::now();
    b.kill9();
    assert_eq!(h_messages, MESSAGES as u32, "every message acknowledged");
    assert_eq!(
        h_subscriptions, SUBSCRIPTIONS as u32,
        "every request acknowledged"
    );

    let writer = || "writer".to_owned();
    model
        .accounts
        .push(("newcomer".into(), "pw-newcomer".into(), Some(registered_at)));
    for (id, (key, at)) in answered {
        let at = Some(at);
        if let Some(k) = id.strip_prefix('d') {
            let acked = Some(format!("burst {k}"));
            model.data.insert(
                (writer(), key),
                Slot {
                    acked,
                    at,
                    pending: None,
                },
            );
        } else {
            let i = &id[2..];
            let acked = Some(Item {
                name: Some(format!("r {i}")),
                groups: vec!["burst".into()],
                sub: "none".into(),
                ask: None,
            });
            model.roster.insert(
                (writer(), key),
                Slot {
                    acked,
                    at,
                    pending: None,
                },
            );
        }
    }
    for i in 0..SUBSCRIPTIONS {
        let acked = Some(Item::sub("none", Some("subscribe")));
        let slot = Slot {
            acked,
            at: Some(subscriptions_at),
            pending: None,
        };
        model
            .roster
            .insert(("asker".into(), format!("ghost{i}@localhost")), slot);
    }
    let inbox = model.offline.entry("inbox".into()).or_default();
    for i in 0..MESSAGES {
        inbox.acked.insert(format!("burst.{i}"), messages_at);
        inbox.sent.insert(format!("burst.{i}"));
    }

    let b = Binary::start(&data, CONFIG, "info");
    let bad = check(b.direct, 0, killed_at, &mut model).await;
    assert!(
        bad.is_empty(),
        "{} acknowledged writes lost by a SIGKILL right after their acknowledgement:\n{}",
        bad.len(),
        bad.join("\n")
    );
    b.stop();
}
