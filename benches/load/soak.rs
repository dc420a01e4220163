//! Soak (--soak N).
//!
//! The N sessions are run by pump tasks (`link`). One controller sends the messages (every
//! 10 ms, as many as are due at --rate) from a random session to a random other one, checks
//! what arrives where, and samples the server's RSS and CPU.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::mpsc;

use crate::cli::*;
use crate::client::*;
use crate::cpu::*;
use crate::link::*;
use crate::shared::*;
use crate::stats::*;
use crate::throughput::*;
use crate::xml::*;
use crate::Res;

/// A soak message: its sender and addressee (client indices), and how often it arrived.
#[derive(Clone, Copy)]
pub(crate) struct SoakMsg {
    pub(crate) from: u32,
    pub(crate) to: u32,
    pub(crate) copies: u8,
}

/// The server at one moment of the soak (a `SAMPLE` line).
pub(crate) struct SoakSample {
    /// Seconds since the first message.
    pub(crate) t_s: f64,
    pub(crate) rss_kib: Option<u64>,
}

/// The soak's controller.
pub(crate) struct Soak {
    pub(crate) sh: Arc<Shared>,
    pub(crate) links: Vec<Option<Link>>,
    pub(crate) evs: mpsc::UnboundedReceiver<Ev>,
    /// Clients whose connection is up, and where each client is in `alive` (`usize::MAX`: not).
    pub(crate) alive: Vec<usize>,
    pub(crate) pos: Vec<usize>,
    /// By sequence number.
    pub(crate) msgs: Vec<SoakMsg>,
    pub(crate) filler: String,
    pub(crate) delivered: usize,
    pub(crate) duplicates: usize,
    /// Messages of this run at the wrong session or with an unknown sequence number, and
    /// messages that are not soak messages.
    pub(crate) unexpected: usize,
    /// Messages of an earlier run (kept offline since).
    pub(crate) stale: usize,
    /// Error replies to soak messages.
    pub(crate) bounced: usize,
    pub(crate) stream_errors: usize,
    /// Connections lost before the end.
    pub(crate) disconnects: usize,
    /// Send-to-receipt latencies of the messages delivered, in µs.
    pub(crate) lat_us: Vec<u32>,
    /// The controller is closing the sessions: lost connections are expected.
    pub(crate) closing: bool,
}

impl Soak {
    pub(crate) fn who(&self, i: usize) -> String {
        user_name(&self.sh.args, i)
    }

    pub(crate) fn add_link(&mut self, i: usize, link: Link) {
        self.pos[i] = self.alive.len();
        self.alive.push(i);
        self.links[i] = Some(link);
    }

    pub(crate) fn on_event(&mut self, ev: Ev) {
        let (id, el) = match ev {
            Ev::El { id, el, .. } => (id, el),
            Ev::Down { id, why } => {
                let p = self.pos[id];
                if !self.closing && p != usize::MAX {
                    self.disconnects += 1;
                    self.sh
                        .stats
                        .error(format!("{} lost its connection: {why}", self.who(id)));
                    self.alive.swap_remove(p);
                    if let Some(&moved) = self.alive.get(p) {
                        self.pos[moved] = p;
                    }
                    self.pos[id] = usize::MAX;
                }
                return;
            }
        };
        let name = elem_name(&el);
        if note_error(&self.sh, &self.who(id), &el) {
            match name {
                "stream:error" => self.stream_errors += 1,
                "message" => self.bounced += 1,
                _ => {}
            }
            return;
        }
        if name != "message" {
            return; // presences (our own, reflected), pings answered by the pump
        }
        let Some((run, seq, sent_us)) = child_text(&el, "body").and_then(parse_body) else {
            self.note_unexpected(id, &el);
            return;
        };
        if run != self.sh.run_id || el.contains("urn:xmpp:delay") {
            self.stale += 1;
            return;
        }
        match self.msgs.get_mut(seq as usize) {
            Some(m) if m.to as usize == id => {
                m.copies = m.copies.saturating_add(1);
                if m.copies == 1 {
                    self.delivered += 1;
                    let lat = now_us().saturating_sub(sent_us);
                    self.lat_us.push(lat.min(u32::MAX as u64) as u32);
                } else {
                    self.duplicates += 1;
                    if self.duplicates <= 5 {
                        eprintln!("duplicate: message {seq} arrived {} times", m.copies);
                    }
                }
            }
            _ => self.note_unexpected(id, &el),
        }
    }

    pub(crate) fn note_unexpected(&mut self, id: usize, el: &str) {
        self.unexpected += 1;
        if self.unexpected <= 5 {
            let el: String = el.chars().take(300).collect();
            eprintln!("unexpected message to {}: {el}", self.who(id));
        }
    }

