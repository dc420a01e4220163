//! The group-chat service (XEP-0045): one [`MucService`] actor per host owns the service
//! domain (`conference.<host>`), answers for the domain itself (disco, the list of public
//! rooms) and hands every stanza for a room to that room's [`room::Room`] actor, starting it
//! when needed (from the `muc` tree for persistent rooms, or as a new room when an allowed
//! user enters one that does not exist). Rooms fan their stanzas out to the occupants
//! themselves: straight into a local session's mailbox through the session directory, through
//! the router for everyone else. Rooms run on the service's own thread, which the router's
//! thread stops and joins when it ends. A room that is empty and idle stops; the service
//! counts the stanzas it handed each room so that a room never stops with one still on its
//! way. A destroyed room (temporary rooms are destroyed when the last occupant leaves) hands
//! what still reaches it back to the service, which then treats it as for a room that does
//! not exist, until the service has stopped it.
//!
//! ```text
//!  Router --ToService--> MucService --ToService--> Room --ToSession--> local sessions
//!                                                      --Route--> Router (remote occupants)
//!  Room --RoomEvent (joined, left, idle, gone, bounce)--> MucService --StopRoom--> Room
//!  Router --AccountGone--> MucService --Forget--> Room
//! ```

mod admin;
mod archive;
mod enter;
pub mod room;
mod talk;

use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::directory::SessionDirectory;
use super::messages::{AccountGone, Prepared, Route, ServiceShutdown, ToService, ToSession};
use super::{ServiceContext, ServiceInbox, ServiceSpec};
use crate::config::MucConfig;
use crate::muc::{RoomRecord, NS_MUC};
use crate::store::Store;
use crate::xml::Element;
use crate::xmpp::{error_reply, iq_result, ns, Condition, StanzaError};
use room::Room;

/// What the rooms of one service share.
pub struct Env {
    /// The service domain.
    pub domain: String,
    /// The server's shared state (for answering on behalf of local accounts).
    pub shared: std::sync::Arc<crate::shared::Shared>,
    pub store: Store,
    pub cfg: MucConfig,
    /// The account hosts (whose users count as local for `muc.create_rooms`).
    pub destinations: crate::destinations::Destinations,
    pub route: Recipient<Route>,
    pub directory: SessionDirectory,
    pub service: Recipient<RoomEvent>,
}

impl Env {
    /// Send `stanza` (from and to set) to its recipient: a bound local session directly,
    /// anyone else through the router.
    pub fn send(&self, stanza: Element) {
        let full = stanza
            .get_attr("to")
            .filter(|t| t.contains('/'))
            .map(str::to_owned);
        let stanza = match full {
            Some(to) => match self.directory.try_deliver(&to, stanza) {
                Ok(()) => return,
                Err(s) => s,
            },
            None => stanza,
        };
        if let Some(r) = Route::of(stanza) {
            self.route.do_send(r);
        }
    }

    /// Send the prepared stanza `p` to `to`: into a bound local session's mailbox as it is
    /// (serialised once for everyone), through the router as an element otherwise.
    pub fn send_prepared(&self, p: &std::sync::Arc<Prepared>, to: &str) {
        let msg = ToSession::Prepared(p.clone(), to.to_owned());
        if let Err(ToSession::Prepared(p, to)) = self.directory.try_send(to, msg) {
            if let Some(r) = Route::of(p.element_for(&to)) {
                self.route.do_send(r);
            }
        }
    }

    /// Answer `stanza` with `err` (nothing for errors). A presence error carries the MUC
    /// `<x/>`, as in XEP-0045's examples (§7.2.6–§7.2.11, §7.6): clients match on it
    /// (slixmpp's `join_muc_wait` never sees a refused entry without it).
    pub fn error(&self, stanza: &Element, err: &StanzaError) {
        if let Some(mut r) = error_reply(stanza, err) {
            if r.name == "presence" {
                let x = crate::xml::Node::Element(Element::new("x", NS_MUC));
                r.children.insert(0, x);
            }
            self.send(r);
        }
    }
}

/// Room -> service.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RoomEvent {
    pub room: String,
    pub kind: RoomEventKind,
}

pub enum RoomEventKind {
    /// The session entered the room.
    Joined(String),
    /// The session left the room.
    Left(String),
    /// The room is empty and idle after handling `handled` stanzas: stop it unless more
    /// are on their way.
    Idle(u64),
    /// The room was destroyed: forget it and stop it. Stanzas handed to it before come
    /// back as [`RoomEventKind::Bounce`].
    Gone,
    /// A stanza a destroyed room got: handle it as if the room had never been handed it.
    Bounce(ToService),
}

