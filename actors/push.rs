//! The push service (XEP-0357): the only writer of the `push` tree, and the sender of
//! notifications to app servers. One actor on the storage arbiter.
//!
//! Registrations come from the user's own sessions ([`PushRequest`], answered once stored).
//! Notifications are triggered ([`PushEvent`]) when a stanza that deserves one
//! (`services::push::trigger`) arrives while the client is away:
//!
//! - **no session** (the offline spool kept a message; the router found no available
//!   session for a subscription request): a notification to every registration of the
//!   account for each such stanza (but see the burst rule below);
//! - **a stream-management session waiting for resumption** (`connection/push.rs`): one
//!   notification per hibernation, to the registrations that session enabled, at the first
//!   such stanza; nothing more until the client resumes (a new hibernation is a new burst)
//!   or the session ends (its unacknowledged messages then go to the spool, as above);
//! - **a connected session that does not acknowledge** (the same file): such a stanza asks the
//!   client for an XEP-0198 ack; none within `push.ack_delay_secs` means the app is asleep
//!   with its connection open (iOS suspends apps so), and the session asks for one
//!   notification, then none until the client acknowledges again (a hibernation that follows
//!   without an ack belongs to the same burst).
//!
//! Either way a registration gets no new notification while its last one is in flight (sent,
//! or waiting for a retry, and not answered): a burst of messages gets one notification until
//! the app server answered (the flood of a timed-out hibernation's messages going to the spool
//! included). At most `push.max_per_minute` notifications per account (retries included); more
//! are dropped. Each notification is an IQ from the account's bare JID to the app server,
//! routed like any stanza (to a component or internal service, or over s2s). Its answer
//! comes back to the bare JID and is handed here by `host_iq.rs` ([`PushAnswer`], by the id's
//! prefix): no answer within `push.timeout_secs`, or an error worth it, is retried
//! `push.retries` times after `push.retry_backoff_secs`, doubling; an error saying the
//! registration is gone removes it (`services::push::outcome`).
//!
//! The log holds no JID, node, secret or body: at `info` only counts and what happened.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use super::messages::*;
use crate::services::push::{self as proto, Outcome, Request, Summary};
use crate::shared::Shared;
use crate::store::push::Registration;
use crate::xml::Element;
use crate::xmpp::account_parts as parts;
use crate::xmpp::{random_id, BareJid, Condition, StanzaError};

/// A notification waiting for the app server's answer.
struct Pending {
    user: BareJid,
    reg: Registration,
    summary: Summary,
    /// Retries made so far.
    attempt: u32,
    /// The timer that retries it when no answer comes.
    timeout: SpawnHandle,
}

/// The push service actor.
pub struct PushService {
    shared: Arc<Shared>,
    router: Recipient<Route>,
    /// Notifications sent and not answered yet, by IQ id.
    pending: HashMap<String, Pending>,
    /// When each account's notifications of the last minute went out (the rate limit).
    sent: HashMap<BareJid, VecDeque<Instant>>,
    /// Registrations with a notification in flight (sent or to be retried, not answered):
    /// they get no other until then.
    busy: HashSet<Busy>,
}

/// A registration of an account: (account, app server JID, node).
type Busy = (BareJid, String, String);

fn busy_key(user: &BareJid, reg: &Registration) -> Busy {
    (user.clone(), reg.jid.clone(), reg.node.clone())
}

impl PushService {
    pub fn new(shared: Arc<Shared>, router: Recipient<Route>) -> PushService {
        PushService {
            shared,
            router,
            pending: HashMap::new(),
            sent: HashMap::new(),
            busy: HashSet::new(),
        }
    }

    /// Store or remove registrations.
    fn request(&mut self, user: &BareJid, request: Request) -> Result<usize, StanzaError> {
        let cfg = &self.shared.config.push;
        if !cfg.enabled {
            return Err(StanzaError::new(Condition::ServiceUnavailable));
        }
        let (domain, name) = parts(user);
        let store = &self.shared.store.push;
        let done = match request {
            Request::Enable { jid, node, options } => {
                let reg = Registration {
                    v: 1,
                    jid,
                    node,
                    options,
                    registered: crate::store::now_secs(),
                };
                let replaced = store.put(domain, name, &reg, cfg.max_per_account);
                if let Ok(n @ 1..) = replaced {
                    log::info!("push: {n} older registration(s) of an account replaced (limit)");
                }
                replaced.map(|_| 0)
            }
            Request::Disable { jid, node } => store.remove(domain, name, &jid, node.as_deref()),
        };
        done.map_err(|e| e.stanza_error("push registration"))
    }

    /// Notify the registrations `event` names.
    fn notify(&mut self, event: PushEvent, ctx: &mut Context<Self>) {
        if !self.shared.config.push.enabled {
            return;
        }
        let (domain, name) = parts(&event.user);
        let store = &self.shared.store;
        let regs = match store.push.list(domain, name) {
            Ok(r) => r,
            Err(e) => return log::error!("push: cannot read registrations: {e}"),
        };
        let wanted = |r: &Registration| {
            event.only.as_ref().is_none_or(|only| {
                only.iter()
                    .any(|(j, n)| (j.as_str(), n.as_str()) == (r.jid.as_str(), r.node.as_str()))
            })
        };
        let waiting = match event.waiting {
            Some(n) => n,
            None => store.offline.usage(domain, name).map_or(1, |u| u.count),
        };
        let summary = Summary::new(&event.trigger, waiting, &self.shared.config.push);
        for reg in regs.into_iter().filter(wanted) {
            // One notification per burst: none while the last one is not answered.
            if self.busy.insert(busy_key(&event.user, &reg)) {
                self.send(event.user.clone(), reg, summary.clone(), 0, ctx);
            } else {
                log::debug!("push: {} still busy with a notification", reg.jid);
            }
        }
    }

