//! Presence in a room (XEP-0045 §7.1–§7.7, §7.14): entering (with the checks of §7.2 and the
//! creation of a new room, §10.1), multiple sessions under one nick (§7.2.12), presence
//! updates, nick changes (303) and leaving; and the occupant presences everyone gets.

use super::room::{entering_codes, Occupant, Room, Session};
use super::{muc_x, RoomEventKind};
use crate::actors::messages::{Prepared, ToService};
use crate::muc::history::Filter;
use crate::muc::presence::{self, status};
use crate::muc::{rules, Affiliation, Role, DELAY, NS_MUC};
use crate::xml::{Element, Node};
use crate::xmpp::{ns, Condition, StanzaError};

impl Room {
    pub(super) fn on_presence(&mut self, msg: ToService) {
        let from = msg.from.to_string();
        match msg.stanza.get_attr("type") {
            Some("unavailable") => self.leave(&from, &msg.stanza),
            // An error from an occupant's session (it is gone): it leaves (§7.2.3 of the
            // ghost problem XEP-0410 describes).
            Some("error") => self.leave(&from, &Element::new("presence", ns::CLIENT)),
            None => {
                let Some(nick) = msg.to.resource().map(|r| r.as_str().to_owned()) else {
                    return self.error(
                        &msg.stanza,
                        StanzaError::new(Condition::JidMalformed).with_text("no nickname"),
                    );
                };
                if nick.chars().count() > self.env.cfg.max_nick_chars {
                    let text = format!(
                        "nicknames are at most {} characters",
                        self.env.cfg.max_nick_chars
                    );
                    return self.error(
                        &msg.stanza,
                        StanzaError::new(Condition::NotAcceptable).with_text(text),
                    );
                }
                match self.sessions.get(&from).cloned() {
                    Some(old) if old == nick => self.update_presence(&from, &nick, &msg.stanza),
                    Some(old) => self.change_nick(&from, &old, &nick, &msg.stanza),
                    None => self.enter(&from, &nick, &msg.stanza),
                }
            }
            _ => {}
        }
    }

    /// The presence of occupant `nick` for a recipient with role `to_role`; `codes` are
    /// added to the `muc#user` `<x/>`.
    pub(super) fn presence_of(&self, nick: &str, to_role: Role, codes: &[u16]) -> Option<Element> {
        let o = self.occupants.get(nick)?;
        let session = o.sessions.last()?;
        let jid = self.sees_jids(to_role).then_some(session.jid.as_str());
        let item = presence::item(self.affiliation(&o.real), o.role, jid, None);
        let mut p = Element::new("presence", ns::CLIENT).attr("from", self.occupant_jid(nick));
        p.children = session.presence.clone();
        Some(
            p.child(presence::user_x(item, codes)).child(
                Element::new("occupant-id", crate::muc::OCCUPANT_ID).attr("id", o.id.as_str()),
            ),
        )
    }

    /// Send the presence of `nick` to everyone in the room; its own sessions get `110`
    /// (and `self_codes`) added.
    pub(super) fn broadcast_presence(&self, nick: &str, codes: &[u16], self_codes: &[u16]) {
        let mut own: Vec<u16> = codes.to_vec();
        own.push(status::SELF);
        own.extend_from_slice(self_codes);
        let (Some(with_jid), Some(without)) = (
            self.presence_of(nick, Role::Moderator, codes),
            self.presence_of(nick, Role::Visitor, codes),
        ) else {
            return;
        };
        let (with_jid, without) = (
            std::sync::Arc::new(Prepared::new(with_jid)),
            std::sync::Arc::new(Prepared::new(without)),
        );
        for (other, o) in &self.occupants {
            let base = if other == nick {
                match self.presence_of(nick, o.role, &own) {
                    Some(p) => std::sync::Arc::new(Prepared::new(p)),
                    None => continue,
                }
            } else if self.sees_jids(o.role) {
                with_jid.clone()
            } else {
                without.clone()
            };
            for s in &o.sessions {
                self.env.send_prepared(&base, &s.jid);
            }
        }
    }

