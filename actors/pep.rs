//! The PEP service (XEP-0163): every account's bare JID is a pubsub service whose nodes carry
//! OMEMO keys, avatars, nicknames, bookmarks and the like.
//!
//! One actor on the storage arbiter owns the nodes (`src/store/pep.rs`) and knows, per
//! account, which resources should get notifications: the account's own available resources
//! and the contacts whose available presence reached it, each with its XEP-0115 caps. Which
//! nodes a caps version wants (`node+notify` features) is asked once per version with a
//! disco#info query from the server and checked against the version's hash. A publish is
//! sent to every such resource that wants the node and may see it (access model); a resource
//! that comes online gets the last item of each node it wants.
//!
//! The protocol parsing is in `src/services/pep.rs`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::messages::Route;
use crate::services::avatar;
use crate::services::pep::{self as proto, Options, Request, MAX_ITEMS};
use crate::shared::Shared;
use crate::store::pep::Node;
use crate::xml::{parse_element, Element};
use crate::xmpp::{error_reply, iq_result, ns, random_id, BareJid, Condition, Jid, StanzaError};

/// Connection or S2sIn -> Pep: a pubsub IQ for an account's PEP service, `from` (the
/// requester) and `to` (the account's bare JID) set. The answer is returned.
#[derive(Message, Debug)]
#[rtype(result = "Option<Element>")]
pub struct PepIq {
    pub iq: Element,
}

/// Router -> Pep: `from` (a full JID) is now available to the account `owner` with these
/// caps (hash, node, ver), or no longer (`caps` = `None`); an empty `from`: the account went
/// offline.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct PepPresence {
    pub owner: BareJid,
    pub from: String,
    pub caps: Option<(String, String, String)>,
}

/// Connection or S2sIn -> Pep: the answer to one of our caps disco#info queries.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct CapsAnswer {
    pub iq: Element,
}

/// Connection -> Pep: the user stores XEP-0048 bookmarks in private storage or sets a vCard
/// (the IQ, `from` set): store it, keep the PEP form in step (XEP-0411 bookmarks, XEP-0398
/// avatar), tell those who want to know, and answer.
#[derive(Message, Debug)]
#[rtype(result = "Option<Element>")]
pub struct ClientDataSet {
    pub iq: Element,
}

/// Prefix of the ids of our caps queries.
pub const CAPS_QUERY_ID: &str = "pepcaps-";

/// The Pep actor's inboxes.
#[derive(Clone)]
pub struct PepHandle {
    pub iq: Recipient<PepIq>,
    pub client_data_set: Recipient<ClientDataSet>,
    pub presence: Recipient<PepPresence>,
    pub caps: Recipient<CapsAnswer>,
}

/// Most bytes of PEP data per account.
const MAX_BYTES: usize = 4 * 1024 * 1024;
/// A caps query unanswered this long may be asked again.
const QUERY_RETRY: Duration = Duration::from_secs(60);

pub struct PepService {
    shared: Arc<Shared>,
    route: Recipient<Route>,
    /// Per account: available resources that may get notifications -> their caps version.
    recipients: HashMap<BareJid, HashMap<String, String>>,
    /// Caps version -> the nodes it wants notifications for.
    caps: HashMap<String, Arc<HashSet<String>>>,
    /// Caps queries in flight: id -> (version, when asked).
    queries: HashMap<String, (String, Instant)>,
    /// Versions being asked for.
    asking: HashMap<String, Instant>,
}

fn parts(j: &BareJid) -> (&str, &str) {
    (
        j.domain().as_str(),
        j.node().map(|n| n.as_str()).unwrap_or_default(),
    )
}

impl PepService {
    pub fn new(shared: Arc<Shared>, route: Recipient<Route>) -> PepService {
        PepService {
            shared,
            route,
            recipients: HashMap::new(),
            caps: HashMap::new(),
            queries: HashMap::new(),
            asking: HashMap::new(),
        }
    }

