//! The router: the session table and the RFC 6121 §8 delivery rules (`doc/routing.md`).
//!
//! It holds `bare JID -> sessions` and decides where each stanza goes. It never blocks and
//! never touches disk: stanzas for users without an available session go to the spool, which
//! knows whether the account exists. The rules themselves are the pure function [`decide`],
//! tested table by table; the actor applies the decision.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use actix::prelude::*;

use super::directory::{RosterHandle, RouterHandle, SessionDirectory};
use super::messages::*;
use crate::roster::{blocks, SubKind};
use crate::shared::ConnId;
use crate::xml::Element;
use crate::xmpp::{
    error_reply, BareJid, Condition, FullJid, Jid, StanzaError, StanzaKind, StreamError,
};

/// Most sessions one account may have at once.
pub const MAX_RESOURCES: usize = 64;

/// One bound session.
struct Session {
    resource: String,
    conn: ConnId,
    recipient: Recipient<ToSession>,
    /// `Some(priority)` once available presence was sent.
    priority: Option<i8>,
    /// The last available presence broadcast (answers probes), `from` stamped.
    presence: Option<Element>,
    /// JIDs this session sent directed available presence to (closed on logout, §4.6.3).
    directed: HashSet<String>,
    /// The session enabled message carbons (XEP-0280).
    carbons: bool,
}

/// What the router keeps about an online account.
#[derive(Default)]
struct UserState {
    sessions: Vec<Session>,
    /// Contacts allowed to see the user's presence (`from`/`both`).
    subscribers: HashSet<String>,
    /// The user's XEP-0191 block list.
    blocked: HashSet<String>,
}

/// What to do with a stanza (the routing table's cells).
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Deliver to these resources of the recipient.
    Deliver(Vec<String>),
    /// Hand to the spool (no available session).
    Offline,
    /// Answer with an error (and log it).
    Bounce(Condition, &'static str),
    /// Drop silently.
    Drop,
}

/// A session as the rules see it: resource and availability.
#[derive(Debug, Clone)]
pub struct SessionView<'a> {
    pub resource: &'a str,
    pub priority: Option<i8>,
}