    /// Sends the next message from a random session to another one; false if fewer than two
    /// are left.
    pub(crate) fn send_one(&mut self) -> bool {
        let n = self.alive.len();
        if n < 2 {
            return false;
        }
        let mut rng = rand::thread_rng();
        let a = rng.gen_range(0..n);
        let b = (a + rng.gen_range(1..n)) % n;
        let (from, to) = (self.alive[a], self.alive[b]);
        let (Some(sender), Some(addressee)) = (&self.links[from], &self.links[to]) else {
            return false;
        };
        let seq = self.msgs.len() as u64;
        sender.send(message(&self.sh, &addressee.jid, seq, &self.filler));
        self.msgs.push(SoakMsg {
            from: from as u32,
            to: to as u32,
            copies: 0,
        });
        true
    }

    /// Handles events until `done` or `until`.
    pub(crate) async fn run_until(&mut self, until: Instant, done: fn(&Soak) -> bool) {
        let until = tokio::time::Instant::from_std(until);
        while !done(self) {
            match tokio::time::timeout_at(until, self.evs.recv()).await {
                Ok(Some(ev)) => self.on_event(ev),
                _ => break,
            }
        }
    }

    /// Samples the server and prints a `SAMPLE` line.
    pub(crate) fn sample(&self, start: &CpuMark, ticks: f64) -> SoakSample {
        let pids = &self.sh.args.server_pid;
        let rss_kib = server_rss(pids);
        let used = CpuMark::now(pids).since(start, ticks);
        println!(
            "SAMPLE server={} t_s={:.0} rss_kib={} cpu_s={} gen_cpu_s={} other_cpu_s={} sent={} \
             delivered={} alive={} errors={}",
            self.sh.args.label,
            used.wall,
            fmt_u64(rss_kib),
            fmt_opt(used.server_s, 2),
            fmt_opt(used.gen_s, 2),
            fmt_opt(used.other_s, 2),
            self.msgs.len(),
            self.delivered,
            self.alive.len(),
            self.sh.stats.errors.load(Ordering::Relaxed)
        );
        SoakSample {
            t_s: used.wall,
            rss_kib,
        }
    }
}

/// --duration and --warmup of the soak (1800 s and 300 s if not given), checked with --rate.
fn soak_times(args: &Args, n: usize) -> Res<(u64, u64)> {
    let duration = args.duration.unwrap_or(1800);
    let warmup = args.warmup.unwrap_or(300);
    if n < 2 {
        return Err("--soak needs at least 2 sessions".into());
    }
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        return Err("--rate must be a positive number".into());
    }
    if warmup >= duration && !args.register_only {
        return Err(format!(
            "--warmup ({warmup} s) must be shorter than --duration ({duration} s)"
        )
        .into());
    }
    Ok((duration, warmup))
}

/// Login failures counted by what went wrong (the first five printed).
fn login_failures(logins: &[Res<(Tls, String)>]) -> Kinds {
    let mut failures = Kinds::default();
    for e in logins.iter().filter_map(|r| r.as_ref().err()) {
        let e = e.to_string();
        if failures.0.values().sum::<usize>() < 5 {
            eprintln!("error: {e}");
        }
        // "login USER: what": counted by what.
        failures.add(e.split_once(": ").map_or(e.as_str(), |(_, what)| what));
    }
    failures
}

/// The soak's memory figures: the server's RSS at the start, with the sessions ready, at the
/// end of the warm-up, at the end, after the last messages and after the sessions closed.
struct SoakRss {
    start: Option<u64>,
    ready: Option<u64>,
    drained: Option<u64>,
    closed: Option<u64>,
}

impl SoakRss {
    /// The memory fields of the RESULT line, from the samples after the warm-up.
    fn fields(&self, samples: &[SoakSample], warmup: u64, bound: usize) -> String {
        let after_warmup: Vec<&SoakSample> = samples
            .iter()
            .filter(|s| s.t_s + 0.5 >= warmup as f64)
            .collect();
        let points: Vec<(f64, f64)> = after_warmup
            .iter()
            .filter_map(|s| Some((s.t_s / 60.0, s.rss_kib? as f64)))
            .collect();
        let rss_warmup = after_warmup.first().and_then(|s| s.rss_kib);
        let rss_end = samples.last().and_then(|s| s.rss_kib);
        let rss_max = after_warmup.iter().filter_map(|s| s.rss_kib).max();
        let growth = match (rss_warmup, rss_end) {
            (Some(a), Some(b)) => Some(b as f64 - a as f64),
            _ => None,
        };
        let per_session = match (self.start, self.ready) {
            (Some(a), Some(b)) if bound > 0 => Some((b as f64 - a as f64) / bound as f64),
            _ => None,
        };
        format!(
            "rss_start_kib={} rss_ready_kib={} rss_kib_per_session={} warmup_s={warmup} \
             rss_warmup_kib={} rss_end_kib={} rss_max_kib={} rss_growth_kib={} \
             slope_kib_per_min={} samples={} rss_drained_kib={} rss_closed_kib={}",
            fmt_u64(self.start),
            fmt_u64(self.ready),
            fmt_opt(per_session, 1),
            fmt_u64(rss_warmup),
            fmt_u64(rss_end),
            fmt_u64(rss_max),
            fmt_opt(growth, 0),
            fmt_opt(slope(&points), 1),
            samples.len(),
            fmt_u64(self.drained),
            fmt_u64(self.closed),
        )
    }
}

