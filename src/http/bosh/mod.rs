//! XMPP over BOSH (XEP-0124, XEP-0206) at `/http-bind`.
//!
//! A session creation request (a `<body/>` without `sid`) opens a [`Transport`] of two
//! in-memory pipes to an ordinary session on a worker arbiter, as a WebSocket does: login,
//! SASL, the stream restart, binding and stream management run as for TCP. The session's
//! request bookkeeping (rid window, held requests, inactivity) is in `session.rs`, the
//! `<body/>` wrappers in `wire.rs`.
//!
//! - Session creation writes a client stream header into the session's input; the response
//!   carries the session's attributes (`sid`, `wait`, `hold`, `requests`, `inactivity`, ...)
//!   and the session's first output, its `<stream:features/>`.
//! - Each request's child elements go to the session in `rid` order; `xmpp:restart='true'`
//!   is a new stream header; `type='terminate'` ends the stream.
//! - Errors are `type='terminate'` bodies with HTTP 200 and a XEP-0124 §17.2 condition:
//!   unknown `sid` or a `rid` outside the window `item-not-found`, malformed XML or a wrong
//!   namespace `bad-request` (413 for a body over `http.max_request_bytes`), a `to` the server
//!   does not serve `host-unknown`, too many sessions from one address `policy-violation`.
//!
//! Sessions live in memory only (a random 128-bit `sid`); nothing is stored, the client's
//! address is only a key of the per-address count, and the log names neither addresses nor
//! JIDs. Responses allow any origin (CORS), so web clients on other sites can connect.
//!
//! Like WebSocket sessions, BOSH sessions log in as on the direct-TLS port: no STARTTLS, no
//! `-PLUS` mechanism (the HTTPS connection's TLS is not the stream's).

mod session;
pub(crate) mod wire;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use self::session::{Backlog, Params, Reply, Session};
use self::wire::{attr, Condition, Request};
use super::{exempt, peer_of, HttpState};
use crate::sasl::ChannelBinding;
use crate::transport::framing::NS_STREAM;
use crate::transport::Transport;

/// Bytes each direction's pipe holds before the writer waits.
const PIPE_BYTES: usize = 64 * 1024;
/// The polling interval advertised (XEP-0124 `polling`), in seconds.
const POLLING_SECS: u64 = 2;

/// Route `/http-bind` (and `/http-bind/`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(["/http-bind", "/http-bind/"])
            .route(web::post().to(post))
            .route(web::method(Method::OPTIONS).to(preflight))
            .route(web::get().to(describe)),
    );
}

/// The open BOSH sessions of the server `shared` belongs to (for tests and statistics).
pub fn session_count(shared: &Arc<crate::shared::Shared>) -> usize {
    session::count(server_key(shared))
}

/// Sessions of several servers in one process (the tests) are told apart by their `Shared`.
fn server_key(shared: &Arc<crate::shared::Shared>) -> usize {
    Arc::as_ptr(shared) as usize
}

/// A response with the XEP-0124 content type and the CORS header.
fn xml(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/xml; charset=utf-8")
        .insert_header(("Access-Control-Allow-Origin", "*"))
        .insert_header(("Cache-Control", "no-store"))
        .body(body)
}

fn terminate(condition: Condition) -> HttpResponse {
    xml(StatusCode::OK, wire::terminate(Some(condition), &[]))
}

/// CORS preflight: browsers ask before POSTing `text/xml` from another origin.
async fn preflight(state: web::Data<HttpState>) -> HttpResponse {
    if !state.shared.config.http.bosh {
        return HttpResponse::NotFound().finish();
    }
    HttpResponse::Ok()
        .insert_header(("Access-Control-Allow-Origin", "*"))
        .insert_header(("Access-Control-Allow-Methods", "POST, OPTIONS"))
        .insert_header(("Access-Control-Allow-Headers", "Content-Type"))
        .insert_header(("Access-Control-Max-Age", "86400"))
        .finish()
}

/// A browser opening the URL sees what it is.
async fn describe(state: web::Data<HttpState>) -> HttpResponse {
    if !state.shared.config.http.bosh {
        return HttpResponse::NotFound().finish();
    }
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("XMPP over BOSH (XEP-0206): POST <body/> requests here.\n")
}

