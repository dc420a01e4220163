//! The `roster`, `roster_meta` and `blocklist` trees, written only by the roster store actor.
//!
//! - `roster`: `domain NUL user NUL contact` -> [`Item`] (JSON): the contacts with the
//!   direction(s) of presence visibility, and pending inbound requests.
//! - `roster_meta`: `domain NUL user` -> [`RosterMeta`] (JSON): the roster version counter.
//! - `blocklist`: `domain NUL user NUL jid` -> empty (XEP-0191).
//!
//! Removed contacts leave no trace (no tombstones): after a removal, clients with an older
//! roster version get the full roster instead of a delta.

use serde::{Deserialize, Serialize};

use super::{account_key, StoreError};
use crate::roster::Item;

/// Per-account roster version bookkeeping (XEP-0237).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterMeta {
    /// Current version; every change increments it.
    pub ver: u64,
    /// Deltas can be computed for client versions at or after this one (the last removal).
    pub delta_since: u64,
}

/// Handles on the roster trees.
#[derive(Clone)]
pub struct Rosters {
    items: sled::Tree,
    meta: sled::Tree,
    blocks: sled::Tree,
    space: std::sync::Arc<super::space::Space>,
}

fn prefix(domain: &str, user: &str) -> Vec<u8> {
    let mut k = account_key(domain, user);
    k.push(0);
    k
}

fn key(domain: &str, user: &str, contact: &str) -> Vec<u8> {
    let mut k = prefix(domain, user);
    k.extend_from_slice(contact.as_bytes());
    k
}

impl Rosters {
    pub(super) fn new(
        items: sled::Tree,
        meta: sled::Tree,
        blocks: sled::Tree,
        space: std::sync::Arc<super::space::Space>,
    ) -> Self {
        Rosters {
            items,
            meta,
            blocks,
            space,
        }
    }

    /// Every stored record of the user, with the contact's bare JID.
    pub fn items(&self, domain: &str, user: &str) -> Result<Vec<(String, Item)>, StoreError> {
        let p = prefix(domain, user);
        let mut out = Vec::new();
        for kv in self.items.scan_prefix(&p) {
            let (k, v) = kv?;
            let contact = String::from_utf8_lossy(&k[p.len()..]).into_owned();
            let item: Item = serde_json::from_slice(&v)
                .map_err(|e| StoreError::Corrupt(format!("roster item: {e}")))?;
            out.push((contact, item));
        }
        Ok(out)
    }

    /// The record for one contact.
    pub fn get(&self, domain: &str, user: &str, contact: &str) -> Result<Option<Item>, StoreError> {
        self.items
            .get(key(domain, user, contact))?
            .map(|v| {
                serde_json::from_slice(&v)
                    .map_err(|e| StoreError::Corrupt(format!("roster item: {e}")))
            })
            .transpose()
    }

    /// Store a record (or delete it when it holds nothing any more). A record that holds
    /// something is a new write the disk-space guard may refuse.
    pub fn put(
        &self,
        domain: &str,
        user: &str,
        contact: &str,
        item: &Item,
    ) -> Result<(), StoreError> {
        let k = key(domain, user, contact);
        if item.is_empty() {
            self.items.remove(k)?;
        } else {
            self.space.check()?;
            self.items
                .insert(k, serde_json::to_vec(item).expect("roster item serialises"))?;
        }
        Ok(())
    }

    /// Number of contacts on the roster.
    pub fn count(&self, domain: &str, user: &str) -> Result<usize, StoreError> {
        Ok(self
            .items(domain, user)?
            .iter()
            .filter(|(_, i)| i.in_roster)
            .count())
    }

    /// The version bookkeeping.
    pub fn meta(&self, domain: &str, user: &str) -> Result<RosterMeta, StoreError> {
        Ok(match self.meta.get(account_key(domain, user))? {
            Some(v) => serde_json::from_slice(&v)
                .map_err(|e| StoreError::Corrupt(format!("roster meta: {e}")))?,
            None => RosterMeta::default(),
        })
    }

    pub fn set_meta(&self, domain: &str, user: &str, m: &RosterMeta) -> Result<(), StoreError> {
        self.meta.insert(
            account_key(domain, user),
            serde_json::to_vec(m).expect("meta serialises"),
        )?;
        Ok(())
    }

    /// The block list (JIDs as given: domain, bare or full).
    pub fn blocked(&self, domain: &str, user: &str) -> Result<Vec<String>, StoreError> {
        let p = prefix(domain, user);
        let mut out = Vec::new();
        for kv in self.blocks.scan_prefix(&p) {
            let (k, _) = kv?;
            out.push(String::from_utf8_lossy(&k[p.len()..]).into_owned());
        }
        Ok(out)
    }

