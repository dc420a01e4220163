//! XEP-0357: Push Notifications, the protocol side: the client's `enable` and `disable`
//! requests, which stanzas deserve a notification, the notification itself (a pubsub publish
//! to the app server with the `urn:xmpp:push:summary` form), what the app server's answer
//! means, and the per-account rate limit. Pure functions; `actors/push.rs` keeps the
//! registrations and sends.
//!
//! What is pushed: a message with content (a non-empty body, an OMEMO `encrypted` element,
//! OpenPGP (XEP-0027 or XEP-0373), an incoming call (XEP-0353 `propose`)), and a subscription
//! request. Never errors, headlines, group-chat messages, chat states or receipts alone, or
//! message carbons (another of the user's clients got the message).
//!
//! The app server's answer ([`outcome`]): a result is done. The registration is gone, and is
//! removed, for `item-not-found` (no such node), `forbidden` and `not-authorized` (the secret
//! is no longer accepted) and `registration-required`. An error of type `wait`, and
//! `service-unavailable`, `remote-server-not-found`, `remote-server-timeout` and
//! `internal-server-error` (what kleiber itself answers while a component or a federation link
//! is down) are retried like no answer at all. Anything else drops that notification and keeps
//! the registration.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::store::push::{PublishOptions, Registration};
use crate::xml::Element;
use crate::xmpp::{form, ns, BareJid, Condition, StanzaError};

/// XEP-0357's namespace, also the account's disco#info feature.
pub const NS: &str = "urn:xmpp:push:0";
/// The FORM_TYPE of the notification's summary.
pub const NS_SUMMARY: &str = "urn:xmpp:push:summary";
/// The FORM_TYPE of XEP-0060 publish options.
pub const NS_PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";
/// Ids of the notifications kleiber sends start with this, so that the answers, which come
/// to the account's bare JID, find the push actor.
pub const ID_PREFIX: &str = "kleiber-push-";

/// Longest app-server node, and longest publish-options value, in bytes.
const MAX_VALUE_BYTES: usize = 1024;
/// Most publish-options fields.
const MAX_FIELDS: usize = 16;

/// A client's request (XEP-0357 §5, §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Register the app server `jid` and `node`, with these publish options.
    Enable {
        jid: String,
        node: String,
        options: PublishOptions,
    },
    /// Unregister the app server `jid` (only its `node`, if given).
    Disable { jid: String, node: Option<String> },
}

/// The push request in `iq` of the account `own`; `None` when the IQ is something else.
pub fn parse(iq: &Element, own: &BareJid) -> Option<Result<Request, StanzaError>> {
    let payload = iq
        .elements()
        .find(|e| e.ns == NS && matches!(e.name.as_str(), "enable" | "disable"))?;
    if iq.get_attr("type") != Some("set") {
        return Some(Err(bad_request("push requests are IQs of type set")));
    }
    Some(parse_payload(payload, own))
}

fn bad_request(text: &str) -> StanzaError {
    StanzaError::new(Condition::BadRequest).with_text(text)
}

fn parse_payload(payload: &Element, own: &BareJid) -> Result<Request, StanzaError> {
    let jid = match payload.get_attr("jid") {
        None | Some("") => return Err(bad_request("missing jid")),
        Some(j) => crate::xmpp::jid(j).map_err(|_| StanzaError::new(Condition::JidMalformed))?,
    };
    if jid.to_bare() == *own {
        return Err(bad_request("the app server cannot be the account itself"));
    }
    let node = payload.get_attr("node").map(str::to_owned);
    if node.as_ref().is_some_and(|n| n.len() > MAX_VALUE_BYTES) {
        return Err(StanzaError::new(Condition::NotAcceptable).with_text("node too long"));
    }
    let jid = jid.to_string();
    if payload.name == "disable" {
        return Ok(Request::Disable { jid, node });
    }
    let options = match payload.get_child("x", ns::DATA_FORMS) {
        Some(x) => publish_options(x)?,
        None => PublishOptions::default(),
    };
    Ok(Request::Enable {
        jid,
        node: node.unwrap_or_default(),
        options,
    })
}

