//! XEP-0092: Software Version. Name and version only: the operating system is not disclosed.

use crate::xml::Element;
use crate::xmpp::ns;

/// The `<query/>` payload of the answer.
pub fn answer() -> Element {
    Element::new("query", ns::VERSION)
        .child(Element::new("name", ns::VERSION).text("kleiber"))
        .child(Element::new("version", ns::VERSION).text(env!("CARGO_PKG_VERSION")))
}
