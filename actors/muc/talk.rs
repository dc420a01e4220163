//! Messages in a room (XEP-0045 §7.4–§7.9, §7.13, §8.1): group messages reflected to everyone
//! (sender included) and kept in the history, subject changes, private messages through the
//! room, mediated invitations and declines, and voice requests with their approval.
//! Corrections (XEP-0308), retractions (XEP-0424) and other payloads pass through as sent;
//! only the room sets `<occupant-id/>` (XEP-0421). Whatever an occupant makes the room send
//! (group and private messages, subjects, invitations, voice requests) counts against
//! `muc.max_messages_per_second`.

use super::room::Room;
use crate::actors::messages::ToService;
use crate::muc::{rules, Affiliation, Role, NS_USER, OCCUPANT_ID, REQUEST};
use crate::xml::{Element, Node};
use crate::xmpp::form::{self, boolean, field};
use crate::xmpp::{ns, Condition, StanzaError};

const HINTS: &str = "urn:xmpp:hints";

fn err(c: Condition, text: &str) -> StanzaError {
    StanzaError::new(c).with_text(text)
}

/// An occupant over its rate (`muc.max_messages_per_second`).
fn too_fast() -> StanzaError {
    err(Condition::ResourceConstraint, "you are sending too fast")
}

/// `stanza`'s children without any `<occupant-id/>` (only the room may set one).
fn payload(stanza: &Element) -> Vec<Node> {
    stanza
        .children
        .iter()
        .filter(|n| !matches!(n, Node::Element(e) if e.ns == OCCUPANT_ID))
        .cloned()
        .collect()
}

impl Room {
    pub(super) fn on_message(&mut self, msg: ToService) {
        let from = msg.from.to_string();
        let el = &msg.stanza;
        if el.get_attr("type") == Some("error") {
            // An occupant's session bounced what the room sent it: it is gone.
            if self.sessions.contains_key(&from) {
                let unavailable = Element::new("presence", ns::CLIENT);
                self.on_presence(ToService {
                    stanza: unavailable.attr("type", "unavailable"),
                    from: msg.from.clone(),
                    to: msg.to.clone(),
                });
            }
            return;
        }
        if let Some(nick) = msg.to.resource() {
            return self.private_message(&from, nick.as_str(), el);
        }
        if el.get_attr("type") == Some("groupchat") {
            return self.groupchat(&from, el);
        }
        if let Some(x) = el.get_child("x", NS_USER) {
            return self.invitations(&from, el, x);
        }
        if let Some(x) = el.get_child("x", ns::DATA_FORMS) {
            return self.voice_form(&from, el, x);
        }
        self.error(
            el,
            err(
                Condition::BadRequest,
                "send group messages with type groupchat",
            ),
        );
    }

    fn groupchat(&mut self, from: &str, el: &Element) {
        let Some(nick) = self.sessions.get(from).cloned() else {
            return self.error(
                el,
                err(Condition::NotAcceptable, "you are not in this room"),
            );
        };
        let role = self.occupants.get(&nick).map_or(Role::None, |o| o.role);
        if role < Role::Participant {
            return self.error(
                el,
                err(Condition::Forbidden, "you have no voice in this room"),
            );
        }
        if !self.take_token(&nick) {
            return self.error(el, too_fast());
        }
        let subject = el.get_child("subject", ns::CLIENT);
        let body = el.get_child("body", ns::CLIENT);
        if let (Some(s), None) = (subject, body) {
            return self.set_subject(&nick, role, el, s.text_content());
        }
        let mut m = Element::new("message", ns::CLIENT)
            .attr("from", self.occupant_jid(&nick))
            .attr("type", "groupchat");
        if let Some(id) = el.get_attr("id") {
            m.set_attr("id", id);
        }
        if let Some(l) = el.get_attr("xml:lang") {
            m.set_attr("xml:lang", l);
        }
        m.children = payload(el);
        // Only the room says what its stanza ids are (XEP-0359 §5).
        crate::services::mam::strip_stanza_ids(&mut m, &self.jid);
        if let Some(oid) = self.occupant_id(&nick) {
            m = m.child(oid);
        }
        let keep = body.is_some() && el.get_child("no-store", HINTS).is_none();
        self.archive_message(&mut m, &nick);
        self.broadcast(&m);
        if keep {
            self.history.push(m, crate::store::now_ms());
        }
    }

