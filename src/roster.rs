//! RFC 6121 rosters as pure data and rules: the roster item, the subscription state machine of
//! Appendix A (outbound and inbound tables, with pre-approval, §3.4), and the XML of roster
//! queries and pushes (`jabber:iq:roster`, with XEP-0237 versions).
//!
//! No storage and no actors here: `actors/roster.rs` applies these rules to the stored items.

use serde::{Deserialize, Serialize};

use crate::xml::Element;
use crate::xmpp::{Condition, StanzaError};

/// The roster namespace.
pub const NS: &str = "jabber:iq:roster";
/// Longest item name or group name accepted, in bytes.
pub const MAX_NAME: usize = 1023;
/// Most groups on one item.
pub const MAX_GROUPS: usize = 64;

/// What the server stores about one contact of one user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// The user put the contact on the roster (an item shown to clients). A record that is
    /// not on the roster only remembers a pending inbound request.
    pub in_roster: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The user receives the contact's presence.
    #[serde(default)]
    pub to: bool,
    /// The contact receives the user's presence.
    #[serde(default)]
    pub from: bool,
    /// The user asked for the contact's presence (Pending Out, `ask='subscribe'`).
    #[serde(default)]
    pub pending_out: bool,
    /// The contact asked for the user's presence (Pending In); kept across restarts and shown
    /// again at the user's next login.
    #[serde(default)]
    pub pending_in: bool,
    /// The user pre-approved a subscription request from the contact (§3.4).
    #[serde(default)]
    pub approved: bool,
    /// Roster version at which the item last changed (XEP-0237).
    #[serde(default)]
    pub ver: u64,
}

impl Item {
    /// The `subscription` attribute.
    pub fn subscription(&self) -> &'static str {
        match (self.to, self.from) {
            (false, false) => "none",
            (true, false) => "to",
            (false, true) => "from",
            (true, true) => "both",
        }
    }

    /// Is there anything left worth storing?
    pub fn is_empty(&self) -> bool {
        !self.in_roster && !self.pending_in && !self.to && !self.from && !self.approved
    }

    /// The `<item/>` of a roster result or push.
    pub fn to_element(&self, jid: &str) -> Element {
        let mut e = Element::new("item", NS)
            .attr("jid", jid)
            .attr("subscription", self.subscription());
        if let Some(n) = &self.name {
            e.set_attr("name", n.clone());
        }
        if self.pending_out {
            e.set_attr("ask", "subscribe");
        }
        if self.approved {
            e.set_attr("approved", "true");
        }
        for g in &self.groups {
            e = e.child(Element::new("group", NS).text(g.clone()));
        }
        e
    }
}

/// The four subscription stanza types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubKind {
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
}

impl SubKind {
    /// From a presence `type`.
    pub fn from_type(t: &str) -> Option<SubKind> {
        Some(match t {
            "subscribe" => SubKind::Subscribe,
            "subscribed" => SubKind::Subscribed,
            "unsubscribe" => SubKind::Unsubscribe,
            "unsubscribed" => SubKind::Unsubscribed,
            _ => return None,
        })
    }

    /// The presence `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            SubKind::Subscribe => "subscribe",
            SubKind::Subscribed => "subscribed",
            SubKind::Unsubscribe => "unsubscribe",
            SubKind::Unsubscribed => "unsubscribed",
        }
    }
}

/// What processing a subscription stanza decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The stored state changed (push the item if it is on the roster).
    pub changed: bool,
    /// Outbound: route the stanza to the contact. Inbound: deliver it to the user.
    pub pass_on: bool,
    /// Inbound: answer the contact on the user's behalf with this type.
    pub auto_reply: Option<SubKind>,
}

/// A snapshot of the four flags that make up the RFC 6121 state.
fn flags(i: &Item) -> (bool, bool, bool, bool) {
    (i.to, i.from, i.pending_out, i.pending_in)
}

