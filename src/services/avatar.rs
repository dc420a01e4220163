//! XEP-0398: user avatars kept in both forms. An avatar published to PEP (XEP-0084: the
//! `urn:xmpp:avatar:data` and `urn:xmpp:avatar:metadata` nodes) becomes the vCard's PHOTO,
//! and a vCard PHOTO becomes a PEP avatar; the account's presence carries the avatar's hash
//! (XEP-0153 `vcard-temp:x:update`), so clients of either kind show it.

use base64::Engine;
use sha1::Digest;

use crate::xml::Element;

pub const DATA: &str = "urn:xmpp:avatar:data";
pub const METADATA: &str = "urn:xmpp:avatar:metadata";
/// XEP-0153 presence element.
pub const UPDATE: &str = "vcard-temp:x:update";
/// What the account advertises.
pub const FEATURE: &str = "urn:xmpp:pep-vcard-conversion:0";

/// The avatar a metadata item announces: (sha-1 id, MIME type), or `None` for "no avatar".
pub fn announced(metadata: &Element) -> Option<(String, String)> {
    let info = metadata.elements().find(|e| e.name == "info")?;
    Some((
        info.get_attr("id")?.to_owned(),
        info.get_attr("type").unwrap_or("image/png").to_owned(),
    ))
}

/// The vCard with its PHOTO replaced by `photo` (type, base64 data), or removed.
pub fn with_photo(vcard: Option<Element>, photo: Option<(&str, &str)>) -> Element {
    let mut card = vcard.unwrap_or_else(|| Element::new("vCard", super::vcard::NS));
    card.children.retain(|c| {
        !matches!(c, crate::xml::Node::Element(e) if e.name == "PHOTO" && e.ns == super::vcard::NS)
    });
    if let Some((kind, data)) = photo {
        card = card.child(
            Element::new("PHOTO", super::vcard::NS)
                .child(Element::new("TYPE", super::vcard::NS).text(kind))
                .child(Element::new("BINVAL", super::vcard::NS).text(data)),
        );
    }
    card
}

/// The avatar in a vCard: (sha-1 hex id, MIME type, base64 data, size), if it has one.
pub fn from_vcard(vcard: &Element) -> Option<(String, String, String, usize)> {
    let photo = vcard.get_child("PHOTO", super::vcard::NS)?;
    let b64: String = photo
        .get_child("BINVAL", super::vcard::NS)?
        .text_content()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&b64)
        .ok()?;
    if bytes.is_empty() {
        return None;
    }
    let kind = photo
        .get_child("TYPE", super::vcard::NS)
        .map(|t| t.text_content().trim().to_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "image/png".into());
    let id: String = sha1::Sha1::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some((id, kind, b64, bytes.len()))
}

/// PEP payloads for an avatar: (data, metadata).
pub fn pep_payloads(id: &str, kind: &str, b64: &str, size: usize) -> (Element, Element) {
    (
        Element::new("data", DATA).text(b64),
        Element::new("metadata", METADATA).child(
            Element::new("info", METADATA)
                .attr("id", id)
                .attr("type", kind)
                .attr("bytes", size.to_string()),
        ),
    )
}

/// Stamp a presence with the avatar hash (`None`: the account has no avatar).
pub fn stamp(presence: &mut Element, hash: Option<&str>) {
    presence
        .children
        .retain(|c| !matches!(c, crate::xml::Node::Element(e) if e.name == "x" && e.ns == UPDATE));
    let mut photo = Element::new("photo", UPDATE);
    if let Some(h) = hash {
        photo = photo.text(h);
    }
    *presence = std::mem::take(presence).child(Element::new("x", UPDATE).child(photo));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse_element;

    #[test]
    fn vcard_photo_round_trip() {
        let card = parse_element("<vCard xmlns='vcard-temp'><FN>J</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>aGVs\nbG8=</BINVAL></PHOTO></vCard>").unwrap();
        let (id, kind, b64, size) = from_vcard(&card).unwrap();
        // sha1("hello")
        assert_eq!(id, "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d");
        assert_eq!(
            (kind.as_str(), b64.as_str(), size),
            ("image/png", "aGVsbG8=", 5)
        );
        let (_, meta) = pep_payloads(&id, &kind, &b64, size);
        assert_eq!(announced(&meta), Some((id.clone(), kind.clone())));
        let back = with_photo(Some(card.clone()), None);
        assert!(back.get_child("PHOTO", "vcard-temp").is_none());
        assert!(back.get_child("FN", "vcard-temp").is_some());
        let again = with_photo(Some(back), Some(("image/png", "aGVsbG8=")));
        assert_eq!(from_vcard(&again).unwrap().0, id);
    }

    #[test]
    fn presence_stamp_replaces_the_clients() {
        let mut p = parse_element("<presence xmlns='jabber:client'><x xmlns='vcard-temp:x:update'><photo>old</photo></x><show>away</show></presence>").unwrap();
        stamp(&mut p, Some("abc"));
        assert_eq!(
            p.to_xml("jabber:client"),
            "<presence><show>away</show><x xmlns='vcard-temp:x:update'><photo>abc</photo></x></presence>"
        );
    }
}
