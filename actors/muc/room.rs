//! One group-chat room: an actor holding the room's record (configuration, affiliations,
//! subject), its occupants and its in-memory history. It sorts what the service hands it by
//! kind: presence (entering, leaving, nick changes: `enter.rs`), messages (group messages,
//! subjects, private messages, invitations, voice requests: `talk.rs`) and IQs (disco, the
//! admin and owner protocols, self-ping, IQs to occupants: `admin.rs`).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::{Env, Forget, RoomEvent, RoomEventKind, StopRoom};
use crate::actors::messages::{Prepared, ToService};
use crate::muc::history::History;
use crate::muc::presence::{self, status};
use crate::muc::{Affiliation, Role, RoomRecord, OCCUPANT_ID};
use crate::xml::Element;
use crate::xmpp::{ns, StanzaError};

/// How long an empty persistent room stays up (its history with it).
const IDLE: Duration = Duration::from_secs(600);

/// One session of an occupant: its full JID and its last presence (what the room passes on).
pub struct Session {
    pub jid: String,
    pub presence: Vec<crate::xml::Node>,
}

/// Someone in the room under one nick, with one or more sessions (XEP-0045 §7.2.12).
pub struct Occupant {
    /// Bare real JID.
    pub real: String,
    pub sessions: Vec<Session>,
    pub role: Role,
    /// XEP-0421 occupant id: stable per room and real bare JID, reveals neither.
    pub id: String,
    /// Message rate: tokens left and when they were counted.
    tokens: f64,
    counted: Instant,
}

/// An IQ passed on to an occupant, waiting for its answer.
pub struct PendingIq {
    /// The asker's full JID and own id.
    pub from: String,
    pub id: String,
    /// The room JID the asker addressed (the answer comes from it).
    pub to: String,
    /// Where the request went (the session, or the account for vCards): only it may answer.
    pub target: String,
    pub since: Instant,
}

/// The room's public listing, shared with the service (same thread): its name while the
/// room is public and open.
pub type Listing = Rc<RefCell<Option<String>>>;

pub struct Room {
    pub jid: String,
    pub rec: RoomRecord,
    /// Stored in the `muc` tree (persistent rooms, or once were).
    pub stored: bool,
    /// Created and not yet configured by its owner (XEP-0045 §10.1.2): only the owner may
    /// enter.
    pub locked: bool,
    /// The creator, until it has entered the new room (a new room it could not enter goes
    /// at once, and is not listed meanwhile).
    pub creator: Option<String>,
    pub occupants: BTreeMap<String, Occupant>,
    /// Full JID -> nick.
    pub sessions: HashMap<String, String>,
    pub history: History,
    pub env: Rc<Env>,
    pub listing: Listing,
    pub pending: HashMap<String, PendingIq>,
    /// Stanzas handled (see [`RoomEventKind::Idle`]).
    handled: u64,
    empty_since: Option<Instant>,
    /// Destroyed (or gone when its last occupant left): stanzas still on their way are
    /// handed back to the service until it stops the room.
    pub destroyed: bool,
}

impl Room {
    pub fn new(
        jid: String,
        rec: RoomRecord,
        creator: Option<String>,
        env: Rc<Env>,
        listing: Listing,
    ) -> Room {
        let history = History::new(env.cfg.history_messages);
        Room {
            jid,
            stored: creator.is_none(),
            locked: false,
            creator,
            rec,
            occupants: BTreeMap::new(),
            sessions: HashMap::new(),
            history,
            env,
            listing,
            pending: HashMap::new(),
            handled: 0,
            empty_since: Some(Instant::now()),
            destroyed: false,
        }
    }

    /// `room@service/nick`.
    pub fn occupant_jid(&self, nick: &str) -> String {
        format!("{}/{}", self.jid, nick)
    }

    /// The real bare JID's affiliation.
    pub fn affiliation(&self, real: &str) -> Affiliation {
        self.rec.affiliation(real)
    }

    /// The occupant a session is, if it is in the room.
    pub fn occupant_of(&self, full: &str) -> Option<(&String, &Occupant)> {
        let nick = self.sessions.get(full)?;
        self.occupants.get_key_value(nick)
    }

