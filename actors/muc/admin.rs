//! IQs to a room (XEP-0045 §6, §8–§10, XEP-0410): disco#info with `muc#roominfo`, the admin
//! protocol (roles and affiliations: kick, ban, voice, moderators, member and admin lists), the
//! owner protocol (configuration, instant rooms, destruction), pings, and IQs to an occupant,
//! which are passed on to one of its sessions (vCard requests to its account, self-pings the
//! room answers itself).

use super::room::{PendingIq, Room};
use crate::actors::messages::ToService;
use crate::muc::presence::status;
use crate::muc::{form, rules, Affiliation, Role, NS_ADMIN, NS_MUC, NS_OWNER, NS_USER};
use crate::services::mam;
use crate::xml::Element;
use crate::xmpp::{iq_payload, iq_result, ns, Condition, StanzaError};

/// Most IQs to occupants waiting for their answers at once, per room.
const MAX_PENDING: usize = 1000;

const VCARD: &str = "vcard-temp";

fn err(c: Condition, text: &str) -> StanzaError {
    StanzaError::new(c).with_text(text)
}

/// The role an admin `<item/>` names (it has no affiliation).
fn role_of(item: &Element) -> Result<Role, StanzaError> {
    item.get_attr("role")
        .and_then(|r| r.parse::<Role>().ok())
        .ok_or_else(|| {
            err(
                Condition::BadRequest,
                "an item needs an affiliation or a role",
            )
        })
}

/// One change an admin IQ asks for.
enum Change {
    Role { nick: String, role: Role },
    Affiliation { jid: String, aff: Affiliation },
}

impl Room {
    pub(super) fn on_iq(&mut self, msg: ToService) {
        let el = &msg.stanza;
        let from = msg.from.to_string();
        if let Some(nick) = msg.to.resource() {
            return self.iq_to_occupant(&from, nick.as_str(), el);
        }
        let payload = match iq_payload(el) {
            Ok(Some(p)) => p.clone(),
            Ok(None) => return,
            Err(e) => return self.error(el, e),
        };
        let get = el.get_attr("type") == Some("get");
        let real = crate::xmpp::bare_part(&from).to_owned();
        if self.locked && self.affiliation(&real) != Affiliation::Owner {
            return self.error(
                el,
                err(Condition::ItemNotFound, "the room is not configured yet"),
            );
        }
        let answer = match (payload.ns.as_str(), get) {
            (ns::DISCO_INFO, true) if payload.get_attr("node").is_none() => {
                Ok(Some(self.disco_info()))
            }
            (ns::DISCO_ITEMS, true) => Ok(Some(Element::new("query", ns::DISCO_ITEMS))),
            (ns::PING, true) => Ok(None),
            (NS_ADMIN, true) => self.admin_get(&from, &payload),
            (NS_ADMIN, false) => self.admin_set(&from, &payload).map(|()| None),
            (NS_OWNER, true) => self.owner_get(&real),
            (NS_OWNER, false) => return self.owner_set(&real, el, &payload),
            (mam::NS, _) if self.archives_offered() => return self.mam_iq(&real, el),
            _ => Err(StanzaError::new(Condition::ServiceUnavailable)),
        };
        match answer {
            Ok(p) => self.env.send(iq_result(el, p)),
            Err(e) => self.error(el, e),
        }
    }

    fn disco_info(&self) -> Element {
        let cfg = &self.rec.config;
        let name = if cfg.name.is_empty() {
            crate::xmpp::bare_part(&self.jid)
                .split('@')
                .next()
                .unwrap_or_default()
                .to_owned()
        } else {
            cfg.name.clone()
        };
        let mut q = Element::new("query", ns::DISCO_INFO).child(
            Element::new("identity", ns::DISCO_INFO)
                .attr("category", "conference")
                .attr("type", "text")
                .attr("name", name),
        );
        let fixed = [
            NS_MUC,
            crate::muc::OCCUPANT_ID,
            crate::muc::SELF_PING,
            crate::muc::REQUEST,
            ns::DISCO_INFO,
            ns::PING,
        ];
        let archive: &[&str] = if self.archiving() {
            &[mam::NS, mam::NS_EXTENDED, mam::SID]
        } else {
            &[]
        };
        for f in fixed
            .into_iter()
            .chain(form::features(cfg))
            .chain(archive.iter().copied())
        {
            q = q.child(Element::new("feature", ns::DISCO_INFO).attr("var", f));
        }
        q.child(form::room_info(
            cfg,
            self.occupants.len(),
            &self.rec.subject,
        ))
    }

