//! The XMPP client: TCP connect, STARTTLS or direct TLS, SASL (PLAIN, SCRAM-SHA-1/256 with
//! the tests' SCRAM computation, `tests/common/scram.rs`), in-band registration, resource binding.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use openssl::ssl::SslVerifyMode;
use rand::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use crate::cli::*;
use crate::shared::*;
use crate::xml::*;
use crate::Res;

#[path = "../../tests/common/scram.rs"]
mod scram;

pub(crate) struct Xmpp<S> {
    pub(crate) io: S,
    pub(crate) buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Xmpp<S> {
    pub(crate) fn new(io: S) -> Self {
        Xmpp {
            io,
            buf: Vec::with_capacity(8192),
        }
    }

    pub(crate) async fn send(&mut self, s: &str) -> Res<()> {
        self.io.write_all(s.as_bytes()).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Next stream header, element or stream end. Errors on EOF.
    pub(crate) async fn next(&mut self) -> Res<Event> {
        loop {
            if let Some((ev, used)) = scan(&self.buf)? {
                self.buf.drain(..used);
                return Ok(ev);
            }
            if self.buf.len() > 1 << 20 {
                return Err("stanza larger than 1 MiB".into());
            }
            self.buf.reserve(4096);
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Err("connection closed by server".into());
            }
        }
    }

    /// Next element; a stream end or stream error is an error.
    pub(crate) async fn element(&mut self) -> Res<String> {
        match self.next().await? {
            Event::Element(e) if elem_name(&e) == "stream:error" => {
                Err(format!("stream error: {}", error_condition(&e)).into())
            }
            Event::Element(e) => Ok(e),
            Event::StreamHeader => Err("unexpected stream header".into()),
            Event::StreamEnd => Err("stream closed by server".into()),
        }
    }

    /// Sends a stream header and returns the server's stream features.
    pub(crate) async fn open_stream(&mut self, domain: &str) -> Res<String> {
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>"
        ))
        .await?;
        loop {
            match self.next().await? {
                Event::StreamHeader => {}
                Event::Element(e) if elem_name(&e) == "stream:features" => return Ok(e),
                Event::Element(e) if elem_name(&e) == "stream:error" => {
                    return Err(format!("stream error: {}", error_condition(&e)).into())
                }
                Event::Element(e) => return Err(format!("expected features, got {e}").into()),
                Event::StreamEnd => return Err("stream closed by server".into()),
            }
        }
    }

    /// Ends the stream, waits (at most `wait`) for the server to end its own, closes TLS.
    pub(crate) async fn close(&mut self, wait: Duration) {
        let _ = self.send("</stream:stream>").await;
        let _ = tokio::time::timeout(wait, async {
            loop {
                match self.next().await {
                    Ok(Event::StreamEnd) | Err(_) => break,
                    _ => {}
                }
            }
        })
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.io.shutdown()).await;
    }

    /// Sends an IQ and waits for its response (ignoring everything else meanwhile).
    pub(crate) async fn iq(&mut self, id: &str, iq: &str) -> Res<String> {
        self.send(iq).await?;
        loop {
            let e = self.element().await?;
            if elem_name(&e) == "iq" && attr(&e, "id") == Some(id) {
                return Ok(e);
            }
        }
    }
}

/// A client's connection: TLS over TCP, or the pipe to a WebSocket bridge (`ws.rs`).
pub(crate) enum Conn {
    Tls(SslStream<TcpStream>),
    Ws(tokio::io::DuplexStream),
}

impl Conn {
    /// The TCP socket, when there is one of its own.
    pub(crate) fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Conn::Tls(s) => Some(s.get_ref()),
            Conn::Ws(_) => None,
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Conn::Tls($s) => {
                let $s = Pin::new($s);
                $e
            }
            Conn::Ws($s) => {
                let $s = Pin::new($s);
                $e
            }
        }
    };
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }
    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// TCP connect, TLS (direct or STARTTLS); returns the TLS stream and its stream features.
pub(crate) async fn connect(sh: &Shared, srv: Server<'_>) -> Res<(Xmpp<Conn>, String)> {
    let a = &sh.args;
    if let Some(path) = &a.websocket {
        let pipe = crate::ws::connect(sh, srv.host, srv.port, srv.domain, path).await?;
        let mut x = Xmpp::new(Conn::Ws(pipe));
        let features = x.open_stream(srv.domain).await?;
        return Ok((x, features));
    }
    let tcp = TcpStream::connect((srv.host, srv.port)).await?;
    tcp.set_nodelay(true)?;
    let tcp = if a.direct_tls {
        tcp
    } else {
        let mut x = Xmpp::new(tcp);
        let features = x.open_stream(srv.domain).await?;
        if !features.contains("urn:ietf:params:xml:ns:xmpp-tls") {
            return Err("server does not offer STARTTLS".into());
        }
        x.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await?;
        let e = x.element().await?;
        if elem_name(&e) != "proceed" {
            return Err(format!("STARTTLS refused: {e}").into());
        }
        if !x.buf.is_empty() {
            return Err("data after <proceed/>".into());
        }
        x.io
    };
    let mut cfg = sh.tls.configure()?;
    cfg.set_verify_hostname(false);
    cfg.set_verify(SslVerifyMode::NONE);
    let ssl = cfg.into_ssl(srv.domain)?;
    let mut tls = SslStream::new(ssl, tcp)?;
    Pin::new(&mut tls).connect().await?;
    let mut x = Xmpp::new(Conn::Tls(tls));
    let features = x.open_stream(srv.domain).await?;
    Ok((x, features))
}

