//! The listening sockets and what happens to a connection before it becomes an actor:
//! accept loops that hand TCP connections to the worker arbiters in turn, TLS (direct or
//! STARTTLS), then login (`src/login.rs`) and either stream-management resumption or a new
//! [`Connection`]. Clients of other transports (WebSocket, BOSH: `src/http/`) join at
//! [`ClientSpawner`], after their own transport set-up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_rt::{Arbiter, ArbiterHandle};

use super::connection::{self, Connection};
use super::directory::RouterHandle;
use super::{messages, s2s, s2s_in, ListenerKind};
use crate::limits::{PeerAddr, PendingSlot};
use crate::shared::{ConnId, ConnSlot, Shared};
use crate::tls::{negotiate_starttls, NegotiateError};
use crate::transport::Transport;

/// Bind the client listeners, the server-to-server ones when federation runs and the
/// component ports when components are configured, each
/// with an accept loop that hands connections to the `workers` in turn. Returns the bound
/// addresses (with the real port when the config said port 0).
pub(super) fn bind_listeners(
    shared: &Arc<Shared>,
    handle: &RouterHandle,
    s2s: &Option<Addr<s2s::S2s>>,
    s2s_cx: &Option<Arc<crate::s2s::S2sContext>>,
    workers: &[Arbiter],
) -> std::io::Result<Vec<(ListenerKind, SocketAddr)>> {
    let cfg = &shared.config;
    let mut listeners = Vec::new();
    let kinds = cfg
        .listen
        .c2s_starttls
        .iter()
        .map(|a| (ListenerKind::StartTls, *a))
        .chain(
            cfg.listen
                .c2s_direct_tls
                .iter()
                .map(|a| (ListenerKind::DirectTls, *a)),
        );
    let worker_handles: Arc<Vec<ArbiterHandle>> =
        Arc::new(workers.iter().map(Arbiter::handle).collect());
    let s2s_kinds = cfg
        .listen
        .s2s
        .iter()
        .map(|a| (ListenerKind::S2s, *a))
        .chain(
            cfg.listen
                .s2s_direct_tls
                .iter()
                .map(|a| (ListenerKind::S2sDirectTls, *a)),
        )
        .filter(|_| s2s.is_some());
    let federation = match (s2s, s2s_cx) {
        (Some(m), Some(cx)) => Some((m.clone(), cx.clone())),
        _ => None,
    };
    let mut bound: Vec<(ListenerKind, SocketAddr, Served)> = kinds
        .map(|(k, a)| (k, a, Served::Clients(k)))
        .chain(s2s_kinds.filter_map(|(k, a)| {
            let (m, cx) = federation.clone()?;
            Some((k, a, Served::Servers(k, m, cx)))
        }))
        .collect();
    bound.extend(component_listeners(cfg));
    for (kind, addr, served) in bound {
        let listener = listen(addr)?;
        let local = listener.local_addr()?;
        listeners.push((kind, local));
        actix_rt::spawn(accept_loop(
            listener,
            served,
            shared.clone(),
            handle.clone(),
            worker_handles.clone(),
        ));
    }
    Ok(listeners)
}

/// Connections the kernel queues before they are accepted. The standard library's 128 makes
/// a reconnect storm (a network change for many phones at once) overflow the queue and wait
/// for SYN retransmissions; the kernel still caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 4096;

/// A listening socket. An IPv6 address listens for IPv6 only, so `0.0.0.0:5222` and
/// `[::]:5222` can both be configured (Linux would otherwise refuse the second).
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::from_std(listen_std(addr)?)
}

