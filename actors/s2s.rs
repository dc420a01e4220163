//! Outgoing federation: the `S2s` actor keeps one `S2sOut` link actor per (local host,
//! remote domain) pair and hands it the router's [`ToRemote`] stanzas.
//!
//! A link queues stanzas while it connects (`src/s2s/outgoing.rs`), writes them once the
//! stream is authenticated, and bounces what it cannot deliver with
//! `remote-server-not-found` / `remote-server-timeout` (written to the delivery-error log).
//! A link whose stream drops reconnects on the next stanza. An idle link asks the manager to
//! retire it; the manager agrees only if it has sent nothing the link has not seen yet, so
//! no stanza can be lost between the two.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::messages::*;
use super::outbox;
use crate::s2s::outgoing::{self, Link, OutError};
use crate::s2s::{set_ns, S2sContext};
use crate::shared::Shared;
use crate::xml::{Element, ParseError, StreamEvent};
use crate::xmpp::{error_reply, ns, Condition, StanzaError, StanzaKind};

type Key = (String, String);

/// The manager of outgoing links.
pub struct S2s {
    shared: Arc<Shared>,
    cx: Arc<S2sContext>,
    router: Recipient<Route>,
    scheduler: Recipient<LogDeliveryError>,
    /// Links with the number of stanzas handed to each and how they authenticated (when up).
    links: HashMap<Key, (Addr<S2sOut>, u64, Option<String>)>,
    /// Incoming links that authenticated a domain (reported by the `S2sIn` actors).
    incoming: HashMap<u64, Vec<LinkInfo>>,
    /// The server is stopping and the links are closed: no new ones.
    closed: bool,
}

impl S2s {
    pub fn new(
        shared: Arc<Shared>,
        cx: Arc<S2sContext>,
        router: Recipient<Route>,
        scheduler: Recipient<LogDeliveryError>,
    ) -> S2s {
        S2s {
            shared,
            cx,
            router,
            scheduler,
            links: HashMap::new(),
            incoming: HashMap::new(),
            closed: false,
        }
    }
}

impl Actor for S2s {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1 << 20);
    }
}

/// At shutdown the links stay up while sessions close (their `unavailable` presence still
/// reaches contacts on other servers); the shutdown's barrier, sent once the sessions are
/// gone, closes them.
impl Handler<Barrier> for S2s {
    type Result = ();
    fn handle(&mut self, _: Barrier, _: &mut Context<Self>) {
        if !*self.shared.shutdown_signal().borrow() {
            return;
        }
        self.closed = true;
        for (_, (link, _, _)) in self.links.drain() {
            link.do_send(CloseLink("server shutting down"));
        }
    }
}

impl Handler<ToRemote> for S2s {
    type Result = ();
    fn handle(&mut self, msg: ToRemote, ctx: &mut Context<Self>) {
        if self.closed {
            return;
        }
        let key = (
            msg.from.domain().as_str().to_owned(),
            msg.to.domain().as_str().to_owned(),
        );
        let entry = match self.links.get_mut(&key) {
            Some(e) if e.0.connected() => e,
            _ => {
                let link = S2sOut {
                    local: key.0.clone(),
                    remote: key.1.clone(),
                    shared: self.shared.clone(),
                    cx: self.cx.clone(),
                    router: self.router.clone(),
                    scheduler: self.scheduler.clone(),
                    manager: ctx.address(),
                    state: OutState::Down,
                    seen: 0,
                    last_activity: Instant::now(),
                }
                .start();
                self.links.insert(key.clone(), (link, 0, None));
                self.links.get_mut(&key).expect("just inserted")
            }
        };
        entry.1 += 1;
        entry.0.do_send(Send(msg.stanza));
    }
}

impl Handler<Retire> for S2s {
    type Result = ();
    fn handle(&mut self, msg: Retire, _: &mut Context<Self>) {
        let key = (msg.local, msg.remote);
        if self
            .links
            .get(&key)
            .is_some_and(|(_, sent, _)| *sent == msg.seen)
        {
            if let Some((link, _, _)) = self.links.remove(&key) {
                link.do_send(CloseLink("idle"));
            }
        }
    }
}

impl Handler<LinkState> for S2s {
    type Result = ();
    fn handle(&mut self, msg: LinkState, _: &mut Context<Self>) {
        if let Some(e) = self.links.get_mut(&(msg.local, msg.remote)) {
            e.2 = msg.method;
        }
    }
}

