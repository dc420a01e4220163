//! Server Dialback keys (XEP-0220, generated as XEP-0185 recommends).
//!
//! A key is `HMAC-SHA256(SHA256(secret), receiving ' ' originating ' ' stream-id)` in lower-case
//! hex. The secret is random, made on first start and kept in the database (`meta`), so keys
//! stay verifiable across a restart and no one else can compute them.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The dialback key the originating server sends for a stream to the receiving server.
pub fn key(secret: &[u8], receiving: &str, originating: &str, stream_id: &str) -> String {
    let k = Sha256::digest(secret);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(hex(&k).as_bytes())
        .expect("HMAC accepts any key length");
    mac.update(receiving.as_bytes());
    mac.update(b" ");
    mac.update(originating.as_bytes());
    mac.update(b" ");
    mac.update(stream_id.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Is `given` the key we would have sent (compared in constant time)?
pub fn check(
    secret: &[u8],
    receiving: &str,
    originating: &str,
    stream_id: &str,
    given: &str,
) -> bool {
    let want = key(secret, receiving, originating, stream_id);
    want.as_bytes().ct_eq(given.trim().as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hex_sha256_and_bound_to_every_input() {
        let k = key(b"s3cr3t", "example.net", "example.com", "D60000229F");
        assert_eq!(k.len(), 64);
        assert!(k
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(
            k,
            key(b"s3cr3t", "example.net", "example.com", "D60000229F")
        );
        for other in [
            key(b"s3cr3u", "example.net", "example.com", "D60000229F"),
            key(b"s3cr3t", "example.org", "example.com", "D60000229F"),
            key(b"s3cr3t", "example.net", "example.org", "D60000229F"),
            key(b"s3cr3t", "example.net", "example.com", "D60000229G"),
        ] {
            assert_ne!(k, other);
        }
    }

    #[test]
    fn check_is_exact() {
        let k = key(b"x", "b.test", "a.test", "id1");
        assert!(check(b"x", "b.test", "a.test", "id1", &k));
        assert!(!check(b"x", "a.test", "b.test", "id1", &k));
        assert!(!check(b"x", "b.test", "a.test", "id2", &k));
        assert!(!check(b"y", "b.test", "a.test", "id1", &k));
        assert!(!check(b"x", "b.test", "a.test", "id1", ""));
    }
}
