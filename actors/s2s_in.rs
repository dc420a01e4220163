//! One actor per incoming server-to-server stream, after `src/s2s/incoming.rs` negotiated
//! TLS (and maybe SASL EXTERNAL): dialback for the domains the peer claims (XEP-0220, with
//! the XEP-0344 shortcut when its certificate is valid for the domain), answers to dialback
//! verification requests, and the peer's stanzas.
//!
//! A stanza must come `from` a domain this stream authenticated (else `invalid-from`; before
//! any, `not-authorized`) and go `to` a local host (else `host-unknown`). IQs for the server
//! or for an account's stored data are answered here; everything else goes to the router
//! exactly like a local user's stanza. Answers to the peer go out through our own outgoing
//! link ([`ToRemote`]), as server-to-server streams carry stanzas one way only.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::directory::RouterHandle;
use super::messages::*;
use super::outbox;
use super::s2s::S2s;
use crate::s2s::incoming::Accepted;
use crate::s2s::pki::PeerCert;
use crate::s2s::{dialback, outgoing, set_ns, AuthMethod, S2sContext, DIALBACK};
use crate::shared::{ConnId, ConnSlot, Shared};
use crate::xml::{escape, Element};
use crate::xmpp::{error_reply, ns, Condition, StanzaError, StanzaKind, StreamError};

/// Dialback verifications one stream may have running at once.
const MAX_PENDING_VERIFY: usize = 8;

/// The incoming link actor.
pub struct S2sIn {
    id: ConnId,
    /// `s2s#N`, for the log.
    tag: String,
    shared: Arc<Shared>,
    cx: Arc<S2sContext>,
    router: Recipient<Route>,
    /// Where the server's own answers and PEP requests go.
    inboxes: super::host_iq::Inboxes,
    manager: Addr<S2s>,
    local: String,
    stream_id: String,
    peer_cert: Option<PeerCert>,
    /// Domains the peer proved it holds on this stream, with the local host each is for.
    authenticated: HashMap<String, AuthMethod>,
    pending_verify: usize,
    out: Option<outbox::Sender>,
    last_activity: Instant,
    end_reason: &'static str,
    _slot: ConnSlot,
}

impl S2sIn {
    /// Start the actor for a negotiated stream, on the current arbiter.
    pub fn start(
        id: ConnId,
        shared: Arc<Shared>,
        cx: Arc<S2sContext>,
        handle: RouterHandle,
        manager: Addr<S2s>,
        accepted: Accepted,
        slot: ConnSlot,
    ) -> Addr<S2sIn> {
        let Accepted {
            reader,
            writer,
            stream_id,
            local,
            authenticated,
            peer_cert,
            first,
        } = accepted;
        let (tx, _, _) = outbox::spawn_writer(writer);
        let inboxes = super::host_iq::Inboxes::of(&handle);
        S2sIn::create(move |ctx| {
            ctx.add_stream(reader.into_events());
            let mut act = S2sIn {
                id,
                tag: format!("s2s#{}", id.0),
                shared,
                cx,
                router: handle.route,
                inboxes,
                manager,
                local,
                stream_id,
                peer_cert,
                authenticated: HashMap::new(),
                pending_verify: 0,
                out: Some(tx),
                last_activity: Instant::now(),
                end_reason: "closed by peer",
                _slot: slot,
            };
            if let Some((domain, method)) = authenticated {
                act.link_up(domain, method);
            }
            if let Some(el) = first {
                act.element(el, ctx);
            }
            act
        })
    }

    fn send_raw(&mut self, s: String) {
        if let Some(out) = &self.out {
            let _ = out.send(s);
        }
    }

    fn close(&mut self, err: StreamError, why: &'static str, ctx: &mut Context<Self>) {
        self.send_raw(err.to_xml(None));
        self.end_reason = why;
        log::info!("{}: stream error {err} ({why})", self.tag);
        ctx.stop();
    }

    fn link_up(&mut self, domain: String, method: AuthMethod) {
        log::info!(
            "{}: link up {} <- {} ({method})",
            self.tag,
            self.local,
            domain
        );
        self.authenticated.insert(domain, method);
        self.report();
    }

    fn report(&self) {
        let links = self
            .authenticated
            .iter()
            .map(|(d, m)| LinkInfo {
                local: self.local.clone(),
                remote: d.clone(),
                outgoing: false,
                method: m.to_string(),
            })
            .collect();
        self.manager.do_send(IncomingLink {
            id: self.id.0,
            links,
        });
    }

