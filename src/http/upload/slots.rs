//! Upload slots, in memory only: what the upload service (`actors/upload.rs`) handed out and
//! the `PUT` handler accepts. A slot is open for [`SLOT_LIFETIME`]; while its `PUT` runs it is
//! busy (one `PUT` per slot, at most `upload.max_concurrent_per_account` per account); a
//! completed upload closes it, a failed one opens it again until it expires. Slots of deleted
//! accounts are forgotten. Nothing here outlives a restart: a client whose slot is gone asks
//! for a new one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a slot may wait for its `PUT`.
pub const SLOT_LIFETIME: Duration = Duration::from_secs(300);
/// Open slots one account may hold at once.
pub const MAX_OPEN_SLOTS: usize = 20;

/// What a slot allows: one file of exactly this size and type, by this account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The owner's host and user name.
    pub domain: String,
    pub user: String,
    /// The file name in the URL (sanitised).
    pub filename: String,
    pub size: u64,
    /// The announced content type (`None`: the client gave none).
    pub content_type: Option<String>,
    /// The secret the `PUT` must carry in its `Authorization` header.
    pub put_secret: String,
}

struct Entry {
    slot: Slot,
    expires: Instant,
    busy: bool,
}

/// Why a `PUT` may not start.
#[derive(Debug, PartialEq, Eq)]
pub enum BeginError {
    /// No such open slot (unknown, expired, used, or another name).
    NotFound,
    /// Its `PUT` runs already.
    Busy,
    /// The account has `max_concurrent_per_account` uploads running.
    TooMany,
}

/// Every open slot, by token. Cheap to clone.
#[derive(Clone, Default)]
pub struct Slots(Arc<Mutex<HashMap<String, Entry>>>);

/// A running `PUT`: dropped without [`Uploading::done`] the slot opens again.
pub struct Uploading {
    slots: Slots,
    token: String,
    pub slot: Slot,
    done: bool,
}

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes held by the open slots of `domain`/`user`, and how many there are (expired ones
    /// are dropped first).
    pub fn pending(&self, domain: &str, user: &str) -> (u64, usize) {
        let mut m = self.lock();
        let now = Instant::now();
        m.retain(|_, e| e.busy || e.expires > now);
        m.values()
            .filter(|e| e.slot.domain == domain && e.slot.user == user)
            .fold((0, 0), |(b, n), e| (b + e.slot.size, n + 1))
    }

    /// Open a slot under `token`.
    pub fn open(&self, token: String, slot: Slot) {
        let expires = Instant::now() + SLOT_LIFETIME;
        self.lock().insert(
            token,
            Entry {
                slot,
                expires,
                busy: false,
            },
        );
    }

    /// Start the `PUT` of `token` for `filename`; at most `max_running` per account.
    pub fn begin(
        &self,
        token: &str,
        filename: &str,
        max_running: usize,
    ) -> Result<Uploading, BeginError> {
        let mut m = self.lock();
        let slot = match m.get(token) {
            Some(e) if e.slot.filename == filename && e.expires > Instant::now() => {
                if e.busy {
                    return Err(BeginError::Busy);
                }
                e.slot.clone()
            }
            _ => return Err(BeginError::NotFound),
        };
        let running = m
            .values()
            .filter(|e| e.busy && e.slot.domain == slot.domain && e.slot.user == slot.user)
            .count();
        if running >= max_running {
            return Err(BeginError::TooMany);
        }
        if let Some(e) = m.get_mut(token) {
            e.busy = true;
        }
        Ok(Uploading {
            slots: self.clone(),
            token: token.to_owned(),
            slot,
            done: false,
        })
    }

    /// Forget the slots of a deleted account.
    pub fn forget_account(&self, domain: &str, user: &str) {
        self.lock()
            .retain(|_, e| !(e.slot.domain == domain && e.slot.user == user));
    }
}

impl Uploading {
    /// The file is stored: the slot is used up.
    pub fn done(mut self) {
        self.done = true;
        self.slots.lock().remove(&self.token);
    }
}

impl Drop for Uploading {
    fn drop(&mut self) {
        if !self.done {
            if let Some(e) = self.slots.lock().get_mut(&self.token) {
                e.busy = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(user: &str) -> Slot {
        Slot {
            domain: "x".into(),
            user: user.into(),
            filename: "f.txt".into(),
            size: 5,
            content_type: None,
            put_secret: "s".into(),
        }
    }

    #[test]
    fn one_put_per_slot_and_a_limit_per_account() {
        let s = Slots::default();
        s.open("a".into(), slot("alice"));
        s.open("b".into(), slot("alice"));
        s.open("c".into(), slot("bob"));
        assert_eq!(s.pending("x", "alice"), (10, 2));
        assert_eq!(s.begin("a", "g.txt", 1).err(), Some(BeginError::NotFound));
        let up = s.begin("a", "f.txt", 1).unwrap();
        assert_eq!(s.begin("a", "f.txt", 1).err(), Some(BeginError::Busy));
        assert_eq!(s.begin("b", "f.txt", 1).err(), Some(BeginError::TooMany));
        assert!(s.begin("c", "f.txt", 1).is_ok(), "bob has his own limit");
        drop(up);
        let up = s
            .begin("a", "f.txt", 1)
            .expect("a failed PUT opens the slot again");
        up.done();
        assert_eq!(s.begin("a", "f.txt", 1).err(), Some(BeginError::NotFound));
        s.forget_account("x", "alice");
        assert_eq!(s.pending("x", "alice"), (0, 0));
    }
}
