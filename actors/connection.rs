//! One actor per authenticated client stream: resource binding, `from` stamping, the
//! server's own answers, and the hand-off of everything else to the router.
//!
//! IO stays outside the actor's state: the stream reader is added to the actor's context as a
//! stream (so a client that floods us is simply read no faster than we process, with no
//! mailbox growth), and writes go through an outbox (`outbox.rs`) to a writer task whose backlog
//! is counted in bytes; a client that stops reading is disconnected once the backlog passes
//! `limits.max_outbound_queue_bytes`. Everything before authentication is `src/login.rs`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::directory::RouterHandle;
use super::messages::*;
use super::outbox;
use crate::login::LoggedIn;
use crate::services::{self, register};
use crate::shared::{ConnId, ConnSlot, Shared};
use crate::xml::{Element, ParseError, StreamEvent};
use crate::xmpp::{
    error_reply, iq_result, ns, random_id, BareJid, Condition, FullJid, Jid, StanzaError,
    StanzaKind, StreamError,
};

mod mam;
mod push;
mod roster_iq;
pub mod sm;

/// XEP-0352: Client State Indication.
const CSI: &str = "urn:xmpp:csi:0";
/// Most distinct senders whose presence is held for an inactive client.
const MAX_HELD: usize = 1000;

/// The connection actor.
pub struct Connection {
    id: ConnId,
    shared: Arc<Shared>,
    router: RouterHandle,
    /// Normalised localpart and host of the authenticated account.
    user: String,
    host: String,
    bare: BareJid,
    /// Set once a resource is bound.
    jid: Option<FullJid>,
    /// The mechanism the user authenticated with (for the login log line).
    mechanism: &'static str,
    /// To the writer task; dropping it ends the stream's write side.
    out: Option<outbox::Sender>,
    /// Bytes queued for the writer and not yet written.
    queued: Arc<AtomicUsize>,
    /// Tells the writer to drop the connection at once.
    abort: Arc<tokio::sync::Notify>,
    /// Our stanzas the router has not handled yet (the fast path waits for zero).
    inflight: InFlight,
    /// Why the session ended, for the logout line.
    end_reason: &'static str,
    /// The client asked for the roster, so it gets roster pushes (RFC 6121 §2.1.6).
    roster_wanted: bool,
    /// The client asked for the block list, so it gets block pushes (XEP-0191 §3.2).
    blocklist_wanted: bool,
    /// The user's block list: nothing goes to or comes from these JIDs.
    blocked: HashSet<String>,
    /// Contacts whose presence the user receives (probed at initial presence).
    subscriptions: HashSet<String>,
    /// Everyone on the roster: messages from anyone else count against the stranger limit.
    contacts: HashSet<String>,
    /// The per-session abuse limits apply (not an exempt loopback client).
    limited: bool,
    /// When messages from strangers arrived in the last hour (abuse limit).
    stranger_messages: std::collections::VecDeque<std::time::Instant>,
    /// Bare JIDs this session sent directed available presence to (group-chat rooms, mostly):
    /// not strangers.
    presence_to: HashSet<String>,
    /// Contacts whose subscription request came live to this session, and those shown from
    /// the store at initial presence (RFC 6121 §3.1.3): a request that comes both ways
    /// while the session comes online is shown once.
    requests_shown: HashSet<String>,
    requests_from_store: HashSet<String>,
    /// Initial presence was sent.
    available: bool,
    /// The client queried its archive before its initial presence (see `mam.rs`).
    mam_synced: bool,
    /// When the client last sent anything (XEP-0199 idle pings).
    last_heard: std::time::Instant,
    /// A ping was sent at this time and not yet answered by any traffic.
    pinged: Option<std::time::Instant>,
    /// XEP-0198 stream management, once enabled.
    sm: Option<sm::State>,
    /// XEP-0357 push notifications of this session.
    push: push::SessionPush,
    /// XEP-0352: the client said it is inactive (screen off).
    inactive: bool,
    /// Presence held while inactive, the latest per sender (coalesced).
    held: Vec<(String, Element)>,
    /// The stream reader in the actor's context (replaced when a session is resumed).
    reader: Option<SpawnHandle>,
    /// Our place in the connection limit, freed when the actor goes.
    _slot: ConnSlot,
}

