//! Running a whole server: open the store, build TLS, start the actors in an actix `System`
//! on a thread of its own, and stop it again. `kleiber serve` and the integration tests both
//! use [`ServerThread`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::actors::{self, ListenerKind};
use crate::config::Config;
use crate::shared::Shared;
use crate::store::Store;
use crate::tls::TlsAcceptor;

/// A server running in its own thread.
pub struct ServerThread {
    /// Bound listeners, with real ports.
    pub listeners: Vec<(ListenerKind, SocketAddr)>,
    pub shared: Arc<Shared>,
    /// The federation manager (ask it for [`actors::messages::S2sLinks`]).
    pub s2s: Option<actix::Addr<actors::s2s::S2s>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Why the server could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

impl ServerThread {
    /// Open the store, build TLS and start everything; returns once the listeners are bound.
    pub fn start(config: Config) -> Result<ServerThread, StartError> {
        Self::start_with_services(config, Vec::new())
    }

    /// As [`ServerThread::start`], with internal services: each `(spec, parent host)` adds
    /// the service domain of `spec` under `parent` to the destination table.
    pub fn start_with_services(
        mut config: Config,
        mut services: Vec<(actors::ServiceSpec, String)>,
    ) -> Result<ServerThread, StartError> {
        if config.muc.enabled {
            for host in config.hosts.keys() {
                let domain = config.muc.domain_of(host);
                services.push((actors::muc::spec(domain, host.clone()), host.clone()));
            }
        }
        if config.upload.enabled && config.http.enabled() {
            for host in config.hosts.keys() {
                let domain = config.upload.domain_of(host);
                services.push((actors::upload::spec(domain, host.clone()), host.clone()));
            }
        }
        let mut relay_listeners = Vec::new();
        if config.proxy65.enabled {
            let relay = crate::proxy65::Relay::bind(&config.proxy65)
                .map_err(|e| StartError(format!("proxy65: {e}")))?;
            relay_listeners.extend(relay.bound().iter().map(|a| (ListenerKind::Proxy65, *a)));
            for host in config.hosts.keys() {
                let domain = config.proxy65.domain_of(host);
                services.push((actors::proxy65::spec(domain, relay.clone()), host.clone()));
            }
        }
        for (spec, parent) in &services {
            if !config.hosts.contains_key(parent) {
                return Err(StartError(format!(
                    "service {}: parent {parent} is not a host",
                    spec.domain
                )));
            }
            config.services.insert(spec.domain.clone(), parent.clone());
        }
        // External components own their domains too; their actors come with their streams.
        for c in config.components.clone() {
            let parent = config.component_parent(&c);
            config.services.insert(c.domain, parent);
        }
        let services: Vec<actors::ServiceSpec> = services.into_iter().map(|(s, _)| s).collect();
        let store = Store::open_with(&config.data_dir, config.storage.flush_window_ms)
            .map_err(|e| StartError(e.to_string()))?;
        store.space.set_min_free(config.storage.min_free_mb << 20);
        store.set_reregistration_block(config.accounts.reregistration_block_days * 86_400);
        // `kleiber registration open|close` holds across restarts until the config changes.
        let mut registration = config.registration.open;
        match store.registration_override() {
            Ok(Some((open, cfg))) if cfg == config.registration.open => registration = open,
            Ok(Some(_)) => {
                let _ = store.clear_registration_override();
            }
            _ => {}
        }
        for w in config.warnings() {
            log::warn!("config: {w}");
        }
        let tls = TlsAcceptor::from_config(&config).map_err(|e| StartError(e.to_string()))?;
        let shared = Shared::new(config, store, tls);
        shared.set_registration_open(registration);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("kleiber-main".into())
            .spawn(move || {
                let system = actix_rt::System::new();
                let arbiters = system.block_on(async move {
                    let running = match actors::start(s.clone(), services).await {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return Vec::new();
                        }
                    };
                    let _ = ready_tx.send(Ok((running.listeners.clone(), running.s2s.clone())));
                    let _ = stop_rx.await;
                    running.shutdown(&s).await;
                    actix_rt::System::current().stop();
                    running.into_arbiters()
                });
                // Every actor (and its handle on the database) is gone when stop() returns,
                // so the data directory can be opened again at once.
                for a in arbiters {
                    a.stop();
                    let _ = a.join();
                }
            })
            .map_err(|e| StartError(format!("cannot start thread: {e}")))?;
        let (mut listeners, s2s) = ready_rx
            .recv()
            .map_err(|_| StartError("server thread died".into()))?
            .map_err(StartError)?;
        listeners.extend(relay_listeners);
        Ok(ServerThread {
            listeners,
            s2s,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The first listener of `kind`.
    pub fn addr(&self, kind: ListenerKind) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, a)| *a)
    }

    /// Graceful stop: every stream closed with `system-shutdown`, stores flushed.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop_inner();
    }
}