    /// A new occupant record.
    pub fn new_occupant(&self, real: &str, role: Role) -> Occupant {
        use base64::Engine;
        let id = self.env.store.keyed_hash(
            "muc occupant-id",
            format!("{}\0{real}", self.jid).as_bytes(),
        );
        Occupant {
            real: real.to_owned(),
            sessions: Vec::new(),
            role,
            id: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&id[..16]),
            tokens: f64::from(self.env.cfg.max_messages_per_second) * 2.0,
            counted: Instant::now(),
        }
    }

    /// May the occupant send a message now (`muc.max_messages_per_second`, bursts of twice
    /// that)? Takes a token if so.
    pub fn take_token(&mut self, nick: &str) -> bool {
        let rate = f64::from(self.env.cfg.max_messages_per_second);
        let Some(o) = self.occupants.get_mut(nick) else {
            return false;
        };
        let now = Instant::now();
        o.tokens = (o.tokens + now.duration_since(o.counted).as_secs_f64() * rate).min(rate * 2.0);
        o.counted = now;
        if o.tokens >= 1.0 {
            o.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Every session of every occupant, with the occupant's role.
    pub fn recipients(&self) -> impl Iterator<Item = (&str, Role)> {
        self.occupants
            .values()
            .flat_map(|o| o.sessions.iter().map(move |s| (s.jid.as_str(), o.role)))
    }

    /// Send a copy of `stanza` to every session in the room.
    pub fn broadcast(&self, stanza: &Element) {
        let p = std::sync::Arc::new(Prepared::new(stanza.clone()));
        for (to, _) in self.recipients() {
            self.env.send_prepared(&p, to);
        }
    }

    /// `<occupant-id/>` of the occupant `nick`.
    pub fn occupant_id(&self, nick: &str) -> Option<Element> {
        let o = self.occupants.get(nick)?;
        Some(Element::new("occupant-id", OCCUPANT_ID).attr("id", o.id.as_str()))
    }

    /// May the occupant with `role` see real JIDs?
    pub fn sees_jids(&self, role: Role) -> bool {
        self.rec.config.whois_anyone || role == Role::Moderator
    }

    /// Save the record if the room is (or was) stored, or is persistent; a storage failure
    /// is logged and the room goes on.
    pub fn save(&mut self) {
        if !self.rec.config.persistent && !self.stored {
            return;
        }
        if let Err(e) = self.env.store.muc.put(&self.jid, &self.rec) {
            log::error!("muc: saving a room failed: {e}");
            return;
        }
        self.stored = true;
        self.update_listing();
    }

    /// Keep the service's view of the listing in step.
    pub fn update_listing(&self) {
        let c = &self.rec.config;
        let listed = c.public && !self.locked && self.creator.is_none();
        *self.listing.borrow_mut() = listed.then(|| c.name.clone());
    }

    /// Tell the service.
    pub fn event(&self, kind: RoomEventKind) {
        self.env.service.do_send(RoomEvent {
            room: self.jid.clone(),
            kind,
        });
    }

    /// Every session of every occupant gets its own unavailable presence, with the `<x/>`
    /// `x_of` makes for its occupant (destruction, shutdown).
    fn tell_everyone_they_left(&self, x_of: impl Fn(&Occupant) -> Element) {
        for (nick, o) in &self.occupants {
            let x = x_of(o);
            for s in &o.sessions {
                let p = Element::new("presence", ns::CLIENT)
                    .attr("from", self.occupant_jid(nick))
                    .attr("to", s.jid.as_str())
                    .attr("type", "unavailable")
                    .child(x.clone());
                self.env.send(p);
            }
        }
    }

    /// Destroy the room (XEP-0045 §10.9): everyone leaves with `<destroy/>`, the record goes,
    /// and the service hears of it ([`RoomEventKind::Gone`]) and stops the actor.
    pub fn destroy(&mut self, alternate: Option<&str>, reason: Option<&str>) {
        let mut d = Element::new("destroy", crate::muc::NS_USER);
        if let Some(a) = alternate {
            d.set_attr("jid", a);
        }
        if let Some(r) = reason.filter(|r| !r.is_empty()) {
            d = d.child(Element::new("reason", crate::muc::NS_USER).text(r));
        }
        self.tell_everyone_they_left(|_| {
            Element::new("x", crate::muc::NS_USER)
                .child(presence::item(Affiliation::None, Role::None, None, None))
                .child(d.clone())
        });
        for s in self.occupants.values().flat_map(|o| &o.sessions) {
            self.event(RoomEventKind::Left(s.jid.clone()));
        }
        self.occupants.clear();
        self.sessions.clear();
        // A temporary room has no record, but may have an archive.
        if self.stored || self.rec.config.archive {
            if let Err(e) = self.env.store.muc.remove(&self.jid) {
                log::error!("muc: removing a destroyed room failed: {e}");
            }
        }
        *self.listing.borrow_mut() = None;
        self.destroyed = true;
        self.event(RoomEventKind::Gone);
    }

    /// The room became empty: a temporary room goes at once, a persistent one when idle.
    pub fn emptied(&mut self) {
        if !self.occupants.is_empty() {
            return;
        }
        if !self.rec.config.persistent {
            return self.destroy(None, None);
        }
        self.empty_since = Some(Instant::now());
    }

    fn check_idle(&mut self) {
        if self.occupants.is_empty() && self.empty_since.is_some_and(|t| t.elapsed() >= IDLE) {
            self.event(RoomEventKind::Idle(self.handled));
        }
        let old = Duration::from_secs(60);
        self.pending.retain(|_, p| p.since.elapsed() < old);
    }

    /// Reply to `stanza` with `err`.
    pub fn error(&self, stanza: &Element, err: StanzaError) {
        self.env.error(stanza, &err);
    }

    /// Room-wide status message (e.g. configuration changes, §10.2.1).
    pub fn status_message(&self, codes: &[u16]) {
        if codes.is_empty() {
            return;
        }
        let mut x = Element::new("x", crate::muc::NS_USER);
        for c in codes {
            x = x.child(Element::new("status", crate::muc::NS_USER).attr("code", c.to_string()));
        }
        let m = Element::new("message", ns::CLIENT)
            .attr("from", self.jid.as_str())
            .attr("type", "groupchat")
            .attr("id", crate::xmpp::random_id(9))
            .child(x);
        self.broadcast(&m);
    }

    /// Forget deleted accounts: their affiliations go; a room they alone owned is
    /// destroyed.
    fn forget(&mut self, jids: &HashSet<String>) {
        if !self.rec.affiliations.keys().any(|j| jids.contains(j)) {
            return;
        }
        let owners: Vec<&str> = self.rec.owners().collect();
        if !owners.is_empty() && owners.iter().all(|o| jids.contains(*o)) {
            return self.destroy(None, Some("the owner's account was deleted"));
        }
        self.rec.affiliations.retain(|j, _| !jids.contains(j));
        self.save();
    }
}

impl Actor for Room {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        self.update_listing();
        ctx.run_interval(Duration::from_secs(30), |me, _| me.check_idle());
    }
}