impl Connection {
    /// Start the actor for an authenticated stream, on the current arbiter.
    /// `first` is the client's first element after authentication, already read.
    pub fn start(
        id: ConnId,
        shared: Arc<Shared>,
        router: RouterHandle,
        login: LoggedIn,
        slot: ConnSlot,
        first: Option<Element>,
    ) -> Addr<Connection> {
        let LoggedIn {
            reader,
            writer,
            user,
            host,
            mechanism,
            limited,
        } = login;
        let (tx, queued, abort) = outbox::spawn_writer(writer);
        let bare = BareJid::new(&format!("{user}@{host}")).expect("authenticated JID is valid");
        Connection::create(move |ctx| {
            let reader = Some(ctx.add_stream(reader.into_events()));
            let mut act = Connection {
                reader,
                id,
                shared,
                router,
                user,
                host,
                bare,
                jid: None,
                mechanism: mechanism.name(),
                out: Some(tx),
                queued,
                abort,
                inflight: InFlight::default(),
                roster_wanted: false,
                blocklist_wanted: false,
                blocked: HashSet::new(),
                subscriptions: HashSet::new(),
                contacts: HashSet::new(),
                limited,
                stranger_messages: Default::default(),
                presence_to: HashSet::new(),
                requests_shown: HashSet::new(),
                requests_from_store: HashSet::new(),
                available: false,
                mam_synced: false,
                inactive: false,
                held: Vec::new(),
                sm: None,
                push: Default::default(),
                last_heard: std::time::Instant::now(),
                pinged: None,
                end_reason: "closed by client",
                _slot: slot,
            };
            if let Some(el) = first {
                act.on_element(el, ctx);
            }
            act
        })
    }

    /// Queue raw XML for the client; disconnect a client that does not read.
    fn send_raw(&mut self, s: String, ctx: &mut Context<Self>) {
        let Some(out) = &self.out else { return };
        let len = s.len();
        let total = self.queued.fetch_add(len, Ordering::Relaxed) + len;
        let _ = out.send(s);
        if total > self.shared.config.limits.max_outbound_queue_bytes {
            // The client is not reading: drop the connection outright (the stream error is
            // queued, but cannot be expected to arrive) and free what is queued.
            self.abort.notify_one();
            self.close(StreamError::PolicyViolation, "client does not read", ctx);
        }
    }

    fn send(&mut self, el: &Element, ctx: &mut Context<Self>) {
        self.send_raw(el.to_xml(ns::CLIENT), ctx);
        self.sm_sent(el, ctx);
        self.push_if_away(el, ctx);
    }

    /// XEP-0352: while the client is inactive, presence updates wait (only the latest per
    /// sender is kept); anything else goes out at once, after what was held, so the order of
    /// what the client sees is kept.
    fn deliver(&mut self, el: Element, ctx: &mut Context<Self>) {
        if self.inactive {
            let holdable =
                el.name == "presence" && matches!(el.get_attr("type"), None | Some("unavailable"));
            if holdable {
                let from = el.get_attr("from").unwrap_or_default().to_owned();
                if let Some(pos) = self.held.iter().position(|(f, _)| *f == from) {
                    self.held[pos].1 = el;
                } else {
                    if self.held.len() >= MAX_HELD {
                        self.flush_held(ctx);
                    }
                    self.held.push((from, el));
                }
                return;
            }
            self.flush_held(ctx);
        }
        self.send(&el, ctx);
    }

    /// Deliver the offline messages in chunks the writer can take: the next chunk is only
    /// fetched once the output queue has drained, so a long backlog never trips the
    /// slow-reader limit (and a client that stops reading stops the hand-over).
    fn fetch_offline(&mut self, ctx: &mut Context<Self>) {
        let chunk = (self.shared.config.limits.max_outbound_queue_bytes / 4).max(64 * 1024);
        let take = self.router.take_offline.send(TakeOffline {
            user: self.bare.clone(),
            max_bytes: chunk,
            skip_archived: self.mam_synced,
        });
        ctx.spawn(take.into_actor(self).map(move |res, act, ctx| {
            let Ok((messages, more)) = res else { return };
            for m in messages {
                act.inbound_from(m, true, ctx);
            }
            if more {
                act.fetch_offline_when_drained(chunk, ctx);
            }
        }));
    }

    fn fetch_offline_when_drained(&mut self, chunk: usize, ctx: &mut Context<Self>) {
        if self.out.is_none() {
            return;
        }
        if self.queued.load(Ordering::Relaxed) <= chunk {
            self.fetch_offline(ctx);
        } else {
            ctx.run_later(Duration::from_millis(20), move |act, ctx| {
                act.fetch_offline_when_drained(chunk, ctx)
            });
        }
    }

