//! State shared by every connection, outside the actors: configuration, store, TLS, and the
//! runtime switches an operator can flip.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::store::Store;
use crate::tls::TlsAcceptor;

/// Shared, read-mostly server state. Held as `Arc<Shared>`.
pub struct Shared {
    pub config: Config,
    pub store: Store,
    pub tls: TlsAcceptor,
    /// Whether in-band registration is open now (initially from the config).
    pub registration_open: AtomicBool,
    /// When the server started (uptime, XEP-0012 later).
    pub started: Instant,
    /// Source of connection ids (`c2s#N`).
    next_conn: AtomicU64,
    /// Open client connections.
    connections: std::sync::atomic::AtomicUsize,
    /// What disco#info says about the server (XEP-0157 addresses, XEP-0115 hash).
    pub server_info: crate::services::disco::ServerInfo,
    /// What each served domain is (account host or service).
    pub destinations: crate::destinations::Destinations,
    /// Registration and login rate limits (addresses in memory only).
    pub limiter: crate::limits::Limiter,
    /// Open XEP-0363 upload slots (in memory only): the upload service opens them, the web
    /// side's `PUT` uses them up.
    pub upload_slots: crate::http::upload::Slots,
    /// The external components connected now (XEP-0114; one stream per domain).
    pub components: crate::component::Connected,
    /// Flipped to `true` once when the server starts shutting down.
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    /// Bundle the pieces.
    pub fn new(config: Config, store: Store, tls: TlsAcceptor) -> Arc<Shared> {
        let c = &config.contact;
        let server_info = crate::services::disco::ServerInfo::new(&[
            ("abuse-addresses", &c.abuse),
            ("admin-addresses", &c.admin),
            ("support-addresses", &c.support),
            ("security-addresses", &c.security),
        ])
        .with_features(crate::services::extdisco::features(&config.turn));
        let destinations = crate::destinations::Destinations::from_config(&config);
        let mut server_info = server_info;
        if config.push.enabled {
            server_info.account_features.push(crate::services::push::NS);
        }
        if config.archive.enabled {
            use crate::services::mam;
            let archive = [mam::NS, mam::NS_EXTENDED, mam::SID];
            server_info.account_features.extend(archive);
        }
        for host in destinations.account_hosts() {
            let services = destinations.services_of(host).map(str::to_owned).collect();
            server_info.items.insert(host.to_owned(), services);
        }
        Arc::new(Shared {
            limiter: crate::limits::Limiter::default(),
            upload_slots: Default::default(),
            components: Default::default(),
            server_info,
            destinations,
            registration_open: AtomicBool::new(config.registration.open),
            config,
            store,
            tls,
            started: Instant::now(),
            next_conn: AtomicU64::new(1),
            connections: std::sync::atomic::AtomicUsize::new(0),
            shutdown: tokio::sync::watch::channel(false).0,
        })
    }

    /// A new connection id.
    pub fn next_conn_id(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed))
    }

    /// Open or close registration now.
    pub fn set_registration_open(&self, open: bool) {
        self.registration_open.store(open, Ordering::Relaxed);
    }

    /// Is registration open right now?
    pub fn registration_open(&self) -> bool {
        self.registration_open.load(Ordering::Relaxed)
    }

    /// Tell every connection, login and listener that the server is going down.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// A receiver that sees `true` once shutdown began.
    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Is `domain` served here (an account host or a service domain)?
    pub fn is_local(&self, domain: &str) -> bool {
        self.destinations.serves(domain)
    }

    /// Is `domain` one of the account hosts (where accounts, their data and PEP live)?
    pub fn is_account_host(&self, domain: &str) -> bool {
        self.destinations.is_account_host(domain)
    }

    /// What the client-data IQs (vCard, private storage, last activity) read.
    pub fn client_data_context(&self) -> crate::services::ClientDataContext<'_> {
        crate::services::ClientDataContext {
            store: &self.store,
            limits: &self.config.limits,
            destinations: &self.destinations,
            started: self.started,
        }
    }
}

/// A client connection's id, shown in logs as `c2s#N` (never the peer's address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "c2s#{}", self.0)
    }
}

/// Run blocking work (bcrypt, PBKDF2, fsync) on the blocking pool, never on an event loop.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// A slot in the connection limit; dropping it frees the slot.
pub struct ConnSlot(Arc<Shared>);

impl Shared {
    /// Take a connection slot, or `None` when `limits.max_connections` are in use.
    pub fn try_connection_slot(self: &Arc<Self>) -> Option<ConnSlot> {
        let n = self.connections.fetch_add(1, Ordering::AcqRel);
        if n >= self.config.limits.max_connections {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ConnSlot(self.clone()))
    }

    /// Open client connections (authenticated or not).
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}