    /// IQs to `room/nick` (§7.2.x, XEP-0410 self-ping): answers from the occupant come back
    /// to the asker; requests from other occupants go to one of its sessions.
    fn iq_to_occupant(&mut self, from: &str, nick: &str, el: &Element) {
        if matches!(el.get_attr("type"), Some("result" | "error")) {
            return self.iq_answer(from, el);
        }
        let Some(own) = self.sessions.get(from).cloned() else {
            return self.error(
                el,
                err(Condition::NotAcceptable, "you are not in this room"),
            );
        };
        let Some(target) = self.occupants.get(nick) else {
            return self.error(el, err(Condition::ItemNotFound, "no such occupant"));
        };
        if own == nick && el.get_child("ping", ns::PING).is_some() {
            return self.env.send(iq_result(el, None));
        }
        if self.pending.len() >= MAX_PENDING {
            return self.error(el, err(Condition::ResourceConstraint, "too many requests"));
        }
        let Some(session) = target.sessions.last() else {
            return;
        };
        // vCards belong to accounts: the occupant's server answers for its bare JID (as
        // clients fetching avatars expect).
        let vcard = el.get_attr("type") == Some("get") && el.get_child("vCard", VCARD).is_some();
        let to = if vcard {
            target.real.clone()
        } else {
            session.jid.clone()
        };
        let new_id = crate::xmpp::random_id(12);
        let mut fwd = el.clone();
        fwd.set_attr("from", self.occupant_jid(&own));
        fwd.set_attr("to", to.as_str());
        fwd.set_attr("id", new_id.as_str());
        self.pending.insert(
            new_id,
            PendingIq {
                from: from.to_owned(),
                id: el.get_attr("id").unwrap_or_default().to_owned(),
                to: self.occupant_jid(nick),
                target: to.clone(),
                since: std::time::Instant::now(),
            },
        );
        // To an account's bare JID (a vCard): the server answers for it, through the router.
        self.env.send(fwd);
    }

    /// The answer (`from` the entity asked) to an IQ passed on to an occupant goes back to
    /// the asker, from the occupant's room JID and with the asker's id; only the entity
    /// asked may answer.
    fn iq_answer(&mut self, from: &str, el: &Element) {
        let id = el.get_attr("id").unwrap_or_default();
        if self.pending.get(id).is_none_or(|p| p.target != from) {
            return;
        }
        let p = self.pending.remove(id).expect("pending");
        let mut answer = el.clone();
        answer.set_attr("from", p.to);
        answer.set_attr("to", p.from);
        answer.set_attr("id", p.id);
        self.env.send(answer);
    }

    /// The requester's role (if in the room) and affiliation.
    fn standing(&self, from: &str) -> (Option<String>, Role, Affiliation) {
        let real = crate::xmpp::bare_part(from);
        match self.occupant_of(from) {
            Some((nick, o)) => (Some(nick.clone()), o.role, self.affiliation(real)),
            None => (None, Role::None, self.affiliation(real)),
        }
    }

    /// Lists by affiliation (admins and owners) or role (moderators), §9.5, §8.5.
    fn admin_get(&self, from: &str, q: &Element) -> Result<Option<Element>, StanzaError> {
        let (_, role, aff) = self.standing(from);
        let item = q
            .get_child("item", NS_ADMIN)
            .ok_or_else(|| err(Condition::BadRequest, "no item"))?;
        let mut out = Element::new("query", NS_ADMIN);
        if let Some(a) = item.get_attr("affiliation") {
            let a = a
                .parse::<Affiliation>()
                .ok()
                .ok_or_else(|| err(Condition::BadRequest, "unknown affiliation"))?;
            if aff < Affiliation::Admin {
                return Err(err(
                    Condition::Forbidden,
                    "only admins and owners see affiliation lists",
                ));
            }
            for (jid, _) in self.rec.affiliations.iter().filter(|(_, x)| **x == a) {
                let mut i = Element::new("item", NS_ADMIN)
                    .attr("affiliation", a.as_str())
                    .attr("jid", jid.as_str());
                if let Some((nick, _)) = self.occupants.iter().find(|(_, o)| &o.real == jid) {
                    i.set_attr("nick", nick.as_str());
                }
                out = out.child(i);
            }
            return Ok(Some(out));
        }
        let r = role_of(item)?;
        if role < Role::Moderator {
            return Err(err(Condition::Forbidden, "only moderators see role lists"));
        }
        for (nick, o) in self.occupants.iter().filter(|(_, o)| o.role == r) {
            let mut i = Element::new("item", NS_ADMIN)
                .attr("role", r.as_str())
                .attr("affiliation", self.affiliation(&o.real).as_str())
                .attr("nick", nick.as_str());
            if let Some(s) = o.sessions.last() {
                i.set_attr("jid", s.jid.as_str());
            }
            out = out.child(i);
        }
        Ok(Some(out))
    }

