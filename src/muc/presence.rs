//! The `muc#user` vocabulary a room speaks (XEP-0045 §15.6): the `<x/>` with an occupant's
//! `<item/>` and the status codes, and what of a client's presence a room passes on.

use super::{Affiliation, Role, NS_MUC, NS_USER};
use crate::xml::{Element, Node};
use crate::xmpp::ns;

/// Status codes (XEP-0045 §15.6.2) the rooms use.
pub mod status {
    /// Any occupant may see real JIDs (on entering a non-anonymous room).
    pub const NON_ANONYMOUS: u16 = 100;
    /// Configuration change that does not change privacy (a message to the room).
    pub const CONFIG_CHANGED: u16 = 104;
    /// This presence is about you.
    pub const SELF: u16 = 110;
    /// Room logging is enabled (never: kleiber does not archive rooms).
    pub const LOGGING_ON: u16 = 170;
    /// The room is now non-anonymous.
    pub const NOW_NON_ANONYMOUS: u16 = 172;
    /// The room is now semi-anonymous.
    pub const NOW_SEMI_ANONYMOUS: u16 = 173;
    /// A new room was created.
    pub const CREATED: u16 = 201;
    /// The service changed your nick.
    pub const NICK_ASSIGNED: u16 = 210;
    /// Banned.
    pub const BANNED: u16 = 301;
    /// New nick.
    pub const NICK_CHANGED: u16 = 303;
    /// Kicked.
    pub const KICKED: u16 = 307;
    /// Removed because of an affiliation change (members-only room).
    pub const AFFILIATION_LOST: u16 = 321;
    /// Removed because the room became members-only.
    pub const MEMBERS_ONLY: u16 = 322;
    /// Removed because the service is shutting down.
    pub const SHUTDOWN: u16 = 332;
}

/// An `<item/>`: affiliation, role, optionally the real JID and a new nick.
pub fn item(a: Affiliation, r: Role, jid: Option<&str>, nick: Option<&str>) -> Element {
    let mut i = Element::new("item", NS_USER)
        .attr("affiliation", a.as_str())
        .attr("role", r.as_str());
    if let Some(j) = jid {
        i.set_attr("jid", j);
    }
    if let Some(n) = nick {
        i.set_attr("nick", n);
    }
    i
}

/// `<x xmlns='…muc#user'>` with `item` and the status codes.
pub fn user_x(item: Element, codes: &[u16]) -> Element {
    let mut x = Element::new("x", NS_USER).child(item);
    for c in codes {
        x = x.child(Element::new("status", NS_USER).attr("code", c.to_string()));
    }
    x
}

/// Add an `<actor nick/>` and a `<reason/>` to the item of `x` (kicks, bans, role changes).
pub fn with_actor_reason(mut x: Element, actor: Option<&str>, reason: Option<&str>) -> Element {
    if let Some(Node::Element(item)) = x.children.first_mut() {
        if let Some(a) = actor {
            item.children.push(Node::Element(
                Element::new("actor", NS_USER).attr("nick", a),
            ));
        }
        if let Some(r) = reason.filter(|r| !r.is_empty()) {
            item.children
                .push(Node::Element(Element::new("reason", NS_USER).text(r)));
        }
    }
    x
}

/// What of a client's presence the room passes on: `show`, `status`, `priority` and
/// extensions (caps, avatars, ...), not the MUC `<x/>` (which carries the password), nor the
/// client's own `muc#user` or occupant-id elements (which only the room may set).
pub fn payload(presence: &Element) -> Vec<Node> {
    presence
        .children
        .iter()
        .filter(|n| match n {
            Node::Element(e) => {
                !(e.ns == NS_MUC
                    || e.ns == NS_USER
                    || e.ns == super::OCCUPANT_ID
                    || (e.ns == ns::CLIENT && e.name == "error"))
            }
            Node::Text(_) => false,
        })
        .cloned()
        .collect()
}

/// The status codes in a `muc#user` `<x/>` of `stanza` (for tests and clients of this crate).
pub fn codes(stanza: &Element) -> Vec<u16> {
    stanza
        .get_child("x", NS_USER)
        .map(|x| {
            x.elements()
                .filter(|s| s.name == "status")
                .filter_map(|s| s.get_attr("code")?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_with_codes_and_actor() {
        let x = user_x(
            item(Affiliation::None, Role::None, None, None),
            &[status::KICKED],
        );
        let x = with_actor_reason(x, Some("boss"), Some("spam"));
        let p = Element::new("presence", ns::CLIENT).child(x);
        assert_eq!(codes(&p), [307]);
        let xml = p.to_xml(ns::CLIENT);
        assert!(xml.contains("<actor nick=\"boss\"/>") || xml.contains("<actor nick='boss'/>"));
        assert!(xml.contains("spam"));
    }

    #[test]
    fn payload_drops_muc_elements() {
        let p = Element::new("presence", ns::CLIENT)
            .child(Element::new("show", ns::CLIENT).text("away"))
            .child(Element::new("x", NS_MUC).child(Element::new("password", NS_MUC).text("secret")))
            .child(Element::new("occupant-id", super::super::OCCUPANT_ID).attr("id", "fake"));
        let kept = payload(&p);
        assert_eq!(kept.len(), 1);
    }
}
