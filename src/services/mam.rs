//! XEP-0313 Message Archive Management, XEP-0359 stanza ids and XEP-0441 preferences: what the
//! protocol looks like. Which messages are archived ([`archivable`]), the stanza id stamped on
//! them ([`stamp`]), queries read into a [`Query`] with XEP-0059 paging ([`parse_query`]), and
//! the results, `fin`, preferences and metadata written back. The archive actor
//! (`actors/archive.rs`) and group-chat rooms use these; the store is `store/archive.rs`.

use crate::store::archive::{id_at, id_string, parse_id, Entry, Mode, Point, Prefs, Query};
use crate::xml::{Element, Node};
use crate::xmpp::{form, ns, Condition, StanzaError};

pub const NS: &str = "urn:xmpp:mam:2";
/// `before-id`, `after-id`, `ids`, `flip-page` and the metadata query.
pub const NS_EXTENDED: &str = "urn:xmpp:mam:2#extended";
/// XEP-0359 unique and stable stanza ids.
pub const SID: &str = "urn:xmpp:sid:0";
/// XEP-0059 result set management.
pub const RSM: &str = "http://jabber.org/protocol/rsm";
const FORWARD: &str = "urn:xmpp:forward:0";
const DELAY: &str = "urn:xmpp:delay";
const HINTS: &str = "urn:xmpp:hints";

/// Payloads that stand in for a body in end-to-end encrypted messages: OMEMO (both
/// namespaces), OpenPGP for XMPP (XEP-0373) and legacy OpenPGP (XEP-0027).
const ENCRYPTED: &[(&str, &str)] = &[
    ("encrypted", "eu.siacs.conversations.axolotl"),
    ("encrypted", "urn:xmpp:omemo:2"),
    ("openpgp", "urn:xmpp:openpgp:0"),
    ("x", "jabber:x:encrypted"),
];

/// Is `message` kept in an archive (XEP-0313 §5.1.1)? Chat and normal messages with a body
/// or an encrypted payload, or with the XEP-0334 `<store/>` hint; never errors, headlines or
/// group-chat messages (rooms keep their own), nor what the sender marked `<no-store/>` or
/// `<no-permanent-store/>`.
pub fn archivable(message: &Element) -> bool {
    if message.name != "message"
        || !matches!(message.get_attr("type"), None | Some("chat" | "normal"))
    {
        return false;
    }
    let mut content = false;
    for c in message.elements() {
        match (c.name.as_str(), c.ns.as_str()) {
            ("no-store" | "no-permanent-store", HINTS) => return false,
            ("store", HINTS) => content = true,
            ("body", ns::CLIENT) => content = true,
            (name, ns) if ENCRYPTED.contains(&(name, ns)) => content = true,
            _ => {}
        }
    }
    content
}

/// Is this a group-chat message a room archives (a body, or the subject is not: rooms keep
/// their subject themselves)?
pub fn archivable_groupchat(message: &Element) -> bool {
    message.get_attr("type") == Some("groupchat")
        && message.get_child("body", ns::CLIENT).is_some()
        && !message
            .elements()
            .any(|c| c.ns == HINTS && matches!(c.name.as_str(), "no-store" | "no-permanent-store"))
}

/// Remove the `<stanza-id/>`s that claim to be by `by` (XEP-0359 §5: only `by` itself may
/// set them; anything else is a forgery).
pub fn strip_stanza_ids(message: &mut Element, by: &str) {
    message
        .children
        .retain(|n| !matches!(n, Node::Element(e) if is_stanza_id_by(e, by)));
}

/// Is `e` a `<stanza-id/>` claiming to be by `by`?
fn is_stanza_id_by(e: &Element, by: &str) -> bool {
    e.name == "stanza-id" && e.ns == SID && e.get_attr("by") == Some(by)
}