    /// Role and affiliation changes (§8, §9, §10): all checked first, then all made.
    fn admin_set(&mut self, from: &str, q: &Element) -> Result<(), StanzaError> {
        let (nick, role, aff) = self.standing(from);
        let mut changes = Vec::new();
        for item in q.elements().filter(|i| i.name == "item") {
            let reason = item
                .get_child("reason", NS_ADMIN)
                .map(|r| r.text_content())
                .unwrap_or_default();
            changes.push((self.check_change(item, (role, aff))?, reason));
        }
        if changes.is_empty() {
            return Err(err(Condition::BadRequest, "no item"));
        }
        let mut owners: std::collections::HashSet<&str> = self.rec.owners().collect();
        for (change, _) in &changes {
            if let Change::Affiliation { jid, aff } = change {
                if *aff == Affiliation::Owner {
                    owners.insert(jid);
                } else {
                    owners.remove(jid.as_str());
                }
            }
        }
        rules::keeps_an_owner(owners.len())?;
        let actor = nick.unwrap_or_default();
        for (change, reason) in changes {
            match change {
                Change::Role { nick, role } => {
                    self.change_role(&actor, &nick, role, &reason)?;
                }
                Change::Affiliation { jid, aff } => {
                    self.set_affiliation(&actor, &jid, aff, &reason);
                }
            }
        }
        Ok(())
    }

    fn check_change(
        &self,
        item: &Element,
        actor: (Role, Affiliation),
    ) -> Result<Change, StanzaError> {
        if let Some(a) = item.get_attr("affiliation") {
            let new = a
                .parse::<Affiliation>()
                .ok()
                .ok_or_else(|| err(Condition::BadRequest, "unknown affiliation"))?;
            let jid = match (item.get_attr("jid"), item.get_attr("nick")) {
                (Some(j), _) => crate::xmpp::jid(j)
                    .map_err(|_| err(Condition::JidMalformed, "invalid jid"))?
                    .to_bare()
                    .to_string(),
                (None, Some(n)) => self
                    .occupants
                    .get(n)
                    .map(|o| o.real.clone())
                    .ok_or_else(|| err(Condition::ItemNotFound, "no such occupant"))?,
                (None, None) => return Err(err(Condition::BadRequest, "an item needs a jid")),
            };
            let old = self.affiliation(&jid);
            rules::may_set_affiliation(actor.1, old, new)?;
            return Ok(Change::Affiliation { jid, aff: new });
        }
        let role = role_of(item)?;
        let nick = item
            .get_attr("nick")
            .ok_or_else(|| err(Condition::BadRequest, "a role item needs a nick"))?;
        let target = self
            .occupants
            .get(nick)
            .ok_or_else(|| err(Condition::ItemNotFound, "no such occupant"))?;
        rules::may_set_role(actor, (target.role, self.affiliation(&target.real)), role)?;
        Ok(Change::Role {
            nick: nick.to_owned(),
            role,
        })
    }

    /// Give `jid` the affiliation `aff` and bring its occupants' roles in line (§9.1, §9.3,
    /// §9.4, §10.3–§10.7): outcasts are banned (301), non-members of a members-only room
    /// leave (321).
    fn set_affiliation(&mut self, actor: &str, jid: &str, aff: Affiliation, reason: &str) {
        self.rec.set_affiliation(jid, aff);
        self.save();
        // A domain ban bans the domain's users too (unless they have an affiliation).
        let nicks: Vec<String> = self
            .occupants
            .iter()
            .filter(|(_, o)| {
                o.real == jid
                    || (aff == Affiliation::Outcast
                        && self.affiliation(&o.real) == Affiliation::Outcast)
            })
            .map(|(n, _)| n.clone())
            .collect();
        if nicks.is_empty() && self.rec.config.members_only {
            self.announce_affiliation(jid, aff);
        }
        for nick in nicks {
            if aff == Affiliation::Outcast {
                self.remove_occupant(&nick, &[status::BANNED], actor, reason);
            } else if self.rec.config.members_only && aff < Affiliation::Member {
                self.remove_occupant(&nick, &[status::AFFILIATION_LOST], actor, reason);
            } else if let Some(o) = self.occupants.get_mut(&nick) {
                let default = rules::default_role(aff, &self.rec.config);
                let old = o.role;
                o.role = match (aff >= Affiliation::Admin, o.role) {
                    (true, _) => Role::Moderator,
                    (false, Role::Moderator) => default,
                    (false, Role::Visitor) if aff >= Affiliation::Member => Role::Participant,
                    (false, r) => r,
                };
                self.role_changed(&nick, old);
            }
        }
    }