    fn flush_held(&mut self, ctx: &mut Context<Self>) {
        for (_, p) in std::mem::take(&mut self.held) {
            self.send(&p, ctx);
        }
    }

    /// Send a stream error, close the stream and stop.
    fn close(&mut self, err: StreamError, why: &'static str, ctx: &mut Context<Self>) {
        if let Some(out) = self.out.take() {
            let _ = out.send(err.to_xml(None));
        }
        self.end_reason = why;
        log::debug!("{}: stream error {err} ({why})", self.id);
        ctx.stop();
    }

    fn reply(&mut self, stanza: &Element, err: StanzaError, ctx: &mut Context<Self>) {
        if let Some(r) = error_reply(stanza, &err) {
            self.send(&r, ctx);
        }
    }

    /// Send the answer to `iq`: a `result` to a `set` (which wrote something) only once the
    /// write is on disk, so that an acknowledged write survives a crash (group commit, one
    /// fsync for everyone waiting); anything else at once.
    fn send_durable(&mut self, iq: Element, reply: Element, ctx: &mut Context<Self>) {
        if iq.get_attr("type") != Some("set") || reply.get_attr("type") != Some("result") {
            return self.send(&reply, ctx);
        }
        let durable = self.shared.store.durable();
        ctx.spawn(
            durable
                .into_actor(self)
                .map(move |res, act, ctx| match res {
                    Ok(()) => act.send(&reply, ctx),
                    Err(e) => act.reply(&iq, e.stanza_error("flush"), ctx),
                }),
        );
    }

    fn on_element(&mut self, mut el: Element, ctx: &mut Context<Self>) {
        self.last_heard = std::time::Instant::now();
        self.pinged = None;
        if self.sm_nonza(&el, ctx) {
            return;
        }
        if el.ns == CSI && matches!(el.name.as_str(), "active" | "inactive") {
            self.inactive = el.name == "inactive";
            if !self.inactive {
                self.flush_held(ctx);
            }
            return;
        }
        let Some(kind) = StanzaKind::of(&el).filter(|_| el.ns == ns::CLIENT) else {
            return self.close(StreamError::UnsupportedStanzaType, "not a stanza", ctx);
        };
        // Everything below handles the stanza (answers it, or hands it to an actor that
        // never loses it), so it counts as handled for stream management.
        self.sm_handled();
        let Some(full) = self.jid.clone() else {
            return self.before_bind(kind, el, ctx);
        };
        // RFC 6120 §8.1.2.1: the server stamps `from`; a client may only name itself.
        if let Some(from) = el.get_attr("from") {
            let ok = crate::xmpp::jid(from)
                .map(|j| j.as_str() == full.as_str() || j.as_str() == self.bare.as_str())
                .unwrap_or(false);
            if !ok {
                return self.close(StreamError::InvalidFrom, "spoofed from", ctx);
            }
        }
        el.set_attr("from", full.as_str());
        let to = match el.get_attr("to").map(crate::xmpp::jid) {
            None => None,
            Some(Ok(j)) => Some(j),
            Some(Err(_)) => {
                el.remove_attr("to");
                return self.reply(&el, StanzaError::new(Condition::JidMalformed), ctx);
            }
        };
        // RFC 6120 §8.2.3: a get or set has exactly one payload; whatever is wrong with an IQ
        // (no id, a bad type, no or several payloads) is answered here, once, so that no
        // path below can drop it.
        if kind == StanzaKind::Iq {
            if let Err(e) = crate::xmpp::iq_payload(&el) {
                return self.reply(&el, e, ctx);
            }
        }
        self.bound_stanza(kind, el, to, full, ctx);
    }