/// The CPU fields of the soak's RESULT line, for `sent` messages.
fn soak_cpu_fields(used: &CpuUse, sent: usize) -> String {
    format!(
        "server_cpu_s={} server_cpu_pct={} cpu_s_per_1k={} gen_cpu_pct={} other_cpu_pct={}",
        fmt_opt(used.server_s, 1),
        fmt_opt(used.pct(used.server_s), 1),
        fmt_opt(used.server_s.map(|c| c / sent.max(1) as f64 * 1000.0), 3),
        fmt_opt(used.pct(used.gen_s), 1),
        fmt_opt(used.pct(used.other_s), 1),
    )
}

pub(crate) async fn soak(args: Args, n: usize) -> Res<()> {
    let (duration, warmup) = soak_times(&args, n)?;
    let (sh, _phase) = Shared::new(&args, n)?;
    let pids = &args.server_pid;
    let ticks = clock_ticks();
    eprintln!(
        "soak: {n} sessions at {}, {} logins at a time; then {} msg/s for {duration} s \
         (warm-up {warmup} s), a sample every {} s",
        args.target(),
        args.concurrency.max(1),
        args.rate,
        args.sample_secs
    );
    let users: Vec<String> = (0..n).map(|i| user_name(&args, i)).collect();
    let mut rss = SoakRss {
        start: server_rss(pids),
        ready: None,
        drained: None,
        closed: None,
    };
    let login0 = CpuMark::now(pids);
    let logins = login_all(&sh, &users, args.register || args.register_only).await;
    let login_use = CpuMark::now(pids).since(&login0, ticks);
    let bound = logins.iter().filter(|r| r.is_ok()).count();
    let failures = login_failures(&logins);
    if args.register_only {
        let errors = sh.stats.errors.load(Ordering::Relaxed);
        return register_result(&args, n, bound, login_use.wall, errors);
    }
    let logins_per_s = bound as f64 / login_use.wall;
    eprintln!(
        "{bound} sessions ready, {} failed, in {:.1} s ({logins_per_s:.0}/s)",
        n - bound,
        login_use.wall
    );
    let mut st = Soak::start(&sh, logins)?;
    // Let the server finish the logins (presences) before the reference figures.
    st.run_until(Instant::now() + Duration::from_secs(args.settle), |_| false)
        .await;
    rss.ready = server_rss(pids);
    let setup_errors = sh.stats.errors.load(Ordering::Relaxed);
    let start = CpuMark::now(pids);
    let samples = st.send_all(&start, duration, ticks).await;
    let used = CpuMark::now(pids).since(&start, ticks);
    let sent = st.msgs.len();
    let drain_s = st.finish(&mut rss).await;
    let errors = sh.stats.errors.load(Ordering::Relaxed);
    let (lost, lost_gone) = st.lost();
    st.lat_us.sort_unstable();
    println!(
        "RESULT server={} mode=soak sessions={n} bound={bound} login_failed={} login_s={:.1} \
         logins_per_s={logins_per_s:.1} {} rate={} duration_s={:.1} sent={sent} sent_per_s={:.1} \
         delivered={} lost={lost} lost_disconnected={lost_gone} duplicates={} unexpected={} \
         stale={} bounced={} stream_errors={} disconnects={} errors={errors} \
         setup_errors={setup_errors} drain_s={drain_s:.1} p50_ms={:.2} p99_ms={:.2} \
         max_ms={:.2} {} {} login_failures={failures}",
        args.label,
        n - bound,
        login_use.wall,
        login_use.login_fields(),
        args.rate,
        used.wall,
        sent as f64 / used.wall,
        st.delivered,
        st.duplicates,
        st.unexpected,
        st.stale,
        st.bounced,
        st.stream_errors,
        st.disconnects,
        percentile(&st.lat_us, 0.50),
        percentile(&st.lat_us, 0.99),
        percentile(&st.lat_us, 1.0),
        soak_cpu_fields(&used, sent),
        rss.fields(&samples, warmup, bound),
    );
    let bad = lost + st.duplicates + st.unexpected;
    if bad > 0 || errors > 0 || bound < n {
        return Err(format!(
            "{} logins failed, {lost} messages lost, {} duplicated, {} unexpected, {errors} errors",
            n - bound,
            st.duplicates,
            st.unexpected
        )
        .into());
    }
    Ok(())
}

