//! One actor per connected external component (XEP-0114), after `src/component.rs` ran the
//! handshake: the component's domain is a service domain of the destination table, and while
//! the stream lives this actor is its service ([`SetService`]), so local users, remote users
//! (over s2s) and other components reach it through the router like any service. When the
//! stream ends the router hears that the domain is down, and stanzas for it bounce with
//! `service-unavailable` (into the delivery-error log) until the component connects again.
//!
//! The component may send from its domain or any JID in it and from no other (`invalid-from`,
//! as Prosody and ejabberd do); a missing `from` is its domain, a missing `to` a `bad-request`.
//! Its stanzas obey the sessions' limits (`limits.max_stanza_bytes`,
//! `limits.max_outbound_queue_bytes` for what it does not read). A component silent for a
//! minute gets an XMPP ping; one that stays silent another minute is disconnected, so a dead
//! gateway frees its domain for its reconnect without the operator.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::Notify;

use super::directory::RouterHandle;
use super::host_iq::Inboxes;
use super::messages::*;
use super::outbox;
use crate::component::{Accepted, Claim, NS_ACCEPT};
use crate::s2s::set_ns;
use crate::shared::{ConnId, ConnSlot, Shared};
use crate::xml::Element;
use crate::xmpp::{error_reply, ns, Condition, StanzaError, StanzaKind, StreamError};

/// Silence after which the component is pinged.
const PING_AFTER: Duration = Duration::from_secs(60);
/// Silence after the ping after which it is considered gone.
const PING_TIMEOUT: Duration = Duration::from_secs(60);

/// The component stream actor.
pub struct Component {
    /// `comp#N`, for the log.
    tag: String,
    shared: Arc<Shared>,
    router: Recipient<Route>,
    set_service: Recipient<SetService>,
    /// Where the server's own answers and PEP requests go.
    inboxes: Inboxes,
    /// The domain, held until the actor is gone.
    claim: Claim,
    /// The host it belongs to (its pings come from there).
    parent: String,
    out: Option<outbox::Sender>,
    queued: Arc<AtomicUsize>,
    abort: Arc<Notify>,
    last_activity: Instant,
    pinged: bool,
    end_reason: &'static str,
    _slot: ConnSlot,
}

impl Component {
    /// Start the actor for an authenticated stream, on the current arbiter.
    pub fn start(
        id: ConnId,
        shared: Arc<Shared>,
        handle: &RouterHandle,
        accepted: Accepted,
        slot: ConnSlot,
    ) -> Addr<Component> {
        let Accepted {
            reader,
            writer,
            claim,
        } = accepted;
        let parent = shared
            .config
            .services
            .get(claim.domain())
            .cloned()
            .unwrap_or_else(|| shared.config.default_host().to_owned());
        let (tx, queued, abort) = outbox::spawn_writer(writer);
        Component::create(move |ctx| {
            ctx.add_stream(reader.into_events());
            Component {
                tag: format!("comp#{}", id.0),
                shared,
                router: handle.route.clone(),
                set_service: handle.set_service.clone(),
                inboxes: Inboxes::of(handle),
                claim,
                parent,
                out: Some(tx),
                queued,
                abort,
                last_activity: Instant::now(),
                pinged: false,
                end_reason: "closed by the component",
                _slot: slot,
            }
        })
    }

    fn domain(&self) -> &str {
        self.claim.domain()
    }

    /// Queue raw XML; a component that does not read is disconnected.
    fn send_raw(&mut self, s: String, ctx: &mut Context<Self>) {
        let Some(out) = &self.out else { return };
        let len = s.len();
        let total = self.queued.fetch_add(len, Ordering::Relaxed) + len;
        let _ = out.send(s);
        if total > self.shared.config.limits.max_outbound_queue_bytes {
            self.abort.notify_one();
            self.close(StreamError::PolicyViolation, "component does not read", ctx);
        }
    }

    fn close(&mut self, err: StreamError, why: &'static str, ctx: &mut Context<Self>) {
        if let Some(out) = &self.out {
            let _ = out.send(err.to_xml(None));
        }
        self.end_reason = why;
        log::info!("{}: stream error {err} ({why})", self.tag);
        ctx.stop();
    }

    /// A stanza answered with an error back to the component.
    fn refuse(&mut self, el: &Element, cond: Condition, ctx: &mut Context<Self>) {
        if let Some(r) = error_reply(el, &StanzaError::new(cond)) {
            self.send_raw(r.to_xml(ns::CLIENT), ctx);
        }
    }

