//! XEP-0054: vCard-temp. The owner sets and gets it; anyone may get it (the privacy policy
//! calls it public). Stored as the server's re-serialisation, within `limits.max_vcard_bytes`.

use crate::store::Store;
use crate::xml::{parse_element, Element};
use crate::xmpp::account_parts as parts;
use crate::xmpp::{BareJid, Condition, StanzaError};

pub const NS: &str = "vcard-temp";

fn internal(e: crate::store::StoreError) -> StanzaError {
    e.stanza_error("vCard storage")
}

/// Answer a vCard get or set for `target`'s vCard, sent by `requester`; a vCard set is at
/// most `max_bytes` long.
pub fn handle(
    store: &Store,
    max_bytes: usize,
    requester: &BareJid,
    target: &BareJid,
    get: bool,
    payload: &Element,
) -> Result<Option<Element>, StanzaError> {
    let (d, u) = parts(target);
    if get {
        if target != requester && !store.accounts.exists(d, u).map_err(internal)? {
            return Err(Condition::ServiceUnavailable.into());
        }
        let stored = store.client_data.vcard(d, u).map_err(internal)?;
        let card = stored
            .and_then(|xml| parse_element(&xml).ok())
            .unwrap_or_else(|| Element::new("vCard", NS));
        return Ok(Some(card));
    }
    if target != requester {
        return Err(Condition::Forbidden.into());
    }
    let mut card = payload.clone();
    card.attrs.retain(|(k, _)| k == "xml:lang");
    let xml = card.to_xml(crate::xmpp::ns::CLIENT);
    if xml.len() > max_bytes {
        return Err(StanzaError::new(Condition::NotAcceptable).with_text("vCard too large"));
    }
    let xml = if card.children.is_empty() {
        String::new()
    } else {
        xml
    };
    store.client_data.set_vcard(d, u, &xml).map_err(internal)?;
    Ok(None)
}