/// Stamp `message` with the stanza id `id` assigned by `by` (an account's or a room's bare
/// JID), replacing any forged one.
pub fn stamp(message: &mut Element, by: &str, id: u64) {
    strip_stanza_ids(message, by);
    message.children.push(Node::Element(
        Element::new("stanza-id", SID)
            .attr("by", by)
            .attr("id", id_string(id)),
    ));
}

/// The id `by` stamped on `message`, if any.
pub fn stamped_id(message: &Element, by: &str) -> Option<u64> {
    message
        .elements()
        .find(|e| is_stanza_id_by(e, by))
        .and_then(|e| parse_id(e.get_attr("id")?))
}

/// Is the `<query/>` a catch-up on the whole archive (no `with` or `ids` filter), the kind
/// after which a client has every message it missed?
pub fn is_catch_up(q: &Element) -> bool {
    let Some(x) = q.get_child("x", ns::DATA_FORMS) else {
        return true;
    };
    let (_, values) = form::values(x);
    !values.contains_key("with") && !values.contains_key("ids")
}

/// A parsed query: the store's [`Query`] plus what the answer needs.
#[derive(Debug, Default)]
pub struct Request {
    pub queryid: Option<String>,
    pub query: Query,
    /// XEP-0313 `flip-page`: the page's items newest first.
    pub flip: bool,
    /// RSM `after`/`before` ids that must exist (else `item-not-found`).
    pub must_exist: Vec<u64>,
}

fn bad(text: &str) -> StanzaError {
    StanzaError::new(Condition::BadRequest).with_text(text)
}

/// An XEP-0082 date-time as ms since the epoch.
fn parse_time(s: &str, field: &str) -> Result<u64, StanzaError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| u64::try_from(t.timestamp_millis()).ok())
        .ok_or_else(|| bad(&format!("{field}: not an XEP-0082 date-time")))
}

/// An id from a form field or RSM element; an id this server never issued matches nothing.
fn parse_item_id(s: &str) -> Result<u64, StanzaError> {
    parse_id(s).ok_or_else(|| {
        StanzaError::new(Condition::ItemNotFound).with_text("no such message in the archive")
    })
}

/// Read a `<query xmlns='urn:xmpp:mam:2'>` (type `set`), pages capped at `max_page`.
pub fn parse_query(q: &Element, max_page: usize) -> Result<Request, StanzaError> {
    let mut r = Request {
        queryid: q.get_attr("queryid").map(str::to_owned),
        flip: q.get_child("flip-page", NS).is_some(),
        ..Default::default()
    };
    r.query.until_id = u64::MAX;
    r.query.max = max_page;
    if let Some(x) = q.get_child("x", ns::DATA_FORMS) {
        read_form(x, &mut r)?;
    }
    if let Some(set) = q.get_child("set", RSM) {
        read_rsm(set, max_page, &mut r)?;
    }
    Ok(r)
}

fn read_form(x: &Element, r: &mut Request) -> Result<(), StanzaError> {
    let (form_type, values) = form::values(x);
    if form_type.as_deref().is_some_and(|t| t != NS) {
        return Err(bad("FORM_TYPE must be urn:xmpp:mam:2"));
    }
    for (var, vals) in &values {
        let Some(v) = vals.first().map(String::as_str) else {
            continue;
        };
        let q = &mut r.query;
        match var.as_str() {
            "with" => {
                let j = crate::xmpp::jid(v).map_err(|_| {
                    StanzaError::new(Condition::JidMalformed).with_text("with: not a JID")
                })?;
                q.with = Some(j.as_str().to_owned());
            }
            "start" => q.from_id = q.from_id.max(id_at(parse_time(v, "start")?)),
            "end" => {
                q.until_id = q
                    .until_id
                    .min(id_at(parse_time(v, "end")?.saturating_add(1)))
            }
            "after-id" => q.from_id = q.from_id.max(parse_item_id(v)?.saturating_add(1)),
            "before-id" => q.until_id = q.until_id.min(parse_item_id(v)?),
            "ids" => q.ids = Some(vals.iter().filter_map(|s| parse_id(s)).collect()),
            other => return Err(bad(&format!("unsupported field {other}"))),
        }
    }
    Ok(())
}

