//! The scheduler: the delivery-error log and the periodic jobs that keep the privacy policy.
//!
//! - The delivery-error log: the only writer of the `delivery_errors` tree; each failed
//!   delivery becomes one entry (time, bare from and to, reason; never content, never an
//!   address) and one `info` log line without JIDs (they are at `debug`); entries older
//!   than `delivery_errors.retention_days` are pruned at start and hourly.
//! - Inactive accounts: every `accounts.cleanup_interval_hours`, accounts not seen for
//!   `accounts.delete_inactive_after_days` are deleted with everything stored for them, after
//!   their contacts were unsubscribed (count at `info`, each JID at `debug`); expired name
//!   blocks are forgotten.
//! - The message archive (XEP-0313): messages older than `archive.retention_days` are deleted
//!   at start and hourly (on the blocking pool); with the archive switched off, all of them.
//! - Uploaded files (XEP-0363): files older than `upload.expire_after_days` are deleted with
//!   their records at start and hourly (on the blocking pool), also with uploads switched off.
//! - Snapshots: every `snapshots.interval_hours` a snapshot of all data is written to the
//!   snapshot directory (on the blocking pool). Snapshots older than `snapshots.keep_days` and
//!   `.tmp` files left by an interrupted snapshot are deleted at start and hourly, also with
//!   snapshots switched off and across restarts.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::account;
use super::messages::{Barrier, LogDeliveryError, WireScheduler};
use crate::shared::Shared;
use crate::store::{now_secs, DeliveryError};
use crate::xmpp::BareJid;

/// How often old delivery-error entries and snapshots are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// A snapshot's `.tmp` file untouched for this long belongs to no running snapshot.
const TMP_STALE: Duration = Duration::from_secs(3600);

/// The scheduler actor.
pub struct Scheduler {
    shared: Arc<Shared>,
    /// Disambiguates entries within one millisecond.
    seq: u32,
    /// Set by [`WireScheduler`] once the roster store and router exist.
    accounts: Option<account::Live>,
}

impl Scheduler {
    pub fn new(shared: Arc<Shared>) -> Scheduler {
        Scheduler {
            shared,
            seq: 0,
            accounts: None,
        }
    }

    /// The hourly retention job: delivery-error entries, snapshots and uploaded files.
    fn prune(&mut self, ctx: &mut Context<Self>) {
        let dir = self.shared.config.snapshot_dir();
        let keep = Duration::from_secs(self.shared.config.snapshots.keep_days * 86_400);
        ctx.spawn(crate::shared::blocking(move || prune_snapshots(&dir, keep)).into_actor(self));
        let (shared, days) = (
            self.shared.clone(),
            self.shared.config.upload.expire_after_days,
        );
        ctx.spawn(crate::shared::blocking(move || expire_uploads(&shared, days)).into_actor(self));
        let shared = self.shared.clone();
        ctx.spawn(crate::shared::blocking(move || prune_archive(&shared)).into_actor(self));
        let retention = self.shared.config.delivery_errors.retention_days * 86_400_000;
        let cutoff = crate::store::now_ms().saturating_sub(retention);
        match self.shared.store.delivery_errors.prune(cutoff) {
            Ok(0) => {}
            Ok(n) => log::info!("scheduler: pruned {n} delivery-error entries"),
            Err(e) => log::error!("scheduler: pruning the delivery-error log failed: {e}"),
        }
    }

    /// Delete accounts unused for longer than the configured age.
    fn delete_inactive(&mut self, ctx: &mut Context<Self>) {
        match self.shared.store.prune_tombstones() {
            Ok(0) | Err(_) => {}
            Ok(n) => log::debug!("scheduler: {n} name blocks expired"),
        }
        let days = self.shared.config.accounts.delete_inactive_after_days;
        if days == 0 {
            return;
        }
        let cutoff = now_secs().saturating_sub(days * 86_400);
        let accounts = match self.shared.store.accounts.all() {
            Ok(a) => a,
            Err(e) => return log::error!("scheduler: cannot list accounts: {e}"),
        };
        let stale: Vec<BareJid> = accounts
            .into_iter()
            .filter(|(_, _, r)| r.last_login.max(r.last_logout) < cutoff)
            .filter_map(|(d, u, _)| BareJid::new(&format!("{u}@{d}")).ok())
            .collect();
        if stale.is_empty() {
            return;
        }
        let (shared, live) = (self.shared.clone(), self.accounts.clone());
        let job = async move {
            match account::delete(&shared.store, live.as_ref(), stale).await {
                Ok(n) => {
                    log::info!("scheduler: deleted {n} accounts inactive for more than {days} days")
                }
                Err(e) => log::error!("scheduler: deleting inactive accounts failed: {e}"),
            }
        };
        ctx.spawn(job.into_actor(self));
    }