impl Handler<ToService> for Room {
    type Result = ();
    fn handle(&mut self, msg: ToService, _: &mut Context<Self>) {
        self.handled += 1;
        if self.destroyed {
            // Handed over before the service heard that the room is gone: back to the
            // service, which treats it as for a room that does not exist (or a new one).
            return self.event(RoomEventKind::Bounce(msg));
        }
        match msg.stanza.name.as_str() {
            "presence" => self.on_presence(msg),
            "message" => self.on_message(msg),
            "iq" => self.on_iq(msg),
            _ => {}
        }
        if self.creator.is_some() {
            // A new room whose creator was refused (a nick too long, ...): it never was.
            return self.destroy(None, None);
        }
        if !self.occupants.is_empty() {
            self.empty_since = None;
        }
    }
}

/// Service -> room: the server is stopping.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for Room {
    type Result = ();
    /// Each session of each occupant gets its own unavailable presence with 332 (XEP-0045
    /// §15.6.2: removed because the service is shutting down).
    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) {
        self.tell_everyone_they_left(|o| {
            let item = presence::item(self.affiliation(&o.real), Role::None, None, None);
            presence::user_x(item, &[status::SHUTDOWN, status::SELF])
        });
    }
}

impl Handler<StopRoom> for Room {
    type Result = ();
    fn handle(&mut self, _: StopRoom, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Forget> for Room {
    type Result = ();
    fn handle(&mut self, msg: Forget, _: &mut Context<Self>) {
        if !self.destroyed {
            self.forget(&msg.0);
        }
    }
}

/// Status codes of a self-presence on entering: 110, 100 (non-anonymous), 201 (created).
pub fn entering_codes(non_anonymous: bool, created: bool) -> Vec<u16> {
    let mut c = vec![status::SELF];
    if non_anonymous {
        c.push(status::NON_ANONYMOUS);
    }
    if created {
        c.push(status::CREATED);
    }
    c
}