    fn set_subject(&mut self, nick: &str, role: Role, el: &Element, subject: String) {
        let allowed = role == Role::Moderator || self.rec.config.change_subject;
        if !allowed {
            return self.error(
                el,
                err(
                    Condition::Forbidden,
                    "only moderators may change the subject",
                ),
            );
        }
        let max = self.env.cfg.max_subject_chars;
        if subject.chars().count() > max {
            let e = StanzaError::new(Condition::NotAcceptable)
                .with_text(format!("subjects are at most {max} characters"));
            return self.error(el, e);
        }
        self.rec.subject = subject;
        self.rec.subject_by = nick.to_owned();
        self.save();
        for (to, _) in self
            .recipients()
            .map(|(t, r)| (t.to_owned(), r))
            .collect::<Vec<_>>()
        {
            self.send_subject(&to);
        }
    }

    fn private_message(&mut self, from: &str, to_nick: &str, el: &Element) {
        let Some(nick) = self.sessions.get(from).cloned() else {
            return self.error(
                el,
                err(
                    Condition::NotAcceptable,
                    "only occupants may send private messages",
                ),
            );
        };
        if el.get_attr("type") == Some("groupchat") {
            return self.error(
                el,
                err(Condition::BadRequest, "private messages are not groupchat"),
            );
        }
        let role = self.occupants.get(&nick).map_or(Role::None, |o| o.role);
        if !self.rec.config.allow_pm.allows(role) {
            return self.error(
                el,
                err(
                    Condition::Forbidden,
                    "private messages are not allowed here",
                ),
            );
        }
        if !self.take_token(&nick) {
            return self.error(el, too_fast());
        }
        let Some(target) = self.occupants.get(to_nick) else {
            return self.error(el, err(Condition::ItemNotFound, "no such occupant"));
        };
        let mut m = Element::new("message", ns::CLIENT).attr("from", self.occupant_jid(&nick));
        for a in ["type", "id", "xml:lang"] {
            if let Some(v) = el.get_attr(a) {
                m.set_attr(a, v);
            }
        }
        m.children = payload(el);
        if m.get_child("x", NS_USER).is_none() {
            m = m.child(Element::new("x", NS_USER));
        }
        for s in &target.sessions {
            let mut c = m.clone();
            c.set_attr("to", s.jid.as_str());
            self.env.send(c);
        }
    }

    /// Mediated invitations and declines (§7.8.2, §7.8.3).
    fn invitations(&mut self, from: &str, el: &Element, x: &Element) {
        let real = crate::xmpp::bare_part(from).to_owned();
        for d in x.elements().filter(|e| e.name == "decline") {
            let Some(to) = d.get_attr("to").and_then(|t| crate::xmpp::jid(t).ok()) else {
                return self.error(
                    el,
                    err(Condition::JidMalformed, "decline without a valid to"),
                );
            };
            let mut decline = Element::new("decline", NS_USER).attr("from", real.as_str());
            if let Some(r) = d.get_child("reason", NS_USER) {
                decline = decline.child(r.clone());
            }
            let m = Element::new("message", ns::CLIENT)
                .attr("from", self.jid.as_str())
                .attr("to", to.as_str())
                .child(Element::new("x", NS_USER).child(decline));
            self.env.send(m);
        }
        let invites: Vec<&Element> = x.elements().filter(|e| e.name == "invite").collect();
        if invites.is_empty() {
            return;
        }
        let Some(nick) = self.sessions.get(from).cloned() else {
            let e = err(Condition::NotAcceptable, "only occupants may invite");
            return self.error(el, e);
        };
        let aff = self.affiliation(&real);
        let cfg = &self.rec.config;
        if cfg.members_only && !cfg.allow_invites && aff < Affiliation::Admin {
            return self.error(
                el,
                err(Condition::Forbidden, "only admins may invite to this room"),
            );
        }
        for i in invites {
            // Each invitation is a message the room sends for the occupant: they count
            // against its rate.
            if !self.take_token(&nick) {
                return self.error(el, too_fast());
            }
            let Some(to) = i.get_attr("to").and_then(|t| crate::xmpp::jid(t).ok()) else {
                return self.error(
                    el,
                    err(Condition::JidMalformed, "invite without a valid to"),
                );
            };
            let invitee = to.to_bare().to_string();
            if self.rec.config.members_only && self.affiliation(&invitee) == Affiliation::None {
                self.rec.set_affiliation(&invitee, Affiliation::Member);
                self.save();
                self.announce_affiliation(&invitee, Affiliation::Member);
            }
            let mut invite = Element::new("invite", NS_USER).attr("from", real.as_str());
            if let Some(r) = i.get_child("reason", NS_USER) {
                invite = invite.child(r.clone());
            }
            let mut ux = Element::new("x", NS_USER).child(invite);
            if !self.rec.config.password.is_empty() {
                ux = ux.child(
                    Element::new("password", NS_USER).text(self.rec.config.password.as_str()),
                );
            }
            let m = Element::new("message", ns::CLIENT)
                .attr("from", self.jid.as_str())
                .attr("to", to.as_str())
                .attr("id", crate::xmpp::random_id(9))
                .child(ux)
                .child(Element::new("x", "jabber:x:conference").attr("jid", self.jid.as_str()));
            self.env.send(m);
        }
    }

