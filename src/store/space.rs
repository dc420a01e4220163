//! The disk-space guard: new writes are refused while the file system holding the data
//! directory has less free space than `storage.min_free_mb`, so the database never runs into a
//! full disk in the middle of a write. What is refused gets `resource-constraint` (a `wait`
//! error: the client may try again later); deletions, and the last-login time the inactivity
//! rule depends on, still go through. The free space is looked up at most twice a second, and
//! each change of state is logged once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use super::StoreError;

/// How often the free space is looked up again, in milliseconds.
const RECHECK_MS: u64 = 500;

pub struct Space {
    dir: PathBuf,
    min_free: AtomicU64,
    start: Instant,
    /// Milliseconds since `start` of the last look-up, plus one (0: never).
    checked: AtomicU64,
    full: AtomicBool,
    free: AtomicU64,
    /// The database failed to write (the disk filled up under it anyway): sled refuses
    /// writes from then on, until a restart.
    failed: AtomicBool,
}

/// Bytes available to an unprivileged writer on the file system of `dir`.
pub fn available(dir: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `path` is a valid NUL-terminated string and `st` a plain struct statvfs fills.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

impl Space {
    pub fn new(dir: PathBuf, min_free_bytes: u64) -> Space {
        Space {
            dir,
            min_free: AtomicU64::new(min_free_bytes),
            start: Instant::now(),
            checked: AtomicU64::new(0),
            full: AtomicBool::new(false),
            free: AtomicU64::new(u64::MAX),
            failed: AtomicBool::new(false),
        }
    }

    /// Change the reserve (a configuration reload).
    pub fn set_min_free(&self, bytes: u64) {
        self.min_free.store(bytes, Ordering::Relaxed);
        self.checked.store(0, Ordering::Relaxed);
    }

    /// The database could not write: refuse every new write from now on (sled cannot recover
    /// without a restart), and say so once, with what the operator has to do.
    pub fn broken(&self, e: &StoreError) {
        if !self.failed.swap(true, Ordering::AcqRel) {
            log::error!(
                "database write failed ({e}): new writes are refused until kleiber is restarted; free disk space (keep storage.min_free_mb free), then restart; what was acknowledged before is on disk"
            );
        }
    }

    /// May a new write go ahead?
    pub fn check(&self) -> Result<(), StoreError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(StoreError::Full(
                "the database failed to write; restart needed".into(),
            ));
        }
        let min = self.min_free.load(Ordering::Relaxed);
        if min == 0 {
            return Ok(());
        }
        let now = self.start.elapsed().as_millis() as u64 + 1;
        let last = self.checked.load(Ordering::Relaxed);
        if last == 0 || now.saturating_sub(last) >= RECHECK_MS {
            // One thread looks; the others use the last answer.
            if self
                .checked
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.look(min);
            }
        }
        if self.full.load(Ordering::Acquire) {
            return Err(self.error());
        }
        Ok(())
    }

    fn look(&self, min: u64) {
        let free = match available(&self.dir) {
            Ok(f) => f,
            Err(e) => {
                // Not knowing is no reason to stop: sled reports real write failures itself.
                log::warn!("disk: cannot read the free space of the data directory: {e}");
                return;
            }
        };
        self.free.store(free, Ordering::Relaxed);
        let full = free < min;
        if self.full.swap(full, Ordering::AcqRel) != full {
            if full {
                log::error!(
                    "disk: {} MiB free on the data directory's file system, under storage.min_free_mb = {}: new writes (registrations, roster changes, offline messages, client data) are refused until space returns",
                    free >> 20,
                    min >> 20
                );
            } else {
                log::warn!(
                    "disk: {} MiB free again (storage.min_free_mb = {}): writes accepted",
                    free >> 20,
                    min >> 20
                );
            }
        }
    }

    fn error(&self) -> StoreError {
        StoreError::Full(format!(
            "{} MiB free, storage.min_free_mb = {}",
            self.free.load(Ordering::Relaxed) >> 20,
            self.min_free.load(Ordering::Relaxed) >> 20
        ))
    }

    /// May a file of `bytes` be written without going under the reserve (or, with no reserve
    /// set, past the free space)? Looks at the free space now.
    pub fn check_room(&self, bytes: u64) -> Result<(), StoreError> {
        self.check()?;
        let min = self.min_free.load(Ordering::Relaxed);
        let Ok(free) = available(&self.dir) else {
            return Ok(());
        };
        if free < bytes.saturating_add(min) {
            return Err(StoreError::Full(format!(
                "{} MiB free, {} MiB asked for, storage.min_free_mb = {}",
                free >> 20,
                bytes >> 20,
                min >> 20
            )));
        }
        Ok(())
    }

    /// Is the guard refusing writes now (as of the last look)?
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_below_the_reserve_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let free = available(dir.path()).unwrap();
        let space = Space::new(dir.path().to_owned(), free + (1 << 40));
        assert!(matches!(space.check(), Err(StoreError::Full(_))));
        assert!(space.is_full());
        space.set_min_free(1);
        assert!(space.check().is_ok());
        assert!(!space.is_full());
        space.set_min_free(0);
        assert!(space.check().is_ok());
    }
}