fn read_rsm(set: &Element, max_page: usize, r: &mut Request) -> Result<(), StanzaError> {
    if let Some(m) = set.get_child("max", RSM) {
        let n: usize = m
            .text_content()
            .trim()
            .parse()
            .map_err(|_| bad("max: not a number"))?;
        r.query.max = n.min(max_page);
    }
    if set.get_child("index", RSM).is_some() {
        return Err(StanzaError::new(Condition::FeatureNotImplemented)
            .with_text("paging by index is not supported; use after/before"));
    }
    if let Some(a) = set.get_child("after", RSM) {
        let id = parse_item_id(a.text_content().trim())?;
        r.query.after = Some(id);
        r.must_exist.push(id);
    }
    if let Some(b) = set.get_child("before", RSM) {
        let t = b.text_content();
        if t.trim().is_empty() {
            r.query.last_page = true;
        } else {
            let id = parse_item_id(t.trim())?;
            r.query.before = Some(id);
            r.must_exist.push(id);
        }
    }
    Ok(())
}

/// One result: `<message to=requester [from=archive]><result queryid id><forwarded>` with the
/// archived message and its arrival time. `None` if the stored XML no longer parses.
pub fn result_message(
    to: &str,
    from: Option<&str>,
    queryid: Option<&str>,
    e: &Entry,
) -> Option<Element> {
    let archived = crate::xml::parse_element(&e.xml).ok()?;
    let stamp = crate::xmpp::xep0082(crate::store::archive::ms_of(e.id))?;
    let mut result = Element::new("result", NS).attr("id", id_string(e.id));
    if let Some(q) = queryid {
        result.set_attr("queryid", q);
    }
    let result = result.child(
        Element::new("forwarded", FORWARD)
            .child(Element::new("delay", DELAY).attr("stamp", stamp))
            .child(archived),
    );
    let mut m = Element::new("message", ns::CLIENT).attr("to", to);
    if let Some(f) = from {
        m.set_attr("from", f);
    }
    m.set_attr("id", crate::xmpp::random_id(9));
    Some(m.child(result))
}

/// The `<fin/>` ending a query.
pub fn fin(entries: &[Entry], complete: bool) -> Element {
    let mut set = Element::new("set", RSM);
    if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
        set = set
            .child(Element::new("first", RSM).text(id_string(first.id)))
            .child(Element::new("last", RSM).text(id_string(last.id)));
    } else {
        set = set.child(Element::new("count", RSM).text("0"));
    }
    let mut f = Element::new("fin", NS);
    if complete {
        f.set_attr("complete", "true");
    }
    f.child(set)
}

/// The search form (`<query/>` of type `get`, XEP-0313 §4.1.1): the fields understood.
pub fn query_form() -> Element {
    let x = form::form("form", NS)
        .child(form::field("with", "jid-single", None, []))
        .child(form::field("start", "text-single", None, []))
        .child(form::field("end", "text-single", None, []))
        .child(form::field("before-id", "text-single", None, []))
        .child(form::field("after-id", "text-single", None, []))
        .child(form::field("ids", "text-multi", None, []));
    Element::new("query", NS).child(x)
}

/// `<metadata/>`: the oldest and newest message of the archive (XEP-0313 §6).
pub fn metadata(bounds: Option<(Point, Point)>) -> Element {
    let mut m = Element::new("metadata", NS);
    if let Some((first, last)) = bounds {
        for (name, (id, ms)) in [("start", first), ("end", last)] {
            let stamp = crate::xmpp::xep0082(ms).unwrap_or_default();
            m = m.child(
                Element::new(name, NS)
                    .attr("id", id_string(id))
                    .attr("timestamp", stamp),
            );
        }
    }
    m
}

