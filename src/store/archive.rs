//! The message archive (XEP-0313), kept only when the operator enables `[archive]`: the
//! archives of accounts and of group-chat rooms, their index and the users' preferences.
//!
//! An archive's owner is an account or a room, keyed like an account (`domain NUL node`).
//! Every archived message has an id: a `u64` made of the arrival time in milliseconds
//! (upper 48 bits) and a counter (lower 16), unique in the database and increasing, so that
//! key order is time order and a time range is a key range. Three trees:
//!
//! - `archive`: owner NUL id -> the entry ([`Entry`], a compact binary record);
//! - `archive_with`: owner NUL the other party's bare JID NUL id -> nothing: "the last 50
//!   messages with X" is a reverse range scan of 51 keys, whatever the archive's size;
//! - `archive_prefs`: owner -> the XEP-0441 preferences (JSON), only when the user set them.
//!
//! Two writes per message and owner: the entry, then the `with` key (a crash between them
//! leaves an entry that a `with` query misses, never a key without an entry that is not
//! skipped). The retention sweep walks each owner's oldest entries only. Ids stay increasing
//! across restarts through a high-water mark in `meta` (`archive_ids`), written about once a
//! second under load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{account_key, StoreError};

/// Bits of an id below the millisecond time.
const COUNTER_BITS: u32 = 16;

/// The id of the first message at or after `ms`.
pub fn id_at(ms: u64) -> u64 {
    ms.saturating_mul(1 << COUNTER_BITS)
}

/// When the message with id `id` arrived (ms since the epoch).
pub fn ms_of(id: u64) -> u64 {
    id >> COUNTER_BITS
}

/// An id as clients see it (XEP-0359 `stanza-id`, MAM result ids): 16 hex digits.
pub fn id_string(id: u64) -> String {
    format!("{id:016x}")
}

/// The id behind a string from [`id_string`]; `None` for anything else.
pub fn parse_id(s: &str) -> Option<u64> {
    (s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(s, 16).ok())
        .flatten()
}

/// One archived message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: u64,
    /// The other party as the stanza named it (a full JID, a bare JID or a room occupant).
    pub with: String,
    /// Sent by the owner (`true`) or received.
    pub outgoing: bool,
    /// The message as the server stored it (`jabber:client`).
    pub xml: String,
}

/// Record format version.
const RECORD_V1: u8 = 1;

fn encode(e: &Entry) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + e.with.len() + e.xml.len());
    v.push(RECORD_V1);
    v.push(e.outgoing as u8);
    v.extend_from_slice(&(e.with.len() as u16).to_be_bytes());
    v.extend_from_slice(e.with.as_bytes());
    v.extend_from_slice(e.xml.as_bytes());
    v
}

fn decode(id: u64, b: &[u8]) -> Result<Entry, StoreError> {
    let bad = || StoreError::Corrupt("archive record".into());
    let [RECORD_V1, out, l0, l1, rest @ ..] = b else {
        return Err(bad());
    };
    let n = u16::from_be_bytes([*l0, *l1]) as usize;
    if rest.len() < n {
        return Err(bad());
    }
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| bad());
    Ok(Entry {
        id,
        with: text(&rest[..n])?,
        outgoing: *out == 1,
        xml: text(&rest[n..])?,
    })
}

/// XEP-0441: what is archived by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Always,
    Never,
    /// Only messages with contacts on the roster.
    Roster,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Always => "always",
            Mode::Never => "never",
            Mode::Roster => "roster",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "always" => Some(Mode::Always),
            "never" => Some(Mode::Never),
            "roster" => Some(Mode::Roster),
            _ => None,
        }
    }
}

/// A user's XEP-0441 preferences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prefs {
    pub default: Mode,
    /// Bare JIDs always archived.
    pub always: Vec<String>,
    /// Bare JIDs never archived (wins over `always`).
    pub never: Vec<String>,
}

impl Prefs {
    pub fn with_default(default: Mode) -> Prefs {
        Prefs {
            default,
            always: Vec::new(),
            never: Vec::new(),
        }
    }

