//! XEP-0280: Message Carbons. Which messages are copied, and the wrappers.
//!
//! A carbon is only ever made by the server from the account's own traffic (a message the user
//! sent, or one delivered to the user), and always comes `from` the user's bare JID: a client
//! can tell a forged carbon from another entity by its `from`.

use crate::xml::Element;
use crate::xmpp::ns;

pub const NS: &str = "urn:xmpp:carbons:2";
const FORWARD: &str = "urn:xmpp:forward:0";
const HINTS: &str = "urn:xmpp:hints";

/// XEP-0280 §6: is this message copied? `chat` messages, and `normal` ones with a body; never
/// errors, groupchat, messages marked `<private/>` or `<no-copy/>`, or carbons themselves.
pub fn eligible(msg: &Element) -> bool {
    if msg.name != "message" {
        return false;
    }
    let kind_ok = match msg.get_attr("type") {
        Some("chat") => true,
        None | Some("normal") => msg.get_child("body", ns::CLIENT).is_some(),
        _ => false,
    };
    kind_ok
        && msg.get_child("private", NS).is_none()
        && msg.get_child("no-copy", HINTS).is_none()
        && msg.get_child("received", NS).is_none()
        && msg.get_child("sent", NS).is_none()
}

/// Strip the `<private/>` marker before the message goes out (§7).
pub fn strip_private(msg: &mut Element) {
    msg.children
        .retain(|n| !matches!(n, crate::xml::Node::Element(e) if e.is("private", NS)));
}

/// The carbon of `msg` for the user's resource `to`.
pub fn wrap(kind: &str, user_bare: &str, to: &str, msg: &Element) -> Element {
    let mut inner = msg.clone();
    inner.ns = ns::CLIENT.to_owned();
    Element::new("message", ns::CLIENT)
        .attr("from", user_bare)
        .attr("to", to)
        .attr("type", msg.get_attr("type").unwrap_or("normal"))
        .child(Element::new(kind, NS).child(Element::new("forwarded", FORWARD).child(inner)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse_element;

    #[test]
    fn eligibility() {
        let yes = [
            "<message type='chat'/>",
            "<message><body>x</body></message>",
        ];
        let no = [
            "<message type='groupchat'><body>x</body></message>",
            "<message type='error'><body>x</body></message>",
            "<message type='headline'><body>x</body></message>",
            "<message/>",
            "<message type='chat'><private xmlns='urn:xmpp:carbons:2'/></message>",
            "<message type='chat'><no-copy xmlns='urn:xmpp:hints'/></message>",
            "<message type='chat'><received xmlns='urn:xmpp:carbons:2'/></message>",
        ];
        for x in yes {
            assert!(eligible(&parse_element(x).unwrap()), "{x}");
        }
        for x in no {
            assert!(!eligible(&parse_element(x).unwrap()), "{x}");
        }
    }

    #[test]
    fn wrapper_is_from_the_bare_jid() {
        let m =
            parse_element("<message type='chat' from='a@x/1' to='b@y'><body>hi</body></message>")
                .unwrap();
        assert_eq!(
            wrap("sent", "a@x", "a@x/2", &m).to_xml(ns::CLIENT),
            "<message from='a@x' to='a@x/2' type='chat'><sent xmlns='urn:xmpp:carbons:2'>\
             <forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' type='chat' from='a@x/1' to='b@y'>\
             <body>hi</body></message></forwarded></sent></message>"
        );
    }
}
