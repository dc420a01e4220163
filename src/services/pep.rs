//! Personal Eventing Protocol (XEP-0163) on the wire: parsing the pubsub requests a PEP service
//! answers (XEP-0060 publish with publish-options (XEP-0223), items, retract, create, delete,
//! configure), node configuration forms, access models, and the notifications it sends. The
//! state (nodes, who is interested) and the decisions are `actors/pep.rs`'s.

use crate::store::pep::{AccessModel, SendLastPublished};
use crate::xml::Element;
use crate::xmpp::{ns, Condition, StanzaError};

pub const NS: &str = "http://jabber.org/protocol/pubsub";
pub const NS_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
pub const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
pub const NS_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
/// XEP-0115 entity capabilities.
pub const NS_CAPS: &str = "http://jabber.org/protocol/caps";
const NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
const PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";

/// Most items a node may keep (`pubsub#max_items` = `max`).
pub const MAX_ITEMS: usize = 256;

/// What a PEP account advertises in its disco#info (next to identity `pubsub/pep`).
pub const FEATURES: &[&str] = &[
    "http://jabber.org/protocol/pubsub#access-open",
    "http://jabber.org/protocol/pubsub#access-presence",
    "http://jabber.org/protocol/pubsub#access-roster",
    "http://jabber.org/protocol/pubsub#access-whitelist",
    "http://jabber.org/protocol/pubsub#auto-create",
    "http://jabber.org/protocol/pubsub#config-node",
    "http://jabber.org/protocol/pubsub#create-nodes",
    "http://jabber.org/protocol/pubsub#delete-items",
    "http://jabber.org/protocol/pubsub#delete-nodes",
    "http://jabber.org/protocol/pubsub#filtered-notifications",
    "http://jabber.org/protocol/pubsub#item-ids",
    "http://jabber.org/protocol/pubsub#last-published",
    "http://jabber.org/protocol/pubsub#manage-subscriptions",
    "http://jabber.org/protocol/pubsub#member-affiliation",
    "http://jabber.org/protocol/pubsub#modify-affiliations",
    "http://jabber.org/protocol/pubsub#outcast-affiliation",
    "http://jabber.org/protocol/pubsub#persistent-items",
    "http://jabber.org/protocol/pubsub#publish",
    "http://jabber.org/protocol/pubsub#publish-options",
    "http://jabber.org/protocol/pubsub#retract-items",
    "http://jabber.org/protocol/pubsub#retrieve-affiliations",
    "http://jabber.org/protocol/pubsub#retrieve-default",
    "http://jabber.org/protocol/pubsub#retrieve-items",
    "http://jabber.org/protocol/pubsub#retrieve-subscriptions",
    "http://jabber.org/protocol/pubsub#subscribe",
];

/// Most explicit subscriptions, and most affiliations, one node keeps.
pub const MAX_SUBSCRIBERS: usize = 1024;

/// Node configuration a request sets or requires.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub access_model: Option<AccessModel>,
    pub max_items: Option<usize>,
    pub send_last_published_item: Option<SendLastPublished>,
}

/// A PEP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Publish {
        node: String,
        id: Option<String>,
        payload: Element,
        options: Option<Options>,
    },
    Items {
        node: String,
        max: Option<usize>,
        ids: Vec<String>,
    },
    Retract {
        node: String,
        ids: Vec<String>,
        notify: bool,
    },
    Create {
        node: String,
        options: Option<Options>,
    },
    Delete {
        node: String,
    },
    ConfigureGet {
        node: String,
    },
    ConfigureSet {
        node: String,
        options: Options,
    },
    /// The default node configuration (owner `<default/>`).
    DefaultConfig,
    /// Subscribe `jid` (the requester's bare or full JID) to the node.
    Subscribe {
        node: String,
        jid: String,
    },
    Unsubscribe {
        node: String,
        jid: String,
    },
    /// The requester's subscriptions (to one node, or all).
    Subscriptions {
        node: Option<String>,
    },
    /// The requester's affiliations (with one node, or all).
    Affiliations {
        node: Option<String>,
    },
    /// The owner lists a node's subscriptions.
    OwnerSubscriptions {
        node: String,
    },
    /// The owner changes subscriptions: (JID, `subscribed` or `none`).
    OwnerSetSubscriptions {
        node: String,
        changes: Vec<(String, String)>,
    },
    /// The owner lists a node's affiliations.
    OwnerAffiliations {
        node: String,
    },
    /// The owner changes affiliations: (JID, affiliation as sent; the service parses it, in
    /// turn with the JID, see `Affiliation`).
    OwnerSetAffiliations {
        node: String,
        changes: Vec<(String, String)>,
    },
    /// disco#items of the account (its nodes) or of a node (its items), XEP-0060 §5.2-5.5.
    DiscoItems {
        node: Option<String>,
    },
    /// disco#info of a node (XEP-0060 §5.3).
    DiscoInfo {
        node: String,
    },
}

