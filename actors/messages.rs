//! Every typed message between actors, in one place: the contract between them.
//!
//! Actors hold each other as `Recipient<M>` (bundled in [`RouterHandle`]), never as concrete
//! types, so actor modules do not import each other and tests can hand in probes.

use actix::prelude::*;

use crate::login::LoggedIn;
use crate::roster::{SetRequest, SubKind};
use crate::shared::{ConnId, ConnSlot};
use crate::xml::Element;
use crate::xmpp::{BareJid, FullJid, Jid, StanzaError, StreamError};

/// Router -> Connection: a stanza to write to the client, or an order to close the stream.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum ToSession {
    /// A stanza with `from` and `to` already set.
    Stanza(Element),
    /// Close the stream with this error (replaced by a newer session, account removed, ...).
    Close(StreamError, &'static str),
    /// A roster push (the changed `<item/>` and the new version), for sessions that asked for
    /// the roster.
    RosterPush(Element, String),
    /// The block list changed (XEP-0191): these JIDs were blocked (`true`) or unblocked;
    /// an empty list with `false` unblocks everyone.
    BlockPush(Vec<String>, bool),
    /// A stanza serialised once for many recipients (a group message fanned out by its
    /// room), for the recipient `to` (a full JID).
    Prepared(std::sync::Arc<Prepared>, String),
}

/// A stanza without `to`, and its serialisation split where ` to='…'` goes: what a room
/// sends every occupant, so that it is neither copied nor serialised once per occupant.
#[derive(Debug)]
pub struct Prepared {
    pub stanza: Element,
    pub head: String,
    pub tail: String,
}

impl Prepared {
    pub fn new(stanza: Element) -> Prepared {
        let (head, tail) = stanza.to_xml_split(crate::xmpp::ns::CLIENT);
        Prepared { stanza, head, tail }
    }

    /// The stanza for `to`, as an element.
    pub fn element_for(&self, to: &str) -> Element {
        let mut el = self.stanza.clone();
        el.set_attr("to", to);
        el
    }

    /// The stanza for `to`, serialised.
    pub fn xml_for(&self, to: &str) -> String {
        let mut s = String::with_capacity(self.head.len() + self.tail.len() + to.len() + 6);
        s.push_str(&self.head);
        s.push_str(" to='");
        crate::xml::element::escape_into(&mut s, to, true);
        s.push('\'');
        s.push_str(&self.tail);
        s
    }
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
    /// decrements it when done (see [`super::directory::SessionDirectory`]).
    pub inflight: Option<InFlight>,
}

impl Route {
    /// A stanza made by the server (an answer, a bounce, a notification), routed by the
    /// `from` and `to` it carries; `None` when either is missing or malformed.
    pub fn of(stanza: Element) -> Option<Route> {
        let from = crate::xmpp::jid(stanza.get_attr("from")?).ok()?;
        let to = crate::xmpp::jid(stanza.get_attr("to")?).ok()?;
        Some(Route {
            stanza,
            from,
            to,
            inflight: None,
        })
    }
}

/// A session's count of stanzas handed to the router and not yet handled by it.
pub type InFlight = std::sync::Arc<std::sync::atomic::AtomicUsize>;

/// Router -> a service (an internal service actor or an external component): a stanza for
/// its domain or a JID in it, `from` and `to` set. The service answers with [`Route`]s from
/// JIDs of its own domain.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ToService {
    pub stanza: Element,
    pub from: Jid,
    pub to: Jid,
}

/// Anyone -> Router: the service domain `domain` (one of the destination table's) is served by
/// `service` from now on; `None`: it is down, and stanzas for it bounce with
/// `service-unavailable`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetService {
    pub domain: String,
    pub service: Option<Recipient<ToService>>,
}

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
    /// Who may see the user's presence and whom the user blocked, as stored now.
    pub roster: SessionRoster,
}

/// What a session needs from the roster at bind time.
#[derive(Debug, Clone, Default)]
pub struct SessionRoster {
    /// Contacts allowed to see the user's presence (`from`/`both`).
    pub subscribers: Vec<String>,
    /// Contacts whose presence the user receives (`to`/`both`): probed at initial presence.
    pub subscriptions: Vec<String>,
    /// Contacts waiting for the user's answer to a subscription request.
    pub pending_in: Vec<String>,
    /// The block list (XEP-0191).
    pub blocked: Vec<String>,
    /// Everyone on the roster (whatever the subscription): not strangers.
    pub contacts: Vec<String>,
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
    /// Contacts to probe (`to`/`both`), sent with the session's initial presence.
    pub probes: Vec<String>,
}

/// Anyone -> Router: close every session of an account (it was deleted).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct CloseAccount {
    pub jid: BareJid,
}

/// Router -> services that keep data about accounts (group chat): the account was deleted;
/// forget it (affiliations, rooms it alone owned).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct AccountGone {
    pub jid: BareJid,
}

