//! Throughput mode (ping-pong pairs, also across two servers: federation), idle-memory mode
//! and --register-only.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::*;
use crate::client::*;
use crate::cpu::*;
use crate::shared::*;
use crate::stats::*;
use crate::xml::*;
use crate::Res;

pub(crate) fn message(sh: &Shared, to: &str, seq: u64, filler: &str) -> String {
    let mut s = String::with_capacity(160 + filler.len());
    let _ = write!(
        s,
        "<message to='{}' type='chat' id='m{seq}'><body>kb {:08x} {seq} {} {filler}</body></message>",
        xml_escape(to),
        sh.run_id,
        now_us()
    );
    s
}

/// Parses a body written by `message`: (run id, sequence, send time in µs).
pub(crate) fn parse_body(body: &str) -> Option<(u32, u64, u64)> {
    let mut it = body.split(' ');
    if it.next()? != "kb" {
        return None;
    }
    let run = u32::from_str_radix(it.next()?, 16).ok()?;
    let seq = it.next()?.parse().ok()?;
    let ts = it.next()?.parse().ok()?;
    Some((run, seq, ts))
}

/// One client: log in, wait for the start, ping-pong (or idle), drain, close.
/// Returns the latencies (µs) of the messages it received during the run.
pub(crate) async fn client(
    sh: Arc<Shared>,
    i: usize,
    partner: Option<usize>,
    initiator: bool,
) -> Vec<u32> {
    let mut lat = Vec::new();
    let permit = sh.login_slots.acquire().await.expect("semaphore open");
    let r = login(&sh, i).await;
    drop(permit);
    let (mut x, jid) = match r {
        Ok(v) => v,
        Err(e) => {
            sh.stats.failed.fetch_add(1, Ordering::SeqCst);
            sh.stats
                .error(format!("login {}: {e}", user_name(&sh.args, i)));
            return lat;
        }
    };
    if sh.args.register_only {
        sh.stats.bound.fetch_add(1, Ordering::SeqCst);
        return lat;
    }
    let _ = sh.jids[i].set(jid);
    sh.stats.bound.fetch_add(1, Ordering::SeqCst);
    if let Err(e) = session(&sh, &mut x, partner, initiator, &mut lat).await {
        sh.stats.error(format!("{}: {e}", user_name(&sh.args, i)));
        return lat;
    }
    // Close the stream politely and wait (briefly) for the server's close.
    x.close(Duration::from_secs(3)).await;
    lat
}

