//! Offline messages (--offline N).
//!
//! Two connections run by pump tasks (`link`): the sender, logged in for the whole run, and the
//! recipient, logged in once per round after the messages are stored.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Event ids of the offline mode: the sender, then one recipient session per login.
pub(crate) const OFF_SENDER: usize = 0;
pub(crate) const OFF_DRAIN: usize = 1;

/// One measured round of the offline mode.
#[derive(Default, Clone)]
pub(crate) struct OfflineRun {
    /// First send until the ping result (the server may still be storing then).
    pub(crate) store_ms: f64,
    /// Server CPU over `store_ms`.
    pub(crate) store_cpu_ms: Option<f64>,
    /// Server CPU from the ping result until it went quiet (storing that went on after it).
    pub(crate) tail_cpu_ms: Option<f64>,
    /// From the ping result until the end of the last 10 ms in which the server was busy.
    pub(crate) quiet_ms: Option<f64>,
    pub(crate) store_gen_cpu_pct: Option<f64>,
    /// Recipient: TCP connect until bound.
    pub(crate) login_ms: f64,
    /// Initial presence sent until the first / the N-th message of the round.
    pub(crate) first_ms: Option<f64>,
    pub(crate) deliver_ms: Option<f64>,
    /// TCP connect until the N-th message.
    pub(crate) from_connect_ms: Option<f64>,
    /// Server CPU from the TCP connect until the N-th message.
    pub(crate) deliver_cpu_ms: Option<f64>,
    pub(crate) deliver_gen_cpu_pct: Option<f64>,
    /// Busy CPU of the whole machine (100 = all CPUs) in the second before the round.
    pub(crate) busy_before_pct: Option<f64>,
    pub(crate) received: usize,
    pub(crate) duplicates: usize,
    pub(crate) out_of_order: usize,
    pub(crate) no_delay: usize,
    /// Error replies to the sender's messages.
    pub(crate) bounced: usize,
    /// Messages not of this round.
    pub(crate) stale: usize,
    pub(crate) errors: u64,
}

/// Connections and names of the offline mode.
pub(crate) struct OfflineBench {
    pub(crate) sh: Arc<Shared>,
    pub(crate) n: usize,
    pub(crate) domain: String,
    pub(crate) recv_user: String,
    pub(crate) recv_bare: String,
    pub(crate) sender: Link,
    pub(crate) evs_tx: mpsc::UnboundedSender<Ev>,
    pub(crate) evs: mpsc::UnboundedReceiver<Ev>,
    /// Error replies to the sender's messages since the last look.
    pub(crate) bounced: usize,
    /// Id of the IQ of `wait_gone` being waited for.
    pub(crate) probe: Option<String>,
}

impl OfflineBench {
    pub(crate) fn who(&self, id: usize) -> String {
        if id == OFF_SENDER {
            format!("{}-osend", self.sh.args.user_prefix)
        } else {
            self.recv_user.clone()
        }
    }

    /// Next event, or `None` at `limit` or when the recipient's connection is lost (an error).
    /// Handles what the sender gets (bounces, late probe answers) and traces; the caller sees
    /// everything else.
    pub(crate) async fn next(
        &mut self,
        limit: tokio::time::Instant,
    ) -> Res<Option<(usize, Instant, String)>> {
        loop {
            let ev = match tokio::time::timeout_at(limit, self.evs.recv()).await {
                Ok(Some(ev)) => ev,
                Ok(None) => return Err("event channel closed".into()),
                Err(_) => return Ok(None),
            };
            let (id, at, el) = match ev {
                Ev::El { id, at, el } => (id, at, el),
                Ev::Down { id, why } if id == OFF_SENDER => {
                    return Err(format!("{} lost its connection: {why}", self.who(id)).into())
                }
                Ev::Down { id, why } => {
                    // The recipient: the round goes on without it (what is missing is reported).
                    self.sh
                        .stats
                        .error(format!("{} lost its connection: {why}", self.who(id)));
                    return Ok(None);
                }
            };
            if self.sh.args.trace {
                eprintln!("trace {} <- {el}", self.who(id));
            }
            if id == OFF_SENDER
                && elem_name(&el) == "iq"
                && attr(&el, "id").is_some_and(|i| i.starts_with("gone-"))
                && attr(&el, "id") != self.probe.as_deref()
            {
                continue; // a late answer to an earlier probe of wait_gone
            }
            if id == OFF_SENDER && elem_name(&el) == "message" && attr(&el, "type") == Some("error")
            {
                self.bounced += 1;
                if self.bounced <= 3 {
                    eprintln!("  message bounced: {}", error_condition(&el));
                }
                continue;
            }
            return Ok(Some((id, at, el)));
        }
    }

