//! XEP-0198 Stream Management, without resumption: acks both ways, and messages the client
//! had not acknowledged when the session ends are routed again (to another resource, or to
//! the offline spool), so a dropped mobile connection loses nothing.
//!
//! `h` counts stanzas: the server acks an incoming stanza once it has been handled (answered,
//! or handed to the router, which never loses it: delivered, spooled or bounced).

use std::collections::VecDeque;

use actix::prelude::*;

use super::Connection;
use crate::actors::messages::Route;
use crate::xml::Element;
use crate::xmpp::{Jid, StreamError};

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
    /// Sent and not yet acknowledged, oldest first; `Some` for messages (kept to route
    /// again), `None` for other stanzas (only counted).
    unacked: VecDeque<Option<Element>>,
}

impl Connection {
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
                    self.sm = Some(State::default());
                    // No `resume`: a dropped session is not resumed; its unacknowledged
                    // messages are routed again instead.
                    self.send_raw(format!("<enabled xmlns='{NS}'/>"), ctx);
                }
            }
            "r" => {
                if let Some(sm) = &self.sm {
                    let h = sm.handled;
                    self.send_raw(format!("<a xmlns='{NS}' h='{h}'/>"), ctx);
                }
            }
            "a" => {
                let Some(h) = el.get_attr("h").and_then(|h| h.parse::<u32>().ok()) else {
                    self.close(StreamError::UndefinedCondition, "malformed ack", ctx);
                    return true;
                };
                if let Some(sm) = &mut self.sm {
                    let acked = sm.sent.wrapping_sub(sm.unacked.len() as u32);
                    let newly = h.wrapping_sub(acked) as usize;
                    if newly > sm.unacked.len() {
                        self.close(
                            StreamError::UndefinedCondition,
                            "handled-count-too-high",
                            ctx,
                        );
                        return true;
                    }
                    sm.unacked.drain(..newly);
                }
            }
            _ => self.close(
                StreamError::UnsupportedStanzaType,
                "unknown SM element",
                ctx,
            ),
        }
        true
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
        sm.unacked
            .push_back((el.name == "message").then(|| el.clone()));
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

    /// The session ended: route unacknowledged messages again (after the router has
    /// forgotten this session, so they go to another resource or the offline spool).
    pub(super) fn sm_reroute(&mut self) {
        let Some(sm) = self.sm.take() else { return };
        let mut n = 0;
        for msg in sm.unacked.into_iter().flatten() {
            let (Some(from), Some(to)) = (msg.get_attr("from"), msg.get_attr("to")) else {
                continue;
            };
            let (Ok(from), Ok(to)) = (Jid::new(from), Jid::new(to)) else {
                continue;
            };
            self.router.route.do_send(Route {
                stanza: msg,
                from,
                to,
                inflight: None,
            });
            n += 1;
        }
        if n > 0 {
            log::info!("{}: {n} unacknowledged messages routed again", self.id);
        }
    }
}
