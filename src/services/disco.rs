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

/// What the server says about itself in disco#info, computed once at start.
#[derive(Debug, Clone, Default)]
pub struct ServerInfo {
    /// XEP-0157 contact addresses (`abuse-addresses`, ...), as a data form.
    pub contact_form: Option<Element>,
    /// XEP-0115 verification string of the server's disco#info.
    pub caps_ver: String,
    /// The service domains of each account host, listed in its disco#items.
    pub items: std::collections::BTreeMap<String, Vec<String>>,
    /// Features of what the configuration switched on (XEP-0215 with `[turn]`), beyond
    /// [`super::SERVER_FEATURES`].
    pub optional_features: Vec<&'static str>,
    /// Features of accounts that the configuration switched on (XEP-0357 push with
    /// `[push] enabled`), listed in each account's disco#info.
    pub account_features: Vec<&'static str>,
}

/// XEP-0115 node of the server's capabilities.
pub const CAPS_NODE: &str = "https://github.com/kleiber-xmpp/kleiber";

impl ServerInfo {
    /// From the configured contact addresses (field name -> URIs).
    pub fn new(contacts: &[(&str, &[String])]) -> ServerInfo {
        let fields: Vec<(&str, &[String])> = contacts
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .cloned()
            .collect();
        let contact_form = (!fields.is_empty()).then(|| {
            let mut x = Element::new("x", crate::xmpp::ns::DATA_FORMS)
                .attr("type", "result")
                .child(
                    Element::new("field", crate::xmpp::ns::DATA_FORMS)
                        .attr("var", "FORM_TYPE")
                        .attr("type", "hidden")
                        .child(
                            Element::new("value", crate::xmpp::ns::DATA_FORMS)
                                .text("http://jabber.org/network/serverinfo"),
                        ),
                );
            for (var, values) in &fields {
                let mut f = Element::new("field", crate::xmpp::ns::DATA_FORMS).attr("var", *var);
                for v in values.iter() {
                    f = f.child(Element::new("value", crate::xmpp::ns::DATA_FORMS).text(v.clone()));
                }
                x = x.child(f);
            }
            x
        });
        let mut info = ServerInfo {
            contact_form,
            caps_ver: String::new(),
            items: Default::default(),
            optional_features: Vec::new(),
            account_features: Vec::new(),
        };
        info.caps_ver = caps_ver(&info.disco_info());
        info
    }

    /// With `features` advertised too (the XEP-0115 hash follows).
    pub fn with_features(mut self, features: &[&'static str]) -> ServerInfo {
        self.optional_features.extend_from_slice(features);
        self.caps_ver = caps_ver(&self.disco_info());
        self
    }

    /// Whether disco#info lists `feature`.
    pub fn offers(&self, feature: &str) -> bool {
        self.optional_features.contains(&feature) || super::SERVER_FEATURES.contains(&feature)
    }

    /// The server's disco#info `<query/>`.
    pub fn disco_info(&self) -> Element {
        let features = [super::SERVER_FEATURES, &self.optional_features].concat();
        let mut q = info(("server", "im", "kleiber"), &features);
        if let Some(f) = &self.contact_form {
            q = q.child(f.clone());
        }
        q
    }

    /// The XEP-0115 `<c/>` for the stream features.
    pub fn caps(&self) -> Element {
        Element::new("c", "http://jabber.org/protocol/caps")
            .attr("hash", "sha-1")
            .attr("node", CAPS_NODE)
            .attr("ver", self.caps_ver.clone())
    }
}

/// XEP-0115 §5.1 verification string of a disco#info `<query/>`.
pub fn caps_ver(query: &Element) -> String {
    use base64::Engine;
    use sha1::Digest;
    let mut ids: Vec<String> = query
        .elements()
        .filter(|e| e.name == "identity")
        .map(|e| {
            format!(
                "{}/{}/{}/{}<",
                e.get_attr("category").unwrap_or_default(),
                e.get_attr("type").unwrap_or_default(),
                e.get_attr("xml:lang").unwrap_or_default(),
                e.get_attr("name").unwrap_or_default()
            )
        })
        .collect();
    ids.sort();
    let mut feats: Vec<&str> = query
        .elements()
        .filter(|e| e.name == "feature")
        .filter_map(|e| e.get_attr("var"))
        .collect();
    feats.sort_unstable();
    let mut s: String = ids.concat();
    for f in feats {
        s.push_str(f);
        s.push('<');
    }
    for form in query.elements().filter(|e| e.name == "x") {
        let fields: Vec<&Element> = form.elements().filter(|e| e.name == "field").collect();
        let value = |f: &Element| f.elements().map(Element::text_content).collect::<Vec<_>>();
        if let Some(ft) = fields
            .iter()
            .find(|f| f.get_attr("var") == Some("FORM_TYPE"))
        {
            for v in value(ft) {
                s.push_str(&v);
                s.push('<');
            }
        }
        let mut rest: Vec<&&Element> = fields
            .iter()
            .filter(|f| f.get_attr("var") != Some("FORM_TYPE"))
            .collect();
        rest.sort_by_key(|f| f.get_attr("var").unwrap_or_default().to_owned());
        for f in rest {
            s.push_str(f.get_attr("var").unwrap_or_default());
            s.push('<');
            let mut vals = value(f);
            vals.sort();
            for v in vals {
                s.push_str(&v);
                s.push('<');
            }
        }
    }
    base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(s.as_bytes()))
}

