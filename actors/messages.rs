//! Every typed message between actors, in one place: the contract between them.
//!
//! Actors hold each other as `Recipient<M>` (bundled in [`RouterHandle`]), never as concrete
//! types, so actor modules do not import each other and tests can hand in probes.

use actix::prelude::*;

use crate::shared::ConnId;
use crate::xml::Element;
use crate::xmpp::{BareJid, FullJid, Jid, StreamError};

/// Router -> Connection: a stanza to write to the client, or an order to close the stream.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum ToSession {
    /// A stanza with `from` and `to` already set.
    Stanza(Element),
    /// Close the stream with this error (replaced by a newer session, account removed, ...).
    Close(StreamError, &'static str),
}

/// Connection -> Router: deliver a stanza whose `from` was stamped by the sender's session.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Route {
    /// The stanza, `from` and `to` set.
    pub stanza: Element,
    /// Parsed `from`.
    pub from: Jid,
    /// Parsed `to`.
    pub to: Jid,
    /// The sending session's count of stanzas the router has not handled yet; the router
    /// decrements it when done (see [`super::router::SessionDirectory`]).
    pub inflight: Option<InFlight>,
}

/// A session's count of stanzas handed to the router and not yet handled by it.
pub type InFlight = std::sync::Arc<std::sync::atomic::AtomicUsize>;

/// Why a bind was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindError {
    /// The account has too many sessions.
    TooManyResources,
}

/// Connection -> Router: register a bound session. A session already bound to the same full
/// JID is closed with `conflict` and replaced.
#[derive(Message)]
#[rtype(result = "Result<(), BindError>")]
pub struct Bind {
    pub jid: FullJid,
    pub conn: ConnId,
    pub session: Recipient<ToSession>,
}

/// Connection -> Router: the session ended.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Unbind {
    pub jid: FullJid,
    pub conn: ConnId,
}

/// Connection -> Router: broadcast presence (no `to`) changed the session's availability.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct SetPresence {
    pub jid: FullJid,
    pub conn: ConnId,
    /// `Some(priority)` when available, `None` when unavailable.
    pub priority: Option<i8>,
    /// The presence stanza, `from` stamped, to show to the user's other resources.
    pub stanza: Element,
    /// As in [`Route`].
    pub inflight: Option<InFlight>,
}

/// Anyone -> Router: close every session of an account (it was deleted).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct CloseAccount {
    pub jid: BareJid,
}

/// Router -> Spool: a stanza for a local user with no available session.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Offline {
    pub stanza: Element,
    /// The bare JID of the recipient.
    pub to: BareJid,
}

/// Anyone -> Scheduler: record a failed delivery (who -> whom, why; never content).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct LogDeliveryError {
    pub from: String,
    pub to: String,
    /// Condition and short reason, e.g. `service-unavailable: no such user`.
    pub reason: String,
}

/// Anyone -> Router: how many sessions are bound (for status and tests).
#[derive(Message, Debug)]
#[rtype(result = "usize")]
pub struct SessionCount;

/// The router's inbox, as seen by connections and other actors.
#[derive(Clone)]
pub struct RouterHandle {
    pub route: Recipient<Route>,
    pub bind: Recipient<Bind>,
    pub unbind: Recipient<Unbind>,
    pub presence: Recipient<SetPresence>,
    pub close_account: Recipient<CloseAccount>,
    /// Direct delivery to bound full JIDs (written by the router only).
    pub directory: super::router::SessionDirectory,
}
