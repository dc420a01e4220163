//! XEP-0049: Private XML Storage. Only the owner reads or writes; one document per namespace
//! (bookmarks, client settings); `jabber:*` and `vcard-temp` namespaces are reserved.

use crate::store::Store;
use crate::xml::{parse_element, Element};
use crate::xmpp::{BareJid, Condition, StanzaError};

pub const NS: &str = "jabber:iq:private";

fn internal(e: crate::store::StoreError) -> StanzaError {
    e.stanza_error("private storage")
}

fn reserved(ns: &str) -> bool {
    ns.is_empty() || ns.starts_with("jabber:") || ns == "vcard-temp" || ns == NS
}

/// Answer a private-storage get or set on `target`'s storage, sent by `requester`; an account
/// stores at most `max_bytes`.
pub fn handle(
    store: &Store,
    max_bytes: usize,
    requester: &BareJid,
    target: &BareJid,
    get: bool,
    query: &Element,
) -> Result<Option<Element>, StanzaError> {
    if target != requester {
        return Err(Condition::Forbidden.into());
    }
    let (d, u) = (
        target.domain().as_str(),
        target.node().map(|n| n.as_str()).unwrap_or_default(),
    );
    let docs: Vec<&Element> = query.elements().collect();
    if docs.is_empty() {
        return Err(StanzaError::new(Condition::NotAcceptable).with_text("nothing to store or get"));
    }
    if docs.iter().any(|e| reserved(&e.ns)) {
        return Err(StanzaError::new(Condition::NotAcceptable).with_text("reserved namespace"));
    }
    let pep = &store.pep;
    let store = &store.client_data;
    if get {
        let mut out = Element::new("query", NS);
        for want in docs {
            // XEP-0411: bookmarks kept in PEP (XEP-0402) are what legacy clients see.
            if want.ns == super::bookmarks::LEGACY {
                if let Some(node) = pep.get(d, u, super::bookmarks::NODE).map_err(internal)? {
                    let items: Vec<(String, Element)> = node
                        .items
                        .iter()
                        .filter_map(|(id, xml)| Some((id.clone(), parse_element(xml).ok()?)))
                        .collect();
                    out = out.child(super::bookmarks::to_legacy(&items));
                    continue;
                }
            }
            let doc = store
                .private(d, u, &want.ns)
                .map_err(internal)?
                .and_then(|xml| parse_element(&xml).ok())
                .unwrap_or_else(|| want.clone());
            out = out.child(doc);
        }
        return Ok(Some(out));
    }
    let new_bytes: usize = docs
        .iter()
        .map(|e| e.to_xml(crate::xmpp::ns::CLIENT).len())
        .sum();
    let used = store.private_bytes(d, u).map_err(internal)?;
    if used + new_bytes > max_bytes {
        return Err(StanzaError::new(Condition::NotAcceptable).with_text("private storage full"));
    }
    for doc in docs {
        store
            .set_private(d, u, &doc.ns, &doc.to_xml(crate::xmpp::ns::CLIENT))
            .map_err(internal)?;
    }
    Ok(None)
}
