//! The write side of every stream (client sessions, incoming and outgoing s2s links): the
//! actor appends serialised stanzas to an outbox, and a writer task on the same arbiter takes
//! whatever has accumulated and writes it to the socket in one go.
//!
//! It replaces an unbounded channel of strings. tokio's unbounded channel keeps its slots in
//! blocks of 32 (about 800 bytes for `String`s), allocated when the channel is made and again
//! once 32 stanzas have gone through; with 10,000 sessions that was 8 MB at the start and 8 MB
//! more after a few dozen messages each (the one-time step of the soak, `benches/BASELINE.md`).
//! An idle outbox holds no heap memory at all: a stanza written to an empty outbox becomes its
//! buffer, and the writer takes the buffer away whole.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

/// A peer that has not taken our bytes for this long is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(120);

struct Inner {
    buf: Mutex<String>,
    /// Wakes the writer: something was queued, or the sender is gone.
    notify: Notify,
    /// The sender was dropped: the writer writes what is left, then shuts the stream down.
    closed: AtomicBool,
    /// The writer has stopped (the socket failed or was aborted): sends fail.
    gone: AtomicBool,
}

/// The actor's end. Dropping it ends the stream's write side once everything queued is written.
pub struct Sender(Arc<Inner>);

/// The writer task's end.
pub struct Receiver(Arc<Inner>);

/// A new, empty outbox.
pub fn channel() -> (Sender, Receiver) {
    let inner = Arc::new(Inner {
        buf: Mutex::new(String::new()),
        notify: Notify::new(),
        closed: AtomicBool::new(false),
        gone: AtomicBool::new(false),
    });
    (Sender(inner.clone()), Receiver(inner))
}

impl Sender {
    /// Queue `s` for writing; gives it back if the writer has stopped.
    pub fn send(&self, s: String) -> Result<(), String> {
        if self.0.gone.load(Ordering::Acquire) {
            return Err(s);
        }
        {
            let mut buf = self.0.buf.lock().unwrap_or_else(|e| e.into_inner());
            if buf.is_empty() {
                *buf = s;
            } else {
                buf.push_str(&s);
            }
        }
        self.0.notify.notify_one();
        Ok(())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.notify.notify_one();
    }
}

impl Receiver {
    /// Everything queued since the last call, waiting until there is something; `None` once
    /// the sender is gone and everything has been taken.
    pub async fn recv(&mut self) -> Option<String> {
        loop {
            // `closed` first: a send that came before the drop is then in the buffer.
            let closed = self.0.closed.load(Ordering::Acquire);
            {
                let mut buf = self.0.buf.lock().unwrap_or_else(|e| e.into_inner());
                if !buf.is_empty() {
                    return Some(std::mem::take(&mut *buf));
                }
            }
            if closed {
                return None;
            }
            // A notification sent since the check above is kept (Notify stores one permit).
            self.0.notify.notified().await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.0.gone.store(true, Ordering::Release);
        // Free what can no longer be written.
        *self.0.buf.lock().unwrap_or_else(|e| e.into_inner()) = String::new();
    }
}

/// A new outbox and its writer task on the current arbiter, writing to `w`: the sender, the
/// count of bytes queued and not yet written (the sender's user adds what it sends), and the
/// signal that makes the writer drop the connection at once.
pub(crate) fn spawn_writer<W: tokio::io::AsyncWrite + Unpin + 'static>(
    w: W,
) -> (Sender, Arc<AtomicUsize>, Arc<Notify>) {
    let (tx, rx) = channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let abort = Arc::new(Notify::new());
    actix_rt::spawn(write_loop(w, rx, queued.clone(), abort.clone()));
    (tx, queued, abort)
}

/// The writer task: writes what the outbox holds, one `write_all` per batch, until the sender
/// is gone (then shuts the stream down), the peer stops reading for `WRITE_TIMEOUT`, or
/// `abort` fires. `queued` counts the bytes handed to the outbox and not yet written.
async fn write_loop<W: tokio::io::AsyncWrite + Unpin>(
    mut w: W,
    mut rx: Receiver,
    queued: Arc<AtomicUsize>,
    abort: Arc<Notify>,
) {
    while let Some(buf) = rx.recv().await {
        let n = buf.len();
        let write = async {
            w.write_all(buf.as_bytes()).await?;
            w.flush().await
        };
        tokio::select! {
            r = tokio::time::timeout(WRITE_TIMEOUT, write) => match r {
                Ok(Ok(())) => {}
                _ => return,
            },
            _ = abort.notified() => return,
        }
        queued.fetch_sub(n, Ordering::Relaxed);
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), w.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_in_order_and_ends_after_the_sender() {
        let (tx, mut rx) = channel();
        tx.send("<a/>".into()).unwrap();
        tx.send("<b/>".into()).unwrap();
        assert_eq!(rx.recv().await.as_deref(), Some("<a/><b/>"));
        tx.send("<c/>".into()).unwrap();
        drop(tx);
        assert_eq!(rx.recv().await.as_deref(), Some("<c/>"));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn wakes_the_writer_and_fails_once_it_is_gone() {
        let (tx, mut rx) = channel();
        let writer = tokio::spawn(async move {
            let first = rx.recv().await;
            (first, rx)
        });
        tokio::task::yield_now().await;
        tx.send("<x/>".into()).unwrap();
        let (first, rx) = writer.await.unwrap();
        assert_eq!(first.as_deref(), Some("<x/>"));
        drop(rx);
        assert_eq!(tx.send("<y/>".into()), Err("<y/>".to_owned()));
    }

    #[tokio::test]
    async fn writes_everything_then_shuts_down() {
        let (tx, rx) = channel();
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let queued = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(write_loop(
            client,
            rx,
            queued.clone(),
            Arc::new(Notify::new()),
        ));
        for i in 0..100 {
            let s = format!("<m n='{i}'/>");
            queued.fetch_add(s.len(), Ordering::Relaxed);
            tx.send(s).unwrap();
        }
        drop(tx);
        task.await.unwrap();
        let mut got = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut server, &mut got)
            .await
            .unwrap();
        let want: String = (0..100).map(|i| format!("<m n='{i}'/>")).collect();
        assert_eq!(got, want);
        assert_eq!(queued.load(Ordering::Relaxed), 0);
    }
}