    fn element(&mut self, mut el: Element, ctx: &mut Context<Self>) {
        self.last_activity = Instant::now();
        self.pinged = false;
        // Stanzas in the stream's namespace (or jabber:client, which some components use).
        set_ns(&mut el, NS_ACCEPT, ns::CLIENT);
        let Some(kind) = StanzaKind::of(&el).filter(|_| el.ns == ns::CLIENT) else {
            return self.close(StreamError::UnsupportedStanzaType, "not a stanza", ctx);
        };
        let from = match el.get_attr("from").map(crate::xmpp::jid) {
            None => crate::xmpp::jid(self.domain()).ok(),
            Some(Ok(j)) if j.domain().as_str() == self.domain() => Some(j),
            Some(_) => None,
        };
        let Some(from) = from else {
            return self.close(StreamError::InvalidFrom, "from outside its domain", ctx);
        };
        el.set_attr("from", from.as_str());
        let to = match el.get_attr("to").map(crate::xmpp::jid) {
            Some(Ok(j)) => j,
            Some(Err(_)) => {
                el.remove_attr("to");
                return self.refuse(&el, Condition::JidMalformed, ctx);
            }
            None => return self.refuse(&el, Condition::BadRequest, ctx),
        };
        el.set_attr("to", to.as_str());
        let answered = super::host_iq::handle(
            &self.shared,
            &self.inboxes,
            &self.router,
            el,
            kind,
            (&from, &to),
        );
        if let Some(stanza) = answered {
            self.router.do_send(Route {
                stanza,
                from,
                to,
                inflight: None,
            });
        }
    }

    /// Ping a silent component; disconnect one that stayed silent after the ping.
    fn keepalive(&mut self, ctx: &mut Context<Self>) {
        let idle = self.last_activity.elapsed();
        if self.pinged && idle >= PING_AFTER + PING_TIMEOUT {
            return self.close(StreamError::ConnectionTimeout, "no answer to ping", ctx);
        }
        if !self.pinged && idle >= PING_AFTER {
            self.pinged = true;
            let ping = format!(
                "<iq type='get' id='kleiber-ping' from='{}' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
                crate::xml::escape(&self.parent),
                crate::xml::escape(self.domain())
            );
            self.send_raw(ping, ctx);
        }
    }
}

impl Actor for Component {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        log::info!("{}: component connected", self.tag);
        log::debug!("{}: component {} up", self.tag, self.domain());
        // The component hears `<handshake/>` only once the router routes to it: a stanza it
        // is sent right after the handshake reaches it instead of bouncing.
        let up = self.set_service.send(SetService {
            domain: self.domain().to_owned(),
            service: Some(ctx.address().recipient()),
        });
        ctx.wait(up.into_actor(self).map(|_, act, ctx| {
            act.send_raw("<handshake/>".to_owned(), ctx);
        }));
        ctx.run_interval(Duration::from_secs(10), |act, ctx| act.keepalive(ctx));
        super::stream::close_on_shutdown(&self.shared, self, ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // Down before the claim is dropped: a reconnect's "up" reaches the router after this.
        self.set_service.do_send(SetService {
            domain: self.domain().to_owned(),
            service: None,
        });
        log::info!("{}: component disconnected ({})", self.tag, self.end_reason);
        if let Some(out) = self.out.take() {
            let _ = out.send("</stream:stream>".to_owned());
        }
    }
}

impl Handler<ToService> for Component {
    type Result = ();
    fn handle(&mut self, msg: ToService, ctx: &mut Context<Self>) {
        // jabber:client stanzas serialise without a namespace: they take the stream's.
        self.send_raw(msg.stanza.to_xml(ns::CLIENT), ctx);
    }
}

super::stream::stream_handler!(Component);

impl super::stream::StreamActor for Component {
    fn on_element(&mut self, el: Element, ctx: &mut Context<Self>) {
        self.element(el, ctx);
    }

    fn close(&mut self, err: StreamError, why: &'static str, ctx: &mut Context<Self>) {
        Self::close(self, err, why, ctx);
    }

    fn on_lost(&mut self, ctx: &mut Context<Self>) {
        self.end_reason = "connection lost";
        self.out = None;
        ctx.stop();
    }
}
