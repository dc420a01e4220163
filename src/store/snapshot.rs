//! Snapshots: every tree of the database written to one file, and read back into a new data
//! directory. Used by the scheduler (periodic snapshots, pruned after `snapshots.keep_days`),
//! `kleiber backup` and `kleiber restore`.
//!
//! Format: the line `KLEIBER-SNAPSHOT 1\n`, then per tree: `u32` name length, name, then per
//! entry `u8 1`, `u32` key length, key, `u32` value length, value; `u8 0` ends the tree. All
//! integers big-endian. The file is created with mode 0600 (it holds everything the server
//! stores, including password hashes and offline messages).

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use super::{Store, StoreError};

const MAGIC: &[u8] = b"KLEIBER-SNAPSHOT 1\n";

/// Entries never written to a snapshot: (tree, key). The dialback secret (XEP-0185) is made
/// again at random after a restore (peers then verify this server's new keys; nothing is
/// lost), so a snapshot cannot be used to pass as this server. The tombstone key stays: the
/// name blocks in the snapshot are hashes under it and would stop working without it, and
/// with it a snapshot tells no more than the snapshots of the same month hold anyway (the
/// deleted accounts themselves).
const NOT_IN_SNAPSHOTS: &[(&[u8], &[u8])] = &[(b"meta", b"dialback_secret")];

/// Trees whose entries never go into a snapshot: `uploads` describes files that snapshots do
/// not hold (they are large and short-lived), so a restore starts without shared files.
const TREES_NOT_IN_SNAPSHOTS: &[&[u8]] = &[b"uploads"];

fn io(e: std::io::Error) -> StoreError {
    StoreError::Db(format!("snapshot: {e}"))
}

impl Store {
    /// Write every tree to `path` (replaced atomically: written to a temporary file first).
    pub fn snapshot(&self, path: &Path) -> Result<(), StoreError> {
        let tmp = path.with_extension("tmp");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut w = BufWriter::new(opts.open(&tmp).map_err(io)?);
        w.write_all(MAGIC).map_err(io)?;
        for name in self.db.tree_names() {
            let tree = self.db.open_tree(&name)?;
            w.write_all(&(name.len() as u32).to_be_bytes())
                .map_err(io)?;
            w.write_all(&name).map_err(io)?;
            for kv in tree.iter() {
                let (k, v) = kv?;
                if NOT_IN_SNAPSHOTS.contains(&(&name[..], &k[..]))
                    || TREES_NOT_IN_SNAPSHOTS.contains(&&name[..])
                {
                    continue;
                }
                w.write_all(&[1]).map_err(io)?;
                for part in [&k[..], &v[..]] {
                    w.write_all(&(part.len() as u32).to_be_bytes())
                        .map_err(io)?;
                    w.write_all(part).map_err(io)?;
                }
            }
            w.write_all(&[0]).map_err(io)?;
        }
        w.flush().map_err(io)?;
        w.get_ref().sync_all().map_err(io)?;
        drop(w);
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Load a snapshot into this (new, empty) database.
    pub fn restore_from(&self, path: &Path) -> Result<usize, StoreError> {
        let mut r = BufReader::new(std::fs::File::open(path).map_err(io)?);
        let mut magic = vec![0u8; MAGIC.len()];
        r.read_exact(&mut magic).map_err(io)?;
        if magic != MAGIC {
            return Err(StoreError::Corrupt(format!(
                "{}: not a kleiber snapshot",
                path.display()
            )));
        }
        let read_chunk = |r: &mut BufReader<std::fs::File>| -> Result<Vec<u8>, StoreError> {
            let mut len = [0u8; 4];
            r.read_exact(&mut len).map_err(io)?;
            let len = u32::from_be_bytes(len) as usize;
            if len > 64 * 1024 * 1024 {
                return Err(StoreError::Corrupt("snapshot entry too large".into()));
            }
            let mut buf = vec![0u8; len];
            r.read_exact(&mut buf).map_err(io)?;
            Ok(buf)
        };
        let mut entries = 0;
        loop {
            let mut len = [0u8; 4];
            match r.read_exact(&mut len) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(io(e)),
            }
            let mut name = vec![0u8; u32::from_be_bytes(len) as usize];
            r.read_exact(&mut name).map_err(io)?;
            let tree = self.db.open_tree(&name)?;
            loop {
                let mut marker = [0u8; 1];
                r.read_exact(&mut marker).map_err(io)?;
                if marker[0] == 0 {
                    break;
                }
                let k = read_chunk(&mut r)?;
                let v = read_chunk(&mut r)?;
                tree.insert(k, v)?;
                entries += 1;
            }
        }
        self.flush()?;
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("a")).unwrap();
        let creds = crate::credentials::derive("pw", 4, 4096).unwrap();
        let rec = crate::store::AccountRecord::new(creds, 1);
        store.accounts.create("x", "juliet", &rec).unwrap();
        store
            .client_data
            .set_vcard("x", "juliet", "<vCard xmlns='vcard-temp'/>")
            .unwrap();
        store
            .offline
            .push("x", "juliet", 5, "<message/>".into())
            .unwrap();
        let snap = dir.path().join("s.snap");
        store.snapshot(&snap).unwrap();
        let restored = crate::store::Store::open(&dir.path().join("b")).unwrap();
        assert!(restored.restore_from(&snap).unwrap() >= 3);
        assert_eq!(restored.accounts.get("x", "juliet").unwrap(), Some(rec));
        assert!(restored.client_data.vcard("x", "juliet").unwrap().is_some());
        assert_eq!(restored.offline.usage("x", "juliet").unwrap().count, 1);
        assert!(restored.restore_from(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn no_dialback_secret_in_snapshots_but_name_blocks_survive() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("a")).unwrap();
        let secret = store.dialback_secret().unwrap();
        let creds = crate::credentials::derive("pw", 4, 4096).unwrap();
        let rec = crate::store::AccountRecord::new(creds, 1);
        store.accounts.create("x", "gone", &rec).unwrap();
        store.delete_account("x", "gone").unwrap();
        let snap = dir.path().join("s.snap");
        store.snapshot(&snap).unwrap();
        let bytes = std::fs::read(&snap).unwrap();
        assert!(!bytes.windows(secret.len()).any(|w| w == secret));
        crate::store::Store::open(&dir.path().join("b"))
            .unwrap()
            .restore_from(&snap)
            .unwrap();
        let restored = crate::store::Store::open(&dir.path().join("b")).unwrap();
        assert_ne!(restored.dialback_secret().unwrap(), secret, "made anew");
        assert!(restored.is_tombstoned("x", "gone").unwrap());
    }
}
