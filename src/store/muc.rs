//! The `muc` tree: group-chat rooms that outlive their occupants (XEP-0045 persistent rooms).
//!
//! `room bare JID` -> JSON [`RoomRecord`]: the configuration, the affiliations (bare JIDs of
//! owners, admins, members and outcasts), the subject and when the room was last entered.
//! Occupants and discussion history are never stored. Rooms not entered for
//! `muc.delete_unused_rooms_after_days` are removed by the group-chat service (when it starts,
//! then daily); an account's affiliations go with the account, and so do rooms it alone owned.
//! A room's message archive (`archive.rs`), if it has one, goes with the room.

use super::StoreError;
use crate::muc::{Affiliation, RoomRecord};

/// Handle on the tree.
#[derive(Clone)]
pub struct Rooms {
    tree: sled::Tree,
    space: std::sync::Arc<super::space::Space>,
    /// Rooms' message archives (XEP-0313) go with the room.
    archive: super::archive::Archive,
}

use super::archive::owner_of as archive_owner;

fn decode(v: &[u8]) -> Result<RoomRecord, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt(format!("muc room: {e}")))
}

impl Rooms {
    pub(super) fn new(
        tree: sled::Tree,
        space: std::sync::Arc<super::space::Space>,
        archive: super::archive::Archive,
    ) -> Self {
        Rooms {
            tree,
            space,
            archive,
        }
    }

    pub fn get(&self, room: &str) -> Result<Option<RoomRecord>, StoreError> {
        self.tree.get(room)?.map(|v| decode(&v)).transpose()
    }

    pub fn put(&self, room: &str, r: &RoomRecord) -> Result<(), StoreError> {
        self.space.check()?;
        let v = serde_json::to_vec(r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.tree.insert(room, v)?;
        Ok(())
    }

    /// Remove a room's record and its message archive.
    pub fn remove(&self, room: &str) -> Result<bool, StoreError> {
        let (domain, node) = archive_owner(room);
        self.archive.remove_owner(domain, node)?;
        Ok(self.tree.remove(room)?.is_some())
    }

    /// Every stored room of the service `domain`, with its record.
    pub fn of_service(&self, domain: &str) -> Result<Vec<(String, RoomRecord)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.iter() {
            let (k, v) = kv?;
            let jid = String::from_utf8_lossy(&k).into_owned();
            if crate::xmpp::domain_part(&jid) == domain {
                out.push((jid, decode(&v)?));
            }
        }
        Ok(out)
    }

    /// Rooms last entered before `before_secs` (seconds since the epoch).
    pub fn unused_since(&self, before_secs: u64) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.iter() {
            let (k, v) = kv?;
            if decode(&v)?.last_used < before_secs {
                out.push(String::from_utf8_lossy(&k).into_owned());
            }
        }
        Ok(out)
    }

    /// Remove the affiliations of the bare JIDs `jids` (accounts being deleted) from every
    /// room, and remove the rooms one of them alone owned. Returns the removed rooms.
    pub fn forget(
        &self,
        jids: &std::collections::HashSet<String>,
    ) -> Result<Vec<String>, StoreError> {
        let mut removed = Vec::new();
        if jids.is_empty() {
            return Ok(removed);
        }
        for kv in self.tree.iter() {
            let (k, old) = kv?;
            let mut r = decode(&old)?;
            if !r.affiliations.keys().any(|j| jids.contains(j)) {
                continue;
            }
            let owned_by_them = r.owners().next().is_some() && r.owners().all(|o| jids.contains(o));
            let new = if owned_by_them {
                removed.push(String::from_utf8_lossy(&k).into_owned());
                None
            } else {
                r.affiliations.retain(|j, _| !jids.contains(j));
                Some(serde_json::to_vec(&r).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            };
            // A compare-and-swap: a room that changed meanwhile is looked at again by the
            // live room, which hears of the deletion too.
            let _ = self.tree.compare_and_swap(&k, Some(&old), new)?;
        }
        for room in &removed {
            let (domain, node) = archive_owner(room);
            self.archive.remove_owner(domain, node)?;
        }
        Ok(removed)
    }

    /// How many rooms `jid` has the affiliation `a` in (for tests and statistics).
    pub fn count_affiliated(&self, jid: &str, a: Affiliation) -> Result<usize, StoreError> {
        let mut n = 0;
        for v in self.tree.iter().values() {
            n += usize::from(decode(&v?)?.affiliation(jid) == a);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn forget_removes_affiliations_and_sole_owned_rooms() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut a = RoomRecord::default();
        a.set_affiliation("alice@x", Affiliation::Owner);
        a.set_affiliation("bob@x", Affiliation::Member);
        let mut b = RoomRecord::default();
        b.set_affiliation("bob@x", Affiliation::Owner);
        b.set_affiliation("alice@x", Affiliation::Admin);
        s.muc.put("a@conference.x", &a).unwrap();
        s.muc.put("b@conference.x", &b).unwrap();
        let gone: std::collections::HashSet<String> = ["alice@x".to_string()].into();
        assert_eq!(s.muc.forget(&gone).unwrap(), ["a@conference.x"]);
        assert!(s.muc.get("a@conference.x").unwrap().is_none());
        let b = s.muc.get("b@conference.x").unwrap().unwrap();
        assert_eq!(b.affiliation("alice@x"), Affiliation::None);
        assert_eq!(b.affiliation("bob@x"), Affiliation::Owner);
        assert_eq!(s.muc.of_service("conference.x").unwrap().len(), 1);
        assert_eq!(s.muc.unused_since(1).unwrap(), ["b@conference.x"]);
    }
}
