//! The offline spool: stanzas for local users who have no available session.
//!
//! Today it answers for the router what needs the disk: whether the account exists. Every
//! stanza it receives is bounced with `service-unavailable` and logged as `recipient offline`
//! or `no such user`. Storing `chat`/`normal` messages for delivery at the next login
//! (XEP-0160) plugs in here (issue #4) without changing the router.

use std::sync::Arc;

use actix::prelude::*;

use super::messages::*;
use crate::shared::Shared;
use crate::xmpp::{error_reply, Condition, Jid, StanzaError};

/// The spool actor.
pub struct Spool {
    shared: Arc<Shared>,
    router: Recipient<Route>,
    scheduler: Recipient<LogDeliveryError>,
}

impl Spool {
    pub fn new(
        shared: Arc<Shared>,
        router: Recipient<Route>,
        scheduler: Recipient<LogDeliveryError>,
    ) -> Spool {
        Spool {
            shared,
            router,
            scheduler,
        }
    }
}

impl Actor for Spool {
    type Context = Context<Self>;
}

impl Handler<Offline> for Spool {
    type Result = ();
    fn handle(&mut self, msg: Offline, _: &mut Context<Self>) {
        let user = msg.to.node().map(|n| n.as_str()).unwrap_or_default();
        let exists = self
            .shared
            .store
            .accounts
            .exists(msg.to.domain().as_str(), user)
            .unwrap_or(false);
        let reason = if exists {
            "recipient offline"
        } else {
            "no such user"
        };
        let from = msg.stanza.get_attr("from").unwrap_or_default().to_owned();
        let Some(reply) = error_reply(
            &msg.stanza,
            &StanzaError::new(Condition::ServiceUnavailable),
        ) else {
            return;
        };
        self.scheduler.do_send(LogDeliveryError {
            from: from.clone(),
            to: msg.to.to_string(),
            reason: format!("service-unavailable: {reason}"),
        });
        let (Ok(from_jid), Ok(to_jid)) = (
            Jid::new(&from),
            Jid::new(reply.get_attr("from").unwrap_or_default()),
        ) else {
            return;
        };
        self.router.do_send(Route {
            stanza: reply,
            from: to_jid,
            to: from_jid,
            inflight: None,
        });
    }
}
