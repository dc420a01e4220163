//! The `offline` tree: messages kept for users who were offline when they arrived.
//!
//! Key: `domain NUL user NUL seq` (seq big-endian, from sled's monotonic id generator, so a
//! prefix scan is oldest first). Value: [`Stored`] (JSON: arrival time and the stanza's XML).
//! The `offline_meta` tree keeps each user's count and bytes for the quota. Written only by
//! the spool actor; a message is removed as soon as it has been handed to the user.

use serde::{Deserialize, Serialize};

use super::{account_key, StoreError};

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// Record format version.
    pub v: u32,
    /// Arrival time, milliseconds since the epoch (XEP-0203 stamp at delivery).
    pub ts_ms: u64,
    /// The stanza as re-serialised by the server.
    pub xml: String,
}

/// Per-user count and size, for the quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub count: u64,
    pub bytes: u64,
}

/// Handles on the offline trees.
#[derive(Clone)]
pub struct Offline {
    db: sled::Db,
    items: sled::Tree,
    meta: sled::Tree,
    space: std::sync::Arc<super::space::Space>,
}

fn prefix(domain: &str, user: &str) -> Vec<u8> {
    let mut k = account_key(domain, user);
    k.push(0);
    k
}

impl Offline {
    pub(super) fn new(
        db: sled::Db,
        items: sled::Tree,
        meta: sled::Tree,
        space: std::sync::Arc<super::space::Space>,
    ) -> Self {
        Offline {
            db,
            items,
            meta,
            space,
        }
    }

    /// The user's current usage.
    pub fn usage(&self, domain: &str, user: &str) -> Result<Usage, StoreError> {
        Ok(match self.meta.get(account_key(domain, user))? {
            Some(v) => serde_json::from_slice(&v)
                .map_err(|e| StoreError::Corrupt(format!("offline meta: {e}")))?,
            None => Usage::default(),
        })
    }

    fn set_usage(&self, domain: &str, user: &str, u: Usage) -> Result<(), StoreError> {
        let k = account_key(domain, user);
        if u.count == 0 {
            self.meta.remove(k)?;
        } else {
            self.meta
                .insert(k, serde_json::to_vec(&u).expect("usage serialises"))?;
        }
        Ok(())
    }

    /// Store a message; durable within the store's flush window.
    pub fn push(
        &self,
        domain: &str,
        user: &str,
        ts_ms: u64,
        xml: String,
    ) -> Result<(), StoreError> {
        self.space.check()?;
        let mut k = prefix(domain, user);
        k.extend_from_slice(&self.db.generate_id()?.to_be_bytes());
        let bytes = xml.len() as u64;
        let rec = Stored { v: 1, ts_ms, xml };
        self.items.insert(
            k,
            serde_json::to_vec(&rec).expect("offline record serialises"),
        )?;
        let mut u = self.usage(domain, user)?;
        u.count += 1;
        u.bytes += bytes;
        self.set_usage(domain, user, u)
    }

    /// Every stored message of the user, oldest first, removed from the store.
    pub fn take_all(&self, domain: &str, user: &str) -> Result<Vec<Stored>, StoreError> {
        Ok(self.take_chunk(domain, user, usize::MAX)?.0)
    }

    /// The oldest stored messages, about `max_bytes` of them (at least one), removed from the
    /// store; `true` when more are left.
    pub fn take_chunk(
        &self,
        domain: &str,
        user: &str,
        max_bytes: usize,
    ) -> Result<(Vec<Stored>, bool), StoreError> {
        let p = prefix(domain, user);
        let mut out = Vec::new();
        let (mut bytes, mut count) = (0usize, 0u64);
        let mut more = false;
        for kv in self.items.scan_prefix(&p) {
            let (k, v) = kv?;
            if !out.is_empty() && bytes + v.len() > max_bytes {
                more = true;
                break;
            }
            bytes += v.len();
            count += 1;
            match serde_json::from_slice::<Stored>(&v) {
                Ok(rec) => out.push(rec),
                Err(e) => log::error!("dropping a corrupt offline record: {e}"),
            }
            self.items.remove(k)?;
        }
        let mut u = self.usage(domain, user)?;
        if more {
            u.count = u.count.saturating_sub(count);
            u.bytes = u
                .bytes
                .saturating_sub(out.iter().map(|r| r.xml.len() as u64).sum());
        } else {
            u = Usage::default();
        }
        self.set_usage(domain, user, u)?;
        Ok((out, more))
    }

    /// Remove everything of an account.
    pub fn remove_account(&self, domain: &str, user: &str) -> Result<(), StoreError> {
        self.take_all(domain, user).map(|_| ())
    }

    /// Messages waiting on all hosts.
    pub fn total(&self) -> usize {
        self.items.len()
    }
}