    /// A stanza of the bound session, `from` stamped and `to` parsed: blocked recipients,
    /// subscriptions, the account's own IQs, PEP, the server, and the router for the rest.
    fn bound_stanza(
        &mut self,
        kind: StanzaKind,
        mut el: Element,
        to: Option<Jid>,
        full: FullJid,
        ctx: &mut Context<Self>,
    ) {
        if let Some(t) = &to {
            el.set_attr("to", t.as_str());
            // XEP-0191 §3.5: nothing goes to a blocked JID.
            if crate::roster::blocks(&self.blocked, t.as_str()) {
                if kind != StanzaKind::Presence {
                    if let Some(r) = roster_iq::blocked_reply(&el) {
                        self.send(&r, ctx);
                    }
                }
                return;
            }
            // RFC 6121 §3: subscription stanzas go through the roster store, with bare JIDs.
            if kind == StanzaKind::Presence {
                if let Some(sub) = el
                    .get_attr("type")
                    .and_then(crate::roster::SubKind::from_type)
                {
                    return self.outbound_subscription(sub, el, t.to_bare());
                }
            }
        }
        if kind == StanzaKind::Iq
            && (to.is_none()
                || to
                    .as_ref()
                    .is_some_and(|t| t.as_str() == self.bare.as_str()))
            && (self.roster_iq(&el, ctx) || self.push_iq(&el, ctx))
        {
            return;
        }
        if kind == StanzaKind::Iq && self.own_data_iq(&el, to.as_ref(), ctx) {
            return;
        }
        if kind == StanzaKind::Iq && self.mam_iq(&el, to.as_ref(), ctx) {
            return;
        }
        self.addressed_stanza(kind, el, to, full, ctx);
    }

    /// IQs about the account's stored data (vCard, private storage, bookmarks, last
    /// activity) that the server answers itself; `false` when `el` is something else.
    fn own_data_iq(&mut self, el: &Element, to: Option<&Jid>, ctx: &mut Context<Self>) -> bool {
        // XEP-0411: legacy bookmarks stored privately are kept in PEP; the PEP service
        // stores both and answers. XEP-0398 likewise for a vCard with a photo.
        let own = to.is_none_or(|t| t.as_str() == self.bare.as_str());
        let bookmarks = el
            .get_child("query", services::private::NS)
            .is_some_and(|q| {
                q.get_child("storage", services::bookmarks::LEGACY)
                    .is_some()
            });
        let vcard = el.get_child("vCard", services::vcard::NS).is_some();
        if own && el.get_attr("type") == Some("set") && (bookmarks || vcard) {
            let el = el.clone();
            let ask = self
                .router
                .pep
                .client_data_set
                .send(super::messages::ClientDataSet { iq: el.clone() });
            ctx.spawn(ask.into_actor(self).map(move |res, act, ctx| match res {
                Ok(Some(reply)) => act.send_durable(el, reply, ctx),
                Ok(None) => act.reply(&el, Condition::ServiceUnavailable.into(), ctx),
                Err(_) => act.reply(&el, Condition::InternalServerError.into(), ctx),
            }));
            return true;
        }
        match services::client_data_iq(self.shared.client_data_context(), &self.bare, to, el) {
            Some(reply) => {
                self.send_durable(el.clone(), reply, ctx);
                true
            }
            None => false,
        }
    }

