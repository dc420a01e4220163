//! The scheduler: periodic jobs and the delivery-error log.
//!
//! It is the only writer of the `delivery_errors` tree: each failed delivery becomes one entry
//! (time, from, to, reason; never content, never an address) and one `info` log line, and
//! entries older than the retention period are pruned hourly. Inactive-account deletion and
//! snapshots join here with issue #4.

use std::time::Duration;

use actix::prelude::*;

use super::messages::LogDeliveryError;
use crate::store::{DeliveryError, DeliveryErrors};

/// How often old delivery-error entries are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The scheduler actor.
pub struct Scheduler {
    log: DeliveryErrors,
    retention: Duration,
    /// Disambiguates entries within one millisecond.
    seq: u32,
}

impl Scheduler {
    pub fn new(log: DeliveryErrors, retention: Duration) -> Scheduler {
        Scheduler {
            log,
            retention,
            seq: 0,
        }
    }

    fn prune(&mut self) {
        let now = now_ms();
        let cutoff = now.saturating_sub(self.retention.as_millis() as u64);
        match self.log.prune(cutoff) {
            Ok(0) => {}
            Ok(n) => log::info!("scheduler: pruned {n} delivery-error entries"),
            Err(e) => log::error!("scheduler: pruning the delivery-error log failed: {e}"),
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.prune();
        ctx.run_interval(PRUNE_EVERY, |act, _| act.prune());
    }
}

impl Handler<LogDeliveryError> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: LogDeliveryError, _: &mut Context<Self>) {
        log::info!(
            "delivery failed: {} -> {}: {}",
            msg.from,
            msg.to,
            msg.reason
        );
        self.seq = self.seq.wrapping_add(1);
        let entry = DeliveryError {
            time_ms: now_ms(),
            from: msg.from,
            to: msg.to,
            reason: msg.reason,
        };
        if let Err(e) = self.log.append(&entry, self.seq) {
            log::error!("scheduler: cannot write the delivery-error log: {e}");
        }
    }
}