/// Service -> room: stop now (empty and idle, nothing on its way).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopRoom;

/// Service -> room: these accounts were deleted.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Forget(pub std::sync::Arc<HashSet<String>>);

/// A running room and the number of stanzas handed to it.
struct Live {
    addr: Addr<Room>,
    sent: u64,
    listing: room::Listing,
}

/// The service actor of one group-chat domain.
pub struct MucService {
    env: Rc<Env>,
    /// The account host the service belongs to.
    host: String,
    rooms: HashMap<String, Live>,
    /// Rooms each session (full JID) is in.
    joined: HashMap<String, HashSet<String>>,
    /// When each account created its recent rooms (for `muc.max_rooms_created_per_hour`).
    created: HashMap<String, VecDeque<Instant>>,
}

/// The group-chat service of `host` at `domain`, to start with the server.
pub fn spec(domain: String, host: String) -> ServiceSpec {
    ServiceSpec {
        domain: domain.clone(),
        start: Box::new(move |cx: ServiceContext| {
            let arbiter = actix_rt::Arbiter::new();
            let addr = MucService::start_in_arbiter(&arbiter.handle(), move |ctx| {
                MucService::new(&cx, domain, host, ctx.address().recipient())
            });
            // The service's thread lives as long as the thread that starts it (the router's):
            // when that one ends at shutdown, it stops and joins the service's, so that no
            // handle on the database outlives the server (the data directory can be opened
            // again at once).
            let own = OwnThread(Some(arbiter));
            actix_rt::spawn(async move {
                let _own = own;
                std::future::pending::<()>().await
            });
            ServiceInbox {
                stanzas: addr.clone().recipient(),
                account_gone: Some(addr.clone().recipient()),
                shutdown: Some(addr.recipient()),
            }
        }),
    }
}

/// A thread of the service's own, stopped and joined when dropped.
struct OwnThread(Option<actix_rt::Arbiter>);

impl Drop for OwnThread {
    fn drop(&mut self) {
        if let Some(a) = self.0.take() {
            a.stop();
            let _ = a.join();
        }
    }
}

impl MucService {
    fn new(
        cx: &ServiceContext,
        domain: String,
        host: String,
        me: Recipient<RoomEvent>,
    ) -> MucService {
        MucService {
            env: Rc::new(Env {
                domain,
                shared: cx.shared.clone(),
                store: cx.shared.store.clone(),
                cfg: cx.shared.config.muc.clone(),
                destinations: cx.shared.destinations.clone(),
                route: cx.route.clone(),
                directory: cx.directory.clone(),
                service: me,
            }),
            host,
            rooms: HashMap::new(),
            joined: HashMap::new(),
            created: HashMap::new(),
        }
    }

    /// Hand `msg` to the room `room`, starting it when it is stored or may be created.
    fn hand_to_room(&mut self, room: String, msg: ToService) {
        if let Some(live) = self.rooms.get_mut(&room) {
            live.sent += 1;
            live.addr.do_send(msg);
            return;
        }
        let stored = match self.env.store.muc.get(&room) {
            Ok(r) => r,
            Err(e) => {
                return self
                    .env
                    .error(&msg.stanza, &e.stanza_error("muc room load"))
            }
        };
        let (rec, creator) = match stored {
            Some(rec) => (rec, None),
            None => match self.may_create(&msg) {
                Ok(creator) => {
                    let mut rec = RoomRecord::default();
                    rec.config.max_users = rec.config.max_users.min(self.env.cfg.max_occupants);
                    (rec, Some(creator))
                }
                // Leaving, or answering, a room that is gone needs no answer.
                Err(_) if !expects_answer(&msg.stanza) => return,
                Err(e) => return self.env.error(&msg.stanza, &e),
            },
        };
        let listing = room::Listing::default();
        let addr = Room::new(
            room.clone(),
            rec,
            creator,
            self.env.clone(),
            listing.clone(),
        )
        .start();
        addr.do_send(msg);
        self.rooms.insert(
            room,
            Live {
                addr,
                sent: 1,
                listing,
            },
        );
    }

