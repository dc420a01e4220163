//! XEP-0198 Stream Management: acks both ways, and resumption.
//!
//! `h` counts stanzas: the server acks an incoming stanza once it has been handled: answered,
//! or routed (the answer to `<r/>` waits for a round trip through the router when stanzas of
//! the session are still with it), so what is acknowledged has been delivered to the
//! recipient's session, handed to the offline spool (on disk within
//! `storage.flush_window_ms`) or bounced.
//!
//! With `<enable resume='true'/>` a session whose connection drops without a closing
//! `</stream:stream>` hibernates: the actor stays bound (the user stays available to
//! contacts, as in Prosody), keeps every stanza for it in its unacknowledged queue, and waits
//! `limits.sm_resume_timeout_secs` for the client to come back with `<resume/>` on a new
//! authenticated stream (`actors/mod.rs` hands the new transport to this actor). The client
//! then gets everything it had not acknowledged again, in order. If it does not come back,
//! the session ends, and the messages it had not acknowledged are routed again (to another
//! resource, or to the offline spool): nothing is lost.

use std::collections::VecDeque;
use std::time::Duration;

use actix::prelude::*;

use super::super::outbox;
use super::Connection;
use crate::actors::messages::{Archived, Barrier, Resume, Route};
use crate::login::LoggedIn;
use crate::shared::ConnSlot;
use crate::xml::Element;
use crate::xmpp::{ns, random_id, StreamError};

pub const NS: &str = "urn:xmpp:sm:3";
/// Ask the client for an ack after this many unacknowledged stanzas.
const REQUEST_EVERY: usize = 10;
/// A client that leaves this many stanzas unacknowledged is disconnected (its messages are
/// routed again); it is not reading or not acking.
const MAX_UNACKED: usize = 5_000;

/// Per-session stream-management state.
#[derive(Default)]
pub struct State {
    /// Stanzas received from the client and handled.
    pub handled: u32,
    /// Stanzas sent to the client.
    sent: u32,
    /// Sent and not yet acknowledged, oldest first. Messages are always kept (to route again
    /// if the session ends); other stanzas only when the session can be resumed (to send
    /// again), else `None` (only counted).
    unacked: VecDeque<Option<Element>>,
    /// The resumption id, when the client asked for resumption.
    resume_id: Option<String>,
    /// The connection is gone and the session waits for `<resume/>`; the number tells timers
    /// of an earlier hibernation that they are stale.
    pub hibernating: Option<u64>,
    hibernations: u64,
    /// A stanza went to the router or the roster store since the last `<r/>`: the next ack
    /// waits until they, and the spool, handled it and it is on disk.
    unsettled: bool,
    /// Acks waiting for that.
    settling: u32,
    /// The highest `h` acknowledged so far (acks never go back).
    acked: u32,
}

/// `<failed/>` for a `<resume/>` that cannot be honoured.
pub fn resume_failed() -> String {
    format!("<failed xmlns='{NS}'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>")
}

impl Connection {
    /// A stanza of this session went off to the router or the roster store.
    pub(super) fn mark_unsettled(&mut self) {
        if let Some(sm) = &mut self.sm {
            sm.unsettled = true;
        }
    }

