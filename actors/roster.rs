//! The roster store: the only writer of the `roster`, `roster_meta` and `blocklist` trees.
//!
//! It applies RFC 6121's rules (`src/roster.rs`) to the stored items: roster get/set/remove
//! with XEP-0237 versions, the outbound and inbound subscription tables with pre-approval,
//! pending requests kept for offline users, the maximum roster size, XEP-0191 block lists,
//! and the unsubscriptions of a deleted account. What changed goes to the router as typed
//! messages (pushes, deliveries, who may now see whose presence); the router does the rest.

use std::sync::Arc;

use actix::prelude::*;

use super::messages::*;
use crate::roster::{self, Item, SetRequest, SubKind};
use crate::shared::Shared;
use crate::store::{RosterMeta, StoreError};
use crate::xml::Element;
use crate::xmpp::account_parts as parts;
use crate::xmpp::{ns, BareJid, Condition, Jid, StanzaError};

/// The router's inboxes the roster store sends to.
pub struct RouterInbox {
    pub route: Recipient<Route>,
    pub push: Recipient<RosterPush>,
    pub deliver: Recipient<DeliverAvailable>,
    pub changed: Recipient<SubscriptionChanged>,
    pub blocks: Recipient<BlockChanged>,
    pub inbound_done: Recipient<InboundDone>,
}

/// Tells the router an inbound subscription stanza is handled, however the handler returns.
struct DoneGuard(Recipient<InboundDone>, Option<(BareJid, BareJid)>);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        if let Some((user, contact)) = self.1.take() {
            self.0.do_send(InboundDone { user, contact });
        }
    }
}

/// The roster store actor.
pub struct RosterStore {
    shared: Arc<Shared>,
    router: RouterInbox,
    /// Recent subscription requests from strangers, per account (abuse limit).
    stranger_requests:
        std::collections::HashMap<BareJid, std::collections::VecDeque<std::time::Instant>>,
}

fn internal(e: StoreError) -> StanzaError {
    e.stanza_error("roster storage")
}

/// A presence of `kind` from `from` to `to` (both bare), as the server generates them.
fn sub_presence(from: &BareJid, to: &str, kind: SubKind) -> Element {
    Element::new("presence", ns::CLIENT)
        .attr("from", from.as_str())
        .attr("to", to)
        .attr("type", kind.as_str())
}

impl RosterStore {
    pub fn new(shared: Arc<Shared>, router: RouterInbox) -> RosterStore {
        RosterStore {
            shared,
            router,
            stranger_requests: Default::default(),
        }
    }

    fn rosters(&self) -> &crate::store::Rosters {
        &self.shared.store.rosters
    }

    /// Give the user's roster a new version and return it.
    fn bump(&self, user: &BareJid, removal: bool) -> Result<u64, StoreError> {
        let (d, u) = parts(user);
        let mut m = self.rosters().meta(d, u)?;
        m.ver += 1;
        if removal {
            m.delta_since = m.ver;
        }
        self.rosters().set_meta(d, u, &m)?;
        Ok(m.ver)
    }

    /// Store `item` for `contact`; when it is (or was) on the roster, version it and push it.
    /// `before` is the item as the client last saw it (None: not on the roster); a change the
    /// client cannot see (a pending inbound request) is stored without a push (§3.1.3).
    fn save(
        &self,
        user: &BareJid,
        contact: &str,
        mut item: Item,
        before: Option<&Item>,
    ) -> Result<(), StoreError> {
        let (d, u) = parts(user);
        let removal = before.is_some() && !item.in_roster;
        let visible_change = match before {
            Some(b) => b.to_element(contact) != item.to_element(contact),
            None => item.in_roster,
        };
        if (item.in_roster && visible_change) || removal {
            item.ver = self.bump(user, removal)?;
            let mut el = item.to_element(contact);
            if removal {
                el.set_attr("subscription", "remove");
                el.remove_attr("ask");
                el.remove_attr("approved");
                el.remove_attr("name");
                el.children.clear();
            }
            self.router.push.do_send(RosterPush {
                user: user.clone(),
                item: el,
                ver: roster::ver_string(item.ver),
            });
        }
        self.rosters().put(d, u, contact, &item)
    }