    /// A stanza for a room that does not exist: may its sender create it by entering?
    /// Returns the creator's bare JID.
    fn may_create(&mut self, msg: &ToService) -> Result<String, StanzaError> {
        let entering = msg.stanza.name == "presence"
            && msg.stanza.get_attr("type").is_none()
            && msg.to.resource().is_some();
        if !entering {
            return Err(StanzaError::new(Condition::ItemNotFound).with_text("no such room"));
        }
        let creator = msg.from.to_bare().to_string();
        let local = self
            .env
            .destinations
            .is_account_host(msg.from.domain().as_str());
        if !self.env.cfg.may_create(&creator, local) {
            return Err(StanzaError::new(Condition::NotAllowed)
                .with_text("you may not create rooms on this service"));
        }
        let hour = Duration::from_secs(3600);
        let now = Instant::now();
        let times = self.created.entry(creator.clone()).or_default();
        while times.front().is_some_and(|t| now.duration_since(*t) > hour) {
            times.pop_front();
        }
        if times.len() >= self.env.cfg.max_rooms_created_per_hour as usize {
            return Err(StanzaError::new(Condition::PolicyViolation)
                .with_text("too many new rooms this hour; try again later"));
        }
        times.push_back(now);
        Ok(creator)
    }

    /// Would entering `room` put the session `from` in more rooms than allowed?
    fn too_many_rooms(&self, from: &str, room: &str) -> bool {
        self.joined.get(from).is_some_and(|rooms| {
            !rooms.contains(room) && rooms.len() >= self.env.cfg.max_rooms_per_session
        })
    }

    /// A stanza for the service's own domain: disco, ping; nothing else.
    fn for_service(&self, el: &Element) {
        if el.name != "iq" {
            if el.name == "message" {
                self.env
                    .error(el, &StanzaError::new(Condition::ServiceUnavailable));
            }
            return;
        }
        let payload = match crate::xmpp::iq_payload(el) {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => return self.env.error(el, &e),
        };
        let get = el.get_attr("type") == Some("get");
        let answer = match (payload.ns.as_str(), payload.name.as_str(), get) {
            (ns::DISCO_INFO, "query", true) if payload.get_attr("node").is_none() => {
                Some(self.disco_info())
            }
            (ns::DISCO_ITEMS, "query", true) if payload.get_attr("node").is_none() => {
                match self.public_rooms() {
                    Ok(q) => Some(q),
                    Err(e) => return self.env.error(el, &e),
                }
            }
            (ns::PING, "ping", true) => None,
            _ => {
                return self
                    .env
                    .error(el, &StanzaError::new(Condition::ServiceUnavailable))
            }
        };
        self.env.send(iq_result(el, answer));
    }

    fn disco_info(&self) -> Element {
        let mut q = Element::new("query", ns::DISCO_INFO).child(
            Element::new("identity", ns::DISCO_INFO)
                .attr("category", "conference")
                .attr("type", "text")
                .attr("name", "Group chats"),
        );
        for f in [
            ns::DISCO_INFO,
            ns::DISCO_ITEMS,
            NS_MUC,
            ns::PING,
            crate::muc::OCCUPANT_ID,
            crate::muc::SELF_PING,
        ] {
            q = q.child(Element::new("feature", ns::DISCO_INFO).attr("var", f));
        }
        q
    }

    /// The public rooms: stored ones and live ones (temporary rooms are only live).
    fn public_rooms(&self) -> Result<Element, StanzaError> {
        let stored = self
            .env
            .store
            .muc
            .of_service(&self.env.domain)
            .map_err(|e| e.stanza_error("muc room list"))?;
        let mut rooms: std::collections::BTreeMap<String, String> = stored
            .into_iter()
            .filter(|(_, r)| r.config.public)
            .map(|(j, r)| (j, r.config.name))
            .collect();
        for (jid, live) in &self.rooms {
            match live.listing.borrow().as_ref() {
                Some(name) => rooms.insert(jid.clone(), name.clone()),
                None => rooms.remove(jid),
            };
        }
        let mut q = Element::new("query", ns::DISCO_ITEMS);
        for (jid, name) in rooms {
            let mut item = Element::new("item", ns::DISCO_ITEMS).attr("jid", jid.as_str());
            if !name.is_empty() {
                item.set_attr("name", name);
            }
            q = q.child(item);
        }
        Ok(q)
    }
}

impl Actor for MucService {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1 << 20);
        log::info!("group chat service for {} started", self.host);
        // Unused persistent rooms go at start and once a day (as inactive accounts do).
        self.delete_unused();
        ctx.run_interval(Duration::from_secs(86_400), |me, _| {
            me.delete_unused();
            // Creation times older than the hour they count for.
            let hour = Duration::from_secs(3600);
            me.created
                .retain(|_, t| t.back().is_some_and(|t| t.elapsed() < hour));
        });
    }
}