/// The fields of a publish-options form (its FORM_TYPE, when given, must be XEP-0060's).
fn publish_options(x: &Element) -> Result<PublishOptions, StanzaError> {
    let (form_type, values) = form::values(x);
    if form_type.is_some_and(|t| t != NS_PUBLISH_OPTIONS) {
        return Err(bad_request("not a publish-options form"));
    }
    let too_big = values.len() > MAX_FIELDS
        || values
            .iter()
            .any(|(k, v)| k.len() > MAX_VALUE_BYTES || v.iter().any(|s| s.len() > MAX_VALUE_BYTES));
    if too_big {
        return Err(
            StanzaError::new(Condition::NotAcceptable).with_text("publish options too large")
        );
    }
    Ok(PublishOptions(values.into_iter().collect()))
}

/// What a stanza that deserves a notification contributes to it.
#[derive(Clone, PartialEq, Eq)]
pub struct Trigger {
    /// The sender's bare JID.
    pub sender: String,
    /// The plain-text body, if the message has one and is not encrypted.
    pub body: Option<String>,
    /// A subscription request rather than a message.
    pub subscription: bool,
}

// Never print a body or a JID by accident.
impl std::fmt::Debug for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Trigger(subscription: {})", self.subscription)
    }
}

/// Namespaces of end-to-end encrypted payloads: OMEMO (old and current), OpenPGP (XEP-0027
/// and XEP-0373).
const ENCRYPTED: &[(&str, &str)] = &[
    ("encrypted", "eu.siacs.conversations.axolotl"),
    ("encrypted", "urn:xmpp:omemo:2"),
    ("encrypted", "urn:xmpp:omemo:1"),
    ("x", "jabber:x:encrypted"),
    ("openpgp", "urn:xmpp:openpgp:0"),
];
/// XEP-0353 Jingle Message Initiation: a call is being proposed.
const JMI: &str = "urn:xmpp:jingle-message:0";

/// Does `stanza` deserve a notification, and with what? See the module's documentation.
pub fn trigger(stanza: &Element) -> Option<Trigger> {
    let sender = crate::xmpp::bare_part(stanza.get_attr("from")?).to_owned();
    match stanza.name.as_str() {
        "presence" if stanza.get_attr("type") == Some("subscribe") => Some(Trigger {
            sender,
            body: None,
            subscription: true,
        }),
        "message" if matches!(stanza.get_attr("type"), None | Some("normal" | "chat")) => {
            let encrypted = ENCRYPTED
                .iter()
                .any(|(name, ns)| stanza.get_child(name, ns).is_some());
            let call = stanza.get_child("propose", JMI).is_some();
            let body = stanza
                .get_child("body", ns::CLIENT)
                .map(Element::text_content)
                .filter(|b| !b.trim().is_empty());
            (encrypted || call || body.is_some()).then(|| Trigger {
                sender,
                body: body.filter(|_| !encrypted),
                subscription: false,
            })
        }
        _ => None,
    }
}

/// The notification's summary (XEP-0357 §7): what the operator allows the app server to learn.
#[derive(Clone, PartialEq, Eq)]
pub struct Summary {
    /// Messages waiting for the user.
    pub message_count: u64,
    /// Subscription requests waiting, when one triggered the notification.
    pub pending_subscriptions: u64,
    /// `last-message-sender`, only with `push.include_sender`.
    pub sender: Option<String>,
    /// `last-message-body`, only with `push.include_body`.
    pub body: Option<String>,
}

impl Summary {
    /// The summary for `trigger` with `message_count` messages waiting, with the sender and
    /// the body only if the operator allows them.
    pub fn new(trigger: &Trigger, message_count: u64, cfg: &crate::config::PushConfig) -> Summary {
        Summary {
            message_count,
            pending_subscriptions: trigger.subscription as u64,
            sender: cfg.include_sender.then(|| trigger.sender.clone()),
            body: trigger.body.clone().filter(|_| cfg.include_body),
        }
    }

    fn form(&self) -> Element {
        let count = self.message_count.to_string();
        let requests =
            (self.pending_subscriptions > 0).then(|| self.pending_subscriptions.to_string());
        let fields = [
            ("message-count", "text-single", Some(count.as_str())),
            (
                "pending-subscription-count",
                "text-single",
                requests.as_deref(),
            ),
            ("last-message-sender", "jid-single", self.sender.as_deref()),
            ("last-message-body", "text-single", self.body.as_deref()),
        ];
        let mut x = form::form("submit", NS_SUMMARY);
        for (var, kind, value) in fields {
            if let Some(v) = value {
                x = x.child(form::field(var, kind, None, [v]));
            }
        }
        x
    }
}