    /// The rest of a bound session's stanzas, by where they go: the PEP service, the
    /// server, an account's bare JID answered on its behalf, or the router.
    fn addressed_stanza(
        &mut self,
        kind: StanzaKind,
        el: Element,
        to: Option<Jid>,
        full: FullJid,
        ctx: &mut Context<Self>,
    ) {
        // XEP-0163: pubsub requests to the user's own account (no `to`) or to a local account,
        // and disco queries about a local account's nodes, go to the PEP service.
        if kind == StanzaKind::Iq
            && matches!(el.get_attr("type"), Some("get" | "set"))
            && match &to {
                None => services::pep::is_pep(&el),
                Some(t) => {
                    t.node().is_some()
                        && t.resource().is_none()
                        && self.shared.is_account_host(t.domain().as_str())
                        && services::pep::is_pep(&el)
                }
            }
        {
            return self.pep_iq(el, ctx);
        }
        match &to {
            // RFC 6120 §10.3.3: an IQ without `to` is for the account, not the domain; disco
            // about it is answered as its bare JID would be (`account/registered`, PEP).
            None if kind == StanzaKind::Iq && el.get_child("query", ns::DISCO_INFO).is_some() => {
                if let Some(r) = services::account_iq(&el, &self.shared.server_info) {
                    self.send(&r, ctx);
                }
            }
            None => self.for_server(kind, el, &self.host.clone(), ctx),
            Some(t)
                if t.node().is_none()
                    && t.resource().is_none()
                    && self.shared.is_account_host(t.domain().as_str()) =>
            {
                self.for_server(kind, el, t.domain().as_str(), ctx)
            }
            // RFC 6121 §8.5.1 / §8.5.3.2.1: the server answers IQs to a local account's bare
            // JID on its behalf (disco#info, ping), if the account exists.
            Some(t)
                if kind == StanzaKind::Iq
                    && t.is_bare()
                    && t.node().is_some()
                    && self.shared.is_account_host(t.domain().as_str()) =>
            {
                let exists = t.as_str() == self.bare.as_str()
                    || self
                        .shared
                        .store
                        .accounts
                        .exists(
                            t.domain().as_str(),
                            t.node().map(|n| n.as_str()).unwrap_or_default(),
                        )
                        .unwrap_or(false);
                let reply = if exists {
                    services::account_iq(&el, &self.shared.server_info)
                } else {
                    error_reply(&el, &Condition::ServiceUnavailable.into())
                };
                if let Some(r) = reply {
                    self.send(&r, ctx);
                }
            }
            Some(t) => {
                let mut el = el;
                if el.name == "presence" {
                    self.note_directed(t, el.get_attr("type"));
                }
                self.sent_carbons(&mut el);
                // Fast path to a bound full JID, when no earlier stanza of ours is still with
                // the router (see router::SessionDirectory for why this keeps the order) and
                // the message need not pass the archive.
                if t.resource().is_some()
                    && self.inflight.load(Ordering::Acquire) == 0
                    && !(self.router.archive.is_some() && services::mam::archivable(&el))
                {
                    match self.router.directory.try_deliver(t.as_str(), el) {
                        Ok(()) => return,
                        Err(back) => el = back,
                    }
                }
                self.inflight.fetch_add(1, Ordering::AcqRel);
                self.mark_unsettled();
                let routed = self.router.route.try_send(Route {
                    stanza: el,
                    from: Jid::from(full),
                    to: t.clone(),
                    inflight: Some(self.inflight.clone()),
                });
                if let Err(SendError::Full(r) | SendError::Closed(r)) = routed {
                    self.inflight.fetch_sub(1, Ordering::AcqRel);
                    log::warn!("{}: router queue full, stanza refused", self.id);
                    self.reply(
                        &r.stanza,
                        StanzaError::new(Condition::ResourceConstraint),
                        ctx,
                    );
                }
            }
        }
    }

    /// XEP-0398: available presence carries the hash of the account's PEP avatar
    /// (XEP-0153), whatever the client put there, once the account has an avatar node.
    fn stamp_avatar(&self, presence: &mut Element) {
        use crate::services::avatar;
        let Some(node) = self
            .shared
            .store
            .pep
            .get(&self.host, &self.user, avatar::METADATA)
            .ok()
            .flatten()
        else {
            return;
        };
        let hash = node
            .items
            .last()
            .and_then(|(_, xml)| crate::xml::parse_element(xml).ok())
            .and_then(|m| avatar::announced(&m))
            .map(|(id, _)| id);
        avatar::stamp(presence, hash.as_deref());
    }

    /// A pubsub request for a PEP service: asked of the PEP actor, answered when it replies.
    fn pep_iq(&mut self, iq: Element, ctx: &mut Context<Self>) {
        let ask = self
            .router
            .pep
            .iq
            .send(super::messages::PepIq { iq: iq.clone() });
        ctx.spawn(ask.into_actor(self).map(move |res, act, ctx| match res {
            Ok(Some(reply)) => act.send_durable(iq, reply, ctx),
            Ok(None) => {}
            Err(_) => act.reply(&iq, Condition::InternalServerError.into(), ctx),
        }));
    }