/// The user sends a subscription stanza to the contact (RFC 6121 Appendix A.2 and §3).
pub fn outbound(item: &mut Item, kind: SubKind) -> Outcome {
    let before = (flags(item), item.approved, item.in_roster);
    let pass_on = match kind {
        SubKind::Subscribe => {
            // §3.1.2: the contact goes on the roster; always routed (the contact's server
            // decides), state changes only where not already subscribed.
            item.in_roster = true;
            if !item.to {
                item.pending_out = true;
            }
            true
        }
        SubKind::Unsubscribe => {
            let was = item.to || item.pending_out;
            item.to = false;
            item.pending_out = false;
            was
        }
        SubKind::Subscribed => {
            if item.pending_in {
                // §3.1.5: approving a request puts the contact on the roster.
                item.pending_in = false;
                item.from = true;
                item.in_roster = true;
                true
            } else if !item.from {
                // §3.4: no request yet: a pre-approval, kept by the server, not routed.
                item.approved = true;
                item.in_roster = true;
                false
            } else {
                false
            }
        }
        SubKind::Unsubscribed => {
            let was = item.from || item.pending_in;
            item.from = false;
            item.pending_in = false;
            item.approved = false;
            was
        }
    };
    Outcome {
        changed: before != (flags(item), item.approved, item.in_roster),
        pass_on,
        auto_reply: None,
    }
}

/// The contact's subscription stanza arrives for the user (RFC 6121 Appendix A.3 and §3).
pub fn inbound(item: &mut Item, kind: SubKind) -> Outcome {
    let before = (flags(item), item.approved);
    let mut auto_reply = None;
    let pass_on = match kind {
        SubKind::Subscribe => {
            if item.from {
                // §3.1.3: already approved: answer for the user, don't bother them.
                auto_reply = Some(SubKind::Subscribed);
                false
            } else if item.approved {
                // §3.4: pre-approved.
                item.approved = false;
                item.from = true;
                auto_reply = Some(SubKind::Subscribed);
                false
            } else if item.pending_in {
                // Already waiting for the user's answer: no duplicate.
                false
            } else {
                item.pending_in = true;
                true
            }
        }
        SubKind::Unsubscribe => {
            let was = item.from || item.pending_in;
            item.from = false;
            item.pending_in = false;
            was
        }
        SubKind::Subscribed => {
            if item.pending_out {
                item.pending_out = false;
                item.to = true;
                true
            } else {
                false
            }
        }
        SubKind::Unsubscribed => {
            let was = item.to || item.pending_out;
            item.to = false;
            item.pending_out = false;
            was
        }
    };
    Outcome {
        changed: before != (flags(item), item.approved),
        pass_on,
        auto_reply,
    }
}

/// A validated roster set (RFC 6121 §2.3).
#[derive(Debug, PartialEq, Eq)]
pub enum SetRequest {
    /// Add or update the item (name and groups only; subscription is not set by clients).
    Update {
        jid: String,
        name: Option<String>,
        groups: Vec<String>,
    },
    /// `subscription='remove'` (§2.5).
    Remove { jid: String },
}

