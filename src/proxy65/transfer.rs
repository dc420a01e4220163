//! One activated transfer: the bytes of each side copied to the other, through a token bucket
//! for the transfer and one shared by all transfers of the initiator's account, counted
//! against the size limit, and ended when nothing moves for the idle timeout. The payload is
//! only ever in the copy buffers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Copy buffer of each direction.
const BUFFER: usize = 64 * 1024;

/// A token bucket: `rate` bytes per second, up to one second's worth saved up. Taking more
/// than there is leaves a debt that the taker sleeps off.
#[derive(Debug)]
pub struct Bucket {
    /// Bytes per second; 0: no limit.
    rate: u64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(rate: u64) -> Bucket {
        Bucket {
            rate,
            tokens: rate as f64,
            last: Instant::now(),
        }
    }

    /// Take `n` bytes at `now`; returns how long to wait before sending them.
    pub fn take(&mut self, n: usize, now: Instant) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let rate = self.rate as f64;
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(rate) - n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate)
        }
    }
}

/// The limits of one transfer, shared by its two directions.
pub struct Limits {
    /// This transfer's bucket.
    pub own: Mutex<Bucket>,
    /// The account's bucket, shared with its other transfers.
    pub account: Arc<Mutex<Bucket>>,
    /// Bytes the transfer may move, both directions together.
    pub max_bytes: u64,
    /// Nothing moved for this long ends the transfer.
    pub idle: Duration,
}

/// How a transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides closed their sending direction.
    Done,
    /// A side failed or reset.
    Broken,
    /// The size limit was reached.
    TooLarge,
    /// Nothing moved for the idle timeout.
    Idle,
    /// The server shuts down.
    Shutdown,
}

/// What the two directions share while running.
struct Progress<'a> {
    limits: &'a Limits,
    started: Instant,
    /// Bytes moved so far.
    moved: AtomicU64,
    /// Milliseconds from `started` to the last movement.
    last: AtomicU64,
    /// Largest read, so that a throttled chunk never waits much longer than a second.
    chunk: usize,
}

impl Progress<'_> {
    fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }

    /// Time since the last movement.
    fn quiet(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Count `n` more bytes: how long to wait before passing them on, or `None` when they
    /// would cross the size limit.
    fn admit(&self, n: usize) -> Option<Duration> {
        let before = self.moved.fetch_add(n as u64, Ordering::Relaxed);
        if before + n as u64 > self.limits.max_bytes {
            return None;
        }
        let now = Instant::now();
        let own = lock(&self.limits.own).take(n, now);
        let account = lock(&self.limits.account).take(n, now);
        Some(own.max(account))
    }
}

fn lock(b: &Mutex<Bucket>) -> std::sync::MutexGuard<'_, Bucket> {
    b.lock().unwrap_or_else(|p| p.into_inner())
}

/// Relay between `target` and `initiator` until both are done, one breaks, a limit is
/// reached or `shutdown` fires. Returns how it ended and the bytes moved.
pub async fn run(
    mut target: TcpStream,
    mut initiator: TcpStream,
    limits: &Limits,
    shutdown: impl std::future::Future<Output = ()>,
) -> (End, u64) {
    let _ = target.set_nodelay(true);
    let _ = initiator.set_nodelay(true);
    let rates = [lock(&limits.own).rate, lock(&limits.account).rate];
    let slowest = rates.into_iter().filter(|r| *r > 0).min();
    let p = Progress {
        limits,
        started: Instant::now(),
        moved: AtomicU64::new(0),
        last: AtomicU64::new(0),
        chunk: slowest.map_or(BUFFER, |r| (r as usize).clamp(1024, BUFFER)),
    };
    let (mut tr, mut tw) = target.split();
    let (mut ir, mut iw) = initiator.split();
    let both = async { tokio::try_join!(pump(&mut ir, &mut tw, &p), pump(&mut tr, &mut iw, &p)) };
    let end = tokio::select! {
        r = both => match r {
            Ok(_) => End::Done,
            Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => End::TooLarge,
            Err(_) => End::Broken,
        },
        _ = idle(&p) => End::Idle,
        _ = shutdown => End::Shutdown,
    };
    (end, p.moved.load(Ordering::Relaxed).min(limits.max_bytes))
}

/// Copy `r` to `w` until `r` ends (then end `w`'s direction too).
async fn pump<R, W>(r: &mut R, w: &mut W, p: &Progress<'_>) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; p.chunk];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return w.shutdown().await;
        }
        p.touch();
        let Some(wait) = p.admit(n) else {
            return Err(std::io::ErrorKind::FileTooLarge.into());
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        w.write_all(&buf[..n]).await?;
        p.touch();
    }
}

/// Resolves once nothing has moved for the idle timeout.
async fn idle(p: &Progress<'_>) {
    loop {
        let quiet = p.quiet();
        if quiet >= p.limits.idle {
            return;
        }
        tokio::time::sleep(p.limits.idle - quiet).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_lets_a_second_through_then_makes_the_sender_wait() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1000);
        assert_eq!(b.take(1000, t0), Duration::ZERO);
        assert_eq!(b.take(500, t0), Duration::from_millis(500));
        // Half a second later the debt is paid, and no more.
        let w = b.take(100, t0 + Duration::from_millis(500));
        assert!((w.as_secs_f64() - 0.1).abs() < 1e-6, "{w:?}");
        // Saved tokens stop at one second's worth.
        assert_eq!(b.take(1000, t0 + Duration::from_secs(60)), Duration::ZERO);
        assert!(b.take(1, t0 + Duration::from_secs(60)) > Duration::ZERO);
        let mut free = Bucket::new(0);
        assert_eq!(free.take(usize::MAX, t0), Duration::ZERO);
    }
}