    /// Rows 1 of `doc/routing.md`: stanzas for the server itself.
    fn for_server(&mut self, kind: StanzaKind, el: Element, host: &str, ctx: &mut Context<Self>) {
        match kind {
            StanzaKind::Iq
                if matches!(el.get_attr("type"), Some("result" | "error"))
                    && el
                        .get_attr("id")
                        .is_some_and(|i| i.starts_with(super::pep::CAPS_QUERY_ID)) =>
            {
                // The client's answer to the PEP service's caps query.
                self.router
                    .pep
                    .caps
                    .do_send(super::messages::CapsAnswer { iq: el });
            }
            StanzaKind::Iq => {
                if let Some(q) = el.get_child("query", ns::REGISTER) {
                    if matches!(el.get_attr("type"), Some("get" | "set"))
                        && el.elements().count() == 1
                    {
                        let q = q.clone();
                        return self.register(el, q, ctx);
                    }
                }
                let own = (host == self.host).then_some(&self.shared.config.turn);
                let reply = own
                    .and_then(|turn| services::extdisco::user_iq(&el, turn, host))
                    .or_else(|| services::server_iq(&el, host, &self.shared.server_info));
                if let Some(r) = reply {
                    self.send(&r, ctx);
                }
            }
            StanzaKind::Presence => {
                if el.get_attr("to").is_some() {
                    return;
                }
                let priority = match el.get_attr("type") {
                    None => Some(
                        el.get_child("priority", ns::CLIENT)
                            .and_then(|p| p.text_content().trim().parse::<i8>().ok())
                            .unwrap_or(0),
                    ),
                    Some("unavailable") => None,
                    _ => return,
                };
                let mut el = el;
                if priority.is_some() {
                    self.stamp_avatar(&mut el);
                }
                if let Some(jid) = self.jid.clone() {
                    let initial = priority.is_some() && !self.available;
                    self.available = priority.is_some();
                    let probes = if initial {
                        self.subscriptions.iter().cloned().collect()
                    } else {
                        Vec::new()
                    };
                    self.inflight.fetch_add(1, Ordering::AcqRel);
                    self.mark_unsettled();
                    let sent = self.router.presence.try_send(SetPresence {
                        jid,
                        conn: self.id,
                        priority,
                        stanza: el,
                        inflight: Some(self.inflight.clone()),
                        probes,
                    });
                    if sent.is_err() {
                        self.inflight.fetch_sub(1, Ordering::AcqRel);
                    }
                    if initial {
                        // XEP-0160: messages that arrived while the user was away.
                        self.fetch_offline(ctx);
                        // RFC 6121 §3.1.3: requests that arrived while the user was away.
                        self.show_pending_requests(ctx);
                    }
                }
            }
            StanzaKind::Message => {
                if matches!(el.get_attr("type"), None | Some("normal" | "chat")) {
                    self.reply(&el, StanzaError::new(Condition::ServiceUnavailable), ctx);
                }
            }
        }
    }

