//! A session's archive requests (XEP-0313, XEP-0441): IQs about the user's own archive go to
//! the archive actor, whose answers (result messages, then the IQ's result) are sent in
//! order. A client that queries its whole archive (no `with` or `ids` filter) before its
//! initial presence catches up from there, so the offline messages that are in the archive
//! are not sent to it a second time (as ejabberd does for Conversations); the others still
//! are, each with the same stanza id as in the archive, so clients can tell them apart.

use actix::prelude::*;

use super::Connection;
use crate::actors::messages::MamIq;
use crate::services::mam;
use crate::xml::Element;
use crate::xmpp::{Condition, Jid};

impl Connection {
    /// Handle `iq` if it is a MAM request about the user's own archive and the archive is
    /// on; `false` otherwise (it is then answered as any unknown IQ: `service-unavailable`).
    pub(super) fn mam_iq(
        &mut self,
        iq: &Element,
        to: Option<&Jid>,
        ctx: &mut Context<Self>,
    ) -> bool {
        let own = to.is_none_or(|t| t.as_str() == self.bare.as_str());
        let is_mam = iq.elements().next().is_some_and(|p| p.ns == mam::NS);
        let Some(archive) = self.router.archive.clone().filter(|_| own && is_mam) else {
            return false;
        };
        let catch_up = iq.get_attr("type") == Some("set")
            && iq.get_child("query", mam::NS).is_some_and(mam::is_catch_up);
        if !self.available && catch_up {
            self.mam_synced = true;
        }
        let ask = archive.iq.send(MamIq {
            iq: iq.clone(),
            user: self.bare.clone(),
        });
        // A preference change is on disk before it is confirmed; a query (also an IQ `set`)
        // wrote nothing and waits for no flush.
        let writes = iq.get_child("prefs", mam::NS).is_some();
        let iq = iq.clone();
        ctx.spawn(ask.into_actor(self).map(move |res, act, ctx| match res {
            Ok(mut out) => {
                let answer = out.pop();
                for el in out {
                    act.send(&el, ctx);
                }
                match answer {
                    Some(a) if writes => act.send_durable(iq, a, ctx),
                    Some(a) => act.send(&a, ctx),
                    None => {}
                }
            }
            Err(_) => act.reply(&iq, Condition::InternalServerError.into(), ctx),
        }));
        true
    }
}