    /// Resolves (`true`) once everything this session handed over before is handled and on
    /// disk: a round trip through the roster store (its subscription changes go on to the
    /// router), the router (which hands over to the roster store for local contacts and to
    /// the spool for offline users), the roster store again, the spool, then a flush (group
    /// commit). Only then may `<a h/>` say the server has the stanzas (XEP-0198 §4: an ack
    /// means the server has taken responsibility; a crash must not lose them).
    fn settled(&self) -> impl std::future::Future<Output = bool> + 'static {
        let roster = self.router.roster.barrier.clone();
        let router = self.router.barrier.clone();
        let spool = self.router.spool_barrier.clone();
        let archive = self.router.archive.as_ref().map(|a| a.barrier.clone());
        let store = self.shared.store.clone();
        async move {
            // With the archive on, messages go router -> archive -> router.
            let archived = match archive {
                Some(a) => a.send(Barrier).await.is_ok() && router.send(Barrier).await.is_ok(),
                None => true,
            };
            roster.send(Barrier).await.is_ok()
                && router.send(Barrier).await.is_ok()
                && archived
                && roster.send(Barrier).await.is_ok()
                && spool.send(Barrier).await.is_ok()
                && store.durable().await.is_ok()
        }
    }

    /// `<a h/>`, never lower than an earlier one (a later ack may settle first).
    fn send_ack(&mut self, h: u32, ctx: &mut Context<Self>) {
        let Some(sm) = &mut self.sm else { return };
        if (h.wrapping_sub(sm.acked) as i32) > 0 {
            sm.acked = h;
        }
        let h = sm.acked;
        self.send_raw(format!("<a xmlns='{NS}' h='{h}'/>"), ctx);
    }
    /// An SM nonza from the client; `true` if it was one.
    pub(super) fn sm_nonza(&mut self, el: &Element, ctx: &mut Context<Self>) -> bool {
        if el.ns != NS {
            return false;
        }
        match el.name.as_str() {
            "enable" => {
                if self.jid.is_none() || self.sm.is_some() {
                    self.send_raw(format!("<failed xmlns='{NS}'><unexpected-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>"), ctx);
                } else {
                    let timeout = self.shared.config.limits.sm_resume_timeout_secs;
                    let wants = matches!(el.get_attr("resume"), Some("true" | "1"));
                    let mut state = State::default();
                    if wants && timeout > 0 {
                        let id = random_id(24);
                        self.router.resumable.insert(
                            id.clone(),
                            self.bare.clone(),
                            ctx.address().recipient(),
                        );
                        self.send_raw(
                            format!(
                                "<enabled xmlns='{NS}' id='{id}' resume='true' max='{timeout}'/>"
                            ),
                            ctx,
                        );
                        state.resume_id = Some(id);
                    } else {
                        self.send_raw(format!("<enabled xmlns='{NS}'/>"), ctx);
                    }
                    self.sm = Some(state);
                }
            }
            "r" => {
                let Some(sm) = &mut self.sm else {
                    return true;
                };
                let h = sm.handled;
                if !sm.unsettled && sm.settling == 0 {
                    self.send_ack(h, ctx);
                } else {
                    sm.unsettled = false;
                    sm.settling += 1;
                    let settled = self.settled();
                    ctx.spawn(settled.into_actor(self).map(move |ok, act, ctx| {
                        if let Some(sm) = &mut act.sm {
                            sm.settling -= 1;
                        }
                        if ok {
                            act.send_ack(h, ctx);
                        } else {
                            // Nothing may be acknowledged that is not on disk: the stream ends
                            // instead, and the client sends its unacknowledged stanzas again.
                            act.close(StreamError::ResourceConstraint, "storage failure", ctx);
                        }
                    }));
                }
            }
            "a" => {
                let Some(h) = el.get_attr("h").and_then(|h| h.parse::<u32>().ok()) else {
                    self.close(StreamError::UndefinedCondition, "malformed ack", ctx);
                    return true;
                };
                if !self.sm_ack(h) {
                    self.close(
                        StreamError::UndefinedCondition,
                        "handled-count-too-high",
                        ctx,
                    );
                }
            }
            "resume" => {
                // Only valid as the first element of a new stream, which `actors/mod.rs`
                // handles; here the session is already bound.
                self.send_raw(resume_failed(), ctx);
            }
            _ => self.close(
                StreamError::UnsupportedStanzaType,
                "unknown SM element",
                ctx,
            ),
        }
        true
    }

    /// The client acknowledged `h` stanzas in all; `false` if it claims more than were sent.
    fn sm_ack(&mut self, h: u32) -> bool {
        let Some(sm) = &mut self.sm else { return true };
        let acked = sm.sent.wrapping_sub(sm.unacked.len() as u32);
        let newly = h.wrapping_sub(acked) as usize;
        if newly > sm.unacked.len() {
            return false;
        }
        sm.unacked.drain(..newly);
        true
    }

    /// For push notifications: the hibernation, if any, the stanzas sent and those the client
    /// acknowledged (counts since SM was enabled); `None` without SM.
    pub(super) fn sm_push_view(&self) -> Option<(Option<u64>, u32, u32)> {
        let sm = self.sm.as_ref()?;
        let acked = sm.sent.wrapping_sub(sm.unacked.len() as u32);
        Some((sm.hibernating, sm.sent, acked))
    }

    /// Messages sent to the client and not acknowledged yet.
    pub(super) fn sm_unacked_messages(&self) -> u64 {
        self.sm.as_ref().map_or(0, |sm| {
            sm.unacked
                .iter()
                .flatten()
                .filter(|e| e.name == "message")
                .count() as u64
        })
    }

    /// A stanza from the client was handled.
    pub(super) fn sm_handled(&mut self) {
        if let Some(sm) = &mut self.sm {
            sm.handled = sm.handled.wrapping_add(1);
        }
    }

    /// A stanza is being sent to the client; ask for acks now and then.
    pub(super) fn sm_sent(&mut self, el: &Element, ctx: &mut Context<Self>) {
        let Some(sm) = &mut self.sm else { return };
        sm.sent = sm.sent.wrapping_add(1);
        let keep = sm.resume_id.is_some() || el.name == "message";
        sm.unacked.push_back(keep.then(|| el.clone()));
        let n = sm.unacked.len();
        if n >= MAX_UNACKED {
            self.close(
                StreamError::PolicyViolation,
                "too many unacknowledged stanzas",
                ctx,
            );
        } else if n % REQUEST_EVERY == 0 {
            self.send_raw(format!("<r xmlns='{NS}'/>"), ctx);
        }
    }

    /// The connection is gone. A resumable session hibernates (`true`); any other ends.
    pub(super) fn sm_hibernate(&mut self, ctx: &mut Context<Self>) -> bool {
        // Not after a stream error or a closed stream (the actor is stopping then).
        if ctx.state() != ActorState::Running {
            return false;
        }
        let Some(sm) = &mut self.sm else { return false };
        if sm.resume_id.is_none() || self.jid.is_none() {
            return false;
        }
        if sm.hibernating.is_some() {
            return true;
        }
        sm.hibernations += 1;
        let epoch = sm.hibernations;
        sm.hibernating = Some(epoch);
        self.out = None;
        self.reader = None;
        let timeout = self.shared.config.limits.sm_resume_timeout_secs;
        log::info!("{}: connection lost, resumable for {timeout} s", self.id);
        ctx.run_later(Duration::from_secs(timeout), move |act, ctx| {
            if act.sm.as_ref().and_then(|s| s.hibernating) == Some(epoch) {
                act.end_reason = "not resumed in time";
                ctx.stop();
            }
        });
        true
    }

    /// The session ended: forget its resumption id, and route unacknowledged messages again
    /// (after the router has forgotten this session, so they go to another resource or the
    /// offline spool).
    pub(super) fn sm_reroute(&mut self) {
        let Some(sm) = self.sm.take() else { return };
        if let Some(id) = &sm.resume_id {
            self.router.resumable.remove(id);
        }
        let mut n = 0;
        for msg in sm.unacked.into_iter().flatten() {
            if msg.name != "message" {
                continue;
            }
            let (Some(from), Some(to)) = (msg.get_attr("from"), msg.get_attr("to")) else {
                continue;
            };
            let (Ok(from), Ok(to)) = (crate::xmpp::jid(from), crate::xmpp::jid(to)) else {
                continue;
            };
            // Archived already, when it was first routed.
            self.router.archived.do_send(Archived(Route {
                stanza: msg,
                from,
                to,
                inflight: None,
            }));
            n += 1;
        }
        if n > 0 {
            log::info!("{}: {n} unacknowledged messages routed again", self.id);
        }
    }
}