    /// After a subscription stanza changed `item`: store it (pushing what the client sees),
    /// and tell the router when `contact` gained or lost the right to see the user's presence.
    fn apply(
        &self,
        user: &BareJid,
        contact: &str,
        item: &Item,
        before: Option<&Item>,
        was_from: bool,
        outcome: roster::Outcome,
    ) -> Result<(), ()> {
        if outcome.changed {
            if let Err(e) = self.save(user, contact, item.clone(), before) {
                log::error!("roster storage failure: {e}");
                return Err(());
            }
        }
        if was_from != item.from {
            self.router.changed.do_send(SubscriptionChanged {
                user: user.clone(),
                contact: contact.to_owned(),
                subscriber: item.from,
            });
        }
        Ok(())
    }

    fn route(&self, stanza: Element, from: &BareJid, to: &str, inflight: Option<InFlight>) {
        let (Ok(to), from) = (crate::xmpp::jid(to), Jid::from(from.clone())) else {
            return;
        };
        self.router.route.do_send(Route {
            stanza,
            from,
            to,
            inflight,
        });
    }

    fn is_blocked(&self, user: &BareJid, contact: &str) -> bool {
        let (d, u) = parts(user);
        self.rosters().is_blocked(d, u, contact).unwrap_or(false)
    }

    /// Is the user's roster at `limits.max_roster_items`?
    fn roster_full(&self, user: &BareJid) -> Result<bool, StoreError> {
        let (d, u) = parts(user);
        Ok(self.rosters().count(d, u)? >= self.shared.config.limits.max_roster_items)
    }
}

impl Actor for RosterStore {
    type Context = Context<Self>;
}

impl Handler<LoadSessionRoster> for RosterStore {
    type Result = Result<SessionRoster, StanzaError>;
    fn handle(&mut self, msg: LoadSessionRoster, _: &mut Context<Self>) -> Self::Result {
        let (d, u) = parts(&msg.user);
        let mut r = SessionRoster::default();
        for (contact, item) in self.rosters().items(d, u).map_err(internal)? {
            if item.in_roster {
                r.contacts.push(contact.clone());
            }
            if item.from {
                r.subscribers.push(contact.clone());
            }
            if item.to {
                r.subscriptions.push(contact.clone());
            }
            if item.pending_in {
                r.pending_in.push(contact);
            }
        }
        r.blocked = self.rosters().blocked(d, u).map_err(internal)?;
        Ok(r)
    }
}

impl Handler<RosterGet> for RosterStore {
    type Result = Result<RosterReply, StanzaError>;
    fn handle(&mut self, msg: RosterGet, _: &mut Context<Self>) -> Self::Result {
        let (d, u) = parts(&msg.user);
        let meta: RosterMeta = self.rosters().meta(d, u).map_err(internal)?;
        let items = self.rosters().items(d, u).map_err(internal)?;
        let ver = roster::ver_string(meta.ver);
        let client = msg.ver.as_deref().and_then(roster::parse_ver);
        match client {
            // XEP-0237: only what changed since the client's version, as pushes; nothing when
            // unchanged. After a removal (no tombstones kept) older versions get everything.
            Some(v) if v <= meta.ver && v >= meta.delta_since => Ok(RosterReply::Delta {
                pushes: items
                    .iter()
                    .filter(|(_, i)| i.in_roster && i.ver > v)
                    .map(|(c, i)| i.to_element(c))
                    .collect(),
                ver,
            }),
            _ => Ok(RosterReply::Full {
                items: items
                    .iter()
                    .filter(|(_, i)| i.in_roster)
                    .map(|(c, i)| i.to_element(c))
                    .collect(),
                ver,
            }),
        }
    }
}