    fn enter(&mut self, from: &str, nick: &str, stanza: &Element) {
        let real = crate::xmpp::bare_part(from).to_owned();
        let x = muc_x(stanza);
        let mut created = false;
        if self.creator.as_deref() == Some(real.as_str()) {
            self.creator = None;
            self.rec.set_affiliation(&real, Affiliation::Owner);
            // Without the MUC <x/> (an old client) the room is an instant room (§10.1.3).
            self.locked = x.is_some();
            created = true;
            // A locked room is not listed until it is configured.
            self.update_listing();
        } else if self.locked && self.affiliation(&real) != Affiliation::Owner {
            let e = StanzaError::new(Condition::ItemNotFound)
                .with_text("the room is not configured yet");
            return self.error(stanza, e);
        }
        let aff = self.affiliation(&real);
        let existing = self.occupants.get(nick).map(|o| o.real == real);
        if existing == Some(false) {
            let e = StanzaError::new(Condition::Conflict).with_text("this nickname is taken");
            return self.error(stanza, e);
        }
        let password = x
            .and_then(|x| x.get_child("password", NS_MUC))
            .map(|p| p.text_content());
        let others = if existing == Some(true) {
            0
        } else {
            self.occupants.len()
        };
        if let Err(e) = rules::may_enter(aff, &self.rec.config, password.as_deref(), others) {
            return self.error(stanza, e);
        }
        let role = rules::default_role(aff, &self.rec.config);
        let session = Session {
            jid: from.to_owned(),
            presence: presence::payload(stanza),
        };
        let new_occupant = existing.is_none();
        if new_occupant {
            let o = self.new_occupant(&real, role);
            self.occupants.insert(nick.to_owned(), o);
        }
        if let Some(o) = self.occupants.get_mut(nick) {
            o.sessions.push(session);
        }
        self.sessions.insert(from.to_owned(), nick.to_owned());
        self.send_occupants_to(from, nick);
        let codes = entering_codes(self.rec.config.whois_anyone, created);
        if new_occupant {
            self.broadcast_presence(nick, &[], &codes[1..]);
        } else if let Some(mut p) = self.presence_of(nick, self.occupants[nick].role, &codes) {
            p.set_attr("to", from);
            self.env.send(p);
        }
        if !self.locked {
            let filter = x
                .and_then(|x| x.get_child("history", NS_MUC))
                .map(Filter::parse)
                .unwrap_or_default();
            self.send_history(from, &filter);
            self.send_subject(from);
        }
        self.touch();
        self.event(RoomEventKind::Joined(from.to_owned()));
    }

    /// The occupant `nick`'s role changed from `old`: everyone gets its presence, and a new
    /// moderator of a semi-anonymous room gets the others' presences again, now with their
    /// real JIDs.
    pub(super) fn role_changed(&self, nick: &str, old: Role) {
        self.broadcast_presence(nick, &[], &[]);
        let Some(o) = self.occupants.get(nick) else {
            return;
        };
        if self.sees_jids(o.role) && !self.sees_jids(old) {
            for s in &o.sessions {
                self.send_occupants_to(&s.jid, nick);
            }
        }
    }

    /// The presences of everyone else, to a session entering as `nick` (§7.2.3).
    fn send_occupants_to(&self, to: &str, nick: &str) {
        let role = self.occupants.get(nick).map_or(Role::None, |o| o.role);
        for other in self.occupants.keys().filter(|n| *n != nick) {
            if let Some(mut p) = self.presence_of(other, role, &[]) {
                p.set_attr("to", to);
                self.env.send(p);
            }
        }
    }

    /// The discussion history `filter` lets through, with delays (§7.2.15, XEP-0203).
    fn send_history(&self, to: &str, filter: &Filter) {
        let now = crate::store::now_ms();
        for e in self.history.select(filter, now) {
            let mut m = e.stanza.clone();
            m.set_attr("to", to);
            if let Some(stamp) = crate::xmpp::xep0082(e.at_ms) {
                m = m.child(
                    Element::new("delay", DELAY)
                        .attr("from", self.jid.as_str())
                        .attr("stamp", stamp),
                );
            }
            self.env.send(m);
        }
    }

