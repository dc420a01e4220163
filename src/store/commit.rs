//! Group commit: a caller that must not answer before its writes are on disk (an IQ result,
//! a stream-management ack) awaits [`GroupCommit::durable`]. One fsync covers every caller
//! waiting when it starts; callers that arrive meanwhile share the next one. Under load the
//! cost is one fsync per batch, not per write, and a lone caller waits one fsync.
//!
//! The flushing runs on the blocking pool and holds the database only while it flushes, so
//! dropping the store still closes it.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::StoreError;

#[derive(Default)]
struct Queue {
    waiting: Vec<oneshot::Sender<Result<(), String>>>,
    /// A flusher is running (it takes the queue again before it stops).
    running: bool,
}

#[derive(Clone, Default)]
pub struct GroupCommit {
    queue: Arc<Mutex<Queue>>,
}

impl GroupCommit {
    /// Resolves once everything written to `db` before the call is durable.
    /// A failed flush leaves sled refusing writes until a restart: `space` is told, so that
    /// new writes get a clear refusal instead of a failure each.
    pub fn durable(
        &self,
        db: &sled::Db,
        space: &Arc<super::space::Space>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.waiting.push(tx);
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            let queue = self.queue.clone();
            let db = db.clone();
            let space = space.clone();
            tokio::task::spawn_blocking(move || flusher(&queue, &db, &space));
        }
        async move {
            match rx.await {
                Ok(r) => r.map_err(StoreError::Db),
                Err(_) => Err(StoreError::Db("flush abandoned".into())),
            }
        }
    }
}

fn flusher(queue: &Mutex<Queue>, db: &sled::Db, space: &super::space::Space) {
    loop {
        let batch = {
            let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
            if q.waiting.is_empty() {
                q.running = false;
                return;
            }
            std::mem::take(&mut q.waiting)
        };
        let result = db.flush().map(|_| ()).map_err(|e| {
            let e = StoreError::from(e);
            space.broken(&e);
            e.to_string()
        });
        for tx in batch {
            let _ = tx.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_waiters_share_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open_with(dir.path(), 10_000).unwrap();
        let mut waits = Vec::new();
        for i in 0..200u32 {
            store
                .client_data
                .set_vcard("x", &format!("u{i}"), "<vCard xmlns='vcard-temp'/>")
                .unwrap();
            waits.push(tokio::spawn(store.durable()));
        }
        for w in waits {
            w.await.unwrap().unwrap();
        }
    }
}
