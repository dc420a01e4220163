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
//!     Router --ToService--> UploadService (upload.rs) --Route--> Router; its slots go to the web side
//!     Component (component.rs, one per connected XEP-0114 gateway, on the workers)
//!         --SetService (up/down), Route--> Router --ToService--> Component
//!     S2sIn, Component: IQs for a host or an account's stored data answered in place (host_iq.rs);
//!         Router --Route (a service's IQ to a host or a bare JID)--> HostIq (host_iq.rs, storage arbiter)
//!     Router --ToService--> Proxy65Service (proxy65.rs) --activate--> the SOCKS5 relay (src/proxy65/)
//!     Connection, S2sIn --PepIq/ClientDataSet/CapsAnswer--> PepService; Router --PepPresence--> PepService
//!     Connection --PushRequest/PushEvent--> PushService (push.rs, storage arbiter) --Route--> Router;
//!         Spool, Router --PushEvent--> PushService; Component, S2sIn, HostIq --PushAnswer--> PushService
//!     with [archive]: Router --ToArchive (archivable messages)--> Archiver (archive.rs, storage
//!         arbiter) --Archived--> Router; Connection --MamIq--> Archiver
//! ```
//!
//! The Router runs on its own arbiter and never blocks or touches disk; Spool, Scheduler,
//! RosterStore, PepService and the Archiver share a storage arbiter; S2s and its links have a federation
//! arbiter. Every message type is in [`messages`] (a leaf: it imports nothing from
//! `actors/`); the handles and the session directory are in [`directory`]. The destination
//! table (`src/destinations.rs`) says which domains are account hosts and which are service
//! domains; `doc/architecture.md` has the whole picture.

pub mod account;
pub mod archive;
pub mod component;
pub mod connection;
pub mod control;
pub mod directory;
pub mod host_iq;
pub mod listeners;
pub mod messages;
pub mod muc;
pub mod outbox;
pub mod pep;
pub mod proxy65;
pub mod push;
pub mod roster;
pub mod router;
pub mod s2s;
pub mod s2s_in;
pub mod scheduler;
pub mod service;
pub mod spool;
pub mod stream;
pub mod upload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_rt::{Arbiter, ArbiterHandle};

use crate::shared::Shared;
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
    /// The web side over HTTPS (`src/http/`).
    Https,
    /// The web side over plain HTTP, behind a reverse proxy.
    Http,
    /// External components (XEP-0114).
    Component,
    /// The file-transfer proxy, SOCKS5 (XEP-0065; `src/proxy65/`).
    Proxy65,
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
    /// The web side, stopped after the sessions closed.
    http: Option<actix_web::dev::ServerHandle>,
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
        if let Some(http) = &self.http {
            http.stop(false).await;
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

    let mut listeners = listeners::bind_listeners(&shared, &handle, &s2s, &s2s_cx, &workers)?;
    let spawner = listeners::ClientSpawner::new(shared.clone(), handle.clone());
    let http = crate::http::start(&shared, spawner)?.map(|web| {
        listeners.extend(web.listeners);
        web.handle
    });
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
        http,
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
    let push = push::PushService::start_in_arbiter(&store_handle, {
        let (shared, router) = (shared.clone(), addr.clone());
        move |_| push::PushService::new(shared, router.recipient())
    });
    let spool = Spool::start_in_arbiter(&store_handle, {
        let (shared, router, sched) = (shared.clone(), addr.clone(), scheduler.clone());
        let push = push.clone().recipient();
        move |_| Spool::new(shared, router.recipient(), sched.recipient(), push)
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
    let inboxes = host_iq::Inboxes {
        pep: pep_handle(&pep),
        push_answer: push.clone().recipient(),
    };
    let host_iq = host_iq::HostIq::start_in_arbiter(&store_handle, {
        let (shared, router) = (shared.clone(), addr.clone().recipient());
        move |_| host_iq::HostIq {
            shared,
            inboxes,
            router,
        }
    });
    router.set_host_iq(host_iq.recipient());
    router.set_push(push.clone().recipient());
    router.listen_accounts(push.clone().recipient());
    let archive = shared.config.archive.enabled.then(|| {
        let (shared, router) = (shared.clone(), addr.clone().recipient());
        archive::Archiver::start_in_arbiter(&store_handle, move |_| {
            archive::Archiver::new(shared, router)
        })
    });
    if let Some(a) = &archive {
        router.set_archive(a.clone().recipient());
    }
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
        directory::PushHandle {
            request: push.clone().recipient(),
            event: push.clone().recipient(),
            answer: push.recipient(),
        },
        archive.as_ref().map(|a| directory::ArchiveHandle {
            iq: a.clone().recipient(),
            barrier: a.clone().recipient(),
        }),
    );
    let addr = ctx.run(router);
    let mut writers: Vec<Recipient<messages::Barrier>> = vec![addr.clone().recipient()];
    if let Some(a) = archive {
        // What the archive hands back goes to the router again.
        writers.push(a.recipient());
        writers.push(addr.clone().recipient());
    }
    writers.extend([
        roster.clone().recipient(),
        spool.clone().recipient(),
        pep.recipient(),
    ]);
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
