//! The connection's side of rosters, subscriptions and blocking: roster and block-list IQs
//! (RFC 6121 §2, XEP-0237, XEP-0191), outbound subscription stanzas, pushes, and the filter
//! that keeps stanzas from blocked JIDs away from the user.

use std::sync::atomic::Ordering;

use actix::prelude::*;

use super::Connection;
use crate::actors::messages::*;
use crate::roster::{self, blocks, SubKind};
use crate::services::carbons;
use crate::xml::Element;
use crate::xmpp::{error_reply, iq_result, ns, random_id, BareJid, Condition, StanzaError};

use crate::xmpp::ns::BLOCKING;
/// XEP-0191 error namespace.
const BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";

/// XEP-0191 §3.5: the answer to a stanza the user sent to a blocked JID: `not-acceptable`
/// with `<blocked xmlns='urn:xmpp:blocking:errors'/>`.
pub fn blocked_reply(stanza: &Element) -> Option<Element> {
    let mut reply = error_reply(stanza, &StanzaError::new(Condition::NotAcceptable))?;
    if let Some(err) = reply.get_child_mut("error", ns::CLIENT) {
        err.children.push(crate::xml::Node::Element(Element::new(
            "blocked",
            BLOCKING_ERRORS,
        )));
    }
    Some(reply)
}

impl Connection {
    /// Roster and block-list IQs addressed to the server or the user's own bare JID; `false`
    /// when the IQ is something else.
    pub(super) fn roster_iq(&mut self, iq: &Element, ctx: &mut Context<Self>) -> bool {
        let Some(payload) = iq.elements().next() else {
            return false;
        };
        let get = match iq.get_attr("type") {
            Some("get") => true,
            Some("set") => false,
            _ => return false,
        };
        if iq.elements().count() != 1 || iq.get_attr("id").is_none() {
            return false;
        }
        match (payload.ns.as_str(), payload.name.as_str(), get) {
            (roster::NS, "query", true) => {
                self.roster_get(iq.clone(), payload.get_attr("ver").map(str::to_owned), ctx)
            }
            (roster::NS, "query", false) => match roster::parse_set(payload) {
                Ok(req) => {
                    let fut = self.router.roster.set.send(RosterSet {
                        user: self.bare.clone(),
                        req,
                    });
                    self.answer(iq.clone(), fut, |()| None, ctx);
                }
                Err(e) => self.reply(iq, e, ctx),
            },
            (BLOCKING, "blocklist", true) => {
                self.blocklist_wanted = true;
                let fut = self.router.roster.block_get.send(BlockGet {
                    user: self.bare.clone(),
                });
                self.answer(
                    iq.clone(),
                    fut,
                    |jids: Vec<String>| Some(items(Element::new("blocklist", BLOCKING), &jids)),
                    ctx,
                );
            }
            (BLOCKING, "block" | "unblock", false) => {
                let block = payload.name == "block";
                let mut jids = Vec::new();
                for item in payload.elements().filter(|e| e.is("item", BLOCKING)) {
                    match item.get_attr("jid").map(crate::xmpp::jid) {
                        Some(Ok(j)) => jids.push(j.to_string()),
                        _ => {
                            self.reply(iq, StanzaError::new(Condition::JidMalformed), ctx);
                            return true;
                        }
                    }
                }
                if block && jids.is_empty() {
                    self.reply(
                        iq,
                        StanzaError::new(Condition::BadRequest).with_text("nothing to block"),
                        ctx,
                    );
                    return true;
                }
                let fut = self.router.roster.block_set.send(BlockSet {
                    user: self.bare.clone(),
                    jids,
                    block,
                });
                self.answer(iq.clone(), fut, |()| None, ctx);
            }
            (carbons::NS, "enable" | "disable", false) => {
                let enabled = payload.name == "enable";
                if let Some(jid) = self.jid.clone() {
                    self.router.set_carbons.do_send(SetCarbons {
                        jid,
                        conn: self.id,
                        enabled,
                    });
                }
                self.send(&iq_result(iq, None), ctx);
            }
            _ => return false,
        }
        true
    }