    fn send(&self, stanza: Element) {
        let from = stanza.get_attr("from").and_then(|f| Jid::new(f).ok());
        let to = stanza.get_attr("to").and_then(|t| Jid::new(t).ok());
        if let (Some(from), Some(to)) = (from, to) {
            self.route.do_send(Route {
                stanza,
                from,
                to,
                inflight: None,
            });
        }
    }

    /// May `who` (a bare JID) see `owner`'s node with `access_model`?
    fn may_see(&self, owner: &BareJid, access_model: &str, who: &str) -> Result<(), StanzaError> {
        if who == owner.as_str() || access_model == "open" {
            return Ok(());
        }
        let (d, u) = parts(owner);
        let item = self
            .shared
            .store
            .rosters
            .get(d, u, who)
            .map_err(|_| StanzaError::new(Condition::InternalServerError))?;
        match access_model {
            "presence" if item.as_ref().is_some_and(|i| i.from) => Ok(()),
            "presence" => Err(proto::error(
                Condition::NotAuthorized,
                Some("presence-subscription-required"),
            )),
            "roster" if item.as_ref().is_some_and(|i| i.in_roster) => Ok(()),
            "roster" => Err(proto::error(
                Condition::NotAuthorized,
                Some("not-in-roster-group"),
            )),
            _ => Err(proto::error(Condition::NotAllowed, Some("closed-node"))),
        }
    }

    /// Send `event` (from the owner) to every resource that wants `node` and may see it.
    fn notify(&self, owner: &BareJid, node: &str, access_model: &str, event: &Element) {
        let Some(rcpts) = self.recipients.get(owner) else {
            return;
        };
        let mut allowed: HashMap<String, bool> = HashMap::new();
        for (full, ver) in rcpts {
            if !self.caps.get(ver).is_some_and(|n| n.contains(node)) {
                continue;
            }
            let bare = full.split('/').next().unwrap_or(full).to_owned();
            let ok = *allowed
                .entry(bare.clone())
                .or_insert_with(|| self.may_see(owner, access_model, &bare).is_ok());
            if ok {
                self.send(event_message(owner, full, event.clone()));
            }
        }
    }

    /// A resource came online for `owner` (or its caps became known): the last item of each
    /// node it wants and may see.
    fn send_last_items(&self, owner: &BareJid, full: &str, wanted: &HashSet<String>) {
        let (d, u) = parts(owner);
        let Ok(nodes) = self.shared.store.pep.nodes(d, u) else {
            return;
        };
        let bare = full.split('/').next().unwrap_or(full);
        for (name, node) in nodes {
            if !wanted.contains(&name) || node.send_last_published_item == "never" {
                continue;
            }
            let Some((id, xml)) = node.items.last() else {
                continue;
            };
            if self.may_see(owner, &node.access_model, bare).is_err() {
                continue;
            }
            if let Ok(payload) = parse_element(xml) {
                let event = proto::item_event(&name, id, payload);
                self.send(event_message(owner, full, event));
            }
        }
    }