pub(crate) async fn session<S: Io>(
    sh: &Shared,
    x: &mut Xmpp<S>,
    partner: Option<usize>,
    initiator: bool,
    lat: &mut Vec<u32>,
) -> Res<()> {
    let mut phase_rx = sh.phase.clone();
    let filler_len = sh.args.body_size.saturating_sub(40);
    let filler = "x".repeat(filler_len);
    let mut phase = *phase_rx.borrow_and_update();
    let mut partner_jid: Option<String> = None;
    loop {
        tokio::select! {
            changed = phase_rx.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let new = *phase_rx.borrow_and_update();
                if let (Phase::Run { .. }, Some(p)) = (new, partner) {
                    if phase == Phase::Login {
                        partner_jid = sh.jids[p].get().cloned();
                        if initiator {
                            if let Some(to) = &partner_jid {
                                sh.stats.inflight.fetch_add(1, Ordering::Relaxed);
                                x.send(&message(sh, to, 0, &filler)).await?;
                            }
                        }
                    }
                }
                phase = new;
                if phase == Phase::Close {
                    return Ok(());
                }
            }
            ev = x.next() => {
                let e = match ev? {
                    Event::Element(e) => e,
                    Event::StreamEnd => return Err("stream closed by server".into()),
                    Event::StreamHeader => return Err("unexpected stream header".into()),
                };
                match elem_name(&e) {
                    "message" => {
                        if attr(&e, "type") == Some("error") {
                            sh.stats.error(format!("message error: {}", error_condition(&e)));
                            continue;
                        }
                        let Some((run, seq, ts)) = child_text(&e, "body").and_then(parse_body) else {
                            continue;
                        };
                        if run != sh.run_id || e.contains("urn:xmpp:delay") {
                            sh.stats.stale.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        sh.stats.inflight.fetch_sub(1, Ordering::Relaxed);
                        let now = now_us();
                        let Phase::Run { start_us, deadline_us } = phase else {
                            continue;
                        };
                        if now > deadline_us {
                            continue;
                        }
                        if now >= start_us {
                            lat.push(now.saturating_sub(ts).min(u32::MAX as u64) as u32);
                        }
                        if let Some(to) = &partner_jid {
                            sh.stats.inflight.fetch_add(1, Ordering::Relaxed);
                            x.send(&message(sh, to, seq + 1, &filler)).await?;
                        }
                    }
                    "iq" => {
                        if attr(&e, "type") == Some("error") {
                            sh.stats.error(format!("iq error: {}", error_condition(&e)));
                        }
                        answer_iq(x, &e).await?;
                    }
                    "presence" if attr(&e, "type") == Some("error") => {
                        sh.stats.error(format!("presence error: {}", error_condition(&e)));
                    }
                    "stream:error" => {
                        return Err(format!("stream error: {}", error_condition(&e)).into());
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The mode name of the RESULT line.
fn mode_name(args: &Args) -> &'static str {
    if args.register_only {
        "register"
    } else if args.idle.is_some() {
        "idle"
    } else if args.peer_port.is_some() {
        "federation"
    } else {
        "throughput"
    }
}

/// Says on stderr what is about to be done.
fn announce(args: &Args, mode: &str, total: usize) {
    eprintln!("{mode}: {total} clients to {}", args.target());
    if let Some(p) = peer_server(args).filter(|_| args.peer_port.is_some()) {
        eprintln!(
            "  clients {}..{} to {}:{} domain {} (messages cross between the servers)",
            args.pairs, total, p.host, p.port, p.domain
        );
    }
}

/// Client tasks for `total` clients: client `i < pairs` initiates the ping-pong with client
/// `i + pairs` (no partners in the idle mode).
fn spawn_clients(sh: &Arc<Shared>, total: usize) -> Vec<tokio::task::JoinHandle<Vec<u32>>> {
    let (idle, pairs) = (sh.args.idle, sh.args.pairs);
    (0..total)
        .map(|i| {
            let (partner, initiator) = match idle {
                Some(_) => (None, false),
                None if i < pairs => (Some(i + pairs), true),
                None => (Some(i - pairs), false),
            };
            tokio::spawn(client(sh.clone(), i, partner, initiator))
        })
        .collect()
}

/// The latencies of all clients, sorted, once they are done.
async fn join_clients(handles: Vec<tokio::task::JoinHandle<Vec<u32>>>) -> Vec<u32> {
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await.unwrap_or_default());
    }
    lat.sort_unstable();
    lat
}

/// How the logins went.
struct Logins {
    all_done: bool,
    bound: usize,
    secs: f64,
    per_s: f64,
    /// `login_fields` of the CPU used meanwhile.
    cpu: String,
}

/// Waits for the clients' logins (or the timeout), started at `login0`, and reports them.
async fn logins(sh: &Shared, total: usize, login0: CpuMark, ticks: f64) -> Logins {
    let pids = &sh.args.server_pid;
    let all_done = wait_logins(sh, total).await;
    let login_use = CpuMark::now(pids).since(&login0, ticks);
    let secs = login_use.wall;
    let bound = sh.stats.bound.load(Ordering::SeqCst);
    let failed = sh.stats.failed.load(Ordering::SeqCst);
    let per_s = bound as f64 / secs;
    eprintln!("{bound} sessions ready, {failed} failed, in {secs:.2} s ({per_s:.0}/s)");
    Logins {
        all_done,
        bound,
        secs,
        per_s,
        cpu: login_use.login_fields(),
    }
}

/// The throughput, federation, idle and register-only modes.
pub(crate) async fn run(args: Args) -> Res<()> {
    let total = args.idle.unwrap_or(args.pairs * 2);
    if total == 0 {
        return Err("nothing to do (0 clients)".into());
    }
    let (sh, phase_tx) = Shared::new(&args, total)?;
    let pids = &args.server_pid;
    let ticks = clock_ticks();
    let mode = mode_name(&args);
    announce(&args, mode, total);
    let rss_before = server_rss(pids);
    // The logins start with the clients (the CPU mark just before).
    let login0 = CpuMark::now(pids);
    let handles = spawn_clients(&sh, total);
    let lg = logins(&sh, total, login0, ticks).await;
    if lg.bound == 0 {
        let _ = phase_tx.send(Phase::Close);
        return Err("no session could be established".into());
    }
    if args.register_only {
        join_clients(handles).await;
        let errors = sh.stats.errors.load(Ordering::Relaxed);
        return register_result(&args, total, lg.bound, lg.secs, errors);
    }
    let mut rss_after = server_rss(pids);
    if args.idle.is_some() && lg.all_done {
        tokio::time::sleep(Duration::from_secs(args.settle)).await;
        rss_after = server_rss(pids);
    }
    let rss_per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) => Some((a as f64 - b as f64) / lg.bound as f64),
        _ => None,
    };
    let mut line = format!("RESULT server={} mode={mode}", args.label);
    if let Some(n) = args.idle {
        let _ = phase_tx.send(Phase::Close);
        join_clients(handles).await;
        let errors = sh.stats.errors.load(Ordering::Relaxed);
        let _ = write!(
            line,
            " sessions={n} bound={} login_s={:.2} logins_per_s={:.1} {} rss_before_kib={} \
             rss_after_kib={} rss_kib_per_session={} errors={errors}",
            lg.bound,
            lg.secs,
            lg.per_s,
            lg.cpu,
            fmt_u64(rss_before),
            fmt_u64(rss_after),
            fmt_opt(rss_per_conn, 1)
        );
        println!("{line}");
        return Ok(());
    }
    let m = ping_pong(&sh, &phase_tx, handles, ticks).await;
    line.push_str(&throughput_fields(&sh, &m, &lg, rss_per_conn));
    if args.peer_port.is_some() {
        line.push_str(&federation_fields(pids, &m, ticks));
    }
    println!("{line}");
    Ok(())
}

/// What the measured ping-pong gave.
struct PingPong {
    warmup: u64,
    used: CpuUse,
    /// Latencies in µs, sorted.
    lat: Vec<u32>,
    undelivered: i64,
    /// Server CPU ticks per pid at the start and at the end of the measurement, RSS at the end.
    cpu0_by_pid: Vec<Option<u64>>,
    cpu1_by_pid: Vec<Option<u64>>,
    rss_by_pid: Vec<Option<u64>>,
}

/// Sleeps until `end`, printing progress every 5 s.
async fn run_until(sh: &Shared, t0: Instant, duration: u64) {
    let mut progress = tokio::time::interval(Duration::from_secs(5));
    progress.tick().await;
    let end = tokio::time::Instant::from_std(t0 + Duration::from_secs(duration));
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end) => break,
            _ = progress.tick() => {
                eprintln!(
                    "  ... {:.0} s, errors {}",
                    t0.elapsed().as_secs_f64(),
                    sh.stats.errors.load(Ordering::Relaxed)
                );
            }
        }
    }
}