    fn cert_valid_for(&self, domain: &str) -> bool {
        self.peer_cert
            .as_ref()
            .is_some_and(|c| self.cx.pki.valid_for(c, domain))
    }

    fn element(&mut self, el: Element, ctx: &mut Context<Self>) {
        self.last_activity = Instant::now();
        if el.ns == DIALBACK {
            match el.name.as_str() {
                "result" => self.db_result(el, ctx),
                "verify" => self.db_verify(el),
                _ => self.close(
                    StreamError::UnsupportedStanzaType,
                    "unknown dialback element",
                    ctx,
                ),
            }
            return;
        }
        let Some(kind) = StanzaKind::of(&el).filter(|_| el.ns == ns::SERVER) else {
            return self.close(StreamError::UnsupportedStanzaType, "not a stanza", ctx);
        };
        if self.authenticated.is_empty() {
            return self.close(
                StreamError::NotAuthorized,
                "stanza before authentication",
                ctx,
            );
        }
        let from = match el.get_attr("from").map(crate::xmpp::jid) {
            Some(Ok(j)) if self.shared.is_local(j.domain().as_str()) => {
                return self.close(StreamError::InvalidFrom, "from a local domain", ctx)
            }
            Some(Ok(j)) if self.authenticated.contains_key(j.domain().as_str()) => j,
            Some(Ok(_)) => {
                return self.close(StreamError::InvalidFrom, "unauthenticated from", ctx)
            }
            Some(Err(_)) => return self.close(StreamError::InvalidFrom, "malformed from", ctx),
            None => return self.close(StreamError::ImproperAddressing, "no from", ctx),
        };
        let mut el = el;
        set_ns(&mut el, ns::SERVER, ns::CLIENT);
        el.set_attr("from", from.as_str());
        let to = match el.get_attr("to").map(crate::xmpp::jid) {
            Some(Ok(j)) => j,
            Some(Err(_)) => {
                el.remove_attr("to");
                if let Some(r) = error_reply(&el, &StanzaError::new(Condition::JidMalformed)) {
                    self.to_remote(r);
                }
                return;
            }
            None => return self.close(StreamError::ImproperAddressing, "no to", ctx),
        };
        if !self.shared.is_local(to.domain().as_str()) {
            return self.close(StreamError::HostUnknown, "to is not served here", ctx);
        }
        el.set_attr("to", to.as_str());
        // The server's own answers; a service domain gets everything addressed into it,
        // through the router.
        let Some(el) = super::host_iq::handle(
            &self.shared,
            &self.inboxes,
            &self.router,
            el,
            kind,
            (&from, &to),
        ) else {
            return;
        };
        self.router.do_send(Route {
            stanza: el,
            from,
            to,
            inflight: None,
        });
    }

    /// Send one of our answers to the peer's domain (through our outgoing link).
    fn to_remote(&self, stanza: Element) {
        if let Some(r) = Route::of(stanza) {
            self.router.do_send(r);
        }
    }

