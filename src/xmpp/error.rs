//! RFC 6120 errors: stream errors (§4.9) and stanza errors (§8.3).

use super::ns;
use crate::xml::Element;

/// Stream error conditions (RFC 6120 §4.9.3) used by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamError {
    BadFormat,
    BadNamespacePrefix,
    Conflict,
    ConnectionTimeout,
    HostUnknown,
    ImproperAddressing,
    InternalServerError,
    InvalidFrom,
    InvalidNamespace,
    InvalidXml,
    NotAuthorized,
    NotWellFormed,
    PolicyViolation,
    ResourceConstraint,
    RestrictedXml,
    SystemShutdown,
    UndefinedCondition,
    UnsupportedStanzaType,
    UnsupportedVersion,
}

impl StreamError {
    /// The element name of the condition.
    pub fn as_str(self) -> &'static str {
        use StreamError::*;
        match self {
            BadFormat => "bad-format",
            BadNamespacePrefix => "bad-namespace-prefix",
            Conflict => "conflict",
            ConnectionTimeout => "connection-timeout",
            HostUnknown => "host-unknown",
            ImproperAddressing => "improper-addressing",
            InternalServerError => "internal-server-error",
            InvalidFrom => "invalid-from",
            InvalidNamespace => "invalid-namespace",
            InvalidXml => "invalid-xml",
            NotAuthorized => "not-authorized",
            NotWellFormed => "not-well-formed",
            PolicyViolation => "policy-violation",
            ResourceConstraint => "resource-constraint",
            RestrictedXml => "restricted-xml",
            SystemShutdown => "system-shutdown",
            UndefinedCondition => "undefined-condition",
            UnsupportedStanzaType => "unsupported-stanza-type",
            UnsupportedVersion => "unsupported-version",
        }
    }

    /// `<stream:error>` followed by the closing tag, ready to write.
    pub fn to_xml(self, text: Option<&str>) -> String {
        let mut s = format!("<stream:error><{} xmlns='{}'/>", self.as_str(), ns::STREAMS);
        if let Some(t) = text {
            s.push_str("<text xmlns='");
            s.push_str(ns::STREAMS);
            s.push_str("'>");
            s.push_str(&crate::xml::escape(t));
            s.push_str("</text>");
        }
        s.push_str("</stream:error></stream:stream>");
        s
    }
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `type` of a stanza error (RFC 6120 §8.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    Auth,
    Cancel,
    Continue,
    Modify,
    Wait,
}

/// Stanza error conditions (RFC 6120 §8.3.3) used by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    BadRequest,
    Conflict,
    FeatureNotImplemented,
    Forbidden,
    InternalServerError,
    ItemNotFound,
    JidMalformed,
    NotAcceptable,
    NotAllowed,
    NotAuthorized,
    PolicyViolation,
    RecipientUnavailable,
    RegistrationRequired,
    RemoteServerNotFound,
    RemoteServerTimeout,
    ResourceConstraint,
    ServiceUnavailable,
    UndefinedCondition,
    UnexpectedRequest,
}