/// disco#info of the server: identity `server/im`, [`super::SERVER_FEATURES`] and the
/// XEP-0157 contact addresses.
pub fn server_info(query: &Element, server: &ServerInfo) -> Result<Option<Element>, StanzaError> {
    if query
        .get_attr("node")
        .is_some_and(|n| n != format!("{CAPS_NODE}#{}", server.caps_ver))
    {
        return Err(Condition::ItemNotFound.into());
    }
    let mut q = server.disco_info();
    if let Some(n) = query.get_attr("node") {
        q.set_attr("node", n);
    }
    Ok(Some(q))
}

/// disco#items of the server: no components or services yet.
pub fn server_items(
    query: &Element,
    host: &str,
    server: &ServerInfo,
) -> Result<Option<Element>, StanzaError> {
    if query.get_attr("node").is_some() {
        return Err(Condition::ItemNotFound.into());
    }
    let mut q = Element::new("query", ns::DISCO_ITEMS);
    for jid in server.items.get(host).into_iter().flatten() {
        q = q.child(Element::new("item", ns::DISCO_ITEMS).attr("jid", jid.clone()));
    }
    Ok(Some(q))
}

/// disco#info of an account, asked by its owner: identity `account/registered`.
pub fn account_info(query: &Element, server: &ServerInfo) -> Result<Option<Element>, StanzaError> {
    if query.get_attr("node").is_some() {
        return Err(Condition::ItemNotFound.into());
    }
    let mut features = vec![ns::DISCO_INFO, ns::DISCO_ITEMS];
    features.extend_from_slice(super::pep::FEATURES);
    features.push(super::pep::NS);
    features.push(super::bookmarks::COMPAT_FEATURE);
    features.push(super::bookmarks::COMPAT_PEP_FEATURE);
    features.push(super::avatar::FEATURE);
    features.extend_from_slice(&server.account_features);
    let mut q = info(("account", "registered", ""), &features);
    // XEP-0163: the account is a PEP service.
    let pep = Element::new("identity", ns::DISCO_INFO)
        .attr("category", "pubsub")
        .attr("type", "pep");
    q.children.insert(1, crate::xml::Node::Element(pep));
    Ok(Some(q))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse_element;

    #[test]
    fn xep0115_example_ver() {
        // XEP-0115 §5.2 simple example.
        let q = parse_element(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <identity category='client' name='Exodus 0.9.1' type='pc'/>\
             <feature var='http://jabber.org/protocol/caps'/>\
             <feature var='http://jabber.org/protocol/disco#info'/>\
             <feature var='http://jabber.org/protocol/disco#items'/>\
             <feature var='http://jabber.org/protocol/muc'/></query>",
        )
        .unwrap();
        assert_eq!(caps_ver(&q), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    }

    #[test]
    fn contact_addresses_form() {
        let abuse = vec!["mailto:abuse@example.org".to_owned()];
        let info = ServerInfo::new(&[("abuse-addresses", &abuse), ("admin-addresses", &[])]);
        let x = info.disco_info().to_xml(crate::xmpp::ns::CLIENT);
        assert!(
            x.contains(
                "<field var='abuse-addresses'><value>mailto:abuse@example.org</value></field>"
            ),
            "{x}"
        );
        assert!(!x.contains("admin-addresses"));
    }
}