    /// Answer `iq` when the roster store replies: a result with `payload(value)`, or the error.
    fn answer<T: 'static>(
        &mut self,
        iq: Element,
        fut: impl std::future::Future<Output = Result<Result<T, StanzaError>, MailboxError>> + 'static,
        payload: impl FnOnce(T) -> Option<Element> + 'static,
        ctx: &mut Context<Self>,
    ) {
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(Ok(v)) => {
                let reply = iq_result(&iq, payload(v));
                act.send_durable(iq, reply, ctx)
            }
            Ok(Err(e)) => act.reply(&iq, e, ctx),
            Err(_) => act.reply(&iq, Condition::InternalServerError.into(), ctx),
        }));
    }

    fn roster_get(&mut self, iq: Element, ver: Option<String>, ctx: &mut Context<Self>) {
        self.roster_wanted = true;
        let fut = self.router.roster.get.send(RosterGet {
            user: self.bare.clone(),
            ver,
        });
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(Ok(RosterReply::Full { items, ver })) => {
                let mut q = Element::new("query", roster::NS).attr("ver", ver);
                q.children
                    .extend(items.into_iter().map(crate::xml::Node::Element));
                act.send(&iq_result(&iq, Some(q)), ctx);
            }
            Ok(Ok(RosterReply::Delta { pushes, ver })) => {
                // XEP-0237 §2.3: an empty result, then the changes as pushes.
                act.send(&iq_result(&iq, None), ctx);
                for item in pushes {
                    act.push_item(item, ver.clone(), ctx);
                }
            }
            Ok(Err(e)) => act.reply(&iq, e, ctx),
            Err(_) => act.reply(&iq, Condition::InternalServerError.into(), ctx),
        }));
    }

    fn push_item(&mut self, item: Element, ver: String, ctx: &mut Context<Self>) {
        let Some(full) = &self.jid else { return };
        let push = Element::new("iq", ns::CLIENT)
            .attr("type", "set")
            .attr("id", format!("push-{}", random_id(6)))
            .attr("to", full.as_str())
            .child(
                Element::new("query", roster::NS)
                    .attr("ver", ver)
                    .child(item),
            );
        self.send(&push, ctx);
    }

    /// A roster push from the store: keep our view of the subscriptions, tell the client.
    pub(super) fn roster_push(&mut self, item: Element, ver: String, ctx: &mut Context<Self>) {
        if let Some(jid) = item.get_attr("jid") {
            if item.get_attr("subscription") == Some("remove") {
                self.contacts.remove(jid);
            } else {
                self.contacts.insert(jid.to_owned());
            }
            match item.get_attr("subscription") {
                Some("to" | "both") => {
                    self.subscriptions.insert(jid.to_owned());
                }
                _ => {
                    self.subscriptions.remove(jid);
                }
            }
        }
        if self.roster_wanted {
            self.push_item(item, ver, ctx);
        }
    }

    /// A block-list change: keep our copy, tell the client if it asked for the list.
    pub(super) fn block_push(&mut self, jids: Vec<String>, blocked: bool, ctx: &mut Context<Self>) {
        for j in &jids {
            if blocked {
                self.blocked.insert(j.clone());
            } else {
                self.blocked.remove(j);
            }
        }
        if !self.blocklist_wanted {
            return;
        }
        let Some(full) = &self.jid else { return };
        let name = if blocked { "block" } else { "unblock" };
        let push = Element::new("iq", ns::CLIENT)
            .attr("type", "set")
            .attr("id", format!("push-{}", random_id(6)))
            .attr("to", full.as_str())
            .child(items(Element::new(name, BLOCKING), &jids));
        self.send(&push, ctx);
    }

    /// RFC 6121 §3: a subscription stanza from the user, to the roster store.
    pub(super) fn outbound_subscription(
        &mut self,
        kind: SubKind,
        mut el: Element,
        contact: BareJid,
    ) {
        el.set_attr("from", self.bare.as_str());
        el.set_attr("to", contact.as_str());
        self.inflight.fetch_add(1, Ordering::AcqRel);
        self.mark_unsettled();
        self.router.roster.outbound.do_send(Outbound {
            user: self.bare.clone(),
            contact,
            kind,
            stanza: el,
            inflight: Some(self.inflight.clone()),
        });
    }

    /// A stanza for the client: anything from a blocked JID stops here (XEP-0191 §3.4).
    pub(super) fn inbound(&mut self, el: Element, ctx: &mut Context<Self>) {
        self.inbound_from(el, false, ctx)
    }

    /// A stanza serialised once for many recipients (a room's group message): written as
    /// it is when nothing about this session needs the element (no block list, no held
    /// presence, no stream management queue, not a stranger's, no carbons); otherwise made
    /// into the element and handled as any other.
    pub(super) fn inbound_prepared(&mut self, p: &Prepared, to: &str, ctx: &mut Context<Self>) {
        let el = &p.stanza;
        let plain = self.blocked.is_empty()
            && !self.inactive
            && self.sm.is_none()
            && !carbons::eligible(el)
            && !(el.get_child("body", ns::CLIENT).is_some() && self.stranger_limited(from_of(el)));
        if plain {
            self.send_raw(p.xml_for(to), ctx);
        } else {
            self.inbound(p.element_for(to), ctx);
        }
    }

    /// As [`Self::inbound`]; `from_spool` marks the account's own offline messages, which
    /// were accepted earlier and are not counted against the stranger limit again. Only the
    /// server knows where a stanza came from: its content (a sender's `<delay/>`) does not
    /// count.
    pub(super) fn inbound_from(&mut self, el: Element, from_spool: bool, ctx: &mut Context<Self>) {
        let from = el.get_attr("from").unwrap_or_default();
        if !self.blocked.is_empty() && blocks(&self.blocked, from) {
            let answer = match (el.name.as_str(), el.get_attr("type")) {
                ("message", t) => t != Some("error"),
                ("iq", Some("get" | "set")) => true,
                _ => false,
            };
            if answer {
                self.refuse_inbound(&el, StanzaError::new(Condition::ServiceUnavailable));
            }
            return;
        }
        // Spam: messages from strangers (not on the roster) are limited per hour.
        if el.name == "message"
            && el.get_child("body", ns::CLIENT).is_some()
            && el.get_attr("type") != Some("error")
            && !from_spool
            && self.stranger_limited(from_of(&el))
        {
            self.refuse_inbound(
                &el,
                StanzaError::new(Condition::PolicyViolation)
                    .with_text("too many messages from strangers"),
            );
            return;
        }
        if el.name == "presence" && el.get_attr("type") == Some("subscribe") {
            let contact = from_of(&el).to_owned();
            if self.requests_from_store.remove(&contact) {
                // Shown already, read from the store while this session came online.
                return;
            }
            self.requests_shown.insert(contact);
        }
        // XEP-0280: a message delivered to this resource's full JID is copied to the
        // account's other carbon-enabled resources.
        if el.name == "message"
            && self
                .jid
                .as_ref()
                .is_some_and(|j| el.get_attr("to") == Some(j.as_str()))
            && carbons::eligible(&el)
            && self.router.directory.wants_carbons(self.bare.as_str())
        {
            self.router.carbons.do_send(Carbons {
                user: self.bare.clone(),
                except: vec![self.id],
                kind: CarbonKind::Received,
                message: el.clone(),
            });
        }
        self.deliver(el, ctx);
    }

    /// XEP-0280: copy a message the user sends to the account's other carbon-enabled
    /// resources, and strip the `<private/>` opt-out before it leaves.
    pub(super) fn sent_carbons(&mut self, el: &mut Element) {
        if el.name != "message" {
            return;
        }
        if carbons::eligible(el) && self.router.directory.wants_carbons(self.bare.as_str()) {
            self.router.carbons.do_send(Carbons {
                user: self.bare.clone(),
                except: vec![self.id],
                kind: CarbonKind::Sent,
                message: el.clone(),
            });
        }
        carbons::strip_private(el);
    }
}

