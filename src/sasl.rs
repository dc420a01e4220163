//! SASL mechanisms (RFC 6120 §6): SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677), each
//! also `-PLUS` with channel binding (`tls-exporter`, RFC 9266, and `tls-server-end-point`,
//! RFC 5929), and PLAIN (RFC 4616).
//!
//! Pure functions and small state machines: the caller looks up the stored credentials and
//! supplies the TLS channel-binding data. Secrets are compared in constant time. The expensive
//! parts (PBKDF2 when credentials are derived, bcrypt for PLAIN) are only ever called on a
//! blocking pool by the caller; a SCRAM exchange itself costs a few HMACs.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::xml::Element;
use crate::xmpp::ns;

/// The hash function of a SCRAM variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => {
                let mut m = Hmac::<Sha1>::new_from_slice(key).expect("any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            ScramHash::Sha256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => {
                let mut out = [0u8; 20];
                pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            ScramHash::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

/// The mechanisms the server offers, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    ScramSha256Plus,
    ScramSha1Plus,
    ScramSha256,
    ScramSha1,
    Plain,
}

impl Mechanism {
    /// All mechanisms, in the order they are advertised.
    pub const ALL: [Mechanism; 5] = [
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ];

    /// The IANA name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }

    /// Look a mechanism up by name.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Is this a channel-binding (`-PLUS`) variant?
    pub fn is_plus(self) -> bool {
        matches!(self, Mechanism::ScramSha256Plus | Mechanism::ScramSha1Plus)
    }

    /// The SCRAM hash, or `None` for PLAIN.
    pub fn scram_hash(self) -> Option<ScramHash> {
        match self {
            Mechanism::ScramSha256Plus | Mechanism::ScramSha256 => Some(ScramHash::Sha256),
            Mechanism::ScramSha1Plus | Mechanism::ScramSha1 => Some(ScramHash::Sha1),
            Mechanism::Plain => None,
        }
    }
}

/// Stored SCRAM credentials for one hash (RFC 5802 §3): the password itself is never kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl ScramCredentials {
    /// Derive credentials from a (SASLprepped) password. Runs PBKDF2: blocking pool only.
    pub fn derive(hash: ScramHash, password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = hash.salted_password(password.as_bytes(), salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        ScramCredentials {
            salt: salt.to_vec(),
            iterations,
            stored_key: hash.hash(&client_key),
            server_key: hash.hmac(&salted, b"Server Key"),
        }
    }

    /// Credentials that match no password, used for unknown users so that an attacker cannot
    /// tell them from wrong passwords: `salt` must be the same for every attempt on the same
    /// name (a real account always shows its one salt) and `iterations` the configured count.
    pub fn decoy(hash: ScramHash, iterations: u32, salt: Vec<u8>) -> Self {
        let len = match hash {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        };
        ScramCredentials {
            salt,
            iterations,
            stored_key: random_bytes(len),
            server_key: random_bytes(len),
        }
    }
}

/// SASLprep (RFC 4013) of a password; `None` if it contains prohibited characters.
pub fn prep_password(password: &str) -> Option<String> {
    stringprep::saslprep(password).ok().map(|c| c.into_owned())
}

/// Channel-binding data of the TLS connection the exchange runs over.
#[derive(Debug, Clone, Default)]
pub struct ChannelBinding {
    /// RFC 9266 `tls-exporter` (TLS 1.3 only).
    pub tls_exporter: Option<Vec<u8>>,
    /// RFC 5929 `tls-server-end-point` (hash of the server certificate).
    pub tls_server_end_point: Option<Vec<u8>>,
}

impl ChannelBinding {
    /// Names of the available channel-binding types (XEP-0440).
    pub fn types(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.tls_exporter.is_some() {
            v.push("tls-exporter");
        }
        if self.tls_server_end_point.is_some() {
            v.push("tls-server-end-point");
        }
        v
    }

    fn data(&self, name: &str) -> Option<&[u8]> {
        match name {
            "tls-exporter" => self.tls_exporter.as_deref(),
            "tls-server-end-point" => self.tls_server_end_point.as_deref(),
            _ => None,
        }
    }

