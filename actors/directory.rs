//! The session directory and the handles actors hold on each other: read-mostly state that
//! sessions share with the router (which full JIDs are bound where, which sessions can be
//! resumed) and the bundles of inboxes a connection is given. It depends on `messages.rs`
//! only; `messages.rs` depends on nothing in `actors/`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use actix::prelude::*;

use super::messages::*;
use crate::shared::ConnId;
use crate::xml::Element;
use crate::xmpp::{BareJid, FullJid};

/// Read-mostly index of bound sessions by full JID, written only by the router.
///
/// A stanza to a bound full JID needs no routing decision (row 4 of `doc/routing.md`), so a
/// session may hand it straight to the recipient's mailbox, saving two thread hops. To keep
/// RFC 6120 §10.1 in-order delivery, a session takes this path only while the router has
/// none of its earlier stanzas still to handle (its [`InFlight`] count is zero): whatever the
/// router delivered for it is then already in the recipient's mailbox, ahead of this one.
/// Everything else (bare JIDs, unbound resources, full mailboxes) goes through the router.
#[derive(Clone, Default)]
pub struct SessionDirectory(
    Arc<RwLock<HashMap<String, DirectoryEntry>>>,
    /// Accounts with at least one carbon-enabled session (XEP-0280), so that sessions only
    /// ask the router for carbons when someone wants them.
    Arc<RwLock<HashSet<String>>>,
);

/// A bound session in the directory: its connection and its inbox.
type DirectoryEntry = (ConnId, Recipient<ToSession>);

impl SessionDirectory {
    /// Does the account have a session that wants message carbons?
    pub fn wants_carbons(&self, bare: &str) -> bool {
        self.1.read().map(|s| s.contains(bare)).unwrap_or(false)
    }

    pub(crate) fn set_carbons(&self, bare: &str, any: bool) {
        if let Ok(mut s) = self.1.write() {
            if any {
                s.insert(bare.to_owned());
            } else {
                s.remove(bare);
            }
        }
    }

    /// Try to deliver `stanza` to the bound session `full`; the stanza comes back when there is
    /// no such session or its mailbox is full or closed.
    pub fn try_deliver(&self, full: &str, stanza: Element) -> Result<(), Element> {
        match self.try_send(full, ToSession::Stanza(stanza)) {
            Ok(()) => Ok(()),
            Err(ToSession::Stanza(s)) => Err(s),
            Err(_) => unreachable!("the message given back is the one sent"),
        }
    }

    /// Try to hand `msg` to the bound session `full`; it comes back when there is no such
    /// session or its mailbox is closed.
    pub fn try_send(&self, full: &str, msg: ToSession) -> Result<(), ToSession> {
        let Ok(map) = self.0.read() else {
            return Err(msg);
        };
        match map.get(full) {
            Some((_, r)) if r.connected() => {
                r.do_send(msg);
                Ok(())
            }
            _ => Err(msg),
        }
    }

    pub(crate) fn insert(&self, full: &FullJid, conn: ConnId, r: Recipient<ToSession>) {
        if let Ok(mut map) = self.0.write() {
            map.insert(full.to_string(), (conn, r));
        }
    }

    pub(crate) fn remove(&self, full: &str, conn: ConnId) {
        if let Ok(mut map) = self.0.write() {
            if map.get(full).is_some_and(|(c, _)| *c == conn) {
                map.remove(full);
            }
        }
    }
}

/// A resumable session: its owner and its inbox for resumptions.
type ResumableSession = (BareJid, Recipient<Resume>);

/// Sessions that can be resumed (XEP-0198), by resumption id.
#[derive(Clone, Default)]
pub struct Resumable(Arc<Mutex<HashMap<String, ResumableSession>>>);

impl Resumable {
    /// The session `id` of `user`, if it exists.
    pub fn get(&self, id: &str, user: &BareJid) -> Option<Recipient<Resume>> {
        let map = self.0.lock().ok()?;
        map.get(id)
            .filter(|(owner, session)| owner == user && session.connected())
            .map(|(_, s)| s.clone())
    }

    pub(crate) fn insert(&self, id: String, user: BareJid, session: Recipient<Resume>) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(id, (user, session));
        }
    }

    pub(crate) fn remove(&self, id: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(id);
        }
    }
}

/// The Pep actor's inboxes.
#[derive(Clone)]
pub struct PepHandle {
    pub iq: Recipient<PepIq>,
    pub client_data_set: Recipient<ClientDataSet>,
    pub presence: Recipient<PepPresence>,
    pub caps: Recipient<CapsAnswer>,
}

/// The push service's inboxes (XEP-0357).
#[derive(Clone)]
pub struct PushHandle {
    pub request: Recipient<PushRequest>,
    pub event: Recipient<PushEvent>,
    pub answer: Recipient<PushAnswer>,
}

/// The roster store's inbox, as seen by connections and the router.
#[derive(Clone)]
pub struct RosterHandle {
    pub load: Recipient<LoadSessionRoster>,
    pub get: Recipient<RosterGet>,
    pub set: Recipient<RosterSet>,
    pub outbound: Recipient<Outbound>,
    pub inbound: Recipient<Inbound>,
    pub block_get: Recipient<BlockGet>,
    pub block_set: Recipient<BlockSet>,
    pub delete: Recipient<DeleteRoster>,
    /// Answered once the roster store has handled everything sent to it before.
    pub barrier: Recipient<Barrier>,
}

/// The router's inbox, as seen by connections and other actors.
#[derive(Clone)]
pub struct RouterHandle {
    pub route: Recipient<Route>,
    pub bind: Recipient<Bind>,
    pub unbind: Recipient<Unbind>,
    pub presence: Recipient<SetPresence>,
    pub close_account: Recipient<CloseAccount>,
    pub set_carbons: Recipient<SetCarbons>,
    pub carbons: Recipient<Carbons>,
    /// Direct delivery to bound full JIDs (written by the router only).
    pub directory: super::directory::SessionDirectory,
    /// The roster store (rosters, subscriptions, block lists).
    pub roster: RosterHandle,
    /// The offline spool, to collect messages at initial presence.
    pub take_offline: Recipient<TakeOffline>,
    /// Answered once the spool has handled everything sent to it before.
    pub spool_barrier: Recipient<Barrier>,
    /// Answered once the router has handled everything sent to it before.
    pub barrier: Recipient<Barrier>,
    /// Sessions that can be resumed (XEP-0198), by resumption id.
    pub resumable: super::directory::Resumable,
    /// The PEP service (XEP-0163).
    pub pep: super::directory::PepHandle,
    /// A service domain's actor is up or down (external components come and go).
    pub set_service: Recipient<SetService>,
    /// The push service (XEP-0357).
    pub push: PushHandle,
    /// The archive actor, when `[archive]` is enabled (XEP-0313).
    pub archive: Option<ArchiveHandle>,
    /// Messages that are archived already (re-routed by a session that ends).
    pub archived: Recipient<Archived>,
}

/// The archive actor's inboxes.
#[derive(Clone)]
pub struct ArchiveHandle {
    pub iq: Recipient<MamIq>,
    pub barrier: Recipient<Barrier>,
}