    /// Voice requests (§7.13) and a moderator's approval (§8.6).
    fn voice_form(&mut self, from: &str, el: &Element, x: &Element) {
        let (form_type, values) = form::values(x);
        if form_type.as_deref() != Some(REQUEST) {
            return self.error(el, err(Condition::BadRequest, "unknown form"));
        }
        let Some(nick) = self.sessions.get(from).cloned() else {
            return self.error(
                el,
                err(Condition::NotAcceptable, "you are not in this room"),
            );
        };
        let role = self.occupants.get(&nick).map_or(Role::None, |o| o.role);
        if x.get_attr("type") == Some("submit") && role == Role::Moderator {
            let approved = form::first(&values, "muc#request_allow")
                .is_some_and(|v| form::parse_bool(v) == Some(true));
            if let (true, Some(target)) = (approved, form::first(&values, "muc#roomnick")) {
                let target = target.to_owned();
                if let Err(e) = self.change_role(&nick, &target, Role::Participant, "") {
                    self.error(el, e);
                }
            }
            return;
        }
        if role != Role::Visitor {
            return self.error(
                el,
                err(Condition::NotAcceptable, "you have a voice already"),
            );
        }
        if !self.take_token(&nick) {
            return self.error(el, too_fast());
        }
        let request = form::form("form", REQUEST)
            .child(field(
                "muc#role",
                "list-single",
                Some("Requested role"),
                ["participant"],
            ))
            .child(field("muc#jid", "jid-single", Some("User ID"), [from]))
            .child(field(
                "muc#roomnick",
                "text-single",
                Some("Room nickname"),
                [nick.as_str()],
            ))
            .child(boolean(
                "muc#request_allow",
                "Grant voice to this person?",
                false,
            ));
        let m = Element::new("message", ns::CLIENT)
            .attr("from", self.jid.as_str())
            .attr("id", crate::xmpp::random_id(9))
            .child(request);
        for (to, r) in self.recipients() {
            if r == Role::Moderator {
                let mut c = m.clone();
                c.set_attr("to", to);
                self.env.send(c);
            }
        }
    }

    /// An occupant (`actor`) gives the occupant `nick` the role `role` (kick when `None`).
    pub(super) fn change_role(
        &mut self,
        actor: &str,
        nick: &str,
        role: Role,
        reason: &str,
    ) -> Result<(), StanzaError> {
        let actor_state = self
            .occupants
            .get(actor)
            .map(|o| (o.role, self.affiliation(&o.real)))
            .unwrap_or((Role::None, Affiliation::None));
        let target = self
            .occupants
            .get(nick)
            .ok_or_else(|| err(Condition::ItemNotFound, "no such occupant"))?;
        let target_state = (target.role, self.affiliation(&target.real));
        rules::may_set_role(actor_state, target_state, role)?;
        if role == Role::None {
            use crate::muc::presence::status;
            self.remove_occupant(nick, &[status::KICKED], actor, reason);
        } else if let Some(o) = self.occupants.get_mut(nick) {
            let old = std::mem::replace(&mut o.role, role);
            self.role_changed(nick, old);
        }
        Ok(())
    }
}
