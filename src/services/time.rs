//! XEP-0202: Entity Time. The server's clock in UTC.

use crate::xml::Element;
use crate::xmpp::ns;

/// The `<time/>` payload of the answer.
pub fn answer() -> Element {
    let now = crate::xmpp::xep0082(crate::store::now_ms()).unwrap_or_default();
    Element::new("time", ns::TIME)
        .child(Element::new("tzo", ns::TIME).text("+00:00"))
        .child(Element::new("utc", ns::TIME).text(now))
}
