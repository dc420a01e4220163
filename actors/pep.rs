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

use super::messages::{CapsAnswer, ClientDataSet, PepIq, PepPresence, Route};
use crate::services::pep::{self as proto, Options, Request, MAX_ITEMS};
use crate::services::{avatar, bookmarks};
use crate::shared::Shared;
use crate::store::pep::{AccessModel, Affiliation, Node, SendLastPublished};
use crate::xml::{parse_element, Element};
use crate::xmpp::account_parts as parts;
use crate::xmpp::{error_reply, iq_result, ns, random_id, BareJid, Condition, StanzaError};

/// Prefix of the ids of our caps queries.
pub const CAPS_QUERY_ID: &str = "pepcaps-";

/// Most bytes of PEP data per account.
const MAX_BYTES: usize = 4 * 1024 * 1024;
/// A caps query unanswered this long may be asked again.
const QUERY_RETRY: Duration = Duration::from_secs(60);
/// Most caps versions remembered (the oldest learned is forgotten first).
const MAX_CAPS: usize = 4096;
/// Most caps queries in flight at once.
const MAX_ASKING: usize = 256;
/// Most resources tracked per account (its own and its contacts').
const MAX_RECIPIENTS: usize = 2048;

pub struct PepService {
    shared: Arc<Shared>,
    route: Recipient<Route>,
    /// Per account: available resources that may get notifications -> their caps version.
    recipients: HashMap<BareJid, HashMap<String, String>>,
    /// Caps version -> the nodes it wants notifications for.
    caps: HashMap<String, Arc<HashSet<String>>>,
    /// The versions in `caps`, oldest first.
    caps_order: std::collections::VecDeque<String>,
    /// Caps queries in flight: id -> (version, when asked).
    queries: HashMap<String, (String, Instant)>,
    /// Versions being asked for.
    asking: HashMap<String, Instant>,
}

/// Who asks a PEP service for what: the account (`owner`), the requester's bare JID, and
/// the account's place in the store.
#[derive(Clone)]
struct Asker {
    owner: BareJid,
    who: BareJid,
    is_owner: bool,
    d: String,
    u: String,
    /// The PEP tree.
    store: crate::store::pep::Pep,
}

impl Asker {
    /// Reading and writing the owner's nodes ([`node_access`]).
    #[allow(clippy::type_complexity)]
    fn access(
        &self,
    ) -> (
        impl Fn(&str) -> Result<Node, StanzaError> + '_,
        impl Fn(&str, &Node) -> Result<(), StanzaError> + '_,
    ) {
        node_access(&self.store, &self.d, &self.u)
    }
}

/// Reading (`item-not-found` when absent) and writing one of the account `d`/`u`'s nodes.
#[allow(clippy::type_complexity)]
fn node_access<'a>(
    store: &'a crate::store::pep::Pep,
    d: &'a str,
    u: &'a str,
) -> (
    impl Fn(&str) -> Result<Node, StanzaError> + 'a,
    impl Fn(&str, &Node) -> Result<(), StanzaError> + 'a,
) {
    let get = move |node: &str| {
        store
            .get(d, u, node)
            .map_err(internal)?
            .ok_or_else(|| StanzaError::new(Condition::ItemNotFound))
    };
    let put = move |node: &str, n: &Node| store.put(d, u, node, n).map_err(internal);
    (get, put)
}

impl PepService {
    pub fn new(shared: Arc<Shared>, route: Recipient<Route>) -> PepService {
        PepService {
            shared,
            route,
            recipients: HashMap::new(),
            caps: HashMap::new(),
            caps_order: std::collections::VecDeque::new(),
            queries: HashMap::new(),
            asking: HashMap::new(),
        }
    }

    fn send(&self, stanza: Element) {
        if let Some(r) = Route::of(stanza) {
            self.route.do_send(r);
        }
    }