/// The notification (XEP-0357 §7): a pubsub publish from the account's bare JID to the app
/// server's node, with the client's publish options.
pub fn notification(from: &BareJid, reg: &Registration, id: &str, summary: &Summary) -> Element {
    let item = Element::new("item", super::pep::NS)
        .child(Element::new("notification", NS).child(summary.form()));
    let mut publish = Element::new("publish", super::pep::NS).child(item);
    if !reg.node.is_empty() {
        publish.set_attr("node", reg.node.as_str());
    }
    let mut pubsub = Element::new("pubsub", super::pep::NS).child(publish);
    if !reg.options.0.is_empty() {
        let mut x = form::form("submit", NS_PUBLISH_OPTIONS);
        for (var, values) in &reg.options.0 {
            x = x.child(form::field(
                var,
                "text-single",
                None,
                values.iter().map(String::as_str),
            ));
        }
        pubsub = pubsub.child(Element::new("publish-options", super::pep::NS).child(x));
    }
    Element::new("iq", ns::CLIENT)
        .attr("type", "set")
        .attr("id", id)
        .attr("from", from.as_str())
        .attr("to", reg.jid.as_str())
        .child(pubsub)
}

/// What the app server's answer means for the notification and its registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted.
    Done,
    /// Send it again later (no answer counts the same).
    Retry,
    /// The registration no longer exists: remove it.
    Gone,
    /// Refused for another reason: drop this notification, keep the registration.
    Failed,
}

/// Error conditions meaning the registration is gone.
const GONE: &[&str] = &[
    "item-not-found",
    "forbidden",
    "not-authorized",
    "registration-required",
];
/// Error conditions worth a retry whatever their type: what kleiber (or a peer server)
/// answers while the way to the app server is down.
const TRANSIENT: &[&str] = &[
    "service-unavailable",
    "remote-server-not-found",
    "remote-server-timeout",
    "internal-server-error",
];

/// The meaning of the app server's answer `iq` (a result or an error).
pub fn outcome(iq: &Element) -> Outcome {
    if iq.get_attr("type") != Some("error") {
        return Outcome::Done;
    }
    let error = iq.get_child("error", ns::CLIENT);
    let kind = error.and_then(|e| e.get_attr("type")).unwrap_or("cancel");
    let condition = error
        .and_then(|e| e.elements().find(|c| c.ns == ns::STANZAS))
        .map_or("undefined-condition", |c| c.name.as_str());
    classify(kind, condition)
}

/// The rule behind [`outcome`], by error type and condition.
pub fn classify(kind: &str, condition: &str) -> Outcome {
    if GONE.contains(&condition) {
        Outcome::Gone
    } else if kind == "wait" || TRANSIENT.contains(&condition) {
        Outcome::Retry
    } else {
        Outcome::Failed
    }
}