    /// Whether a message with `contact` (a bare JID) is archived; `on_roster` is asked only
    /// for the `roster` default.
    pub fn archives(&self, contact: &str, on_roster: impl FnOnce() -> bool) -> bool {
        if self.never.iter().any(|j| j == contact) {
            return false;
        }
        if self.always.iter().any(|j| j == contact) {
            return true;
        }
        match self.default {
            Mode::Always => true,
            Mode::Never => false,
            Mode::Roster => on_roster(),
        }
    }
}

/// Which messages a query asks for (XEP-0313 §4 and XEP-0059), ids as numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// The other party: a bare JID, a full JID, or a domain.
    pub with: Option<String>,
    /// Lowest id (inclusive) and highest (exclusive) of the whole result set.
    pub from_id: u64,
    pub until_id: u64,
    /// Only these ids (XEP-0313 `ids`), in this order.
    pub ids: Option<Vec<u64>>,
    /// The page: after this item (forward) or before it (backward); `last_page` for an empty
    /// `<before/>`.
    pub after: Option<u64>,
    pub before: Option<u64>,
    pub last_page: bool,
    pub max: usize,
}

/// A page of results, in time order.
#[derive(Debug, Default)]
pub struct Page {
    pub entries: Vec<Entry>,
    /// The page reaches the end of the result set in the direction it was read.
    pub complete: bool,
}

/// A filter on entries.
type Keep = Box<dyn Fn(&Entry) -> bool>;

/// An entry's id and arrival time (ms).
pub type Point = (u64, u64);

/// Handles on the archive trees.
#[derive(Clone)]
pub struct Archive {
    items: sled::Tree,
    with: sled::Tree,
    prefs: sled::Tree,
    /// The `meta` tree, for the ids' high-water mark.
    meta: sled::Tree,
    last_id: Arc<AtomicU64>,
    /// Ids below this may have been handed out (by this or an earlier run).
    reserved: Arc<AtomicU64>,
    space: Arc<super::space::Space>,
}

/// The `meta` key of the ids' high-water mark.
const RESERVED_KEY: &str = "archive_ids";
/// How far ahead the high-water mark goes: a second's worth of ids.
const RESERVE: u64 = 1000 << COUNTER_BITS;

fn owner_prefix(domain: &str, node: &str) -> Vec<u8> {
    let mut k = account_key(domain, node);
    k.push(0);
    k
}

fn with_prefix(owner: &[u8], bare: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(owner.len() + bare.len() + 9);
    k.extend_from_slice(owner);
    k.extend_from_slice(bare.as_bytes());
    k.push(0);
    k
}