impl Request {
    /// Does it change the node or show its administration (owner only)?
    pub fn is_owner_only(&self) -> bool {
        !matches!(
            self,
            Request::Items { .. }
                | Request::Subscribe { .. }
                | Request::Unsubscribe { .. }
                | Request::Subscriptions { .. }
                | Request::Affiliations { .. }
                | Request::DiscoItems { .. }
                | Request::DiscoInfo { .. }
        )
    }
}

/// A pubsub error: `condition` with a pubsub-specific condition (XEP-0060 §7-8).
pub fn error(condition: Condition, specific: Option<&str>) -> StanzaError {
    let mut e = StanzaError::new(condition);
    if let Some(s) = specific {
        e = e.with_extra(Element::new(s, NS_ERRORS));
    }
    e
}

fn bad(specific: &str) -> StanzaError {
    error(Condition::BadRequest, Some(specific))
}

/// `feature-not-implemented` with `<unsupported feature='..'/>` (XEP-0060 §7-8).
pub fn unsupported(feature: &str) -> StanzaError {
    let mut e = StanzaError::new(Condition::FeatureNotImplemented);
    e = e.with_extra(Element::new("unsupported", NS_ERRORS).attr("feature", feature));
    e
}

/// Is this IQ a pubsub request (for the PEP service)?
pub fn is_pubsub(iq: &Element) -> bool {
    iq.elements()
        .any(|c| c.name == "pubsub" && (c.ns == NS || c.ns == NS_OWNER))
}

/// Is this IQ, sent to an account's bare JID, for its PEP service: a pubsub request, a
/// disco#items query (the account's nodes) or a disco#info query about a node?
pub fn is_pep(iq: &Element) -> bool {
    is_pubsub(iq)
        || iq.get_attr("type") == Some("get")
            && iq.elements().any(|c| {
                c.name == "query"
                    && (c.ns == ns::DISCO_ITEMS
                        || c.ns == ns::DISCO_INFO && c.get_attr("node").is_some())
            })
}

/// The (JID, value) pairs of an owner's `<subscriptions/>` or `<affiliations/>` set.
fn changes(op: &Element, child: &str, attr: &str) -> Result<Vec<(String, String)>, StanzaError> {
    let mut out = Vec::new();
    for c in op.elements().filter(|c| c.name == child) {
        let (Some(jid), Some(value)) = (c.get_attr("jid"), c.get_attr(attr)) else {
            return Err(Condition::BadRequest.into());
        };
        out.push((jid.to_owned(), value.to_owned()));
    }
    if out.is_empty() || out.len() > MAX_SUBSCRIBERS {
        return Err(Condition::BadRequest.into());
    }
    Ok(out)
}

/// Parse a pubsub IQ (`get` or `set`).
pub fn parse(iq: &Element) -> Result<Request, StanzaError> {
    let set = iq.get_attr("type") == Some("set");
    if !set {
        if let Some(request) = parse_disco(iq) {
            return request;
        }
    }
    let Some(pubsub) = iq
        .elements()
        .find(|c| c.name == "pubsub" && (c.ns == NS || c.ns == NS_OWNER))
    else {
        return Err(Condition::BadRequest.into());
    };
    if pubsub.ns == NS_OWNER {
        parse_owner(pubsub, set)
    } else {
        parse_user(pubsub, set)
    }
}

