//! Group chat (--muc N): N occupants in one room, each sending one message per second.
//!
//! A controller session creates the room (configured for N + 10 occupants) and sends 20
//! messages of history; then the N occupants enter (`--concurrency` at a time, without
//! history). A further session measures the join into the full room (every occupant's
//! presence, 20 messages of history, the subject), `--repeat` times. Then for `--duration`
//! seconds occupant i sends its k-th message at k + i/N seconds, so the room carries N
//! messages per second, each delivered to all N + 1 occupants (sender included; the N occupants' copies are
//! counted). Every message
//! carries its number; each occupant's task counts what arrives in shared counters, so the
//! time from the send until the last occupant has it is known per message.
//!
//! Reports deliveries per second, lost deliveries, p50/p99/max from the send to the last
//! occupant, the server's CPU per 1,000 deliveries, its RSS per occupant (after entering
//! minus before), and the join time.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Semaphore};

use crate::cli::*;
use crate::client::*;
use crate::cpu::*;
use crate::link::*;
use crate::shared::*;
use crate::stats::*;
use crate::xml::*;
use crate::Res;

const MUC: &str = "http://jabber.org/protocol/muc";

/// What the occupants' tasks count, shared.
struct Counters {
    /// Per message number: copies received, time the last one arrived, time it was sent (µs
    /// since START).
    received: Vec<AtomicU32>,
    last_us: Vec<AtomicU64>,
    sent_us: Vec<AtomicU64>,
    deliveries: AtomicU64,
    sent: AtomicU64,
    errors: AtomicU64,
    joined: AtomicUsize,
    measuring: AtomicBool,
}

/// Phases the controller sets.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum MucPhase {
    Enter,
    Talk { start: tokio::time::Instant },
    Stop,
    Close,
}

/// Names of the run.
struct Room {
    jid: String,
    tag: String,
    n: usize,
    secs: u64,
}

impl Room {
    fn body(&self, id: usize) -> String {
        format!("{} {id}", self.tag)
    }

    /// The message number in a body of this run, if it is one.
    fn id_in(&self, el: &str) -> Option<usize> {
        let b = child_text(el, "body")?;
        b.strip_prefix(&self.tag)?.trim().parse().ok()
    }
}

/// Enters `room/nick`; reads until the subject (or an error). Returns the elements' names
/// count: (presences, history messages).
async fn enter(x: &mut Tls, room: &str, nick: &str, history: usize) -> Res<(usize, usize)> {
    x.send(&format!(
        "<presence to='{room}/{nick}'><x xmlns='{MUC}'><history maxstanzas='{history}'/></x></presence>"
    ))
    .await?;
    let (mut presences, mut msgs) = (0, 0);
    loop {
        let e = x.element().await?;
        match elem_name(&e) {
            "presence" if attr(&e, "type") == Some("error") => {
                return Err(format!("entering: {}", error_condition(&e)).into())
            }
            "presence" => presences += 1,
            "message" if e.contains("<subject") => return Ok((presences, msgs)),
            "message" => msgs += 1,
            "iq" => answer_iq(x, &e).await?,
            _ => {}
        }
    }
}

/// The controller creates the room for `n` + 10 occupants and sends 20 messages of history
/// (paced, so no per-occupant rate limit refuses them).
async fn create(x: &mut Tls, room: &Room) -> Res<()> {
    let form = format!(
        "<iq type='set' id='cfg' to='{}'><query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>{MUC}#roomconfig</value></field>\
         <field var='muc#roomconfig_maxusers'><value>{}</value></field>\
         <field var='muc#roomconfig_publicroom'><value>0</value></field></x></query></iq>",
        room.jid,
        room.n + 10
    );
    let r = x.iq("cfg", &form).await?;
    if attr(&r, "type") != Some("result") {
        return Err(format!("room configuration refused: {}", error_condition(&r)).into());
    }
    for i in 0..20 {
        x.send(&format!(
            "<message to='{}' type='groupchat'><body>history {i}</body></message>",
            room.jid
        ))
        .await?;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// Enters a room that may be new and locked: like `enter`, but a self-presence with status
/// 201 (created, locked until configured) also ends it.
async fn enter_new(x: &mut Tls, room: &str, nick: &str) -> Res<()> {
    x.send(&format!(
        "<presence to='{room}/{nick}'><x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>"
    ))
    .await?;
    loop {
        let e = x.element().await?;
        match elem_name(&e) {
            "presence" if attr(&e, "type") == Some("error") => {
                return Err(format!("creating the room: {}", error_condition(&e)).into())
            }
            "presence" if e.contains("code='201'") || e.contains("code=\"201\"") => return Ok(()),
            "message" if e.contains("<subject") => return Ok(()),
            "iq" => answer_iq(x, &e).await?,
            _ => {}
        }
    }
}

/// One occupant: enters (one of `slots` at a time), then reads everything and sends its
/// messages in the talk phase.
async fn occupant(
    mut x: Tls,
    i: usize,
    room: Arc<Room>,
    c: Arc<Counters>,
    slots: Arc<Semaphore>,
    mut phase: watch::Receiver<MucPhase>,
) {
    let entered = {
        let _slot = slots.acquire().await.expect("open");
        enter(&mut x, &room.jid, &format!("o{i}"), 0).await
    };
    if let Err(e) = entered {
        eprintln!("error: occupant {i}: {e}");
        c.errors.fetch_add(1, Ordering::Relaxed);
        return;
    }
    c.joined.fetch_add(1, Ordering::SeqCst);
    let mut next: Option<(usize, tokio::time::Instant)> = None;
    loop {
        let due = next.map(|(_, t)| t);
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() { return; }
                let now = *phase.borrow();
                match now {
                    MucPhase::Talk { start } => {
                        let offset = Duration::from_secs_f64(i as f64 / room.n as f64);
                        next = Some((0, start + offset));
                    }
                    MucPhase::Stop => next = None,
                    MucPhase::Close => {
                        x.close(Duration::from_secs(2)).await;
                        return;
                    }
                    MucPhase::Enter => {}
                }
            }
            _ = async { tokio::time::sleep_until(due.unwrap()).await }, if due.is_some() => {
                let (k, t) = next.expect("due");
                let id = k * room.n + i;
                c.sent_us[id].store(now_us(), Ordering::Relaxed);
                c.sent.fetch_add(1, Ordering::Relaxed);
                let m = format!("<message to='{}' type='groupchat'><body>{}</body></message>", room.jid, room.body(id));
                if x.send(&m).await.is_err() { break; }
                next = (k + 1 < room.secs as usize).then(|| (k + 1, t + Duration::from_secs(1)));
            }
            ev = x.next() => match ev {
                Ok(Event::Element(e)) => on_element(&mut x, &e, &room, &c).await,
                _ => break,
            }
        }
    }
    eprintln!("error: occupant {i} lost its connection");
    c.errors.fetch_add(1, Ordering::Relaxed);
}

