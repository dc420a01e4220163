//! The parsed XML tree: [`Element`] and [`Node`], and their serialisation.
//!
//! Every stanza the server sends is written from this tree, never relayed as the raw bytes a
//! peer sent (RFC 6120 §11): what leaves the server is always well-formed and escaped.

use std::fmt::Write as _;

/// One XML element with its resolved namespace.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Element {
    /// Local name, without prefix.
    pub name: String,
    /// Namespace URI (empty when the element is in no namespace).
    pub ns: String,
    /// Attributes in document order. Unprefixed names are stored as is, `xml:` attributes as
    /// `xml:lang`, attributes in other namespaces in Clark notation `{ns}local`.
    pub attrs: Vec<(String, String)>,
    /// Child elements and text, in document order.
    pub children: Vec<Node>,
}

/// A child of an [`Element`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

impl Element {
    /// A new empty element `name` in namespace `ns`.
    pub fn new(name: &str, ns: &str) -> Element {
        Element {
            name: name.to_owned(),
            ns: ns.to_owned(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Builder: set an attribute.
    pub fn attr(mut self, name: &str, value: impl Into<String>) -> Element {
        self.set_attr(name, value);
        self
    }

    /// Builder: append a child element.
    pub fn child(mut self, child: Element) -> Element {
        self.children.push(Node::Element(child));
        self
    }

    /// Builder: append text.
    pub fn text(mut self, text: impl Into<String>) -> Element {
        self.children.push(Node::Text(text.into()));
        self
    }

    /// The value of attribute `name`, if present.
    pub fn get_attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Set (or replace) attribute `name`.
    pub fn set_attr(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.attrs.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((name.to_owned(), value)),
        }
    }

    /// Remove attribute `name`, returning its value.
    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let pos = self.attrs.iter().position(|(k, _)| k == name)?;
        Some(self.attrs.remove(pos).1)
    }

    /// Is this element `name` in namespace `ns`?
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    /// Child elements, in order.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child element `name` in namespace `ns`.
    pub fn get_child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(name, ns))
    }

    /// Mutable access to the first child element `name` in namespace `ns`.
    pub fn get_child_mut(&mut self, name: &str, ns: &str) -> Option<&mut Element> {
        self.children.iter_mut().find_map(|n| match n {
            Node::Element(e) if e.is(name, ns) => Some(e),
            _ => None,
        })
    }

    /// Concatenated text content of the direct text children.
    pub fn text_content(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                s.push_str(t);
            }
        }
        s
    }

    /// Serialise as a top-level element of a stream whose default namespace is `parent_ns`.
    pub fn to_xml(&self, parent_ns: &str) -> String {
        let mut out = String::with_capacity(128);
        self.write_to(&mut out, parent_ns);
        out
    }

    /// The serialisation in two halves, the start tag's name and attributes, and everything
    /// after them (`>…</name>` or `/>`), so that one more attribute can go between (a
    /// message serialised once for many recipients, each with its own `to`).
    pub fn to_xml_split(&self, parent_ns: &str) -> (String, String) {
        let mut xml = self.to_xml(parent_ns);
        let at = self.start_tag_end(&xml);
        let tail = xml.split_off(at);
        (xml, tail)
    }

    /// Where the start tag's attributes end in `xml`, this element's serialisation.
    fn start_tag_end(&self, xml: &str) -> usize {
        if self.children.is_empty() {
            xml.len() - 2
        } else {
            // The first '>' is the start tag's: attribute values are escaped ('>' as &gt;).
            xml.find('>').unwrap_or(xml.len())
        }
    }

    /// Append the serialisation to `out`; `xmlns` is written where the namespace differs from
    /// `parent_ns`.
    pub fn write_to(&self, out: &mut String, parent_ns: &str) {
        out.push('<');
        out.push_str(&self.name);
        if self.ns != parent_ns {
            out.push_str(" xmlns='");
            escape_into(out, &self.ns, true);
            out.push('\'');
        }
        let mut prefixes = 0;
        for (k, v) in &self.attrs {
            out.push(' ');
            if let Some(rest) = k.strip_prefix('{') {
                // Attribute in a foreign namespace: declare a private prefix for it.
                // The local name cannot contain '}', the namespace name can.
                let (ns, local) = rest.rsplit_once('}').unwrap_or(("", rest));
                let _ = write!(out, "xmlns:a{prefixes}='");
                escape_into(out, ns, true);
                let _ = write!(out, "' a{prefixes}:{local}");
                prefixes += 1;
            } else {
                out.push_str(k);
            }
            out.push_str("='");
            escape_into(out, v, true);
            out.push('\'');
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for c in &self.children {
            match c {
                Node::Element(e) => e.write_to(out, &self.ns),
                Node::Text(t) => escape_into(out, t, false),
            }
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }
}

/// Escape `s` for use in XML text (or in an attribute value when `attr`).
pub fn escape_into(out: &mut String, s: &str, attr: bool) {
    let mut last = 0;
    for (i, b) in s.bytes().enumerate() {
        let rep = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'\'' if attr => "&apos;",
            b'"' if attr => "&quot;",
            b'\r' => "&#13;",
            _ => continue,
        };
        out.push_str(&s[last..i]);
        out.push_str(rep);
        last = i + 1;
    }
    out.push_str(&s[last..]);
}

/// Escape `s` into a new string (text context).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s, true);
    out
}

/// Is `c` allowed in an XML 1.0 document (the `Char` production)?
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_serialisation_takes_one_more_attribute() {
        for e in [
            Element::new("message", "jabber:client")
                .attr("from", "r@c/a>b")
                .child(Element::new("body", "jabber:client").text("x > y")),
            Element::new("presence", "jabber:client").attr("type", "unavailable"),
        ] {
            let (head, tail) = e.to_xml_split("jabber:client");
            let mut with_to = e.clone();
            with_to.set_attr("to", "u@h/r");
            assert_eq!(
                format!("{head} to='u@h/r'{tail}"),
                with_to.to_xml("jabber:client")
            );
        }
    }

    #[test]
    fn serialises_namespaces_only_where_they_change() {
        let e = Element::new("iq", "jabber:client")
            .attr("type", "result")
            .attr("id", "a'b")
            .child(Element::new("ping", "urn:xmpp:ping"))
            .child(Element::new("x", "jabber:client").text("1 < 2 & 3"));
        assert_eq!(
            e.to_xml("jabber:client"),
            "<iq type='result' id='a&apos;b'><ping xmlns='urn:xmpp:ping'/>\
             <x>1 &lt; 2 &amp; 3</x></iq>"
        );
    }

    #[test]
    fn foreign_attributes_get_a_prefix() {
        let e = Element::new("a", "jabber:client").attr("{urn:x}b", "1");
        assert_eq!(e.to_xml("jabber:client"), "<a xmlns:a0='urn:x' a0:b='1'/>");
    }

    #[test]
    fn xml_chars() {
        assert!(!is_xml_char('\0'));
        assert!(!is_xml_char('\u{FFFE}'));
        assert!(is_xml_char('ä'));
    }
}
