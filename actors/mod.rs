//! The actors and how they are wired.
//!
//! ```text
//!  listener (accept loop, main arbiter)
//!     | TcpStream, round robin
//!     v
//!  worker arbiters (one per core): TLS + login (src/login.rs), then one Connection actor
//!     Connection --Route/Bind/Unbind/SetPresence/CloseAccount--> Router
//!     Router --ToSession--> Connection
//!     Router --Offline--> Spool --Route (bounces)--> Router
//!     Connection --RosterGet/RosterSet/Outbound/Block*/LoadSessionRoster--> RosterStore
//!     Router --Inbound (subscription stanzas)--> RosterStore
//!     RosterStore --RosterPush/DeliverAvailable/SubscriptionChanged/BlockChanged/Route--> Router
//!     Router, Spool --LogDeliveryError--> Scheduler
//!     Router --ToRemote--> S2s --> S2sOut (one per local host and remote domain)
//!     S2sIn (one per incoming server stream, on the workers) --Route--> Router
//!     Router --ToService--> a service actor (one per service domain) --Route--> Router
//!     anyone --SetService--> Router (a service domain's actor is up or down)
//!     Connection, S2sIn --PepIq/ClientDataSet/CapsAnswer--> PepService; Router --PepPresence--> PepService
//! ```
//!
//! The Router runs on its own arbiter and never blocks or touches disk; Spool, Scheduler,
//! RosterStore and PepService share a storage arbiter; S2s and its links have a federation
//! arbiter. Every message type is in [`messages`] (a leaf: it imports nothing from
//! `actors/`); the handles and the session directory are in [`directory`]. The destination
//! table (`src/destinations.rs`) says which domains are account hosts and which are service
//! domains; `doc/architecture.md` has the whole picture.

pub mod account;
pub mod connection;
pub mod control;
pub mod directory;
pub mod messages;
pub mod muc;
pub mod outbox;
pub mod pep;
pub mod roster;
pub mod router;
pub mod s2s;
pub mod s2s_in;
pub mod scheduler;
pub mod spool;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_rt::{Arbiter, ArbiterHandle};

use crate::shared::Shared;
use crate::tls::{negotiate_starttls, NegotiateError};
use connection::Connection;
use directory::{RosterHandle, RouterHandle};
use messages::SessionCount;
use roster::{RosterStore, RouterInbox};
use router::Router;
use scheduler::Scheduler;
use spool::Spool;

/// Which kind of port a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Clients, RFC 6120 STARTTLS.
    StartTls,
    /// Clients, XEP-0368 direct TLS.
    DirectTls,
    /// Servers, RFC 6120 STARTTLS.
    S2s,
    /// Servers, XEP-0368 direct TLS.
    S2sDirectTls,
}

/// A running server: actor addresses and bound ports.
pub struct Running {
    pub router: Addr<Router>,
    /// The federation manager (`None` when `s2s.enabled = false`).
    pub s2s: Option<Addr<s2s::S2s>>,
    /// The actors that write to the store, drained in this order at shutdown (the router
    /// forwards to the others).
    writers: Vec<Recipient<messages::Barrier>>,
    /// Services to tell first at shutdown.
    services: Vec<Recipient<messages::ServiceShutdown>>,
    /// The bound listeners (with the real port when the config said port 0).
    pub listeners: Vec<(ListenerKind, SocketAddr)>,
    /// Keep the arbiters alive.
    _arbiters: Vec<Arbiter>,
}