    /// The subject, empty if none: the last thing a client gets on entering (§7.2.16).
    pub(super) fn send_subject(&self, to: &str) {
        let from = if self.rec.subject_by.is_empty() {
            self.jid.clone()
        } else {
            self.occupant_jid(&self.rec.subject_by)
        };
        let m = Element::new("message", ns::CLIENT)
            .attr("from", from)
            .attr("to", to)
            .attr("type", "groupchat")
            .attr("id", crate::xmpp::random_id(9))
            .child(Element::new("subject", ns::CLIENT).text(self.rec.subject.as_str()));
        self.env.send(m);
    }

    /// Someone entered: remember when (at most one write an hour).
    fn touch(&mut self) {
        let now = crate::store::now_ms() / 1000;
        if now.saturating_sub(self.rec.last_used) >= 3600 {
            self.rec.last_used = now;
            self.save();
        }
    }

    fn update_presence(&mut self, from: &str, nick: &str, stanza: &Element) {
        let Some(o) = self.occupants.get_mut(nick) else {
            return;
        };
        // The updated session becomes the one whose presence the room shows.
        if let Some(i) = o.sessions.iter().position(|s| s.jid == from) {
            let mut s = o.sessions.remove(i);
            s.presence = presence::payload(stanza);
            o.sessions.push(s);
        }
        self.broadcast_presence(nick, &[], &[]);
    }

    fn change_nick(&mut self, from: &str, old: &str, new: &str, stanza: &Element) {
        let real = crate::xmpp::bare_part(from).to_owned();
        if self.occupants.get(new).is_some_and(|o| o.real != real) {
            let e = StanzaError::new(Condition::Conflict).with_text("this nickname is taken");
            return self.error(stanza, e);
        }
        let Some(mut o) = self.occupants.remove(old) else {
            return;
        };
        let single = o.sessions.len() == 1;
        let moving: Vec<Session> = if single {
            std::mem::take(&mut o.sessions)
        } else {
            let i = o.sessions.iter().position(|s| s.jid == from).unwrap_or(0);
            vec![o.sessions.remove(i)]
        };
        // The old nick leaves with 303 and the new nick (to everyone when the occupant moves
        // as a whole, to the moving session alone otherwise).
        let aff = self.affiliation(&real);
        for who in self.occupants.values().filter(|_| single) {
            for s in &who.sessions {
                let jid = self.sees_jids(who.role).then_some(from);
                self.env
                    .send(self.nick_gone(old, new, (&o, aff), jid, &s.jid, false));
            }
        }
        for s in &moving {
            self.env
                .send(self.nick_gone(old, new, (&o, aff), Some(from), &s.jid, true));
        }
        if !single {
            self.occupants.insert(old.to_owned(), o);
            let role = rules::default_role(aff, &self.rec.config);
            o = self.new_occupant(&real, role);
        }
        let mut moving = moving;
        for s in &mut moving {
            if s.jid == from {
                s.presence = presence::payload(stanza);
            }
            self.sessions.insert(s.jid.clone(), new.to_owned());
        }
        match self.occupants.get_mut(new) {
            Some(existing) => existing.sessions.extend(moving),
            None => {
                o.sessions = moving;
                self.occupants.insert(new.to_owned(), o);
            }
        }
        self.broadcast_presence(new, &[], &[]);
    }

    /// The unavailable presence of a nick change (§7.6: 303 with the new nick), of the
    /// occupant `who` with its affiliation.
    fn nick_gone(
        &self,
        old: &str,
        new: &str,
        who: (&Occupant, Affiliation),
        jid: Option<&str>,
        to: &str,
        own: bool,
    ) -> Element {
        let codes: &[u16] = if own {
            &[status::NICK_CHANGED, status::SELF]
        } else {
            &[status::NICK_CHANGED]
        };
        let (o, aff) = who;
        Element::new("presence", ns::CLIENT)
            .attr("from", self.occupant_jid(old))
            .attr("to", to)
            .attr("type", "unavailable")
            .child(presence::user_x(
                presence::item(aff, o.role, jid, Some(new)),
                codes,
            ))
            .child(Element::new("occupant-id", crate::muc::OCCUPANT_ID).attr("id", o.id.as_str()))
    }

