//! State shared by the connection tasks of a run: arguments, counters, phases, bound JIDs.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use rand::Rng;
use tokio::sync::{watch, Semaphore};

use crate::cli::*;
use crate::Res;

/// Monotonic clock shared by all connections; message bodies carry microseconds since START.
pub(crate) static START: OnceLock<Instant> = OnceLock::new();

pub(crate) fn now_us() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) bound: AtomicUsize,
    pub(crate) failed: AtomicUsize,
    pub(crate) errors: AtomicU64,
    pub(crate) stale: AtomicU64,
    /// Messages sent minus messages received by their addressee (for draining at the end).
    pub(crate) inflight: AtomicI64,
    /// Only the first few error descriptions are printed.
    pub(crate) error_log: Mutex<Vec<String>>,
}

impl Stats {
    pub(crate) fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut log = self.error_log.lock().unwrap();
        if log.len() < 10 {
            eprintln!("error: {what}");
            log.push(what);
        }
    }
}

/// Phases of the run, broadcast from main to the connection tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Login,
    /// Ping-pong until the deadline; messages received from `start_us` on are measured
    /// (microseconds since START; `start_us` is later than the phase change with --warmup).
    Run {
        start_us: u64,
        deadline_us: u64,
    },
    /// Stop sending; keep reading so messages in flight are not stored offline.
    Drain,
    /// Close the streams.
    Close,
}

pub(crate) struct Shared {
    pub(crate) args: Args,
    pub(crate) stats: Stats,
    pub(crate) tls: SslConnector,
    pub(crate) login_slots: Semaphore,
    /// Full JIDs as bound by the server, by client index.
    pub(crate) jids: Vec<OnceLock<String>>,
    pub(crate) phase: watch::Receiver<Phase>,
    /// Random tag distinguishing this run's messages from stale (offline-stored) ones.
    pub(crate) run_id: u32,
}

impl Shared {
    /// State for `clients` clients (room for their bound JIDs), --concurrency logins at a time,
    /// with a fresh run id; the sender sets the phases (only the throughput modes use them).
    pub(crate) fn new(args: &Args, clients: usize) -> Res<(Arc<Shared>, watch::Sender<Phase>)> {
        let mut tls = SslConnector::builder(SslMethod::tls_client())?;
        tls.set_verify(SslVerifyMode::NONE);
        let (phase_tx, phase) = watch::channel(Phase::Login);
        let sh = Arc::new(Shared {
            stats: Stats::default(),
            tls: tls.build(),
            login_slots: Semaphore::new(args.concurrency.max(1)),
            jids: (0..clients).map(|_| OnceLock::new()).collect(),
            phase,
            run_id: rand::thread_rng().gen(),
            args: args.clone(),
        });
        Ok((sh, phase_tx))
    }
}

/// Waits until every client is bound or failed, or the login timeout passes.
pub(crate) async fn wait_logins(sh: &Shared, total: usize) -> bool {
    let limit = Instant::now() + Duration::from_secs(sh.args.login_timeout);
    let mut last_print = Instant::now();
    loop {
        let b = sh.stats.bound.load(Ordering::SeqCst);
        let f = sh.stats.failed.load(Ordering::SeqCst);
        if b + f >= total {
            return true;
        }
        if Instant::now() > limit {
            eprintln!("login timeout: {b} bound, {f} failed of {total}");
            return false;
        }
        if last_print.elapsed() > Duration::from_secs(5) {
            eprintln!("  ... {b} bound, {f} failed of {total}");
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