    fn handle_request(&mut self, iq: &Element) -> Result<Option<Element>, StanzaError> {
        let requester = iq
            .get_attr("from")
            .and_then(|f| Jid::new(f).ok())
            .ok_or_else(|| StanzaError::new(Condition::BadRequest))?;
        let owner = iq
            .get_attr("to")
            .and_then(|t| Jid::new(t).ok())
            .map(|j| j.to_bare())
            .unwrap_or_else(|| requester.to_bare());
        let (d, u) = parts(&owner);
        if !self.shared.store.accounts.exists(d, u).unwrap_or(false) {
            return Err(Condition::ServiceUnavailable.into());
        }
        let req = proto::parse(iq)?;
        let is_owner = requester.to_bare() == owner;
        if req.is_owner_only() && !is_owner {
            return Err(Condition::Forbidden.into());
        }
        let store = &self.shared.store.pep;
        let internal = |_| StanzaError::new(Condition::InternalServerError);
        match req {
            Request::Publish {
                node,
                id,
                payload,
                options,
            } => {
                let existing = store.get(d, u, &node).map_err(internal)?;
                let mut n = match existing {
                    Some(n) => {
                        if let Some(o) = &options {
                            if !matches_config(&n, o) {
                                return Err(proto::error(
                                    Condition::Conflict,
                                    Some("precondition-not-met"),
                                ));
                            }
                        }
                        n
                    }
                    None => new_node(options.as_ref()),
                };
                let id = id.unwrap_or_else(|| random_id(16));
                let xml = payload.to_xml(ns::CLIENT);
                let before = store.bytes(d, u).map_err(internal)?;
                let old = n.items.iter().position(|(i, _)| *i == id);
                let freed = old.map_or(0, |p| n.items[p].1.len());
                if before + xml.len() > MAX_BYTES + freed {
                    return Err(proto::error(Condition::ResourceConstraint, None));
                }
                if let Some(p) = old {
                    n.items.remove(p);
                }
                n.items.push((id.clone(), xml));
                let excess = n.items.len().saturating_sub(n.max_items);
                n.items.drain(..excess);
                store.put(d, u, &node, &n).map_err(internal)?;
                if node == avatar::METADATA {
                    self.avatar_to_vcard(&owner, &payload);
                }
                let event = proto::item_event(&node, &id, payload);
                self.notify(&owner, &node, &n.access_model, &event);
                Ok(Some(
                    Element::new("pubsub", proto::NS).child(
                        Element::new("publish", proto::NS)
                            .attr("node", node.as_str())
                            .child(Element::new("item", proto::NS).attr("id", id)),
                    ),
                ))
            }
            Request::Items { node, max, ids } => {
                let n = store
                    .get(d, u, &node)
                    .map_err(internal)?
                    .ok_or_else(|| StanzaError::new(Condition::ItemNotFound))?;
                self.may_see(&owner, &n.access_model, requester.to_bare().as_str())?;
                let mut chosen: Vec<&(String, String)> = if ids.is_empty() {
                    n.items.iter().collect()
                } else {
                    n.items.iter().filter(|(i, _)| ids.contains(i)).collect()
                };
                if let Some(m) = max {
                    let skip = chosen.len().saturating_sub(m);
                    chosen.drain(..skip);
                }
                let mut items = Element::new("items", proto::NS).attr("node", node.as_str());
                for (id, xml) in chosen {
                    let mut item = Element::new("item", proto::NS).attr("id", id.as_str());
                    if let Ok(p) = parse_element(xml) {
                        item = item.child(p);
                    }
                    items = items.child(item);
                }
                Ok(Some(Element::new("pubsub", proto::NS).child(items)))
            }
            Request::Retract { node, ids, notify } => {
                let mut n = store
                    .get(d, u, &node)
                    .map_err(internal)?
                    .ok_or_else(|| StanzaError::new(Condition::ItemNotFound))?;
                let before = n.items.len();
                n.items.retain(|(i, _)| !ids.contains(i));
                if n.items.len() == before {
                    return Err(Condition::ItemNotFound.into());
                }
                store.put(d, u, &node, &n).map_err(internal)?;
                if notify {
                    let event = proto::retract_event(&node, &ids);
                    self.notify(&owner, &node, &n.access_model, &event);
                }
                Ok(None)
            }
            Request::Create { node, options } => {
                if store.get(d, u, &node).map_err(internal)?.is_some() {
                    return Err(Condition::Conflict.into());
                }
                store
                    .put(d, u, &node, &new_node(options.as_ref()))
                    .map_err(internal)?;
                Ok(None)
            }
            Request::Delete { node } => {
                let n = store
                    .get(d, u, &node)
                    .map_err(internal)?
                    .ok_or_else(|| StanzaError::new(Condition::ItemNotFound))?;
                store.delete(d, u, &node).map_err(internal)?;
                self.notify(&owner, &node, &n.access_model, &proto::delete_event(&node));
                Ok(None)
            }
            Request::ConfigureGet { node } => {
                let n = store
                    .get(d, u, &node)
                    .map_err(internal)?
                    .ok_or_else(|| StanzaError::new(Condition::ItemNotFound))?;
                let form =
                    proto::config_form(&n.access_model, n.max_items, &n.send_last_published_item);
                Ok(Some(
                    Element::new("pubsub", proto::NS_OWNER).child(
                        Element::new("configure", proto::NS_OWNER)
                            .attr("node", node.as_str())
                            .child(form),
                    ),
                ))
            }
            Request::ConfigureSet { node, options } => {
                let mut n = store
                    .get(d, u, &node)
                    .map_err(internal)?
                    .ok_or_else(|| StanzaError::new(Condition::ItemNotFound))?;
                apply(&mut n, &options);
                store.put(d, u, &node, &n).map_err(internal)?;
                Ok(None)
            }
        }
    }

