//! The file-transfer relay of XEP-0065 (SOCKS5 bytestreams): the SOCKS5 listeners, the
//! connections waiting to be paired, and the running transfers. One [`Relay`] serves every
//! host's proxy service (`actors/proxy65.rs`, which answers the XMPP side).
//!
//! ```text
//!  target    --SOCKS5 CONNECT hash--> Relay (waits; the first connection of a hash)
//!  initiator --SOCKS5 CONNECT hash--> Relay (waits; the second)
//!  initiator --iq set <activate/>--> Proxy65Service --Relay::activate--> transfer task:
//!      bytes both ways (transfer.rs), limited per transfer and per account, cut at the size
//!      limit, closed when idle
//! ```
//!
//! The hash is SHA-1(sid + initiator's full JID + target's full JID) in hexadecimal, so only
//! the initiator, whose JID the server stamps on its activation, can activate a pair. The
//! relay runs on an arbiter (thread) of its own, stopped and joined first at shutdown. A peer's
//! address is only the key of the in-memory cap on unfinished handshakes per address (a
//! `PeerAddr`, which cannot be printed), so none can reach a log; connections are `proxy#N`
//! in the debug log, and the account of a running
//! transfer (for its limits) is kept in memory only while it runs. Nothing is written to disk.

pub mod socks5;
pub mod transfer;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use actix_rt::{Arbiter, ArbiterHandle};
use tokio::net::TcpStream;

use crate::config::Proxy65Config;
use crate::limits::PeerAddr;
use crate::shared::{ConnSlot, Shared};
use socks5::Reply;
use transfer::{Bucket, Limits};

/// The relay: listeners, waiting connections, accounts with running transfers.
pub struct Relay {
    cfg: Proxy65Config,
    /// The bound addresses, in the order of `cfg.listen`.
    bound: Vec<SocketAddr>,
    /// The listeners until [`Relay::start`] serves them.
    unserved: Mutex<Vec<std::net::TcpListener>>,
    /// Set by [`Relay::start`].
    running: OnceLock<Running>,
    /// The relay's thread, until [`Relay::stop`] joins it.
    thread: Mutex<Option<Arbiter>>,
    state: Mutex<State>,
    next_id: AtomicU64,
}

/// Where the relay's tasks run, and what they need of the server.
struct Running {
    arbiter: ArbiterHandle,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct State {
    /// Connections by hash: the target, then the initiator.
    pending: HashMap<String, Pair>,
    /// Accounts (bare JIDs) with running transfers.
    accounts: HashMap<String, Account>,
}

/// The connections of one hash, waiting for activation.
struct Pair {
    target: Waiting,
    initiator: Option<Waiting>,
}

/// A connection that finished its SOCKS5 handshake.
struct Waiting {
    id: u64,
    stream: TcpStream,
    /// Counts against `limits.max_connections` while open.
    _slot: ConnSlot,
}

/// An account's running transfers and the bucket they share.
struct Account {
    transfers: usize,
    bucket: Arc<Mutex<Bucket>>,
}

/// Why an activation failed (XEP-0065 §6.3.5's error conditions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivateError {
    /// No connection for the hash: wrong sid, target, or not the initiator.
    Unknown,
    /// Only one side is connected.
    OneSided,
    /// The account runs `max_transfers_per_account` already (the pair is closed).
    TooMany,
    /// The relay is not running.
    NotRunning,
}

/// The role of a connection in its pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Target,
    Initiator,
}

impl Relay {
    /// Bind the listeners of `cfg` (nothing is served before [`Relay::start`]).
    pub fn bind(cfg: &Proxy65Config) -> std::io::Result<Arc<Relay>> {
        let mut unserved = Vec::new();
        let mut bound = Vec::new();
        for addr in &cfg.listen {
            let l = crate::actors::listeners::listen_std(*addr)?;
            bound.push(l.local_addr()?);
            unserved.push(l);
        }
        Ok(Arc::new(Relay {
            cfg: cfg.clone(),
            bound,
            unserved: Mutex::new(unserved),
            running: OnceLock::new(),
            thread: Mutex::new(None),
            state: Mutex::new(State::default()),
            next_id: AtomicU64::new(1),
        }))
    }

    /// The bound listeners (with the real port when the config said port 0).
    pub fn bound(&self) -> &[SocketAddr] {
        &self.bound
    }

