//! The `accounts` tree: `domain NUL user` -> [`AccountRecord`] (JSON, versioned).
//!
//! A record holds what the privacy policy lists: the account exists (its JID is the key), its
//! password only as the hashes it is given (derived by `crate::credentials`), and when it last logged in and out. Records of format 1 also held
//! the creation time, which the policy does not list; it is dropped when such a record is read
//! and written again, and from every record when the store opens (schema 2). The password is
//! kept as a list of [`Credential`]s, one per algorithm, so a later change of algorithms adds
//! or drops entries (at the next password change or login) without losing accounts.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{account_key, StoreError};
use crate::sasl::{ScramCredentials, ScramHash};

/// Current record format (2: no creation time).
const RECORD_VERSION: u32 = 2;

/// One stored password verifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "alg")]
pub enum Credential {
    /// bcrypt hash of the SASLprepped password, checked for SASL PLAIN.
    #[serde(rename = "bcrypt")]
    Bcrypt { hash: String },
    /// RFC 5802 credentials for SCRAM-SHA-1.
    #[serde(rename = "SCRAM-SHA-1")]
    ScramSha1(ScramRecord),
    /// RFC 7677 credentials for SCRAM-SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256(ScramRecord),
}

/// Stored SCRAM credentials, base64 in the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramRecord {
    pub salt: String,
    pub iterations: u32,
    pub stored_key: String,
    pub server_key: String,
}

impl ScramRecord {
    /// The record of derived credentials (`crate::credentials`).
    pub fn from_creds(c: &ScramCredentials) -> Self {
        ScramRecord {
            salt: B64.encode(&c.salt),
            iterations: c.iterations,
            stored_key: B64.encode(&c.stored_key),
            server_key: B64.encode(&c.server_key),
        }
    }

    fn to_creds(&self) -> Option<ScramCredentials> {
        Some(ScramCredentials {
            salt: B64.decode(&self.salt).ok()?,
            iterations: self.iterations,
            stored_key: B64.decode(&self.stored_key).ok()?,
            server_key: B64.decode(&self.server_key).ok()?,
        })
    }
}

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// Record format version.
    pub v: u32,
    /// Last successful login, seconds since the epoch (for inactive-account deletion).
    pub last_login: u64,
    /// Last logout, seconds since the epoch (XEP-0012 last activity); 0 = never.
    #[serde(default)]
    pub last_logout: u64,
    /// Password verifiers; never the password.
    pub credentials: Vec<Credential>,
}

impl AccountRecord {
    /// A new record created now.
    pub fn new(credentials: Vec<Credential>, now: u64) -> Self {
        AccountRecord {
            v: RECORD_VERSION,
            last_login: now,
            last_logout: 0,
            credentials,
        }
    }

    /// The bcrypt hash, if stored.
    pub fn bcrypt(&self) -> Option<&str> {
        self.credentials.iter().find_map(|c| match c {
            Credential::Bcrypt { hash } => Some(hash.as_str()),
            _ => None,
        })
    }

    /// SCRAM credentials for `hash`, if stored.
    pub fn scram(&self, hash: ScramHash) -> Option<ScramCredentials> {
        self.credentials.iter().find_map(|c| match (c, hash) {
            (Credential::ScramSha1(r), ScramHash::Sha1) => r.to_creds(),
            (Credential::ScramSha256(r), ScramHash::Sha256) => r.to_creds(),
            _ => None,
        })
    }
}

/// Handle on the accounts tree.
#[derive(Clone)]
pub struct Accounts {
    tree: sled::Tree,
    space: std::sync::Arc<super::space::Space>,
}

fn encode(r: &AccountRecord) -> Vec<u8> {
    serde_json::to_vec(r).expect("account record serialises")
}

fn decode(b: &[u8]) -> Result<AccountRecord, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt(format!("account: {e}")))
}

impl Accounts {
    pub(super) fn new(tree: sled::Tree, space: std::sync::Arc<super::space::Space>) -> Self {
        Accounts { tree, space }
    }

    /// Create an account; `Ok(false)` if the name is taken (atomic).
    pub fn create(
        &self,
        domain: &str,
        user: &str,
        rec: &AccountRecord,
    ) -> Result<bool, StoreError> {
        self.space.check()?;
        let r = self.tree.compare_and_swap(
            account_key(domain, user),
            None as Option<&[u8]>,
            Some(encode(rec)),
        )?;
        Ok(r.is_ok())
    }

