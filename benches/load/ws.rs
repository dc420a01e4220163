//! `--websocket PATH`: the client's XML stream over RFC 7395 WebSocket instead of a TCP stream.
//!
//! TLS to `--host`:`--ws-port` (SNI `--domain`), a WebSocket upgrade to
//! `wss://DOMAIN:PORT/PATH` with the `xmpp` subprotocol, then a bridge task between the socket
//! and an in-memory pipe that the rest of the client reads and writes as if it were the TLS
//! stream: the stream header it writes becomes `<open/>`, `</stream:stream>` becomes `<close/>`,
//! every element one text frame (with `xmlns='jabber:client'` when it has no namespace of its
//! own); the server's `<open/>` becomes a stream header, `<close/>` the stream's end.

use futures_util::{SinkExt, StreamExt};
use openssl::ssl::SslVerifyMode;
use std::pin::Pin;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::shared::Shared;
use crate::xml::{scan, Event};
use crate::Res;

const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// Open the WebSocket to `host`:`port` for `domain` at `path`; returns the client's end of
/// the bridge.
pub(crate) async fn connect(
    sh: &Shared,
    host: &str,
    port: u16,
    domain: &str,
    path: &str,
) -> Res<DuplexStream> {
    let tcp = TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    let mut cfg = sh.tls.configure()?;
    cfg.set_verify_hostname(false);
    cfg.set_verify(SslVerifyMode::NONE);
    let mut tls = SslStream::new(cfg.into_ssl(domain)?, tcp)?;
    Pin::new(&mut tls).connect().await?;
    let mut req = format!("wss://{domain}:{port}{path}").into_client_request()?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "xmpp".parse()?);
    let (ws, _) = tokio_tungstenite::client_async(req, tls).await?;
    let (client_end, bridge_end) = tokio::io::duplex(64 * 1024);
    tokio::spawn(bridge(ws, bridge_end, domain.to_owned()));
    Ok(client_end)
}

/// An element as a frame of its own: with the client namespace when it declares none.
fn frame_of(element: &str) -> String {
    let head_end = element.find('>').unwrap_or(element.len());
    if element.starts_with("<stream:") || element[..head_end].contains(" xmlns=") {
        return element.to_owned();
    }
    let name_end = element[1..]
        .find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/')
        .map_or(element.len(), |i| i + 1);
    format!(
        "{} xmlns='jabber:client'{}",
        &element[..name_end],
        &element[name_end..]
    )
}

/// Move frames between the WebSocket and the client's pipe until either side ends.
async fn bridge(
    ws: tokio_tungstenite::WebSocketStream<SslStream<TcpStream>>,
    pipe: DuplexStream,
    domain: String,
) {
    let (mut sink, mut frames) = ws.split();
    let (mut from_client, mut to_client) = tokio::io::split(pipe);
    let outgoing = async move {
        let mut buf: Vec<u8> = Vec::with_capacity(8192);
        loop {
            buf.reserve(4096);
            match from_client.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            while let Ok(Some((ev, used))) = scan(&buf) {
                let frame = match ev {
                    Event::StreamHeader => {
                        format!("<open xmlns='{FRAMING}' to='{domain}' version='1.0'/>")
                    }
                    Event::Element(e) => frame_of(&e),
                    Event::StreamEnd => format!("<close xmlns='{FRAMING}'/>"),
                };
                buf.drain(..used);
                if sink.feed(Message::text(frame)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    };
    let incoming = async move {
        while let Some(Ok(m)) = frames.next().await {
            let Message::Text(t) = m else { continue };
            let t = t.as_str();
            let bytes: std::borrow::Cow<str> = if t.starts_with("<open") {
                "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>".into()
            } else if t.starts_with("<close") {
                "</stream:stream>".into()
            } else {
                t.into()
            };
            if to_client.write_all(bytes.as_bytes()).await.is_err() {
                break;
            }
        }
        let _ = to_client.shutdown().await;
    };
    tokio::join!(outgoing, incoming);
}