    /// The streamhost given to clients: host and port.
    pub fn streamhost(&self) -> (String, u16) {
        let port = self.bound.first().map_or(0, SocketAddr::port);
        (self.cfg.advertised_host(), port)
    }

    /// Serve the listeners on a thread of the relay's own; the first call does it, later
    /// ones (one per host's service) find it running. Must run inside the actix system.
    pub fn start(self: &Arc<Self>, shared: &Arc<Shared>) {
        let listeners = std::mem::take(&mut *lock(&self.unserved));
        if listeners.is_empty() {
            return;
        }
        let arbiter = Arbiter::new();
        let _ = self.running.set(Running {
            arbiter: arbiter.handle(),
            shared: shared.clone(),
        });
        for l in listeners {
            let relay = self.clone();
            arbiter.spawn(async move { relay.accept_loop(l).await });
        }
        *lock(&self.thread) = Some(arbiter);
    }

    /// Stop the relay's thread and wait for it: every connection and transfer ends, and the
    /// tasks let go of the server (its store) before the server reports itself stopped.
    pub fn stop(&self) {
        let thread = lock(&self.thread).take();
        if let Some(t) = thread {
            t.stop();
            let _ = t.join();
        }
    }

    fn shared(&self) -> Option<&Arc<Shared>> {
        self.running.get().map(|r| &r.shared)
    }

    async fn accept_loop(self: Arc<Self>, listener: std::net::TcpListener) {
        let Some(shared) = self.shared().cloned() else {
            return;
        };
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => return log::error!("proxy65: cannot serve a listener: {e}"),
        };
        let mut shutdown = shared.shutdown_signal();
        loop {
            // The peer's address only becomes a PeerAddr (no Display/Debug), for the cap on
            // unfinished handshakes per address: it is never logged or stored.
            let accepted = tokio::select! {
                a = listener.accept() => a.map(|(tcp, a)| (tcp, PeerAddr::new(a.ip()))),
                _ = shutdown.wait_for(|down| *down) => break,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    log::warn!("proxy65: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(slot) = shared.try_connection_slot() else {
                log::warn!("proxy65: connection refused: limits.max_connections reached");
                continue;
            };
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            actix_rt::spawn(self.clone().connection(id, tcp, peer, slot));
        }
        // Waiting connections close with the server.
        self.state().pending.clear();
    }

