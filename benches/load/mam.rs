//! Message archive (XEP-0313) modes: what archiving costs per message, and what a query of the
//! last page with one contact costs as the archive grows.
//!
//! * `--mam-write N`: `--pairs` pairs of users (`PREFIX-w0..`) send N chat messages in all
//!   (each pair both ways, alternating; `--window` messages in flight in all), every message
//!   archived on both sides by the server. Reports messages/s and the server's CPU seconds
//!   per 1,000 messages, from the first send until the server is quiet again after the last
//!   delivery (archiving a server does after delivering is counted). The bytes on disk per
//!   message are measured by `benches/mam.sh` around the run (data directory, server stopped).
//! * `--mam-fill N`: user `PREFIX-owner` and `--mam-contacts C` contacts `PREFIX-k0..k{C-1}`,
//!   all online, exchange N chat messages (message i: owner -> contact i mod C for even i,
//!   contact -> owner for odd i), so the owner's archive grows by N, spread evenly over the
//!   C contacts, and each contact's by N/C. Same figures as `--mam-write` (messages/s, CPU per
//!   1,000), plus the fill rate as it goes; run it several times to grow the same archive.
//! * `--mam-query Q`: `PREFIX-owner` asks Q times for the last `--mam-max` (50) messages with
//!   a random one of the C contacts: `<query xmlns='urn:xmpp:mam:2'>` with a form
//!   `with=PREFIX-kI@DOMAIN` and `<set xmlns='http://jabber.org/protocol/rsm'><max>50</max>
//!   <before/></set>`, one at a time; the latency is from the send until the IQ result that
//!   carries `<fin/>` (after every `<result/>` message). `--mam-warmup` queries (10) come first
//!   and are not counted (the first one's latency is reported apart: cold caches after a
//!   restart). Stops early after `--duration` seconds (default 600) of measured queries.
//!   Reports p50/p90/p99/max, items per answer, and the server's CPU per query.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

use crate::cli::*;
use crate::cpu::*;
use crate::link::*;
use crate::shared::*;
use crate::stats::*;
use crate::throughput::message;
use crate::xml::*;
use crate::Res;

const MAM: &str = "urn:xmpp:mam:2";

pub(crate) fn owner_name(a: &Args) -> String {
    format!("{}-owner", a.user_prefix)
}

pub(crate) fn contact_user(a: &Args, i: usize) -> String {
    format!("{}-k{i}", a.user_prefix)
}

/// Logs `users` in (registering them first with --register), each on a pump task with event
/// id = its index; returns the links (bare JIDs in `Link::jid`) and the event receiver.
async fn connect_all(
    sh: &Arc<Shared>,
    users: &[String],
) -> Res<(Vec<Link>, mpsc::UnboundedReceiver<Ev>)> {
    let a = &sh.args;
    let logins = login_all(sh, users, a.register || a.register_only).await;
    let (tx, rx) = mpsc::unbounded_channel();
    let mut links = Vec::with_capacity(users.len());
    for (i, l) in logins.into_iter().enumerate() {
        let (x, jid) = l?;
        links.push(Link::spawn(x, jid, i, &tx));
    }
    Ok((links, rx))
}

/// The figures of a write or fill run.
struct Traffic {
    sent: u64,
    delivered: u64,
    bounced: u64,
    /// First send until the last delivery.
    secs: f64,
    /// Server CPU (ms) from the first send until the last delivery, and until it was quiet.
    cpu_deliver_ms: Option<f64>,
    cpu_total_ms: Option<f64>,
    /// After the last delivery, until the server was quiet.
    quiet_ms: f64,
    gen_cpu_pct: Option<f64>,
    other_cpu_pct: Option<f64>,
}

