//! Reconnect-and-resume storm (--resume-storm N).
//!
//! Set-up tasks log the N sessions in and enable stream management with resumption, then keep
//! reading (counting stanzas, answering <r/> and IQ requests) until the cut, when they hand
//! their streams to the controller, which closes all the sockets with an RST (SO_LINGER 0: no
//! </stream:stream>, no TLS close_notify, no FIN). Resume tasks (one per session, --concurrency
//! at a time) then reconnect, authenticate and resume; they report `<resumed/>` to the
//! controller and keep reading until it closes them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::cli::*;
use crate::client::*;
use crate::cpu::*;
use crate::link::*;
use crate::shared::*;
use crate::stats::*;
use crate::xml::*;
use crate::{BoxError, Res};

pub(crate) const SM_NS: &str = "urn:xmpp:sm:3";

/// Phases of the storm's set-up, broadcast to the set-up tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StormPhase {
    /// Logging in and enabling stream management.
    Setup,
    /// --storm-message: send the message to the next session.
    Message,
    /// Stop reading and hand the stream back.
    Cut,
}

/// A session's stream-management counters, as its client sees them.
#[derive(Clone, Default)]
pub(crate) struct SmClient {
    /// Resumption id, as in `<enabled id=../>` (not unescaped: sent back as it came).
    pub(crate) id: String,
    /// The client's `h`: stanzas received since `<enabled/>`, what it acknowledges and resumes
    /// with. With --storm-message it stops counting at the storm message, as if that message
    /// and what followed it had been lost with the connection.
    pub(crate) h: u32,
    /// Stanzas received since `<enabled/>`, all of them.
    pub(crate) received: u32,
    /// `h` stopped counting at the storm message (until the resumption).
    pub(crate) frozen: bool,
    /// Stanzas sent since `<enabled/>`: the `h` the server should resume with.
    pub(crate) sent: u32,
}

pub(crate) fn storm_body_prefix(sh: &Shared) -> String {
    format!("storm {:08x} ", sh.run_id)
}

/// Name of the first child element of `e` (the condition of a `<failed/>`), or `none`.
pub(crate) fn first_child(e: &str) -> String {
    let Some(t) = tag_end(e.as_bytes(), 0) else {
        return "none".into();
    };
    let rest = &e[t..];
    match rest.find('<') {
        Some(p) if !rest[p..].starts_with("</") => elem_name(&rest[p..]).to_owned(),
        _ => "none".into(),
    }
}

/// Enables stream management with resumption on a bound stream.
pub(crate) async fn sm_enable<S: Io>(x: &mut Xmpp<S>) -> Res<SmClient> {
    x.send(&format!("<enable xmlns='{SM_NS}' resume='true'/>"))
        .await?;
    loop {
        let e = x.element().await?;
        match elem_name(&e) {
            "enabled" => {
                if !matches!(attr(&e, "resume"), Some("true" | "1")) {
                    return Err(format!("resumption not granted: {e}").into());
                }
                let id = attr(&e, "id").ok_or("<enabled/> without id")?;
                return Ok(SmClient {
                    id: id.to_owned(),
                    ..SmClient::default()
                });
            }
            "failed" => return Err(format!("<enable/> failed: {}", first_child(&e)).into()),
            // Before <enabled/>: not counted on either side.
            "iq" => answer_iq(x, &e).await?,
            _ => {}
        }
    }
}

/// An element received on a stream with stream management: counts stanzas (see `SmClient`),
/// answers `<r/>` and IQ requests. `freeze`: a storm message stops `h` (before the cut).
/// Returns whether it was one of this run's storm messages.
pub(crate) async fn sm_incoming<S: Io>(
    sh: &Shared,
    who: &str,
    x: &mut Xmpp<S>,
    sm: &mut SmClient,
    e: &str,
    freeze: bool,
) -> Res<bool> {
    let name = elem_name(e);
    match name {
        "message" | "presence" | "iq" => {
            sm.received += 1;
            let storm = name == "message"
                && child_text(e, "body").is_some_and(|b| b.starts_with(&storm_body_prefix(sh)));
            if storm && freeze {
                sm.frozen = true;
            }
            if !sm.frozen {
                sm.h += 1;
            }
            if name == "iq" && matches!(attr(e, "type"), Some("get" | "set")) {
                answer_iq(x, e).await?;
                sm.sent += 1;
            }
            note_error(sh, who, e);
            Ok(storm)
        }
        "r" => {
            x.send(&format!("<a xmlns='{SM_NS}' h='{}'/>", sm.h))
                .await?;
            Ok(false)
        }
        _ => Ok(false),
    }
}