/// Starts the ping-pong (after --warmup seconds of unmeasured ping-pong), measures --duration
/// seconds, lets the messages in flight arrive and closes the clients.
async fn ping_pong(
    sh: &Shared,
    phase_tx: &tokio::sync::watch::Sender<Phase>,
    handles: Vec<tokio::task::JoinHandle<Vec<u32>>>,
    ticks: f64,
) -> PingPong {
    let args = &sh.args;
    let pids = &args.server_pid;
    let (duration, warmup) = (args.duration.unwrap_or(30), args.warmup.unwrap_or(0));
    let start_us = now_us() + warmup * 1_000_000;
    let deadline_us = start_us + duration * 1_000_000;
    let _ = phase_tx.send(Phase::Run {
        start_us,
        deadline_us,
    });
    if warmup > 0 {
        eprintln!("  warm-up, {warmup} s");
        tokio::time::sleep(Duration::from_secs(warmup)).await;
    }
    let by_pid = |f: fn(&str) -> Option<u64>| -> Vec<Option<u64>> {
        pids.iter().map(|p| f(&p.to_string())).collect()
    };
    let mark0 = CpuMark::now(pids);
    let cpu0_by_pid = by_pid(cpu_ticks);
    run_until(sh, mark0.at, duration).await;
    let used = CpuMark::now(pids).since(&mark0, ticks);
    let cpu1_by_pid = by_pid(cpu_ticks);
    let rss_by_pid = by_pid(rss_kib);
    let _ = phase_tx.send(Phase::Drain);
    // Let messages still in flight arrive, so that the server does not store them offline.
    let drain_start = Instant::now();
    while sh.stats.inflight.load(Ordering::Relaxed) > 0
        && drain_start.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let undelivered = sh.stats.inflight.load(Ordering::Relaxed);
    let _ = phase_tx.send(Phase::Close);
    PingPong {
        warmup,
        used,
        lat: join_clients(handles).await,
        undelivered,
        cpu0_by_pid,
        cpu1_by_pid,
        rss_by_pid,
    }
}

