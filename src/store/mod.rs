//! Storage: one sled database per data directory, a fixed small set of trees, one module per
//! tree. Nothing outside `store/` names sled.
//!
//! Keys of per-account data start with `domain NUL user`, so deleting an account is a prefix
//! removal in every per-account tree. Values carry a schema version so an upgrade can migrate
//! them. No tree holds an IP address, and none holds message content except the offline spool
//! (which the privacy policy names) and, when the operator enables it, the message archive.

pub mod accounts;
pub mod archive;
pub mod client_data;
pub mod commit;
pub mod delivery_errors;
pub mod muc;
pub mod offline;
pub mod pep;
pub mod push;
pub mod roster;
pub mod snapshot;
pub mod space;
pub mod uploads;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

pub use accounts::{AccountRecord, Accounts, Credential};
pub use client_data::ClientData;
pub use delivery_errors::{DeliveryError, DeliveryErrors};
pub use offline::Offline;
pub use pep::Pep;
pub use roster::{RosterMeta, Rosters};

/// The schema version written into the `meta` tree. 2: account records without their
/// creation time (migrated from 1 when the store opens).
pub const SCHEMA_VERSION: u32 = 2;

/// A key and its value, as stored.
pub type RawEntry = (Vec<u8>, Vec<u8>);

/// A storage failure.
#[derive(Debug)]
pub enum StoreError {
    /// sled reported an I/O or corruption problem (full disk, permissions, ...).
    Db(String),
    /// A stored value could not be decoded.
    Corrupt(String),
    /// The data directory is used by another process.
    Locked(String),
    /// The disk is (nearly) full: `storage.min_free_mb` reached, or the system said so.
    Full(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Db(e) => write!(f, "database error: {e}"),
            StoreError::Corrupt(e) => write!(f, "corrupt record: {e}"),
            StoreError::Locked(e) => write!(f, "{e}"),
            StoreError::Full(e) => write!(f, "disk full: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        use std::io::ErrorKind;
        match &e {
            // ENOSPC, EFBIG (a file size limit), EDQUOT.
            sled::Error::Io(io)
                if matches!(
                    io.kind(),
                    ErrorKind::StorageFull | ErrorKind::FileTooLarge | ErrorKind::QuotaExceeded
                ) || matches!(io.raw_os_error(), Some(28 | 27 | 122)) =>
            {
                StoreError::Full(e.to_string())
            }
            _ => StoreError::Db(e.to_string()),
        }
    }
}

impl StoreError {
    /// Log a failure of `what` and say what the client gets: `resource-constraint` (type
    /// `wait`: try again later) while the disk is full, `internal-server-error` otherwise. The
    /// disk-full state itself is logged once, by the space guard, not for every refusal.
    pub fn stanza_error(&self, what: &str) -> crate::xmpp::StanzaError {
        use crate::xmpp::{Condition, StanzaError};
        match self {
            StoreError::Full(e) => {
                log::debug!("{what} refused: disk full ({e})");
                StanzaError::new(Condition::ResourceConstraint)
                    .with_text("the server is out of disk space; try again later")
            }
            e => {
                log::error!("{what} failed: {e}");
                Condition::InternalServerError.into()
            }
        }
    }
}

/// How long [`open_db`] waits for the data directory's lock: a process that is exiting (a
/// restart) or a handle that was just dropped (sled's background threads let go of the file
/// a moment after the last handle) releases it within that time; a running server does not.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Open sled in `dir/db`, waiting up to [`LOCK_WAIT`] for the directory's lock.
fn open_db(dir: &Path, flush_ms: u64) -> Result<sled::Db, StoreError> {
    let started = std::time::Instant::now();
    loop {
        let opened = sled::Config::new()
            .path(dir.join("db"))
            .cache_capacity(64 * 1024 * 1024)
            .flush_every_ms(Some(flush_ms.max(1)))
            .open();
        match opened {
            Ok(db) => return Ok(db),
            Err(e) if e.to_string().contains("could not acquire lock") => {
                if started.elapsed() >= LOCK_WAIT {
                    return Err(StoreError::Locked(format!(
                        "data directory {} is in use by another kleiber process",
                        dir.display()
                    )));
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(StoreError::from(e)),
        }
    }
}

/// The open database: a handle per tree. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    /// Keyed hashes of deleted JIDs -> until when they may not be registered again.
    tombstones: sled::Tree,
    /// The key of those hashes (random, made on first start, kept in `meta`).
    tombstone_key: std::sync::Arc<Vec<u8>>,
    /// How long a deleted name stays blocked, in seconds.
    tombstone_secs: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub accounts: Accounts,
    pub delivery_errors: DeliveryErrors,
    pub rosters: Rosters,
    pub offline: Offline,
    pub client_data: ClientData,
    pub pep: Pep,
    /// XEP-0357 push registrations (app servers of the account's clients).
    pub push: push::Push,
    /// Message archives (XEP-0313), written only when `[archive]` is enabled.
    pub archive: archive::Archive,
    /// Group-chat rooms (configuration, affiliations, subject).
    pub muc: muc::Rooms,
    /// Files shared with HTTP File Upload (XEP-0363): records and `<data_dir>/uploads`.
    pub uploads: uploads::Uploads,
    /// The disk-space guard every new write asks first (`storage.min_free_mb`).
    pub space: std::sync::Arc<space::Space>,
    commit: commit::GroupCommit,
}

impl Store {
    /// Open (or create) the database in `dir/db`, flushing to disk every 200 ms.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Self::open_with(dir, 200)
    }

    /// Open with a flush window: writes are durable at most `flush_ms` after they were made
    /// (sled's background group commit: one fsync per window, not one per write).
    pub fn open_with(dir: &Path, flush_ms: u64) -> Result<Store, StoreError> {
        create_private_dir(dir).map_err(|e| {
            StoreError::Db(format!("data_dir {}: cannot create it: {e}", dir.display()))
        })?;
        check_not_shared(dir)?;
        let db = open_db(dir, flush_ms)?;
        let meta = db.open_tree("meta")?;
        let mut migrate_from = None;
        match meta.get("schema")? {
            None => {
                meta.insert("schema", &SCHEMA_VERSION.to_be_bytes())?;
            }
            Some(v) => {
                let v = u32::from_be_bytes(
                    v.as_ref()
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("meta.schema".into()))?,
                );
                if v > SCHEMA_VERSION {
                    return Err(StoreError::Corrupt(format!(
                        "database schema {v} is newer than this kleiber ({SCHEMA_VERSION})"
                    )));
                }
                if v < SCHEMA_VERSION {
                    migrate_from = Some(v);
                }
            }
        }
        let tombstone_key = match meta.get("tombstone_key")? {
            Some(k) => k.to_vec(),
            None => {
                let k = crate::sasl::random_bytes(32);
                meta.insert("tombstone_key", k.clone())?;
                k
            }
        };
        // The reserve is off until the server sets it from the configuration.
        let space = std::sync::Arc::new(space::Space::new(dir.to_owned(), 0));
        let archive = archive::Archive::open(&db, space.clone())?;
        let store = Store {
            tombstones: db.open_tree("tombstones")?,
            tombstone_key: std::sync::Arc::new(tombstone_key),
            tombstone_secs: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(30 * 86_400)),
            accounts: Accounts::new(db.open_tree("accounts")?, space.clone()),
            delivery_errors: DeliveryErrors::new(db.open_tree("delivery_errors")?, space.clone()),
            client_data: ClientData::new(
                db.open_tree("vcard")?,
                db.open_tree("private")?,
                space.clone(),
            ),
            pep: Pep::new(db.open_tree("pep")?, space.clone()),
            push: push::Push::new(db.open_tree("push")?, space.clone()),
            muc: muc::Rooms::new(db.open_tree("muc")?, space.clone(), archive.clone()),
            archive,
            uploads: uploads::Uploads::new(db.open_tree("uploads")?, dir, space.clone()),
            offline: Offline::new(
                db.clone(),
                db.open_tree("offline")?,
                db.open_tree("offline_meta")?,
                space.clone(),
            ),
            rosters: Rosters::new(
                db.open_tree("roster")?,
                db.open_tree("roster_meta")?,
                db.open_tree("blocklist")?,
                space.clone(),
            ),
            space,
            commit: Default::default(),
            db,
        };
        if let Some(v) = migrate_from {
            store.migrate(v)?;
        }
        Ok(store)
    }

    /// Bring a store of schema `from` to [`SCHEMA_VERSION`].
    fn migrate(&self, from: u32) -> Result<(), StoreError> {
        if from < 2 {
            let n = self.accounts.migrate_records()?;
            log::info!("store: schema {from} -> 2: {n} account records without creation time");
        }
        let meta = self.db.open_tree("meta")?;
        meta.insert("schema", &SCHEMA_VERSION.to_be_bytes())?;
        self.flush()
    }

    /// Resolves once everything written so far is on disk: what a caller awaits before it
    /// acknowledges a write (group commit, see `commit.rs`).
    pub fn durable(
        &self,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static {
        self.commit.durable(&self.db, &self.space)
    }

    /// Make everything written so far durable (one fsync; callers batch).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// The server's dialback secret (XEP-0220 keys), made at random on first use.
    pub fn dialback_secret(&self) -> Result<Vec<u8>, StoreError> {
        let meta = self.db.open_tree("meta")?;
        let fresh = crate::sasl::random_bytes(32);
        // Compare-and-swap, so two callers cannot end up with different secrets.
        let _ = meta.compare_and_swap("dialback_secret", None::<&[u8]>, Some(fresh))?;
        meta.get("dialback_secret")?
            .map(|v| v.to_vec())
            .ok_or_else(|| StoreError::Corrupt("meta.dialback_secret".into()))
    }

    /// The operator's `kleiber registration open|close`, with the config value it overrode:
    /// `Some((open, config_value))`.
    pub fn registration_override(&self) -> Result<Option<(bool, bool)>, StoreError> {
        let meta = self.db.open_tree("meta")?;
        Ok(meta.get("registration")?.and_then(|v| match v.as_ref() {
            [o, c] => Some((*o == 1, *c == 1)),
            _ => None,
        }))
    }

    /// Remember the operator's choice (kept until the config's value changes).
    pub fn set_registration_override(
        &self,
        open: bool,
        config_value: bool,
    ) -> Result<(), StoreError> {
        let meta = self.db.open_tree("meta")?;
        meta.insert("registration", &[open as u8, config_value as u8])?;
        self.flush()
    }

    /// Forget the operator's choice (the config changed since).
    pub fn clear_registration_override(&self) -> Result<(), StoreError> {
        self.db.open_tree("meta")?.remove("registration")?;
        Ok(())
    }

    /// How long a deleted user name stays blocked from registration (0: not at all).
    pub fn set_reregistration_block(&self, secs: u64) {
        self.tombstone_secs
            .store(secs, std::sync::atomic::Ordering::Relaxed);
    }

    fn tombstone_id(&self, domain: &str, user: &str) -> Vec<u8> {
        use hmac::{Hmac, Mac};
        let mut m =
            Hmac::<sha2::Sha256>::new_from_slice(&self.tombstone_key).expect("any key length");
        m.update(&account_key(domain, user));
        m.finalize().into_bytes().to_vec()
    }

    /// A keyed hash of `data` for `purpose` with the server's local key: stable for the life
    /// of the data directory, unpredictable to anyone without it (e.g. the SCRAM salt shown
    /// for a user name that has no account).
    pub fn keyed_hash(&self, purpose: &str, data: &[u8]) -> Vec<u8> {
        use hmac::{Hmac, Mac};
        let mut m =
            Hmac::<sha2::Sha256>::new_from_slice(&self.tombstone_key).expect("any key length");
        m.update(purpose.as_bytes());
        m.update(&[0]);
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }

    /// Is `user@domain` a recently deleted account whose name may not be taken yet?
    pub fn is_tombstoned(&self, domain: &str, user: &str) -> Result<bool, StoreError> {
        Ok(
            match self.tombstones.get(self.tombstone_id(domain, user))? {
                Some(v) => v.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0) > now_secs(),
                None => false,
            },
        )
    }

    /// Forget tombstones whose time is up; returns how many.
    pub fn prune_tombstones(&self) -> Result<usize, StoreError> {
        let now = now_secs();
        let mut n = 0;
        for kv in self.tombstones.iter() {
            let (k, v) = kv?;
            if v.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0) <= now {
                self.tombstones.remove(k)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Remove an account and everything stored for it (see [`Store::delete_accounts`]);
    /// `Ok(false)` if it did not exist.
    pub fn delete_account(&self, domain: &str, user: &str) -> Result<bool, StoreError> {
        Ok(self.delete_accounts(&[(domain.to_owned(), user.to_owned())])? == 1)
    }

    /// The store's part of deleting accounts, the same whether the server runs or not
    /// (`actors::account::delete` adds what only a running server can do). For each
    /// `(domain, user)`:
    ///
    /// - block the name from being registered again for a while, so that a stranger cannot
    ///   take it over and receive what was meant for the old owner (a keyed hash only);
    /// - apply to each local contact's roster what the account's `unsubscribe` /
    ///   `unsubscribed` do (RFC 6121 §3.2-3.3; a running server has sent them already and
    ///   removed the roster, so this finds nothing left to do);
    /// - remove every record of the account;
    ///
    /// and then, for all of them at once (one pass over those trees), their affiliations and
    /// subscriptions on other accounts' PEP nodes (else whoever registers the name later
    /// inherits `member` access) and their delivery-error entries. What other accounts hold
    /// of their own accord stays theirs: roster items (with subscription `none`), block list
    /// entries, offline messages from the account, client data. Returns how many existed.
    pub fn delete_accounts(&self, accounts: &[(String, String)]) -> Result<usize, StoreError> {
        let block = self
            .tombstone_secs
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut existed = 0;
        let mut jids = std::collections::HashSet::new();
        for (domain, user) in accounts {
            // A name that was never taken is not blocked.
            if block > 0 && self.accounts.exists(domain, user)? {
                let until = now_secs() + block;
                self.tombstones
                    .insert(self.tombstone_id(domain, user), &until.to_be_bytes())?;
            }
            self.rosters.unsubscribe_local_contacts(domain, user)?;
            self.rosters.remove_account(domain, user)?;
            self.offline.remove_account(domain, user)?;
            self.client_data.remove_account(domain, user)?;
            self.pep.remove_account(domain, user)?;
            self.push.remove_account(domain, user)?;
            self.archive.remove_owner(domain, user)?;
            jids.insert(format!("{user}@{domain}"));
        }
        self.pep.forget(&jids)?;
        self.muc.forget(&jids)?;
        self.delivery_errors.forget(&jids)?;
        self.uploads.remove_accounts(accounts)?;
        // The account record last: once it is gone, so is everything else (and a crash
        // half-way leaves an account that the next deletion finishes).
        for (domain, user) in accounts {
            existed += self.accounts.remove(domain, user)? as usize;
        }
        self.flush()?;
        Ok(existed)
    }

    /// The names of every tree in the database (for the data inventory and the tests that
    /// check deletion tree by tree).
    pub fn tree_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .db
            .tree_names()
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        names.sort();
        names
    }

    /// Every entry of the tree `name`, as raw bytes.
    pub fn entries(&self, name: &str) -> Result<Vec<RawEntry>, StoreError> {
        let tree = self.db.open_tree(name)?;
        let mut out = Vec::new();
        for kv in tree.iter() {
            let (k, v) = kv?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

/// Create `dir` (and missing parents) readable by the owner only (0700), whatever the umask.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Refuse a data directory that other users may write to: they could replace the database
/// or the control socket.
fn check_not_shared(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)
            .map_err(|e| StoreError::Db(format!("data_dir {}: {e}", dir.display())))?
            .permissions()
            .mode();
        if mode & 0o022 != 0 {
            return Err(StoreError::Db(format!(
                "data_dir {}: writable by group or others (mode {:04o}); run chmod go-w on it",
                dir.display(),
                mode & 0o7777
            )));
        }
    }
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The key of an account (`domain NUL user`).
pub fn account_key(domain: &str, user: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(domain.len() + user.len() + 1);
    k.extend_from_slice(domain.as_bytes());
    k.push(0);
    k.extend_from_slice(user.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    /// `doc/data-inventory.md` lists exactly the trees a store has: every tree in its table of
    /// trees (rows starting with a tree name in backticks) and no other.
    #[test]
    fn data_inventory_lists_every_tree() {
        let doc = include_str!("../../doc/data-inventory.md");
        let section = doc
            .split("## Trees")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("a Trees section");
        let mut documented: Vec<String> = section
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .map(str::to_owned)
            .collect();
        documented.sort();
        let dir = tempfile::tempdir().unwrap();
        let store = super::Store::open(dir.path()).unwrap();
        // Every tree any code path opens exists once the store is open (and after first use).
        store.dialback_secret().unwrap();
        assert_eq!(store.tree_names(), documented);
    }
}