impl Running {
    /// Stop accepting, close every stream (logins included) with `system-shutdown`, give the
    /// writers a moment to flush, flush the store and stop the worker threads.
    pub async fn shutdown(&self, shared: &Shared) {
        // Services first, while the streams are open (group chat: status 332 to occupants);
        // the router then has what they routed before the streams close.
        for s in &self.services {
            let _ = s.send(messages::ServiceShutdown).await;
        }
        if let Some(w) = self.writers.first() {
            let _ = w.send(messages::Barrier).await;
        }
        shared.begin_shutdown();
        for _ in 0..150 {
            if shared.connection_count() == 0 {
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        // Everything accepted is handled before the last flush: the router forwards to the
        // roster store and the spool, which may route again; two rounds settle it.
        for _ in 0..2 {
            for w in &self.writers {
                let _ = w.send(messages::Barrier).await;
            }
        }
        if let Err(e) = shared.store.flush() {
            log::error!("final flush failed: {e}");
        }
        for a in &self._arbiters {
            a.stop();
        }
    }

    /// The worker, router and storage threads, to stop and join once the system is down.
    pub fn into_arbiters(self) -> Vec<Arbiter> {
        self._arbiters
    }

    /// Number of bound sessions.
    pub async fn session_count(&self) -> usize {
        self.router.send(SessionCount).await.unwrap_or(0)
    }
}

/// An internal service started with the server: the actor that owns the service domain
/// `domain` (which must be in `config.services`). `start` runs on the router's thread and
/// returns the service's inboxes; the router hands it every stanza for the domain.
pub struct ServiceSpec {
    pub domain: String,
    pub start: Box<dyn FnOnce(ServiceContext) -> ServiceInbox + Send>,
}

/// A service's inboxes: the stanzas for its domain, and (for services that keep data about
/// accounts) account deletions.
pub struct ServiceInbox {
    pub stanzas: Recipient<messages::ToService>,
    pub account_gone: Option<Recipient<messages::AccountGone>>,
    /// Told first when the server stops, and waited for.
    pub shutdown: Option<Recipient<messages::ServiceShutdown>>,
}

impl From<Recipient<messages::ToService>> for ServiceInbox {
    fn from(stanzas: Recipient<messages::ToService>) -> Self {
        ServiceInbox {
            stanzas,
            account_gone: None,
            shutdown: None,
        }
    }
}

/// What a service gets to work with.
pub struct ServiceContext {
    pub shared: Arc<Shared>,
    /// Where its answers go (stanzas `from` a JID of its domain).
    pub route: Recipient<messages::Route>,
    /// Tell the router that the service is down or up again.
    pub set_service: Recipient<messages::SetService>,
    /// The storage arbiter, for actors that touch the store.
    pub arbiter: ArbiterHandle,
    /// The bound sessions, for services that deliver to them directly.
    pub directory: directory::SessionDirectory,
}

/// Start the actors and listeners. Must run inside an actix `System`.
pub async fn start(shared: Arc<Shared>, services: Vec<ServiceSpec>) -> std::io::Result<Running> {
    let cfg = &shared.config;
    let store_arbiter = Arbiter::new();
    let router_arbiter = Arbiter::new();
    let s2s_arbiter = Arbiter::new();
    let s2s_cx = if cfg.s2s.enabled {
        Some(Arc::new(
            crate::s2s::S2sContext::new(&shared).map_err(std::io::Error::other)?,
        ))
    } else {
        None
    };
    let workers: Vec<Arbiter> = (0..cfg.worker_count()).map(|_| Arbiter::new()).collect();

    let scheduler = Scheduler::start_in_arbiter(&store_arbiter.handle(), {
        let shared = shared.clone();
        move |_| Scheduler::new(shared)
    });

    // The router and the spool know each other: create the router's context first so its
    // address exists before the spool starts, all on the router's own thread.
    let (tx, rx) = tokio::sync::oneshot::channel();
    {
        let shared = shared.clone();
        let store_handle = store_arbiter.handle();
        let s2s_handle = s2s_arbiter.handle();
        let scheduler = scheduler.clone();
        let s2s_cx = s2s_cx.clone();
        router_arbiter.spawn_fn(move || {
            let started = start_router(
                shared,
                store_handle,
                s2s_handle,
                scheduler,
                s2s_cx,
                services,
            );
            let _ = tx.send(started);
        });
    }
    let (router, handle, mut writers, s2s, services) = rx
        .await
        .map_err(|_| std::io::Error::other("router did not start"))?;
    control::start(shared.clone(), router.clone(), handle.clone(), s2s.clone())
        .map_err(|e| std::io::Error::new(e.kind(), format!("control socket: {e}")))?;
    scheduler.do_send(messages::WireScheduler {
        accounts: account::Live::from(&handle),
    });

    let listeners = bind_listeners(&shared, &handle, &s2s, &s2s_cx, &workers)?;
    let mut arbiters = vec![store_arbiter, router_arbiter, s2s_arbiter];
    arbiters.extend(workers);
    writers.push(scheduler.clone().recipient());
    if let Some(s) = &s2s {
        // After the router: the last presence of closing sessions goes out first.
        writers.insert(1, s.clone().recipient());
    }
    Ok(Running {
        router,
        s2s,
        writers,
        services,
        listeners,
        _arbiters: arbiters,
    })
}

/// What the router's thread hands back to [`start`]: the router, its handle for
/// connections, the actors that write to the store (router, roster store, spool, PEP, in
/// the order they are drained), the federation manager and the services to tell first at
/// shutdown.
type RouterSide = (
    Addr<Router>,
    RouterHandle,
    Vec<Recipient<messages::Barrier>>,
    Option<Addr<s2s::S2s>>,
    Vec<Recipient<messages::ServiceShutdown>>,
);

/// On the router's thread: create the router's address, start the actors that talk to it
/// (federation on its arbiter; spool, roster store, PEP and the services on the store's),
/// then run the router with their inboxes.
fn start_router(
    shared: Arc<Shared>,
    store_handle: ArbiterHandle,
    s2s_handle: ArbiterHandle,
    scheduler: Addr<Scheduler>,
    s2s_cx: Option<Arc<crate::s2s::S2sContext>>,
    services: Vec<ServiceSpec>,
) -> RouterSide {
    let ctx: Context<Router> = Context::new();
    let addr = ctx.address();
    let s2s = s2s_cx.map(|cx| {
        let (shared, router, sched) = (shared.clone(), addr.clone(), scheduler.clone());
        s2s::S2s::start_in_arbiter(&s2s_handle, move |_| {
            s2s::S2s::new(shared, cx, router.recipient(), sched.recipient())
        })
    });
    let spool = Spool::start_in_arbiter(&store_handle, {
        let (shared, router, sched) = (shared.clone(), addr.clone(), scheduler.clone());
        move |_| Spool::new(shared, router.recipient(), sched.recipient())
    });
    let roster = RosterStore::start_in_arbiter(&store_handle, {
        let (shared, router) = (shared.clone(), addr.clone());
        move |_| RosterStore::new(shared, router_inbox(router))
    });
    let pep = pep::PepService::start_in_arbiter(&store_handle, {
        let (shared, router) = (shared.clone(), addr.clone());
        move |_| pep::PepService::new(shared, router.recipient())
    });
    let mut router = Router::new(
        shared.destinations.clone(),
        spool.clone().recipient(),
        scheduler.recipient(),
        roster.clone().recipient(),
        s2s.clone().map(Addr::recipient),
        Some(pep.clone().recipient()),
    );
    let mut on_shutdown = Vec::new();
    for spec in services {
        let inbox = (spec.start)(ServiceContext {
            shared: shared.clone(),
            route: addr.clone().recipient(),
            set_service: addr.clone().recipient(),
            arbiter: store_handle.clone(),
            directory: router.directory(),
        });
        if let Some(l) = inbox.account_gone {
            router.listen_accounts(l);
        }
        on_shutdown.extend(inbox.shutdown);
        router.set_service(spec.domain, Some(inbox.stanzas));
    }
    let handle = router.handle(
        &addr,
        roster_handle(&roster),
        (spool.clone().recipient(), spool.clone().recipient()),
        pep_handle(&pep),
    );
    let addr = ctx.run(router);
    let writers: Vec<Recipient<messages::Barrier>> = vec![
        addr.clone().recipient(),
        roster.clone().recipient(),
        spool.clone().recipient(),
        pep.recipient(),
    ];
    (addr, handle, writers, s2s, on_shutdown)
}

/// The router's inboxes the roster store answers to.
fn router_inbox(router: Addr<Router>) -> RouterInbox {
    RouterInbox {
        route: router.clone().recipient(),
        push: router.clone().recipient(),
        deliver: router.clone().recipient(),
        changed: router.clone().recipient(),
        blocks: router.clone().recipient(),
        inbound_done: router.recipient(),
    }
}

/// The roster store's inboxes, for the router's handle.
fn roster_handle(roster: &Addr<RosterStore>) -> RosterHandle {
    RosterHandle {
        load: roster.clone().recipient(),
        get: roster.clone().recipient(),
        set: roster.clone().recipient(),
        outbound: roster.clone().recipient(),
        inbound: roster.clone().recipient(),
        block_get: roster.clone().recipient(),
        block_set: roster.clone().recipient(),
        delete: roster.clone().recipient(),
        barrier: roster.clone().recipient(),
    }
}

/// The PEP service's inboxes, for the router's handle.
fn pep_handle(pep: &Addr<pep::PepService>) -> directory::PepHandle {
    directory::PepHandle {
        iq: pep.clone().recipient(),
        client_data_set: pep.clone().recipient(),
        presence: pep.clone().recipient(),
        caps: pep.clone().recipient(),
    }
}

/// Bind the client listeners, and the server-to-server ones when federation runs, each
/// with an accept loop that hands connections to the `workers` in turn. Returns the bound
/// addresses (with the real port when the config said port 0).
fn bind_listeners(
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
    let kinds = kinds.chain(s2s_kinds);
    for (kind, addr) in kinds {
        let listener = listen(addr)
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        let local = listener.local_addr()?;
        listeners.push((kind, local));
        let federation = match (s2s, s2s_cx) {
            (Some(m), Some(cx)) => Some((m.clone(), cx.clone())),
            _ => None,
        };
        actix_rt::spawn(accept_loop(
            listener,
            kind,
            shared.clone(),
            handle.clone(),
            federation,
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
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(socket.into())
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    kind: ListenerKind,
    shared: Arc<Shared>,
    router: RouterHandle,
    federation: Option<(Addr<s2s::S2s>, Arc<crate::s2s::S2sContext>)>,
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
            Ok((tcp, addr)) => (tcp, crate::limits::PeerAddr::new(addr.ip())),
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
        let (shared, router, federation) = (shared.clone(), router.clone(), federation.clone());
        worker.spawn_fn(move || {
            actix_rt::spawn(async move {
                let Ok(tcp) = tokio::net::TcpStream::from_std(std_tcp) else {
                    return;
                };
                match (kind, federation) {
                    (ListenerKind::S2s | ListenerKind::S2sDirectTls, Some(fed)) => {
                        server(tcp, peer, kind, shared, fed, router, slot).await
                    }
                    (ListenerKind::S2s | ListenerKind::S2sDirectTls, None) => {}
                    _ => client(tcp, peer, kind, shared, router, slot).await,
                }
            });
        });
    }
}

/// Whether the address is exempt from the abuse limits (loopback), and how many unfinished
/// handshakes it may have (`limits.max_unauthenticated_per_address`) and all addresses
/// together (`limits.max_unauthenticated`); 0: no limit.
fn handshake_limit(shared: &Shared, peer: crate::limits::PeerAddr) -> (bool, usize, usize) {
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
    peer: crate::limits::PeerAddr,
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

/// One client connection on a worker arbiter: TLS, login, then the Connection actor.
async fn client(
    tcp: tokio::net::TcpStream,
    peer: crate::limits::PeerAddr,
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
        ListenerKind::StartTls | ListenerKind::S2s | ListenerKind::S2sDirectTls => {
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
    let transport = crate::transport::Transport::tls(tls);
    let login =
        crate::login::run(&shared, id, transport, deadline, (!exempt).then_some(peer)).await;
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
    Connection::start(id, shared, router, login, slot, first);
}
