//! XEP-0411: bookmarks kept once, in PEP (`urn:xmpp:bookmarks:1`, XEP-0402), and shown to
//! clients that still use XEP-0048 bookmarks, in private XML storage (XEP-0049) or in the
//! `storage:bookmarks` PEP node, as a `storage:bookmarks` document converted from them, and
//! the other way round.

use crate::xml::Element;

/// The XEP-0402 node (and payload namespace).
pub const NODE: &str = "urn:xmpp:bookmarks:1";
/// The XEP-0048 private-storage namespace.
pub const LEGACY: &str = "storage:bookmarks";
/// What the account advertises (XEP-0402 §5.3).
pub const COMPAT_FEATURE: &str = "urn:xmpp:bookmarks:1#compat";
/// ... and for the XEP-0048 PEP node `storage:bookmarks` (XEP-0411 §3).
pub const COMPAT_PEP_FEATURE: &str = "urn:xmpp:bookmarks:1#compat-pep";

fn truthy(v: Option<&str>) -> bool {
    matches!(v, Some("true" | "1"))
}

/// A legacy `<storage xmlns='storage:bookmarks'/>` as XEP-0402 items: (room JID, payload).
pub fn from_legacy(storage: &Element) -> Vec<(String, Element)> {
    storage
        .elements()
        .filter(|c| c.name == "conference")
        .filter_map(|c| {
            let jid = c.get_attr("jid")?.to_owned();
            let mut conf = Element::new("conference", NODE);
            if let Some(n) = c.get_attr("name") {
                conf.set_attr("name", n);
            }
            if truthy(c.get_attr("autojoin")) {
                conf.set_attr("autojoin", "true");
            }
            for child in ["nick", "password"] {
                if let Some(v) = c.get_child(child, LEGACY) {
                    conf = conf.child(Element::new(child, NODE).text(v.text_content()));
                }
            }
            Some((jid, conf))
        })
        .collect()
}

/// XEP-0402 items (room JID, payload) as a legacy `storage:bookmarks` document.
pub fn to_legacy(items: &[(String, Element)]) -> Element {
    let mut storage = Element::new("storage", LEGACY);
    for (jid, conf) in items {
        let mut c = Element::new("conference", LEGACY).attr("jid", jid.as_str());
        if let Some(n) = conf.get_attr("name") {
            c.set_attr("name", n);
        }
        c.set_attr(
            "autojoin",
            if truthy(conf.get_attr("autojoin")) {
                "true"
            } else {
                "false"
            },
        );
        for child in ["nick", "password"] {
            if let Some(v) = conf.get_child(child, NODE) {
                c = c.child(Element::new(child, LEGACY).text(v.text_content()));
            }
        }
        storage = storage.child(c);
    }
    storage
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse_element;

    #[test]
    fn round_trip() {
        let legacy = parse_element("<storage xmlns='storage:bookmarks'><conference name='Tomb' autojoin='1' jid='tomb@chat.example'><nick>Romeo</nick></conference><conference jid='plain@chat.example'/><url name='x' url='https://example.org'/></storage>").unwrap();
        let items = from_legacy(&legacy);
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].0, "tomb@chat.example");
        assert_eq!(
            items[0].1.to_xml("jabber:client"),
            "<conference xmlns='urn:xmpp:bookmarks:1' name='Tomb' autojoin='true'><nick>Romeo</nick></conference>"
        );
        let back = to_legacy(&items);
        assert_eq!(
            back.to_xml("jabber:client"),
            "<storage xmlns='storage:bookmarks'><conference jid='tomb@chat.example' name='Tomb' autojoin='true'><nick>Romeo</nick></conference><conference jid='plain@chat.example' autojoin='false'/></storage>"
        );
    }
}