impl Handler<Resume> for Connection {
    type Result = Result<(), Box<(LoggedIn, ConnSlot)>>;

    fn handle(&mut self, msg: Resume, ctx: &mut Context<Self>) -> Self::Result {
        let Resume { login, h, slot } = msg;
        let resumable = self.sm.as_ref().is_some_and(|s| s.resume_id.is_some())
            && self.jid.is_some()
            && login.user == self.user
            && login.host == self.host;
        if !resumable || !self.sm_ack(h) {
            return Err(Box::new((login, slot)));
        }
        // The old connection may not have been noticed dead yet: drop it.
        if let Some(r) = self.reader.take() {
            ctx.cancel_future(r);
        }
        if self.out.take().is_some() {
            self.abort.notify_one();
        }
        let LoggedIn {
            reader,
            writer,
            limited,
            ..
        } = login;
        let (tx, queued, abort) = outbox::spawn_writer(writer);
        self.out = Some(tx);
        self.queued = queued;
        self.abort = abort;
        self.reader = Some(ctx.add_stream(reader.into_events()));
        self.limited = limited;
        self._slot = slot;
        self.last_heard = std::time::Instant::now();
        self.pinged = None;
        let Some(sm) = &mut self.sm else {
            return Ok(());
        };
        sm.hibernating = None;
        let handled = sm.handled;
        if sm.unsettled || sm.settling > 0 {
            // `h` in <resumed/> acknowledges like <a/>: only once settled (see `settled`);
            // nothing else of this session is handled meanwhile.
            sm.unsettled = false;
            let settled = self.settled();
            ctx.wait(settled.into_actor(self).map(move |ok, act, ctx| {
                if ok {
                    act.resumed(handled, ctx);
                } else {
                    act.close(StreamError::ResourceConstraint, "storage failure", ctx);
                }
            }));
        } else {
            self.resumed(handled, ctx);
        }
        Ok(())
    }
}

impl Connection {
    /// `<resumed h/>`, then everything the client has not acknowledged, again.
    fn resumed(&mut self, handled: u32, ctx: &mut Context<Self>) {
        let Some(sm) = &mut self.sm else { return };
        if (handled.wrapping_sub(sm.acked) as i32) > 0 {
            sm.acked = handled;
        }
        let id = sm.resume_id.clone().unwrap_or_default();
        let again: Vec<Element> = sm.unacked.iter().flatten().cloned().collect();
        self.send_raw(
            format!("<resumed xmlns='{NS}' h='{handled}' previd='{id}'/>"),
            ctx,
        );
        for el in &again {
            self.send_raw(el.to_xml(ns::CLIENT), ctx);
        }
        log::info!("{}: resumed ({} stanzas sent again)", self.id, again.len());
    }
}