impl Handler<IncomingLink> for S2s {
    type Result = ();
    fn handle(&mut self, msg: IncomingLink, _: &mut Context<Self>) {
        if msg.links.is_empty() {
            self.incoming.remove(&msg.id);
        } else {
            self.incoming.insert(msg.id, msg.links);
        }
    }
}

impl Handler<S2sLinks> for S2s {
    type Result = MessageResult<S2sLinks>;
    fn handle(&mut self, _: S2sLinks, _: &mut Context<Self>) -> Self::Result {
        let mut out = Vec::new();
        for ((local, remote), (_, _, method)) in &self.links {
            if let Some(method) = method {
                out.push(LinkInfo {
                    local: local.clone(),
                    remote: remote.clone(),
                    outgoing: true,
                    method: method.clone(),
                });
            }
        }
        out.extend(self.incoming.values().flatten().cloned());
        out.sort_by(|a, b| {
            (&a.remote, &a.local, a.outgoing).cmp(&(&b.remote, &b.local, b.outgoing))
        });
        MessageResult(out)
    }
}

/// S2s -> S2sOut: write this stanza (or queue it while connecting).
#[derive(Message)]
#[rtype(result = "()")]
struct Send(Element);

/// S2sOut -> S2s: the link has been idle; retire it unless something is on its way.
#[derive(Message)]
#[rtype(result = "()")]
struct Retire {
    local: String,
    remote: String,
    /// Stanzas the link has received so far.
    seen: u64,
}

/// S2sOut -> S2s: the link went up (with its method) or down.
#[derive(Message)]
#[rtype(result = "()")]
struct LinkState {
    local: String,
    remote: String,
    method: Option<String>,
}

/// S2s -> S2sOut: close the stream and stop.
#[derive(Message)]
#[rtype(result = "()")]
struct CloseLink(&'static str);

enum OutState {
    /// No stream; the next stanza opens one.
    Down,
    /// Connecting; stanzas wait here.
    Connecting(Vec<Element>),
    /// Authenticated and writing.
    Up {
        tx: outbox::Sender,
        queued: Arc<AtomicUsize>,
        abort: Arc<tokio::sync::Notify>,
    },
}

/// One outgoing link from a local host to a remote domain.
pub struct S2sOut {
    local: String,
    remote: String,
    shared: Arc<Shared>,
    cx: Arc<S2sContext>,
    router: Recipient<Route>,
    scheduler: Recipient<LogDeliveryError>,
    manager: Addr<S2s>,
    state: OutState,
    /// Stanzas received from the manager.
    seen: u64,
    last_activity: Instant,
}

impl S2sOut {
    fn connect(&mut self, ctx: &mut Context<Self>) {
        let (shared, cx) = (self.shared.clone(), self.cx.clone());
        let (local, remote) = (self.local.clone(), self.remote.clone());
        let fut = async move { outgoing::connect(&shared, &cx, &local, &remote).await };
        ctx.spawn(
            fut.into_actor(self)
                .map(|res, act, ctx| act.connected(res, ctx)),
        );
    }

    fn connected(&mut self, res: Result<Link, OutError>, ctx: &mut Context<Self>) {
        let queue = match std::mem::replace(&mut self.state, OutState::Down) {
            OutState::Connecting(q) => q,
            _ => Vec::new(),
        };
        self.last_activity = Instant::now();
        match res {
            Ok(link) => {
                log::info!(
                    "s2s: link up {} -> {} ({})",
                    self.local,
                    self.remote,
                    link.method
                );
                let (tx, queued, abort) = outbox::spawn_writer(link.writer);
                ctx.add_stream(link.reader.into_events());
                self.state = OutState::Up { tx, queued, abort };
                self.report(Some(link.method.to_string()));
                for st in queue {
                    self.write(st);
                }
            }
            Err(e) => {
                log::info!("s2s: cannot reach {} from {}: {e}", self.remote, self.local);
                let cond = match e {
                    OutError::Timeout => Condition::RemoteServerTimeout,
                    OutError::NotFound(_) => Condition::RemoteServerNotFound,
                };
                let why = e.to_string();
                for st in queue {
                    self.bounce(st, cond, &why);
                }
            }
        }
    }

    fn report(&self, method: Option<String>) {
        self.manager.do_send(LinkState {
            local: self.local.clone(),
            remote: self.remote.clone(),
            method,
        });
    }

    fn write(&mut self, mut stanza: Element) {
        let OutState::Up {
            tx, queued, abort, ..
        } = &self.state
        else {
            return;
        };
        set_ns(&mut stanza, ns::CLIENT, ns::SERVER);
        let xml = stanza.to_xml(ns::SERVER);
        let n = xml.len();
        let limit = self.shared.config.limits.max_outbound_queue_bytes;
        if queued.load(Ordering::Relaxed) + n > limit || tx.send(xml).is_err() {
            // The peer does not read (or the writer is gone): give up this stream; what was
            // queued for it is lost like any stanza in flight on a dropped link.
            abort.notify_one();
            log::info!(
                "s2s: link down {} -> {} (peer not reading)",
                self.local,
                self.remote
            );
            self.state = OutState::Down;
            self.report(None);
            set_ns(&mut stanza, ns::SERVER, ns::CLIENT);
            self.bounce(stanza, Condition::RemoteServerTimeout, "peer not reading");
            return;
        }
        queued.fetch_add(n, Ordering::Relaxed);
    }

    /// Tell the sender (messages and IQs only: presence to an unreachable server is
    /// dropped, as every server does) and log the failure.
    fn bounce(&self, stanza: Element, cond: Condition, why: &str) {
        let Some(kind) = StanzaKind::of(&stanza) else {
            return;
        };
        if kind == StanzaKind::Presence {
            return;
        }
        let from = stanza.get_attr("from").unwrap_or_default().to_owned();
        let to = stanza.get_attr("to").unwrap_or_default().to_owned();
        let Some(reply) = error_reply(&stanza, &StanzaError::new(cond)) else {
            return;
        };
        self.scheduler.do_send(LogDeliveryError {
            from: from.clone(),
            to: to.clone(),
            reason: format!("{cond}: {why}"),
        });
        if let (Ok(f), Ok(t)) = (crate::xmpp::jid(&to), crate::xmpp::jid(&from)) {
            self.router.do_send(Route {
                stanza: reply,
                from: f,
                to: t,
                inflight: None,
            });
        }
    }

    fn close(&mut self, why: &str) {
        if let OutState::Up { tx, .. } = &self.state {
            let _ = tx.send("</stream:stream>".to_owned());
            log::info!("s2s: link down {} -> {} ({why})", self.local, self.remote);
        }
        if let OutState::Connecting(q) = std::mem::replace(&mut self.state, OutState::Down) {
            for st in q {
                self.bounce(st, Condition::RemoteServerNotFound, why);
            }
        }
    }
}

impl Actor for S2sOut {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1 << 16);
        let idle = Duration::from_secs(self.shared.config.s2s.idle_timeout_secs);
        let tick = (idle / 4).clamp(Duration::from_millis(200), Duration::from_secs(30));
        ctx.run_interval(tick, move |act, _| {
            if !matches!(act.state, OutState::Connecting(_)) && act.last_activity.elapsed() >= idle
            {
                act.manager.do_send(Retire {
                    local: act.local.clone(),
                    remote: act.remote.clone(),
                    seen: act.seen,
                });
            }
        });
    }
}