/// Next element of a stream; a stream end or header is an error (stream errors are, already).
pub(crate) async fn next_element<S: Io>(x: &mut Xmpp<S>) -> Res<String> {
    match x.next().await? {
        Event::Element(e) if elem_name(&e) == "stream:error" => {
            Err(format!("stream error: {}", error_condition(&e)).into())
        }
        Event::Element(e) => Ok(e),
        Event::StreamHeader => Err("unexpected stream header".into()),
        Event::StreamEnd => Err("stream closed by server".into()),
    }
}

/// Set-up task of session `i`: log in, bind, initial presence, enable resumption; then read
/// until the cut and return the stream (`None` if it failed, or with --register-only).
pub(crate) async fn storm_setup(
    sh: Arc<Shared>,
    i: usize,
    mut phase: watch::Receiver<StormPhase>,
    got_message: Arc<AtomicUsize>,
) -> Option<(Tls, SmClient)> {
    let a = &sh.args;
    let user = user_name(a, i);
    let permit = sh.login_slots.acquire().await.expect("semaphore open");
    let r = async {
        let register_first = a.register || a.register_only;
        let (mut x, jid) = login_as(&sh, &user, &a.resource, register_first, true).await?;
        if a.register_only {
            return Ok((x, jid, SmClient::default()));
        }
        let sm = sm_enable(&mut x).await?;
        Ok::<_, BoxError>((x, jid, sm))
    }
    .await;
    drop(permit);
    let (mut x, jid, mut sm) = match r {
        Ok(v) => v,
        Err(e) => {
            sh.stats.failed.fetch_add(1, Ordering::SeqCst);
            sh.stats.error(format!("set-up {user}: {e}"));
            return None;
        }
    };
    sh.stats.bound.fetch_add(1, Ordering::SeqCst);
    if a.register_only {
        return None;
    }
    let _ = sh.jids[i].set(jid);
    let n = sh.jids.len();
    loop {
        let r: Res<()> = tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    return None;
                }
                let p = *phase.borrow_and_update();
                match p {
                    StormPhase::Cut => return Some((x, sm)),
                    StormPhase::Message => match sh.jids[(i + 1) % n].get() {
                        Some(to) => {
                            let m = format!(
                                "<message to='{}' type='chat' id='storm{i}'><body>{}{i}</body></message>",
                                xml_escape(to),
                                storm_body_prefix(&sh)
                            );
                            sm.sent += 1;
                            x.send(&m).await
                        }
                        None => Ok(()),
                    },
                    StormPhase::Setup => Ok(()),
                }
            }
            e = next_element(&mut x) => match e {
                Ok(e) => match sm_incoming(&sh, &user, &mut x, &mut sm, &e, true).await {
                    Ok(true) => {
                        got_message.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    }
                    Ok(false) => Ok(()),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        };
        if let Err(e) = r {
            sh.stats.error(format!("{user} before the cut: {e}"));
            return None;
        }
    }
}

/// Reconnects session `i`, authenticates and resumes it; returns the stream and the server's
/// `h` from `<resumed/>`.
pub(crate) async fn resume_one(sh: &Shared, i: usize, sm: &SmClient) -> Res<(Tls, u32)> {
    let a = &sh.args;
    let srv = main_server(a);
    let (mut x, features) = connect(sh, srv).await?;
    sasl(&mut x, &features, a.mech, &user_name(a, i), &a.password).await?;
    let features = x.open_stream(srv.domain).await?;
    if !features.contains(SM_NS) {
        return Err("no stream management offered after authentication".into());
    }
    x.send(&format!(
        "<resume xmlns='{SM_NS}' previd='{}' h='{}'/>",
        sm.id, sm.h
    ))
    .await?;
    let e = x.element().await?;
    match elem_name(&e) {
        "resumed" => {
            if attr(&e, "previd") != Some(sm.id.as_str()) {
                return Err(format!("<resumed/> for another session: {e}").into());
            }
            let h = attr(&e, "h")
                .and_then(|h| h.parse().ok())
                .ok_or_else(|| format!("<resumed/> without a valid h: {e}"))?;
            Ok((x, h))
        }
        "failed" => Err(format!("<failed/> {}", first_child(&e)).into()),
        _ => Err(format!("expected <resumed/>, got {e}").into()),
    }
}