/// [`listen`] as a standard-library listener (for actix-web), non-blocking. The error names
/// the address.
pub fn listen_std(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    bind_socket(addr)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

fn bind_socket(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// What a listener's connections become.
#[derive(Clone)]
enum Served {
    /// Client streams (the listener kind says STARTTLS or direct TLS).
    Clients(ListenerKind),
    /// Server-to-server streams, with the federation manager.
    Servers(ListenerKind, Addr<s2s::S2s>, Arc<crate::s2s::S2sContext>),
    /// External components: those admitted on this listener.
    Components(crate::component::Admitted),
}

/// The component listeners: the shared `listen.components` port when a component uses it,
/// and each listener of a component's own.
fn component_listeners(cfg: &crate::config::Config) -> Vec<(ListenerKind, SocketAddr, Served)> {
    let mut v = Vec::new();
    if cfg.shared_component_listener() {
        let admitted = crate::component::admitted_on(cfg, None);
        for a in &cfg.listen.components {
            v.push((
                ListenerKind::Component,
                *a,
                Served::Components(admitted.clone()),
            ));
        }
    }
    let own: std::collections::BTreeSet<SocketAddr> =
        cfg.components.iter().filter_map(|c| c.listen).collect();
    for a in own {
        let admitted = crate::component::admitted_on(cfg, Some(a));
        v.push((ListenerKind::Component, a, Served::Components(admitted)));
    }
    v
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    served: Served,
    shared: Arc<Shared>,
    router: RouterHandle,
    workers: Arc<Vec<ArbiterHandle>>,
) {
    let mut next = 0usize;
    let mut shutdown = shared.shutdown_signal();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|down| *down) => return,
        };
        let (tcp, peer) = match accepted {
            // The address only becomes a PeerAddr (no Display/Debug) for the rate limits: it
            // never reaches a log or the store.
            Ok((tcp, addr)) => (tcp, PeerAddr::new(addr.ip())),
            Err(e) => {
                log::warn!("accept failed: {e}");
                actix_rt::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = shared.try_connection_slot() else {
            log::warn!("connection refused: limits.max_connections reached");
            drop(tcp);
            continue;
        };
        let Ok(std_tcp) = tcp.into_std() else {
            continue;
        };
        let worker = &workers[next % workers.len()];
        next = next.wrapping_add(1);
        let (shared, router, served) = (shared.clone(), router.clone(), served.clone());
        worker.spawn_fn(move || {
            actix_rt::spawn(async move {
                let Ok(tcp) = tokio::net::TcpStream::from_std(std_tcp) else {
                    return;
                };
                match served {
                    Served::Servers(kind, m, cx) => {
                        server(tcp, peer, kind, shared, (m, cx), router, slot).await
                    }
                    Served::Clients(kind) => client(tcp, peer, kind, shared, router, slot).await,
                    Served::Components(admitted) => {
                        component(tcp, shared, admitted, router, slot).await
                    }
                }
            });
        });
    }
}

/// Whether the address is exempt from the abuse limits (loopback), and how many unfinished
/// handshakes it may have (`limits.max_unauthenticated_per_address`) and all addresses
/// together (`limits.max_unauthenticated`); 0: no limit.
pub(crate) fn handshake_limit(shared: &Shared, peer: PeerAddr) -> (bool, usize, usize) {
    let l = &shared.config.limits;
    let exempt = l.exempt_loopback && peer.is_loopback();
    if exempt {
        (true, 0, 0)
    } else {
        (
            false,
            l.max_unauthenticated_per_address,
            l.max_unauthenticated,
        )
    }
}

/// One incoming server-to-server connection on a worker arbiter: TLS and negotiation
/// (`src/s2s/incoming.rs`), then the S2sIn actor.
async fn server(
    tcp: tokio::net::TcpStream,
    peer: PeerAddr,
    kind: ListenerKind,
    shared: Arc<Shared>,
    (manager, cx): (Addr<s2s::S2s>, Arc<crate::s2s::S2sContext>),
    router: RouterHandle,
    slot: crate::shared::ConnSlot,
) {
    let id = shared.next_conn_id();
    // The same cap on unfinished handshakes per address as for clients (slowloris).
    let (_, per_address, global) = handshake_limit(&shared, peer);
    let Some(pending) = shared
        .limiter
        .unauthenticated_slot(peer, per_address, global)
    else {
        log::debug!("s2s#{}: refused: too many unfinished handshakes", id.0);
        return;
    };
    let _ = tcp.set_nodelay(true);
    log::debug!("s2s#{}: connected ({kind:?})", id.0);
    let deadline = tokio::time::Instant::now() + shared.config.handshake_timeout();
    let direct = kind == ListenerKind::S2sDirectTls;
    let negotiated = crate::s2s::incoming::negotiate(&shared, &cx, tcp, direct, deadline).await;
    drop(pending);
    match negotiated {
        Ok(accepted) => {
            s2s_in::S2sIn::start(id, shared, cx, router, manager, accepted, slot);
        }
        Err(e) => log::debug!("s2s#{}: closed before authentication: {e:?}", id.0),
    }
}

/// One external component connection on a worker arbiter: the XEP-0114 handshake
/// (`src/component.rs`), then the Component actor. Component ports are for the operator's
/// own gateways, so the abuse limits for strangers do not apply; the handshake deadline does.
async fn component(
    tcp: tokio::net::TcpStream,
    shared: Arc<Shared>,
    admitted: crate::component::Admitted,
    router: RouterHandle,
    slot: crate::shared::ConnSlot,
) {
    let id = shared.next_conn_id();
    let _ = tcp.set_nodelay(true);
    log::debug!("comp#{}: connected", id.0);
    let deadline = tokio::time::Instant::now() + shared.config.handshake_timeout();
    let shutdown = shared.shutdown_signal();
    match crate::component::negotiate(&shared, tcp, &admitted, shutdown, deadline).await {
        Ok(accepted) => {
            super::component::Component::start(id, shared, &router, accepted, slot);
        }
        Err(e) => log::info!("comp#{}: handshake failed: {e}", id.0),
    }
}

/// One client connection on a worker arbiter: TLS, login, then the Connection actor.
async fn client(
    tcp: tokio::net::TcpStream,
    peer: PeerAddr,
    kind: ListenerKind,
    shared: Arc<Shared>,
    router: RouterHandle,
    slot: crate::shared::ConnSlot,
) {
    let id = shared.next_conn_id();
    let (exempt, per_address, global) = handshake_limit(&shared, peer);
    let Some(pending) = shared
        .limiter
        .unauthenticated_slot(peer, per_address, global)
    else {
        log::debug!("{id}: refused: too many unauthenticated connections");
        return;
    };
    let _ = tcp.set_nodelay(true);
    log::debug!("{id}: connected ({kind:?})");
    let deadline = tokio::time::Instant::now() + shared.config.handshake_timeout();
    let tls = match kind {
        ListenerKind::DirectTls => tokio::time::timeout_at(deadline, shared.tls.accept(tcp))
            .await
            .map_err(|_| NegotiateError::Io(std::io::ErrorKind::TimedOut.into()))
            .and_then(|r| r.map_err(NegotiateError::Io)),
        _ => {
            // negotiate_starttls answers a missed deadline itself with connection-timeout;
            // this outer bound only covers the TLS handshake after <proceed/>.
            match tokio::time::timeout_at(
                deadline + Duration::from_secs(1),
                negotiate_starttls(
                    &shared.tls,
                    &shared.config,
                    shared.shutdown_signal(),
                    tcp,
                    deadline,
                ),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(NegotiateError::Io(std::io::ErrorKind::TimedOut.into())),
            }
        }
    };
    let tls = match tls {
        Ok(t) => t,
        Err(e) => {
            log::debug!("{id}: closed before TLS: {e:?}");
            return;
        }
    };
    let transport = Transport::tls(tls);
    let new = NewClient {
        id,
        peer,
        exempt,
        deadline,
        slot,
    };
    client_session(&shared, router, new, transport, pending).await;
}

/// A client connection whose transport is ready for the stream header.
struct NewClient {
    id: ConnId,
    peer: PeerAddr,
    /// Exempt from the abuse limits (loopback, `limits.exempt_loopback`).
    exempt: bool,
    /// When login must be done (`limits.handshake_timeout_secs`).
    deadline: tokio::time::Instant,
    slot: ConnSlot,
}

/// Login on `transport`, then a resumed session (XEP-0198) or a new [`Connection`]; the
/// `pending` slot (unauthenticated connections of the address) is held until login ends.
async fn client_session(
    shared: &Arc<Shared>,
    router: RouterHandle,
    new: NewClient,
    transport: Transport,
    pending: PendingSlot<'_>,
) {
    let NewClient {
        id,
        peer,
        exempt,
        deadline,
        slot,
    } = new;
    let login = crate::login::run(shared, id, transport, deadline, (!exempt).then_some(peer)).await;
    drop(pending);
    let mut login = match login {
        Ok(l) => l,
        Err(e) => return log::debug!("{id}: closed before authentication: {e:?}"),
    };
    // The first element after authentication: a XEP-0198 <resume/> takes the transport to
    // the session it names; anything else starts a new session.
    let first_deadline = tokio::time::Instant::now() + shared.config.handshake_timeout();
    let mut shutdown = shared.shutdown_signal();
    let first = match crate::login::first_element(&mut shutdown, &mut login, first_deadline).await {
        Ok(el) => el,
        Err(e) => return log::debug!("{id}: closed after authentication: {e:?}"),
    };
    let mut slot = slot;
    let mut first = Some(first);
    if let Some(resume) = first
        .as_ref()
        .filter(|e| e.is("resume", connection::sm::NS))
    {
        let h = resume.get_attr("h").and_then(|h| h.parse::<u32>().ok());
        let previd = resume.get_attr("previd").unwrap_or_default().to_owned();
        let bare = crate::xmpp::BareJid::new(&format!("{}@{}", login.user, login.host));
        let session = match (&bare, h) {
            (Ok(b), Some(_)) => router.resumable.get(&previd, b),
            _ => None,
        };
        if let (Some(addr), Some(h)) = (session, h) {
            match addr.send(messages::Resume { login, h, slot }).await {
                Ok(Ok(())) => return log::debug!("{id}: transport handed to the resumed session"),
                Ok(Err(back)) => (login, slot) = *back,
                Err(_) => return,
            }
        }
        use tokio::io::AsyncWriteExt;
        if login
            .writer
            .write_all(connection::sm::resume_failed().as_bytes())
            .await
            .is_err()
        {
            return;
        }
        first = None;
    }
    Connection::start(id, shared.clone(), router, login, slot, first);
}

/// Turns client transports of other listeners (WebSocket, BOSH) into sessions: login and the
/// [`Connection`] run exactly as for TCP clients, on the arbiter that calls [`spawn`] (the
/// HTTP worker that carries the connection), so the bytes between the transport's framing
/// tasks and the session never cross threads, and the web side needs no handle on the
/// connection workers. (Measured: the same CPU per WebSocket message as handing them to the
/// workers; the framing layers themselves are what a WebSocket message costs over TCP.)
///
/// [`spawn`]: ClientSpawner::spawn
#[derive(Clone)]
pub struct ClientSpawner {
    shared: Arc<Shared>,
    router: RouterHandle,
}

impl ClientSpawner {
    pub(super) fn new(shared: Arc<Shared>, router: RouterHandle) -> ClientSpawner {
        ClientSpawner { shared, router }
    }

    /// Start login and the session for `transport` (from `peer`, holding `slot`) on the
    /// current arbiter. `what` names the transport in the debug log.
    pub fn spawn(&self, transport: Transport, peer: PeerAddr, slot: ConnSlot, what: &'static str) {
        let (shared, router) = (self.shared.clone(), self.router.clone());
        actix_rt::spawn(async move {
            let id = shared.next_conn_id();
            let (exempt, per_address, global) = handshake_limit(&shared, peer);
            let Some(pending) = shared
                .limiter
                .unauthenticated_slot(peer, per_address, global)
            else {
                return log::debug!("{id}: refused: too many unauthenticated connections");
            };
            log::debug!("{id}: connected ({what})");
            let new = NewClient {
                id,
                peer,
                exempt,
                deadline: tokio::time::Instant::now() + shared.config.handshake_timeout(),
                slot,
            };
            client_session(&shared, router, new, transport, pending).await;
        });
    }
}
