//! The router: the session table and the RFC 6121 §8 delivery rules (`doc/routing.md`).
//!
//! It holds `bare JID -> sessions` and decides where each stanza goes. It never blocks and
//! never touches disk: stanzas for users without an available session go to the spool, which
//! knows whether the account exists. The rules themselves are the pure function [`decide`],
//! tested table by table; the actor applies the decision.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use actix::prelude::*;

use super::messages::*;
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

/// Read-mostly index of bound sessions by full JID, written only by the router.
///
/// A stanza to a bound full JID needs no routing decision (row 4 of `doc/routing.md`), so a
/// session may hand it straight to the recipient's mailbox, saving two thread hops. To keep
/// RFC 6120 §10.1 in-order delivery, a session takes this path only while the router has
/// none of its earlier stanzas still to handle (its [`InFlight`] count is zero): whatever the
/// router delivered for it is then already in the recipient's mailbox, ahead of this one.
/// Everything else (bare JIDs, unbound resources, full mailboxes) goes through the router.
#[derive(Clone, Default)]
pub struct SessionDirectory(Arc<RwLock<HashMap<String, DirectoryEntry>>>);

/// A bound session in the directory: its connection and its inbox.
type DirectoryEntry = (ConnId, Recipient<ToSession>);

impl SessionDirectory {
    /// Try to deliver `stanza` to the bound session `full`; the stanza comes back when there is
    /// no such session or its mailbox is full or closed.
    pub fn try_deliver(&self, full: &str, stanza: Element) -> Result<(), Element> {
        let Ok(map) = self.0.read() else {
            return Err(stanza);
        };
        match map.get(full) {
            Some((_, r)) => r.try_send(ToSession::Stanza(stanza)).map_err(|e| match e {
                SendError::Full(ToSession::Stanza(el))
                | SendError::Closed(ToSession::Stanza(el)) => el,
                _ => unreachable!("we sent a stanza"),
            }),
            None => Err(stanza),
        }
    }

    fn insert(&self, full: &FullJid, conn: ConnId, r: Recipient<ToSession>) {
        if let Ok(mut map) = self.0.write() {
            map.insert(full.to_string(), (conn, r));
        }
    }

    fn remove(&self, full: &str, conn: ConnId) {
        if let Ok(mut map) = self.0.write() {
            if map.get(full).is_some_and(|(c, _)| *c == conn) {
                map.remove(full);
            }
        }
    }
}

/// Marks a session's stanza as handled when dropped, i.e. after everything the handler
/// delivered is queued.
struct Handled(Option<InFlight>);

impl Drop for Handled {
    fn drop(&mut self) {
        if let Some(n) = &self.0 {
            n.fetch_sub(1, Ordering::Release);
        }
    }
}

/// The router actor.
pub struct Router {
    /// Local domains.
    hosts: HashSet<String>,
    sessions: HashMap<BareJid, Vec<Session>>,
    spool: Recipient<Offline>,
    scheduler: Recipient<LogDeliveryError>,
    directory: SessionDirectory,
}

impl Router {
    /// A router for `hosts`, handing offline stanzas to `spool` and failures to `scheduler`.
    pub fn new(
        hosts: impl IntoIterator<Item = String>,
        spool: Recipient<Offline>,
        scheduler: Recipient<LogDeliveryError>,
    ) -> Router {
        Router {
            hosts: hosts.into_iter().collect(),
            sessions: HashMap::new(),
            spool,
            scheduler,
            directory: SessionDirectory::default(),
        }
    }

    /// The handle connections use.
    pub fn handle(&self, addr: &Addr<Router>) -> RouterHandle {
        RouterHandle {
            directory: self.directory.clone(),
            route: addr.clone().recipient(),
            bind: addr.clone().recipient(),
            unbind: addr.clone().recipient(),
            presence: addr.clone().recipient(),
            close_account: addr.clone().recipient(),
        }
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
        // The reply goes back to the sender, a local session (stanzas from remote senders
        // arrive with federation).
        if let Ok(jid) = Jid::new(&from) {
            if let Ok(full) = jid.try_into_full() {
                self.deliver_full(&full, reply);
            }
        }
    }

    /// Deliver to one full JID if bound; an error stanza that cannot be delivered is dropped.
    fn deliver_full(&mut self, to: &FullJid, stanza: Element) {
        let bare = to.to_bare();
        let Some(list) = self.sessions.get(&bare) else {
            return;
        };
        if let Some(s) = list.iter().find(|s| s.resource == to.resource().as_str()) {
            let _ = s.recipient.try_send(ToSession::Stanza(stanza));
        }
    }