// ---------------------------------------------------------------------------------------------
// SASL

/// SCRAM salted passwords by (SHA-256?, password, salt, iterations), kept as real clients do
/// (RFC 5802 section 5.1) so that a login again costs no PBKDF2; only the resume-storm mode
/// sets it up (the other modes pay the PBKDF2 on every login, as before).
pub(crate) type SaltedCache = Mutex<HashMap<(bool, String, Vec<u8>, u32), Vec<u8>>>;
pub(crate) static SALTED_CACHE: OnceLock<SaltedCache> = OnceLock::new();

/// RFC 5802 client state after client-first.
pub(crate) struct Scram {
    sha256: bool,
    client_first_bare: String,
    nonce: String,
    /// Empty until client-final is sent.
    server_signature: Vec<u8>,
}

impl Scram {
    /// The state and the client-first message (GS2 header `n,,`: no channel binding).
    pub(crate) fn new(sha256: bool, user: &str) -> (Scram, String) {
        let mut rng = rand::thread_rng();
        let nonce: String = (0..24)
            .map(|_| rng.sample(rand::distributions::Alphanumeric) as char)
            .collect();
        let client_first_bare = scram::client_first_bare(user, &nonce);
        let first = format!("n,,{client_first_bare}");
        let s = Scram {
            sha256,
            client_first_bare,
            nonce,
            server_signature: Vec::new(),
        };
        (s, first)
    }

    /// The salted password, from `SALTED_CACHE` if it is set up and has it.
    fn salted(&self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        let key = (self.sha256, password.to_owned(), salt.to_vec(), iterations);
        let cached = SALTED_CACHE
            .get()
            .and_then(|c| c.lock().ok()?.get(&key).cloned());
        if let Some(s) = cached {
            return s;
        }
        let salted = scram::salted_password(self.sha256, password, salt, iterations);
        if let Some(c) = SALTED_CACHE.get() {
            if let Ok(mut c) = c.lock() {
                c.insert(key, salted.clone());
            }
        }
        salted
    }

    /// Given server-first, returns client-final.
    pub(crate) fn client_final(&mut self, server_first: &str, password: &str) -> Res<String> {
        let first = scram::ServerFirst::parse(server_first, &self.nonce)?;
        let salted = self.salted(password, &first.salt, first.iterations);
        let fin = scram::client_final(
            self.sha256,
            &salted,
            &self.client_first_bare,
            server_first,
            &first.nonce,
            b"n,,",
        );
        self.server_signature = fin.server_signature;
        Ok(fin.message)
    }

    pub(crate) fn verify(&self, server_final: &str) -> Res<()> {
        Ok(scram::verify_server_final(
            server_final,
            &self.server_signature,
        )?)
    }
}

pub(crate) fn b64_text(s: &str) -> Res<String> {
    let t = s.trim();
    if t.is_empty() || t == "=" {
        return Ok(String::new());
    }
    Ok(String::from_utf8(B64.decode(t)?)?)
}