/// A disco#items or disco#info query in a `get`, if the IQ holds one.
fn parse_disco(iq: &Element) -> Option<Result<Request, StanzaError>> {
    let q = iq
        .elements()
        .find(|c| c.name == "query" && (c.ns == ns::DISCO_ITEMS || c.ns == ns::DISCO_INFO))?;
    let node = q.get_attr("node").map(str::to_owned);
    Some(match (q.ns == ns::DISCO_ITEMS, node) {
        (true, node) => Ok(Request::DiscoItems { node }),
        (false, Some(node)) => Ok(Request::DiscoInfo { node }),
        (false, None) => Err(Condition::BadRequest.into()),
    })
}

/// The `node` attribute a request needs: non-empty, at most 1024 bytes.
fn node_of(e: &Element) -> Result<String, StanzaError> {
    match e.get_attr("node") {
        Some(n) if !n.is_empty() && n.len() <= 1024 => Ok(n.to_owned()),
        _ => Err(bad("nodeid-required")),
    }
}

/// The options form in `parent`'s child `name` (e.g. `<publish-options/>`), if any.
fn options_in(parent: &Element, name: &str) -> Result<Option<Options>, StanzaError> {
    match parent.get_child(name, &parent.ns.clone()) {
        Some(o) => match o.get_child("x", ns::DATA_FORMS) {
            Some(x) => parse_options(x).map(Some),
            None => Ok(None),
        },
        None => Ok(None),
    }
}

/// A `<pubsub/>` in the owner namespace: default configuration, subscriptions and
/// affiliations of a node, its deletion and configuration.
fn parse_owner(pubsub: &Element, set: bool) -> Result<Request, StanzaError> {
    let Some(op) = pubsub.elements().next() else {
        return Err(Condition::BadRequest.into());
    };
    if op.name == "default" && !set {
        return Ok(Request::DefaultConfig);
    }
    let node = node_of(op)?;
    match (op.name.as_str(), set) {
        ("subscriptions", false) => Ok(Request::OwnerSubscriptions { node }),
        ("subscriptions", true) => Ok(Request::OwnerSetSubscriptions {
            changes: changes(op, "subscription", "subscription")?,
            node,
        }),
        ("affiliations", false) => Ok(Request::OwnerAffiliations { node }),
        ("affiliations", true) => Ok(Request::OwnerSetAffiliations {
            changes: changes(op, "affiliation", "affiliation")?,
            node,
        }),
        ("delete", true) => Ok(Request::Delete { node }),
        ("configure", false) => Ok(Request::ConfigureGet { node }),
        ("configure", true) => {
            let x = op
                .get_child("x", ns::DATA_FORMS)
                .ok_or_else(|| StanzaError::from(Condition::BadRequest))?;
            Ok(Request::ConfigureSet {
                node,
                options: parse_options(x)?,
            })
        }
        _ => Err(unsupported(&op.name)),
    }
}

/// A `<pubsub/>` in the user namespace: publish, items, retract, create, (un)subscribe,
/// and one's own subscriptions and affiliations.
fn parse_user(pubsub: &Element, set: bool) -> Result<Request, StanzaError> {
    let mut children = pubsub.elements();
    let Some(op) = children.next() else {
        return Err(Condition::BadRequest.into());
    };
    match (op.name.as_str(), set) {
        ("publish", true) => parse_publish(pubsub, op),
        ("items", false) => {
            let node = node_of(op)?;
            let max = match op.get_attr("max_items") {
                Some(m) => Some(
                    m.parse()
                        .map_err(|_| StanzaError::from(Condition::BadRequest))?,
                ),
                None => None,
            };
            let ids = op
                .elements()
                .filter(|i| i.name == "item")
                .filter_map(|i| i.get_attr("id").map(str::to_owned))
                .collect();
            Ok(Request::Items { node, max, ids })
        }
        ("retract", true) => {
            let node = node_of(op)?;
            let ids: Vec<String> = op
                .elements()
                .filter(|i| i.name == "item")
                .filter_map(|i| i.get_attr("id").map(str::to_owned))
                .collect();
            if ids.is_empty() {
                return Err(bad("item-required"));
            }
            let notify = matches!(op.get_attr("notify"), Some("true" | "1"));
            Ok(Request::Retract { node, ids, notify })
        }
        ("create", true) => {
            let node = node_of(op)?;
            let options = match children.next() {
                Some(c) if c.name == "configure" => match c.get_child("x", ns::DATA_FORMS) {
                    Some(x) => Some(parse_options(x)?),
                    None => None,
                },
                _ => None,
            };
            Ok(Request::Create { node, options })
        }
        ("subscribe" | "unsubscribe", true) => {
            let node = node_of(op)?;
            let jid = op
                .get_attr("jid")
                .ok_or_else(|| bad("invalid-jid"))?
                .to_owned();
            Ok(if op.name == "subscribe" {
                Request::Subscribe { node, jid }
            } else {
                Request::Unsubscribe { node, jid }
            })
        }
        ("subscriptions", false) => Ok(Request::Subscriptions {
            node: op.get_attr("node").map(str::to_owned),
        }),
        ("affiliations", false) => Ok(Request::Affiliations {
            node: op.get_attr("node").map(str::to_owned),
        }),
        ("options", _) => Err(unsupported("subscription-options")),
        ("default", false) => Err(unsupported("retrieve-default-sub")),
        _ => Err(Condition::BadRequest.into()),
    }
}

