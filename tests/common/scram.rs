//! The client side of SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677), as computations on
//! the SASL messages (no I/O, no XML, no base64 of the messages themselves). One copy serves
//! the tests (`tests/common/mod.rs`, `Client::auth_scram_cb`) and the load generator
//! (`benches/load/client.rs`, which includes this file with `#[path]`).
#![allow(dead_code)]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// `n=USER,r=NONCE`, with `=` and `,` in the user name escaped (RFC 5802 section 5.1).
pub fn client_first_bare(user: &str, nonce: &str) -> String {
    let user = user.replace('=', "=3D").replace(',', "=2C");
    format!("n={user},r={nonce}")
}

/// The parts of a server-first message the client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFirst {
    /// The combined nonce (the client's, extended by the server).
    pub nonce: String,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

impl ServerFirst {
    /// Parses `r=...,s=...,i=...`; a mandatory extension (`m=`), a missing part, a zero
    /// iteration count or a nonce that does not extend `client_nonce` is an error.
    pub fn parse(server_first: &str, client_nonce: &str) -> Result<ServerFirst, String> {
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for part in server_first.split(',') {
            if let Some(v) = part.strip_prefix("r=") {
                nonce = Some(v.to_owned());
            } else if let Some(v) = part.strip_prefix("s=") {
                salt = Some(B64.decode(v).map_err(|e| format!("SCRAM: salt: {e}"))?);
            } else if let Some(v) = part.strip_prefix("i=") {
                iterations = Some(v.parse::<u32>().map_err(|e| format!("SCRAM: i: {e}"))?);
            } else if part.starts_with("m=") {
                return Err("SCRAM: unsupported mandatory extension".into());
            }
        }
        let (nonce, salt, iterations) = match (nonce, salt, iterations) {
            (Some(r), Some(s), Some(i)) if i > 0 => (r, s, i),
            _ => return Err(format!("SCRAM: bad server-first {server_first:?}")),
        };
        if !nonce.starts_with(client_nonce) {
            return Err("SCRAM: server nonce does not extend ours".into());
        }
        Ok(ServerFirst {
            nonce,
            salt,
            iterations,
        })
    }
}

/// SaltedPassword: PBKDF2 with HMAC-SHA-256 (`sha256`) or HMAC-SHA-1.
pub fn salted_password(sha256: bool, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    if sha256 {
        let mut out = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
        out.to_vec()
    } else {
        let mut out = [0u8; 20];
        pbkdf2::pbkdf2_hmac::<Sha1>(password.as_bytes(), salt, iterations, &mut out);
        out.to_vec()
    }
}

pub fn hmac(sha256: bool, key: &[u8], data: &[u8]) -> Vec<u8> {
    if sha256 {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
        m.update(data);
        m.finalize().into_bytes().to_vec()
    } else {
        let mut m = <Hmac<Sha1> as Mac>::new_from_slice(key).expect("any key length");
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }
}

fn hash(sha256: bool, data: &[u8]) -> Vec<u8> {
    if sha256 {
        Sha256::digest(data).to_vec()
    } else {
        Sha1::digest(data).to_vec()
    }
}

/// A client-final message and the server signature that proves the server knew the password.
#[derive(Debug, Clone)]
pub struct ClientFinal {
    /// `c=...,r=...,p=...`
    pub message: String,
    /// ServerSignature, to compare with the `v=` of server-final.
    pub server_signature: Vec<u8>,
}

/// client-final for `salted` (see `salted_password`), with channel binding `cbind` (the GS2
/// header, e.g. `n,,`, followed by the channel-binding data if any).
pub fn client_final(
    sha256: bool,
    salted: &[u8],
    client_first_bare: &str,
    server_first: &str,
    nonce: &str,
    cbind: &[u8],
) -> ClientFinal {
    let without_proof = format!("c={},r={nonce}", B64.encode(cbind));
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let client_key = hmac(sha256, salted, b"Client Key");
    let stored_key = hash(sha256, &client_key);
    let client_sig = hmac(sha256, &stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&client_sig)
        .map(|(a, b)| a ^ b)
        .collect();
    let server_key = hmac(sha256, salted, b"Server Key");
    ClientFinal {
        message: format!("{without_proof},p={}", B64.encode(proof)),
        server_signature: hmac(sha256, &server_key, auth_message.as_bytes()),
    }
}

/// Checks a server-final message (`v=...` or `e=...`) against the expected signature.
pub fn verify_server_final(server_final: &str, server_signature: &[u8]) -> Result<(), String> {
    if let Some(e) = server_final.strip_prefix("e=") {
        return Err(format!("SCRAM server error: {e}"));
    }
    let v = server_final
        .split(',')
        .find_map(|p| p.strip_prefix("v="))
        .ok_or("SCRAM: no server signature")?;
    match B64.decode(v) {
        Ok(sig) if sig == server_signature => Ok(()),
        _ => Err("SCRAM: wrong server signature".into()),
    }
}
