//! XEP-0004 data forms: building the forms the server offers and reading the ones clients
//! submit. One place for the `jabber:x:data` shapes that room configuration, voice requests and
//! room information share.

use std::collections::BTreeMap;

use super::ns;
use crate::xml::Element;

/// A form (`type` = `form`, `submit`, `result`) with its hidden `FORM_TYPE`.
pub fn form(kind: &str, form_type: &str) -> Element {
    Element::new("x", ns::DATA_FORMS)
        .attr("type", kind)
        .child(field("FORM_TYPE", "hidden", None, [form_type]))
}

/// A field with its values.
pub fn field<'a>(
    var: &str,
    kind: &str,
    label: Option<&str>,
    values: impl IntoIterator<Item = &'a str>,
) -> Element {
    let mut f = Element::new("field", ns::DATA_FORMS)
        .attr("var", var)
        .attr("type", kind);
    if let Some(l) = label {
        f.set_attr("label", l);
    }
    for v in values {
        f = f.child(Element::new("value", ns::DATA_FORMS).text(v));
    }
    f
}

/// A `list-single` field with its options (value, label).
pub fn list_single(var: &str, label: &str, value: &str, options: &[(&str, &str)]) -> Element {
    let mut f = field(var, "list-single", Some(label), [value]);
    for (v, l) in options {
        f = f.child(
            Element::new("option", ns::DATA_FORMS)
                .attr("label", *l)
                .child(Element::new("value", ns::DATA_FORMS).text(*v)),
        );
    }
    f
}

/// A boolean field.
pub fn boolean(var: &str, label: &str, value: bool) -> Element {
    field(var, "boolean", Some(label), [if value { "1" } else { "0" }])
}

/// The values of a submitted form, by field: `var` -> values (trimmed).
pub type Values = BTreeMap<String, Vec<String>>;

/// The `FORM_TYPE` and values of the form `x`.
pub fn values(x: &Element) -> (Option<String>, Values) {
    let mut out = Values::new();
    let mut form_type = None;
    for f in x.elements().filter(|f| f.name == "field") {
        let Some(var) = f.get_attr("var") else {
            continue;
        };
        let vals: Vec<String> = f
            .elements()
            .filter(|v| v.name == "value")
            .map(|v| v.text_content().trim().to_owned())
            .collect();
        if var == "FORM_TYPE" {
            form_type = vals.into_iter().next();
        } else {
            out.insert(var.to_owned(), vals);
        }
    }
    (form_type, out)
}

/// The first value of `var`.
pub fn first<'a>(values: &'a Values, var: &str) -> Option<&'a str> {
    values.get(var).and_then(|v| v.first()).map(String::as_str)
}

/// A boolean value (`1`/`true`, `0`/`false`); `None` for anything else.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_read() {
        let x = form("submit", "urn:test")
            .child(boolean("a", "A", true))
            .child(field("b", "text-multi", None, ["x", " y "]));
        let (t, v) = values(&x);
        assert_eq!(t.as_deref(), Some("urn:test"));
        assert_eq!(first(&v, "a"), Some("1"));
        assert_eq!(v["b"], ["x", "y"]);
        assert_eq!(parse_bool("true"), Some(true));
        assert!(parse_bool("yes").is_none());
    }
}