    /// The account, if it exists.
    pub fn get(&self, domain: &str, user: &str) -> Result<Option<AccountRecord>, StoreError> {
        self.tree
            .get(account_key(domain, user))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Does the account exist?
    pub fn exists(&self, domain: &str, user: &str) -> Result<bool, StoreError> {
        Ok(self.tree.contains_key(account_key(domain, user))?)
    }

    /// Apply `f` to the stored record atomically; `Ok(false)` if the account does not exist.
    /// Not held back by the disk-space guard (the last-login time must be kept); callers that
    /// make a new write of their own (a password change) ask `Store::space` first.
    pub fn update(
        &self,
        domain: &str,
        user: &str,
        f: impl Fn(&mut AccountRecord),
    ) -> Result<bool, StoreError> {
        let key = account_key(domain, user);
        loop {
            let Some(old) = self.tree.get(&key)? else {
                return Ok(false);
            };
            let mut rec = decode(&old)?;
            f(&mut rec);
            if self
                .tree
                .compare_and_swap(&key, Some(old), Some(encode(&rec)))?
                .is_ok()
            {
                return Ok(true);
            }
        }
    }

    /// Remove the account record; `Ok(false)` if there was none.
    pub fn remove(&self, domain: &str, user: &str) -> Result<bool, StoreError> {
        Ok(self.tree.remove(account_key(domain, user))?.is_some())
    }

    /// User names of `domain`, sorted.
    pub fn list(&self, domain: &str) -> Result<Vec<String>, StoreError> {
        let mut prefix = domain.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(&prefix) {
            let (k, _) = kv?;
            out.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
        }
        Ok(out)
    }

    /// Every account on every host: (domain, user, record).
    pub fn all(&self) -> Result<Vec<(String, String, AccountRecord)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.iter() {
            let (k, v) = kv?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let Some((domain, user)) = key.split_once('\0') else {
                continue;
            };
            out.push((domain.to_owned(), user.to_owned(), decode(&v)?));
        }
        Ok(out)
    }

    /// Schema 1 -> 2: write every record again in the current format (no creation time).
    /// Returns how many records changed.
    pub(super) fn migrate_records(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        for kv in self.tree.iter() {
            let (k, old) = kv?;
            let mut rec = decode(&old)?;
            rec.v = RECORD_VERSION;
            let new = encode(&rec);
            if new != old.as_ref() {
                // Not over a concurrent write (there is none while the store opens).
                let _ = self.tree.compare_and_swap(&k, Some(old), Some(new))?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Number of accounts on all hosts.
    pub fn count(&self) -> usize {
        self.tree.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_get_update_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        let a = &store.accounts;
        let creds = crate::credentials::derive("pencil", 4, 4096).unwrap();
        let rec = AccountRecord::new(creds, 100);
        assert!(a.create("x.test", "juliet", &rec).unwrap());
        assert!(!a.create("x.test", "juliet", &rec).unwrap(), "taken");
        let got = a.get("x.test", "juliet").unwrap().unwrap();
        assert!(crate::credentials::verify_bcrypt(&got, "pencil"));
        assert!(!crate::credentials::verify_bcrypt(&got, "pencil2"));
        assert!(got.scram(ScramHash::Sha256).is_some());
        assert!(a
            .update("x.test", "juliet", |r| r.last_login = 200)
            .unwrap());
        assert_eq!(a.get("x.test", "juliet").unwrap().unwrap().last_login, 200);
        assert_eq!(a.list("x.test").unwrap(), vec!["juliet".to_owned()]);
        assert!(a.list("x.tes").unwrap().is_empty());
        assert!(store.delete_account("x.test", "juliet").unwrap());
        assert!(a.get("x.test", "juliet").unwrap().is_none());
    }

    #[test]
    fn record_format_is_stable_json() {
        let rec = AccountRecord::new(vec![Credential::Bcrypt { hash: "h".into() }], 5);
        let s = String::from_utf8(encode(&rec)).unwrap();
        assert_eq!(
            s,
            r#"{"v":2,"last_login":5,"last_logout":0,"credentials":[{"alg":"bcrypt","hash":"h"}]}"#
        );
    }

    #[test]
    fn format_1_records_load_and_lose_their_creation_time() {
        let old = r#"{"v":1,"created":5,"last_login":7,"last_logout":0,"credentials":[{"alg":"bcrypt","hash":"h"}]}"#;
        let rec = decode(old.as_bytes()).unwrap();
        assert_eq!(rec.last_login, 7);
        assert!(!String::from_utf8(encode(&rec)).unwrap().contains("created"));
        // A store of schema 1 is migrated when it opens.
        let dir = tempfile::tempdir().unwrap();
        {
            let store = crate::store::Store::open(dir.path()).unwrap();
            let tree = store.db.open_tree("accounts").unwrap();
            tree.insert(account_key("x", "old"), old.as_bytes())
                .unwrap();
            let meta = store.db.open_tree("meta").unwrap();
            meta.insert("schema", &1u32.to_be_bytes()).unwrap();
            store.flush().unwrap();
        }
        let store = crate::store::Store::open(dir.path()).unwrap();
        let raw = store.entries("accounts").unwrap();
        assert_eq!(raw.len(), 1);
        assert!(!String::from_utf8_lossy(&raw[0].1).contains("created"));
        assert_eq!(
            store.accounts.get("x", "old").unwrap().unwrap().last_login,
            7
        );
    }
}