    /// In a members-only room, occupants who may see real JIDs hear of affiliation changes
    /// of people who are not in the room (the member list, for e.g. OMEMO group chats).
    pub(super) fn announce_affiliation(&self, jid: &str, aff: Affiliation) {
        let x = Element::new("x", NS_USER).child(crate::muc::presence::item(
            aff,
            Role::None,
            Some(jid),
            None,
        ));
        for (to, role) in self.recipients() {
            if self.sees_jids(role) {
                let m = Element::new("message", ns::CLIENT)
                    .attr("from", self.jid.as_str())
                    .attr("to", to)
                    .attr("id", crate::xmpp::random_id(9))
                    .child(x.clone());
                self.env.send(m);
            }
        }
    }

    fn owner_get(&self, real: &str) -> Result<Option<Element>, StanzaError> {
        if self.affiliation(real) != Affiliation::Owner {
            return Err(err(
                Condition::Forbidden,
                "only owners may configure the room",
            ));
        }
        let form = form::config_form(
            &self.rec.config,
            self.env.cfg.max_occupants,
            self.archives_offered(),
        );
        Ok(Some(Element::new("query", NS_OWNER).child(form)))
    }

    /// Configuration (§10.1–§10.2) and destruction (§10.9). Answers the IQ itself: a
    /// destroyed room answers before it goes.
    fn owner_set(&mut self, real: &str, el: &Element, q: &Element) {
        if self.affiliation(real) != Affiliation::Owner {
            return self.error(
                el,
                err(Condition::Forbidden, "only owners may configure the room"),
            );
        }
        if let Some(d) = q.get_child("destroy", NS_OWNER) {
            self.env.send(iq_result(el, None));
            let alt = d.get_attr("jid").map(str::to_owned);
            let reason = d.get_child("reason", NS_OWNER).map(|r| r.text_content());
            return self.destroy(alt.as_deref(), reason.as_deref());
        }
        let Some(x) = q.get_child("x", ns::DATA_FORMS) else {
            return self.error(el, err(Condition::BadRequest, "expected a form or destroy"));
        };
        if x.get_attr("type") == Some("cancel") {
            self.env.send(iq_result(el, None));
            if self.locked {
                self.destroy(None, None);
            }
            return;
        }
        let new = match form::apply(
            &self.rec.config,
            x,
            self.env.cfg.max_occupants,
            self.archives_offered(),
        ) {
            Ok(c) => c,
            Err(e) => return self.error(el, e),
        };
        self.env.send(iq_result(el, None));
        self.apply_config(new);
    }

    fn apply_config(&mut self, new: crate::muc::RoomConfig) {
        let codes = form::change_codes(&self.rec.config, &new);
        let now_members_only = new.members_only && !self.rec.config.members_only;
        let was_persistent = self.rec.config.persistent;
        self.rec.config = new;
        let unlocked = std::mem::replace(&mut self.locked, false);
        if was_persistent && !self.rec.config.persistent && self.stored {
            if let Err(e) = self.env.store.muc.remove(&self.jid) {
                log::error!("muc: removing a room record failed: {e}");
            }
            self.stored = false;
        }
        self.save();
        self.update_listing();
        if now_members_only {
            let outsiders: Vec<String> = self
                .occupants
                .iter()
                .filter(|(_, o)| self.affiliation(&o.real) < Affiliation::Member)
                .map(|(n, _)| n.clone())
                .collect();
            for nick in outsiders {
                self.remove_occupant(&nick, &[status::MEMBERS_ONLY], "", "");
            }
        }
        if unlocked {
            let to: Vec<String> = self.recipients().map(|(t, _)| t.to_owned()).collect();
            for t in to {
                self.send_subject(&t);
            }
        } else {
            self.status_message(&codes);
        }
    }
}
