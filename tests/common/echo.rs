//! An echo service for tests (not shipped): it owns a service domain of the destination table
//! and proves the path to internal services. A message to any JID of its domain comes back
//! from that JID with the body prefixed by `echo: `; the body `stop` stops the service (it is
//! then down); the body `ask JID` makes it send an IQ for JID's vCard and tell the asker the
//! answer's type (`answer: result`, `answer: error <condition>`), which proves the path of
//! services' IQs to a local bare JID; disco#info is answered with identity
//! `component/generic`; other IQs with `feature-not-implemented`.

use actix::prelude::*;

use kleiber::actors::messages::{Route, ToService};
use kleiber::actors::ServiceSpec;
use kleiber::xml::Element;
use kleiber::xmpp::{error_reply, iq_result, Condition, StanzaError};

const CLIENT: &str = "jabber:client";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

pub struct Echo {
    route: Recipient<Route>,
    /// Who asked for a vCard with `ask JID`, and from which JID of the service.
    asker: Option<(String, String)>,
}

impl Actor for Echo {
    type Context = Context<Self>;
}

impl Echo {
    fn send(&self, stanza: Element) {
        self.route
            .do_send(Route::of(stanza).expect("from and to set"));
    }
}

impl Handler<ToService> for Echo {
    type Result = ();
    fn handle(&mut self, msg: ToService, ctx: &mut Context<Self>) {
        let el = msg.stanza;
        match (el.name.as_str(), el.get_attr("type")) {
            ("message", t) if t != Some("error") => {
                let body = el
                    .get_child("body", CLIENT)
                    .map(|b| b.text_content())
                    .unwrap_or_default();
                if body == "stop" {
                    return ctx.stop();
                }
                if let Some(jid) = body.strip_prefix("ask ") {
                    self.asker = Some((msg.from.to_string(), msg.to.to_string()));
                    let iq = Element::new("iq", CLIENT)
                        .attr("type", "get")
                        .attr("id", "ask")
                        .attr("from", msg.to.as_str())
                        .attr("to", jid)
                        .child(Element::new("vCard", "vcard-temp"));
                    return self.send(iq);
                }
                let reply = Element::new("message", CLIENT)
                    .attr("from", msg.to.as_str())
                    .attr("to", msg.from.as_str())
                    .attr("type", t.unwrap_or("normal"))
                    .child(Element::new("body", CLIENT).text(format!("echo: {body}")));
                self.send(reply);
            }
            ("iq", Some("get")) if el.get_child("query", DISCO_INFO).is_some() => {
                let q = Element::new("query", DISCO_INFO).child(
                    Element::new("identity", DISCO_INFO)
                        .attr("category", "component")
                        .attr("type", "generic")
                        .attr("name", "echo"),
                );
                self.send(iq_result(&el, Some(q)));
            }
            ("iq", Some(t @ ("result" | "error"))) if el.get_attr("id") == Some("ask") => {
                let Some((asker, me)) = self.asker.take() else {
                    return;
                };
                let condition = el
                    .get_child("error", CLIENT)
                    .and_then(|e| e.elements().next().map(|c| format!(" {}", c.name)))
                    .unwrap_or_default();
                let m = Element::new("message", CLIENT)
                    .attr("from", me)
                    .attr("to", asker)
                    .attr("type", "chat")
                    .child(Element::new("body", CLIENT).text(format!("answer: {t}{condition}")));
                self.send(m);
            }
            ("iq", Some("get" | "set")) => {
                if let Some(r) =
                    error_reply(&el, &StanzaError::new(Condition::FeatureNotImplemented))
                {
                    self.send(r);
                }
            }
            _ => {}
        }
    }
}

/// The echo service for `domain`, to start with a server.
pub fn echo(domain: &str) -> ServiceSpec {
    ServiceSpec {
        domain: domain.to_owned(),
        start: Box::new(|cx| {
            let route = cx.route;
            Echo::start_in_arbiter(&cx.arbiter, move |_| Echo { route, asker: None })
                .recipient()
                .into()
        }),
    }
}