/// The request body, up to `max` bytes.
async fn read_body(mut payload: web::Payload, max: usize) -> Result<Vec<u8>, StatusCode> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| StatusCode::BAD_REQUEST)?;
        if body.len() + chunk.len() > max {
            return Err(StatusCode::PAYLOAD_TOO_LARGE);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn post(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<HttpState>,
) -> HttpResponse {
    let cfg = &state.shared.config.http;
    if !cfg.bosh {
        return HttpResponse::NotFound().finish();
    }
    let body = match read_body(payload, cfg.max_request_bytes).await {
        Ok(b) => b,
        Err(status) => return xml(status, wire::terminate(Some(Condition::BadRequest), &[])),
    };
    let request = match wire::parse_request(&body) {
        Ok(r) => r,
        Err(condition) => return terminate(condition),
    };
    let (session, reply) = match &request.sid {
        None => match create(&req, &state, request) {
            Ok(created) => created,
            Err(condition) => return terminate(condition),
        },
        Some(sid) => match session::find(server_key(&state.shared), sid) {
            Some(s) => {
                if !s.admit(&request).await {
                    return terminate(Condition::PolicyViolation);
                }
                let reply = s.request(request);
                (s, reply)
            }
            None => return terminate(Condition::ItemNotFound),
        },
    };
    xml(StatusCode::OK, respond(&session, reply).await)
}

/// Wait for the response (at most `wait`).
async fn respond(session: &Session, reply: Reply) -> String {
    match reply {
        Reply::Now(body) => body,
        Reply::Wait {
            rid,
            token,
            wait,
            mut rx,
        } => match tokio::time::timeout(wait, &mut rx).await {
            Ok(Ok(body)) => body,
            // A repeat of this request took its place.
            Ok(Err(_)) => wire::empty(),
            Err(_) => {
                session.expire(rid, token);
                rx.try_recv().unwrap_or_else(|_| wire::empty())
            }
        },
    }
}

/// Open a session for a creation request; its reply is the creation response.
fn create(
    req: &HttpRequest,
    state: &HttpState,
    request: Request,
) -> Result<(Arc<Session>, Reply), Condition> {
    let shared = &state.shared;
    let cfg = &shared.config.http;
    let to = request.to.as_deref().ok_or(Condition::BadRequest)?;
    let host = to.to_ascii_lowercase();
    if !shared.config.hosts.contains_key(&host) {
        return Err(Condition::HostUnknown);
    }
    let peer = peer_of(req).ok_or(Condition::BadRequest)?;
    let max = cfg.max_bosh_sessions_per_address;
    let address_slot = state
        .bosh_sessions
        .take(peer, max, exempt(shared, peer))
        .ok_or(Condition::PolicyViolation)?;
    let Some(slot) = shared.try_connection_slot() else {
        log::warn!("bosh session refused: limits.max_connections reached");
        return Err(Condition::RemoteConnectionFailed);
    };
    let params = params_for(shared, &request, host);
    let (to_session, session_reader) = tokio::io::duplex(PIPE_BYTES);
    let (session_writer, from_session) = tokio::io::duplex(PIPE_BYTES);
    let (input, input_rx) = mpsc::unbounded_channel();
    let backlog = Arc::new(Backlog::default());
    let session = Session::open(params, input, backlog.clone(), address_slot);
    actix_rt::spawn(session::feed(input_rx, to_session, backlog));
    actix_rt::spawn(session::pump(session.clone(), from_session));
    let transport = Transport {
        reader: Box::new(session_reader),
        writer: Box::new(session_writer),
        channel_binding: ChannelBinding::default(),
    };
    state.spawner.spawn(transport, peer, slot, "bosh");
    log::debug!("bosh: session created");
    let reply = session.request(request);
    Ok((session, reply))
}

/// The session's parameters: the client's `wait` and `hold` within the server's limits.
fn params_for(shared: &Arc<crate::shared::Shared>, request: &Request, host: String) -> Params {
    let cfg = &shared.config.http;
    let wait = request
        .wait
        .unwrap_or(cfg.bosh_max_wait_secs)
        .clamp(1, cfg.bosh_max_wait_secs);
    // One held request, as Prosody: the client sends while one waits.
    let hold = request.hold.unwrap_or(1).min(1);
    let sid = crate::xmpp::random_id(16);
    let mut attrs = String::new();
    for (k, v) in [
        ("sid", sid.clone()),
        ("wait", wait.to_string()),
        ("hold", hold.to_string()),
        ("requests", (hold + 1).to_string()),
        ("polling", POLLING_SECS.to_string()),
        ("inactivity", cfg.bosh_inactivity_secs.to_string()),
        ("maxpause", session::MAX_PAUSE_SECS.to_string()),
        ("ver", wire::version_for(request.ver)),
        ("secure", "true".into()),
        ("xmpp:version", "1.0".into()),
        ("xmpp:restartlogic", "true".into()),
        ("xmlns:xmpp", wire::NS_XBOSH.into()),
        ("xmlns:stream", NS_STREAM.into()),
    ] {
        attrs.push_str(&attr(k, &v));
    }
    Params {
        sid,
        server: server_key(shared),
        host,
        lang: request.lang.clone(),
        rid: request.rid,
        hold: hold as usize,
        wait: Duration::from_secs(wait),
        inactivity: Duration::from_secs(cfg.bosh_inactivity_secs),
        creation_attrs: attrs,
        // Two full requests waiting for the session to read them.
        max_backlog: 2 * cfg.max_request_bytes,
    }
}