    /// Show the subscription requests waiting in the store, read once the router has made this
    /// session available: a request the roster store keeps before that read is in it, one
    /// kept after reaches the router after this session became available and comes live. A
    /// request that comes both ways (while the read is under way) is shown once.
    fn show_pending_requests(&mut self, ctx: &mut Context<Self>) {
        let available = self.router.barrier.send(Barrier);
        let load = self.router.roster.load.clone();
        let user = self.bare.clone();
        let fut = async move {
            let _ = available.await;
            load.send(LoadSessionRoster { user }).await
        };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            let Ok(Ok(roster)) = res else { return };
            for contact in roster.pending_in {
                if !act.requests_shown.contains(&contact)
                    && act.requests_from_store.insert(contact.clone())
                {
                    let p = Element::new("presence", ns::CLIENT)
                        .attr("from", contact)
                        .attr("to", act.bare.as_str())
                        .attr("type", "subscribe");
                    act.send(&p, ctx);
                }
            }
        }));
    }

    /// In-band registration after authentication: password change and cancellation.
    fn register(&mut self, iq: Element, query: Element, ctx: &mut Context<Self>) {
        let req = match register::parse(iq.get_attr("type").unwrap_or(""), &query) {
            Ok(r) => r,
            Err(e) => return self.register_error(&iq, e, ctx),
        };
        if iq.get_attr("id").is_none() {
            return self.register_error(&iq, Condition::BadRequest.into(), ctx);
        }
        let shared = self.shared.clone();
        let (host, user) = (self.host.clone(), self.user.clone());
        match req {
            register::Request::Form => {
                let r = iq_result(&iq, Some(register::form(Some(&self.user))));
                self.send(&r, ctx);
            }
            register::Request::Set { username, password } => {
                let fut = async move {
                    let (store, auth) = (&shared.store, &shared.config.auth);
                    register::change_password(store, auth, &host, &user, &username, &password).await
                };
                ctx.wait(fut.into_actor(self).map(move |res, act, ctx| match res {
                    Ok(()) => {
                        log::info!("{}: password changed", act.id);
                        log::debug!("{}: {} changed the password", act.id, act.bare);
                        act.send(&iq_result(&iq, None), ctx);
                    }
                    Err(e) => act.register_error(&iq, e, ctx),
                }));
            }
            register::Request::Remove => {
                let live = super::account::Live::from(&self.router);
                let bare = self.bare.clone();
                // The whole deletion (contacts told, sessions closed, data removed) happens
                // while this actor waits, so the result below goes out before the close.
                let fut = async move {
                    super::account::delete(&shared.store, Some(&live), vec![bare])
                        .await
                        .map_err(|e| e.stanza_error("account deletion"))
                };
                ctx.wait(fut.into_actor(self).map(move |res, act, ctx| match res {
                    Ok(_) => {
                        log::info!("{}: account deleted by its owner", act.id);
                        act.send(&iq_result(&iq, None), ctx);
                        act.close(StreamError::NotAuthorized, "account removed", ctx);
                    }
                    Err(e) => act.register_error(&iq, e, ctx),
                }));
            }
        }
    }

    fn register_error(&mut self, iq: &Element, err: StanzaError, ctx: &mut Context<Self>) {
        if let Some(r) = register::error_reply(iq, &err) {
            self.send(&r, ctx);
        }
    }

    /// Before a resource is bound only bind, session and registration are accepted.
    fn before_bind(&mut self, kind: StanzaKind, el: Element, ctx: &mut Context<Self>) {
        if kind != StanzaKind::Iq {
            return self.close(StreamError::NotAuthorized, "stanza before bind", ctx);
        }
        if let Some(b) = el.get_child("bind", ns::BIND) {
            let b = b.clone();
            return self.bind(el, &b, ctx);
        }
        if el.get_child("session", ns::SESSION).is_some() {
            return self.send(&iq_result(&el, None), ctx);
        }
        if let Some(q) = el.get_child("query", ns::REGISTER) {
            let q = q.clone();
            return self.register(el, q, ctx);
        }
        self.reply(
            &el,
            StanzaError::new(Condition::NotAllowed).with_text("bind a resource first"),
            ctx,
        );
    }

    /// RFC 6120 §7: bind a client-chosen or generated resource.
    fn bind(&mut self, iq: Element, bind: &Element, ctx: &mut Context<Self>) {
        if iq.get_attr("type") != Some("set") || iq.get_attr("id").is_none() {
            return self.reply(&iq, Condition::BadRequest.into(), ctx);
        }
        let requested = bind
            .get_child("resource", ns::BIND)
            .map(|r| r.text_content().trim().to_owned())
            .unwrap_or_default();
        let resource = if requested.is_empty() {
            random_id(9)
        } else {
            requested
        };
        // A session authenticated before its account was deleted must not come online.
        if !self
            .shared
            .store
            .accounts
            .exists(&self.host, &self.user)
            .unwrap_or(true)
        {
            return self.close(StreamError::NotAuthorized, "account removed", ctx);
        }
        let Ok(full) = self.bare.with_resource_str(&resource) else {
            return self.reply(
                &iq,
                StanzaError::new(Condition::BadRequest).with_text("invalid resource"),
                ctx,
            );
        };
        // What the session needs from the roster, then the binding itself, in one step.
        let load = self.router.roster.load.send(LoadSessionRoster {
            user: self.bare.clone(),
        });
        let (bind_inbox, conn, session, jid) = (
            self.router.bind.clone(),
            self.id,
            ctx.address().recipient(),
            full.clone(),
        );
        let fut = async move {
            let roster = load.await.map_err(|_| Err(()))?.map_err(|_| Err(()))?;
            let bound = bind_inbox
                .send(Bind {
                    jid,
                    conn,
                    session,
                    roster: roster.clone(),
                })
                .await
                .map_err(|_| Err(()))?;
            bound.map(|()| roster).map_err(Ok)
        };
        ctx.wait(fut.into_actor(self).map(
            move |res: Result<SessionRoster, Result<BindError, ()>>, act, ctx| match res {
                Ok(roster) => {
                    log::info!("{}: logged in ({})", act.id, act.mechanism);
                    log::debug!("{}: {} logged in", act.id, full);
                    act.blocked = roster.blocked.into_iter().collect();
                    act.subscriptions = roster.subscriptions.into_iter().collect();
                    act.contacts = roster.contacts.into_iter().collect();
                    let payload = Element::new("bind", ns::BIND)
                        .child(Element::new("jid", ns::BIND).text(full.as_str()));
                    let mut r = iq_result(&iq, Some(payload));
                    r.remove_attr("from");
                    r.remove_attr("to");
                    act.jid = Some(full);
                    act.send(&r, ctx);
                }
                Err(Ok(BindError::TooManyResources)) => act.reply(
                    &iq,
                    StanzaError::new(Condition::ResourceConstraint).with_text("too many sessions"),
                    ctx,
                ),
                Err(Err(())) => act.reply(&iq, Condition::InternalServerError.into(), ctx),
            },
        ));
    }
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        // XEP-0199: a silent session is pinged; one that stays silent is closed.
        let limits = &self.shared.config.limits;
        let (idle, timeout) = (
            std::time::Duration::from_secs(limits.idle_ping_secs),
            std::time::Duration::from_secs(limits.ping_timeout_secs),
        );
        let tick = (idle.min(timeout) / 2).max(std::time::Duration::from_millis(200));
        ctx.run_interval(tick, move |act, ctx| match act.pinged {
            // A hibernating session (XEP-0198) has no connection to ping.
            _ if act.out.is_none() => {}
            Some(at) if at.elapsed() >= timeout => {
                act.close(StreamError::ConnectionTimeout, "no answer to ping", ctx)
            }
            Some(_) => {}
            None if act.last_heard.elapsed() >= idle => {
                act.pinged = Some(std::time::Instant::now());
                let mut ping = Element::new("iq", ns::CLIENT)
                    .attr("type", "get")
                    .attr("id", format!("idle-{}", random_id(6)))
                    .attr("from", act.host.clone())
                    .child(Element::new("ping", ns::PING));
                if let Some(j) = &act.jid {
                    ping.set_attr("to", j.as_str());
                }
                act.send(&ping, ctx);
            }
            None => {}
        });
        super::stream::close_on_shutdown(&self.shared, self, ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // XEP-0012: the last-activity time is one of the few things kept per account.
        let (shared, host, user) = (self.shared.clone(), self.host.clone(), self.user.clone());
        tokio::task::spawn_blocking(move || {
            let now = crate::store::now_secs();
            let _ = shared
                .store
                .accounts
                .update(&host, &user, |r| r.last_logout = now);
        });
        if let Some(jid) = self.jid.take() {
            self.router.unbind.do_send(Unbind {
                jid: jid.clone(),
                conn: self.id,
            });
            self.sm_reroute();
            log::info!("{}: logged out ({})", self.id, self.end_reason);
            log::debug!("{}: {} logged out", self.id, jid);
        } else {
            log::info!(
                "{}: disconnected before binding ({})",
                self.id,
                self.end_reason
            );
            log::debug!("{}: {} disconnected before binding", self.id, self.bare);
        }
        if let Some(out) = self.out.take() {
            let _ = out.send("</stream:stream>".to_owned());
        }
    }
}