    /// XEP-0398: the avatar announced in PEP becomes the vCard's PHOTO.
    fn avatar_to_vcard(&self, owner: &BareJid, metadata: &Element) {
        let (d, u) = parts(owner);
        let store = &self.shared.store;
        let photo = match avatar::announced(metadata) {
            Some((id, kind)) => {
                let data = store
                    .pep
                    .get(d, u, avatar::DATA)
                    .ok()
                    .flatten()
                    .and_then(|n| n.items.into_iter().find(|(i, _)| *i == id))
                    .and_then(|(_, xml)| parse_element(&xml).ok())
                    .map(|e| e.text_content());
                match data {
                    Some(b64) => Some((kind, b64)),
                    // The data is not there (published elsewhere, or not yet): keep the vCard.
                    None => return,
                }
            }
            None => None,
        };
        let old = store
            .client_data
            .vcard(d, u)
            .ok()
            .flatten()
            .and_then(|x| parse_element(&x).ok());
        let card = avatar::with_photo(old, photo.as_ref().map(|(k, b)| (k.as_str(), b.as_str())));
        let xml = card.to_xml(ns::CLIENT);
        if xml.len() <= self.shared.config.limits.max_vcard_bytes {
            if let Err(e) = store.client_data.set_vcard(d, u, &xml) {
                log::error!("vCard storage failure: {e}");
            }
        }
    }

    /// XEP-0398: a vCard PHOTO becomes the PEP avatar (data, then metadata), told to those who
    /// want it.
    fn vcard_to_avatar(&mut self, owner: &BareJid, card: &Element) {
        let Some((id, kind, b64, size)) = avatar::from_vcard(card) else {
            return;
        };
        let (d, u) = parts(owner);
        let store = &self.shared.store.pep;
        let current = store
            .get(d, u, avatar::METADATA)
            .ok()
            .flatten()
            .and_then(|n| n.items.last().cloned())
            .and_then(|(_, xml)| parse_element(&xml).ok())
            .and_then(|m| avatar::announced(&m));
        if current.is_some_and(|(i, _)| i == id) {
            return;
        }
        let (data, metadata) = avatar::pep_payloads(&id, &kind, &b64, size);
        for (node_name, payload) in [(avatar::DATA, data), (avatar::METADATA, metadata)] {
            let mut node = match store.get(d, u, node_name) {
                Ok(Some(n)) => n,
                Ok(None) => new_node(Some(&Options {
                    access_model: Some("open".into()),
                    ..Options::default()
                })),
                Err(_) => return,
            };
            node.items.retain(|(i, _)| *i != id);
            node.items.push((id.clone(), payload.to_xml(ns::CLIENT)));
            let excess = node.items.len().saturating_sub(node.max_items);
            node.items.drain(..excess);
            if store.put(d, u, node_name, &node).is_err() {
                return;
            }
            let event = proto::item_event(node_name, &id, payload);
            self.notify(owner, node_name, &node.access_model, &event);
        }
    }