/// The per-account rate limit: may one more notification go out at `now`, with `sent` the
/// times of the last ones (oldest first), at most `per_minute` a minute? Records it if so.
pub fn allow(sent: &mut VecDeque<Instant>, now: Instant, per_minute: u32) -> bool {
    while sent
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
    {
        sent.pop_front();
    }
    if sent.len() >= per_minute as usize {
        return false;
    }
    sent.push_back(now);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse_element;

    fn own() -> BareJid {
        BareJid::new("romeo@example.net").unwrap()
    }

    fn req(xml: &str) -> Result<Request, StanzaError> {
        let iq = parse_element(&format!(
            "<iq xmlns='jabber:client' type='set' id='x'>{xml}</iq>"
        ))
        .unwrap();
        parse(&iq, &own()).expect("a push request")
    }

    /// XEP-0357 Examples 9 and 10.
    #[test]
    fn enable_with_publish_options_and_without() {
        let r = req("<enable xmlns='urn:xmpp:push:0' jid='push-5.client.example' node='yxs32uqsflafdk3iuqo'>\
             <x xmlns='jabber:x:data' type='submit'>\
               <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
               <field var='secret'><value>eruio234vzxc2kla-91</value></field>\
             </x></enable>")
        .unwrap();
        assert_eq!(
            r,
            Request::Enable {
                jid: "push-5.client.example".into(),
                node: "yxs32uqsflafdk3iuqo".into(),
                options: PublishOptions(vec![(
                    "secret".into(),
                    vec!["eruio234vzxc2kla-91".into()]
                )]),
            }
        );
        let r = req("<enable xmlns='urn:xmpp:push:0' jid='push-5.client.example' node='n'/>");
        assert!(matches!(r, Ok(Request::Enable { options, .. }) if options.0.is_empty()));
    }

    /// XEP-0357 Examples 11 and 12.
    #[test]
    fn disable_all_or_one_node() {
        assert_eq!(
            req("<disable xmlns='urn:xmpp:push:0' jid='push-5.client.example'/>").unwrap(),
            Request::Disable {
                jid: "push-5.client.example".into(),
                node: None
            }
        );
        assert_eq!(
            req("<disable xmlns='urn:xmpp:push:0' jid='push-5.client.example' node='yxs'/>")
                .unwrap(),
            Request::Disable {
                jid: "push-5.client.example".into(),
                node: Some("yxs".into())
            }
        );
    }

    #[test]
    fn bad_requests_have_their_conditions() {
        let cond = |xml: &str| req(xml).unwrap_err().condition;
        assert_eq!(
            cond("<enable xmlns='urn:xmpp:push:0' node='n'/>"),
            Condition::BadRequest
        );
        assert_eq!(
            cond("<disable xmlns='urn:xmpp:push:0'/>"),
            Condition::BadRequest
        );
        assert_eq!(
            cond("<enable xmlns='urn:xmpp:push:0' jid='a@@b' node='n'/>"),
            Condition::JidMalformed
        );
        assert_eq!(
            cond("<enable xmlns='urn:xmpp:push:0' jid='romeo@example.net/phone' node='n'/>"),
            Condition::BadRequest
        );
        let long = "n".repeat(2000);
        assert_eq!(
            cond(&format!(
                "<enable xmlns='urn:xmpp:push:0' jid='p.example' node='{long}'/>"
            )),
            Condition::NotAcceptable
        );
        assert_eq!(
            cond("<enable xmlns='urn:xmpp:push:0' jid='p.example'><x xmlns='jabber:x:data' type='submit'>\
                  <field var='FORM_TYPE'><value>urn:other</value></field></x></enable>"),
            Condition::BadRequest
        );
        let get = parse_element(
            "<iq xmlns='jabber:client' type='get' id='x'><enable xmlns='urn:xmpp:push:0' jid='p'/></iq>",
        )
        .unwrap();
        assert_eq!(
            parse(&get, &own()).unwrap().unwrap_err().condition,
            Condition::BadRequest
        );
        let other = parse_element(
            "<iq xmlns='jabber:client' type='set' id='x'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .unwrap();
        assert!(parse(&other, &own()).is_none());
    }

    #[test]
    fn what_is_pushed() {
        let t = |xml: &str| trigger(&parse_element(xml).unwrap());
        let body = t("<message xmlns='jabber:client' from='juliet@capulet.example/balcony' type='chat'><body>Wherefore?</body></message>").unwrap();
        assert_eq!(body.sender, "juliet@capulet.example");
        assert_eq!(body.body.as_deref(), Some("Wherefore?"));
        let omemo = t("<message xmlns='jabber:client' from='j@c/b'><body>I sent you an OMEMO encrypted message</body><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>").unwrap();
        assert_eq!(omemo.body, None);
        assert!(t("<message xmlns='jabber:client' from='j@c'><openpgp xmlns='urn:xmpp:openpgp:0'>x</openpgp></message>").is_some());
        assert!(t("<message xmlns='jabber:client' from='j@c' type='chat'><propose xmlns='urn:xmpp:jingle-message:0' id='c'/></message>").is_some());
        let sub = t("<presence xmlns='jabber:client' from='j@c' type='subscribe'/>").unwrap();
        assert!(sub.subscription);
        for quiet in [
            "<message xmlns='jabber:client' from='j@c' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
            "<message xmlns='jabber:client' from='j@c' type='chat'><body> </body></message>",
            "<message xmlns='jabber:client' from='j@c' type='headline'><body>news</body></message>",
            "<message xmlns='jabber:client' from='j@c' type='error'><body>x</body></message>",
            "<message xmlns='jabber:client' from='r@c' type='chat'><received xmlns='urn:xmpp:carbons:2'/></message>",
            "<presence xmlns='jabber:client' from='j@c'/>",
            "<presence xmlns='jabber:client' from='j@c' type='subscribed'/>",
            "<message xmlns='jabber:client' type='chat'><body>no sender</body></message>",
        ] {
            assert!(t(quiet).is_none(), "{quiet}");
        }
    }

    /// XEP-0357 Example 13, with and without what the operator may allow.
    #[test]
    fn the_notification() {
        let reg = Registration {
            v: 1,
            jid: "push-5.client.example".into(),
            node: "yxs32uqsflafdk3iuqo".into(),
            options: PublishOptions(vec![("secret".into(), vec!["eruio234vzxc2kla-91".into()])]),
            registered: 0,
        };
        let trig = Trigger {
            sender: "juliet@capulet.example".into(),
            body: Some("Wherefore art thou, Romeo?".into()),
            subscription: false,
        };
        let mut cfg = crate::config::PushConfig::default();
        let n = notification(&own(), &reg, "n12", &Summary::new(&trig, 1, &cfg));
        assert_eq!(
            n.to_xml(ns::CLIENT),
            "<iq type='set' id='n12' from='romeo@example.net' to='push-5.client.example'>\
             <pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='yxs32uqsflafdk3iuqo'><item>\
             <notification xmlns='urn:xmpp:push:0'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:push:summary</value></field>\
             <field var='message-count' type='text-single'><value>1</value></field></x></notification>\
             </item></publish><publish-options><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
             <field var='secret' type='text-single'><value>eruio234vzxc2kla-91</value></field></x>\
             </publish-options></pubsub></iq>"
        );
        cfg.include_sender = true;
        cfg.include_body = true;
        let x = notification(&own(), &reg, "n13", &Summary::new(&trig, 2, &cfg)).to_xml(ns::CLIENT);
        assert!(x.contains("<field var='last-message-sender' type='jid-single'><value>juliet@capulet.example</value></field>"), "{x}");
        assert!(x.contains("<field var='last-message-body' type='text-single'><value>Wherefore art thou, Romeo?</value></field>"), "{x}");
        assert!(x.contains("<value>2</value>"), "{x}");
    }

    #[test]
    fn answers() {
        let o = |xml: &str| outcome(&parse_element(xml).unwrap());
        assert_eq!(
            o("<iq xmlns='jabber:client' type='result' id='a'/>"),
            Outcome::Done
        );
        let err = |kind: &str, cond: &str| {
            o(&format!("<iq xmlns='jabber:client' type='error' id='a'><error type='{kind}'><{cond} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"))
        };
        assert_eq!(err("cancel", "item-not-found"), Outcome::Gone);
        assert_eq!(err("auth", "not-authorized"), Outcome::Gone);
        assert_eq!(err("auth", "forbidden"), Outcome::Gone);
        assert_eq!(err("wait", "resource-constraint"), Outcome::Retry);
        assert_eq!(err("wait", "policy-violation"), Outcome::Retry);
        assert_eq!(err("cancel", "service-unavailable"), Outcome::Retry);
        assert_eq!(err("cancel", "remote-server-not-found"), Outcome::Retry);
        assert_eq!(err("modify", "bad-request"), Outcome::Failed);
        assert_eq!(
            o("<iq xmlns='jabber:client' type='error' id='a'/>"),
            Outcome::Failed
        );
    }

    #[test]
    fn rate_limit_per_minute() {
        let mut sent = VecDeque::new();
        let t0 = Instant::now();
        assert!(allow(&mut sent, t0, 2));
        assert!(allow(&mut sent, t0 + Duration::from_secs(1), 2));
        assert!(!allow(&mut sent, t0 + Duration::from_secs(59), 2));
        assert!(allow(&mut sent, t0 + Duration::from_secs(60), 2));
        assert_eq!(sent.len(), 2);
    }
}