    /// Send one notification (retry number `attempt`), if the rate limit allows.
    fn send(
        &mut self,
        user: BareJid,
        reg: Registration,
        summary: Summary,
        attempt: u32,
        ctx: &mut Context<Self>,
    ) {
        let per_minute = self.shared.config.push.max_per_minute;
        if self.sent.len() > 1024 {
            let minute = std::time::Duration::from_secs(60);
            self.sent
                .retain(|_, q| q.back().is_some_and(|t| t.elapsed() < minute));
        }
        let sent = self.sent.entry(user.clone()).or_default();
        if !proto::allow(sent, Instant::now(), per_minute) {
            log::info!("push: notification dropped (push.max_per_minute)");
            self.busy.remove(&busy_key(&user, &reg));
            return;
        }
        let id = format!("{}{}", proto::ID_PREFIX, random_id(16));
        let iq = proto::notification(&user, &reg, &id, &summary);
        if let Some(route) = Route::of(iq) {
            self.router.do_send(route);
        }
        log::debug!("push: notification {id} for {user} sent to {}", reg.jid);
        let timeout = {
            let id = id.clone();
            ctx.run_later(self.shared.config.push.timeout(), move |act, ctx| {
                if let Some(p) = act.pending.remove(&id) {
                    log::debug!("push: no answer to {id}");
                    act.retry(p, ctx);
                }
            })
        };
        self.pending.insert(
            id,
            Pending {
                user,
                reg,
                summary,
                attempt,
                timeout,
            },
        );
    }

    /// Send `p` again after the backoff, unless its retries are used up or the registration
    /// is gone meanwhile (disabled, or the account deleted).
    fn retry(&mut self, p: Pending, ctx: &mut Context<Self>) {
        let cfg = &self.shared.config.push;
        if p.attempt >= cfg.retries {
            log::info!("push: a notification given up after {} retries", p.attempt);
            self.busy.remove(&busy_key(&p.user, &p.reg));
            return;
        }
        let attempt = p.attempt + 1;
        ctx.run_later(cfg.backoff(attempt), move |act, ctx| {
            let (domain, name) = parts(&p.user);
            let still = act.shared.store.push.list(domain, name).is_ok_and(|regs| {
                regs.iter()
                    .any(|r| (&r.jid, &r.node) == (&p.reg.jid, &p.reg.node))
            });
            if still {
                act.send(p.user, p.reg, p.summary, attempt, ctx);
            } else {
                act.busy.remove(&busy_key(&p.user, &p.reg));
            }
        });
    }

    /// The app server answered `iq`.
    fn answered(&mut self, iq: Element, ctx: &mut Context<Self>) {
        let Some(id) = iq.get_attr("id") else { return };
        let from = iq.get_attr("from").unwrap_or_default();
        // Only the app server the notification went to may answer it.
        let ours = self
            .pending
            .get(id)
            .is_some_and(|p| crate::xmpp::bare_part(from) == crate::xmpp::bare_part(&p.reg.jid));
        let Some(p) = ours.then(|| self.pending.remove(id)).flatten() else {
            return;
        };
        ctx.cancel_future(p.timeout);
        let outcome = proto::outcome(&iq);
        if outcome != Outcome::Retry {
            self.busy.remove(&busy_key(&p.user, &p.reg));
        }
        match outcome {
            Outcome::Done => log::debug!("push: {id} accepted"),
            Outcome::Retry => self.retry(p, ctx),
            Outcome::Failed => log::info!("push: a notification refused by the app server"),
            Outcome::Gone => {
                let (domain, name) = parts(&p.user);
                let store = &self.shared.store.push;
                match store.remove(domain, name, &p.reg.jid, Some(&p.reg.node)) {
                    Ok(_) => {
                        log::info!("push: a registration removed (the app server says it is gone)")
                    }
                    Err(e) => log::error!("push: cannot remove a registration: {e}"),
                }
            }
        }
    }
}

impl Actor for PushService {
    type Context = Context<Self>;
}

impl Handler<PushRequest> for PushService {
    type Result = Result<usize, StanzaError>;
    fn handle(&mut self, msg: PushRequest, _: &mut Context<Self>) -> Self::Result {
        self.request(&msg.user, msg.request)
    }
}

impl Handler<PushEvent> for PushService {
    type Result = ();
    fn handle(&mut self, msg: PushEvent, ctx: &mut Context<Self>) {
        self.notify(msg, ctx);
    }
}

impl Handler<PushAnswer> for PushService {
    type Result = ();
    fn handle(&mut self, msg: PushAnswer, ctx: &mut Context<Self>) {
        self.answered(msg.iq, ctx);
    }
}

impl Handler<AccountGone> for PushService {
    type Result = ();
    fn handle(&mut self, msg: AccountGone, ctx: &mut Context<Self>) {
        // The store removed the registrations; forget what is in flight.
        let gone: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.user == msg.jid)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(p) = self.pending.remove(&id) {
                ctx.cancel_future(p.timeout);
            }
        }
        self.sent.remove(&msg.jid);
        self.busy.retain(|(user, _, _)| *user != msg.jid);
    }
}
