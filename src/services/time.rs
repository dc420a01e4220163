//! XEP-0202: Entity Time. The server's clock in UTC.

use crate::xml::Element;
use crate::xmpp::ns;

/// The `<time/>` payload of the answer.
pub fn answer() -> Element {
    let now = chrono::Utc::now();
    Element::new("time", ns::TIME)
        .child(Element::new("tzo", ns::TIME).text("+00:00"))
        .child(Element::new("utc", ns::TIME).text(now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()))
}