impl Condition {
    /// The element name of the condition.
    pub fn as_str(self) -> &'static str {
        use Condition::*;
        match self {
            BadRequest => "bad-request",
            Conflict => "conflict",
            FeatureNotImplemented => "feature-not-implemented",
            Forbidden => "forbidden",
            InternalServerError => "internal-server-error",
            ItemNotFound => "item-not-found",
            JidMalformed => "jid-malformed",
            NotAcceptable => "not-acceptable",
            NotAllowed => "not-allowed",
            NotAuthorized => "not-authorized",
            PolicyViolation => "policy-violation",
            RecipientUnavailable => "recipient-unavailable",
            RegistrationRequired => "registration-required",
            RemoteServerNotFound => "remote-server-not-found",
            RemoteServerTimeout => "remote-server-timeout",
            ResourceConstraint => "resource-constraint",
            ServiceUnavailable => "service-unavailable",
            UndefinedCondition => "undefined-condition",
            UnexpectedRequest => "unexpected-request",
        }
    }

    /// The error type RFC 6120 §8.3.3 gives for the condition.
    pub fn default_type(self) -> ErrorType {
        use Condition::*;
        match self {
            BadRequest | JidMalformed | NotAcceptable | PolicyViolation => ErrorType::Modify,
            NotAuthorized | Forbidden | RegistrationRequired => ErrorType::Auth,
            ResourceConstraint | RecipientUnavailable | RemoteServerTimeout => ErrorType::Wait,
            InternalServerError => ErrorType::Cancel,
            _ => ErrorType::Cancel,
        }
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stanza error: condition, type and optional human-readable text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaError {
    pub condition: Condition,
    pub kind: ErrorType,
    pub text: Option<String>,
    /// An application-specific condition (e.g. XEP-0060's `<precondition-not-met/>`).
    pub extra: Option<Box<Element>>,
}

impl StanzaError {
    /// An error with the condition's default type and no text.
    pub fn new(condition: Condition) -> Self {
        StanzaError {
            condition,
            kind: condition.default_type(),
            text: None,
            extra: None,
        }
    }

    /// Add an application-specific condition element.
    pub fn with_extra(mut self, extra: Element) -> Self {
        self.extra = Some(Box::new(extra));
        self
    }

    /// Add a human-readable text.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// The `<error/>` element (in `jabber:client`).
    pub fn to_element(&self) -> Element {
        let kind = match self.kind {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        };
        let mut e = Element::new("error", ns::CLIENT)
            .attr("type", kind)
            .child(Element::new(self.condition.as_str(), ns::STANZAS));
        if let Some(t) = &self.text {
            e = e.child(Element::new("text", ns::STANZAS).text(t.clone()));
        }
        if let Some(x) = &self.extra {
            e = e.child((**x).clone());
        }
        e
    }
}

impl From<Condition> for StanzaError {
    fn from(c: Condition) -> Self {
        StanzaError::new(c)
    }
}

/// The error reply to `stanza` (RFC 6120 §8.3.1): `to` and `from` swapped, `type='error'`, the
/// original payload kept (a message body is dropped, so content never bounces around), and the
/// error appended. `None` for stanzas of type `error`: errors are never answered with errors.
pub fn error_reply(stanza: &Element, err: &StanzaError) -> Option<Element> {
    if stanza.get_attr("type") == Some("error") {
        return None;
    }
    let mut reply = Element::new(&stanza.name, &stanza.ns);
    if let Some(id) = stanza.get_attr("id") {
        reply.set_attr("id", id);
    }
    if let Some(from) = stanza.get_attr("to") {
        reply.set_attr("from", from);
    }
    if let Some(to) = stanza.get_attr("from") {
        reply.set_attr("to", to);
    }
    reply.set_attr("type", "error");
    if stanza.name == "iq" {
        if let Some(payload) = stanza.elements().next() {
            reply
                .children
                .push(crate::xml::Node::Element(payload.clone()));
        }
    }
    reply
        .children
        .push(crate::xml::Node::Element(err.to_element()));
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reply_swaps_addresses_and_drops_body() {
        let msg = Element::new("message", ns::CLIENT)
            .attr("from", "a@x/r")
            .attr("to", "b@x")
            .attr("id", "1")
            .child(Element::new("body", ns::CLIENT).text("secret"));
        let err = error_reply(&msg, &Condition::ServiceUnavailable.into()).unwrap();
        assert_eq!(
            err.to_xml(ns::CLIENT),
            "<message id='1' from='b@x' to='a@x/r' type='error'><error type='cancel'>\
             <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        );
    }

    #[test]
    fn errors_are_not_answered() {
        let e = Element::new("message", ns::CLIENT).attr("type", "error");
        assert!(error_reply(&e, &Condition::BadRequest.into()).is_none());
    }

    #[test]
    fn stream_error_text_is_escaped() {
        assert_eq!(
            StreamError::HostUnknown.to_xml(Some("<x>")),
            "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>&lt;x&gt;</text>\
             </stream:error></stream:stream>"
        );
    }
}
