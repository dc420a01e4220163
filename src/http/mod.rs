//! The web side: one actix-web listener (HTTPS with the hosts' certificates chosen by SNI,
//! or plain HTTP behind a reverse proxy) serving
//!
//! - `/xmpp-websocket`: XMPP over WebSocket, RFC 7395 (`websocket.rs`);
//! - `/http-bind`: XMPP over BOSH, XEP-0124/0206 (`bosh/`);
//! - `/upload/...`: XEP-0363 file upload's PUT and GET (`upload/`; the slots are `actors/upload.rs`);
//! - `/.well-known/host-meta` and `host-meta.json`: XEP-0156 discovery (`pages/`);
//! - `/` and `/privacy`: the server's own pages in German and English (`pages/`).
//!
//! WebSocket and BOSH clients become ordinary sessions: their transport is handed to
//! [`ClientSpawner`], which runs login and the `Connection` actor as for TCP, on the HTTP
//! worker that carries the connection. Nothing here logs or stores an address: the peer
//! address is only a key of the in-memory limits ([`PeerAddr`]).

pub mod bosh;
pub mod pages;
pub mod upload;
pub mod websocket;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpServer};

use crate::actors::listeners::ClientSpawner;
use crate::actors::ListenerKind;
use crate::limits::PeerAddr;
use crate::shared::Shared;

/// What every request handler can reach.
pub struct HttpState {
    pub shared: Arc<Shared>,
    /// Where WebSocket and BOSH transports become sessions.
    pub spawner: ClientSpawner,
    /// Open WebSocket connections per address.
    pub websockets: AddressCounts,
    /// Open BOSH sessions per address.
    pub bosh_sessions: AddressCounts,
}

/// The bound web listeners and the handle that stops them.
pub struct Running {
    pub listeners: Vec<(ListenerKind, SocketAddr)>,
    pub handle: actix_web::dev::ServerHandle,
}

/// Bind `[http]`'s listeners and start serving (inside the actix `System`); `None` when none
/// is configured.
pub fn start(shared: &Arc<Shared>, spawner: ClientSpawner) -> std::io::Result<Option<Running>> {
    let cfg = &shared.config.http;
    if !cfg.enabled() {
        return Ok(None);
    }
    let state = web::Data::new(HttpState {
        shared: shared.clone(),
        spawner,
        websockets: AddressCounts::default(),
        bosh_sessions: AddressCounts::default(),
    });
    let max_body = cfg.max_request_bytes;
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(max_body))
            .wrap(
                actix_web::middleware::DefaultHeaders::new()
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("Referrer-Policy", "no-referrer")),
            )
            .configure(websocket::configure)
            .configure(bosh::configure)
            .configure(upload::configure)
            .configure(pages::configure)
    })
    .workers(shared.config.worker_count().clamp(1, 4))
    .disable_signals()
    .client_request_timeout(std::time::Duration::from_secs(cfg.request_timeout_secs))
    .shutdown_timeout(1);
    let mut listeners = Vec::new();
    for addr in &cfg.listen {
        let std = crate::actors::listeners::listen_std(*addr)?;
        listeners.push((ListenerKind::Https, std.local_addr()?));
        let tls = shared
            .tls
            .http_builder()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        server = server.listen_openssl(std, tls)?;
    }
    for addr in &cfg.listen_plain {
        let std = crate::actors::listeners::listen_std(*addr)?;
        listeners.push((ListenerKind::Http, std.local_addr()?));
        server = server.listen(std)?;
    }
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(Some(Running { listeners, handle }))
}

/// The client's address, for the limits only. On a plain-HTTP listener (behind a reverse
/// proxy on this machine) the proxy's `X-Forwarded-For` names the client: its last entry,
/// which the proxy itself added.
pub fn peer_of(req: &HttpRequest) -> Option<PeerAddr> {
    let direct = req.peer_addr()?.ip();
    if !req.app_config().secure() && direct.is_loopback() {
        let forwarded = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<std::net::IpAddr>().ok());
        if let Some(ip) = forwarded {
            return Some(PeerAddr::new(ip));
        }
    }
    Some(PeerAddr::new(direct))
}

/// How many of something (WebSocket connections, BOSH sessions) each address holds, in
/// memory only.
#[derive(Default)]
pub struct AddressCounts(Arc<Mutex<HashMap<PeerAddr, usize>>>);

/// One counted place; given back when dropped.
pub struct AddressSlot {
    counts: Arc<Mutex<HashMap<PeerAddr, usize>>>,
    addr: PeerAddr,
}

impl AddressCounts {
    /// Take a place for `addr`, or `None` when it holds `max` already (0: no limit). Loopback
    /// is exempt when `limits.exempt_loopback` says so (`exempt`).
    pub fn take(&self, addr: PeerAddr, max: usize, exempt: bool) -> Option<AddressSlot> {
        let mut m = self.0.lock().ok()?;
        let n = m.entry(addr).or_insert(0);
        if max > 0 && !exempt && *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            counts: self.0.clone(),
            addr,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.counts.lock() {
            if let Some(n) = m.get_mut(&self.addr) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.addr);
                }
            }
        }
    }
}

/// Whether `peer` is exempt from the abuse limits (loopback with `limits.exempt_loopback`).
pub fn exempt(shared: &Shared, peer: PeerAddr) -> bool {
    shared.config.limits.exempt_loopback && peer.is_loopback()
}