/// The RESULT fields of the throughput and federation modes.
fn throughput_fields(sh: &Shared, m: &PingPong, lg: &Logins, rss_per_conn: Option<f64>) -> String {
    let (lat, used) = (&m.lat, &m.used);
    let wall = used.wall;
    let msgs = lat.len();
    let msg_per_s = msgs as f64 / wall;
    let mean = if msgs > 0 {
        lat.iter().map(|&v| v as f64).sum::<f64>() / msgs as f64 / 1000.0
    } else {
        0.0
    };
    let cpu_s = used.server_s;
    let cpu_s_per_1k = cpu_s.filter(|_| msgs > 0).map(|c| c / msgs as f64 * 1000.0);
    let errors = sh.stats.errors.load(Ordering::Relaxed);
    let stale = sh.stats.stale.load(Ordering::Relaxed);
    format!(
        " pairs={} duration_s={wall:.1} msgs={msgs} msg_per_s={msg_per_s:.1} \
         mean_ms={mean:.2} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2} \
         cpu_s_per_1k={} server_cpu_pct={} gen_cpu_pct={} other_cpu_pct={} \
         logins_per_s={:.1} {} rss_kib_per_conn={} bound={} errors={errors} stale={stale} \
         undelivered={}",
        sh.args.pairs,
        percentile(lat, 0.50),
        percentile(lat, 0.90),
        percentile(lat, 0.99),
        percentile(lat, 1.0),
        fmt_opt(cpu_s_per_1k, 3),
        fmt_opt(used.pct(cpu_s), 0),
        fmt_opt(used.pct(used.gen_s), 0),
        fmt_opt(used.pct(used.other_s), 0),
        lg.per_s,
        lg.cpu,
        fmt_opt(rss_per_conn, 1),
        lg.bound,
        m.undelivered,
    )
}

/// The federation mode's extra RESULT fields: per server (pid), CPU seconds per 1000 messages
/// and RSS at the end of the run.
fn federation_fields(pids: &[u32], m: &PingPong, ticks: f64) -> String {
    let msgs = m.lat.len();
    let by_pid = |f: &dyn Fn(usize) -> String| {
        let v: Vec<String> = pids
            .iter()
            .enumerate()
            .map(|(k, p)| format!("{p}:{}", f(k)))
            .collect();
        if v.is_empty() {
            "na".to_string()
        } else {
            v.join(",")
        }
    };
    let cpu_k = |k: usize| match (m.cpu0_by_pid[k], m.cpu1_by_pid[k]) {
        (Some(a), Some(b)) if msgs > 0 => {
            Some(b.saturating_sub(a) as f64 / ticks / msgs as f64 * 1000.0)
        }
        _ => None,
    };
    let rss_total = m
        .rss_by_pid
        .iter()
        .copied()
        .sum::<Option<u64>>()
        .filter(|_| !pids.is_empty());
    format!(
        " warmup_s={} rss_kib={} cpu_s_per_1k_by_pid={} rss_kib_by_pid={}",
        m.warmup,
        fmt_u64(rss_total),
        by_pid(&|k| fmt_opt(cpu_k(k), 3)),
        by_pid(&|k| fmt_u64(m.rss_by_pid[k])),
    )
}
