//! The server side of SOCKS5 (RFC 1928) as XEP-0065 uses it: no authentication (method
//! `0x00`), one `CONNECT` whose destination is a domain name (`ATYP = 3`) that is the
//! 40-hex-digit SHA-1 of sid + initiator + target, port 0. Everything else is answered with
//! RFC 1928's reply code for it and closed.

use std::fmt;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Length of the destination: a SHA-1 in hexadecimal.
pub const HASH_LEN: usize = 40;

/// The RFC 1928 reply codes the proxy sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Succeeded = 0,
    /// The proxy cannot take the connection now (a limit).
    GeneralFailure = 1,
    /// Not a destination of this proxy (not a hash, a port other than 0, a third
    /// connection for one hash).
    NotAllowed = 2,
    CommandNotSupported = 7,
    AddressTypeNotSupported = 8,
}

/// Why a handshake did not give a destination.
#[derive(Debug)]
pub enum HandshakeError {
    Io(std::io::Error),
    /// Not SOCKS version 5.
    Version,
    /// The client offers no method without authentication (answered with `0xFF`).
    NoAcceptableMethod,
    /// Answered with this reply code.
    Refused(Reply),
}

impl From<std::io::Error> for HandshakeError {
    fn from(e: std::io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Io(e) => write!(f, "{e}"),
            HandshakeError::Version => f.write_str("not SOCKS5"),
            HandshakeError::NoAcceptableMethod => f.write_str("no method without authentication"),
            HandshakeError::Refused(r) => write!(f, "refused with reply {}", *r as u8),
        }
    }
}

/// Read the method selection and the `CONNECT` request from `s`, answering the first and,
/// for a request the proxy cannot serve, the second. Returns the destination (the hash, in
/// lowercase), which the caller answers with [`reply`].
pub async fn accept<S>(s: &mut S) -> Result<String, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await?;
    if head[0] != 5 {
        return Err(HandshakeError::Version);
    }
    let mut methods = vec![0u8; usize::from(head[1])];
    s.read_exact(&mut methods).await?;
    if !methods.contains(&0) {
        s.write_all(&[5, 0xFF]).await?;
        return Err(HandshakeError::NoAcceptableMethod);
    }
    s.write_all(&[5, 0]).await?;
    let mut req = [0u8; 4];
    s.read_exact(&mut req).await?;
    let refusal = match req {
        [5, 1, _, 3] => None,
        [5, 1, _, _] => Some(Reply::AddressTypeNotSupported),
        [5, _, _, _] => Some(Reply::CommandNotSupported),
        _ => return Err(HandshakeError::Version),
    };
    if let Some(r) = refusal {
        return refuse(s, r).await;
    }
    let mut len = [0u8; 1];
    s.read_exact(&mut len).await?;
    let mut name = vec![0u8; usize::from(len[0])];
    s.read_exact(&mut name).await?;
    let mut port = [0u8; 2];
    s.read_exact(&mut port).await?;
    if name.len() != HASH_LEN || !name.iter().all(u8::is_ascii_hexdigit) || port != [0, 0] {
        return refuse(s, Reply::NotAllowed).await;
    }
    Ok(String::from_utf8_lossy(&name).to_ascii_lowercase())
}

/// Answer a request with `code` and give up on it.
async fn refuse<S: AsyncWrite + Unpin>(s: &mut S, code: Reply) -> Result<String, HandshakeError> {
    reply(s, code, "").await?;
    Err(HandshakeError::Refused(code))
}

/// Send [`reply_bytes`].
pub async fn reply<S: AsyncWrite + Unpin>(
    s: &mut S,
    code: Reply,
    hash: &str,
) -> std::io::Result<()> {
    s.write_all(&reply_bytes(code, hash)).await?;
    s.flush().await
}

/// The reply to a `CONNECT`: on success the bound address is the hash, port 0 (as XEP-0065
/// has it); an error carries the address 0.0.0.0:0.
pub fn reply_bytes(code: Reply, hash: &str) -> Vec<u8> {
    let mut out = vec![5, code as u8, 0];
    if code == Reply::Succeeded {
        out.extend_from_slice(&[3, hash.len() as u8]);
        out.extend_from_slice(hash.as_bytes());
    } else {
        out.extend_from_slice(&[1, 0, 0, 0, 0]);
    }
    out.extend_from_slice(&[0, 0]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0123456789abcdef0123456789ABCDEF01234567";

    fn request(atyp: u8, name: &[u8], port: [u8; 2]) -> Vec<u8> {
        let mut v = vec![5, 1, 0, 5, 1, 0, atyp, name.len() as u8];
        v.extend_from_slice(name);
        v.extend_from_slice(&port);
        v
    }

    /// Run `accept` on `input`; returns its outcome and what it wrote.
    async fn run(input: &[u8]) -> (Result<String, HandshakeError>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(input).await.unwrap();
        client.shutdown().await.unwrap();
        let r = accept(&mut server).await;
        drop(server);
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        (r, out)
    }

    #[tokio::test]
    async fn a_hash_is_accepted_and_lowercased() {
        let (r, out) = run(&request(3, HASH.as_bytes(), [0, 0])).await;
        assert_eq!(r.unwrap(), HASH.to_ascii_lowercase());
        assert_eq!(out, [5, 0]);
    }

    #[tokio::test]
    async fn bad_requests_get_their_reply_code() {
        let err = |code: u8| vec![5, 0, 5, code, 0, 1, 0, 0, 0, 0, 0, 0];
        for (input, code) in [
            (request(3, HASH.as_bytes(), [0, 80]), 2),
            (request(3, &HASH.as_bytes()[..39], [0, 0]), 2),
            (request(3, &[b'g'; 40], [0, 0]), 2),
            (request(1, &[127, 0, 0], [0, 0]), 8),
        ] {
            let (r, out) = run(&input).await;
            assert!(matches!(r, Err(HandshakeError::Refused(_))), "{input:?}");
            assert_eq!(out, err(code), "{input:?}");
        }
        let mut bind = request(3, HASH.as_bytes(), [0, 0]);
        bind[4] = 2;
        assert_eq!(run(&bind).await.1, err(7));
        let (r, out) = run(&[5, 1, 2]).await;
        assert!(matches!(r, Err(HandshakeError::NoAcceptableMethod)));
        assert_eq!(out, [5, 0xFF]);
        assert!(matches!(
            run(&[4, 1, 0]).await.0,
            Err(HandshakeError::Version)
        ));
        assert!(matches!(
            run(&[5, 3, 0]).await.0,
            Err(HandshakeError::Io(_))
        ));
    }
}