    /// Write a snapshot and delete the expired ones.
    fn snapshot(&mut self, ctx: &mut Context<Self>) {
        let shared = self.shared.clone();
        let job = async move {
            let dir = shared.config.snapshot_dir();
            let keep = Duration::from_secs(shared.config.snapshots.keep_days * 86_400);
            let result = crate::shared::blocking(move || -> Result<std::path::PathBuf, String> {
                crate::store::create_private_dir(&dir)
                    .map_err(|e| format!("{}: {e}", dir.display()))?;
                // Expired ones go first: that may be the space the new one needs.
                prune_snapshots(&dir, keep);
                // No copy of everything while the disk is short of space (storage.min_free_mb).
                shared.store.space.check().map_err(|e| e.to_string())?;
                let name = chrono::Utc::now()
                    .format("kleiber-%Y%m%d-%H%M%S.snap")
                    .to_string();
                let path = dir.join(name);
                shared.store.snapshot(&path).map_err(|e| e.to_string())?;
                Ok(path)
            })
            .await;
            match result {
                Ok(p) => log::info!("scheduler: snapshot written to {}", p.display()),
                Err(e) => log::error!("scheduler: snapshot failed: {e}"),
            }
        };
        ctx.spawn(job.into_actor(self));
    }
}

/// Delete the uploaded files older than `days` (and their records).
pub fn expire_uploads(shared: &Shared, days: u64) {
    let cutoff = now_secs().saturating_sub(days.saturating_mul(86_400));
    match shared.store.uploads.expire(cutoff) {
        Ok(0) => {}
        Ok(n) => log::info!("scheduler: deleted {n} uploaded files older than {days} days"),
        Err(e) => log::error!("scheduler: deleting expired uploads failed: {e}"),
    }
}

/// Delete archived messages older than `archive.retention_days`; all of them when the archive
/// is off (the privacy page then promises none are kept).
pub fn prune_archive(shared: &Shared) {
    let cutoff = match shared.config.archive.retention() {
        Some(days) => crate::store::now_ms().saturating_sub(days.saturating_mul(86_400_000)),
        None => u64::MAX >> 16,
    };
    match shared.store.archive.prune(cutoff) {
        Ok(0) => {}
        Ok(n) => log::info!("scheduler: deleted {n} archived messages past their retention"),
        Err(e) => log::error!("scheduler: pruning the message archive failed: {e}"),
    }
}

/// Delete `kleiber-*.snap` files in `dir` older than `keep`, and `kleiber-*.tmp` files of
/// interrupted snapshots (untouched for [`TMP_STALE`]).
pub fn prune_snapshots(dir: &std::path::Path, keep: Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let max_age = match name.strip_prefix("kleiber-") {
            Some(n) if n.ends_with(".snap") => keep,
            Some(n) if n.ends_with(".tmp") => TMP_STALE,
            _ => continue,
        };
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > max_age);
        if old && std::fs::remove_file(e.path()).is_ok() {
            log::info!("scheduler: deleted expired snapshot file {name}");
        }
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.prune(ctx);
        ctx.run_interval(PRUNE_EVERY, |act, ctx| act.prune(ctx));
    }
}

impl Handler<WireScheduler> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: WireScheduler, ctx: &mut Context<Self>) {
        self.accounts = Some(msg.accounts);
        let shared = self.shared.clone();
        let cfg = &shared.config;
        let cleanup = Duration::from_secs(cfg.accounts.cleanup_interval_hours * 3600);
        self.delete_inactive(ctx);
        ctx.run_interval(cleanup, |act, ctx| act.delete_inactive(ctx));
        if cfg.snapshots.interval_hours > 0 {
            let every = Duration::from_secs(cfg.snapshots.interval_hours * 3600);
            ctx.run_interval(every, |act, ctx| act.snapshot(ctx));
        }
    }
}

impl Handler<LogDeliveryError> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: LogDeliveryError, _: &mut Context<Self>) {
        self.seq = self.seq.wrapping_add(1);
        let entry = DeliveryError::new(crate::store::now_ms(), &msg.from, &msg.to, &msg.reason);
        // Who -> whom only at debug: at info the log is no record of who writes to whom.
        log::info!("delivery failed: {}", entry.reason);
        log::debug!(
            "delivery failed: {} -> {}: {}",
            entry.from,
            entry.to,
            entry.reason
        );
        match self.shared.store.delivery_errors.append(&entry, self.seq) {
            Ok(()) => {}
            // Disk full: logged once by the space guard; the entry is in the debug line above.
            Err(crate::store::StoreError::Full(_)) => {}
            Err(e) => log::error!("scheduler: cannot write the delivery-error log: {e}"),
        }
    }
}

impl Handler<Barrier> for Scheduler {
    type Result = ();
    fn handle(&mut self, _: Barrier, _: &mut Context<Self>) {}
}