/// A `<publish/>`: exactly one item with exactly one payload, and the publish options.
fn parse_publish(pubsub: &Element, op: &Element) -> Result<Request, StanzaError> {
    let node = node_of(op)?;
    let mut items = op.elements().filter(|i| i.name == "item");
    let item = items.next().ok_or_else(|| bad("item-required"))?;
    if items.next().is_some() {
        return Err(bad("invalid-payload"));
    }
    let mut payloads = item.elements();
    let payload = payloads.next().ok_or_else(|| bad("item-required"))?.clone();
    if payloads.next().is_some() {
        return Err(bad("invalid-payload"));
    }
    let id = item
        .get_attr("id")
        .filter(|i| !i.is_empty())
        .map(str::to_owned);
    Ok(Request::Publish {
        node,
        id,
        payload,
        options: options_in(pubsub, "publish-options")?,
    })
}

/// The fields of a node configuration or publish-options form that kleiber applies; others
/// are accepted when they ask for what kleiber does anyway (persistent items, notifications)
/// and refused otherwise.
fn parse_options(x: &Element) -> Result<Options, StanzaError> {
    let mut o = Options::default();
    for f in x.elements().filter(|f| f.name == "field") {
        let var = f.get_attr("var").unwrap_or_default();
        let value = f
            .get_child("value", ns::DATA_FORMS)
            .map(|v| v.text_content().trim().to_owned())
            .unwrap_or_default();
        match var {
            "FORM_TYPE" if value != NODE_CONFIG && value != PUBLISH_OPTIONS => {
                return Err(Condition::BadRequest.into());
            }
            "pubsub#access_model" => {
                let model = value.parse().map_err(|_| {
                    error(Condition::NotAcceptable, Some("unsupported-access-model"))
                })?;
                o.access_model = Some(model);
            }
            "pubsub#max_items" => {
                o.max_items = Some(if value == "max" {
                    MAX_ITEMS
                } else {
                    match value.parse::<usize>() {
                        Ok(n) if (1..=MAX_ITEMS).contains(&n) => n,
                        _ => return Err(Condition::NotAcceptable.into()),
                    }
                });
            }
            "pubsub#send_last_published_item" => {
                let when = value
                    .parse()
                    .map_err(|_| StanzaError::from(Condition::NotAcceptable))?;
                o.send_last_published_item = Some(when);
            }
            // Items are always kept.
            "pubsub#persist_items" if !matches!(value.as_str(), "1" | "true") => {
                return Err(Condition::NotAcceptable.into());
            }
            // Descriptive fields (title, type, ...) are accepted and not kept.
            _ => {}
        }
    }
    Ok(o)
}

/// The configuration form of a node (`configure` get).
pub fn config_form(
    access_model: AccessModel,
    max_items: usize,
    send_last: SendLastPublished,
) -> Element {
    let field = |var: &str, kind: &str, value: &str| {
        Element::new("field", ns::DATA_FORMS)
            .attr("var", var)
            .attr("type", kind)
            .child(Element::new("value", ns::DATA_FORMS).text(value))
    };
    let mut access = field("pubsub#access_model", "list-single", access_model.as_str());
    for m in AccessModel::ALL {
        access = access.child(
            Element::new("option", ns::DATA_FORMS)
                .child(Element::new("value", ns::DATA_FORMS).text(m.as_str())),
        );
    }
    Element::new("x", ns::DATA_FORMS)
        .attr("type", "form")
        .child(field("FORM_TYPE", "hidden", NODE_CONFIG))
        .child(access)
        .child(field(
            "pubsub#max_items",
            "text-single",
            &max_items.to_string(),
        ))
        .child(field("pubsub#persist_items", "boolean", "1"))
        .child(field(
            "pubsub#send_last_published_item",
            "list-single",
            send_last.as_str(),
        ))
}

