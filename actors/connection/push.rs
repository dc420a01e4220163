//! XEP-0357 in a session: the client's `enable` and `disable`, handed to the push service
//! (which stores them) and answered once on disk; and the one notification a hibernated
//! stream-management session asks for when something worth it arrives while its client is
//! away (see `actors/push.rs` for the rules).

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

    /// `el` is being sent to the client: while the session hibernates, the first stanza that
    /// deserves it asks for a notification to the registrations this session enabled.
    pub(super) fn push_if_away(&mut self, el: &Element) {
        let Some(epoch) = self.sm.as_ref().and_then(|s| s.hibernating) else {
            return;
        };
        if self.push.regs.is_empty() || self.push.pushed == Some(epoch) {
            return;
        }
        let Some(trigger) = proto::trigger(el) else {
            return;
        };
        self.push.pushed = Some(epoch);
        log::debug!("{}: hibernating, push notification asked for", self.id);
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