impl Handler<RosterSet> for RosterStore {
    type Result = Result<(), StanzaError>;
    fn handle(&mut self, msg: RosterSet, _: &mut Context<Self>) -> Self::Result {
        let user = msg.user;
        let (d, u) = parts(&user);
        match msg.req {
            SetRequest::Update { jid, name, groups } => {
                if jid == user.as_str() {
                    return Err(StanzaError::new(Condition::NotAllowed)
                        .with_text("you cannot add yourself"));
                }
                let mut item = self
                    .rosters()
                    .get(d, u, &jid)
                    .map_err(internal)?
                    .unwrap_or_default();
                let before = item.in_roster.then(|| item.clone());
                let was = item.in_roster;
                if !was && self.roster_full(&user).map_err(internal)? {
                    return Err(
                        StanzaError::new(Condition::ResourceConstraint).with_text("roster is full")
                    );
                }
                item.in_roster = true;
                item.name = name;
                item.groups = groups;
                self.save(&user, &jid, item, before.as_ref())
                    .map_err(internal)
            }
            SetRequest::Remove { jid } => {
                let Some(item) = self
                    .rosters()
                    .get(d, u, &jid)
                    .map_err(internal)?
                    .filter(|i| i.in_roster)
                else {
                    return Err(Condition::ItemNotFound.into());
                };
                // RFC 6121 §2.5.2: cancel both directions with the contact.
                if item.to || item.pending_out {
                    self.route(
                        sub_presence(&user, &jid, SubKind::Unsubscribe),
                        &user,
                        &jid,
                        None,
                    );
                }
                if item.from || item.pending_in {
                    self.route(
                        sub_presence(&user, &jid, SubKind::Unsubscribed),
                        &user,
                        &jid,
                        None,
                    );
                }
                if item.from {
                    self.router.changed.do_send(SubscriptionChanged {
                        user: user.clone(),
                        contact: jid.clone(),
                        subscriber: false,
                    });
                }
                let removed = Item {
                    ver: item.ver,
                    ..Item::default()
                };
                self.save(&user, &jid, removed, Some(&item))
                    .map_err(internal)
            }
        }
    }
}

impl Handler<Outbound> for RosterStore {
    type Result = ();
    fn handle(&mut self, mut msg: Outbound, _: &mut Context<Self>) {
        // Whatever happens below, the stanza counts as handled once it is passed on or dropped.
        let mut handled = super::router::Handled(msg.inflight.take());
        let (d, u) = parts(&msg.user);
        let contact = msg.contact.to_string();
        let mut item = match self.rosters().get(d, u, &contact) {
            Ok(i) => i.unwrap_or_default(),
            Err(e) => return log::error!("roster storage failure: {e}"),
        };
        let before = item.in_roster.then(|| item.clone());
        let was_from = item.from;
        if before.is_none() && matches!(msg.kind, SubKind::Subscribe | SubKind::Subscribed) {
            match self.roster_full(&msg.user) {
                Ok(false) => {}
                _ => {
                    // No room for the contact: tell the user, change nothing.
                    if let Some(err) = crate::xmpp::error_reply(
                        &msg.stanza,
                        &StanzaError::new(Condition::ResourceConstraint),
                    ) {
                        let mut err = err;
                        err.set_attr("from", contact.as_str());
                        self.router.deliver.do_send(DeliverAvailable {
                            to: msg.user,
                            stanza: err,
                        });
                    }
                    return;
                }
            }
        }
        let outcome = roster::outbound(&mut item, msg.kind);
        if self
            .apply(
                &msg.user,
                &contact,
                &item,
                before.as_ref(),
                was_from,
                outcome,
            )
            .is_err()
        {
            return;
        }
        if outcome.pass_on {
            self.route(msg.stanza, &msg.user, &contact, handled.0.take());
        }
    }
}