impl MucService {
    /// Delete the stored rooms nobody entered for `muc.delete_unused_rooms_after_days`
    /// (rooms that are running are in use and stay).
    fn delete_unused(&mut self) {
        let days = self.env.cfg.delete_unused_rooms_after_days;
        if days == 0 {
            return;
        }
        let before = crate::store::now_ms() / 1000 - days.saturating_mul(86_400).min(u64::MAX / 2);
        let unused = match self.env.store.muc.unused_since(before) {
            Ok(u) => u,
            Err(e) => return log::error!("muc: listing unused rooms failed: {e}"),
        };
        let mut n = 0;
        for room in unused {
            if crate::xmpp::domain_part(&room) == self.env.domain && !self.rooms.contains_key(&room)
            {
                n += usize::from(self.env.store.muc.remove(&room).unwrap_or(false));
            }
        }
        if n > 0 {
            log::info!("group chat: deleted {n} rooms unused for {days} days");
        }
    }
}

impl Handler<ToService> for MucService {
    type Result = ();
    fn handle(&mut self, msg: ToService, _: &mut Context<Self>) {
        self.on_stanza(msg);
    }
}

impl MucService {
    /// A stanza for the service or one of its rooms.
    fn on_stanza(&mut self, msg: ToService) {
        let Some(node) = msg.to.node() else {
            return self.for_service(&msg.stanza);
        };
        let room = format!("{}@{}", node.as_str(), self.env.domain);
        let from = msg.from.as_str();
        let entering = msg.stanza.name == "presence" && msg.stanza.get_attr("type").is_none();
        if entering && msg.to.resource().is_some() && self.too_many_rooms(from, &room) {
            let e = StanzaError::new(Condition::PolicyViolation)
                .with_text("you are in too many rooms at once");
            return self.env.error(&msg.stanza, &e);
        }
        self.hand_to_room(room, msg);
    }
}

impl Handler<RoomEvent> for MucService {
    type Result = ();
    fn handle(&mut self, ev: RoomEvent, _: &mut Context<Self>) {
        match ev.kind {
            RoomEventKind::Joined(full) => {
                self.joined.entry(full).or_default().insert(ev.room);
            }
            RoomEventKind::Left(full) => {
                if let Some(rooms) = self.joined.get_mut(&full) {
                    rooms.remove(&ev.room);
                    if rooms.is_empty() {
                        self.joined.remove(&full);
                    }
                }
            }
            RoomEventKind::Idle(handled) => {
                if self.rooms.get(&ev.room).is_some_and(|l| l.sent == handled) {
                    if let Some(l) = self.rooms.remove(&ev.room) {
                        l.addr.do_send(StopRoom);
                    }
                }
            }
            RoomEventKind::Gone => {
                if let Some(l) = self.rooms.remove(&ev.room) {
                    l.addr.do_send(StopRoom);
                }
            }
            RoomEventKind::Bounce(msg) => self.on_stanza(msg),
        }
    }
}

impl Handler<ServiceShutdown> for MucService {
    type Result = ResponseFuture<()>;
    /// Every room tells its occupants (332) before the server closes the streams.
    fn handle(&mut self, _: ServiceShutdown, _: &mut Context<Self>) -> Self::Result {
        let told: Vec<_> = self
            .rooms
            .values()
            .map(|l| l.addr.send(room::Shutdown))
            .collect();
        Box::pin(async move {
            futures_util::future::join_all(told).await;
        })
    }
}

impl Handler<AccountGone> for MucService {
    type Result = ();
    fn handle(&mut self, msg: AccountGone, _: &mut Context<Self>) {
        let jids = std::sync::Arc::new(HashSet::from([msg.jid.to_string()]));
        for live in self.rooms.values() {
            live.addr.do_send(Forget(jids.clone()));
        }
    }
}

/// Does `stanza` want an error back when its room does not exist? Not presences other than
/// available ones (leaving a room that is gone), nor IQ results.
fn expects_answer(stanza: &Element) -> bool {
    match (stanza.name.as_str(), stanza.get_attr("type")) {
        ("presence", t) => t.is_none(),
        ("iq", t) => matches!(t, Some("get" | "set")),
        _ => true,
    }
}

/// The `<x xmlns='…muc'/>` of an entering presence, if any.
pub fn muc_x(presence: &Element) -> Option<&Element> {
    presence.get_child("x", NS_MUC)
}