async fn on_element(x: &mut Tls, e: &str, room: &Room, c: &Counters) {
    match elem_name(e) {
        "message" if attr(e, "type") == Some("error") => {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        "message" => {
            if let Some(id) = room.id_in(e).filter(|id| *id < c.received.len()) {
                c.received[id].fetch_add(1, Ordering::Relaxed);
                c.last_us[id].fetch_max(now_us(), Ordering::Relaxed);
                if c.measuring.load(Ordering::Relaxed) {
                    c.deliveries.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        "iq" => {
            let _ = answer_iq(x, e).await;
        }
        _ => {}
    }
}

/// The join into the full room, `repeat` times: milliseconds until the subject, presences
/// and history messages received.
async fn measure_join(x: &mut Tls, room: &Room, repeat: usize) -> Res<Vec<(f64, usize, usize)>> {
    let mut out = Vec::new();
    for _ in 0..repeat.max(1) {
        let t0 = Instant::now();
        let (p, h) = enter(x, &room.jid, "joiner", 20).await?;
        out.push((t0.elapsed().as_secs_f64() * 1000.0, p, h));
        x.send(&format!(
            "<presence to='{}/joiner' type='unavailable'/>",
            room.jid
        ))
        .await?;
        loop {
            let e = x.element().await?;
            if elem_name(&e) == "presence"
                && attr(&e, "type") == Some("unavailable")
                && attr(&e, "from").is_some_and(|f| f.ends_with("/joiner"))
            {
                break;
            }
        }
    }
    Ok(out)
}

/// Latencies (µs) from the send to the last occupant, of the messages every occupant got;
/// and how many messages some occupant missed.
fn latencies(c: &Counters, expected: u32) -> (Vec<u32>, usize) {
    let mut lat = Vec::new();
    let mut incomplete = 0;
    for id in 0..c.received.len() {
        let sent = c.sent_us[id].load(Ordering::Relaxed);
        if sent == 0 {
            continue;
        }
        if c.received[id].load(Ordering::Relaxed) < expected {
            incomplete += 1;
            continue;
        }
        let last = c.last_us[id].load(Ordering::Relaxed);
        lat.push(last.saturating_sub(sent).min(u32::MAX as u64) as u32);
    }
    lat.sort_unstable();
    (lat, incomplete)
}

/// --muc N.
pub(crate) async fn muc(args: Args, n: usize) -> Res<()> {
    let secs = args.duration.unwrap_or(30);
    let (sh, _phase) = Shared::new(&args, n + 2)?;
    let pids = args.server_pid.clone();
    let ticks = clock_ticks();
    let service = args
        .muc_service
        .clone()
        .unwrap_or_else(|| format!("conference.{}", args.domain));
    let room = Arc::new(Room {
        jid: format!("bench{}@{service}", sh.run_id),
        tag: format!("m{}", sh.run_id),
        n,
        secs,
    });
    eprintln!(
        "muc: {n} occupants in {} at {}, {secs} s of 1 message/s each",
        room.jid,
        args.target()
    );
    let users: Vec<String> = (0..n + 2).map(|i| user_name(&args, i)).collect();
    let login0 = CpuMark::now(&pids);
    let mut logins = login_all(&sh, &users, args.register || args.register_only).await;
    if args.register_only {
        let wall = CpuMark::now(&pids).since(&login0, ticks).wall;
        let ok = logins.iter().filter(|r| r.is_ok()).count();
        let errors = sh.stats.errors.load(Ordering::Relaxed);
        return register_result(&args, n + 2, ok, wall, errors);
    }
    if let Some(Err(e)) = logins.iter().find(|r| r.is_err()) {
        return Err(format!("login failed: {e}").into());
    }
    let mut take =
        |i: usize| std::mem::replace(&mut logins[i], Err("taken".into())).map(|(x, _)| x);
    let (mut ctl, mut joiner) = (take(n)?, take(n + 1)?);
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let rss0 = server_rss(&pids);
    enter_new(&mut ctl, &room.jid, "ctl").await?;
    create(&mut ctl, &room).await?;
    let ctl_task = tokio::spawn(async move {
        while let Ok(Event::Element(e)) = ctl.next().await {
            let _ = answer_iq(&mut ctl, &e).await;
        }
    });
    let c = Arc::new(Counters {
        received: (0..n * secs as usize).map(|_| AtomicU32::new(0)).collect(),
        last_us: (0..n * secs as usize).map(|_| AtomicU64::new(0)).collect(),
        sent_us: (0..n * secs as usize).map(|_| AtomicU64::new(0)).collect(),
        deliveries: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        joined: AtomicUsize::new(0),
        measuring: AtomicBool::new(false),
    });
    let (phase_tx, phase_rx) = watch::channel(MucPhase::Enter);
    let slots = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let enter0 = CpuMark::now(&pids);
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let x = take(i).expect("logged in");
            tokio::spawn(occupant(
                x,
                i,
                room.clone(),
                c.clone(),
                slots.clone(),
                phase_rx.clone(),
            ))
        })
        .collect();
    let limit = Instant::now() + Duration::from_secs(args.login_timeout);
    while c.joined.load(Ordering::SeqCst) + (c.errors.load(Ordering::SeqCst) as usize) < n
        && Instant::now() < limit
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let enter_use = CpuMark::now(&pids).since(&enter0, ticks);
    let joined = c.joined.load(Ordering::SeqCst);
    eprintln!(
        "{joined} of {n} occupants in the room after {:.1} s",
        enter_use.wall
    );
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let rss1 = server_rss(&pids);
    let joins = measure_join(&mut joiner, &room, args.repeat).await?;
    let join_ms = median(joins.iter().map(|j| j.0).collect());
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    c.measuring.store(true, Ordering::SeqCst);
    let talk0 = CpuMark::now(&pids);
    phase_tx.send(MucPhase::Talk { start })?;
    tokio::time::sleep_until(start + Duration::from_secs(secs)).await;
    let talk = CpuMark::now(&pids).since(&talk0, ticks);
    phase_tx.send(MucPhase::Stop)?;
    // Let the last messages arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.measuring.store(false, Ordering::SeqCst);
    let (lat, incomplete) = latencies(&c, joined as u32);
    let deliveries = c.deliveries.load(Ordering::Relaxed);
    let sent = c.sent.load(Ordering::Relaxed);
    let per_1000 = talk.server_s.map(|s| s * 1000.0 / deliveries.max(1) as f64);
    let rss_per = match (rss0, rss1) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / joined.max(1) as f64),
        _ => None,
    };
    println!(
        "RESULT server={} mode=muc occupants={n} joined={joined} enter_s={:.1} join_ms={} \
         join_presences={} join_history={} duration_s={secs} sent={sent} deliveries={deliveries} \
         deliveries_per_s={:.0} expected_per_s={} incomplete_messages={incomplete} p50_ms={} \
         p99_ms={} max_ms={} server_cpu_s={} cpu_s_per_1000_deliveries={} gen_cpu_pct={} \
         other_cpu_s={} rss_kib_per_occupant={} errors={}",
        args.label,
        enter_use.wall,
        fmt_opt(join_ms, 1),
        joins.last().map_or(0, |j| j.1),
        joins.last().map_or(0, |j| j.2),
        deliveries as f64 / talk.wall.max(0.001),
        n * n,
        fmt_opt(lat.first().map(|_| percentile(&lat, 0.5)), 2),
        fmt_opt(lat.first().map(|_| percentile(&lat, 0.99)), 2),
        fmt_opt(lat.last().map(|v| f64::from(*v) / 1000.0), 2),
        fmt_opt(talk.server_s, 2),
        fmt_opt(per_1000, 4),
        fmt_opt(talk.pct(talk.gen_s), 0),
        fmt_opt(talk.other_s, 2),
        fmt_opt(rss_per, 1),
        c.errors.load(Ordering::Relaxed) + sh.stats.errors.load(Ordering::Relaxed),
    );
    phase_tx.send(MucPhase::Close)?;
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    ctl_task.abort();
    joiner.close(Duration::from_secs(2)).await;
    Ok(())
}