    /// May `who` (a bare JID) see `owner`'s node `n`? The owner always may; an entity on
    /// the owner's block list never (XEP-0191 §3.4: `service-unavailable`), an `outcast`
    /// never, a `member` always; everyone else as the access model says.
    fn may_see(&self, owner: &BareJid, n: &Node, who: &str) -> Result<(), StanzaError> {
        if who == owner.as_str() {
            return Ok(());
        }
        let (d, u) = parts(owner);
        if self
            .shared
            .store
            .rosters
            .is_blocked(d, u, who)
            .map_err(internal)?
        {
            return Err(Condition::ServiceUnavailable.into());
        }
        match n.affiliations.get(who) {
            Some(Affiliation::Outcast) => return Err(Condition::Forbidden.into()),
            Some(Affiliation::Member) => return Ok(()),
            _ => {}
        }
        if n.access_model == AccessModel::Open {
            return Ok(());
        }
        let item = self
            .shared
            .store
            .rosters
            .get(d, u, who)
            .map_err(|_| StanzaError::new(Condition::InternalServerError))?;
        match n.access_model {
            AccessModel::Presence if item.as_ref().is_some_and(|i| i.from) => Ok(()),
            AccessModel::Presence => Err(proto::error(
                Condition::NotAuthorized,
                Some("presence-subscription-required"),
            )),
            AccessModel::Roster if item.as_ref().is_some_and(|i| i.in_roster) => Ok(()),
            AccessModel::Roster => Err(proto::error(
                Condition::NotAuthorized,
                Some("not-in-roster-group"),
            )),
            // `open` was let through above.
            AccessModel::Whitelist | AccessModel::Open => {
                Err(proto::error(Condition::NotAllowed, Some("closed-node")))
            }
        }
    }