/// The routing rules for a stanza to a local user (rows 3-6 of `doc/routing.md`). `resource`
/// is the `to` resource (`None` for a bare JID); `sessions` are the recipient's sessions.
pub fn decide(
    kind: StanzaKind,
    msg_type: &str,
    resource: Option<&str>,
    sessions: &[SessionView<'_>],
) -> Decision {
    if let Some(r) = resource {
        if sessions.iter().any(|s| s.resource == r) {
            return Decision::Deliver(vec![r.to_owned()]);
        }
        return match kind {
            StanzaKind::Message if matches!(msg_type, "chat" | "normal" | "headline") => {
                decide(kind, msg_type, None, sessions)
            }
            StanzaKind::Message if msg_type == "error" => Decision::Drop,
            StanzaKind::Message => {
                Decision::Bounce(Condition::ServiceUnavailable, "no such resource")
            }
            StanzaKind::Presence => Decision::Drop,
            StanzaKind::Iq => Decision::Bounce(Condition::ServiceUnavailable, "no such resource"),
        };
    }
    let available: Vec<&SessionView<'_>> =
        sessions.iter().filter(|s| s.priority.is_some()).collect();
    match kind {
        StanzaKind::Iq => Decision::Bounce(Condition::ServiceUnavailable, "iq to bare JID"),
        StanzaKind::Presence => {
            if available.is_empty() {
                Decision::Drop
            } else {
                Decision::Deliver(available.iter().map(|s| s.resource.to_owned()).collect())
            }
        }
        StanzaKind::Message => {
            let nonneg: Vec<&&SessionView<'_>> =
                available.iter().filter(|s| s.priority >= Some(0)).collect();
            match msg_type {
                // RFC 6121 §8.5.2.1.1: errors to a bare JID are silently ignored.
                "error" => Decision::Drop,
                "groupchat" => {
                    Decision::Bounce(Condition::ServiceUnavailable, "groupchat to a user")
                }
                "headline" if nonneg.is_empty() => Decision::Drop,
                "headline" => {
                    Decision::Deliver(nonneg.iter().map(|s| s.resource.to_owned()).collect())
                }
                _ if nonneg.is_empty() => Decision::Offline,
                _ => Decision::Deliver(best(&nonneg)),
            }
        }
    }
}

/// The resources of highest priority.
fn best(sessions: &[&&SessionView<'_>]) -> Vec<String> {
    let top = sessions.iter().filter_map(|s| s.priority).max();
    sessions
        .iter()
        .filter(|s| s.priority == top)
        .map(|s| s.resource.to_owned())
        .collect()
}

/// Marks a session's stanza as handled when dropped, i.e. after everything the handler
/// delivered is queued.
/// Counts a stanza as handled (the sender's in-flight count goes down) when dropped.
pub(super) struct Handled(pub(super) Option<InFlight>);

impl Drop for Handled {
    fn drop(&mut self) {
        if let Some(n) = &self.0 {
            n.fetch_sub(1, Ordering::Release);
        }
    }
}

/// The router actor.
pub struct Router {
    /// What each served domain is; every other domain is remote.
    destinations: crate::destinations::Destinations,
    /// The services up now, by domain (see [`SetService`]).
    services: HashMap<String, Recipient<ToService>>,
    users: HashMap<BareJid, UserState>,
    spool: Recipient<Offline>,
    scheduler: Recipient<LogDeliveryError>,
    roster: Recipient<Inbound>,
    /// Outgoing federation (`None` when `s2s.enabled = false`).
    remote: Option<Recipient<ToRemote>>,
    /// The PEP service, told who is available to whom with which caps.
    pep: Option<Recipient<super::messages::PepPresence>>,
    /// Subscription stanzas with the roster store, per (user, contact), and the contact's
    /// later stanzas to the user held until they are done, so that e.g. a contact's presence
    /// cannot overtake its `subscribed` (RFC 6120 §10.1 order).
    held: HashMap<(BareJid, BareJid), (usize, Vec<Route>)>,
    directory: SessionDirectory,
    /// Services told when an account is deleted ([`AccountGone`]).
    account_listeners: Vec<Recipient<AccountGone>>,
    /// Where IQs from services to a host or to an account's bare JID are answered, on the
    /// storage arbiter (`host_iq.rs`); `None`: bounced.
    host_iq: Option<Recipient<Route>>,
    /// The push service (XEP-0357), told of subscription requests to accounts without an
    /// available session.
    push: Option<Recipient<PushEvent>>,
    /// The archive actor, when `[archive]` is enabled: archivable messages to or from local
    /// accounts go through it once (`archive.rs`).
    archive: Option<Recipient<ToArchive>>,
}

impl Router {
    /// A router for `hosts`, handing offline stanzas to `spool`, failures to `scheduler`,
    /// inbound subscription stanzas to the roster store and stanzas for other domains to
    /// `remote` (federation, when enabled).
    pub fn new(
        destinations: crate::destinations::Destinations,
        spool: Recipient<Offline>,
        scheduler: Recipient<LogDeliveryError>,
        roster: Recipient<Inbound>,
        remote: Option<Recipient<ToRemote>>,
        pep: Option<Recipient<super::messages::PepPresence>>,
    ) -> Router {
        Router {
            destinations,
            services: HashMap::new(),
            users: HashMap::new(),
            spool,
            scheduler,
            roster,
            remote,
            pep,
            held: HashMap::new(),
            directory: SessionDirectory::default(),
            account_listeners: Vec::new(),
            host_iq: None,
            push: None,
            archive: None,
        }
    }

    /// Tell `p` of subscription requests to accounts without an available session.
    pub fn set_push(&mut self, p: Recipient<PushEvent>) {
        self.push = Some(p);
    }

    /// Pass archivable messages through `a` from now on.
    pub fn set_archive(&mut self, a: Recipient<ToArchive>) {
        self.archive = Some(a);
    }

    /// Is `jid` at a local account host (an account's JID, existing or not)?
    fn is_account_jid(&self, jid: &Jid) -> bool {
        jid.node().is_some() && self.destinations.is_account_host(jid.domain().as_str())
    }

    /// Answer services' IQs to a host or an account's bare JID with `h` from now on.
    pub fn set_host_iq(&mut self, h: Recipient<Route>) {
        self.host_iq = Some(h);
    }

    fn is_local_jid(&self, jid: &Jid) -> bool {
        self.destinations.serves(jid.domain().as_str())
    }

    /// A stanza for a service domain: to the service if it is up, else bounced with
    /// `service-unavailable` (and logged). Errors for a service that is down are dropped.
    fn deliver_to_service(&mut self, stanza: Element, from: Jid, to: Jid) {
        let msg = ToService { stanza, from, to };
        let msg = match self.services.get(msg.to.domain().as_str()) {
            Some(s) => match s.try_send(msg) {
                Ok(()) => return,
                Err(SendError::Full(m)) => {
                    return self.bounce(&m.stanza, Condition::ResourceConstraint, "service busy")
                }
                Err(SendError::Closed(m)) => {
                    self.services.remove(m.to.domain().as_str());
                    m
                }
            },
            None => msg,
        };
        self.bounce(&msg.stanza, Condition::ServiceUnavailable, "service down");
    }

    /// Tell the PEP service that `from` is available (with its caps) or unavailable to the
    /// online account `owner` (XEP-0163 notifications follow presence).
    fn pep_presence(&self, owner: &BareJid, from: &str, stanza: &Element) {
        let Some(pep) = &self.pep else { return };
        if stanza.name != "presence" {
            return;
        }
        // Nothing of a blocked entity reaches the account (XEP-0191): not its caps either.
        match self.users.get(owner) {
            Some(st) if !blocks(&st.blocked, from) => {}
            _ => return,
        }
        let caps = match stanza.get_attr("type") {
            None => stanza
                .get_child("c", crate::services::pep::NS_CAPS)
                .and_then(|c| {
                    Some((
                        c.get_attr("hash")?.to_owned(),
                        c.get_attr("node")?.to_owned(),
                        c.get_attr("ver")?.to_owned(),
                    ))
                }),
            Some("unavailable") => None,
            _ => return,
        };
        pep.do_send(super::messages::PepPresence {
            owner: owner.clone(),
            from: from.to_owned(),
            caps,
        });
    }

    /// Send a stanza (`from` and `to` set) wherever its `to` is: a local session or, through
    /// federation, another server.
    fn send_to(&mut self, stanza: Element) {
        let Some(Route {
            stanza, from, to, ..
        }) = Route::of(stanza)
        else {
            return;
        };
        if !self.is_local_jid(&to) {
            if let Some(r) = &self.remote {
                r.do_send(ToRemote { stanza, from, to });
            }
            return;
        }
        if self.destinations.is_service(to.domain().as_str()) {
            return self.deliver_to_service(stanza, from, to);
        }
        if to.node().is_some() {
            self.pep_presence(&to.to_bare(), from.as_str(), &stanza);
        }
        match to.try_into_full() {
            Ok(full) => self.deliver_full(&full, stanza),
            Err(bare) => self.deliver_available(&bare, stanza),
        }
    }

    /// The handle connections use.
    pub fn handle(
        &self,
        addr: &Addr<Router>,
        roster: RosterHandle,
        (take_offline, spool_barrier): (Recipient<TakeOffline>, Recipient<Barrier>),
        pep: super::directory::PepHandle,
        push: super::directory::PushHandle,
        archive: Option<super::directory::ArchiveHandle>,
    ) -> RouterHandle {
        RouterHandle {
            archive,
            archived: addr.clone().recipient(),
            take_offline,
            spool_barrier,
            pep,
            barrier: addr.clone().recipient(),
            resumable: Default::default(),
            directory: self.directory.clone(),
            roster,
            route: addr.clone().recipient(),
            bind: addr.clone().recipient(),
            unbind: addr.clone().recipient(),
            presence: addr.clone().recipient(),
            close_account: addr.clone().recipient(),
            set_carbons: addr.clone().recipient(),
            carbons: addr.clone().recipient(),
            set_service: addr.clone().recipient(),
            push,
        }
    }

    /// Keep the directory's view of who wants carbons in step with the sessions.
    fn refresh_carbons(&self, bare: &BareJid) {
        let any = self
            .users
            .get(bare)
            .is_some_and(|st| st.sessions.iter().any(|s| s.carbons));
        self.directory.set_carbons(bare.as_str(), any);
    }

    fn bounce(&mut self, stanza: &Element, cond: Condition, reason: &str) {
        let from = stanza.get_attr("from").unwrap_or_default().to_owned();
        let to = stanza.get_attr("to").unwrap_or_default().to_owned();
        let Some(reply) = error_reply(stanza, &StanzaError::new(cond)) else {
            return;
        };
        self.scheduler.do_send(LogDeliveryError {
            from: from.clone(),
            to,
            reason: format!("{cond}: {reason}"),
        });
        // The reply goes back to the sender: a local session or another server.
        self.send_to(reply);
    }

    /// Deliver to one full JID if bound; what cannot be delivered is dropped.
    fn deliver_full(&mut self, to: &FullJid, stanza: Element) {
        let Some(state) = self.users.get(&to.to_bare()) else {
            return;
        };
        if let Some(s) = state
            .sessions
            .iter()
            .find(|s| s.resource == to.resource().as_str())
        {
            s.recipient.do_send(ToSession::Stanza(stanza));
        }
    }

    /// Send a presence the server generated (broadcast, probe answer, unavailable on logout)
    /// through the normal rules.
    fn send_presence(&mut self, mut stanza: Element, from: &FullJid, to: &str) {
        let Ok(to_jid) = crate::xmpp::jid(to) else {
            return;
        };
        stanza.set_attr("from", from.as_str());
        stanza.set_attr("to", to);
        self.route(
            Route {
                stanza,
                from: Jid::from(from.clone()),
                to: to_jid,
                inflight: None,
            },
            false,
        );
    }

    /// RFC 6121 §4.3.2: answer a probe from `prober` for `contact`'s presence with the last
    /// presence of each available resource, if the prober is allowed to see it.
    fn answer_probe(&mut self, prober: &Jid, contact: &BareJid) {
        let Some(state) = self.users.get(contact) else {
            return;
        };
        let prober_bare = prober.to_bare();
        if !state.subscribers.contains(prober_bare.as_str())
            || blocks(&state.blocked, prober.as_str())
        {
            return;
        }
        let answers: Vec<Element> = state
            .sessions
            .iter()
            .filter_map(|s| s.presence.clone())
            .collect();
        for mut p in answers {
            p.set_attr("to", prober.as_str());
            self.send_to(p);
        }
    }

    /// Send the current presence of each of `user`'s available sessions to `contact`, if it
    /// is a subscriber.
    fn push_presence(&mut self, user: &BareJid, contact: &str) {
        let Some(state) = self.users.get(user) else {
            return;
        };
        if !state.subscribers.contains(contact) {
            return;
        }
        let current: Vec<(FullJid, Element)> = state
            .sessions
            .iter()
            .filter_map(|s| {
                let full = user.with_resource_str(&s.resource).ok()?;
                Some((full, s.presence.clone()?))
            })
            .collect();
        for (full, p) in current {
            self.send_presence(p, &full, contact);
        }
    }

    fn deliver_available(&mut self, to: &BareJid, stanza: Element) {
        let Some(state) = self.users.get(to) else {
            return;
        };
        for s in state.sessions.iter().filter(|s| s.priority.is_some()) {
            s.recipient.do_send(ToSession::Stanza(stanza.clone()));
        }
    }

    /// The user's session `full` changed availability: tell subscribers (not blocked) and,
    /// for unavailable, everyone it sent directed presence to.
    fn broadcast(&mut self, full: &FullJid, stanza: &Element, extra: Vec<String>) {
        let Some(state) = self.users.get(&full.to_bare()) else {
            return;
        };
        let mut targets: Vec<String> = state
            .subscribers
            .iter()
            .filter(|c| !blocks(&state.blocked, c))
            .cloned()
            .collect();
        targets.extend(
            extra
                .into_iter()
                .filter(|c| !state.subscribers.contains(crate::xmpp::bare_part(c))),
        );
        for t in targets {
            self.send_presence(stanza.clone(), full, &t);
        }
    }

    /// Route a stanza: to a service, a remote server, or a local user (through the held
    /// subscription stanzas, presence handling and the delivery decision).
    fn route(&mut self, msg: Route, archived: bool) {
        let Route {
            mut stanza,
            to,
            from,
            inflight,
        } = msg;
        let Some(kind) = StanzaKind::of(&stanza) else {
            return;
        };
        if kind == StanzaKind::Message && !archived {
            let to_account = self.is_account_jid(&to);
            if to_account {
                // XEP-0359 §5: only the recipient's server says what its stanza id is.
                let by = crate::xmpp::bare_part(to.as_str());
                crate::services::mam::strip_stanza_ids(&mut stanza, by);
            }
            if let Some(a) = &self.archive {
                if (to_account || self.is_account_jid(&from))
                    && crate::services::mam::archivable(&stanza)
                {
                    let r = Route {
                        stanza,
                        from,
                        to,
                        inflight,
                    };
                    return a.do_send(ToArchive(r));
                }
            }
        }
        let _handled = Handled(inflight);
        let domain = to.domain().as_str();
        if kind == StanzaKind::Presence && !self.destinations.is_account_host(domain) {
            // Directed presence to a room or another server (RFC 6121 §4.6): remembered, so
            // that the session's unavailable presence reaches it when the session ends (an
            // occupant leaves its rooms with its connection).
            let t = stanza.get_attr("type").unwrap_or("normal").to_owned();
            self.track_directed(&from, &to, &t);
        }
        if self.destinations.is_service(domain) {
            return self.deliver_to_service(stanza, from, to);
        }
        if !self.destinations.serves(domain) {
            return self.route_remote(kind, stanza, from, to);
        }
        if kind == StanzaKind::Iq
            && to.resource().is_none()
            && self.destinations.is_service(from.domain().as_str())
        {
            // A service asking the server or an account's stored data (a room fetching an
            // occupant's vCard): answered where the store is (sessions and peers answer such
            // IQs themselves before they reach the router).
            if let Some(h) = &self.host_iq {
                h.do_send(Route {
                    stanza,
                    from,
                    to,
                    inflight: None,
                });
            }
            return;
        }
        if to.node().is_none() {
            // To a local domain from a session: answered by the connection already; what
            // reaches the router here (errors, results) has no one to go to.
            return;
        }
        let bare = to.to_bare();
        let msg_type = stanza.get_attr("type").unwrap_or("normal").to_owned();
        let sub = (kind == StanzaKind::Presence)
            .then(|| SubKind::from_type(&msg_type))
            .flatten();
        if let Some(queue) = self.held_queue(&bare, &from, sub) {
            queue.push(Route {
                stanza,
                from,
                to,
                inflight: None,
            });
            return;
        }
        if kind == StanzaKind::Presence {
            if let Some(sub) = sub {
                return self.inbound_subscription(bare, &from, sub, stanza);
            }
            if msg_type == "probe" {
                return self.answer_probe(&from, &bare);
            }
            self.track_directed(&from, &to, &msg_type);
            self.pep_presence(&bare, from.as_str(), &stanza);
        }
        let resource = to.resource().map(|r| r.as_str().to_owned());
        match self.decide_for(&bare, kind, &msg_type, resource.as_deref()) {
            Decision::Drop => {}
            Decision::Bounce(c, why) => self.bounce(&stanza, c, why),
            Decision::Offline => self.spool.do_send(Offline { stanza, to: bare }),
            Decision::Deliver(resources) => {
                self.deliver(stanza, &bare, resource.is_none(), &resources);
            }
        }
    }

    /// A stanza to a domain neither served nor a service: to the federation manager, or
    /// bounced (presence dropped) when federation is off.
    fn route_remote(&mut self, kind: StanzaKind, stanza: Element, from: Jid, to: Jid) {
        if let Some(r) = &self.remote {
            // RFC 6121 §3.1.5: after approving a subscription, the user's server sends
            // the user's current presence to the new subscriber (whose server may not
            // probe for it).
            let approved = kind == StanzaKind::Presence
                && stanza.get_attr("type") == Some("subscribed")
                && self.is_local_jid(&from);
            let contact = to.to_bare();
            r.do_send(ToRemote {
                stanza,
                from: from.clone(),
                to,
            });
            if approved {
                self.push_presence(&from.to_bare(), contact.as_str());
            }
            return;
        }
        match kind {
            StanzaKind::Presence => {}
            _ => self.bounce(
                &stanza,
                Condition::RemoteServerNotFound,
                "federation disabled",
            ),
        }
    }

    /// The queue a stanza from `from` to `bare` must wait in: behind an inbound subscription
    /// stanza between them that the roster store has not handled yet (a subscription stanza
    /// waits only if others already do).
    fn held_queue(
        &mut self,
        bare: &BareJid,
        from: &Jid,
        sub: Option<SubKind>,
    ) -> Option<&mut Vec<Route>> {
        if self.held.is_empty() {
            return None;
        }
        let h = self.held.get_mut(&(bare.clone(), from.to_bare()))?;
        (sub.is_none() || !h.1.is_empty()).then_some(&mut h.1)
    }

    /// An inbound subscription stanza to `user`: to the roster store, holding back what
    /// follows from the same contact until it is done.
    fn inbound_subscription(&mut self, user: BareJid, from: &Jid, kind: SubKind, stanza: Element) {
        self.held
            .entry((user.clone(), from.to_bare()))
            .or_insert((0, Vec::new()))
            .0 += 1;
        self.roster.do_send(Inbound {
            user,
            contact: from.to_bare(),
            kind,
            stanza,
        });
    }

    /// The routing table's decision for a stanza to `bare` (or its `resource`), from the
    /// user's sessions.
    fn decide_for(
        &self,
        bare: &BareJid,
        kind: StanzaKind,
        msg_type: &str,
        resource: Option<&str>,
    ) -> Decision {
        let views: Vec<SessionView<'_>> = self
            .users
            .get(bare)
            .map(|st| {
                st.sessions
                    .iter()
                    .map(|s| SessionView {
                        resource: &s.resource,
                        priority: s.priority,
                    })
                    .collect()
            })
            .unwrap_or_default();
        decide(kind, msg_type, resource, &views)
    }

    /// Deliver `stanza` to these `resources` of `bare` (carbons first when it was sent to
    /// the bare JID); a message for a closing session goes offline.
    fn deliver(&mut self, stanza: Element, bare: &BareJid, to_bare: bool, resources: &[String]) {
        // XEP-0280: a message to the bare JID is copied to the carbon-enabled sessions
        // that did not get it (a message to a full JID is copied by its recipient).
        if to_bare && crate::services::carbons::eligible(&stanza) {
            if let Some(st) = self.users.get(bare) {
                let except: Vec<ConnId> = st
                    .sessions
                    .iter()
                    .filter(|s| resources.contains(&s.resource))
                    .map(|s| s.conn)
                    .collect();
                self.copy_carbons(bare, &except, CarbonKind::Received, &stanza);
            }
        }
        let last = resources.len().saturating_sub(1);
        let mut stanza = Some(stanza);
        for (i, r) in resources.iter().enumerate() {
            let copy = if i == last {
                stanza.take()
            } else {
                stanza.clone()
            };
            let Some(copy) = copy else { break };
            let target = self
                .users
                .get(bare)
                .and_then(|st| st.sessions.iter().find(|s| &s.resource == r))
                .map(|s| s.recipient.clone());
            if let Some(rcpt) = target {
                // do_send: a session's backlog is bounded in bytes by the connection
                // itself (limits.max_outbound_queue_bytes), which drops a client that
                // does not read; refusing here would lose stanzas of healthy sessions
                // that are merely busy.
                if rcpt.connected() {
                    rcpt.do_send(ToSession::Stanza(copy));
                } else if copy.name == "message" {
                    // The session is closing: as if it were gone (row 5).
                    self.spool.do_send(Offline {
                        stanza: copy,
                        to: bare.clone(),
                    });
                }
            }
        }
    }

    /// Send carbons of `message` to the user's carbon-enabled sessions not in `except`.
    fn copy_carbons(&self, user: &BareJid, except: &[ConnId], kind: CarbonKind, message: &Element) {
        let Some(st) = self.users.get(user) else {
            return;
        };
        let name = match kind {
            CarbonKind::Sent => "sent",
            CarbonKind::Received => "received",
        };
        for s in st
            .sessions
            .iter()
            .filter(|s| s.carbons && !except.contains(&s.conn))
        {
            let to = format!("{user}/{}", s.resource);
            let c = crate::services::carbons::wrap(name, user.as_str(), &to, message);
            s.recipient.do_send(ToSession::Stanza(c));
        }
    }

    /// RFC 6121 §4.6: remember directed presence from a session to someone who is not a
    /// subscriber, to close it with unavailable when the session ends.
    fn track_directed(&mut self, from: &Jid, to: &Jid, presence_type: &str) {
        let Ok(full) = from.clone().try_into_full() else {
            return;
        };
        let Some(state) = self.users.get_mut(&full.to_bare()) else {
            return;
        };
        if state.subscribers.contains(to.to_bare().as_str()) {
            return;
        }
        if let Some(s) = state
            .sessions
            .iter_mut()
            .find(|s| s.resource == full.resource().as_str())
        {
            match presence_type {
                "normal" => {
                    s.directed.insert(to.to_string());
                }
                "unavailable" => {
                    s.directed.remove(to.as_str());
                }
                _ => {}
            }
        }
    }

    /// A session went away: unavailable to whoever saw it available.
    fn session_gone(&mut self, full: &FullJid, s: Session) {
        if s.presence.is_some() || !s.directed.is_empty() {
            let p = Element::new("presence", crate::xmpp::ns::CLIENT).attr("type", "unavailable");
            let directed: Vec<String> = s.directed.into_iter().collect();
            if s.presence.is_some() {
                self.broadcast(full, &p, directed);
                // ... and the user's other available resources.
                let bare = full.to_bare();
                let mut own = p.clone();
                own.set_attr("from", full.as_str());
                if let Some(state) = self.users.get(&bare) {
                    for o in state.sessions.iter().filter(|o| o.priority.is_some()) {
                        let mut c = own.clone();
                        c.set_attr("to", format!("{bare}/{}", o.resource));
                        o.recipient.do_send(ToSession::Stanza(c));
                    }
                }
                self.pep_presence(&bare, full.as_str(), &own);
            } else {
                for d in directed {
                    self.send_presence(p.clone(), full, &d);
                }
            }
        }
    }
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Connections use try_send; a generous bound keeps a burst from being refused.
        ctx.set_mailbox_capacity(1 << 20);
    }
}

impl Handler<Archived> for Router {
    type Result = ();
    fn handle(&mut self, Archived(msg): Archived, _: &mut Context<Self>) {
        self.route(msg, true);
    }
}

impl Handler<Route> for Router {
    type Result = ();
    fn handle(&mut self, msg: Route, _: &mut Context<Self>) {
        self.route(msg, false);
    }
}

impl Handler<Bind> for Router {
    type Result = Result<(), BindError>;
    fn handle(&mut self, msg: Bind, _: &mut Context<Self>) -> Self::Result {
        let bare = msg.jid.to_bare();
        let resource = msg.jid.resource().as_str().to_owned();
        let state = self.users.entry(bare).or_default();
        let mut replaced = None;
        if let Some(pos) = state.sessions.iter().position(|s| s.resource == resource) {
            let old = state.sessions.remove(pos);
            log::info!("{}: session replaced by {}", old.conn, msg.conn);
            log::debug!("{}: {} replaced by {}", old.conn, msg.jid, msg.conn);
            old.recipient.do_send(ToSession::Close(
                StreamError::Conflict,
                "replaced by a new session",
            ));
            replaced = Some(old);
        } else if state.sessions.len() >= MAX_RESOURCES {
            return Err(BindError::TooManyResources);
        }
        state.subscribers = msg.roster.subscribers.into_iter().collect();
        state.blocked = msg.roster.blocked.into_iter().collect();
        self.directory
            .insert(&msg.jid, msg.conn, msg.session.clone());
        // Most accounts have one session: room for one, not the four a first push reserves
        // (~600 bytes less per online account).
        state.sessions.reserve_exact(1);
        state.sessions.push(Session {
            resource,
            conn: msg.conn,
            recipient: msg.session,
            priority: None,
            presence: None,
            directed: HashSet::new(),
            carbons: false,
        });
        if let Some(old) = replaced {
            self.session_gone(&msg.jid, old);
            self.refresh_carbons(&msg.jid.to_bare());
        }
        Ok(())
    }
}

impl Handler<Unbind> for Router {
    type Result = ();
    fn handle(&mut self, msg: Unbind, _: &mut Context<Self>) {
        let bare = msg.jid.to_bare();
        self.directory.remove(msg.jid.as_str(), msg.conn);
        let Some(state) = self.users.get_mut(&bare) else {
            return;
        };
        let Some(pos) = state.sessions.iter().position(|s| s.conn == msg.conn) else {
            return;
        };
        let gone = state.sessions.remove(pos);
        self.session_gone(&msg.jid, gone);
        self.refresh_carbons(&bare);
        if self
            .users
            .get(&bare)
            .is_some_and(|st| st.sessions.is_empty())
        {
            self.users.remove(&bare);
            // Offline: the PEP service forgets who was there for the account.
            if let Some(pep) = &self.pep {
                pep.do_send(super::messages::PepPresence {
                    owner: bare,
                    from: String::new(),
                    caps: None,
                });
            }
        }
    }
}

impl Handler<SetPresence> for Router {
    type Result = ();
    fn handle(&mut self, mut msg: SetPresence, _: &mut Context<Self>) {
        let _done = Handled(msg.inflight.take());
        let bare = msg.jid.to_bare();
        let Some(state) = self.users.get_mut(&bare) else {
            return;
        };
        let Some(me) = state.sessions.iter_mut().find(|s| s.conn == msg.conn) else {
            return;
        };
        let initial = me.priority.is_none() && msg.priority.is_some();
        let was_available = me.priority.is_some();
        me.priority = msg.priority;
        me.presence = msg.priority.map(|_| msg.stanza.clone());
        let directed: Vec<String> = if msg.priority.is_none() {
            std::mem::take(&mut me.directed).into_iter().collect()
        } else {
            Vec::new()
        };
        // RFC 6121 §4.2.2 / §4.5.2: the user's own available resources (including this
        // one) see the presence of each of its resources.
        for s in state
            .sessions
            .iter()
            .filter(|s| s.priority.is_some() || s.conn == msg.conn)
        {
            let mut p = msg.stanza.clone();
            p.set_attr("to", format!("{}/{}", bare, s.resource));
            s.recipient.do_send(ToSession::Stanza(p));
        }
        self.pep_presence(&bare, msg.jid.as_str(), &msg.stanza);
        if msg.priority.is_some() || was_available {
            self.broadcast(&msg.jid, &msg.stanza, directed);
        }
        if initial {
            // §4.2.1: probe the contacts whose presence the user receives.
            let probe = Element::new("presence", crate::xmpp::ns::CLIENT).attr("type", "probe");
            for c in msg.probes {
                self.send_presence(probe.clone(), &msg.jid, &c);
            }
        }
    }
}

impl Handler<InboundDone> for Router {
    type Result = ();
    fn handle(&mut self, msg: InboundDone, _: &mut Context<Self>) {
        let key = (msg.user, msg.contact);
        let Some(h) = self.held.get_mut(&key) else {
            return;
        };
        h.0 = h.0.saturating_sub(1);
        if h.0 > 0 {
            return;
        }
        if let Some((_, waiting)) = self.held.remove(&key) {
            for r in waiting {
                // They passed the archive (if they go there) before they were held.
                self.route(r, true);
            }
        }
    }
}

impl Handler<SetCarbons> for Router {
    type Result = ();
    fn handle(&mut self, msg: SetCarbons, _: &mut Context<Self>) {
        let bare = msg.jid.to_bare();
        if let Some(s) = self
            .users
            .get_mut(&bare)
            .and_then(|st| st.sessions.iter_mut().find(|s| s.conn == msg.conn))
        {
            s.carbons = msg.enabled;
        }
        self.refresh_carbons(&bare);
    }
}

impl Handler<Carbons> for Router {
    type Result = ();
    fn handle(&mut self, msg: Carbons, _: &mut Context<Self>) {
        self.copy_carbons(&msg.user, &msg.except, msg.kind, &msg.message);
    }
}

impl Handler<RosterPush> for Router {
    type Result = ();
    fn handle(&mut self, msg: RosterPush, _: &mut Context<Self>) {
        let Some(state) = self.users.get(&msg.user) else {
            return;
        };
        for s in &state.sessions {
            s.recipient
                .do_send(ToSession::RosterPush(msg.item.clone(), msg.ver.clone()));
        }
    }
}

impl Handler<DeliverAvailable> for Router {
    type Result = ();
    fn handle(&mut self, msg: DeliverAvailable, _: &mut Context<Self>) {
        let away = self
            .users
            .get(&msg.to)
            .is_none_or(|st| st.sessions.iter().all(|s| s.priority.is_none()));
        if let (true, Some(push)) = (away, &self.push) {
            // XEP-0357: a subscription request kept for the user's next login.
            if let Some(trigger) = crate::services::push::trigger(&msg.stanza) {
                push.do_send(PushEvent {
                    user: msg.to.clone(),
                    trigger,
                    waiting: None,
                    only: None,
                });
            }
        }
        self.deliver_available(&msg.to, msg.stanza);
    }
}

impl Handler<SubscriptionChanged> for Router {
    type Result = ();
    fn handle(&mut self, msg: SubscriptionChanged, _: &mut Context<Self>) {
        let Some(state) = self.users.get_mut(&msg.user) else {
            return;
        };
        let sessions: Vec<(FullJid, Option<Element>)> = state
            .sessions
            .iter()
            .filter_map(|s| {
                let full = msg.user.with_resource_str(&s.resource).ok()?;
                Some((full, s.presence.clone()))
            })
            .collect();
        if msg.subscriber {
            // A local subscriber's roster store probes for the current presence on inbound
            // `subscribed`, so it arrives after the `subscribed` itself; a remote one gets it
            // pushed right after the `subscribed` (see `route`).
            state.subscribers.insert(msg.contact.clone());
        } else {
            state.subscribers.remove(&msg.contact);
            // §3.2.2 / §3.3.3: the former subscriber sees the user go unavailable.
            let un = Element::new("presence", crate::xmpp::ns::CLIENT).attr("type", "unavailable");
            for (full, p) in sessions {
                if p.is_some() {
                    self.send_presence(un.clone(), &full, &msg.contact);
                }
            }
        }
    }
}

impl Handler<BlockChanged> for Router {
    type Result = ();
    fn handle(&mut self, msg: BlockChanged, _: &mut Context<Self>) {
        let Some(state) = self.users.get_mut(&msg.user) else {
            return;
        };
        let mut newly_blocked_seen = Vec::new();
        for j in &msg.jids {
            if msg.blocked {
                state.blocked.insert(j.clone());
            } else {
                state.blocked.remove(j);
            }
        }
        for s in &state.sessions {
            s.recipient
                .do_send(ToSession::BlockPush(msg.jids.clone(), msg.blocked));
            if msg.blocked && s.presence.is_some() {
                if let Ok(full) = msg.user.with_resource_str(&s.resource) {
                    newly_blocked_seen.push(full);
                }
            }
        }
        // XEP-0191 §3.3: a blocked entity sees the user go unavailable.
        let un = Element::new("presence", crate::xmpp::ns::CLIENT).attr("type", "unavailable");
        for full in newly_blocked_seen {
            for j in &msg.jids {
                self.send_presence(un.clone(), &full, j);
            }
        }
    }
}

impl Handler<CloseAccount> for Router {
    type Result = ();
    fn handle(&mut self, msg: CloseAccount, _: &mut Context<Self>) {
        self.directory.set_carbons(msg.jid.as_str(), false);
        for l in &self.account_listeners {
            l.do_send(AccountGone {
                jid: msg.jid.clone(),
            });
        }
        if let Some(state) = self.users.remove(&msg.jid) {
            for s in state.sessions {
                self.directory
                    .remove(&format!("{}/{}", msg.jid, s.resource), s.conn);
                s.recipient.do_send(ToSession::Close(
                    StreamError::NotAuthorized,
                    "account removed",
                ));
            }
        }
    }
}

impl Handler<SessionCount> for Router {
    type Result = usize;
    fn handle(&mut self, _: SessionCount, _: &mut Context<Self>) -> usize {
        self.users.values().map(|u| u.sessions.len()).sum()
    }
}

impl Handler<SessionsPerHost> for Router {
    type Result = MessageResult<SessionsPerHost>;
    fn handle(&mut self, _: SessionsPerHost, _: &mut Context<Self>) -> Self::Result {
        let mut per: HashMap<String, usize> = self
            .destinations
            .account_hosts()
            .map(|h| (h.to_owned(), 0))
            .collect();
        for (jid, st) in &self.users {
            *per.entry(jid.domain().as_str().to_owned()).or_default() += st.sessions.len();
        }
        let mut v: Vec<(String, usize)> = per.into_iter().collect();
        v.sort();
        MessageResult(v)
    }
}

impl Router {
    /// The service domain `domain` is served by `service` from now on (`None`: it is down).
    /// The session directory, for services that deliver to sessions themselves (group chat
    /// fans out inside its rooms, not through the router).
    pub fn directory(&self) -> SessionDirectory {
        self.directory.clone()
    }

    /// Tell `l` of every account deletion from now on.
    pub fn listen_accounts(&mut self, l: Recipient<AccountGone>) {
        self.account_listeners.push(l);
    }

    pub fn set_service(&mut self, domain: String, service: Option<Recipient<ToService>>) {
        if !self.destinations.is_service(&domain) {
            log::warn!("service for {domain} ignored: not a service domain");
            return;
        }
        match service {
            Some(s) => self.services.insert(domain, s),
            None => self.services.remove(&domain),
        };
    }
}

impl Handler<SetService> for Router {
    type Result = ();
    fn handle(&mut self, msg: SetService, _: &mut Context<Self>) {
        self.set_service(msg.domain, msg.service);
    }
}

impl Handler<Barrier> for Router {
    type Result = ();
    fn handle(&mut self, _: Barrier, _: &mut Context<Self>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use StanzaKind::*;

    fn s(resource: &str, priority: Option<i8>) -> SessionView<'_> {
        SessionView { resource, priority }
    }

    #[test]
    fn bare_message_goes_to_highest_nonnegative_priority() {
        let sessions = [
            s("a", Some(1)),
            s("b", Some(5)),
            s("c", Some(5)),
            s("d", None),
        ];
        assert_eq!(
            decide(Message, "chat", None, &sessions),
            Decision::Deliver(vec!["b".into(), "c".into()])
        );
    }

    #[test]
    fn negative_priority_gets_no_bare_messages() {
        let sessions = [s("a", Some(-1))];
        assert_eq!(decide(Message, "chat", None, &sessions), Decision::Offline);
        assert_eq!(decide(Message, "headline", None, &sessions), Decision::Drop);
        // ... but messages to its full JID.
        assert_eq!(
            decide(Message, "chat", Some("a"), &sessions),
            Decision::Deliver(vec!["a".into()])
        );
    }

    #[test]
    fn no_sessions() {
        assert_eq!(decide(Message, "normal", None, &[]), Decision::Offline);
        assert_eq!(decide(Message, "error", None, &[]), Decision::Drop);
        assert_eq!(decide(Presence, "", None, &[]), Decision::Drop);
        assert!(matches!(
            decide(Iq, "get", None, &[]),
            Decision::Bounce(Condition::ServiceUnavailable, _)
        ));
        assert!(matches!(
            decide(Message, "groupchat", None, &[]),
            Decision::Bounce(Condition::ServiceUnavailable, _)
        ));
    }

    #[test]
    fn full_jid_with_resource_gone() {
        let sessions = [s("other", Some(0))];
        assert_eq!(
            decide(Message, "chat", Some("gone"), &sessions),
            Decision::Deliver(vec!["other".into()])
        );
        assert_eq!(
            decide(Presence, "", Some("gone"), &sessions),
            Decision::Drop
        );
        assert!(matches!(
            decide(Iq, "get", Some("gone"), &sessions),
            Decision::Bounce(..)
        ));
        assert!(matches!(
            decide(Message, "groupchat", Some("gone"), &sessions),
            Decision::Bounce(..)
        ));
        assert_eq!(
            decide(Message, "error", Some("gone"), &sessions),
            Decision::Drop
        );
    }

    #[test]
    fn headline_goes_to_all_nonnegative() {
        let sessions = [s("a", Some(0)), s("b", Some(3)), s("c", Some(-2))];
        assert_eq!(
            decide(Message, "headline", None, &sessions),
            Decision::Deliver(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn presence_to_bare_goes_to_all_available() {
        let sessions = [s("a", Some(-1)), s("b", None)];
        assert_eq!(
            decide(Presence, "", None, &sessions),
            Decision::Deliver(vec!["a".into()])
        );
    }

    #[test]
    fn iq_to_full_jid_is_delivered() {
        let sessions = [s("a", None)];
        assert_eq!(
            decide(Iq, "get", Some("a"), &sessions),
            Decision::Deliver(vec!["a".into()])
        );
    }
}