/// The server -> services: it is shutting down; tell whoever is using the service (group
/// chat: status 332 to every occupant) before the streams close. Answered when done.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct ServiceShutdown;

/// Router -> Spool: a stanza for a local user with no available session.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Offline {
    pub stanza: Element,
    /// The bare JID of the recipient.
    pub to: BareJid,
}

/// Connection -> Spool: hand over (and delete) the user's oldest offline messages, about
/// `max_bytes` of them, each with its XEP-0203 `<delay/>`; `true` when more are left.
#[derive(Message, Debug)]
#[rtype(result = "(Vec<Element>, bool)")]
pub struct TakeOffline {
    pub user: BareJid,
    pub max_bytes: usize,
    /// Drop (do not hand over) the messages that are in the user's archive: the client
    /// fetched them from there.
    pub skip_archived: bool,
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

/// Start-up -> Scheduler: the inboxes its jobs need, once they exist.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WireScheduler {
    /// For deleting inactive accounts.
    pub accounts: super::account::Live,
}

/// Connection -> Router: the session enabled or disabled message carbons (XEP-0280).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct SetCarbons {
    pub jid: FullJid,
    pub conn: ConnId,
    pub enabled: bool,
}

/// Which side of a conversation a carbon copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CarbonKind {
    /// The user sent the message from another resource.
    Sent,
    /// The user received the message on another resource.
    Received,
}

/// Connection or Router -> Router: copy `message` to the user's other carbon-enabled
/// sessions (all but `except`), wrapped as XEP-0280 requires.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Carbons {
    pub user: BareJid,
    pub except: Vec<ConnId>,
    pub kind: CarbonKind,
    pub message: Element,
}

/// Shutdown -> any actor: answered once everything queued before it has been handled.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Barrier;

/// Anyone -> Router: bound sessions per served host (for `kleiber status`).
#[derive(Message, Debug)]
#[rtype(result = "Vec<(String, usize)>")]
pub struct SessionsPerHost;

/// Anyone -> Router: how many sessions are bound (for status and tests).
#[derive(Message, Debug)]
#[rtype(result = "usize")]
pub struct SessionCount;

/// Connection -> RosterStore: load what a new session needs.
#[derive(Message, Debug)]
#[rtype(result = "Result<SessionRoster, StanzaError>")]
pub struct LoadSessionRoster {
    pub user: BareJid,
}

/// Connection -> RosterStore: roster get; `ver` is the client's XEP-0237 version.
#[derive(Message, Debug)]
#[rtype(result = "Result<RosterReply, StanzaError>")]
pub struct RosterGet {
    pub user: BareJid,
    pub ver: Option<String>,
}

/// The answer to a roster get.
#[derive(Debug)]
pub enum RosterReply {
    /// The whole roster.
    Full { items: Vec<Element>, ver: String },
    /// Only what changed since the client's version, as pushes (none: unchanged).
    Delta { pushes: Vec<Element>, ver: String },
}

/// Connection -> RosterStore: roster set or remove (RFC 6121 §2.3, §2.5).
#[derive(Message, Debug)]
#[rtype(result = "Result<(), StanzaError>")]
pub struct RosterSet {
    pub user: BareJid,
    pub req: SetRequest,
}

/// Connection -> RosterStore: the user sent a subscription stanza (RFC 6121 §3, outbound).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Outbound {
    pub user: BareJid,
    pub contact: BareJid,
    pub kind: SubKind,
    /// The stanza, `from` the user's bare JID, `to` the contact's.
    pub stanza: Element,
    pub inflight: Option<InFlight>,
}

/// Router -> RosterStore: a subscription stanza for a local user (RFC 6121 §3, inbound).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Inbound {
    pub user: BareJid,
    pub contact: BareJid,
    pub kind: SubKind,
    pub stanza: Element,
}

/// RosterStore -> Router: an [`Inbound`] has been handled (everything it delivered is
/// queued), so stanzas from the same contact held behind it may go on.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct InboundDone {
    pub user: BareJid,
    pub contact: BareJid,
}

/// Connection -> RosterStore: XEP-0191 block list.
#[derive(Message, Debug)]
#[rtype(result = "Result<Vec<String>, StanzaError>")]
pub struct BlockGet {
    pub user: BareJid,
}

/// Connection -> RosterStore: block (`block = true`) or unblock JIDs; unblock with no JIDs
/// unblocks everyone.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), StanzaError>")]
pub struct BlockSet {
    pub user: BareJid,
    pub jids: Vec<String>,
    pub block: bool,
}

/// Connection -> RosterStore: the account is being deleted; unsubscribe it from its contacts.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct DeleteRoster {
    pub user: BareJid,
}

/// RosterStore -> Router: push a changed item to the user's sessions.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct RosterPush {
    pub user: BareJid,
    pub item: Element,
    pub ver: String,
}