/// `<prefs/>` as clients see them.
pub fn prefs_element(p: &Prefs) -> Element {
    let list = |name: &str, jids: &[String]| {
        jids.iter().fold(Element::new(name, NS), |e, j| {
            e.child(Element::new("jid", NS).text(j.as_str()))
        })
    };
    Element::new("prefs", NS)
        .attr("default", p.default.as_str())
        .child(list("always", &p.always))
        .child(list("never", &p.never))
}

/// Most JIDs in each of the `always` and `never` lists.
pub const MAX_PREFS_JIDS: usize = 1_000;

/// Read a `<prefs/>` the user sets.
pub fn parse_prefs(e: &Element) -> Result<Prefs, StanzaError> {
    let default = e
        .get_attr("default")
        .and_then(Mode::parse)
        .ok_or_else(|| bad("default must be always, never or roster"))?;
    let list = |name: &str| -> Result<Vec<String>, StanzaError> {
        let mut out = Vec::new();
        for j in e
            .get_child(name, NS)
            .into_iter()
            .flat_map(|l| l.elements().filter(|c| c.name == "jid"))
        {
            let jid = crate::xmpp::jid(j.text_content().trim())
                .map_err(|_| StanzaError::new(Condition::JidMalformed))?;
            let b = jid.to_bare().as_str().to_owned();
            if !out.contains(&b) {
                out.push(b);
            }
        }
        if out.len() > MAX_PREFS_JIDS {
            return Err(StanzaError::new(Condition::PolicyViolation)
                .with_text(format!("at most {MAX_PREFS_JIDS} JIDs per list")));
        }
        Ok(out)
    };
    Ok(Prefs {
        default,
        always: list("always")?,
        never: list("never")?,
    })
}

/// Where an archive query is answered: whose archive, who asked, and what results say.
pub struct Archive<'a> {
    pub store: &'a crate::store::Store,
    /// The owner: an account or a room (`domain`, `node`).
    pub domain: &'a str,
    pub node: &'a str,
    /// The `from` of result messages: the room's JID, or `None` for an account's own.
    pub from: Option<&'a str>,
    /// Largest page.
    pub max_page: usize,
}

/// Answer a MAM IQ (`query` get/set, `metadata`; preferences are the account's business)
/// for `archive`: the result messages, then the IQ's answer, all to send in this order.
pub fn answer(archive: &Archive<'_>, iq: &Element) -> Vec<Element> {
    use crate::xmpp::{error_reply, iq_payload, iq_result};
    let Ok(Some(payload)) = iq_payload(iq) else {
        return error_reply(iq, &bad("no payload")).into_iter().collect();
    };
    let get = iq.get_attr("type") == Some("get");
    let to = iq.get_attr("from").unwrap_or_default();
    let answer = match (payload.name.as_str(), get) {
        ("query", true) => Ok(vec![iq_result(iq, Some(query_form()))]),
        ("query", false) => run_query(archive, to, iq, payload),
        ("metadata", true) => archive
            .store
            .archive
            .bounds(archive.domain, archive.node)
            .map(|b| vec![iq_result(iq, Some(metadata(b)))])
            .map_err(|e| e.stanza_error("archive metadata")),
        _ => Err(StanzaError::new(Condition::FeatureNotImplemented)),
    };
    match answer {
        Ok(out) => out,
        Err(e) => error_reply(iq, &e).into_iter().collect(),
    }
}