/// Validate the `<query/>` of a roster set; the JID is returned normalised (bare).
pub fn parse_set(query: &Element) -> Result<SetRequest, StanzaError> {
    let mut items = query.elements().filter(|e| e.is("item", NS));
    let (Some(item), None) = (items.next(), items.next()) else {
        return Err(StanzaError::new(Condition::BadRequest).with_text("exactly one item"));
    };
    let jid = item
        .get_attr("jid")
        .ok_or_else(|| StanzaError::new(Condition::BadRequest).with_text("item without jid"))?;
    let jid = crate::xmpp::jid(jid).map_err(|_| StanzaError::new(Condition::JidMalformed))?;
    if jid.resource().is_some() {
        return Err(
            StanzaError::new(Condition::JidMalformed).with_text("roster items are bare JIDs")
        );
    }
    let jid = jid.to_string();
    if item.get_attr("subscription") == Some("remove") {
        return Ok(SetRequest::Remove { jid });
    }
    let name = item
        .get_attr("name")
        .map(str::to_owned)
        .filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.len() > MAX_NAME) {
        return Err(StanzaError::new(Condition::NotAcceptable).with_text("name too long"));
    }
    let mut groups: Vec<String> = Vec::new();
    for g in item.elements().filter(|e| e.is("group", NS)) {
        let g = g.text_content();
        if g.is_empty() || g.len() > MAX_NAME {
            return Err(StanzaError::new(Condition::NotAcceptable).with_text("invalid group name"));
        }
        if groups.contains(&g) {
            return Err(StanzaError::new(Condition::BadRequest).with_text("duplicate group"));
        }
        groups.push(g);
    }
    if groups.len() > MAX_GROUPS {
        return Err(StanzaError::new(Condition::NotAcceptable).with_text("too many groups"));
    }
    Ok(SetRequest::Update { jid, name, groups })
}

/// A roster version string for `ver` (opaque to clients).
pub fn ver_string(ver: u64) -> String {
    ver.to_string()
}

/// Parse a client's version string.
pub fn parse_ver(s: &str) -> Option<u64> {
    s.parse().ok()
}

/// The block-list entries that block `jid` (XEP-0191 §3.1): itself, its bare JID, its domain.
pub fn block_entries(jid: &str) -> [&str; 3] {
    [
        jid,
        crate::xmpp::bare_part(jid),
        crate::xmpp::domain_part(jid),
    ]
}