    /// Is any `-PLUS` mechanism possible on this connection?
    pub fn any(&self) -> bool {
        self.tls_exporter.is_some() || self.tls_server_end_point.is_some()
    }
}

/// SASL failure conditions (RFC 6120 §6.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Aborted,
    AccountDisabled,
    CredentialsExpired,
    EncryptionRequired,
    IncorrectEncoding,
    InvalidAuthzid,
    InvalidMechanism,
    MalformedRequest,
    MechanismTooWeak,
    /// A wrong password, or a user name without an account: the only failure that counts
    /// toward the growing login delays.
    NotAuthorized,
    /// The channel binding asked for does not fit this connection (a type it does not have,
    /// such as `tls-unique` on TLS 1.3; the `y` downgrade flag while `-PLUS` is offered; `c=`
    /// data that differ). Sent as `not-authorized` (RFC 5802 §6), but it says nothing about
    /// the password: the client's next mechanism is tried at once.
    ChannelBinding,
    TemporaryAuthFailure,
}

impl Failure {
    /// The condition element name.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Aborted => "aborted",
            Failure::AccountDisabled => "account-disabled",
            Failure::CredentialsExpired => "credentials-expired",
            Failure::EncryptionRequired => "encryption-required",
            Failure::IncorrectEncoding => "incorrect-encoding",
            Failure::InvalidAuthzid => "invalid-authzid",
            Failure::InvalidMechanism => "invalid-mechanism",
            Failure::MalformedRequest => "malformed-request",
            Failure::MechanismTooWeak => "mechanism-too-weak",
            Failure::NotAuthorized | Failure::ChannelBinding => "not-authorized",
            Failure::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }

    /// The `<failure/>` nonza.
    pub fn to_element(self) -> Element {
        Element::new("failure", ns::SASL).child(Element::new(self.as_str(), ns::SASL))
    }
}

/// Decode the base64 payload of `<auth/>` or `<response/>` (`=` alone means empty).
pub fn decode_payload(text: &str) -> Result<Vec<u8>, Failure> {
    let t = text.trim();
    if t.is_empty() || t == "=" {
        return Ok(Vec::new());
    }
    B64.decode(t).map_err(|_| Failure::IncorrectEncoding)
}

/// Encode a payload for `<challenge/>` / `<success/>`.
pub fn encode_payload(data: &[u8]) -> String {
    if data.is_empty() {
        "=".to_owned()
    } else {
        B64.encode(data)
    }
}

/// A parsed PLAIN message.
#[derive(Debug, PartialEq, Eq)]
pub struct PlainMessage {
    pub authzid: Option<String>,
    pub authcid: String,
    pub password: String,
}

/// Parse `[authzid] NUL authcid NUL passwd` (RFC 4616).
pub fn parse_plain(data: &[u8]) -> Result<PlainMessage, Failure> {
    let s = std::str::from_utf8(data).map_err(|_| Failure::MalformedRequest)?;
    let mut parts = s.split('\0');
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Failure::MalformedRequest);
    };
    if authcid.is_empty() || password.is_empty() || authcid.len() > 1023 || password.len() > 1023 {
        return Err(Failure::MalformedRequest);
    }
    Ok(PlainMessage {
        authzid: (!authzid.is_empty()).then(|| authzid.to_owned()),
        authcid: authcid.to_owned(),
        password: password.to_owned(),
    })
}

/// The client-first message of SCRAM, parsed.
#[derive(Debug, Clone)]
pub struct ClientFirst {
    /// The user name (saslname decoded, not yet normalised).
    pub username: String,
    /// Requested authorisation identity (`a=`), if any.
    pub authzid: Option<String>,
    mech: Mechanism,
    hash: ScramHash,
    gs2_header: String,
    cb_name: Option<String>,
    client_nonce: String,
    bare: String,
}