fn run_query(
    a: &Archive<'_>,
    to: &str,
    iq: &Element,
    q: &Element,
) -> Result<Vec<Element>, StanzaError> {
    let r = parse_query(q, a.max_page)?;
    let archive = &a.store.archive;
    for id in &r.must_exist {
        let found = archive
            .get(a.domain, a.node, *id)
            .map_err(|e| e.stanza_error("archive query"))?;
        if found.is_none() {
            return Err(StanzaError::new(Condition::ItemNotFound)
                .with_text("no such message in the archive"));
        }
    }
    let page = archive
        .query(a.domain, a.node, &r.query)
        .map_err(|e| e.stanza_error("archive query"))?;
    let mut order: Vec<&Entry> = page.entries.iter().collect();
    if r.flip {
        order.reverse();
    }
    let mut out: Vec<Element> = order
        .into_iter()
        .filter_map(|e| result_message(to, a.from, r.queryid.as_deref(), e))
        .collect();
    out.push(crate::xmpp::iq_result(
        iq,
        Some(fin(&page.entries, page.complete)),
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse_element;

    #[test]
    fn what_is_archived() {
        let yes = [
            "<message xmlns='jabber:client' type='chat'><body>hi</body></message>",
            "<message xmlns='jabber:client'><body>hi</body></message>",
            "<message xmlns='jabber:client' type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>",
            "<message xmlns='jabber:client' type='chat'><store xmlns='urn:xmpp:hints'/><propose xmlns='urn:xmpp:jingle-message:0'/></message>",
        ];
        let no = [
            "<message xmlns='jabber:client' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
            "<message xmlns='jabber:client' type='error'><body>x</body></message>",
            "<message xmlns='jabber:client' type='headline'><body>x</body></message>",
            "<message xmlns='jabber:client' type='groupchat'><body>x</body></message>",
            "<message xmlns='jabber:client' type='chat'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>",
        ];
        for m in yes {
            assert!(archivable(&parse_element(m).unwrap()), "{m}");
        }
        for m in no {
            assert!(!archivable(&parse_element(m).unwrap()), "{m}");
        }
    }

    #[test]
    fn forged_stanza_ids_are_replaced() {
        let mut m = parse_element(
            "<message xmlns='jabber:client'><stanza-id xmlns='urn:xmpp:sid:0' by='a@x' id='forged'/><stanza-id xmlns='urn:xmpp:sid:0' by='room@c.x' id='k'/></message>",
        )
        .unwrap();
        stamp(&mut m, "a@x", 7);
        assert_eq!(stamped_id(&m, "a@x"), Some(7));
        assert_eq!(m.elements().count(), 2);
        assert!(m.to_xml(ns::CLIENT).contains("by='room@c.x'"));
    }

    #[test]
    fn queries_are_read_with_paging() {
        let q = parse_element(
            "<query xmlns='urn:xmpp:mam:2' queryid='f27'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>\
             <field var='with'><value>Juliet@Capulet.lit</value></field>\
             <field var='start'><value>2010-06-07T00:00:00Z</value></field></x>\
             <set xmlns='http://jabber.org/protocol/rsm'><max>500</max><before/></set><flip-page/></query>",
        )
        .unwrap();
        let r = parse_query(&q, 100).unwrap();
        assert_eq!(r.queryid.as_deref(), Some("f27"));
        assert_eq!(r.query.with.as_deref(), Some("juliet@capulet.lit"));
        assert_eq!(r.query.from_id, id_at(1_275_868_800_000));
        assert_eq!((r.query.max, r.query.last_page, r.flip), (100, true, true));
        let bad_time = parse_element(
            "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='end'><value>yesterday</value></field></x></query>",
        )
        .unwrap();
        assert_eq!(
            parse_query(&bad_time, 100).unwrap_err().condition,
            Condition::BadRequest
        );
        let unknown = parse_element(
            "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><after>nope</after></set></query>",
        )
        .unwrap();
        assert_eq!(
            parse_query(&unknown, 100).unwrap_err().condition,
            Condition::ItemNotFound
        );
    }

    #[test]
    fn prefs_round_trip() {
        let e = parse_element(
            "<prefs xmlns='urn:xmpp:mam:2' default='roster'><always><jid>a@x/r</jid></always><never><jid>n@x</jid></never></prefs>",
        )
        .unwrap();
        let p = parse_prefs(&e).unwrap();
        assert_eq!(
            (p.default, p.always.clone(), p.never.clone()),
            (Mode::Roster, vec!["a@x".to_owned()], vec!["n@x".to_owned()])
        );
        assert_eq!(parse_prefs(&prefs_element(&p)).unwrap(), p);
    }
}