impl StreamHandler<Result<StreamEvent, ParseError>> for Connection {
    fn handle(&mut self, item: Result<StreamEvent, ParseError>, ctx: &mut Context<Self>) {
        super::stream::handle_event(self, item, ctx);
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        // The transport ended without </stream:stream>: a resumable session waits for its
        // client; a closed stream has already stopped the actor.
        if !self.sm_hibernate(ctx) {
            ctx.stop();
        }
    }
}

impl super::stream::StreamActor for Connection {
    fn on_element(&mut self, el: Element, ctx: &mut Context<Self>) {
        Connection::on_element(self, el, ctx);
    }

    fn close(&mut self, err: StreamError, why: &'static str, ctx: &mut Context<Self>) {
        Connection::close(self, err, why, ctx);
    }

    fn on_end(&mut self, ctx: &mut Context<Self>) {
        self.end_reason = "closed by client";
        ctx.stop();
    }

    fn on_lost(&mut self, ctx: &mut Context<Self>) {
        self.end_reason = "connection lost";
        if !self.sm_hibernate(ctx) {
            self.out = None;
            ctx.stop();
        }
    }
}

impl Handler<ToSession> for Connection {
    type Result = ();
    fn handle(&mut self, msg: ToSession, ctx: &mut Context<Self>) {
        match msg {
            ToSession::Stanza(el) => self.inbound(el, ctx),
            ToSession::Prepared(p, to) => self.inbound_prepared(&p, &to, ctx),
            ToSession::RosterPush(item, ver) => self.roster_push(item, ver, ctx),
            ToSession::BlockPush(jids, blocked) => self.block_push(jids, blocked, ctx),
            // The router matches Unbind by connection id, so a replaced session's Unbind
            // cannot remove its successor.
            ToSession::Close(err, why) => self.close(err, why, ctx),
        }
    }
}