fn decode_saslname(s: &str) -> Result<String, Failure> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(Failure::MalformedRequest),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parse a SCRAM client-first message for `mech`, checking the channel-binding flag against
/// what this connection offers (RFC 5802 §6: a `y` flag while the server offers `-PLUS` is a
/// downgrade and fails).
pub fn parse_client_first(
    mech: Mechanism,
    data: &[u8],
    cb: &ChannelBinding,
) -> Result<ClientFirst, Failure> {
    let hash = mech.scram_hash().ok_or(Failure::InvalidMechanism)?;
    let s = std::str::from_utf8(data).map_err(|_| Failure::MalformedRequest)?;
    let mut parts = s.splitn(3, ',');
    let (Some(flag), Some(authz), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Failure::MalformedRequest);
    };
    let cb_name = match (flag, mech.is_plus()) {
        ("n", false) => None,
        ("y", false) if cb.any() => return Err(Failure::ChannelBinding),
        ("y", false) => None,
        (f, true) if f.starts_with("p=") => {
            let name = &f[2..];
            if cb.data(name).is_none() {
                return Err(Failure::ChannelBinding);
            }
            Some(name.to_owned())
        }
        _ => return Err(Failure::MalformedRequest),
    };
    let authzid = match authz {
        "" => None,
        a if a.starts_with("a=") => Some(decode_saslname(&a[2..])?),
        _ => return Err(Failure::MalformedRequest),
    };
    let gs2_header = format!("{flag},{authz},");
    let mut username = None;
    let mut nonce = None;
    for (i, attr) in bare.split(',').enumerate() {
        match (i, attr.get(..2)) {
            (0, Some("n=")) => username = Some(decode_saslname(&attr[2..])?),
            (1, Some("r=")) => nonce = Some(attr[2..].to_owned()),
            (0, _) | (1, _) => return Err(Failure::MalformedRequest),
            // Extensions after the nonce are ignored (RFC 5802 §5.1).
            _ => {}
        }
    }
    let (Some(username), Some(client_nonce)) = (username, nonce) else {
        return Err(Failure::MalformedRequest);
    };
    if username.is_empty()
        || client_nonce.is_empty()
        || !client_nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(Failure::MalformedRequest);
    }
    Ok(ClientFirst {
        username,
        authzid,
        mech,
        hash,
        gs2_header,
        cb_name,
        client_nonce,
        bare: bare.to_owned(),
    })
}

/// A SCRAM exchange waiting for the client-final message.
#[derive(Debug)]
pub struct ScramPending {
    first: ClientFirst,
    creds: ScramCredentials,
    nonce: String,
    server_first: String,
    /// Only a real account may succeed; decoys always fail at the end.
    real: bool,
}

impl ClientFirst {
    /// Answer with the server-first message, using the user's stored credentials (`real`) or
    /// decoy credentials ([`ScramCredentials::decoy`]: the user does not exist).
    pub fn server_first(self, creds: ScramCredentials, real: bool) -> (String, ScramPending) {
        let nonce = format!("{}{}", self.client_nonce, crate::xmpp::random_id(18));
        let server_first = format!(
            "r={},s={},i={}",
            nonce,
            B64.encode(&creds.salt),
            creds.iterations
        );
        (
            server_first.clone(),
            ScramPending {
                first: self,
                creds,
                nonce,
                server_first,
                real,
            },
        )
    }
}

impl ScramPending {
    /// The user name the client gave (not normalised).
    pub fn username(&self) -> &str {
        &self.first.username
    }

