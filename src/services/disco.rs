//! XEP-0030: Service Discovery, for the server and for accounts.

use crate::xml::Element;
use crate::xmpp::{ns, Condition, StanzaError};

fn info(identity: (&str, &str, &str), features: &[&str]) -> Element {
    let mut q = Element::new("query", ns::DISCO_INFO).child(
        Element::new("identity", ns::DISCO_INFO)
            .attr("category", identity.0)
            .attr("type", identity.1)
            .attr("name", identity.2),
    );
    let mut f: Vec<&str> = features.to_vec();
    f.sort_unstable();
    for var in f {
        q = q.child(Element::new("feature", ns::DISCO_INFO).attr("var", var));
    }
    q
}

/// disco#info of the server: identity `server/im` and [`super::SERVER_FEATURES`].
pub fn server_info(query: &Element) -> Result<Option<Element>, StanzaError> {
    if query.get_attr("node").is_some() {
        return Err(Condition::ItemNotFound.into());
    }
    Ok(Some(info(
        ("server", "im", "kleiber"),
        super::SERVER_FEATURES,
    )))
}

/// disco#items of the server: no components or services yet.
pub fn server_items(query: &Element, _host: &str) -> Result<Option<Element>, StanzaError> {
    if query.get_attr("node").is_some() {
        return Err(Condition::ItemNotFound.into());
    }
    Ok(Some(Element::new("query", ns::DISCO_ITEMS)))
}

/// disco#info of an account, asked by its owner: identity `account/registered`.
pub fn account_info(query: &Element) -> Result<Option<Element>, StanzaError> {
    if query.get_attr("node").is_some() {
        return Err(Condition::ItemNotFound.into());
    }
    Ok(Some(info(
        ("account", "registered", ""),
        &[ns::DISCO_INFO, ns::DISCO_ITEMS],
    )))
}