    fn ask_caps(&mut self, owner: &BareJid, full: &str, node: &str, ver: &str) {
        if self
            .asking
            .get(ver)
            .is_some_and(|t| t.elapsed() < QUERY_RETRY)
        {
            return;
        }
        let id = format!("{CAPS_QUERY_ID}{}", random_id(12));
        self.asking.insert(ver.to_owned(), Instant::now());
        self.queries
            .insert(id.clone(), (ver.to_owned(), Instant::now()));
        self.queries
            .retain(|_, (_, t)| t.elapsed() < QUERY_RETRY * 2);
        let q = Element::new("iq", ns::CLIENT)
            .attr("type", "get")
            .attr("id", id)
            .attr("from", owner.domain().as_str())
            .attr("to", full)
            .child(Element::new("query", ns::DISCO_INFO).attr("node", format!("{node}#{ver}")));
        self.send(q);
    }
}

fn new_node(options: Option<&Options>) -> Node {
    let mut n = Node {
        access_model: "presence".into(),
        max_items: 1,
        items: Vec::new(),
        send_last_published_item: "on_sub_and_presence".into(),
    };
    if let Some(o) = options {
        apply(&mut n, o);
    }
    n
}

fn apply(n: &mut Node, o: &Options) {
    if let Some(a) = &o.access_model {
        n.access_model = a.clone();
    }
    if let Some(m) = o.max_items {
        n.max_items = m.clamp(1, MAX_ITEMS);
        let excess = n.items.len().saturating_sub(n.max_items);
        n.items.drain(..excess);
    }
    if let Some(s) = &o.send_last_published_item {
        n.send_last_published_item = s.clone();
    }
}

/// XEP-0223 preconditions: does the node's configuration have what the publisher asks for?
fn matches_config(n: &Node, o: &Options) -> bool {
    o.access_model.as_ref().is_none_or(|a| *a == n.access_model)
        && o.max_items.is_none_or(|m| m == n.max_items)
        && o.send_last_published_item
            .as_ref()
            .is_none_or(|s| *s == n.send_last_published_item)
}

fn event_message(owner: &BareJid, to: &str, event: Element) -> Element {
    Element::new("message", ns::CLIENT)
        .attr("from", owner.as_str())
        .attr("to", to)
        .attr("type", "headline")
        .attr("id", random_id(10))
        .child(event)
}

impl Actor for PepService {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1 << 16);
    }
}

impl Handler<PepIq> for PepService {
    type Result = Option<Element>;
    fn handle(&mut self, msg: PepIq, _: &mut Context<Self>) -> Option<Element> {
        if !matches!(msg.iq.get_attr("type"), Some("get" | "set")) {
            return None;
        }
        match self.handle_request(&msg.iq) {
            Ok(payload) => Some(iq_result(&msg.iq, payload)),
            Err(e) => error_reply(&msg.iq, &e),
        }
    }
}

impl Handler<PepPresence> for PepService {
    type Result = ();
    fn handle(&mut self, msg: PepPresence, _: &mut Context<Self>) {
        if msg.from.is_empty() {
            self.recipients.remove(&msg.owner);
            return;
        }
        let Some((hash, node, ver)) = msg.caps else {
            if let Some(r) = self.recipients.get_mut(&msg.owner) {
                r.remove(&msg.from);
                if r.is_empty() {
                    self.recipients.remove(&msg.owner);
                }
            }
            return;
        };
        let previous = self
            .recipients
            .entry(msg.owner.clone())
            .or_default()
            .insert(msg.from.clone(), ver.clone());
        if previous.as_deref() == Some(ver.as_str()) {
            return;
        }
        match self.caps.get(&ver).cloned() {
            Some(wanted) => self.send_last_items(&msg.owner, &msg.from, &wanted),
            None if hash == "sha-1" => self.ask_caps(&msg.owner, &msg.from, &node, &ver),
            None => {}
        }
    }
}