    /// XEP-0220 §2.1.2: the peer claims the domain `from` for stanzas to our host `to`.
    fn db_result(&mut self, el: Element, ctx: &mut Context<Self>) {
        let (Some(from), Some(to)) = (el.get_attr("from"), el.get_attr("to")) else {
            return self.close(
                StreamError::ImproperAddressing,
                "dialback without from/to",
                ctx,
            );
        };
        let (from, to) = (from.to_ascii_lowercase(), to.to_ascii_lowercase());
        let answer = |kind: &str, extra: &str| result_answer(&to, &from, kind, extra);
        if !self.shared.is_local(&to)
            || crate::xmpp::BareJid::new(&from).is_err()
            || crate::s2s::resolve::is_ip_literal(&from)
        {
            let e = format!(
                "<error type='cancel'><item-not-found xmlns='{}'/></error>",
                ns::STANZAS
            );
            return self.send_raw(answer("error", &e));
        }
        if self.shared.is_local(&from) {
            // Only this server speaks for its own domains (issue 14.1): a certificate valid
            // for one of them proves nothing about its users.
            return self.close(StreamError::InvalidFrom, "dialback for a local domain", ctx);
        }
        if self.authenticated.contains_key(&from) {
            return self.send_raw(answer("valid", ""));
        }
        if self.cert_valid_for(&from) {
            let valid = answer("valid", "");
            self.link_up(from, AuthMethod::DialbackCertificate);
            return self.send_raw(valid);
        }
        if self.shared.config.s2s.require_valid_certificates {
            log::info!(
                "{}: dialback for {from} refused: its certificate does not validate",
                self.tag
            );
            return self.send_raw(answer("invalid", ""));
        }
        if self.pending_verify >= MAX_PENDING_VERIFY {
            return self.close(
                StreamError::PolicyViolation,
                "too many dialback requests",
                ctx,
            );
        }
        self.pending_verify += 1;
        let key = el.text_content().trim().to_owned();
        let (shared, cx, id) = (self.shared.clone(), self.cx.clone(), self.stream_id.clone());
        let (receiving, originating) = (to.clone(), from.clone());
        let fut = async move {
            outgoing::verify(&shared, &cx, &receiving, &originating, &id, &key).await
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, _| {
            let answer = |kind: &str, extra: &str| result_answer(&to, &from, kind, extra);
            act.pending_verify -= 1;
            match res {
                Ok(true) => {
                    act.link_up(from.clone(), AuthMethod::Dialback);
                    act.send_raw(answer("valid", ""));
                }
                Ok(false) => {
                    log::info!("{}: dialback key for {from} is not valid", act.tag);
                    act.send_raw(answer("invalid", ""));
                }
                Err(e) => {
                    log::info!("{}: cannot verify dialback for {from}: {e}", act.tag);
                    let cond = match e {
                        outgoing::OutError::Timeout => "remote-server-timeout",
                        outgoing::OutError::NotFound(_) => "remote-server-not-found",
                    };
                    let e = format!(
                        "<error type='cancel'><{cond} xmlns='{}'/></error>",
                        ns::STANZAS
                    );
                    act.send_raw(answer("error", &e));
                }
            }
        }));
    }

    /// XEP-0220 §2.3: a receiving server asks whether a key we (`to`) sent it is ours.
    fn db_verify(&mut self, el: Element) {
        let (Some(from), Some(to), Some(id)) =
            (el.get_attr("from"), el.get_attr("to"), el.get_attr("id"))
        else {
            return;
        };
        let (from, to) = (from.to_ascii_lowercase(), to.to_ascii_lowercase());
        let head = format!(
            "<db:verify from='{}' to='{}' id='{}'",
            escape(&to),
            escape(&from),
            escape(id)
        );
        if !self.shared.is_local(&to) {
            let e = format!(
                "{head} type='error'><error type='cancel'><item-not-found xmlns='{}'/></error></db:verify>",
                ns::STANZAS
            );
            return self.send_raw(e);
        }
        let ok = dialback::check(&self.cx.secret, &from, &to, id, &el.text_content());
        let kind = if ok { "valid" } else { "invalid" };
        self.send_raw(format!("{head} type='{kind}'/>"));
    }
}

/// Our `<db:result/>` answer from our host `local` to the domain `peer`.
fn result_answer(local: &str, peer: &str, kind: &str, extra: &str) -> String {
    format!(
        "<db:result from='{}' to='{}' type='{kind}'>{extra}</db:result>",
        escape(local),
        escape(peer)
    )
}

impl Actor for S2sIn {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        let idle = Duration::from_secs(self.shared.config.s2s.idle_timeout_secs);
        let tick = (idle / 4).clamp(Duration::from_millis(200), Duration::from_secs(30));
        ctx.run_interval(tick, move |act, ctx| {
            if act.last_activity.elapsed() >= idle && act.pending_verify == 0 {
                act.end_reason = "idle";
                act.send_raw("</stream:stream>".to_owned());
                ctx.stop();
            }
        });
        super::stream::close_on_shutdown(&self.shared, self, ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        for d in self.authenticated.keys() {
            log::info!(
                "{}: link down {} <- {} ({})",
                self.tag,
                self.local,
                d,
                self.end_reason
            );
        }
        self.manager.do_send(IncomingLink {
            id: self.id.0,
            links: Vec::new(),
        });
        if let Some(out) = self.out.take() {
            let _ = out.send("</stream:stream>".to_owned());
        }
    }
}

super::stream::stream_handler!(S2sIn);

impl super::stream::StreamActor for S2sIn {
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