impl Handler<Send> for S2sOut {
    type Result = ();
    fn handle(&mut self, msg: Send, ctx: &mut Context<Self>) {
        self.seen += 1;
        self.last_activity = Instant::now();
        match &mut self.state {
            OutState::Up { .. } => self.write(msg.0),
            OutState::Connecting(q) => {
                if q.len() >= self.shared.config.s2s.max_queued_stanzas {
                    self.bounce(
                        msg.0,
                        Condition::ResourceConstraint,
                        "too many stanzas queued",
                    );
                } else {
                    q.push(msg.0);
                }
            }
            OutState::Down => {
                self.state = OutState::Connecting(vec![msg.0]);
                self.connect(ctx);
            }
        }
    }
}

impl Handler<CloseLink> for S2sOut {
    type Result = ();
    fn handle(&mut self, msg: CloseLink, ctx: &mut Context<Self>) {
        self.close(msg.0);
        ctx.stop();
    }
}

impl StreamHandler<Result<StreamEvent, ParseError>> for S2sOut {
    fn handle(&mut self, item: Result<StreamEvent, ParseError>, _: &mut Context<Self>) {
        // Nothing is expected on our outgoing stream but whitespace and the stream's end;
        // anything else is ignored (we do not offer bidirectional streams).
        if let Ok(StreamEvent::Element(_)) = item {
            self.last_activity = Instant::now();
            return;
        }
        if let OutState::Up { tx, .. } = &self.state {
            let _ = tx.send("</stream:stream>".to_owned());
            log::info!(
                "s2s: link down {} -> {} (closed by peer)",
                self.local,
                self.remote
            );
            self.state = OutState::Down;
            self.report(None);
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // The stream ended: stay, and reconnect when the next stanza comes.
    }
}