    fn leave(&mut self, from: &str, stanza: &Element) {
        let Some(nick) = self.sessions.remove(from) else {
            return;
        };
        self.event(RoomEventKind::Left(from.to_owned()));
        let Some(o) = self.occupants.get_mut(&nick) else {
            return;
        };
        // The room shows the presence of the occupant's last session.
        let shown = o.sessions.last().is_some_and(|s| s.jid == from);
        o.sessions.retain(|s| s.jid != from);
        let status_text: Vec<Node> = presence::payload(stanza);
        if !o.sessions.is_empty() {
            // Another session stays under the nick: only this one hears that it left, and
            // the others see the presence of the one that stays, if it was this one's.
            let (real, role) = (o.real.clone(), o.role);
            let item = presence::item(self.affiliation(&real), role, Some(from), None);
            let p = Element::new("presence", ns::CLIENT)
                .attr("from", self.occupant_jid(&nick))
                .attr("to", from)
                .attr("type", "unavailable")
                .child(presence::user_x(item, &[status::SELF]));
            self.env.send(p);
            if shown {
                self.broadcast_presence(&nick, &[], &[]);
            }
            return;
        }
        let o = self.occupants.remove(&nick).expect("present");
        self.announce_exit(&nick, &o, from, status_text, &[], None);
        self.emptied();
    }

    /// Everyone (and the one leaving, at `last_session`) hears that `nick` left, with
    /// `codes` (307 kicked, 301 banned, ...) and the actor and reason of a removal.
    pub(super) fn announce_exit(
        &self,
        nick: &str,
        o: &Occupant,
        last_session: &str,
        payload: Vec<Node>,
        codes: &[u16],
        actor_reason: Option<(&str, &str)>,
    ) {
        let aff = self.affiliation(&o.real);
        let build = |jid: Option<&str>, codes: &[u16]| {
            let mut x = presence::user_x(presence::item(aff, Role::None, jid, None), codes);
            if let Some((a, r)) = actor_reason {
                x = presence::with_actor_reason(x, Some(a).filter(|a| !a.is_empty()), Some(r));
            }
            let mut p = Element::new("presence", ns::CLIENT)
                .attr("from", self.occupant_jid(nick))
                .attr("type", "unavailable");
            p.children = payload.clone();
            p.child(x).child(
                Element::new("occupant-id", crate::muc::OCCUPANT_ID).attr("id", o.id.as_str()),
            )
        };
        for (_, who) in self.occupants.iter().filter(|(n, _)| *n != nick) {
            let jid = self.sees_jids(who.role).then_some(last_session);
            let base = build(jid, codes);
            for s in &who.sessions {
                let mut p = base.clone();
                p.set_attr("to", s.jid.as_str());
                self.env.send(p);
            }
        }
        let mut own = codes.to_vec();
        own.push(status::SELF);
        let sessions: Vec<&str> = if o.sessions.is_empty() {
            vec![last_session]
        } else {
            o.sessions.iter().map(|s| s.jid.as_str()).collect()
        };
        for s in sessions {
            let mut p = build(Some(last_session), &own);
            p.set_attr("to", s);
            self.env.send(p);
        }
    }

    /// Remove the occupant `nick` (kick, ban, lost membership): every session leaves.
    pub(super) fn remove_occupant(&mut self, nick: &str, codes: &[u16], actor: &str, reason: &str) {
        let Some(o) = self.occupants.remove(nick) else {
            return;
        };
        for s in &o.sessions {
            self.sessions.remove(&s.jid);
            self.event(RoomEventKind::Left(s.jid.clone()));
        }
        let last = o.sessions.last().map(|s| s.jid.clone()).unwrap_or_default();
        self.announce_exit(nick, &o, &last, Vec::new(), codes, Some((actor, reason)));
        self.emptied();
    }
}
