//! Connections driven by pump tasks (roster, offline and soak modes).
//!
//! Every connection is driven by a pump task that writes what it is given (coalescing queued
//! stanzas into one write), answers IQ requests (roster pushes, pings) and forwards every
//! element it reads, stamped with its arrival time, to one controller.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::client::*;
use crate::shared::*;
use crate::xml::*;
use crate::{BoxError, Res};

pub(crate) type Tls = Xmpp<Conn>;

/// --trace, for `Link::send`.
pub(crate) static TRACE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What a pump task reports to the controller.
pub(crate) enum Ev {
    El { id: usize, at: Instant, el: String },
    Down { id: usize, why: String },
}

/// A logged-in connection run by a pump task. Dropping the sender (`close`) closes the stream.
pub(crate) struct Link {
    pub(crate) tx: Option<mpsc::UnboundedSender<String>>,
    pub(crate) task: tokio::task::JoinHandle<()>,
    /// Full JID as bound.
    pub(crate) jid: String,
}

impl Link {
    pub(crate) fn spawn(x: Tls, jid: String, id: usize, evs: &mpsc::UnboundedSender<Ev>) -> Link {
        Link::spawn_with(x, jid, id, evs, 1 << 16)
    }

    /// Like `spawn`; what is queued is coalesced into writes of up to `max_write` bytes (1: one
    /// write, and so one TLS record of up to 16 KiB, per `send`).
    pub(crate) fn spawn_with(
        x: Tls,
        jid: String,
        id: usize,
        evs: &mpsc::UnboundedSender<Ev>,
        max_write: usize,
    ) -> Link {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(pump(x, id, rx, evs.clone(), max_write));
        Link {
            tx: Some(tx),
            task,
            jid,
        }
    }

    pub(crate) fn send(&self, s: String) {
        if TRACE.load(Ordering::Relaxed) {
            eprintln!("trace {} -> {s}", self.jid);
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(s);
        }
    }

    pub(crate) fn close(&mut self) {
        self.tx = None;
    }
}

pub(crate) async fn pump(
    mut x: Tls,
    id: usize,
    mut rx: mpsc::UnboundedReceiver<String>,
    evs: mpsc::UnboundedSender<Ev>,
    max_write: usize,
) {
    let why = loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(mut s) => {
                    while s.len() < max_write {
                        match rx.try_recv() {
                            Ok(more) => s.push_str(&more),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = x.send(&s).await {
                        break format!("write: {e}");
                    }
                }
                None => {
                    // Closed by the controller: end the stream, wait briefly for the server's end.
                    x.close(Duration::from_secs(5)).await;
                    return;
                }
            },
            ev = x.next() => match ev {
                Ok(Event::Element(e)) => {
                    let at = Instant::now();
                    if elem_name(&e) == "iq" {
                        if let Err(err) = answer_iq(&mut x, &e).await {
                            break format!("write: {err}");
                        }
                    }
                    if evs.send(Ev::El { id, at, el: e }).is_err() {
                        return;
                    }
                }
                Ok(Event::StreamEnd) => break "stream closed by server".into(),
                Ok(Event::StreamHeader) => break "unexpected stream header".into(),
                Err(e) => break e.to_string(),
            }
        }
    };
    let _ = evs.send(Ev::Down { id, why });
}

pub(crate) fn bare(jid: &str) -> &str {
    jid.split('/').next().unwrap_or(jid)
}

/// Counts error stanzas and stream errors in `e`; true if it was one.
pub(crate) fn note_error(sh: &Shared, who: &str, e: &str) -> bool {
    let name = elem_name(e);
    if name == "stream:error" {
        sh.stats
            .error(format!("{who}: stream error: {}", error_condition(e)));
        return true;
    }
    if matches!(name, "iq" | "message" | "presence") && attr(e, "type") == Some("error") {
        sh.stats
            .error(format!("{who}: {name} error: {}", error_condition(e)));
        return true;
    }
    false
}

/// Logs `users` in, at most --concurrency at a time, with initial presence; in order. Counts
/// them in `stats.bound` and `stats.failed` (progress every 5 s); logins not done within
/// --login-timeout fail.
pub(crate) async fn login_all(
    sh: &Arc<Shared>,
    users: &[String],
    register_first: bool,
) -> Vec<Res<(Tls, String)>> {
    let limit = tokio::time::Instant::now() + Duration::from_secs(sh.args.login_timeout);
    let handles: Vec<_> = users
        .iter()
        .map(|u| {
            let sh = sh.clone();
            let u = u.clone();
            tokio::spawn(async move {
                let r = tokio::time::timeout_at(limit, async {
                    let _permit = sh.login_slots.acquire().await.expect("semaphore open");
                    login_as(&sh, &u, &sh.args.resource, register_first, true).await
                })
                .await
                .unwrap_or_else(|_| Err("not done within --login-timeout".into()));
                let count = if r.is_ok() {
                    &sh.stats.bound
                } else {
                    &sh.stats.failed
                };
                count.fetch_add(1, Ordering::SeqCst);
                r.map_err(|e| -> BoxError { format!("login {u}: {e}").into() })
            })
        })
        .collect();
    wait_logins(sh, users.len()).await;
    let mut out = Vec::with_capacity(users.len());
    for h in handles {
        out.push(match h.await {
            Ok(r) => r,
            Err(e) => Err(format!("login task: {e}").into()),
        });
    }
    out
}