    fn route(&mut self, msg: Route) {
        let Route { stanza, to, .. } = msg;
        let Some(kind) = StanzaKind::of(&stanza) else {
            return;
        };
        let domain = to.domain().as_str();
        if !self.hosts.contains(domain) {
            match kind {
                StanzaKind::Presence => {}
                _ => self.bounce(&stanza, Condition::RemoteServerNotFound, "no federation"),
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
        let resource = to.resource().map(|r| r.as_str().to_owned());
        let decision = {
            let views: Vec<SessionView<'_>> = self
                .sessions
                .get(&bare)
                .map(|l| {
                    l.iter()
                        .map(|s| SessionView {
                            resource: &s.resource,
                            priority: s.priority,
                        })
                        .collect()
                })
                .unwrap_or_default();
            decide(kind, &msg_type, resource.as_deref(), &views)
        };
        match decision {
            Decision::Drop => {}
            Decision::Bounce(c, why) => self.bounce(&stanza, c, why),
            Decision::Offline => self.spool.do_send(Offline { stanza, to: bare }),
            Decision::Deliver(resources) => {
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
                        .sessions
                        .get(&bare)
                        .and_then(|l| l.iter().find(|s| &s.resource == r))
                        .map(|s| s.recipient.clone());
                    if let Some(rcpt) = target {
                        if let Err(SendError::Full(ToSession::Stanza(el)))
                        | Err(SendError::Closed(ToSession::Stanza(el))) =
                            rcpt.try_send(ToSession::Stanza(copy))
                        {
                            self.bounce(&el, Condition::ResourceConstraint, "recipient queue full");
                        }
                    }
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

impl Handler<Route> for Router {
    type Result = ();
    fn handle(&mut self, mut msg: Route, _: &mut Context<Self>) {
        let _done = Handled(msg.inflight.take());
        self.route(msg);
    }
}

impl Handler<Bind> for Router {
    type Result = Result<(), BindError>;
    fn handle(&mut self, msg: Bind, _: &mut Context<Self>) -> Self::Result {
        let bare = msg.jid.to_bare();
        let resource = msg.jid.resource().as_str().to_owned();
        let list = self.sessions.entry(bare).or_default();
        if let Some(pos) = list.iter().position(|s| s.resource == resource) {
            let old = list.remove(pos);
            log::info!("{}: {} replaced by {}", old.conn, msg.jid, msg.conn);
            old.recipient.do_send(ToSession::Close(
                StreamError::Conflict,
                "replaced by a new session",
            ));
        } else if list.len() >= MAX_RESOURCES {
            return Err(BindError::TooManyResources);
        }
        self.directory
            .insert(&msg.jid, msg.conn, msg.session.clone());
        list.push(Session {
            resource,
            conn: msg.conn,
            recipient: msg.session,
            priority: None,
        });
        Ok(())
    }
}

impl Handler<Unbind> for Router {
    type Result = ();
    fn handle(&mut self, msg: Unbind, _: &mut Context<Self>) {
        let bare = msg.jid.to_bare();
        self.directory.remove(msg.jid.as_str(), msg.conn);
        if let Some(list) = self.sessions.get_mut(&bare) {
            list.retain(|s| s.conn != msg.conn);
            if list.is_empty() {
                self.sessions.remove(&bare);
            }
        }
    }
}

impl Handler<SetPresence> for Router {
    type Result = ();
    fn handle(&mut self, mut msg: SetPresence, _: &mut Context<Self>) {
        let _done = Handled(msg.inflight.take());
        let bare = msg.jid.to_bare();
        let Some(list) = self.sessions.get_mut(&bare) else {
            return;
        };
        let Some(me) = list.iter_mut().find(|s| s.conn == msg.conn) else {
            return;
        };
        me.priority = msg.priority;
        // RFC 6121 §4.2.2 / §4.5.2: the user's own available resources (including this
        // one) see the presence of each of its resources.
        for s in list
            .iter()
            .filter(|s| s.priority.is_some() || s.conn == msg.conn)
        {
            let mut p = msg.stanza.clone();
            p.set_attr("to", format!("{}/{}", bare, s.resource));
            let _ = s.recipient.try_send(ToSession::Stanza(p));
        }
    }
}

impl Handler<CloseAccount> for Router {
    type Result = ();
    fn handle(&mut self, msg: CloseAccount, _: &mut Context<Self>) {
        if let Some(list) = self.sessions.remove(&msg.jid) {
            for s in list {
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
        self.sessions.values().map(Vec::len).sum()
    }
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