/// Sends `n` messages over `edges` (sender index, recipient index), round robin, keeping at
/// most --window in flight; every message to a recipient counts as delivered when it arrives
/// (an error bounced to its sender too).
async fn traffic(
    sh: &Arc<Shared>,
    links: &[Link],
    evs: &mut mpsc::UnboundedReceiver<Ev>,
    edges: &[(usize, usize)],
    n: u64,
    seq0: u64,
) -> Res<Traffic> {
    let a = &sh.args;
    let pids = &a.server_pid;
    let window = a.window.max(1) as u64;
    let filler = "x".repeat(a.body_size.saturating_sub(40));
    let bares: Vec<String> = links.iter().map(|l| bare(&l.jid).to_owned()).collect();
    let ticks = clock_ticks();
    let snap0 = cpu_snap(pids);
    let mark0 = CpuMark::now(pids);
    let t0 = Instant::now();
    let (mut sent, mut delivered, mut bounced) = (0u64, 0u64, 0u64);
    let mut last_print = Instant::now();
    let mut printed = (0u64, Instant::now());
    let mut last_delivery = t0;
    while delivered < n {
        while sent < n && sent - delivered < window {
            let (from, to) = edges[(sent % edges.len() as u64) as usize];
            links[from].send(message(sh, &bares[to], seq0 + sent, &filler));
            sent += 1;
        }
        let ev = match tokio::time::timeout(Duration::from_secs(60), evs.recv()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => return Err("event channel closed".into()),
            Err(_) => {
                return Err(format!(
                    "no message for 60 s: {delivered} of {n} delivered, {sent} sent"
                )
                .into())
            }
        };
        match ev {
            Ev::El { id, at, el } => {
                if elem_name(&el) == "message" {
                    if attr(&el, "type") == Some("error") {
                        bounced += 1;
                        if bounced <= 3 {
                            eprintln!("  message bounced: {}", error_condition(&el));
                        }
                    } else if !el.contains("<body>kb ") {
                        continue; // not one of ours (a server notice)
                    }
                    delivered += 1;
                    last_delivery = at;
                } else {
                    note_error(sh, &links[id].jid, &el);
                }
            }
            Ev::Down { id, why } => {
                return Err(format!("{} lost its connection: {why}", links[id].jid).into())
            }
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            let (d0, t) = printed;
            eprintln!(
                "  ... {delivered} of {n} delivered ({:.0} msg/s over the last {:.0} s)",
                (delivered - d0) as f64 / t.elapsed().as_secs_f64(),
                t.elapsed().as_secs_f64()
            );
            printed = (delivered, Instant::now());
            last_print = Instant::now();
        }
    }
    let snap1 = cpu_snap(pids);
    let mark1 = CpuMark::now(pids);
    // Until the server is quiet: under 5 ms of CPU per 100 ms for a second, at most 120 s.
    let settle0 = Instant::now();
    let mut last = snap1.clone();
    let mut quiet_since = Instant::now();
    let mut last_busy = settle0;
    while pids_known(pids) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        while let Ok(ev) = evs.try_recv() {
            if let Ev::El { id, el, .. } = ev {
                note_error(sh, &links[id].jid, &el);
            }
        }
        let s = cpu_snap(pids);
        if cpu_between_ms(&last, &s).unwrap_or(0.0) >= 5.0 {
            quiet_since = Instant::now();
            last_busy = quiet_since;
        }
        last = s;
        if quiet_since.elapsed() >= Duration::from_secs(1) || settle0.elapsed().as_secs() >= 120 {
            break;
        }
    }
    let used = mark1.since(&mark0, ticks);
    Ok(Traffic {
        sent,
        delivered,
        bounced,
        secs: ms_since(t0, last_delivery) / 1000.0,
        cpu_deliver_ms: cpu_between_ms(&snap0, &snap1),
        cpu_total_ms: cpu_between_ms(&snap0, &last),
        quiet_ms: ms_since(settle0, last_busy).max(0.0),
        gen_cpu_pct: used.pct(used.gen_s),
        other_cpu_pct: used.pct(used.other_s),
    })
}

fn pids_known(pids: &[u32]) -> bool {
    !pids.is_empty()
}

fn traffic_fields(t: &Traffic) -> String {
    let per_1000 = |ms: Option<f64>| ms.map(|ms| ms / t.delivered.max(1) as f64);
    format!(
        "msgs={} delivered={} bounced={} secs={:.1} msg_per_s={:.0} server_cpu_s={} \
         cpu_s_per_1000={} cpu_s_per_1000_until_delivered={} quiet_after_ms={:.0} \
         gen_cpu_pct={} other_cpu_pct={}",
        t.sent,
        t.delivered,
        t.bounced,
        t.secs,
        t.delivered as f64 / t.secs.max(0.001),
        fmt_opt(t.cpu_total_ms.map(|ms| ms / 1000.0), 2),
        fmt_opt(per_1000(t.cpu_total_ms), 4),
        fmt_opt(per_1000(t.cpu_deliver_ms), 4),
        t.quiet_ms,
        fmt_opt(t.gen_cpu_pct, 0),
        fmt_opt(t.other_cpu_pct, 0),
    )
}