pub(crate) async fn sasl<S: Io>(
    x: &mut Xmpp<S>,
    features: &str,
    mech: Mech,
    user: &str,
    pw: &str,
) -> Res<()> {
    let wanted = format!("<mechanism>{}</mechanism>", mech.name());
    if !features.contains(&wanted) {
        return Err(format!("server does not offer {}", mech.name()).into());
    }
    const NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
    let mut scram = None;
    let initial = match mech {
        Mech::Plain => format!("\0{user}\0{pw}"),
        Mech::ScramSha1 | Mech::ScramSha256 => {
            let (s, first) = Scram::new(mech == Mech::ScramSha256, user);
            scram = Some(s);
            first
        }
    };
    x.send(&format!(
        "<auth xmlns='{NS}' mechanism='{}'>{}</auth>",
        mech.name(),
        B64.encode(initial)
    ))
    .await?;
    loop {
        let e = x.element().await?;
        let text = || -> Res<String> {
            let t = tag_end(e.as_bytes(), 0).unwrap_or(e.len());
            let c = e.rfind("</").unwrap_or(e.len()).max(t);
            b64_text(&e[t..c])
        };
        match elem_name(&e) {
            "challenge" => {
                let s = scram.as_mut().ok_or("unexpected SASL challenge")?;
                if !s.server_signature.is_empty() {
                    // Some servers send the server-final as a challenge.
                    s.verify(&text()?)?;
                    x.send(&format!("<response xmlns='{NS}'/>")).await?;
                    continue;
                }
                let fin = s.client_final(&text()?, pw)?;
                x.send(&format!(
                    "<response xmlns='{NS}'>{}</response>",
                    B64.encode(fin)
                ))
                .await?;
            }
            "success" => {
                if let Some(s) = &scram {
                    let t = text()?;
                    if !t.is_empty() {
                        s.verify(&t)?;
                    }
                }
                return Ok(());
            }
            "failure" => {
                return Err(format!("SASL failure: {}", error_condition(&e)).into());
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Session setup

pub(crate) fn user_name(a: &Args, i: usize) -> String {
    format!("{}{}", a.user_prefix, i)
}

pub(crate) async fn register<S: Io>(
    x: &mut Xmpp<S>,
    features: &str,
    user: &str,
    pw: &str,
) -> Res<()> {
    if !features.contains("http://jabber.org/features/iq-register") {
        // Some servers only answer the IQ; try anyway.
    }
    let r = x
        .iq(
            "reg1",
            &format!(
                "<iq type='set' id='reg1'><query xmlns='jabber:iq:register'>\
                 <username>{}</username><password>{}</password></query></iq>",
                xml_escape(user),
                xml_escape(pw)
            ),
        )
        .await?;
    match attr(&r, "type") {
        Some("result") => Ok(()),
        _ if r.contains("<conflict") => Ok(()),
        _ => Err(format!("registration failed: {}", error_condition(&r)).into()),
    }
}

/// Logs client `i` in (on its own server: see `server_of`); returns the stream and its bound
/// full JID.
pub(crate) async fn login(sh: &Shared, i: usize) -> Res<(Xmpp<Conn>, String)> {
    let a = &sh.args;
    let register_first = a.register || a.register_only;
    let srv = server_of(a, i);
    login_on(sh, srv, &user_name(a, i), &a.resource, register_first, true).await
}

/// `login_on` the main server (--host/--port/--domain).
pub(crate) async fn login_as(
    sh: &Shared,
    user: &str,
    resource: &str,
    register_first: bool,
    presence: bool,
) -> Res<(Xmpp<Conn>, String)> {
    let srv = main_server(&sh.args);
    login_on(sh, srv, user, resource, register_first, presence).await
}

/// Logs `user` in on `srv` (registering it first on the same stream if `register_first`; with
/// --register-only, returns right after that) and binds `resource`; sends initial presence if
/// `presence`. Returns the stream and its bound full JID.
pub(crate) async fn login_on(
    sh: &Shared,
    srv: Server<'_>,
    user: &str,
    resource: &str,
    register_first: bool,
    presence: bool,
) -> Res<(Xmpp<Conn>, String)> {
    let a = &sh.args;
    let (mut x, features) = connect(sh, srv).await?;
    if register_first {
        register(&mut x, &features, user, &a.password).await?;
        if a.register_only {
            let _ = x.send("</stream:stream>").await;
            return Ok((x, String::new()));
        }
    }
    sasl(&mut x, &features, a.mech, user, &a.password).await?;
    let features = x.open_stream(srv.domain).await?;
    if !features.contains("urn:ietf:params:xml:ns:xmpp-bind") {
        return Err("server does not offer resource binding".into());
    }
    let r = x
        .iq(
            "bind1",
            &format!(
                "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
                 <resource>{}</resource></bind></iq>",
                xml_escape(resource)
            ),
        )
        .await?;
    if attr(&r, "type") != Some("result") {
        return Err(format!("bind failed: {}", error_condition(&r)).into());
    }
    let jid = child_text(&r, "jid")
        .ok_or("bind result without jid")?
        .to_owned();
    // RFC 3921 session establishment, only if the server says it is not optional.
    if let Some(p) = features.find("urn:ietf:params:xml:ns:xmpp-session") {
        let rest = &features[p..];
        let end = rest.find("</session>").unwrap_or(0);
        if end > 0 && !rest[..end].contains("optional") {
            let r = x
                .iq(
                    "sess1",
                    "<iq type='set' id='sess1'>\
                     <session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
                )
                .await?;
            if attr(&r, "type") != Some("result") {
                return Err(format!("session failed: {}", error_condition(&r)).into());
            }
        }
    }
    if presence {
        x.send("<presence/>").await?;
    }
    Ok((x, jid))
}

/// Answers server IQ requests (e.g. XEP-0199 pings) so that the server keeps us.
pub(crate) async fn answer_iq<S: Io>(x: &mut Xmpp<S>, e: &str) -> Res<()> {
    if matches!(attr(e, "type"), Some("get") | Some("set")) {
        let id = attr(e, "id").unwrap_or("");
        let reply = match attr(e, "from") {
            Some(f) => format!("<iq type='result' id='{id}' to='{f}'/>"),
            None => format!("<iq type='result' id='{id}'/>"),
        };
        x.send(&reply).await?;
    }
    Ok(())
}