/// Does a block list hold `jid` (full, bare or domain)?
pub fn blocks(list: &std::collections::HashSet<String>, jid: &str) -> bool {
    !list.is_empty() && block_entries(jid).iter().any(|e| list.contains(*e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use SubKind::*;

    /// The nine RFC 6121 states by name, as (to, from, pending_out, pending_in).
    fn state(name: &str) -> Item {
        let (to, from, po, pi) = match name {
            "None" => (false, false, false, false),
            "None+PendingOut" => (false, false, true, false),
            "None+PendingIn" => (false, false, false, true),
            "None+PendingOut/In" => (false, false, true, true),
            "To" => (true, false, false, false),
            "To+PendingIn" => (true, false, false, true),
            "From" => (false, true, false, false),
            "From+PendingOut" => (false, true, true, false),
            "Both" => (true, true, false, false),
            other => panic!("{other}"),
        };
        Item {
            in_roster: true,
            to,
            from,
            pending_out: po,
            pending_in: pi,
            ..Item::default()
        }
    }

    fn name(i: &Item) -> &'static str {
        match flags(i) {
            (false, false, false, false) => "None",
            (false, false, true, false) => "None+PendingOut",
            (false, false, false, true) => "None+PendingIn",
            (false, false, true, true) => "None+PendingOut/In",
            (true, false, false, false) => "To",
            (true, false, false, true) => "To+PendingIn",
            (false, true, false, false) => "From",
            (false, true, true, false) => "From+PendingOut",
            (true, true, false, false) => "Both",
            _ => "invalid",
        }
    }

    const ALL: [&str; 9] = [
        "None",
        "None+PendingOut",
        "None+PendingIn",
        "None+PendingOut/In",
        "To",
        "To+PendingIn",
        "From",
        "From+PendingOut",
        "Both",
    ];

    fn check(table: &[(&str, &str, bool)], f: fn(&mut Item, SubKind) -> Outcome, kind: SubKind) {
        assert_eq!(table.len(), 9, "every state is a row");
        for (from, to, pass) in table {
            let mut i = state(from);
            let o = f(&mut i, kind);
            assert_eq!(name(&i), *to, "{kind:?} in {from}");
            assert_eq!(o.pass_on, *pass, "{kind:?} in {from}: pass on");
            assert_eq!(o.changed, from != to, "{kind:?} in {from}: changed");
        }
        assert!(ALL.iter().all(|s| table.iter().any(|r| r.0 == *s)));
    }

    #[test]
    fn a_2_1_outbound_subscribe() {
        check(
            &[
                ("None", "None+PendingOut", true),
                ("None+PendingOut", "None+PendingOut", true),
                ("None+PendingIn", "None+PendingOut/In", true),
                ("None+PendingOut/In", "None+PendingOut/In", true),
                ("To", "To", true),
                ("To+PendingIn", "To+PendingIn", true),
                ("From", "From+PendingOut", true),
                ("From+PendingOut", "From+PendingOut", true),
                ("Both", "Both", true),
            ],
            outbound,
            Subscribe,
        );
    }

    #[test]
    fn a_2_2_outbound_unsubscribe() {
        check(
            &[
                ("None", "None", false),
                ("None+PendingOut", "None", true),
                ("None+PendingIn", "None+PendingIn", false),
                ("None+PendingOut/In", "None+PendingIn", true),
                ("To", "None", true),
                ("To+PendingIn", "None+PendingIn", true),
                ("From", "From", false),
                ("From+PendingOut", "From", true),
                ("Both", "From", true),
            ],
            outbound,
            Unsubscribe,
        );
    }

    #[test]
    fn a_2_3_outbound_subscribed() {
        // Rows without a pending request become pre-approvals (state unchanged, not routed).
        let table = [
            ("None", "None", false),
            ("None+PendingOut", "None+PendingOut", false),
            ("None+PendingIn", "From", true),
            ("None+PendingOut/In", "From+PendingOut", true),
            ("To", "To", false),
            ("To+PendingIn", "Both", true),
            ("From", "From", false),
            ("From+PendingOut", "From+PendingOut", false),
            ("Both", "Both", false),
        ];
        for (from, to, pass) in table {
            let mut i = state(from);
            let o = outbound(&mut i, Subscribed);
            assert_eq!((name(&i), o.pass_on), (to, pass), "{from}");
            let preapproved = matches!(from, "None" | "None+PendingOut" | "To");
            assert_eq!(i.approved, preapproved, "{from}: pre-approval");
        }
    }

    #[test]
    fn a_2_4_outbound_unsubscribed() {
        check(
            &[
                ("None", "None", false),
                ("None+PendingOut", "None+PendingOut", false),
                ("None+PendingIn", "None", true),
                ("None+PendingOut/In", "None+PendingOut", true),
                ("To", "To", false),
                ("To+PendingIn", "To", true),
                ("From", "None", true),
                ("From+PendingOut", "None+PendingOut", true),
                ("Both", "To", true),
            ],
            outbound,
            Unsubscribed,
        );
    }

    #[test]
    fn a_3_1_inbound_subscribe() {
        let table = [
            ("None", "None+PendingIn", true, None),
            ("None+PendingOut", "None+PendingOut/In", true, None),
            ("None+PendingIn", "None+PendingIn", false, None),
            ("None+PendingOut/In", "None+PendingOut/In", false, None),
            ("To", "To+PendingIn", true, None),
            ("To+PendingIn", "To+PendingIn", false, None),
            ("From", "From", false, Some(Subscribed)),
            (
                "From+PendingOut",
                "From+PendingOut",
                false,
                Some(Subscribed),
            ),
            ("Both", "Both", false, Some(Subscribed)),
        ];
        for (from, to, deliver, reply) in table {
            let mut i = state(from);
            let o = inbound(&mut i, Subscribe);
            assert_eq!(
                (name(&i), o.pass_on, o.auto_reply),
                (to, deliver, reply),
                "{from}"
            );
        }
    }

    #[test]
    fn a_3_1_inbound_subscribe_pre_approved() {
        for (from, to) in [
            ("None", "From"),
            ("None+PendingOut", "From+PendingOut"),
            ("To", "Both"),
        ] {
            let mut i = state(from);
            assert!(!outbound(&mut i, Subscribed).pass_on);
            let o = inbound(&mut i, Subscribe);
            assert_eq!(
                (name(&i), o.pass_on, o.auto_reply),
                (to, false, Some(Subscribed))
            );
            assert!(!i.approved, "a pre-approval is used once");
        }
    }

    #[test]
    fn a_3_2_inbound_unsubscribe() {
        check(
            &[
                ("None", "None", false),
                ("None+PendingOut", "None+PendingOut", false),
                ("None+PendingIn", "None", true),
                ("None+PendingOut/In", "None+PendingOut", true),
                ("To", "To", false),
                ("To+PendingIn", "To", true),
                ("From", "None", true),
                ("From+PendingOut", "None+PendingOut", true),
                ("Both", "To", true),
            ],
            inbound,
            Unsubscribe,
        );
    }

    #[test]
    fn a_3_3_inbound_subscribed() {
        check(
            &[
                ("None", "None", false),
                ("None+PendingOut", "To", true),
                ("None+PendingIn", "None+PendingIn", false),
                ("None+PendingOut/In", "To+PendingIn", true),
                ("To", "To", false),
                ("To+PendingIn", "To+PendingIn", false),
                ("From", "From", false),
                ("From+PendingOut", "Both", true),
                ("Both", "Both", false),
            ],
            inbound,
            Subscribed,
        );
    }

    #[test]
    fn a_3_4_inbound_unsubscribed() {
        check(
            &[
                ("None", "None", false),
                ("None+PendingOut", "None", true),
                ("None+PendingIn", "None+PendingIn", false),
                ("None+PendingOut/In", "None+PendingIn", true),
                ("To", "None", true),
                ("To+PendingIn", "None+PendingIn", true),
                ("From", "From", false),
                ("From+PendingOut", "From", true),
                ("Both", "From", true),
            ],
            inbound,
            Unsubscribed,
        );
    }

    #[test]
    fn roster_set_validation() {
        let q = |items: &str| {
            let xml = format!("<query xmlns='jabber:iq:roster'>{items}</query>");
            crate::xml::parse_element(&xml).unwrap()
        };
        assert_eq!(
            parse_set(&q(
                "<item jid='Juliet@Example.com' name='J'><group>Friends</group></item>"
            ))
            .unwrap(),
            SetRequest::Update {
                jid: "juliet@example.com".into(),
                name: Some("J".into()),
                groups: vec!["Friends".into()]
            }
        );
        assert_eq!(
            parse_set(&q("<item jid='a@b' subscription='remove'/>")).unwrap(),
            SetRequest::Remove { jid: "a@b".into() }
        );
        let err = |x: &str| parse_set(&q(x)).unwrap_err().condition;
        assert_eq!(
            err("<item jid='a@b'/><item jid='c@d'/>"),
            Condition::BadRequest
        );
        assert_eq!(err(""), Condition::BadRequest);
        assert_eq!(
            err(&format!("<item jid='a@b' name='{}'/>", "x".repeat(1024))),
            Condition::NotAcceptable
        );
        assert_eq!(
            err("<item jid='a@b'><group></group></item>"),
            Condition::NotAcceptable
        );
        assert_eq!(
            err("<item jid='a@b'><group>x</group><group>x</group></item>"),
            Condition::BadRequest
        );
        assert_eq!(err("<item jid='a@b/r'/>"), Condition::JidMalformed);
        assert_eq!(err("<item jid='@@'/>"), Condition::JidMalformed);
    }

    #[test]
    fn item_xml() {
        let i = Item {
            in_roster: true,
            name: Some("Romeo".into()),
            groups: vec!["Friends".into()],
            pending_out: true,
            from: true,
            ..Item::default()
        };
        assert_eq!(
            i.to_element("romeo@example.net").to_xml(NS),
            "<item jid='romeo@example.net' subscription='from' name='Romeo' ask='subscribe'><group>Friends</group></item>"
        );
    }
}