async fn close_all(links: Vec<Link>) {
    let mut tasks = Vec::new();
    for mut l in links {
        l.close();
        tasks.push(l.task);
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
}

/// Connect (and register) `users`; `None` when `--register-only` asked for no more (the
/// links are closed), else the links after the settle time.
async fn connect_for_traffic(
    args: &Args,
    sh: &Arc<Shared>,
    users: &[String],
) -> Res<Option<(Vec<Link>, mpsc::UnboundedReceiver<Ev>)>> {
    let (links, evs) = connect_all(sh, users).await?;
    if args.register_only {
        close_all(links).await;
        return Ok(None);
    }
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    Ok(Some((links, evs)))
}

/// --mam-write N.
pub(crate) async fn mam_write(args: Args, n: u64) -> Res<()> {
    let p = args.pairs.max(1);
    let users: Vec<String> = (0..2 * p)
        .map(|i| format!("{}-w{i}", args.user_prefix))
        .collect();
    let (sh, _phase) = Shared::new(&args, users.len())?;
    eprintln!(
        "mam-write: {p} pairs at {}, {n} messages, {} in flight, body {} bytes",
        args.target(),
        args.window,
        args.body_size
    );
    let Some((links, mut evs)) = connect_for_traffic(&args, &sh, &users).await? else {
        return register_result(&args, users.len(), users.len(), 0.0, 0);
    };
    let edges: Vec<(usize, usize)> = (0..p).flat_map(|i| [(i, i + p), (i + p, i)]).collect();
    let t = traffic(&sh, &links, &mut evs, &edges, n, 0).await?;
    close_all(links).await;
    println!(
        "RESULT server={} mode=mam-write pairs={p} body_size={} window={} {} errors={}",
        args.label,
        args.body_size,
        args.window,
        traffic_fields(&t),
        sh.stats.errors.load(Ordering::Relaxed)
    );
    Ok(())
}

/// --mam-fill N.
pub(crate) async fn mam_fill(args: Args, n: u64) -> Res<()> {
    let c = args.mam_contacts.max(1);
    let mut users = vec![owner_name(&args)];
    users.extend((0..c).map(|i| contact_user(&args, i)));
    let (sh, _phase) = Shared::new(&args, users.len())?;
    eprintln!(
        "mam-fill: {} and {c} contacts at {}, {n} messages, {} in flight, body {} bytes",
        users[0],
        args.target(),
        args.window,
        args.body_size
    );
    let Some((links, mut evs)) = connect_for_traffic(&args, &sh, &users).await? else {
        return register_result(&args, users.len(), users.len(), 0.0, 0);
    };
    // Message i: owner -> contact (i/2) mod C for even i, contact -> owner for odd i.
    let edges: Vec<(usize, usize)> = (0..c).flat_map(|k| [(0, k + 1), (k + 1, 0)]).collect();
    let seq0: u64 = rand::thread_rng().gen_range(0..1 << 40);
    let t = traffic(&sh, &links, &mut evs, &edges, n, seq0).await?;
    close_all(links).await;
    println!(
        "RESULT server={} mode=mam-fill contacts={c} body_size={} window={} {} errors={}",
        args.label,
        args.body_size,
        args.window,
        traffic_fields(&t),
        sh.stats.errors.load(Ordering::Relaxed)
    );
    Ok(())
}

/// The query of the last `max` messages with `with`.
fn last_page_query(id: &str, with: &str, max: usize) -> String {
    format!(
        "<iq type='set' id='{id}'><query xmlns='{MAM}' queryid='{id}'>\
         <x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>\
         <field var='with'><value>{}</value></field></x>\
         <set xmlns='http://jabber.org/protocol/rsm'><max>{max}</max><before/></set>\
         </query></iq>",
        xml_escape(with)
    )
}

/// --mam-query Q.
pub(crate) async fn mam_query(args: Args, q: usize) -> Res<()> {
    let c = args.mam_contacts.max(1);
    let owner = owner_name(&args);
    let (sh, _phase) = Shared::new(&args, 1)?;
    let pids = args.server_pid.clone();
    let limit = Duration::from_secs(args.duration.unwrap_or(600));
    eprintln!(
        "mam-query: {owner} at {}, {q} queries (+{} warm-up) of the last {} with one of {c} \
         contacts",
        args.target(),
        args.mam_warmup,
        args.mam_max
    );
    let (mut links, mut evs) = connect_all(&sh, std::slice::from_ref(&owner)).await?;
    let link = links.pop().ok_or("no link")?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6d616d);
    let (mut lat, mut items_total, mut short, mut errors) = (Vec::new(), 0usize, 0usize, 0usize);
    let mut first_ms = None;
    let mut measured_cpu: Option<f64> = None;
    let mut snap = None;
    let mut t_measure = None;
    let ticks = clock_ticks();
    let mut mark0 = CpuMark::now(&pids);
    let total = args.mam_warmup + q;
    let mut done = 0;
    for i in 0..total {
        if i == args.mam_warmup {
            snap = cpu_snap(&pids);
            mark0 = CpuMark::now(&pids);
            t_measure = Some(Instant::now());
        }
        if let Some(t) = t_measure {
            if t.elapsed() > limit {
                eprintln!("  --duration reached after {done} measured queries");
                break;
            }
        }
        let k = rng.gen_range(0..c);
        let with = format!("{}@{}", contact_user(&args, k), args.domain);
        let id = format!("q{i}");
        let t0 = Instant::now();
        link.send(last_page_query(&id, &with, args.mam_max));
        let mut items = 0usize;
        let end = loop {
            let ev = match tokio::time::timeout(Duration::from_secs(120), evs.recv()).await {
                Ok(Some(ev)) => ev,
                Ok(None) => return Err("event channel closed".into()),
                Err(_) => return Err(format!("query {id}: no answer within 120 s").into()),
            };
            let (at, el) = match ev {
                Ev::El { at, el, .. } => (at, el),
                Ev::Down { why, .. } => {
                    return Err(format!("{owner}: connection lost: {why}").into())
                }
            };
            match elem_name(&el) {
                "message" if el.contains("<result") => items += 1,
                "iq" if attr(&el, "id") == Some(id.as_str()) => {
                    if attr(&el, "type") != Some("result") || !el.contains("<fin") {
                        errors += 1;
                        if errors <= 3 {
                            eprintln!("  query {id}: {}", el.chars().take(300).collect::<String>());
                        }
                    }
                    break at;
                }
                _ => {
                    note_error(&sh, &owner, &el);
                }
            }
        };
        let ms = ms_since(t0, end);
        if i == 0 {
            first_ms = Some(ms);
        }
        if i >= args.mam_warmup {
            lat.push((ms * 1000.0) as u32);
            items_total += items;
            if items < args.mam_max {
                short += 1;
            }
            done += 1;
        }
    }
    if snap.is_some() {
        measured_cpu = cpu_between_ms(&snap, &cpu_snap(&pids));
    }
    let used = CpuMark::now(&pids).since(&mark0, ticks);
    let wall = t_measure.map_or(0.0, |t| t.elapsed().as_secs_f64());
    close_all(vec![link]).await;
    lat.sort_unstable();
    let mean = lat.iter().map(|&v| v as f64).sum::<f64>() / lat.len().max(1) as f64 / 1000.0;
    println!(
        "RESULT server={} mode=mam-query archive={} contacts={c} max={} queries={done} warmup={} \
         first_query_ms={} p50_ms={} p90_ms={} p99_ms={} max_ms={} mean_ms={:.2} queries_per_s={:.1} \
         items_per_query={:.1} short_answers={short} server_cpu_ms_per_query={} gen_cpu_pct={} \
         other_cpu_pct={} errors={}",
        args.label,
        fmt_u64(args.mam_archive),
        args.mam_max,
        args.mam_warmup,
        fmt_opt(first_ms, 2),
        fmt_opt(lat.first().map(|_| percentile(&lat, 0.5)), 2),
        fmt_opt(lat.first().map(|_| percentile(&lat, 0.9)), 2),
        fmt_opt(lat.first().map(|_| percentile(&lat, 0.99)), 2),
        fmt_opt(lat.last().map(|&v| v as f64 / 1000.0), 2),
        mean,
        done as f64 / wall.max(0.001),
        items_total as f64 / done.max(1) as f64,
        fmt_opt(measured_cpu.map(|ms| ms / done.max(1) as f64), 2),
        fmt_opt(used.pct(used.gen_s), 0),
        fmt_opt(used.pct(used.other_s), 0),
        errors + sh.stats.errors.load(Ordering::Relaxed) as usize
    );
    Ok(())
}
