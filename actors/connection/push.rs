//! XEP-0357 in a session: the client's `enable` and `disable`, handed to the push service
//! (which stores them) and answered once on disk; and the one notification a stream-management
//! session asks for when something worth it arrives while its client is away: hibernated
//! (the connection is gone), or silent (no ack within `push.ack_delay_secs`: a phone
//! suspended the app with its connection open). See `actors/push.rs` for the rules.

use actix::prelude::*;

use super::Connection;
use crate::actors::messages::{PushEvent, PushRequest};
use crate::services::push::{self as proto, Request};
use crate::xml::Element;
use crate::xmpp::{iq_result, Condition, StanzaError};

/// What a session knows about push.
#[derive(Default)]
pub struct SessionPush {
    /// Registrations this session enabled (app server JID, node): a notification while it
    /// hibernates goes to these.
    regs: Vec<(String, String)>,
    /// The hibernation (its number) that already had its notification.
    pushed: Option<u64>,
    /// An ack is being waited for (`push.ack_delay_secs`).
    watching: bool,
    /// The client's acknowledged count when it was found silent and notified: no other
    /// notification until it acknowledges more.
    silent_since: Option<u32>,
}

impl Connection {
    /// The client's `enable` or `disable`; `false` when `iq` is something else.
    pub(super) fn push_iq(&mut self, iq: &Element, ctx: &mut Context<Self>) -> bool {
        let Some(parsed) = proto::parse(iq, &self.bare) else {
            return false;
        };
        let request = match parsed {
            Ok(_) if !self.shared.config.push.enabled => {
                self.reply(iq, StanzaError::new(Condition::ServiceUnavailable), ctx);
                return true;
            }
            Ok(r) => r,
            Err(e) => {
                self.reply(iq, e, ctx);
                return true;
            }
        };
        let ask = self.router.push.request.send(PushRequest {
            user: self.bare.clone(),
            request: request.clone(),
        });
        let iq = iq.clone();
        ctx.spawn(ask.into_actor(self).map(move |res, act, ctx| match res {
            Ok(Ok(_)) => {
                act.push.note(request);
                let reply = iq_result(&iq, None);
                act.send_durable(iq, reply, ctx);
            }
            Ok(Err(e)) => act.reply(&iq, e, ctx),
            Err(_) => act.reply(&iq, Condition::InternalServerError.into(), ctx),
        }));
        true
    }

    /// `el` is being sent to the client. While the session hibernates, the first stanza that
    /// deserves it asks for a notification to the registrations this session enabled. While
    /// the connection seems up, such a stanza asks the client for an ack, and if none comes
    /// within `push.ack_delay_secs` the client is taken to be asleep (a phone suspends an app
    /// with its connection open): a notification then too, once until the client acks again.
    pub(super) fn push_if_away(&mut self, el: &Element, ctx: &mut Context<Self>) {
        let Some((hibernating, sent, acked)) = self.sm_push_view() else {
            return;
        };
        if self.push.regs.is_empty() {
            return;
        }
        let Some(trigger) = proto::trigger(el) else {
            return;
        };
        match hibernating {
            // Asleep before the connection was found gone: that burst had its notification.
            Some(epoch) if self.push.silent_since == Some(acked) => self.push.pushed = Some(epoch),
            Some(epoch) if self.push.pushed != Some(epoch) => {
                self.push.pushed = Some(epoch);
                self.ask_push(trigger, "hibernating");
            }
            Some(_) => {}
            None => self.watch_ack(trigger, sent, acked, ctx),
        }
    }

    /// Ask for an ack now, and for a notification if the client has not acknowledged the
    /// `sent` stanzas after the delay (unless it is already silent since `acked`).
    fn watch_ack(
        &mut self,
        trigger: proto::Trigger,
        sent: u32,
        acked: u32,
        ctx: &mut Context<Self>,
    ) {
        let delay = self.shared.config.push.ack_delay_secs;
        if delay == 0 || self.push.watching || self.push.silent_since == Some(acked) {
            return;
        }
        self.push.watching = true;
        self.send_raw(format!("<r xmlns='{}'/>", super::sm::NS), ctx);
        ctx.run_later(std::time::Duration::from_secs(delay), move |act, _| {
            act.push.watching = false;
            let Some((hibernating, _, acked)) = act.sm_push_view() else {
                return;
            };
            if acked.wrapping_sub(sent) as i32 >= 0 {
                return;
            }
            act.push.silent_since = Some(acked);
            if let Some(epoch) = hibernating {
                if act.push.pushed == Some(epoch) {
                    return;
                }
                act.push.pushed = Some(epoch);
            }
            act.ask_push(trigger, "no ack");
        });
    }

    fn ask_push(&mut self, trigger: proto::Trigger, why: &str) {
        log::debug!("{}: push notification asked for ({why})", self.id);
        self.router.push.event.do_send(PushEvent {
            user: self.bare.clone(),
            trigger,
            waiting: Some(self.sm_unacked_messages()),
            only: Some(self.push.regs.clone()),
        });
    }
}

impl SessionPush {
    /// Remember what the session enabled or disabled.
    fn note(&mut self, request: Request) {
        match request {
            Request::Enable { jid, node, .. } => {
                if !self.regs.iter().any(|(j, n)| *j == jid && *n == node) {
                    self.regs.push((jid, node));
                }
            }
            Request::Disable { jid, node } => self
                .regs
                .retain(|(j, n)| *j != jid || node.as_ref().is_some_and(|node| node != n)),
        }
    }
}
