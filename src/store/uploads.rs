//! The `uploads` tree and the `<data_dir>/uploads` directory: files shared with XEP-0363 HTTP
//! File Upload.
//!
//! `token` -> JSON [`Upload`]: the owner (host, user), the file name as it appears in the URL,
//! size, content type and upload time. The file itself is `<data_dir>/uploads/<token>` (0600
//! in a 0700 directory); while it is being written it is `<token>.<random>.part`, renamed when complete,
//! so an interrupted upload leaves no file under a token's name (and `.part` files are removed
//! at start). The token is the random part of the URL (at least 128 bits), so it is also the
//! only way to find a file. Files go after `upload.expire_after_days` (the scheduler, at start
//! and hourly) and with their owner's account. Snapshots hold the tree, not the files.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::StoreError;

/// One stored file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// Format version (1).
    pub v: u32,
    /// The owner's host.
    pub domain: String,
    /// The owner's user name.
    pub user: String,
    /// The file name as in the URL (sanitised).
    pub filename: String,
    pub size: u64,
    pub content_type: String,
    /// When the upload completed (seconds since the epoch).
    pub uploaded: u64,
}

/// Handle on the tree and the directory.
#[derive(Clone)]
pub struct Uploads {
    tree: sled::Tree,
    dir: PathBuf,
    space: std::sync::Arc<super::space::Space>,
}

fn decode(v: &[u8]) -> Result<Upload, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt(format!("upload: {e}")))
}

/// A token as it may appear in a file name: URL-safe base64 only.
fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 64
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Uploads {
    pub(super) fn new(
        tree: sled::Tree,
        data_dir: &Path,
        space: std::sync::Arc<super::space::Space>,
    ) -> Self {
        let dir = data_dir.join("uploads");
        // Left by uploads a crash or a stop interrupted.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with(".part") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Uploads { tree, dir, space }
    }

    /// The directory of the files (created 0700 when needed).
    pub fn dir(&self) -> Result<&Path, StoreError> {
        super::create_private_dir(&self.dir)
            .map_err(|e| StoreError::Db(format!("{}: {e}", self.dir.display())))?;
        Ok(&self.dir)
    }

    /// Where the file of `token` is (or will be); `None` for a token that cannot be one.
    pub fn path_of(&self, token: &str) -> Option<PathBuf> {
        valid_token(token).then(|| self.dir.join(token))
    }

    /// Where the file of `token` is written before it is complete (a name of its own for each
    /// attempt, so that a failed attempt's clean-up never meets the next one's file).
    pub fn part_path_of(&self, token: &str) -> Option<PathBuf> {
        let attempt = crate::sasl::random_bytes(6)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        valid_token(token).then(|| self.dir.join(format!("{token}.{attempt}.part")))
    }

    pub fn get(&self, token: &str) -> Result<Option<Upload>, StoreError> {
        self.tree.get(token)?.map(|v| decode(&v)).transpose()
    }

    /// Record a completed upload (its file is in place).
    pub fn put(&self, token: &str, u: &Upload) -> Result<(), StoreError> {
        self.space.check()?;
        let v = serde_json::to_vec(u).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.tree.insert(token, v)?;
        Ok(())
    }

    /// Every stored upload, with its token.
    pub fn all(&self) -> Result<Vec<(String, Upload)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.iter() {
            let (k, v) = kv?;
            out.push((String::from_utf8_lossy(&k).into_owned(), decode(&v)?));
        }
        Ok(out)
    }

    /// Bytes the account `user@domain` has stored.
    pub fn usage(&self, domain: &str, user: &str) -> Result<u64, StoreError> {
        Ok(self
            .all()?
            .iter()
            .filter(|(_, u)| u.domain == domain && u.user == user)
            .map(|(_, u)| u.size)
            .sum())
    }

    /// Remove the upload `token`: its record, then its file. Returns whether it existed.
    pub fn remove(&self, token: &str) -> Result<bool, StoreError> {
        let existed = self.tree.remove(token)?.is_some();
        if let Some(p) = self.path_of(token) {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::error!("uploads: cannot delete a file: {e}"),
            }
        }
        Ok(existed)
    }

    /// Remove the uploads completed before `before_secs`; returns how many.
    pub fn expire(&self, before_secs: u64) -> Result<usize, StoreError> {
        let mut n = 0;
        for (token, u) in self.all()? {
            if u.uploaded < before_secs {
                n += usize::from(self.remove(&token)?);
            }
        }
        Ok(n)
    }

    /// Remove every upload of the accounts `(domain, user)`; returns how many.
    pub fn remove_accounts(&self, accounts: &[(String, String)]) -> Result<usize, StoreError> {
        let mut n = 0;
        for (token, u) in self.all()? {
            if accounts
                .iter()
                .any(|(d, user)| *d == u.domain && *user == u.user)
            {
                n += usize::from(self.remove(&token)?);
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn upload(user: &str, uploaded: u64) -> Upload {
        Upload {
            v: 1,
            domain: "x".into(),
            user: user.into(),
            filename: "a.txt".into(),
            size: 3,
            content_type: "text/plain".into(),
            uploaded,
        }
    }

    #[test]
    fn expiry_and_account_removal_delete_records_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let up = &s.uploads;
        up.dir().unwrap();
        for (t, u, at) in [
            ("t1", "alice", 10),
            ("t2", "alice", 1000),
            ("t3", "bob", 500),
        ] {
            std::fs::write(up.path_of(t).unwrap(), b"abc").unwrap();
            up.put(t, &upload(u, at)).unwrap();
        }
        assert_eq!(up.usage("x", "alice").unwrap(), 6);
        assert_eq!(up.expire(100).unwrap(), 1);
        assert!(!up.path_of("t1").unwrap().exists());
        assert!(up.path_of("t3").unwrap().exists());
        assert!(up.path_of("t2").unwrap().exists());
        assert_eq!(
            up.remove_accounts(&[("x".into(), "alice".into())]).unwrap(),
            1
        );
        assert!(!up.path_of("t2").unwrap().exists());
        // The store's part of deleting an account (running server or not) takes them too.
        s.delete_account("x", "bob").unwrap();
        assert!(!up.path_of("t3").unwrap().exists());
        assert!(up.all().unwrap().is_empty());
        assert!(up.path_of("../etc").is_none());
    }
}