/// What a resume task reports when its `<resumed/>` (or its failure) comes.
pub(crate) struct StormDone {
    pub(crate) i: usize,
    /// TCP connect (after waiting for a login slot).
    pub(crate) start: Instant,
    pub(crate) end: Instant,
    /// The server's `h`, or why the resumption failed.
    pub(crate) outcome: Result<u32, String>,
}

/// What a resumed session received after `<resumed/>`, until it was closed.
#[derive(Default, Clone, Copy)]
pub(crate) struct AfterResume {
    pub(crate) stanzas: u32,
    /// Copies of the storm message.
    pub(crate) copies: u32,
}

/// Resume task of session `i`: resume, report, then read until `close`; acknowledge everything
/// and close the stream.
pub(crate) async fn storm_resume(
    sh: Arc<Shared>,
    i: usize,
    mut sm: SmClient,
    done: mpsc::UnboundedSender<StormDone>,
    mut close: watch::Receiver<bool>,
    copies_in: Arc<AtomicUsize>,
) -> AfterResume {
    let mut out = AfterResume::default();
    let permit = sh.login_slots.acquire().await.expect("semaphore open");
    let start = Instant::now();
    let r = resume_one(&sh, i, &sm).await;
    let end = Instant::now();
    drop(permit);
    let (mut x, h) = match r {
        Ok(v) => v,
        Err(e) => {
            let _ = done.send(StormDone {
                i,
                start,
                end,
                outcome: Err(e.to_string()),
            });
            return out;
        }
    };
    let _ = done.send(StormDone {
        i,
        start,
        end,
        outcome: Ok(h),
    });
    // The server sends again what `h` left out: count from there.
    sm.frozen = false;
    let who = user_name(&sh.args, i);
    loop {
        let r = tokio::select! {
            _ = close.changed() => break,
            e = next_element(&mut x) => match e {
                Ok(e) => {
                    let before = sm.received;
                    match sm_incoming(&sh, &who, &mut x, &mut sm, &e, false).await {
                        Ok(storm) => {
                            out.stanzas += sm.received - before;
                            if storm {
                                out.copies += 1;
                                copies_in.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            }
        };
        if let Err(e) = r {
            sh.stats.error(format!("{who} after the resumption: {e}"));
            return out;
        }
    }
    // Acknowledge everything (the server would route unacknowledged messages again when the
    // session ends), then close the stream.
    let _ = x.send(&format!("<a xmlns='{SM_NS}' h='{}'/>", sm.h)).await;
    x.close(Duration::from_secs(3)).await;
    out
}

/// Sessions set up before the cut, by set-up task.
type SetupTasks = Vec<tokio::task::JoinHandle<Option<(Tls, SmClient)>>>;

/// Counters of the server, the generator, the machine and its TCP stack at one moment.
struct Marks {
    server: Option<CpuSnap>,
    gen_ns: Option<u64>,
    busy: Option<u64>,
    tcp: Option<Vec<u64>>,
}

/// Connections refused for a full accept queue, and SYNs sent again (by the clients, here: all
/// on loopback); machine-wide.
const TCP: [&str; 3] = ["ListenOverflows", "ListenDrops", "TCPSynRetrans"];

impl Marks {
    fn now(pids: &[u32]) -> Marks {
        Marks {
            tcp: tcp_ext(&TCP),
            server: cpu_snap(pids),
            gen_ns: cpu_ns("self"),
            busy: machine_busy_ticks(),
        }
    }
}

/// What the controller saw of the resumptions.
#[derive(Default)]
struct Resumptions {
    /// Resume latencies (connect to `<resumed/>`), µs.
    lat_us: Vec<u32>,
    first_start: Option<Instant>,
    last_resumed: Option<Instant>,
    /// By session.
    resumed_ok: Vec<bool>,
    failures: Kinds,
    h_mismatch: usize,
    /// Sessions that reported (resumed or failed).
    reported: usize,
}

/// One storm, filled in as it goes.
struct Storm {
    sh: Arc<Shared>,
    n: usize,
    ready: usize,
    setup_failed: usize,
    setup_s: f64,
    msg_expected: usize,
    /// Sessions whose stream the set-up task could not hand over at the cut.
    lost_before_cut: usize,
    msg_before_cut: usize,
    cut_ms: f64,
    t_cut: Instant,
    t_done: Instant,
    /// Server RSS at the start, before the cut, after the last resumption, at the end.
    rss: [Option<u64>; 4],
    at_cut: Marks,
    at_done: Marks,
    /// Server CPU after the messages sent again are in.
    tail_cpu: Option<CpuSnap>,
    /// By session: `h` and whether a copy of the storm message is due after `<resumed/>`.
    expect_h: Vec<u32>,
    expect_copy: Vec<bool>,
    res: Resumptions,
    after: Vec<AfterResume>,
}

pub(crate) async fn resume_storm(args: Args, n: usize) -> Res<()> {
    if n == 0 {
        return Err("--resume-storm needs at least 1 session".into());
    }
    // Logging in again costs the client no PBKDF2 (see SALTED_CACHE): the storm measures the
    // server, not the generator's SCRAM.
    let _ = SALTED_CACHE.set(Mutex::new(HashMap::new()));
    let (sh, _phase) = Shared::new(&args, n)?;
    announce_storm(&args, n);
    let pids = &args.server_pid;
    let (phase_tx, phase_rx) = watch::channel(StormPhase::Setup);
    let got_message = Arc::new(AtomicUsize::new(0));
    let rss_start = server_rss(pids);
    let t_setup = Instant::now();
    let handles: SetupTasks = (0..n)
        .map(|i| {
            let (sh, rx, got) = (sh.clone(), phase_rx.clone(), got_message.clone());
            tokio::spawn(storm_setup(sh, i, rx, got))
        })
        .collect();
    let all_in = wait_logins(&sh, n).await;
    let setup_s = t_setup.elapsed().as_secs_f64();
    let ready = sh.stats.bound.load(Ordering::SeqCst);
    let setup_failed = sh.stats.failed.load(Ordering::SeqCst);
    if args.register_only {
        for h in handles {
            let _ = h.await;
        }
        let errors = sh.stats.errors.load(Ordering::Relaxed);
        return register_result(&args, n, ready, setup_s, errors);
    }
    if !all_in || ready == 0 {
        return Err(format!("set-up: {ready} of {n} sessions ready, {setup_failed} failed").into());
    }
    eprintln!(
        "set-up: {ready} sessions with resumption enabled, {setup_failed} failed, in {setup_s:.1} s"
    );
    let msg_expected = storm_messages(&sh, n, &phase_tx, &got_message).await;
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let _ = phase_tx.send(StormPhase::Cut);
    let mut storm = Storm {
        sh,
        n,
        ready,
        setup_failed,
        setup_s,
        msg_expected,
        lost_before_cut: 0,
        msg_before_cut: 0,
        cut_ms: 0.0,
        t_cut: Instant::now(),
        t_done: Instant::now(),
        rss: [rss_start, None, None, None],
        at_cut: Marks::now(&[]),
        at_done: Marks::now(&[]),
        tail_cpu: None,
        expect_h: vec![0; n],
        expect_copy: vec![false; n],
        res: Resumptions::default(),
        after: vec![AfterResume::default(); n],
    };
    let states = storm.cut(handles).await;
    storm.storm(states).await;
    storm.result()
}

/// Says on stderr what is about to be done.
fn announce_storm(args: &Args, n: usize) {
    eprintln!(
        "resume-storm: {n} sessions at {}, {} logins at a time{}",
        args.target(),
        args.concurrency.max(1),
        if args.storm_message {
            ", one message each to send again"
        } else {
            ""
        }
    );
}

/// With --storm-message, has session i send its message to session i+1 and waits (at most
/// --presence-timeout) until they are in; returns how many were expected.
async fn storm_messages(
    sh: &Shared,
    n: usize,
    phase_tx: &watch::Sender<StormPhase>,
    got_message: &AtomicUsize,
) -> usize {
    if !sh.args.storm_message {
        return 0;
    }
    let msg_expected = (0..n)
        .filter(|&i| sh.jids[i].get().is_some() && sh.jids[(i + n - 1) % n].get().is_some())
        .count();
    let _ = phase_tx.send(StormPhase::Message);
    let limit = Instant::now() + Duration::from_secs(sh.args.presence_timeout);
    while got_message.load(Ordering::SeqCst) < msg_expected && Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "{} of {msg_expected} sessions got their message",
        got_message.load(Ordering::SeqCst)
    );
    msg_expected
}

impl Storm {
    /// Takes the streams from the set-up tasks and cuts them all at once (RST); returns the
    /// stream management state of each session cut.
    async fn cut(&mut self, handles: SetupTasks) -> Vec<(usize, SmClient)> {
        let pids = &self.sh.args.server_pid;
        let mut streams = Vec::with_capacity(self.ready);
        let mut states = Vec::with_capacity(self.ready);
        for (i, h) in handles.into_iter().enumerate() {
            if let Ok(Some((x, sm))) = h.await {
                if let Some(tcp) = x.io.tcp() {
                    let _ = tcp.set_zero_linger();
                }
                streams.push(x);
                states.push((i, sm));
            }
        }
        self.lost_before_cut = self.ready - states.len();
        self.msg_before_cut = states.iter().filter(|(_, sm)| sm.frozen).count();
        self.rss[1] = server_rss(pids);
        self.at_cut = Marks::now(pids);
        self.t_cut = Instant::now();
        drop(streams);
        self.cut_ms = self.t_cut.elapsed().as_secs_f64() * 1000.0;
        eprintln!(
            "cut {} connections in {:.1} ms; resuming",
            states.len(),
            self.cut_ms
        );
        for (i, sm) in &states {
            self.expect_h[*i] = sm.sent;
            self.expect_copy[*i] = sm.frozen;
        }
        states
    }

    /// The storm: every session cut resumes (after --storm-delay-ms); then the messages sent
    /// again are waited for and the sessions closed.
    async fn storm(&mut self, states: Vec<(usize, SmClient)>) {
        let sh = self.sh.clone();
        let pids = &sh.args.server_pid;
        if sh.args.storm_delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(sh.args.storm_delay_ms)).await;
        }
        let total = states.len();
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (close_tx, close_rx) = watch::channel(false);
        let copies_in = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<(usize, tokio::task::JoinHandle<AfterResume>)> = states
            .into_iter()
            .map(|(i, sm)| {
                let (done, close) = (done_tx.clone(), close_rx.clone());
                let t = tokio::spawn(storm_resume(
                    sh.clone(),
                    i,
                    sm,
                    done,
                    close,
                    copies_in.clone(),
                ));
                (i, t)
            })
            .collect();
        drop(done_tx);
        self.collect(total, done_rx).await;
        self.t_done = Instant::now();
        self.at_done = Marks::now(pids);
        self.rss[2] = server_rss(pids);
        let resumed = self.res.lat_us.len();
        let failed = self.res.reported - resumed;
        eprintln!(
            "storm: {resumed} resumed, {failed} failed, {} timed out, in {:.1} ms",
            total - self.res.reported,
            (self.t_done - self.t_cut).as_secs_f64() * 1000.0
        );
        self.wait_copies(&copies_in).await;
        self.tail_cpu = cpu_snap(pids);
        let _ = close_tx.send(true);
        for (i, mut t) in tasks {
            match tokio::time::timeout(Duration::from_secs(10), &mut t).await {
                Ok(Ok(a)) => self.after[i] = a,
                _ => t.abort(),
            }
        }
        self.rss[3] = server_rss(pids);
    }

    /// The messages sent again: waits for them (at most 10 s), then 1 s more for duplicates.
    async fn wait_copies(&self, copies_in: &AtomicUsize) {
        let copies_expected = (0..self.n)
            .filter(|&i| self.expect_copy[i] && self.res.resumed_ok[i])
            .count();
        if copies_expected > 0 {
            let limit = Instant::now() + Duration::from_secs(10);
            while copies_in.load(Ordering::SeqCst) < copies_expected && Instant::now() < limit {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    /// Reads the resume tasks' reports until all `total` are in or --storm-timeout passes.
    async fn collect(&mut self, total: usize, mut done_rx: mpsc::UnboundedReceiver<StormDone>) {
        let deadline = Instant::now() + Duration::from_secs(self.sh.args.storm_timeout);
        self.res.resumed_ok = vec![false; self.n];
        self.res.lat_us = Vec::with_capacity(total);
        let mut last_print = Instant::now();
        let progress = |r: &Resumptions| {
            let ok = r.lat_us.len();
            eprintln!("  ... {ok} resumed, {} failed of {total}", r.reported - ok);
        };
        while self.res.reported < total {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let wait = left.min(Duration::from_secs(5));
            let d = match tokio::time::timeout(wait, done_rx.recv()).await {
                Ok(Some(d)) => d,
                Ok(None) => break,
                Err(_) => {
                    progress(&self.res);
                    continue;
                }
            };
            self.note(d);
            if last_print.elapsed() > Duration::from_secs(5) {
                last_print = Instant::now();
                progress(&self.res);
            }
        }
    }

    /// Counts one resume task's report.
    fn note(&mut self, d: StormDone) {
        let (args, r) = (&self.sh.args, &mut self.res);
        r.reported += 1;
        r.first_start = Some(r.first_start.map_or(d.start, |f| f.min(d.start)));
        match d.outcome {
            Ok(h) => {
                r.lat_us
                    .push((d.end - d.start).as_micros().min(u32::MAX as u128) as u32);
                r.last_resumed = Some(r.last_resumed.map_or(d.end, |l| l.max(d.end)));
                r.resumed_ok[d.i] = true;
                if h != self.expect_h[d.i] {
                    r.h_mismatch += 1;
                    self.sh.stats.error(format!(
                        "{}: <resumed h='{h}'/>, but {} stanzas were sent",
                        user_name(args, d.i),
                        self.expect_h[d.i]
                    ));
                }
            }
            Err(e) => {
                self.sh
                    .stats
                    .error(format!("resume {}: {e}", user_name(args, d.i)));
                r.failures.add(&e);
            }
        }
    }

    /// Copies of the storm message by session: (exactly once, missing, duplicated or unexpected).
    fn copies(&self) -> (usize, usize, usize) {
        let (mut once, mut missing, mut dup) = (0, 0, 0);
        for i in 0..self.n {
            let c = self.after[i].copies;
            if self.expect_copy[i] && self.res.resumed_ok[i] {
                match c {
                    0 => missing += 1,
                    1 => once += 1,
                    _ => dup += 1,
                }
            } else if c > 0 {
                dup += 1;
            }
        }
        (once, missing, dup)
    }

    /// The timing and CPU fields of the RESULT line.
    fn timing_fields(&self) -> String {
        let ticks = clock_ticks();
        let (res, t_cut) = (&self.res, self.t_cut);
        let resumed = res.lat_us.len();
        let ms = |t: Option<Instant>, from: Instant| t.map(|t| (t - from).as_secs_f64() * 1000.0);
        let storm_ms = ms(res.last_resumed, t_cut);
        let from_first_ms = match (res.first_start, res.last_resumed) {
            (Some(f), Some(l)) => Some((l - f).as_secs_f64() * 1000.0),
            _ => None,
        };
        let first_connect_ms = ms(res.first_start, t_cut);
        let wall_ms = (self.t_done - t_cut).as_secs_f64() * 1000.0;
        let (m0, m1) = (&self.at_cut, &self.at_done);
        let server_ms = cpu_between_ms(&m0.server, &m1.server);
        let tail_ms = cpu_between_ms(&m1.server, &self.tail_cpu);
        let self_ms = ns_diff_ms(m0.gen_ns, m1.gen_ns);
        let other_pct = match (m0.busy, m1.busy, server_ms, self_ms) {
            (Some(b0), Some(b1), Some(s), Some(g)) => {
                let busy = b1.saturating_sub(b0) as f64 / ticks * 1000.0;
                Some((busy - s - g).max(0.0) / wall_ms * 100.0)
            }
            _ => None,
        };
        let pct = |v: Option<f64>| v.map(|v| v / wall_ms * 100.0);
        let lat_us = &res.lat_us;
        format!(
            "storm_ms={} from_first_connect_ms={} first_connect_ms={} all_done_ms={wall_ms:.1} \
             resumes_per_s={} resume_p50_ms={:.2} resume_p90_ms={:.2} resume_p99_ms={:.2} \
             resume_max_ms={:.2} server_cpu_s={} cpu_ms_per_resume={} server_cpu_pct={} \
             gen_cpu_pct={} other_cpu_pct={} tail_cpu_s={}",
            fmt_opt(storm_ms, 1),
            fmt_opt(from_first_ms, 1),
            fmt_opt(first_connect_ms, 2),
            fmt_opt(storm_ms.map(|t| resumed as f64 / t * 1000.0), 0),
            percentile(lat_us, 0.50),
            percentile(lat_us, 0.90),
            percentile(lat_us, 0.99),
            percentile(lat_us, 1.0),
            fmt_opt(server_ms.map(|v| v / 1000.0), 3),
            fmt_opt(
                server_ms
                    .filter(|_| resumed > 0)
                    .map(|v| v / resumed as f64),
                3
            ),
            fmt_opt(pct(server_ms), 0),
            fmt_opt(pct(self_ms), 0),
            fmt_opt(other_pct, 0),
            fmt_opt(tail_ms.map(|v| v / 1000.0), 3),
        )
    }

    /// Prints the RESULT line; an error if a session was lost, failed, timed out, got a wrong
    /// `h`, or its message was missing or duplicated.
    fn result(mut self) -> Res<()> {
        self.res.lat_us.sort_unstable();
        let (args, n, res) = (&self.sh.args, self.n, &self.res);
        let resumed = res.lat_us.len();
        let failed = res.reported - resumed;
        // Every session cut got a resume task; those that did not report timed out.
        let timed_out = self.ready - self.lost_before_cut - res.reported;
        let (msg_once, msg_missing, msg_dup) = self.copies();
        let after_stanzas: u32 = self.after.iter().map(|a| a.stanzas).sum();
        let tcp_delta = |k: usize| match (&self.at_cut.tcp, &self.at_done.tcp) {
            (Some(a), Some(b)) => b[k].saturating_sub(a[k]).to_string(),
            _ => "na".to_string(),
        };
        let errors = self.sh.stats.errors.load(Ordering::Relaxed);
        let h_mismatch = res.h_mismatch;
        let lost_before_cut = self.lost_before_cut;
        println!(
            "RESULT server={} mode=resume-storm sessions={n} ready={} setup_failed={} \
             lost_before_cut={lost_before_cut} concurrency={} delay_ms={} message={} \
             resumed={resumed} failed={failed} timed_out={timed_out} {} rss_start_kib={} \
             rss_before_kib={} rss_after_kib={} rss_end_kib={} h_mismatch={h_mismatch} \
             msg_expected={} msg_before_cut={} msg_once={msg_once} msg_missing={msg_missing} \
             msg_dup={msg_dup} after_resume_stanzas={after_stanzas} listen_overflows={} \
             listen_drops={} syn_retrans={} cut_ms={:.1} setup_s={:.1} failures={} \
             errors={errors}",
            args.label,
            self.ready,
            self.setup_failed,
            args.concurrency.max(1),
            args.storm_delay_ms,
            u8::from(args.storm_message),
            self.timing_fields(),
            fmt_u64(self.rss[0]),
            fmt_u64(self.rss[1]),
            fmt_u64(self.rss[2]),
            fmt_u64(self.rss[3]),
            self.msg_expected,
            self.msg_before_cut,
            tcp_delta(0),
            tcp_delta(1),
            tcp_delta(2),
            self.cut_ms,
            self.setup_s,
            res.failures,
        );
        if failed + timed_out + lost_before_cut > 0 || h_mismatch + msg_missing + msg_dup > 0 {
            return Err(format!(
                "{failed} failed, {timed_out} timed out, {lost_before_cut} lost before the cut, \
                 {h_mismatch} wrong h, {msg_missing} messages missing, {msg_dup} duplicated"
            )
            .into());
        }
        Ok(())
    }
}