    /// Waits until the server has no session of the recipient any more: an IQ from the sender
    /// to the recipient's last full JID must come back as an error (no such resource).
    pub(crate) async fn wait_gone(&mut self, full_jid: &str, tag: &str) -> Res<()> {
        let limit = Instant::now() + Duration::from_secs(10);
        for attempt in 0.. {
            let id = format!("gone-{tag}-{attempt}");
            self.probe = Some(id.clone());
            self.sender.send(format!(
                "<iq type='get' id='{id}' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
                xml_escape(full_jid)
            ));
            let answer_by = tokio::time::Instant::now() + Duration::from_secs(2);
            while let Some((from, _, el)) = self.next(answer_by).await? {
                if from == OFF_SENDER
                    && elem_name(&el) == "iq"
                    && attr(&el, "id") == Some(id.as_str())
                {
                    if attr(&el, "type") == Some("error") {
                        return Ok(());
                    }
                    break;
                }
                note_error(&self.sh, &self.who(from), &el);
            }
            if Instant::now() > limit {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("{full_jid} still has a session after 10 s").into())
    }

    /// Logs the recipient in (registering it first if asked), takes whatever is stored for it
    /// (until 1 s without a message), logs it out. Returns how many messages were waiting.
    pub(crate) async fn drain(&mut self, register_first: bool) -> Res<usize> {
        let res = format!("{}-drain", self.sh.args.resource);
        let (x, jid) = login_as(&self.sh, &self.recv_user, &res, register_first, true)
            .await
            .map_err(|e| format!("login {}: {e}", self.recv_user))?;
        let mut link = Link::spawn(x, jid.clone(), OFF_DRAIN, &self.evs_tx);
        let mut left = 0;
        loop {
            let limit = tokio::time::Instant::now() + Duration::from_secs(1);
            let Some((id, _, el)) = self.next(limit).await? else {
                break;
            };
            if id == OFF_DRAIN && elem_name(&el) == "message" && attr(&el, "type") != Some("error")
            {
                left += 1;
            } else {
                note_error(&self.sh, &self.who(id), &el);
            }
        }
        link.close();
        let _ = link.task.await;
        self.wait_gone(&jid, "drain").await?;
        Ok(left)
    }

    /// One round: store N messages, wait for the server to settle, deliver them.
    pub(crate) async fn measure(&mut self, k: usize) -> Res<OfflineRun> {
        let sh = self.sh.clone();
        let mut r = OfflineRun::default();
        let errors0 = sh.stats.errors.load(Ordering::Relaxed);
        let writes = self.writes(k);
        // How busy the machine is just before (other builds, ...), and anything left over.
        let m0 = machine_ticks();
        let quiet = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Some((id, _, el)) = self.next(quiet).await? {
            note_error(&sh, &self.who(id), &el);
        }
        r.busy_before_pct = busy_pct_since(m0);
        self.bounced = 0;
        let (pinged, cpu1) = self.store(k, writes, &mut r).await?;
        self.settle(pinged, cpu1, &mut r).await?;
        self.deliver(k, &mut r).await?;
        r.bounced = self.bounced;
        r.errors = sh.stats.errors.load(Ordering::Relaxed) - errors0;
        Ok(r)
    }

    /// The messages of round `k` in writes of --batch messages each, or (0) as many as fit in
    /// 64 KiB.
    fn writes(&self, k: usize) -> Vec<String> {
        let (sh, n) = (&self.sh, self.n);
        let base = (k * n) as u64;
        let filler = "x".repeat(sh.args.body_size.saturating_sub(40));
        let mut writes: Vec<String> = Vec::new();
        let mut cur = String::new();
        let mut in_cur = 0;
        for i in 0..n as u64 {
            let m = message(sh, &self.recv_bare, base + i, &filler);
            let full = match sh.args.batch {
                0 => cur.len() + m.len() > 1 << 16,
                b => in_cur == b,
            };
            if full && !cur.is_empty() {
                writes.push(std::mem::take(&mut cur));
                in_cur = 0;
            }
            cur.push_str(&m);
            in_cur += 1;
        }
        writes.push(cur);
        writes
    }

    /// Store: all N messages, then a ping to the server; returns when the ping result arrived
    /// and the server's CPU then.
    async fn store(
        &mut self,
        k: usize,
        writes: Vec<String>,
        r: &mut OfflineRun,
    ) -> Res<(Instant, Option<CpuSnap>)> {
        let sh = self.sh.clone();
        let (a, n) = (&sh.args, self.n);
        let ping_id = format!("op{k}");
        let ping = format!(
            "<iq type='get' id='{ping_id}' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
            xml_escape(&self.domain)
        );
        let cpu0 = cpu_snap(&a.server_pid);
        let self0 = cpu_ns("self");
        let t0 = Instant::now();
        for w in writes {
            self.sender.send(w);
        }
        self.sender.send(ping);
        let limit = tokio::time::Instant::now() + Duration::from_secs(a.presence_timeout);
        let pinged = loop {
            let Some((id, at, el)) = self.next(limit).await? else {
                return Err(format!(
                    "round {k}: no ping result within {} s of sending {n} messages",
                    a.presence_timeout
                )
                .into());
            };
            if id == OFF_SENDER
                && elem_name(&el) == "iq"
                && attr(&el, "id") == Some(ping_id.as_str())
            {
                if attr(&el, "type") != Some("result") {
                    sh.stats
                        .error(format!("round {k}: ping: {}", error_condition(&el)));
                }
                break at;
            }
            note_error(&sh, &self.who(id), &el);
        };
        let cpu1 = cpu_snap(&a.server_pid);
        let self1 = cpu_ns("self");
        r.store_ms = ms_since(t0, pinged);
        r.store_cpu_ms = cpu_between_ms(&cpu0, &cpu1);
        r.store_gen_cpu_pct = ns_diff_ms(self0, self1).map(|c| c / r.store_ms * 100.0);
        Ok((pinged, cpu1))
    }

    /// Settle: until the server has been idle (under 0.5 ms of CPU per 10 ms) for 300 ms
    /// (longer than kleiber's default flush window), at least 500 ms, at most 10 s; without
    /// --server-pid, 1 s. Whether the messages are on disk is not observable from here
    /// (kleiber: within its flush window; Prosody: written to the file, not fsynced, before
    /// it handles the next stanza).
    async fn settle(
        &mut self,
        pinged: Instant,
        cpu1: Option<CpuSnap>,
        r: &mut OfflineRun,
    ) -> Res<()> {
        let sh = self.sh.clone();
        let settle_start = Instant::now();
        let mut last_cpu = cpu1.clone();
        let mut last_busy = None;
        let mut idle_since = settle_start;
        loop {
            let tick = tokio::time::Instant::now() + Duration::from_millis(10);
            while let Some((id, _, el)) = self.next(tick).await? {
                note_error(&sh, &self.who(id), &el);
            }
            let now = Instant::now();
            let elapsed = now - settle_start;
            if cpu1.is_none() {
                if elapsed >= Duration::from_secs(1) {
                    break;
                }
                continue;
            }
            let c = cpu_snap(&sh.args.server_pid);
            if cpu_between_ms(&last_cpu, &c).unwrap_or(0.0) >= 0.5 {
                last_busy = Some(now);
                idle_since = now;
            }
            last_cpu = c;
            if (elapsed >= Duration::from_millis(500)
                && now - idle_since >= Duration::from_millis(300))
                || elapsed >= Duration::from_secs(10)
            {
                break;
            }
        }
        if cpu1.is_some() {
            r.tail_cpu_ms = cpu_between_ms(&cpu1, &last_cpu);
            r.quiet_ms = Some(last_busy.map_or(0.0, |t| ms_since(pinged, t)));
        }
        Ok(())
    }

    /// Deliver: the recipient logs in, sends initial presence, gets the N messages; then logs
    /// out, so that the next round starts with the recipient offline.
    async fn deliver(&mut self, k: usize, r: &mut OfflineRun) -> Res<()> {
        let sh = self.sh.clone();
        let (a, n) = (&sh.args, self.n);
        let pids = &a.server_pid;
        let cpu2 = cpu_snap(pids);
        let self2 = cpu_ns("self");
        let tc = Instant::now();
        let res = format!("{}{k}", a.resource);
        let (x, jid) = login_as(&sh, &self.recv_user, &res, false, false)
            .await
            .map_err(|e| format!("round {k}: login {}: {e}", self.recv_user))?;
        r.login_ms = ms_since(tc, Instant::now());
        let rid = OFF_DRAIN + 1 + k;
        let mut recv = Link::spawn(x, jid.clone(), rid, &self.evs_tx);
        let tp = Instant::now();
        recv.send("<presence/>".into());
        let got = self.receive(k, rid, r).await?;
        if let (Some((cpu3, self3)), Some(last)) = (got.done, got.last) {
            r.first_ms = got.first.map(|t| ms_since(tp, t));
            r.deliver_ms = Some(ms_since(tp, last));
            r.from_connect_ms = Some(ms_since(tc, last));
            r.deliver_cpu_ms = cpu_between_ms(&cpu2, &cpu3);
            r.deliver_gen_cpu_pct =
                ns_diff_ms(self2, self3).map(|c| c / ms_since(tc, last) * 100.0);
        } else {
            sh.stats.error(if self.bounced > 0 {
                format!(
                    "round {k}: only {} of {n} messages arrived; {} were refused",
                    r.received, self.bounced
                )
            } else {
                format!(
                    "round {k}: only {} of {n} messages arrived within {} s of the presence",
                    r.received, a.presence_timeout
                )
            });
        }
        recv.close();
        let _ = recv.task.await;
        self.wait_gone(&jid, &k.to_string()).await
    }

    /// Reads what the recipient `rid` gets until the N messages of round `k` are in (and
    /// 300 ms more for duplicates and strays), all others were refused, or --presence-timeout.
    async fn receive(&mut self, k: usize, rid: usize, r: &mut OfflineRun) -> Res<Delivery> {
        let sh = self.sh.clone();
        let n = self.n;
        let base = (k * n) as u64;
        let mut got = Delivery {
            seen: vec![false; n],
            ..Delivery::default()
        };
        let mut limit = tokio::time::Instant::now() + Duration::from_secs(sh.args.presence_timeout);
        loop {
            if got.done.is_none() && r.received + self.bounced >= n {
                break; // the others were refused (quota): no use waiting for them
            }
            let Some((id, at, el)) = self.next(limit).await? else {
                break;
            };
            if id != rid || elem_name(&el) != "message" || attr(&el, "type") == Some("error") {
                note_error(&sh, &self.who(id), &el);
                continue;
            }
            let parsed = child_text(&el, "body").and_then(parse_body);
            let idx = match parsed {
                Some((run, seq, _)) if run == sh.run_id && seq >= base && seq < base + n as u64 => {
                    (seq - base) as usize
                }
                _ => {
                    r.stale += 1;
                    continue;
                }
            };
            if !el.contains("urn:xmpp:delay") {
                r.no_delay += 1;
            }
            if got.count(idx, at, r) && r.received == n && got.done.is_none() {
                got.done = Some((cpu_snap(&sh.args.server_pid), cpu_ns("self")));
                // Stay a little longer for duplicates and strays.
                limit = tokio::time::Instant::now() + Duration::from_millis(300);
            }
        }
        Ok(got)
    }
}

/// What the recipient got in one round.
#[derive(Default)]
pub(crate) struct Delivery {
    /// By message index.
    seen: Vec<bool>,
    max_seen: Option<usize>,
    first: Option<Instant>,
    last: Option<Instant>,
    /// Server and generator CPU when the last message was in.
    done: Option<(Option<CpuSnap>, Option<u64>)>,
}

impl Delivery {
    /// Counts message `idx`, arrived `at`; false if it is a duplicate.
    fn count(&mut self, idx: usize, at: Instant, r: &mut OfflineRun) -> bool {
        if self.seen[idx] {
            r.duplicates += 1;
            return false;
        }
        self.seen[idx] = true;
        r.received += 1;
        if self.max_seen.is_some_and(|m| idx < m) {
            r.out_of_order += 1;
        }
        self.max_seen = Some(self.max_seen.map_or(idx, |m| m.max(idx)));
        self.first.get_or_insert(at);
        self.last = Some(at);
        true
    }
}

/// Prints one measured round on stderr.
fn print_round(k: usize, n: usize, r: &OfflineRun) {
    eprintln!(
        "round {k}: stored {n} in {:.1} ms ({:.0}/s), server CPU {} ms + {} ms after the ping \
         result (busy until {} ms after it); recipient bound in {:.1} ms, first message {} ms \
         and all {} ms after the presence ({}/s), {} ms from the connect, server CPU {} ms; \
         received {} dup {} out-of-order {} no-delay {} bounced {} stale {} errors {}; \
         machine {} % busy before",
        r.store_ms,
        n as f64 / r.store_ms * 1000.0,
        fmt_opt(r.store_cpu_ms, 1),
        fmt_opt(r.tail_cpu_ms, 1),
        fmt_opt(r.quiet_ms, 0),
        r.login_ms,
        fmt_opt(r.first_ms, 1),
        fmt_opt(r.deliver_ms, 1),
        fmt_opt(r.deliver_ms.map(|d| n as f64 / d * 1000.0), 0),
        fmt_opt(r.from_connect_ms, 1),
        fmt_opt(r.deliver_cpu_ms, 1),
        r.received,
        r.duplicates,
        r.out_of_order,
        r.no_delay,
        r.bounced,
        r.stale,
        r.errors,
        fmt_opt(r.busy_before_pct, 0),
    );
}

/// The median RESULT fields of the rounds of `n` messages.
fn median_fields(runs: &[OfflineRun], n: usize) -> String {
    let med = |f: &dyn Fn(&OfflineRun) -> Option<f64>| median(runs.iter().filter_map(f).collect());
    let per_s = |ms: Option<f64>| ms.map(|ms| n as f64 / ms * 1000.0);
    let per_msg_us = |ms: Option<f64>| ms.map(|ms| ms * 1000.0 / n as f64);
    let store_cpu = |r: &OfflineRun| match (r.store_cpu_ms, r.tail_cpu_ms) {
        (Some(a), Some(b)) => Some(a + b),
        _ => None,
    };
    format!(
        "runs={} stored_per_s={} store_ms={} store_server_cpu_ms={} store_tail_cpu_ms={} \
         store_quiet_ms={} store_cpu_us_per_msg={} store_gen_cpu_pct={} delivered_per_s={} \
         deliver_ms={} first_ms={} deliver_from_connect_ms={} login_ms={} \
         deliver_server_cpu_ms={} deliver_cpu_us_per_msg={} deliver_gen_cpu_pct={} \
         busy_before_pct={}",
        runs.len(),
        fmt_opt(med(&|r| per_s(Some(r.store_ms))), 0),
        fmt_opt(med(&|r| Some(r.store_ms)), 1),
        fmt_opt(med(&|r| r.store_cpu_ms), 1),
        fmt_opt(med(&|r| r.tail_cpu_ms), 1),
        fmt_opt(med(&|r| r.quiet_ms), 0),
        fmt_opt(med(&|r| per_msg_us(store_cpu(r))), 1),
        fmt_opt(med(&|r| r.store_gen_cpu_pct), 0),
        fmt_opt(med(&|r| per_s(r.deliver_ms)), 0),
        fmt_opt(med(&|r| r.deliver_ms), 1),
        fmt_opt(med(&|r| r.first_ms), 1),
        fmt_opt(med(&|r| r.from_connect_ms), 1),
        fmt_opt(med(&|r| Some(r.login_ms)), 1),
        fmt_opt(med(&|r| r.deliver_cpu_ms), 1),
        fmt_opt(med(&|r| per_msg_us(r.deliver_cpu_ms)), 1),
        fmt_opt(med(&|r| r.deliver_gen_cpu_pct), 0),
        fmt_opt(med(&|r| r.busy_before_pct), 0),
    )
}

pub(crate) async fn offline(args: Args, n: usize) -> Res<()> {
    if n == 0 {
        return Err("--offline needs at least 1 message".into());
    }
    TRACE.store(args.trace, Ordering::Relaxed);
    let (sh, _phase) = Shared::new(&args, 0)?;
    let domain = args.domain.to_ascii_lowercase();
    let send_user = format!("{}-osend", args.user_prefix);
    let recv_user = format!("{}-orecv", args.user_prefix);
    let recv_bare = format!("{}@{domain}", recv_user.to_ascii_lowercase());
    eprintln!(
        "offline: {send_user}@{domain} sends {n} messages ({}-byte bodies) to {recv_bare} at {}",
        args.body_size,
        args.target()
    );
    let register_first = args.register || args.register_only;
    let t_setup = Instant::now();
    if args.register_only {
        for u in [&send_user, &recv_user] {
            login_as(&sh, u, &args.resource, true, false)
                .await
                .map_err(|e| format!("register {u}: {e}"))?;
        }
        return register_result(&args, 2, 2, t_setup.elapsed().as_secs_f64(), 0);
    }
    let (x, jid) = login_as(&sh, &send_user, &args.resource, register_first, true)
        .await
        .map_err(|e| format!("login {send_user}: {e}"))?;
    let (evs_tx, evs) = mpsc::unbounded_channel();
    // One write per batch of messages (see `measure`), not coalesced further.
    let sender = Link::spawn_with(x, jid, OFF_SENDER, &evs_tx, 1);
    let mut ob = OfflineBench {
        sh: sh.clone(),
        n,
        domain,
        recv_user,
        recv_bare,
        sender,
        evs_tx,
        evs,
        bounced: 0,
        probe: None,
    };
    let leftover = ob.drain(register_first).await?;
    let setup_s = t_setup.elapsed().as_secs_f64();
    eprintln!("setup: {setup_s:.1} s; {leftover} messages were waiting for the recipient (taken)");
    let setup_errors = sh.stats.errors.load(Ordering::Relaxed);
    let mut runs = Vec::new();
    for k in 0..args.repeat.max(1) {
        let r = ob.measure(k).await?;
        print_round(k, n, &r);
        runs.push(r);
    }
    ob.sender.close();
    let _ = ob.sender.task.await;

    let sum = |f: &dyn Fn(&OfflineRun) -> usize| runs.iter().map(f).sum::<usize>();
    let per_s = |ms: Option<f64>| ms.map(|ms| n as f64 / ms * 1000.0);
    let list = |f: &dyn Fn(&OfflineRun) -> Option<f64>| {
        runs.iter()
            .map(|r| fmt_opt(f(r), 0))
            .collect::<Vec<_>>()
            .join(",")
    };
    let received_min = runs.iter().map(|r| r.received).min().unwrap_or(0);
    let missing = sum(&|r| n - r.received);
    let errors = sh.stats.errors.load(Ordering::Relaxed);
    println!(
        "RESULT server={} mode=offline msgs={n} body_size={} {} received={received_min} \
         missing={missing} duplicates={} out_of_order={} no_delay={} bounced={} stale={} \
         leftover={leftover} stored_per_s_runs={} delivered_per_s_runs={} setup_s={setup_s:.1} \
         setup_errors={setup_errors} errors={errors}",
        args.label,
        args.body_size,
        median_fields(&runs, n),
        sum(&|r| r.duplicates),
        sum(&|r| r.out_of_order),
        sum(&|r| r.no_delay),
        sum(&|r| r.bounced),
        sum(&|r| r.stale),
        list(&|r| per_s(Some(r.store_ms))),
        list(&|r| per_s(r.deliver_ms)),
    );
    let bad = missing + sum(&|r| r.duplicates + r.out_of_order + r.no_delay + r.bounced);
    if errors > 0 || bad > 0 {
        return Err(format!(
            "{errors} errors, {bad} missing/duplicate/out-of-order/undelayed/bounced messages"
        )
        .into());
    }
    Ok(())
}