impl Soak {
    /// The controller of the sessions that logged in (at least two), each run by a pump task.
    fn start(sh: &Arc<Shared>, logins: Vec<Res<(Tls, String)>>) -> Res<Soak> {
        let n = logins.len();
        let (evs_tx, evs) = mpsc::unbounded_channel();
        let mut st = Soak {
            sh: sh.clone(),
            links: (0..n).map(|_| None).collect(),
            evs,
            alive: Vec::with_capacity(n),
            pos: vec![usize::MAX; n],
            msgs: Vec::new(),
            filler: "x".repeat(sh.args.body_size.saturating_sub(40)),
            delivered: 0,
            duplicates: 0,
            unexpected: 0,
            stale: 0,
            bounced: 0,
            stream_errors: 0,
            disconnects: 0,
            lat_us: Vec::new(),
            closing: false,
        };
        for (i, r) in logins.into_iter().enumerate() {
            if let Ok((x, jid)) = r {
                st.add_link(i, Link::spawn(x, jid, i, &evs_tx));
            }
        }
        if st.alive.len() < 2 {
            return Err(format!("only {} sessions could log in", st.alive.len()).into());
        }
        Ok(st)
    }

    /// Sends --rate messages per second for `duration` seconds from `start`, handling what
    /// arrives meanwhile; returns the RSS samples (every --sample-secs, and one at the end).
    async fn send_all(&mut self, start: &CpuMark, duration: u64, ticks: f64) -> Vec<SoakSample> {
        let rate = self.sh.args.rate;
        let total = (rate * duration as f64).round() as usize;
        self.msgs.reserve(total);
        self.lat_us.reserve(total);
        let t0 = start.at;
        let end = t0 + Duration::from_secs(duration);
        let period = Duration::from_secs(self.sh.args.sample_secs.max(1));
        let mut next_sample = t0;
        let mut samples: Vec<SoakSample> = Vec::new();
        let mut pace = tokio::time::interval(Duration::from_millis(10));
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = pace.tick() => {
                    let now = Instant::now();
                    let due = if now >= end {
                        total
                    } else {
                        ((now - t0).as_secs_f64() * rate) as usize
                    };
                    while self.msgs.len() < due && self.send_one() {}
                    if now >= end || self.alive.len() < 2 {
                        break;
                    }
                }
                _ = tokio::time::sleep_until(next_sample.into()) => {
                    samples.push(self.sample(start, ticks));
                    next_sample += period;
                }
                ev = self.evs.recv() => match ev {
                    Some(ev) => self.on_event(ev),
                    None => break,
                }
            }
        }
        if samples.last().is_none_or(|s| s.t_s + 1.0 < duration as f64) {
            samples.push(self.sample(start, ticks));
        }
        samples
    }

    /// Waits for the last messages (at most --drain-secs), then a little longer for
    /// duplicates, and closes the sessions; returns the seconds waited for the last messages.
    async fn finish(&mut self, rss: &mut SoakRss) -> f64 {
        let (settle, pids) = (self.sh.args.settle, self.sh.args.server_pid.clone());
        let t_sent = Instant::now();
        self.run_until(t_sent + Duration::from_secs(self.sh.args.drain_secs), |s| {
            s.delivered + s.bounced >= s.msgs.len()
        })
        .await;
        let drain_s = t_sent.elapsed().as_secs_f64();
        self.run_until(Instant::now() + Duration::from_secs(settle), |_| false)
            .await;
        rss.drained = server_rss(&pids);
        self.closing = true;
        let mut links: Vec<Link> = std::mem::take(&mut self.links)
            .into_iter()
            .flatten()
            .collect();
        eprintln!(
            "sent {}, delivered {}; closing {} sessions",
            self.msgs.len(),
            self.delivered,
            links.len()
        );
        for l in &mut links {
            l.close();
        }
        for l in links {
            let _ = l.task.await;
        }
        tokio::time::sleep(Duration::from_secs(settle)).await;
        rss.closed = server_rss(&pids);
        drain_s
    }

    /// Messages that never arrived, and how many of them were from or to a session that lost
    /// its connection.
    fn lost(&self) -> (usize, usize) {
        let gone = |i: u32| self.pos[i as usize] == usize::MAX;
        let lost = self.msgs.iter().filter(|m| m.copies == 0).count();
        let lost_gone = self
            .msgs
            .iter()
            .filter(|m| m.copies == 0 && (gone(m.to) || gone(m.from)))
            .count();
        (lost, lost_gone)
    }
}
