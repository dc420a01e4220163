//! XMPP over WebSocket (RFC 7395) at `/xmpp-websocket`.
//!
//! The upgrade asks for the `xmpp` subprotocol. Each connection becomes a [`Transport`]: two
//! in-memory pipes between the WebSocket and an ordinary session on a worker arbiter (login,
//! stream management, everything a TCP session has). Two small tasks on the HTTP worker
//! translate:
//!
//! - client to session: `<open/>` becomes a stream header, `<close/>` the stream's end, every
//!   other frame is passed on as the element it carries;
//! - session to client: the session's byte stream is cut into top-level units
//!   (`transport::framing::Splitter`); a stream header becomes `<open/>`, `</stream:stream>`
//!   becomes `<close/>`, every element one text frame that declares its namespace.
//!
//! WebSocket sessions log in as on the direct-TLS port: the HTTPS connection's TLS is the
//! stream's security (no STARTTLS), and no `-PLUS` mechanism is offered, since the TLS
//! session of a WebSocket is not visible to the stream.

use actix_web::http::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::{exempt, peer_of, AddressSlot, HttpState};
use crate::sasl::ChannelBinding;
use crate::transport::framing::{self, ClientFrame, Splitter, Unit};
use crate::transport::Transport;

/// Bytes each direction's pipe holds before the writer waits.
const PIPE_BYTES: usize = 64 * 1024;

/// Route `/xmpp-websocket` (when `http.websocket` is on).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/xmpp-websocket", web::get().to(upgrade));
}

/// Whether the client offered the `xmpp` subprotocol.
fn offers_xmpp(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "xmpp")
}

async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<HttpState>,
) -> actix_web::Result<HttpResponse> {
    let shared = &state.shared;
    if !shared.config.http.websocket {
        return Ok(HttpResponse::NotFound().finish());
    }
    if !offers_xmpp(&req) {
        return Ok(HttpResponse::BadRequest()
            .body("RFC 7395: the WebSocket subprotocol \"xmpp\" is required\n"));
    }
    let Some(peer) = peer_of(&req) else {
        return Ok(HttpResponse::BadRequest().finish());
    };
    let max = shared.config.http.max_websockets_per_address;
    let Some(address_slot) = state.websockets.take(peer, max, exempt(shared, peer)) else {
        return Ok(HttpResponse::TooManyRequests()
            .body("too many WebSocket connections from this address\n"));
    };
    let Some(slot) = shared.try_connection_slot() else {
        log::warn!("websocket refused: limits.max_connections reached");
        return Ok(HttpResponse::ServiceUnavailable().finish());
    };
    let (mut response, session, frames) = actix_ws::handle(&req, body)?;
    response
        .headers_mut()
        .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("xmpp"));
    // Room for the largest stanza the session accepts, so that the session's own limit
    // answers first, with a stream error.
    let max_frame = shared.config.limits.max_stanza_bytes + 4096;
    let frames = frames
        .max_frame_size(max_frame)
        .aggregate_continuations()
        .max_continuation_size(max_frame);
    let (to_session, session_reader) = tokio::io::duplex(PIPE_BYTES);
    let (session_writer, from_session) = tokio::io::duplex(PIPE_BYTES);
    let transport = Transport {
        reader: Box::new(session_reader),
        writer: Box::new(session_writer),
        channel_binding: ChannelBinding::default(),
    };
    actix_rt::spawn(client_to_session(frames, to_session, session.clone()));
    actix_rt::spawn(session_to_client(from_session, session, address_slot));
    state.spawner.spawn(transport, peer, slot, "websocket");
    Ok(response)
}

/// Pass the client's frames on to the session, until either side closes.
async fn client_to_session(
    mut frames: actix_ws::AggregatedMessageStream,
    mut to_session: DuplexStream,
    mut ws: actix_ws::Session,
) {
    while let Some(frame) = frames.recv().await {
        let text = match frame {
            Ok(AggregatedMessage::Text(t)) => t,
            // RFC 7395 frames are text; a binary frame's bytes are read as the same XML.
            Ok(AggregatedMessage::Binary(b)) => match String::from_utf8(b.to_vec()) {
                Ok(s) => s.into(),
                Err(_) => break,
            },
            Ok(AggregatedMessage::Ping(p)) => {
                let _ = ws.pong(&p).await;
                continue;
            }
            Ok(AggregatedMessage::Pong(_)) => continue,
            Ok(AggregatedMessage::Close(_)) => break,
            Err(e) => {
                log::debug!("websocket: {e}");
                let reason = CloseReason {
                    code: CloseCode::Size,
                    description: Some("frame too large".into()),
                };
                let _ = ws.close(Some(reason)).await;
                break;
            }
        };
        let written = match framing::client_frame(&text) {
            ClientFrame::Open(header) => to_session.write_all(header.as_bytes()).await,
            ClientFrame::Close => {
                let _ = to_session.write_all(b"</stream:stream>").await;
                break;
            }
            ClientFrame::Other => to_session.write_all(text.as_bytes()).await,
        };
        if written.is_err() {
            break;
        }
    }
    // The session reads the end of its stream.
    let _ = to_session.shutdown().await;
}

/// Frame what the session writes, until it ends its stream; then close the WebSocket.
async fn session_to_client(
    mut from_session: DuplexStream,
    mut ws: actix_ws::Session,
    _address_slot: AddressSlot,
) {
    let mut splitter = Splitter::new();
    let mut units = Vec::new();
    loop {
        // A buffer per read, not per connection: an idle WebSocket holds none.
        let mut buf = Vec::with_capacity(16 * 1024);
        match from_session.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        splitter.push(&buf, &mut units);
        drop(buf);
        for unit in units.drain(..) {
            let frame = match unit {
                Unit::Header(h) => framing::header_to_open(&h),
                Unit::Element(e) => framing::standalone_element(&e),
                Unit::End => {
                    let _ = ws.text(framing::close_frame()).await;
                    let _ = ws.close(Some(CloseCode::Normal.into())).await;
                    return;
                }
            };
            if ws.text(frame).await.is_err() {
                return;
            }
        }
    }
    let _ = ws.close(Some(CloseCode::Normal.into())).await;
}