/// `<event><items node='..'><item id='..'>payload</item></items></event>`.
pub fn item_event(node: &str, id: &str, payload: Element) -> Element {
    Element::new("event", NS_EVENT).child(
        Element::new("items", NS_EVENT)
            .attr("node", node)
            .child(Element::new("item", NS_EVENT).attr("id", id).child(payload)),
    )
}

/// `<event><items node='..'><retract id='..'/>...</items></event>`.
pub fn retract_event(node: &str, ids: &[String]) -> Element {
    let mut items = Element::new("items", NS_EVENT).attr("node", node);
    for id in ids {
        items = items.child(Element::new("retract", NS_EVENT).attr("id", id.as_str()));
    }
    Element::new("event", NS_EVENT).child(items)
}

/// `<event><delete node='..'/></event>`.
pub fn delete_event(node: &str) -> Element {
    Element::new("event", NS_EVENT).child(Element::new("delete", NS_EVENT).attr("node", node))
}

/// The nodes a client wants notifications for, from its disco#info features (`node+notify`).
pub fn notify_nodes(query: &Element) -> Vec<String> {
    query
        .elements()
        .filter(|f| f.name == "feature")
        .filter_map(|f| {
            f.get_attr("var")?
                .strip_suffix("+notify")
                .map(str::to_owned)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse_element;

    fn iq(kind: &str, inner: &str) -> Element {
        parse_element(&format!(
            "<iq xmlns='jabber:client' type='{kind}' id='1'>{inner}</iq>"
        ))
        .unwrap()
    }

    #[test]
    fn publish_with_options() {
        let r = parse(&iq("set", "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:xmpp:bookmarks:1'><item id='room@muc'><conference xmlns='urn:xmpp:bookmarks:1'/></item></publish><publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='pubsub#persist_items'><value>true</value></field><field var='pubsub#max_items'><value>max</value></field><field var='pubsub#send_last_published_item'><value>never</value></field><field var='pubsub#access_model'><value>whitelist</value></field></x></publish-options></pubsub>")).unwrap();
        let Request::Publish {
            node, id, options, ..
        } = r
        else {
            panic!("{r:?}")
        };
        assert_eq!(node, "urn:xmpp:bookmarks:1");
        assert_eq!(id.as_deref(), Some("room@muc"));
        assert_eq!(
            options,
            Some(Options {
                access_model: Some(AccessModel::Whitelist),
                max_items: Some(MAX_ITEMS),
                send_last_published_item: Some(SendLastPublished::Never),
            })
        );
    }

    #[test]
    fn bad_requests() {
        let no_node = iq("set", "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish><item><x xmlns='y'/></item></publish></pubsub>");
        assert!(parse(&no_node).is_err());
        let no_item = iq(
            "set",
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'/></pubsub>",
        );
        assert!(parse(&no_item).is_err());
        let bad_model = iq("set", "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='n'><x xmlns='jabber:x:data' type='submit'><field var='pubsub#access_model'><value>authorize</value></field></x></configure></pubsub>");
        assert!(parse(&bad_model).is_err());
        let sub = iq(
            "set",
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='n'/></pubsub>",
        );
        assert!(parse(&sub).is_err());
        let options = iq("get", "<pubsub xmlns='http://jabber.org/protocol/pubsub'><options node='n' jid='a@b'/></pubsub>");
        assert!(parse(&options).is_err());
    }

    #[test]
    fn notify_features() {
        let q = parse_element("<query xmlns='http://jabber.org/protocol/disco#info'><feature var='urn:xmpp:avatar:metadata+notify'/><feature var='urn:xmpp:avatar:metadata'/><feature var='eu.siacs.conversations.axolotl.devicelist+notify'/></query>").unwrap();
        assert_eq!(
            notify_nodes(&q),
            [
                "urn:xmpp:avatar:metadata",
                "eu.siacs.conversations.axolotl.devicelist"
            ]
        );
    }
}
