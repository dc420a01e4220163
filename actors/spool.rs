//! The offline spool (XEP-0160): messages for local users who have no available session.
//!
//! The router hands over what it could not deliver; the spool, the only writer of the
//! `offline` trees, finds out whether the account exists (the router never touches disk),
//! keeps `normal` and `chat` messages within the per-user quota, and bounces everything else
//! with `service-unavailable` and a delivery-error log line (no content). At the user's next
//! initial presence the connection takes the messages, oldest first, and they are deleted;
//! each carries its XEP-0359 stanza id, and those a client already fetched from its archive
//! are dropped instead (`connection/mam.rs`).
//! A sender's XEP-0198 ack waits until the spool has handled its messages and they are on disk
//! (`Store::durable`, see `connection/sm.rs`); otherwise the store's flush window applies
//! (`storage.flush_window_ms`), and shutdown flushes.

use std::sync::Arc;

use actix::prelude::*;

use super::messages::*;
use crate::services::mam;
use crate::shared::Shared;
use crate::xml::{parse_element, Element};
use crate::xmpp::{error_reply, ns, BareJid, Condition, StanzaError};

/// The spool actor.
pub struct Spool {
    shared: Arc<Shared>,
    router: Recipient<Route>,
    scheduler: Recipient<LogDeliveryError>,
    /// Told of every message kept (XEP-0357 push notifications).
    push: Recipient<PushEvent>,
}

impl Spool {
    pub fn new(
        shared: Arc<Shared>,
        router: Recipient<Route>,
        scheduler: Recipient<LogDeliveryError>,
        push: Recipient<PushEvent>,
    ) -> Spool {
        Spool {
            shared,
            router,
            scheduler,
            push,
        }
    }

    fn bounce(&self, stanza: &Element, to: &BareJid, cond: Condition, reason: &str) {
        let from = stanza.get_attr("from").unwrap_or_default().to_owned();
        let Some(reply) = error_reply(stanza, &StanzaError::new(cond)) else {
            return;
        };
        self.scheduler.do_send(LogDeliveryError {
            from: from.clone(),
            to: to.to_string(),
            reason: format!("{cond}: {reason}"),
        });
        if let Some(r) = Route::of(reply) {
            self.router.do_send(r);
        }
    }

    /// Keep the message if the account exists, the type qualifies and the quota allows.
    fn store(&self, stanza: &Element, to: &BareJid) -> Result<(), (Condition, &'static str)> {
        let (domain, user) = crate::xmpp::account_parts(to);
        let store = &self.shared.store;
        if !store.accounts.exists(domain, user).unwrap_or(false) {
            return Err((Condition::ServiceUnavailable, "no such user"));
        }
        // XEP-0160 §3: only normal and chat messages are stored.
        let storable = stanza.name == "message"
            && matches!(stanza.get_attr("type"), None | Some("normal" | "chat"));
        // XEP-0191: nothing from a blocked JID is kept for the user either.
        let from = stanza.get_attr("from").unwrap_or_default();
        let blocked: std::collections::HashSet<String> = store
            .rosters
            .blocked(domain, user)
            .unwrap_or_default()
            .into_iter()
            .collect();
        if crate::roster::blocks(&blocked, from) {
            return Err((Condition::ServiceUnavailable, "blocked by the recipient"));
        }
        let cfg = &self.shared.config.offline;
        if !storable || cfg.max_messages_per_user == 0 {
            return Err((Condition::ServiceUnavailable, "recipient offline"));
        }
        // XEP-0359: an offline message has its stanza id (the archive's, when it was archived).
        let mut stanza = stanza.clone();
        if mam::stamped_id(&stanza, to.as_str()).is_none() {
            mam::stamp(&mut stanza, to.as_str(), store.archive.next_id());
        }
        let xml = stanza.to_xml(ns::CLIENT);
        let usage = store.offline.usage(domain, user).map_err(|e| {
            log::error!("offline storage failure: {e}");
            (Condition::InternalServerError, "storage failure")
        })?;
        if usage.count + 1 > cfg.max_messages_per_user
            || usage.bytes + xml.len() as u64 > cfg.max_bytes_per_user
        {
            // The delivery-error log keeps service-unavailable without its reason (it would
            // tell blocks apart); the operator still learns that quotas are being hit.
            log::info!("spool: offline storage full for an account: a message bounced");
            return Err((Condition::ServiceUnavailable, "offline storage full"));
        }
        store
            .offline
            .push(domain, user, crate::store::now_ms(), xml)
            .map_err(|e| match e {
                crate::store::StoreError::Full(_) => (Condition::ResourceConstraint, "disk full"),
                e => {
                    log::error!("offline storage failure: {e}");
                    (Condition::InternalServerError, "storage failure")
                }
            })
    }
}

impl Actor for Spool {
    type Context = Context<Self>;
}

impl Handler<Offline> for Spool {
    type Result = ();
    fn handle(&mut self, msg: Offline, _: &mut Context<Self>) {
        match self.store(&msg.stanza, &msg.to) {
            Err((cond, reason)) => self.bounce(&msg.stanza, &msg.to, cond, reason),
            Ok(()) => {
                if let Some(trigger) = crate::services::push::trigger(&msg.stanza) {
                    self.push.do_send(PushEvent {
                        user: msg.to,
                        trigger,
                        waiting: None,
                        only: None,
                    });
                }
            }
        }
    }
}

impl Handler<TakeOffline> for Spool {
    type Result = MessageResult<TakeOffline>;
    fn handle(&mut self, msg: TakeOffline, _: &mut Context<Self>) -> Self::Result {
        let (domain, user) = crate::xmpp::account_parts(&msg.user);
        let (stored, more) = match self
            .shared
            .store
            .offline
            .take_chunk(domain, user, msg.max_bytes)
        {
            Ok(s) => s,
            Err(e) => {
                log::error!("offline storage failure: {e}");
                return MessageResult((Vec::new(), false));
            }
        };
        let archive = &self.shared.store.archive;
        let messages = stored
            .into_iter()
            .filter_map(|rec| {
                let mut el = parse_element(&rec.xml).ok()?;
                if msg.skip_archived {
                    let archived = mam::stamped_id(&el, msg.user.as_str())
                        .and_then(|id| archive.get(domain, user, id).ok().flatten());
                    if archived.is_some() {
                        return None;
                    }
                }
                // XEP-0203: when the server received it.
                let stamp = crate::xmpp::xep0082(rec.ts_ms)?;
                el.children.push(crate::xml::Node::Element(
                    Element::new("delay", "urn:xmpp:delay")
                        .attr("from", domain)
                        .attr("stamp", stamp)
                        .text("Offline Storage"),
                ));
                Some(el)
            })
            .collect();
        MessageResult((messages, more))
    }
}

impl Handler<Barrier> for Spool {
    type Result = ();
    fn handle(&mut self, _: Barrier, _: &mut Context<Self>) {}
}