    /// One connection: the SOCKS5 handshake, then it waits (in `pending`) to be paired and
    /// activated; a target not activated within the idle timeout is closed with its pair.
    async fn connection(
        self: Arc<Self>,
        id: u64,
        mut tcp: TcpStream,
        peer: PeerAddr,
        slot: ConnSlot,
    ) {
        let Some(shared) = self.shared().cloned() else {
            return;
        };
        // Unfinished SOCKS5 handshakes count like unauthenticated XMPP connections
        // (`limits.max_unauthenticated_per_address`, `limits.max_unauthenticated`; slowloris).
        let (_, per_address, global) = crate::actors::listeners::handshake_limit(&shared, peer);
        let Some(pending) = shared
            .limiter
            .unauthenticated_slot(peer, per_address, global)
        else {
            return log::debug!("proxy#{id}: refused: too many unfinished handshakes");
        };
        let idle = self.cfg.idle_timeout();
        let hash = match tokio::time::timeout(idle, socks5::accept(&mut tcp)).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => return log::debug!("proxy#{id}: handshake failed: {e}"),
            Err(_) => return log::debug!("proxy#{id}: handshake timed out"),
        };
        drop(pending);
        let waiting = Waiting {
            id,
            stream: tcp,
            _slot: slot,
        };
        let role = match self.join(&hash, waiting) {
            Ok(role) => role,
            Err(Some(mut w)) => {
                log::debug!("proxy#{id}: refused: the hash has both sides connected");
                let _ = socks5::reply(&mut w.stream, Reply::NotAllowed, "").await;
                return;
            }
            Err(None) => return log::debug!("proxy#{id}: closed: the reply could not be sent"),
        };
        log::debug!("proxy#{id}: waiting as the {role:?}");
        if role == Role::Target {
            tokio::time::sleep(idle).await;
            let mut st = self.state();
            if st.pending.get(&hash).is_some_and(|p| p.target.id == id) {
                st.pending.remove(&hash);
                log::debug!("proxy#{id}: not activated in time, closed with its pair");
            }
        }
    }

    /// Take the next place for `hash` (target, then initiator) and send the success reply,
    /// both under the lock, so that a client that has the reply finds itself in `pending`
    /// (its activation may follow at once). The reply fits a new connection's send buffer:
    /// it is written without waiting. `Err(Some(w))`: both places are taken; `Err(None)`: the
    /// reply could not be written (`w` is closed).
    fn join(&self, hash: &str, w: Waiting) -> Result<Role, Option<Waiting>> {
        let mut st = self.state();
        let role = match st.pending.get(hash) {
            None => Role::Target,
            Some(p) if p.initiator.is_none() => Role::Initiator,
            Some(_) => return Err(Some(w)),
        };
        let reply = socks5::reply_bytes(Reply::Succeeded, hash);
        if !matches!(w.stream.try_write(&reply), Ok(n) if n == reply.len()) {
            return Err(None);
        }
        match (role, st.pending.get_mut(hash)) {
            (Role::Initiator, Some(p)) => p.initiator = Some(w),
            _ => {
                let pair = Pair {
                    target: w,
                    initiator: None,
                };
                st.pending.insert(hash.to_owned(), pair);
            }
        }
        Ok(role)
    }

    /// Activate the pair of `hash` for the initiator's account `account` (a bare JID): the
    /// transfer starts on the relay's thread.
    pub fn activate(self: &Arc<Self>, hash: &str, account: &str) -> Result<(), ActivateError> {
        let running = self.running.get().ok_or(ActivateError::NotRunning)?;
        let mut st = self.state();
        match st.pending.get(hash) {
            None => return Err(ActivateError::Unknown),
            Some(p) if p.initiator.is_none() => return Err(ActivateError::OneSided),
            Some(_) => {}
        }
        let pair = st.pending.remove(hash).ok_or(ActivateError::Unknown)?;
        let rate = self.cfg.max_account_bytes_per_second;
        let acc = st
            .accounts
            .entry(account.to_owned())
            .or_insert_with(|| Account {
                transfers: 0,
                bucket: Arc::new(Mutex::new(Bucket::new(rate))),
            });
        if acc.transfers >= self.cfg.max_transfers_per_account {
            // Dropping the pair closes both connections.
            return Err(ActivateError::TooMany);
        }
        acc.transfers += 1;
        let limits = Limits {
            own: Mutex::new(Bucket::new(self.cfg.max_bytes_per_second)),
            account: acc.bucket.clone(),
            max_bytes: self.cfg.max_transfer_bytes(),
            idle: self.cfg.idle_timeout(),
        };
        drop(st);
        let relay = self.clone();
        let account = account.to_owned();
        running.arbiter.spawn(async move {
            relay.transfer(pair, limits, account).await;
        });
        Ok(())
    }

    /// Run an activated pair, then release the account's share.
    async fn transfer(self: Arc<Self>, pair: Pair, limits: Limits, account: String) {
        let Some(initiator) = pair.initiator else {
            return self.release(&account);
        };
        let id = pair.target.id;
        log::debug!("proxy#{id}: activated (with proxy#{})", initiator.id);
        let mut shutdown = match self.shared() {
            Some(s) => s.shutdown_signal(),
            None => return self.release(&account),
        };
        let down = async move {
            let _ = shutdown.wait_for(|d| *d).await;
        };
        let (end, bytes) = transfer::run(pair.target.stream, initiator.stream, &limits, down).await;
        log::debug!("proxy#{id}: transfer ended ({end:?}), {bytes} bytes");
        self.release(&account);
    }

    fn release(&self, account: &str) {
        let mut st = self.state();
        if let Some(a) = st.accounts.get_mut(account) {
            a.transfers = a.transfers.saturating_sub(1);
            if a.transfers == 0 {
                st.accounts.remove(account);
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The destination both sides give the proxy: SHA-1(sid + initiator + target) in lowercase
/// hexadecimal (XEP-0065 §5.3.2).
pub fn destination(sid: &str, initiator: &str, target: &str) -> String {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(sid.as_bytes());
    h.update(initiator.as_bytes());
    h.update(target.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn destination_is_the_xep_example() {
        // XEP-0065 §5.3.2's JIDs; the value from Python's hashlib.
        let d = super::destination(
            "vxf9n471bn46",
            "requester@example.com/foo",
            "target@example.org/bar",
        );
        assert_eq!(d, "98b8d688d0f5d895fd41c5e7309a2e9e33ba32ff");
    }
}