impl Handler<Inbound> for RosterStore {
    type Result = ();
    fn handle(&mut self, msg: Inbound, _: &mut Context<Self>) {
        let _done = DoneGuard(
            self.router.inbound_done.clone(),
            Some((msg.user.clone(), msg.contact.clone())),
        );
        let (d, u) = parts(&msg.user);
        let contact = msg.contact.to_string();
        if !self.shared.store.accounts.exists(d, u).unwrap_or(false)
            || self.is_blocked(&msg.user, &contact)
        {
            return;
        }
        let mut item = match self.rosters().get(d, u, &contact) {
            Ok(i) => i.unwrap_or_default(),
            Err(e) => return log::error!("roster storage failure: {e}"),
        };
        if msg.kind == SubKind::Subscribe && !item.in_roster && !item.pending_in {
            // A flood of requests from strangers must not grow the store without bound.
            let pending = self
                .rosters()
                .items(d, u)
                .map(|v| v.len())
                .unwrap_or(usize::MAX);
            if pending >= 2 * self.shared.config.limits.max_roster_items {
                return;
            }
            // ... nor may strangers flood the user with requests: at most
            // `limits.stranger_subscriptions_per_hour` per account (kept in memory only).
            let limit = self.shared.config.limits.stranger_subscriptions_per_hour;
            if limit > 0 {
                let now = std::time::Instant::now();
                let q = self.stranger_requests.entry(msg.user.clone()).or_default();
                while q
                    .front()
                    .is_some_and(|t| now.duration_since(*t).as_secs() >= 3600)
                {
                    q.pop_front();
                }
                if q.len() >= limit as usize {
                    log::debug!(
                        "subscription request for {} dropped: stranger limit",
                        msg.user
                    );
                    return;
                }
                q.push_back(now);
                let cutoff = now - std::time::Duration::from_secs(3600);
                self.stranger_requests
                    .retain(|_, q| q.back().is_some_and(|t| *t > cutoff));
            }
        }
        let before = item.in_roster.then(|| item.clone());
        let was_from = item.from;
        let outcome = roster::inbound(&mut item, msg.kind);
        if self
            .apply(
                &msg.user,
                &contact,
                &item,
                before.as_ref(),
                was_from,
                outcome,
            )
            .is_err()
        {
            return;
        }
        if let Some(reply) = outcome.auto_reply {
            self.route(
                sub_presence(&msg.user, &contact, reply),
                &msg.user,
                &contact,
                None,
            );
        }
        if outcome.pass_on {
            let mut stanza = msg.stanza;
            // Subscription stanzas carry bare JIDs (RFC 6121 §3.1.2).
            stanza.set_attr("from", contact.as_str());
            stanza.set_attr("to", msg.user.as_str());
            self.router.deliver.do_send(DeliverAvailable {
                to: msg.user.clone(),
                stanza,
            });
        }
        if msg.kind == SubKind::Subscribed && outcome.changed && item.to {
            // §3.1.5: now the user may see the contact: ask for its current presence, after
            // the `subscribed` itself has been delivered.
            let probe = Element::new("presence", ns::CLIENT)
                .attr("from", msg.user.as_str())
                .attr("to", contact.as_str())
                .attr("type", "probe");
            self.route(probe, &msg.user, &contact, None);
        }
    }
}

impl Handler<BlockGet> for RosterStore {
    type Result = Result<Vec<String>, StanzaError>;
    fn handle(&mut self, msg: BlockGet, _: &mut Context<Self>) -> Self::Result {
        let (d, u) = parts(&msg.user);
        self.rosters().blocked(d, u).map_err(internal)
    }
}

impl Handler<BlockSet> for RosterStore {
    type Result = Result<(), StanzaError>;
    fn handle(&mut self, msg: BlockSet, _: &mut Context<Self>) -> Self::Result {
        let (d, u) = parts(&msg.user);
        let jids = if !msg.block && msg.jids.is_empty() {
            self.rosters().blocked(d, u).map_err(internal)?
        } else {
            msg.jids
        };
        let mut changed = Vec::new();
        for j in jids {
            if self
                .rosters()
                .set_blocked(d, u, &j, msg.block)
                .map_err(internal)?
            {
                changed.push(j);
            }
        }
        if !changed.is_empty() {
            self.router.blocks.do_send(BlockChanged {
                user: msg.user,
                jids: changed,
                blocked: msg.block,
            });
        }
        Ok(())
    }
}

impl Handler<DeleteRoster> for RosterStore {
    type Result = ();
    fn handle(&mut self, msg: DeleteRoster, _: &mut Context<Self>) {
        let (d, u) = parts(&msg.user);
        for (contact, item) in self.rosters().items(d, u).unwrap_or_default() {
            if item.to || item.pending_out {
                self.route(
                    sub_presence(&msg.user, &contact, SubKind::Unsubscribe),
                    &msg.user,
                    &contact,
                    None,
                );
            }
            if item.from || item.pending_in {
                self.route(
                    sub_presence(&msg.user, &contact, SubKind::Unsubscribed),
                    &msg.user,
                    &contact,
                    None,
                );
            }
        }
        if let Err(e) = self.rosters().remove_account(d, u) {
            log::error!("roster storage failure: {e}");
        }
    }
}

impl Handler<Barrier> for RosterStore {
    type Result = ();
    fn handle(&mut self, _: Barrier, _: &mut Context<Self>) {}
}
