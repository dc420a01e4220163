//! The `delivery_errors` tree: time-ordered log of failed deliveries.
//!
//! Key: arrival time in milliseconds (big-endian u64) + sequence (big-endian u32), so a range
//! scan is chronological and pruning is a prefix-free range removal. Value: `from NUL to NUL
//! reason`. Never the stanza content, never an address of a peer.

use super::StoreError;

/// One logged delivery failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryError {
    /// Milliseconds since the epoch.
    pub time_ms: u64,
    pub from: String,
    pub to: String,
    /// The error condition and a short reason, e.g. `service-unavailable: recipient offline`.
    pub reason: String,
}

impl DeliveryError {
    /// What is kept of a failure at `time_ms`: the bare JIDs (the privacy policy's "from whom
    /// to whom"; resources would tell which device was used), and for `service-unavailable`
    /// the condition alone: its reasons (no such user, recipient offline, blocked by the
    /// recipient, storage full) would show the operator who blocks whom, as the sender's
    /// error does not show it to the sender either.
    pub fn new(time_ms: u64, from: &str, to: &str, reason: &str) -> DeliveryError {
        let bare = |j: &str| crate::xmpp::bare_part(j).to_owned();
        let cond = reason.split(':').next().unwrap_or_default().trim();
        DeliveryError {
            time_ms,
            from: bare(from),
            to: bare(to),
            reason: if cond == "service-unavailable" {
                cond.to_owned()
            } else {
                reason.to_owned()
            },
        }
    }
}

/// Handle on the delivery-error tree.
#[derive(Clone)]
pub struct DeliveryErrors {
    tree: sled::Tree,
    space: std::sync::Arc<super::space::Space>,
}

impl DeliveryErrors {
    pub(super) fn new(tree: sled::Tree, space: std::sync::Arc<super::space::Space>) -> Self {
        DeliveryErrors { tree, space }
    }

    /// Append an entry; `seq` disambiguates entries of the same millisecond.
    pub fn append(&self, e: &DeliveryError, seq: u32) -> Result<(), StoreError> {
        self.space.check()?;
        let mut key = Vec::with_capacity(12);
        key.extend_from_slice(&e.time_ms.to_be_bytes());
        key.extend_from_slice(&seq.to_be_bytes());
        let value = format!("{}\0{}\0{}", e.from, e.to, e.reason);
        self.tree.insert(key, value.as_bytes())?;
        Ok(())
    }

    /// Entries at or after `since_ms`, oldest first, at most `limit`.
    pub fn since(&self, since_ms: u64, limit: usize) -> Result<Vec<DeliveryError>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.range(since_ms.to_be_bytes()..).take(limit) {
            let (k, v) = kv?;
            let time_ms = u64::from_be_bytes(
                k.get(..8)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| StoreError::Corrupt("delivery_errors key".into()))?,
            );
            let s = String::from_utf8_lossy(&v);
            let mut parts = s.splitn(3, '\0');
            out.push(DeliveryError {
                time_ms,
                from: parts.next().unwrap_or_default().to_owned(),
                to: parts.next().unwrap_or_default().to_owned(),
                reason: parts.next().unwrap_or_default().to_owned(),
            });
        }
        Ok(out)
    }

    /// Remove the entries from or to the bare JIDs `jids` (accounts being deleted); returns
    /// how many.
    pub fn forget(&self, jids: &std::collections::HashSet<String>) -> Result<usize, StoreError> {
        if jids.is_empty() {
            return Ok(0);
        }
        let mut n = 0;
        for kv in self.tree.iter() {
            let (k, v) = kv?;
            let s = String::from_utf8_lossy(&v);
            let named = s
                .splitn(3, '\0')
                .take(2)
                .any(|j| jids.contains(crate::xmpp::bare_part(j)));
            if named {
                self.tree.remove(k)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Remove entries older than `before_ms`; returns how many.
    pub fn prune(&self, before_ms: u64) -> Result<usize, StoreError> {
        let mut n = 0;
        for kv in self.tree.range(..before_ms.to_be_bytes()) {
            let (k, _) = kv?;
            self.tree.remove(k)?;
            n += 1;
        }
        Ok(n)
    }
}

/// The log of the last `days` days as text, one line per entry (for `kleiber errors`).
pub fn format_since(store: &super::Store, days: u64) -> Result<String, StoreError> {
    let since = super::now_ms().saturating_sub(days * 86_400_000);
    let mut out = String::new();
    for e in store.delivery_errors.since(since, usize::MAX)? {
        let t = chrono::DateTime::from_timestamp_millis(e.time_ms as i64)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        out.push_str(&format!("{t}  {} -> {}  {}\n", e.from, e.to, e.reason));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_hold_bare_jids_and_no_reason_that_tells_a_block() {
        for why in [
            "blocked by the recipient",
            "recipient offline",
            "no such user",
        ] {
            let e = DeliveryError::new(
                1,
                "a@x/phone",
                "b@x/desk",
                &format!("service-unavailable: {why}"),
            );
            assert_eq!((e.from.as_str(), e.to.as_str()), ("a@x", "b@x"));
            assert_eq!(e.reason, "service-unavailable");
        }
        let e = DeliveryError::new(1, "a@x/r", "b@y", "remote-server-not-found: no route");
        assert_eq!(e.reason, "remote-server-not-found: no route");
    }

    #[test]
    fn append_read_prune() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        let log = &store.delivery_errors;
        for (i, t) in [1000u64, 2000, 3000].iter().enumerate() {
            let e = DeliveryError {
                time_ms: *t,
                from: "a@x/r".into(),
                to: format!("b{i}@x"),
                reason: "service-unavailable: no such user".into(),
            };
            log.append(&e, i as u32).unwrap();
        }
        assert_eq!(log.since(0, 10).unwrap().len(), 3);
        assert_eq!(log.since(2000, 10).unwrap()[0].to, "b1@x");
        assert_eq!(log.prune(2500).unwrap(), 2);
        assert_eq!(log.since(0, 10).unwrap().len(), 1);
    }
}