/// RosterStore -> Router: deliver to every available resource of a local user (an inbound
/// subscription stanza the user must see).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct DeliverAvailable {
    pub to: BareJid,
    pub stanza: Element,
}

/// RosterStore -> Router: `contact` may (or may no longer) see `user`'s presence.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct SubscriptionChanged {
    pub user: BareJid,
    pub contact: String,
    pub subscriber: bool,
}

/// RosterStore -> Router: the user's block list changed (as in [`ToSession::BlockPush`]).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct BlockChanged {
    pub user: BareJid,
    pub jids: Vec<String>,
    pub blocked: bool,
}

/// Router -> S2s: a stanza for another server (`from` local, `to` remote, in
/// `jabber:client` like every stanza inside kleiber).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ToRemote {
    pub stanza: Element,
    pub from: Jid,
    pub to: Jid,
}

/// Anyone -> S2s: the server-to-server links now up (for `kleiber status` and tests).
#[derive(Message, Debug)]
#[rtype(result = "Vec<LinkInfo>")]
pub struct S2sLinks;

/// One server-to-server link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub local: String,
    pub remote: String,
    /// `true` for links we opened (our stanzas go out), `false` for the peer's.
    pub outgoing: bool,
    /// How the remote domain was authenticated (`SASL EXTERNAL`, `dialback`, ...).
    pub method: String,
}

/// A new authenticated stream asks to resume the session: its transport, the client's `h`,
/// and its place in the connection limit. The transport comes back if resumption fails.
#[derive(Message)]
#[rtype(result = "Result<(), Box<(LoggedIn, ConnSlot)>>")]
pub struct Resume {
    pub login: LoggedIn,
    pub h: u32,
    pub slot: ConnSlot,
}

/// Connection or S2sIn -> Pep: a pubsub IQ for an account's PEP service, `from` (the
/// requester) and `to` (the account's bare JID) set. The answer is returned.
#[derive(Message, Debug)]
#[rtype(result = "Option<Element>")]
pub struct PepIq {
    pub iq: Element,
}

/// Router -> Pep: `from` (a full JID) is now available to the account `owner` with these
/// caps (hash, node, ver), or no longer (`caps` = `None`); an empty `from`: the account went
/// offline.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct PepPresence {
    pub owner: BareJid,
    pub from: String,
    pub caps: Option<(String, String, String)>,
}

/// Connection or S2sIn -> Pep: the answer to one of our caps disco#info queries.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct CapsAnswer {
    pub iq: Element,
}

/// Connection -> Pep: the user stores XEP-0048 bookmarks in private storage or sets a vCard
/// (the IQ, `from` set): store it, keep the PEP form in step (XEP-0411 bookmarks, XEP-0398
/// avatar), tell those who want to know, and answer.
#[derive(Message, Debug)]
#[rtype(result = "Option<Element>")]
pub struct ClientDataSet {
    pub iq: Element,
}

/// S2sIn -> S2s: the domains an incoming link has authenticated (none: it closed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct IncomingLink {
    pub id: u64,
    pub links: Vec<LinkInfo>,
}

/// Connection -> PushService: the user's `enable` or `disable` (XEP-0357), to store; answered
/// with how many registrations matched (`disable`) once written, or the error for the client.
#[derive(Message, Debug)]
#[rtype(result = "Result<usize, StanzaError>")]
pub struct PushRequest {
    pub user: BareJid,
    pub request: crate::services::push::Request,
}

/// Spool, Router, Connection -> PushService: a stanza that deserves a notification arrived for
/// `user` while the client was away (XEP-0357).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct PushEvent {
    pub user: BareJid,
    pub trigger: crate::services::push::Trigger,
    /// Messages waiting for the client, unacknowledged in the hibernated session; `None`:
    /// those in the offline spool.
    pub waiting: Option<u64>,
    /// Only to these registrations (app server JID, node): those the hibernated session
    /// enabled. `None`: to all of the account's (it has no session).
    pub only: Option<Vec<(String, String)>>,
}

/// Component, S2sIn, HostIq -> PushService: the app server's answer to a notification (an IQ
/// result or error whose id starts with `services::push::ID_PREFIX`).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct PushAnswer {
    pub iq: Element,
}

/// Router -> Archiver: an archivable message on its way.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ToArchive(pub Route);

/// Archiver (or a session re-routing what it had delivered) -> Router: a message that is in
/// the archives it belongs to; route it without archiving it again.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Archived(pub Route);

/// Connection -> Archiver: a MAM IQ of `user`'s session about their own archive (query,
/// search form, metadata, preferences). Answered with what to send, in order.
#[derive(Message, Debug)]
#[rtype(result = "Vec<Element>")]
pub struct MamIq {
    pub iq: Element,
    pub user: BareJid,
}