    /// The authorisation identity the client asked for, if any.
    pub fn authzid(&self) -> Option<&str> {
        self.first.authzid.as_deref()
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> Mechanism {
        self.first.mech
    }

    /// Check the client-final message; on success return the server-final message
    /// (`v=<signature>`) to send in `<success/>`.
    pub fn finish(self, data: &[u8], cb: &ChannelBinding) -> Result<String, Failure> {
        let s = std::str::from_utf8(data).map_err(|_| Failure::MalformedRequest)?;
        let (without_proof, proof) = s.rsplit_once(",p=").ok_or(Failure::MalformedRequest)?;
        let mut attrs = without_proof.split(',');
        let c = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(Failure::MalformedRequest)?;
        let r = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(Failure::MalformedRequest)?;
        let proof = B64.decode(proof).map_err(|_| Failure::MalformedRequest)?;

        // Channel binding: c= must be base64(gs2-header [+ cb data]).
        let mut expected_c = self.first.gs2_header.as_bytes().to_vec();
        if let Some(name) = &self.first.cb_name {
            expected_c.extend_from_slice(cb.data(name).ok_or(Failure::ChannelBinding)?);
        }
        let got_c = B64.decode(c).map_err(|_| Failure::MalformedRequest)?;
        if !bool::from(got_c.ct_eq(&expected_c)) {
            return Err(Failure::ChannelBinding);
        }
        if !bool::from(r.as_bytes().ct_eq(self.nonce.as_bytes())) {
            return Err(Failure::MalformedRequest);
        }

        let hash = self.first.hash;
        let auth_message = format!(
            "{},{},{}",
            self.first.bare, self.server_first, without_proof
        );
        let client_signature = hash.hmac(&self.creds.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(Failure::NotAuthorized);
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let ok = hash.hash(&client_key).ct_eq(&self.creds.stored_key);
        if !bool::from(ok) || !self.real {
            return Err(Failure::NotAuthorized);
        }
        let server_signature = hash.hmac(&self.creds.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

/// `n` random bytes from the OS-seeded CSPRNG.
pub fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal SCRAM client, to test the server side against RFC 5802's arithmetic.
    fn client_final(
        hash: ScramHash,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
        gs2_and_cb: &[u8],
    ) -> String {
        let mut salt = None;
        let mut iters = 0;
        let mut nonce = "";
        for a in server_first.split(',') {
            match &a[..2] {
                "r=" => nonce = &a[2..],
                "s=" => salt = Some(B64.decode(&a[2..]).unwrap()),
                "i=" => iters = a[2..].parse().unwrap(),
                _ => {}
            }
        }
        let salted = hash.salted_password(password.as_bytes(), &salt.unwrap(), iters);
        let client_key = hash.hmac(&salted, b"Client Key");
        let stored = hash.hash(&client_key);
        let without = format!("c={},r={}", B64.encode(gs2_and_cb), nonce);
        let am = format!("{client_first_bare},{server_first},{without}");
        let sig = hash.hmac(&stored, am.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        format!("{without},p={}", B64.encode(proof))
    }

    #[test]
    fn rfc7677_example_credentials() {
        // RFC 7677 §3: user "user", password "pencil".
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let c = ScramCredentials::derive(ScramHash::Sha256, "pencil", &salt, 4096);
        let first = parse_client_first(
            Mechanism::ScramSha256,
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            &ChannelBinding::default(),
        )
        .unwrap();
        let (_, mut pending) = first.server_first(c, true);
        // Force the RFC's server nonce to reproduce its exact exchange.
        pending.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
        pending.server_first = format!("r={},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", pending.nonce);
        let v = pending
            .finish(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                &ChannelBinding::default(),
            )
            .unwrap();
        assert_eq!(v, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn rfc5802_sha1_example() {
        let salt = B64.decode("QSXCR+Q6sek8bf92").unwrap();
        let c = ScramCredentials::derive(ScramHash::Sha1, "pencil", &salt, 4096);
        let first = parse_client_first(
            Mechanism::ScramSha1,
            b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
            &ChannelBinding::default(),
        )
        .unwrap();
        let (_, mut pending) = first.server_first(c, true);
        pending.nonce = "fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j".into();
        pending.server_first = format!("r={},s=QSXCR+Q6sek8bf92,i=4096", pending.nonce);
        let v = pending
            .finish(
                b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
                &ChannelBinding::default(),
            )
            .unwrap();
        assert_eq!(v, "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
    }

    #[test]
    fn channel_binding_round_trip_and_mismatch() {
        let cb = ChannelBinding {
            tls_exporter: Some(vec![7; 32]),
            tls_server_end_point: None,
        };
        let salt = b"0123456789abcdef";
        let creds = ScramCredentials::derive(ScramHash::Sha256, "pw", salt, 4096);
        let cf = b"p=tls-exporter,,n=juliet,r=abcdef";
        let first = parse_client_first(Mechanism::ScramSha256Plus, cf, &cb).unwrap();
        let (sf, pending) = first.server_first(creds.clone(), true);
        let mut gs2 = b"p=tls-exporter,,".to_vec();
        gs2.extend_from_slice(&[7; 32]);
        let fin = client_final(ScramHash::Sha256, "pw", "n=juliet,r=abcdef", &sf, &gs2);
        assert!(pending.finish(fin.as_bytes(), &cb).is_ok());

        // Same exchange, but the client saw different TLS keys (a MITM): refused.
        let first = parse_client_first(Mechanism::ScramSha256Plus, cf, &cb).unwrap();
        let (sf, pending) = first.server_first(creds, true);
        let mut gs2 = b"p=tls-exporter,,".to_vec();
        gs2.extend_from_slice(&[8; 32]);
        let fin = client_final(ScramHash::Sha256, "pw", "n=juliet,r=abcdef", &sf, &gs2);
        let refused = pending.finish(fin.as_bytes(), &cb);
        assert_eq!(refused, Err(Failure::ChannelBinding));
        assert_eq!(refused.unwrap_err().as_str(), "not-authorized");
    }

    #[test]
    fn downgrade_and_malformed_are_refused() {
        let cb = ChannelBinding {
            tls_exporter: Some(vec![1]),
            tls_server_end_point: None,
        };
        assert_eq!(
            parse_client_first(Mechanism::ScramSha1, b"y,,n=a,r=b", &cb).unwrap_err(),
            Failure::ChannelBinding
        );
        assert_eq!(
            parse_client_first(Mechanism::ScramSha1Plus, b"n,,n=a,r=b", &cb).unwrap_err(),
            Failure::MalformedRequest
        );
        assert_eq!(
            parse_client_first(Mechanism::ScramSha1Plus, b"p=tls-unique,,n=a,r=b", &cb)
                .unwrap_err(),
            Failure::ChannelBinding
        );
        assert_eq!(
            parse_client_first(Mechanism::ScramSha1, b"n,,n=a=XX,r=b", &cb).unwrap_err(),
            Failure::MalformedRequest
        );
        assert_eq!(
            parse_client_first(Mechanism::ScramSha1, b"garbage", &cb).unwrap_err(),
            Failure::MalformedRequest
        );
    }

    #[test]
    fn wrong_password_and_unknown_user_fail_alike() {
        let cb = ChannelBinding::default();
        let creds = ScramCredentials::derive(ScramHash::Sha1, "right", b"salt", 4096);
        let decoy = ScramCredentials::decoy(ScramHash::Sha1, 4096, b"salt".to_vec());
        for (creds, real) in [(creds, true), (decoy, false)] {
            let first = parse_client_first(Mechanism::ScramSha1, b"n,,n=u,r=xyz", &cb).unwrap();
            let (sf, pending) = first.server_first(creds, real);
            let fin = client_final(ScramHash::Sha1, "wrong", "n=u,r=xyz", &sf, b"n,,");
            assert_eq!(
                pending.finish(fin.as_bytes(), &cb),
                Err(Failure::NotAuthorized)
            );
        }
    }

    #[test]
    fn plain_parsing() {
        assert_eq!(
            parse_plain(b"\0juliet\0pw").unwrap(),
            PlainMessage {
                authzid: None,
                authcid: "juliet".into(),
                password: "pw".into()
            }
        );
        assert_eq!(parse_plain(b"juliet\0pw"), Err(Failure::MalformedRequest));
        assert_eq!(parse_plain(b"\0\0pw"), Err(Failure::MalformedRequest));
        assert_eq!(parse_plain(b"\0a\0b\0c"), Err(Failure::MalformedRequest));
    }
}