    /// Send `event` (from the owner, about `node`) to every available resource that wants
    /// `node` (`+notify` in its caps) and to every explicit subscriber of `n`, each once, if
    /// they may see it.
    fn notify(&self, owner: &BareJid, node: &str, n: &Node, event: &Element) {
        let mut allowed: HashMap<String, bool> = HashMap::new();
        let mut may = |bare: &str| -> bool {
            *allowed
                .entry(bare.to_owned())
                .or_insert_with(|| self.may_see(owner, n, bare).is_ok())
        };
        let mut reached: Vec<&str> = Vec::new();
        if let Some(rcpts) = self.recipients.get(owner) {
            for (full, ver) in rcpts {
                if self.caps.get(ver).is_some_and(|w| w.contains(node)) && may(bare_of(full)) {
                    self.send(event_message(owner, full, event.clone()));
                    reached.push(full);
                }
            }
        }
        for jid in n.subscribers.keys() {
            let bare = bare_of(jid);
            let done = if jid.len() > bare.len() {
                reached.contains(&jid.as_str())
            } else {
                reached.iter().any(|f| bare_of(f) == bare)
            };
            if !done && may(bare) {
                self.send(event_message(owner, jid, event.clone()));
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
        for (name, node) in nodes {
            if wanted.contains(&name) {
                self.send_last_item(owner, full, &name, &node);
            }
        }
    }

    /// The last item of `node` to `to`, if the node says so and `to` may see it.
    fn send_last_item(&self, owner: &BareJid, to: &str, name: &str, node: &Node) {
        if node.send_last_published_item == SendLastPublished::Never {
            return;
        }
        let Some((id, xml)) = node.items.last() else {
            return;
        };
        if self.may_see(owner, node, bare_of(to)).is_err() {
            return;
        }
        if let Ok(payload) = parse_element(xml) {
            let event = proto::item_event(name, id, payload);
            self.send(event_message(owner, to, event));
        }
    }

    fn handle_request(&mut self, iq: &Element) -> Result<Option<Element>, StanzaError> {
        let requester = iq
            .get_attr("from")
            .and_then(|f| crate::xmpp::jid(f).ok())
            .ok_or_else(|| StanzaError::new(Condition::BadRequest))?;
        let owner = iq
            .get_attr("to")
            .and_then(|t| crate::xmpp::jid(t).ok())
            .map(|j| j.to_bare())
            .unwrap_or_else(|| requester.to_bare());
        let (d, u) = parts(&owner);
        if !self.shared.store.accounts.exists(d, u).unwrap_or(false) {
            return Err(Condition::ServiceUnavailable.into());
        }
        let req = proto::parse(iq)?;
        let who = requester.to_bare();
        let is_owner = who == owner;
        if req.is_owner_only() && !is_owner {
            return Err(Condition::Forbidden.into());
        }
        let asker = Asker {
            owner: owner.clone(),
            who,
            is_owner,
            d: d.to_owned(),
            u: u.to_owned(),
            store: self.shared.store.pep.clone(),
        };
        match req {
            r @ Request::Publish { .. } => self.publish_request(&asker, r),
            r @ (Request::Items { .. } | Request::Retract { .. }) => self.read_request(&asker, r),
            r @ (Request::Create { .. }
            | Request::Delete { .. }
            | Request::ConfigureGet { .. }
            | Request::ConfigureSet { .. }
            | Request::DefaultConfig) => self.node_request(&asker, r),
            r @ (Request::Subscribe { .. }
            | Request::Unsubscribe { .. }
            | Request::Subscriptions { .. }) => self.subscription_request(&asker, r),
            r @ (Request::OwnerSubscriptions { .. } | Request::OwnerSetSubscriptions { .. }) => {
                self.owner_subscription_request(&asker, r)
            }
            r @ (Request::Affiliations { .. }
            | Request::OwnerAffiliations { .. }
            | Request::OwnerSetAffiliations { .. }) => self.affiliation_request(&asker, r),
            r @ (Request::DiscoItems { .. } | Request::DiscoInfo { .. }) => {
                self.disco_request(&asker, r)
            }
        }
    }

    /// PEP requests: publish items.
    fn publish_request(
        &mut self,
        asker: &Asker,
        req: Request,
    ) -> Result<Option<Element>, StanzaError> {
        let Asker { owner, d, u, .. } = asker.clone();
        let store = &asker.store;
        let (_, put) = asker.access();
        match req {
            // XEP-0411 `#compat-pep`: the XEP-0048 node is a view of the XEP-0402 one.
            Request::Publish {
                node,
                payload,
                options,
                ..
            } if node == bookmarks::LEGACY => {
                if payload.name != "storage" || payload.ns != bookmarks::LEGACY {
                    return Err(proto::error(Condition::BadRequest, Some("invalid-payload")));
                }
                self.set_legacy_bookmarks(&owner, &payload, options.as_ref())?;
                Ok(Some(publish_result(&node, "current")))
            }
            Request::Publish {
                node,
                id,
                payload,
                options,
            } => {
                let mut n = match store.get(&d, &u, &node).map_err(internal)? {
                    Some(n) => {
                        if options.as_ref().is_some_and(|o| !matches_config(&n, o)) {
                            return Err(proto::error(
                                Condition::Conflict,
                                Some("precondition-not-met"),
                            ));
                        }
                        n
                    }
                    None => new_node(options.as_ref()),
                };
                let id = id.unwrap_or_else(|| random_id(16));
                let xml = payload.to_xml(ns::CLIENT);
                let before = store.bytes(&d, &u).map_err(internal)?;
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
                put(&node, &n)?;
                if node == avatar::METADATA {
                    self.avatar_to_vcard(&owner, &payload);
                }
                let event = proto::item_event(&node, &id, payload);
                self.notify(&owner, &node, &n, &event);
                if node == bookmarks::NODE {
                    self.legacy_bookmarks_changed(&owner, &n);
                }
                Ok(Some(publish_result(&node, &id)))
            }
            other => unreachable!("publish_request: {other:?}"),
        }
    }

    /// PEP requests: create, delete and configure nodes.
    fn node_request(
        &mut self,
        asker: &Asker,
        req: Request,
    ) -> Result<Option<Element>, StanzaError> {
        let Asker { owner, d, u, .. } = asker.clone();
        let store = &asker.store;
        let (get, put) = asker.access();
        match req {
            Request::Create { node, options } => {
                let node = stored_name(&node);
                if store.get(&d, &u, node).map_err(internal)?.is_some() {
                    return Err(Condition::Conflict.into());
                }
                put(node, &new_node(options.as_ref()))?;
                Ok(None)
            }
            Request::Delete { node } => {
                let name = stored_name(&node);
                let n = get(name)?;
                store.delete(&d, &u, name).map_err(internal)?;
                self.notify(&owner, name, &n, &proto::delete_event(name));
                if name == bookmarks::NODE {
                    let legacy = bookmarks::LEGACY;
                    self.notify(&owner, legacy, &n, &proto::delete_event(legacy));
                }
                Ok(None)
            }
            Request::ConfigureGet { node } => {
                let n = get(stored_name(&node))?;
                let form =
                    proto::config_form(n.access_model, n.max_items, n.send_last_published_item);
                Ok(Some(owner_payload(
                    Element::new("configure", proto::NS_OWNER)
                        .attr("node", node)
                        .child(form),
                )))
            }
            Request::ConfigureSet { node, options } => {
                let node = stored_name(&node);
                let mut n = get(node)?;
                apply(&mut n, &options);
                put(node, &n)?;
                Ok(None)
            }
            Request::DefaultConfig => {
                let n = new_node(None);
                let form =
                    proto::config_form(n.access_model, n.max_items, n.send_last_published_item);
                Ok(Some(owner_payload(
                    Element::new("default", proto::NS_OWNER).child(form),
                )))
            }
            other => unreachable!("node_request: {other:?}"),
        }
    }

    /// PEP requests: subscribe, unsubscribe and the requester's own subscriptions.
    fn subscription_request(
        &mut self,
        asker: &Asker,
        req: Request,
    ) -> Result<Option<Element>, StanzaError> {
        let Asker { owner, who, .. } = asker.clone();
        let (get, put) = asker.access();
        match req {
            Request::Subscribe { node, jid } => {
                let jid = crate::xmpp::jid(&jid)
                    .map_err(|_| proto::error(Condition::BadRequest, Some("invalid-jid")))?;
                if jid.to_bare() != who {
                    return Err(proto::error(Condition::BadRequest, Some("invalid-jid")));
                }
                let mut n = get(&node)?;
                self.may_see(&owner, &n, who.as_str())?;
                let jid = jid.as_str().to_owned();
                let subid = match n.subscribers.get(&jid) {
                    Some(s) => s.clone(),
                    None if n.subscribers.len() >= proto::MAX_SUBSCRIBERS => {
                        return Err(proto::error(Condition::ResourceConstraint, None));
                    }
                    None => {
                        let s = random_id(16);
                        n.subscribers.insert(jid.clone(), s.clone());
                        put(&node, &n)?;
                        s
                    }
                };
                // XEP-0060 §6.1.7: the last item goes to the new subscriber.
                self.send_last_item(&owner, &jid, &node, &n);
                Ok(Some(Element::new("pubsub", proto::NS).child(subscription(
                    &node,
                    &jid,
                    Some(&subid),
                    "subscribed",
                ))))
            }
            Request::Unsubscribe { node, jid } => {
                let jid = crate::xmpp::jid(&jid)
                    .map_err(|_| proto::error(Condition::BadRequest, Some("invalid-jid")))?;
                if jid.to_bare() != who {
                    return Err(Condition::Forbidden.into());
                }
                let mut n = get(&node)?;
                if n.subscribers.remove(jid.as_str()).is_none() {
                    return Err(proto::error(
                        Condition::UnexpectedRequest,
                        Some("not-subscribed"),
                    ));
                }
                put(&node, &n)?;
                Ok(None)
            }
            Request::Subscriptions { node } => {
                let mut list = Element::new("subscriptions", proto::NS);
                for (name, n) in self.nodes(&owner, node.as_deref())? {
                    for (jid, subid) in &n.subscribers {
                        if bare_of(jid) == who.as_str() {
                            list = list.child(subscription(&name, jid, Some(subid), "subscribed"));
                        }
                    }
                }
                if let Some(n) = node {
                    list.set_attr("node", n);
                }
                Ok(Some(Element::new("pubsub", proto::NS).child(list)))
            }
            other => unreachable!("subscription_request: {other:?}"),
        }
    }

    /// PEP requests: the requester's affiliations and the owner's management of subscriptions and affiliations.
    fn affiliation_request(
        &mut self,
        asker: &Asker,
        req: Request,
    ) -> Result<Option<Element>, StanzaError> {
        let Asker {
            owner,
            who,
            is_owner,
            ..
        } = asker.clone();
        let (get, put) = asker.access();
        match req {
            Request::Affiliations { node } => {
                let mut list = Element::new("affiliations", proto::NS);
                for (name, n) in self.nodes(&owner, node.as_deref())? {
                    let aff = if is_owner {
                        Some(Affiliation::Owner)
                    } else {
                        n.affiliations.get(who.as_str()).copied()
                    };
                    if let Some(a) = aff {
                        list = list.child(
                            Element::new("affiliation", proto::NS)
                                .attr("node", name)
                                .attr("affiliation", a.as_str()),
                        );
                    }
                }
                if let Some(n) = node {
                    list.set_attr("node", n);
                }
                Ok(Some(Element::new("pubsub", proto::NS).child(list)))
            }
            Request::OwnerAffiliations { node } => {
                let n = get(stored_name(&node))?;
                let aff = |jid: &str, a: Affiliation| {
                    Element::new("affiliation", proto::NS_OWNER)
                        .attr("jid", jid)
                        .attr("affiliation", a.as_str())
                };
                let mut list = Element::new("affiliations", proto::NS_OWNER)
                    .attr("node", node.as_str())
                    .child(aff(owner.as_str(), Affiliation::Owner));
                for (jid, a) in &n.affiliations {
                    list = list.child(aff(jid, *a));
                }
                Ok(Some(owner_payload(list)))
            }
            Request::OwnerSetAffiliations { node, changes } => {
                let name = stored_name(&node);
                let mut n = get(name)?;
                for (jid, a) in changes {
                    let bare = crate::xmpp::jid(&jid)
                        .map_err(|_| StanzaError::new(Condition::JidMalformed))?
                        .to_bare();
                    if bare == owner {
                        // The owner stays the owner (XEP-0060 §8.9.2.4).
                        return Err(Condition::NotAcceptable.into());
                    }
                    let bare = bare.as_str().to_owned();
                    match a.parse() {
                        Ok(Affiliation::None) => {
                            n.affiliations.remove(&bare);
                        }
                        Ok(a @ (Affiliation::Member | Affiliation::Outcast)) => {
                            if !n.affiliations.contains_key(&bare)
                                && n.affiliations.len() >= proto::MAX_SUBSCRIBERS
                            {
                                return Err(proto::error(Condition::ResourceConstraint, None));
                            }
                            if a == Affiliation::Outcast {
                                n.subscribers.retain(|j, _| bare_of(j) != bare);
                            }
                            n.affiliations.insert(bare, a);
                        }
                        Ok(Affiliation::Publisher | Affiliation::PublishOnly) => {
                            return Err(proto::unsupported("publisher-affiliation"))
                        }
                        // The owner is the account's alone.
                        Ok(Affiliation::Owner) | Err(_) => return Err(Condition::BadRequest.into()),
                    }
                }
                put(name, &n)?;
                Ok(None)
            }
            other => unreachable!("affiliation_request: {other:?}"),
        }
    }

    /// PEP requests: read and retract items.
    fn read_request(
        &mut self,
        asker: &Asker,
        req: Request,
    ) -> Result<Option<Element>, StanzaError> {
        let Asker { owner, who, .. } = asker.clone();
        let (get, put) = asker.access();
        match req {
            Request::Items { node, .. } if node == bookmarks::LEGACY => {
                let n = get(bookmarks::NODE)?;
                self.may_see(&owner, &n, who.as_str())?;
                let item = Element::new("item", proto::NS)
                    .attr("id", "current")
                    .child(legacy_view(&n));
                Ok(Some(
                    Element::new("pubsub", proto::NS).child(
                        Element::new("items", proto::NS)
                            .attr("node", node)
                            .child(item),
                    ),
                ))
            }
            Request::Items { node, max, ids } => {
                let n = get(&node)?;
                self.may_see(&owner, &n, who.as_str())?;
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
                let mut n = get(&node)?;
                let before = n.items.len();
                n.items.retain(|(i, _)| !ids.contains(i));
                if n.items.len() == before {
                    return Err(Condition::ItemNotFound.into());
                }
                put(&node, &n)?;
                if notify {
                    let event = proto::retract_event(&node, &ids);
                    self.notify(&owner, &node, &n, &event);
                }
                if node == bookmarks::NODE {
                    self.legacy_bookmarks_changed(&owner, &n);
                }
                Ok(None)
            }
            other => unreachable!("read_request: {other:?}"),
        }
    }

    /// PEP requests: the owner's view and management of a node's subscriptions.
    fn owner_subscription_request(
        &mut self,
        asker: &Asker,
        req: Request,
    ) -> Result<Option<Element>, StanzaError> {
        let Asker { .. } = asker.clone();
        let (get, put) = asker.access();
        match req {
            Request::OwnerSubscriptions { node } => {
                let n = get(&node)?;
                let mut list =
                    Element::new("subscriptions", proto::NS_OWNER).attr("node", node.as_str());
                for (jid, subid) in &n.subscribers {
                    let mut s = subscription(&node, jid, Some(subid), "subscribed");
                    s.ns = proto::NS_OWNER.into();
                    s.remove_attr("node");
                    list = list.child(s);
                }
                Ok(Some(owner_payload(list)))
            }
            Request::OwnerSetSubscriptions { node, changes } => {
                let mut n = get(&node)?;
                for (jid, sub) in changes {
                    let jid = crate::xmpp::jid(&jid)
                        .map_err(|_| StanzaError::new(Condition::JidMalformed))?;
                    let jid = jid.as_str().to_owned();
                    match sub.as_str() {
                        "none" => {
                            n.subscribers.remove(&jid);
                        }
                        "subscribed" if n.subscribers.contains_key(&jid) => {}
                        "subscribed" if n.subscribers.len() < proto::MAX_SUBSCRIBERS => {
                            n.subscribers.insert(jid, random_id(16));
                        }
                        "subscribed" => {
                            return Err(proto::error(Condition::ResourceConstraint, None))
                        }
                        _ => return Err(proto::unsupported("subscription-notifications")),
                    }
                }
                put(&node, &n)?;
                Ok(None)
            }
            other => unreachable!("owner_subscription_request: {other:?}"),
        }
    }

    /// PEP requests: disco#items and disco#info of the service and its nodes.
    fn disco_request(
        &mut self,
        asker: &Asker,
        req: Request,
    ) -> Result<Option<Element>, StanzaError> {
        let Asker {
            owner, who, d, u, ..
        } = asker.clone();
        let store = &asker.store;
        let (get, _) = asker.access();
        match req {
            Request::DiscoItems { node: None } => {
                let mut q = Element::new("query", ns::DISCO_ITEMS);
                for (name, n) in store.nodes(&d, &u).map_err(internal)? {
                    if self.may_see(&owner, &n, who.as_str()).is_err() {
                        continue;
                    }
                    let names: &[&str] = if name == bookmarks::NODE {
                        &[bookmarks::NODE, bookmarks::LEGACY]
                    } else {
                        &[name.as_str()]
                    };
                    for name in names {
                        q = q.child(
                            Element::new("item", ns::DISCO_ITEMS)
                                .attr("jid", owner.as_str())
                                .attr("node", *name),
                        );
                    }
                }
                Ok(Some(q))
            }
            Request::DiscoItems { node: Some(node) } => {
                let n = get(stored_name(&node))?;
                if self.may_see(&owner, &n, who.as_str()).is_err() {
                    return Err(Condition::ItemNotFound.into());
                }
                let ids: Vec<&str> = if node == bookmarks::LEGACY {
                    vec!["current"]
                } else {
                    n.items.iter().map(|(i, _)| i.as_str()).collect()
                };
                let mut q = Element::new("query", ns::DISCO_ITEMS).attr("node", node.as_str());
                for id in ids {
                    q = q.child(
                        Element::new("item", ns::DISCO_ITEMS)
                            .attr("jid", owner.as_str())
                            .attr("name", id),
                    );
                }
                Ok(Some(q))
            }
            Request::DiscoInfo { node } => {
                let n = get(stored_name(&node))?;
                if self.may_see(&owner, &n, who.as_str()).is_err() {
                    return Err(Condition::ItemNotFound.into());
                }
                Ok(Some(
                    Element::new("query", ns::DISCO_INFO)
                        .attr("node", node)
                        .child(
                            Element::new("identity", ns::DISCO_INFO)
                                .attr("category", "pubsub")
                                .attr("type", "leaf"),
                        )
                        .child(Element::new("feature", ns::DISCO_INFO).attr("var", proto::NS)),
                ))
            }
            other => unreachable!("disco_request: {other:?}"),
        }
    }

    /// One node (which must exist) or all of the account's.
    fn nodes(
        &self,
        owner: &BareJid,
        node: Option<&str>,
    ) -> Result<Vec<(String, Node)>, StanzaError> {
        let (d, u) = parts(owner);
        let store = &self.shared.store.pep;
        match node {
            Some(name) => match store.get(d, u, name).map_err(internal)? {
                Some(n) => Ok(vec![(name.to_owned(), n)]),
                None => Err(Condition::ItemNotFound.into()),
            },
            None => store.nodes(d, u).map_err(internal),
        }
    }

    /// XEP-0411: XEP-0048 bookmarks (from private storage or the `storage:bookmarks` PEP node)
    /// become the XEP-0402 node's items; those who follow either node hear of the changes.
    fn set_legacy_bookmarks(
        &mut self,
        owner: &BareJid,
        storage: &Element,
        options: Option<&Options>,
    ) -> Result<(), StanzaError> {
        use crate::services::bookmarks::{from_legacy, NODE};
        let (d, u) = parts(owner);
        let store = &self.shared.store.pep;
        let mut node = match store.get(d, u, NODE).map_err(internal)? {
            Some(n) => n,
            None => new_node(Some(&Options {
                access_model: Some(AccessModel::Whitelist),
                max_items: Some(MAX_ITEMS),
                send_last_published_item: Some(SendLastPublished::Never),
            })),
        };
        if options.is_some_and(|o| !matches_config(&node, o)) {
            return Err(proto::error(
                Condition::Conflict,
                Some("precondition-not-met"),
            ));
        }
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
        store.put(d, u, NODE, &node).map_err(internal)?;
        for (id, payload) in changed {
            let event = proto::item_event(NODE, &id, payload);
            self.notify(owner, NODE, &node, &event);
        }
        if !removed.is_empty() {
            let event = proto::retract_event(NODE, &removed);
            self.notify(owner, NODE, &node, &event);
        }
        self.legacy_bookmarks_changed(owner, &node);
        Ok(())
    }

    /// The XEP-0402 node changed: those who follow `storage:bookmarks` (XEP-0048 in PEP) get
    /// the whole document again, as XEP-0048 publishes it.
    fn legacy_bookmarks_changed(&self, owner: &BareJid, node: &Node) {
        let event = proto::item_event(bookmarks::LEGACY, "current", legacy_view(node));
        let view = Node {
            subscribers: Default::default(),
            ..node.clone()
        };
        self.notify(owner, bookmarks::LEGACY, &view, &event);
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
                    access_model: Some(AccessModel::Open),
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
            self.notify(owner, node_name, &node, &event);
        }
    }

    /// Whether the presence of `from` (a full JID) to `owner` counts for notifications: the
    /// owner's own resources and its contacts (a subscription either way) do; strangers'
    /// directed presence does not, so that it can neither grow the tables nor make the
    /// server send queries.
    fn tracks(&self, owner: &BareJid, from: &str) -> bool {
        let bare = bare_of(from);
        if bare == owner.as_str() {
            return true;
        }
        let (d, u) = parts(owner);
        matches!(
            self.shared.store.rosters.get(d, u, bare),
            Ok(Some(i)) if i.from || i.to
        )
    }

    /// Cache what caps version `ver` wants, forgetting the oldest version when full.
    fn remember_caps(&mut self, ver: String, wanted: Arc<HashSet<String>>) {
        if self.caps.insert(ver.clone(), wanted).is_none() {
            self.caps_order.push_back(ver);
            while self.caps_order.len() > MAX_CAPS {
                if let Some(old) = self.caps_order.pop_front() {
                    self.caps.remove(&old);
                }
            }
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
        self.asking.retain(|_, t| t.elapsed() < QUERY_RETRY);
        self.queries
            .retain(|_, (_, t)| t.elapsed() < QUERY_RETRY * 2);
        if self.asking.len() >= MAX_ASKING || self.queries.len() >= MAX_ASKING {
            return;
        }
        let id = format!("{CAPS_QUERY_ID}{}", random_id(12));
        self.asking.insert(ver.to_owned(), Instant::now());
        self.queries
            .insert(id.clone(), (ver.to_owned(), Instant::now()));
        let q = Element::new("iq", ns::CLIENT)
            .attr("type", "get")
            .attr("id", id)
            .attr("from", owner.domain().as_str())
            .attr("to", full)
            .child(Element::new("query", ns::DISCO_INFO).attr("node", format!("{node}#{ver}")));
        self.send(q);
    }
}

fn internal(e: crate::store::StoreError) -> StanzaError {
    e.stanza_error("PEP storage")
}

/// The bare part of a JID string.
fn bare_of(jid: &str) -> &str {
    crate::xmpp::bare_part(jid)
}

/// Where a node is kept: the XEP-0048 `storage:bookmarks` node is the XEP-0402 one (XEP-0411).
fn stored_name(node: &str) -> &str {
    if node == bookmarks::LEGACY {
        bookmarks::NODE
    } else {
        node
    }
}

/// The XEP-0402 node's items as one XEP-0048 `<storage/>` document.
fn legacy_view(n: &Node) -> Element {
    let items: Vec<(String, Element)> = n
        .items
        .iter()
        .filter_map(|(id, xml)| Some((id.clone(), parse_element(xml).ok()?)))
        .collect();
    bookmarks::to_legacy(&items)
}

fn publish_result(node: &str, id: &str) -> Element {
    Element::new("pubsub", proto::NS).child(
        Element::new("publish", proto::NS)
            .attr("node", node)
            .child(Element::new("item", proto::NS).attr("id", id)),
    )
}

fn owner_payload(op: Element) -> Element {
    Element::new("pubsub", proto::NS_OWNER).child(op)
}

/// `<subscription node jid subid subscription/>` (XEP-0060 §6.1.2).
fn subscription(node: &str, jid: &str, subid: Option<&str>, state: &str) -> Element {
    let mut s = Element::new("subscription", proto::NS)
        .attr("node", node)
        .attr("jid", jid)
        .attr("subscription", state);
    if let Some(id) = subid {
        s.set_attr("subid", id);
    }
    s
}

fn new_node(options: Option<&Options>) -> Node {
    let mut n = Node {
        access_model: AccessModel::Presence,
        max_items: 1,
        items: Vec::new(),
        send_last_published_item: SendLastPublished::OnSubAndPresence,
        affiliations: Default::default(),
        subscribers: Default::default(),
    };
    if let Some(o) = options {
        apply(&mut n, o);
    }
    n
}

fn apply(n: &mut Node, o: &Options) {
    if let Some(a) = o.access_model {
        n.access_model = a;
    }
    if let Some(m) = o.max_items {
        n.max_items = m.clamp(1, MAX_ITEMS);
        let excess = n.items.len().saturating_sub(n.max_items);
        n.items.drain(..excess);
    }
    if let Some(s) = o.send_last_published_item {
        n.send_last_published_item = s;
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
        let caps = msg.caps.filter(|_| self.tracks(&msg.owner, &msg.from));
        let Some((hash, node, ver)) = caps else {
            if let Some(r) = self.recipients.get_mut(&msg.owner) {
                r.remove(&msg.from);
                if r.is_empty() {
                    self.recipients.remove(&msg.owner);
                }
            }
            return;
        };
        let r = self.recipients.entry(msg.owner.clone()).or_default();
        if r.len() >= MAX_RECIPIENTS && !r.contains_key(&msg.from) {
            return;
        }
        let previous = r.insert(msg.from.clone(), ver.clone());
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
        self.remember_caps(ver.clone(), wanted.clone());
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
        let owner = msg
            .iq
            .get_attr("from")
            .and_then(|f| crate::xmpp::jid(f).ok())?
            .to_bare();
        // The private document itself, as any private-storage set (quota included).
        let cx = self.shared.client_data_context();
        let reply = crate::services::client_data_iq(cx, &owner, None, &msg.iq)?;
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
            .and_then(|q| q.get_child("storage", bookmarks::LEGACY))?;
        match self.set_legacy_bookmarks(&owner, storage, None) {
            Ok(()) => Some(reply),
            Err(e) => error_reply(&msg.iq, &e),
        }
    }
}

impl Handler<super::messages::Barrier> for PepService {
    type Result = ();
    fn handle(&mut self, _: super::messages::Barrier, _: &mut Context<Self>) {}
}