impl Handler<CapsAnswer> for PepService {
    type Result = ();
    fn handle(&mut self, msg: CapsAnswer, _: &mut Context<Self>) {
        let Some(id) = msg.iq.get_attr("id") else {
            return;
        };
        let Some((ver, _)) = self.queries.remove(id) else {
            return;
        };
        let Some(query) = msg.iq.get_child("query", ns::DISCO_INFO) else {
            return;
        };
        if msg.iq.get_attr("type") != Some("result")
            || crate::services::disco::caps_ver(query) != ver
        {
            // A wrong answer is not cached: it could poison the version for others.
            return;
        }
        self.asking.remove(&ver);
        let wanted: Arc<HashSet<String>> =
            Arc::new(proto::notify_nodes(query).into_iter().collect());
        self.caps.insert(ver.clone(), wanted.clone());
        let waiting: Vec<(BareJid, String)> = self
            .recipients
            .iter()
            .flat_map(|(owner, r)| {
                r.iter()
                    .filter(|(_, v)| **v == ver)
                    .map(|(full, _)| (owner.clone(), full.clone()))
            })
            .collect();
        for (owner, full) in waiting {
            self.send_last_items(&owner, &full, &wanted);
        }
    }
}

impl Handler<ClientDataSet> for PepService {
    type Result = Option<Element>;
    fn handle(&mut self, msg: ClientDataSet, _: &mut Context<Self>) -> Option<Element> {
        use crate::services::bookmarks::{from_legacy, LEGACY, NODE};
        let owner = msg
            .iq
            .get_attr("from")
            .and_then(|f| Jid::new(f).ok())?
            .to_bare();
        // The private document itself, as any private-storage set (quota included).
        let reply = crate::services::client_data_iq(&self.shared, &owner, None, &msg.iq)?;
        if reply.get_attr("type") != Some("result") {
            return Some(reply);
        }
        if let Some(card) = msg.iq.get_child("vCard", crate::services::vcard::NS) {
            self.vcard_to_avatar(&owner, card);
            return Some(reply);
        }
        let storage = msg
            .iq
            .get_child("query", crate::services::private::NS)
            .and_then(|q| q.get_child("storage", LEGACY))?;
        let (d, u) = parts(&owner);
        let store = &self.shared.store.pep;
        let Ok(existing) = store.get(d, u, NODE) else {
            return Some(reply);
        };
        let mut node = existing.unwrap_or_else(|| {
            new_node(Some(&Options {
                access_model: Some("whitelist".into()),
                max_items: Some(MAX_ITEMS),
                send_last_published_item: Some("never".into()),
            }))
        });
        let wanted = from_legacy(storage);
        let items: Vec<(String, String)> = wanted
            .iter()
            .map(|(id, el)| (id.clone(), el.to_xml(ns::CLIENT)))
            .collect();
        let removed: Vec<String> = node
            .items
            .iter()
            .filter(|(id, _)| !items.iter().any(|(i, _)| i == id))
            .map(|(id, _)| id.clone())
            .collect();
        let changed: Vec<(String, Element)> = wanted
            .into_iter()
            .filter(|(id, el)| {
                let xml = el.to_xml(ns::CLIENT);
                !node.items.iter().any(|(i, x)| i == id && *x == xml)
            })
            .collect();
        node.items = items;
        node.items.truncate(node.max_items.max(1));
        if let Err(e) = store.put(d, u, NODE, &node) {
            log::error!("pep storage failure: {e}");
            return error_reply(&msg.iq, &Condition::InternalServerError.into());
        }
        for (id, payload) in changed {
            let event = proto::item_event(NODE, &id, payload);
            self.notify(&owner, NODE, &node.access_model, &event);
        }
        if !removed.is_empty() {
            let event = proto::retract_event(NODE, &removed);
            self.notify(&owner, NODE, &node.access_model, &event);
        }
        Some(reply)
    }
}

impl Handler<super::messages::Barrier> for PepService {
    type Result = ();
    fn handle(&mut self, _: super::messages::Barrier, _: &mut Context<Self>) {}
}