fn cat(prefix: &[u8], id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn id_suffix(key: &[u8]) -> Option<u64> {
    let tail = key.get(key.len().checked_sub(8)?..)?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

/// An archive owner's (`domain`, `node`) from its bare JID (`room@service`, `user@host`).
pub fn owner_of(bare_jid: &str) -> (&str, &str) {
    match bare_jid.split_once('@') {
        Some((node, domain)) => (domain, node),
        None => (bare_jid, ""),
    }
}

/// The bare part of a JID as stored in `with` (lower-cased already by the JID parser).
fn bare(jid: &str) -> &str {
    crate::xmpp::bare_part(jid)
}

impl Archive {
    pub(super) fn open(
        db: &sled::Db,
        space: Arc<super::space::Space>,
    ) -> Result<Archive, StoreError> {
        let meta = db.open_tree("meta")?;
        let reserved = match meta.get(RESERVED_KEY)? {
            Some(v) => v.as_ref().try_into().map_or(0, u64::from_be_bytes),
            None => 0,
        };
        Ok(Archive {
            items: db.open_tree("archive")?,
            with: db.open_tree("archive_with")?,
            prefs: db.open_tree("archive_prefs")?,
            meta,
            last_id: Arc::new(AtomicU64::new(reserved)),
            reserved: Arc::new(AtomicU64::new(reserved)),
            space,
        })
    }

    /// A fresh id: now, above every id handed out before (in this run and earlier ones).
    pub fn next_id(&self) -> u64 {
        let now = id_at(super::now_ms());
        let prev = self
            .last_id
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or(0);
        let id = now.max(prev + 1);
        if id >= self.reserved.load(Ordering::Acquire) {
            let mark = id + RESERVE;
            if self.reserved.fetch_max(mark, Ordering::AcqRel) <= id {
                if let Err(e) = self.meta.insert(RESERVED_KEY, &mark.to_be_bytes()) {
                    log::error!("archive: cannot keep the ids' high-water mark: {e}");
                }
            }
        }
        id
    }

    /// Archive a message for `owner` (`domain`, `node`).
    pub fn append(&self, domain: &str, node: &str, entry: &Entry) -> Result<(), StoreError> {
        self.space.check()?;
        let owner = owner_prefix(domain, node);
        self.items.insert(cat(&owner, entry.id), encode(entry))?;
        self.with
            .insert(cat(&with_prefix(&owner, bare(&entry.with)), entry.id), &[])?;
        Ok(())
    }

    /// [`Archive::append`] for the live server: a failure is logged (a full disk at `debug`,
    /// as the space guard reports it once) and the message goes on unarchived; `true` if kept.
    pub fn try_append(&self, domain: &str, node: &str, entry: &Entry) -> bool {
        match self.append(domain, node, entry) {
            Ok(()) => true,
            Err(StoreError::Full(_)) => {
                log::debug!("archive: disk full, a message was not archived");
                false
            }
            Err(e) => {
                log::error!("archive: write failed ({e}); a message was not archived");
                false
            }
        }
    }

    /// One entry, if it is (still) archived.
    pub fn get(&self, domain: &str, node: &str, id: u64) -> Result<Option<Entry>, StoreError> {
        match self.items.get(cat(&owner_prefix(domain, node), id))? {
            Some(v) => decode(id, &v).map(Some),
            None => Ok(None),
        }
    }

    /// Answer a query (see [`Query`]): at most `q.max` entries, in time order.
    pub fn query(&self, domain: &str, node: &str, q: &Query) -> Result<Page, StoreError> {
        if let Some(ids) = &q.ids {
            return self.by_ids(domain, node, q, ids);
        }
        let owner = owner_prefix(domain, node);
        let mut lo = q.from_id;
        let mut hi = q.until_id;
        if let Some(a) = q.after {
            lo = lo.max(a.saturating_add(1));
        }
        if let Some(b) = q.before {
            hi = hi.min(b);
        }
        let backward = q.before.is_some() || q.last_page;
        // A bare JID is the `with` index's own key; a full JID is its bare JID's entries,
        // filtered; a domain (no `@`, no `/`) is the whole archive, filtered.
        let (prefix, keep): (Vec<u8>, Keep) = match q.with.as_deref() {
            Some(w) if w.contains('/') => {
                let w = w.to_owned();
                (
                    with_prefix(&owner, bare(&w)),
                    Box::new(move |e| e.with == w),
                )
            }
            Some(w) if w.contains('@') => (with_prefix(&owner, w), Box::new(|_| true)),
            Some(w) => {
                let w = w.to_owned();
                (
                    owner.clone(),
                    Box::new(move |e| crate::xmpp::domain_part(&e.with) == w),
                )
            }
            None => (owner.clone(), Box::new(|_| true)),
        };
        let indexed = prefix.len() != owner.len();
        let tree = if indexed { &self.with } else { &self.items };
        let range = tree.range(cat(&prefix, lo)..cat(&prefix, hi.max(lo)));
        let mut keys: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> = if backward
        {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        let mut entries = Vec::new();
        let mut complete = true;
        for kv in &mut keys {
            let (k, v) = kv?;
            let Some(id) = id_suffix(&k) else { continue };
            let entry = if indexed {
                match self.items.get(cat(&owner, id))? {
                    Some(v) => decode(id, &v)?,
                    None => continue,
                }
            } else {
                decode(id, &v)?
            };
            if !keep(&entry) {
                continue;
            }
            if entries.len() == q.max {
                complete = false;
                break;
            }
            entries.push(entry);
        }
        if backward {
            entries.reverse();
        }
        Ok(Page { entries, complete })
    }

    fn by_ids(&self, domain: &str, node: &str, q: &Query, ids: &[u64]) -> Result<Page, StoreError> {
        let mut entries = Vec::new();
        for id in ids.iter().take(q.max) {
            if let Some(e) = self.get(domain, node, *id)? {
                entries.push(e);
            }
        }
        Ok(Page {
            complete: ids.len() <= q.max,
            entries,
        })
    }

    /// The oldest and the newest entry of an archive (XEP-0313 metadata): (id, ms) each.
    pub fn bounds(&self, domain: &str, node: &str) -> Result<Option<(Point, Point)>, StoreError> {
        let p = owner_prefix(domain, node);
        let mut it = self.items.scan_prefix(&p).keys();
        let first = match it.next() {
            Some(k) => id_suffix(&k?),
            None => None,
        };
        let last = match it.next_back() {
            Some(k) => id_suffix(&k?),
            None => first,
        };
        Ok(first.zip(last).map(|(f, l)| ((f, ms_of(f)), (l, ms_of(l)))))
    }

    /// Remove one entry and its index key.
    fn remove_entry(&self, owner: &[u8], id: u64, record: &[u8]) -> Result<(), StoreError> {
        self.items.remove(cat(owner, id))?;
        if let Ok(e) = decode(id, record) {
            self.with
                .remove(cat(&with_prefix(owner, bare(&e.with)), id))?;
        }
        Ok(())
    }

    /// Delete every entry that arrived before `cutoff_ms`, of every archive; returns how many.
    /// Reads each owner's entries from the oldest up to the cutoff, then skips to the next.
    pub fn prune(&self, cutoff_ms: u64) -> Result<usize, StoreError> {
        let mut n = 0;
        let mut from: Vec<u8> = Vec::new();
        while let Some(kv) = self.items.range(from.clone()..).next() {
            let (k, _) = kv?;
            let Some(owner) = k.get(..k.len().saturating_sub(8)) else {
                break;
            };
            let owner = owner.to_vec();
            for kv in self
                .items
                .range(owner.clone()..cat(&owner, id_at(cutoff_ms)))
            {
                let (k, v) = kv?;
                if let Some(id) = id_suffix(&k) {
                    self.remove_entry(&owner, id, &v)?;
                    n += 1;
                }
            }
            // Past every key of this owner (an id is 8 bytes).
            from = owner;
            from.extend_from_slice(&[0xff; 9]);
        }
        Ok(n)
    }

    /// Delete the archive of `owner` (an account or a room) and its preferences.
    pub fn remove_owner(&self, domain: &str, node: &str) -> Result<usize, StoreError> {
        let owner = owner_prefix(domain, node);
        let mut n = 0;
        for kv in self.items.scan_prefix(&owner) {
            let (k, v) = kv?;
            if let Some(id) = id_suffix(&k) {
                self.remove_entry(&owner, id, &v)?;
                n += 1;
            }
        }
        // Index keys left by an interrupted write.
        for k in self.with.scan_prefix(&owner).keys() {
            self.with.remove(k?)?;
        }
        self.prefs.remove(account_key(domain, node))?;
        Ok(n)
    }

    /// The user's preferences, or `None` when never set (the configured default applies).
    pub fn prefs(&self, domain: &str, node: &str) -> Result<Option<Prefs>, StoreError> {
        match self.prefs.get(account_key(domain, node))? {
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("archive prefs: {e}"))),
            None => Ok(None),
        }
    }

    pub fn set_prefs(&self, domain: &str, node: &str, p: &Prefs) -> Result<(), StoreError> {
        self.space.check()?;
        self.prefs.insert(
            account_key(domain, node),
            serde_json::to_vec(p).expect("prefs serialise"),
        )?;
        Ok(())
    }

    /// Archived messages on all hosts and rooms.
    pub fn total(&self) -> usize {
        self.items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Archive) {
        let (dir, _db, a) = open_db();
        (dir, a)
    }

    fn open_db() -> (tempfile::TempDir, sled::Db, Archive) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(dir.path().join("db"))
            .open()
            .unwrap();
        let space = Arc::new(crate::store::space::Space::new(dir.path().to_owned(), 0));
        let a = Archive::open(&db, space).unwrap();
        (dir, db, a)
    }

    fn put(a: &Archive, owner: &str, id: u64, with: &str, body: &str) {
        let e = Entry {
            id,
            with: with.into(),
            outgoing: false,
            xml: format!("<message><body>{body}</body></message>"),
        };
        a.append("x", owner, &e).unwrap();
    }

    fn q(max: usize) -> Query {
        Query {
            until_id: u64::MAX,
            max,
            ..Default::default()
        }
    }

    fn bodies(p: &Page) -> Vec<u64> {
        p.entries.iter().map(|e| e.id).collect()
    }

    #[test]
    fn records_round_trip_and_ids_increase() {
        let (_d, db, a) = open_db();
        let e = Entry {
            id: a.next_id(),
            with: "b@y/r".into(),
            outgoing: true,
            xml: "<message/>".into(),
        };
        assert_eq!(decode(e.id, &encode(&e)).unwrap(), e);
        let n = a.next_id();
        assert!(n > e.id && a.next_id() > n);
        // A restart goes on above every id handed out before.
        let again = Archive::open(&db, a.space.clone()).unwrap();
        assert!(again.next_id() > n);
        assert_eq!(parse_id(&id_string(n)), Some(n));
        assert_eq!(parse_id("zz"), None);
    }

    #[test]
    fn pages_forward_backward_and_by_contact() {
        let (_d, a) = open();
        for i in 1..=10u64 {
            let with = if i % 2 == 0 { "b@y/phone" } else { "c@z" };
            put(&a, "alice", i, with, &i.to_string());
        }
        put(&a, "bob", 11, "b@y", "other owner");
        let p = a.query("x", "alice", &q(3)).unwrap();
        assert_eq!((bodies(&p), p.complete), (vec![1, 2, 3], false));
        let p = a
            .query(
                "x",
                "alice",
                &Query {
                    after: Some(8),
                    ..q(3)
                },
            )
            .unwrap();
        assert_eq!((bodies(&p), p.complete), (vec![9, 10], true));
        let p = a
            .query(
                "x",
                "alice",
                &Query {
                    last_page: true,
                    ..q(3)
                },
            )
            .unwrap();
        assert_eq!((bodies(&p), p.complete), (vec![8, 9, 10], false));
        let p = a
            .query(
                "x",
                "alice",
                &Query {
                    before: Some(3),
                    ..q(3)
                },
            )
            .unwrap();
        assert_eq!((bodies(&p), p.complete), (vec![1, 2], true));
        let with = |w: &str| Query {
            with: Some(w.into()),
            last_page: true,
            ..q(2)
        };
        assert_eq!(
            bodies(&a.query("x", "alice", &with("b@y")).unwrap()),
            vec![8, 10]
        );
        assert_eq!(
            bodies(&a.query("x", "alice", &with("b@y/phone")).unwrap()),
            vec![8, 10]
        );
        assert!(a
            .query("x", "alice", &with("b@y/laptop"))
            .unwrap()
            .entries
            .is_empty());
        assert_eq!(
            bodies(&a.query("x", "alice", &with("z")).unwrap()),
            vec![7, 9]
        );
        let range = Query {
            from_id: 4,
            until_id: 7,
            ..q(10)
        };
        assert_eq!(
            bodies(&a.query("x", "alice", &range).unwrap()),
            vec![4, 5, 6]
        );
        let ids = Query {
            ids: Some(vec![5, 99, 2]),
            ..q(10)
        };
        assert_eq!(bodies(&a.query("x", "alice", &ids).unwrap()), vec![5, 2]);
        assert_eq!(a.bounds("x", "alice").unwrap(), Some(((1, 0), (10, 0))));
    }

    #[test]
    fn prune_and_remove_leave_nothing_behind() {
        let (_d, a) = open();
        put(&a, "alice", id_at(1_000), "b@y", "old");
        put(&a, "alice", id_at(5_000), "b@y", "new");
        put(&a, "bob", id_at(2_000), "alice@x", "old too");
        assert_eq!(a.prune(3_000).unwrap(), 2);
        let p = a.query("x", "alice", &q(10)).unwrap();
        assert_eq!(bodies(&p), vec![id_at(5_000)]);
        assert_eq!(a.with.len(), 1);
        a.set_prefs("x", "alice", &Prefs::with_default(Mode::Never))
            .unwrap();
        assert_eq!(a.remove_owner("x", "alice").unwrap(), 1);
        assert_eq!((a.items.len(), a.with.len()), (0, 0));
        assert_eq!(a.prefs("x", "alice").unwrap(), None);
    }

    #[test]
    fn preferences_decide() {
        let mut p = Prefs::with_default(Mode::Roster);
        p.always.push("a@x".into());
        p.never.push("n@x".into());
        assert!(p.archives("a@x", || false));
        assert!(!p.archives("n@x", || true));
        assert!(p.archives("r@x", || true));
        assert!(!p.archives("s@x", || false));
    }
}
