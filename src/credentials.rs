//! Password verifiers: what an account's password becomes before the store keeps it, and the
//! check of a password against them for SASL PLAIN.
//!
//! A new password (already SASLprepped, [`crate::sasl::prep_password`]) is hashed with bcrypt
//! (for PLAIN) and turned into SCRAM-SHA-1 and SCRAM-SHA-256 credentials with fresh random
//! salts (RFC 5802, RFC 7677). The store persists the [`Credential`]s it is given
//! (`store/accounts.rs`); it never sees the password. Everything here runs bcrypt or PBKDF2:
//! call it on a blocking pool only.

use crate::sasl::{random_bytes, ScramCredentials, ScramHash};
use crate::store::accounts::{AccountRecord, Credential, ScramRecord};
use crate::store::StoreError;

/// Longest password bcrypt can hash without truncating it (72 bytes including the terminating
/// NUL the crate appends); longer ones are refused (a silently
/// truncated password would accept any password sharing its first 72 bytes).
pub const MAX_PASSWORD_BYTES: usize = 71;

/// Bytes of each new SCRAM salt.
const SALT_BYTES: usize = 16;

/// Derive every verifier for a (SASLprepped) password. Fails (as a database error, the error
/// of the write it is made for) when bcrypt refuses the password, e.g. one longer than
/// [`MAX_PASSWORD_BYTES`].
pub fn derive(
    password: &str,
    bcrypt_cost: u32,
    scram_iterations: u32,
) -> Result<Vec<Credential>, StoreError> {
    let hash = bcrypt::non_truncating_hash(password, bcrypt_cost)
        .map_err(|e| StoreError::Db(format!("bcrypt: {e}")))?;
    let scram = |hash: ScramHash| {
        let salt = random_bytes(SALT_BYTES);
        ScramRecord::from_creds(&ScramCredentials::derive(
            hash,
            password,
            &salt,
            scram_iterations,
        ))
    };
    Ok(vec![
        Credential::Bcrypt { hash },
        Credential::ScramSha1(scram(ScramHash::Sha1)),
        Credential::ScramSha256(scram(ScramHash::Sha256)),
    ])
}

/// Check a (SASLprepped) password against the stored bcrypt hash.
/// Whether [`set_password`] makes an account or changes its password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetPassword {
    /// A new account; `false` when the name is taken.
    Create,
    /// A new password for an existing account; `false` when there is no such account.
    Change,
}

/// Store the verifiers of `password` (SASLprepped) for `user@host`, with the configured
/// costs, and flush them to disk: the one path of in-band registration and password change,
/// the control socket and `kleiber user add/passwd`. Blocking (bcrypt, fsync).
pub fn set_password(
    store: &crate::store::Store,
    auth: &crate::config::AuthConfig,
    (host, user): (&str, &str),
    password: &str,
    what: SetPassword,
) -> Result<bool, StoreError> {
    // Before the hashing: a full disk refuses at once.
    store.space.check()?;
    let creds = derive(password, auth.bcrypt_cost, auth.scram_iterations)?;
    let done = match what {
        SetPassword::Create => {
            let record = AccountRecord::new(creds, crate::store::now_secs());
            store.accounts.create(host, user, &record)?
        }
        SetPassword::Change => store
            .accounts
            .update(host, user, move |r| r.credentials = creds.clone())?,
    };
    if done {
        store.flush()?;
    }
    Ok(done)
}

pub fn verify_bcrypt(record: &AccountRecord, password: &str) -> bool {
    match record.bcrypt() {
        Some(h) => bcrypt::non_truncating_verify(password, h).unwrap_or(false),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_passwords_are_refused_not_truncated() {
        assert!(derive(&"a".repeat(MAX_PASSWORD_BYTES + 1), 4, 4096).is_err());
        let creds = derive(&"a".repeat(MAX_PASSWORD_BYTES), 4, 4096).unwrap();
        let rec = AccountRecord::new(creds, 0);
        assert!(verify_bcrypt(&rec, &"a".repeat(MAX_PASSWORD_BYTES)));
        assert!(!verify_bcrypt(&rec, &"a".repeat(MAX_PASSWORD_BYTES + 1)));
    }

    #[test]
    fn every_algorithm_gets_its_own_salt() {
        let rec = AccountRecord::new(derive("pencil", 4, 4096).unwrap(), 0);
        let (sha1, sha256) = (
            rec.scram(ScramHash::Sha1).unwrap(),
            rec.scram(ScramHash::Sha256).unwrap(),
        );
        assert_eq!((sha1.salt.len(), sha1.iterations), (SALT_BYTES, 4096));
        assert_ne!(sha1.salt, sha256.salt);
        let again = AccountRecord::new(derive("pencil", 4, 4096).unwrap(), 0);
        assert_ne!(again.scram(ScramHash::Sha256).unwrap().salt, sha256.salt);
    }
}