    /// Does the account's block list hold `jid` (as given, its bare JID or its domain,
    /// XEP-0191 §3.1)? Three point lookups, no scan.
    pub fn is_blocked(&self, domain: &str, user: &str, jid: &str) -> Result<bool, StoreError> {
        for j in crate::roster::block_entries(jid) {
            if self.blocks.contains_key(key(domain, user, j))? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Add to (`true`) or remove from the block list; returns whether anything changed.
    pub fn set_blocked(
        &self,
        domain: &str,
        user: &str,
        jid: &str,
        blocked: bool,
    ) -> Result<bool, StoreError> {
        let k = key(domain, user, jid);
        Ok(if blocked {
            self.space.check()?;
            self.blocks.insert(k, &[])?.is_none()
        } else {
            self.blocks.remove(k)?.is_some()
        })
    }

    /// For an account about to be deleted: apply to each local contact's roster what the
    /// `unsubscribe`/`unsubscribed` the account would send does (RFC 6121 §3.2-3.3), so that
    /// no contact keeps seeing a subscription to a deleted account. A contact is local when
    /// this store holds its roster entry for the account. Returns how many contacts changed.
    pub fn unsubscribe_local_contacts(
        &self,
        domain: &str,
        user: &str,
    ) -> Result<usize, StoreError> {
        use crate::roster::{inbound, SubKind};
        let me = format!("{user}@{domain}");
        let mut changed = 0;
        for (contact, item) in self.items(domain, user)? {
            let Some((c_user, c_domain)) = contact.split_once('@') else {
                continue;
            };
            let Some(mut theirs) = self.get(c_domain, c_user, &me)? else {
                continue;
            };
            let mut any = false;
            if item.to || item.pending_out {
                any |= inbound(&mut theirs, SubKind::Unsubscribe).changed;
            }
            if item.from || item.pending_in {
                any |= inbound(&mut theirs, SubKind::Unsubscribed).changed;
            }
            if any {
                if theirs.in_roster {
                    let mut m = self.meta(c_domain, c_user)?;
                    m.ver += 1;
                    theirs.ver = m.ver;
                    self.set_meta(c_domain, c_user, &m)?;
                }
                self.put(c_domain, c_user, &me, &theirs)?;
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Remove everything of an account.
    pub fn remove_account(&self, domain: &str, user: &str) -> Result<(), StoreError> {
        let p = prefix(domain, user);
        for tree in [&self.items, &self.blocks] {
            for kv in tree.scan_prefix(&p) {
                let (k, _) = kv?;
                tree.remove(k)?;
            }
        }
        self.meta.remove(account_key(domain, user))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_deletion_unsubscribes_local_contacts() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        let r = &store.rosters;
        let both = Item {
            in_roster: true,
            to: true,
            from: true,
            ..Item::default()
        };
        r.put("x", "old", "juliet@x", &both).unwrap();
        r.put("x", "juliet", "old@x", &both).unwrap();
        r.put("x", "old", "far@remote.example", &both).unwrap();
        assert_eq!(r.unsubscribe_local_contacts("x", "old").unwrap(), 1);
        let theirs = r.get("x", "juliet", "old@x").unwrap().unwrap();
        assert!(!theirs.to && !theirs.from && theirs.in_roster, "{theirs:?}");
        assert_eq!(
            r.meta("x", "juliet").unwrap().ver,
            1,
            "versioned for the next roster get"
        );
    }

    #[test]
    fn items_meta_blocks_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        let r = &store.rosters;
        let item = Item {
            in_roster: true,
            to: true,
            ..Item::default()
        };
        r.put("x", "juliet", "romeo@y", &item).unwrap();
        r.put("x", "juliet2", "nurse@y", &item).unwrap();
        assert_eq!(
            r.items("x", "juliet").unwrap(),
            vec![("romeo@y".to_owned(), item.clone())]
        );
        assert_eq!(r.count("x", "juliet").unwrap(), 1);
        r.put("x", "juliet", "romeo@y", &Item::default()).unwrap();
        assert!(
            r.get("x", "juliet", "romeo@y").unwrap().is_none(),
            "empty records are deleted"
        );
        r.set_meta(
            "x",
            "juliet",
            &RosterMeta {
                ver: 3,
                delta_since: 2,
            },
        )
        .unwrap();
        assert_eq!(r.meta("x", "juliet").unwrap().ver, 3);
        assert!(r.set_blocked("x", "juliet", "spam.example", true).unwrap());
        assert!(!r.set_blocked("x", "juliet", "spam.example", true).unwrap());
        assert_eq!(
            r.blocked("x", "juliet").unwrap(),
            vec!["spam.example".to_owned()]
        );
        store.delete_account("x", "juliet").unwrap();
        assert!(r.blocked("x", "juliet").unwrap().is_empty());
        assert_eq!(r.meta("x", "juliet").unwrap(), RosterMeta::default());
        assert_eq!(
            r.items("x", "juliet2").unwrap().len(),
            1,
            "other accounts untouched"
        );
    }
}