impl Connection {
    /// Refuse a stanza that reached this session: its error reply goes back to the sender
    /// through the router (errors are never answered).
    fn refuse_inbound(&self, el: &Element, err: StanzaError) {
        let Some(reply) = error_reply(el, &err) else {
            return;
        };
        if let Some(r) = Route::of(reply) {
            self.router.route.do_send(r);
        }
    }
}

/// The bare JID of a stanza's sender.
fn from_of(el: &Element) -> &str {
    crate::xmpp::bare_part(el.get_attr("from").unwrap_or_default())
}

impl Connection {
    /// Is this message from a stranger over `limits.stranger_messages_per_hour`? Counts it.
    /// Contacts, the user's own other resources, this server's own domains and errors are
    /// not limited; other servers' domains are strangers like their users.
    /// The session sent presence to `to`: remember (available) or forget (unavailable) its
    /// bare JID, whom messages then do not count as a stranger's (a room the user is in, and
    /// private messages through it). At most [`MAX_PRESENCE_TO`] are kept.
    pub(super) fn note_directed(&mut self, to: &crate::xmpp::Jid, kind: Option<&str>) {
        let bare = crate::xmpp::bare_part(to.as_str());
        match kind {
            None if self.presence_to.len() < MAX_PRESENCE_TO => {
                self.presence_to.insert(bare.to_owned());
            }
            Some("unavailable") => {
                self.presence_to.remove(bare);
            }
            _ => {}
        }
    }

    fn stranger_limited(&mut self, from_bare: &str) -> bool {
        let limit = self.shared.config.limits.stranger_messages_per_hour;
        if limit == 0
            || !self.limited
            || from_bare == self.bare.as_str()
            // The server itself, and its services (local rooms, gateways the operator runs).
            || self.shared.is_local(from_bare)
            || self
                .shared
                .destinations
                .is_service(crate::xmpp::domain_part(from_bare))
            || self.contacts.contains(from_bare)
            || self.presence_to.contains(from_bare)
        {
            return false;
        }
        let now = std::time::Instant::now();
        while self
            .stranger_messages
            .front()
            .is_some_and(|t| now.duration_since(*t).as_secs() >= 3600)
        {
            self.stranger_messages.pop_front();
        }
        if self.stranger_messages.len() >= limit as usize {
            return true;
        }
        self.stranger_messages.push_back(now);
        false
    }
}

/// Most bare JIDs a session remembers sending presence to.
const MAX_PRESENCE_TO: usize = 4096;

/// `parent` with one `<item jid='...'/>` per JID.
fn items(mut parent: Element, jids: &[String]) -> Element {
    let ns = parent.ns.clone();
    for j in jids {
        parent = parent.child(Element::new("item", &ns).attr("jid", j.clone()));
    }
    parent
}
