//! Cutting the server's XML stream into top-level pieces, for the transports that frame it:
//! RFC 7395 WebSocket (one element per message) and XEP-0206 BOSH (elements in `<body/>`).
//!
//! The session writes a byte stream (stream headers, elements, `</stream:stream>`), batched
//! by its outbox. [`Splitter`] finds the boundaries of the top-level units in it without
//! building elements: it only tracks tags, quotes and depth, which is enough for XML that
//! kleiber itself serialised (no comments, CDATA or DTDs; `<` always escaped in text and
//! attribute values). The conversions between stream headers and the framing protocols'
//! `<open/>`/`<close/>` live here too, so both transports share one rule.

use quick_xml::events::{BytesStart, Event};

/// The RFC 7395 framing namespace.
pub const NS_FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
/// The stream namespace (the `stream:` prefix).
pub const NS_STREAM: &str = "http://etherx.jabber.org/streams";

/// One top-level unit of the server's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unit {
    /// A stream header (`<stream:stream ...>`), as written.
    Header(String),
    /// A complete top-level element, as written.
    Element(String),
    /// `</stream:stream>`.
    End,
}

/// Where the scanner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between tags.
    Text,
    /// Inside a tag that began at `start`; `quote` is the open attribute quote, if any.
    Tag { start: usize, quote: Option<u8> },
}

/// Incremental splitter of the server's output into [`Unit`]s.
#[derive(Debug)]
pub struct Splitter {
    buf: Vec<u8>,
    /// Scanned up to here.
    pos: usize,
    /// Start of the top-level element being collected.
    unit_start: usize,
    depth: usize,
    state: State,
}

impl Default for Splitter {
    fn default() -> Self {
        Self::new()
    }
}

impl Splitter {
    pub fn new() -> Splitter {
        Splitter {
            buf: Vec::new(),
            pos: 0,
            unit_start: 0,
            depth: 0,
            state: State::Text,
        }
    }

    /// Bytes held for a unit not yet complete.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Feed `bytes`; append every unit they complete to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Unit>) {
        self.buf.extend_from_slice(bytes);
        let mut consumed = 0;
        while self.pos < self.buf.len() {
            let i = self.pos;
            let b = self.buf[i];
            self.pos += 1;
            match self.state {
                State::Text => {
                    if b == b'<' {
                        self.state = State::Tag {
                            start: i,
                            quote: None,
                        };
                    } else if self.depth == 0 {
                        // Whitespace between top-level units is dropped.
                        consumed = self.pos;
                    }
                }
                State::Tag { start, quote } => match (quote, b) {
                    (Some(q), _) if b == q => {
                        self.state = State::Tag { start, quote: None };
                    }
                    (Some(_), _) => {}
                    (None, b'"' | b'\'') => {
                        self.state = State::Tag {
                            start,
                            quote: Some(b),
                        };
                    }
                    (None, b'>') => {
                        self.state = State::Text;
                        if let Some(unit) = self.tag_done(start, i) {
                            out.push(unit);
                        }
                        if self.depth == 0 {
                            consumed = self.pos;
                        }
                    }
                    _ => {}
                },
            }
        }
        if consumed > 0 {
            self.buf.drain(..consumed);
            if self.buf.is_empty() && self.buf.capacity() > 4096 {
                // Nothing pending: an idle connection keeps no buffer.
                self.buf = Vec::new();
            }
            self.pos -= consumed;
            self.unit_start = self.unit_start.saturating_sub(consumed);
            if let State::Tag { start, quote } = self.state {
                self.state = State::Tag {
                    start: start - consumed,
                    quote,
                };
            }
        }
    }

    /// The tag `buf[start..=end]` is complete: the unit it finishes, if any.
    fn tag_done(&mut self, start: usize, end: usize) -> Option<Unit> {
        let tag = &self.buf[start..=end];
        let text = || String::from_utf8_lossy(&self.buf[start..=end]).into_owned();
        if tag.starts_with(b"<?") {
            return None;
        }
        if let Some(name) = tag.strip_prefix(b"</") {
            let name = name[..name.len() - 1].trim_ascii();
            if self.depth == 0 {
                return (name == b"stream:stream").then_some(Unit::End);
            }
            self.depth -= 1;
            if self.depth == 0 {
                let s = String::from_utf8_lossy(&self.buf[self.unit_start..=end]).into_owned();
                return Some(Unit::Element(s));
            }
            return None;
        }
        if self.depth == 0 && is_stream_header(tag) {
            return Some(Unit::Header(text()));
        }
        if tag.ends_with(b"/>") {
            return (self.depth == 0).then(|| Unit::Element(text()));
        }
        if self.depth == 0 {
            self.unit_start = start;
        }
        self.depth += 1;
        None
    }
}

/// Whether `tag` opens `<stream:stream`.
fn is_stream_header(tag: &[u8]) -> bool {
    tag.strip_prefix(b"<stream:stream")
        .and_then(|rest| rest.first())
        .is_some_and(|b| b.is_ascii_whitespace() || *b == b'>')
}

/// The attributes of the single tag in `tag` (a start or empty tag), with its name.
fn tag_attributes(tag: &str) -> Option<(String, Vec<(String, String)>)> {
    let mut reader = quick_xml::Reader::from_str(tag);
    let start: BytesStart = match reader.read_event().ok()? {
        Event::Start(e) | Event::Empty(e) => e.into_owned(),
        _ => return None,
    };
    let name = String::from_utf8(start.name().as_ref().to_vec()).ok()?;
    let mut attrs = Vec::new();
    for a in start.attributes() {
        let a = a.ok()?;
        let key = String::from_utf8(a.key.as_ref().to_vec()).ok()?;
        let value = a.unescape_value().ok()?.into_owned();
        attrs.push((key, value));
    }
    Some((name, attrs))
}

/// Append ` key='value'` (escaped) to `out`.
fn push_attr(out: &mut String, key: &str, value: &str) {
    out.push(' ');
    out.push_str(key);
    out.push_str("='");
    crate::xml::element::escape_into(out, value, true);
    out.push('\'');
}

/// The attributes of a stream header, without its namespace declarations (for `<open/>`
/// and BOSH's session response).
pub fn header_attributes(header: &str) -> Vec<(String, String)> {
    tag_attributes(header)
        .map(|(_, a)| a)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != "xmlns" && !k.starts_with("xmlns:"))
        .collect()
}

/// RFC 7395: the server's stream header as an `<open/>` frame.
pub fn header_to_open(header: &str) -> String {
    let mut out = format!("<open xmlns='{NS_FRAMING}'");
    for (k, v) in header_attributes(header) {
        push_attr(&mut out, &k, &v);
    }
    out.push_str("/>");
    out
}

/// RFC 7395: `</stream:stream>` as a `<close/>` frame.
pub fn close_frame() -> String {
    format!("<close xmlns='{NS_FRAMING}'/>")
}

/// What a client's frame means for the stream the session reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// `<open/>`: this stream header (with the attributes the client sent).
    Open(String),
    /// `<close/>`: the end of the stream.
    Close,
    /// Anything else: passed on as it is.
    Other,
}

/// RFC 7395: recognise `<open/>` and `<close/>` in the framing namespace. An `<open/>` turns
/// into a client stream header with its `to`, `from`, `version`, `xml:lang` and `id`.
pub fn client_frame(frame: &str) -> ClientFrame {
    let trimmed = frame.trim_start();
    if !(trimmed.starts_with("<open") || trimmed.starts_with("<close")) {
        return ClientFrame::Other;
    }
    let Some((name, attrs)) = tag_attributes(trimmed) else {
        return ClientFrame::Other;
    };
    let framing = attrs.iter().any(|(k, v)| k == "xmlns" && v == NS_FRAMING);
    match name.as_str() {
        "close" if framing => ClientFrame::Close,
        "open" if framing => {
            let mut header = format!(
                "<stream:stream xmlns='{}' xmlns:stream='{NS_STREAM}'",
                crate::xmpp::ns::CLIENT
            );
            for (k, v) in attrs.iter().filter(|(k, _)| !k.starts_with("xmlns")) {
                push_attr(&mut header, k, v);
            }
            header.push('>');
            ClientFrame::Open(header)
        }
        _ => ClientFrame::Other,
    }
}

/// A top-level element of the server's stream as it must stand alone in a frame or a BOSH
/// body: `stream:`-prefixed elements declare the stream namespace, elements without a
/// namespace of their own get `jabber:client` (which the stream header declared).
pub fn standalone_element(element: &str) -> String {
    let name_end = element[1..]
        .find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/')
        .map_or(element.len(), |i| i + 1);
    let name = &element[1..name_end];
    let head_end = element.find('>').unwrap_or(element.len());
    let head = &element[..head_end];
    let declaration = if name.starts_with("stream:") {
        (!head.contains("xmlns:stream=")).then(|| format!(" xmlns:stream='{NS_STREAM}'"))
    } else if !has_default_namespace(head) {
        Some(format!(" xmlns='{}'", crate::xmpp::ns::CLIENT))
    } else {
        None
    };
    match declaration {
        Some(d) => {
            let mut s = String::with_capacity(element.len() + d.len());
            s.push_str(&element[..name_end]);
            s.push_str(&d);
            s.push_str(&element[name_end..]);
            s
        }
        None => element.to_owned(),
    }
}

/// Whether the start tag `head` declares a default namespace.
fn has_default_namespace(head: &str) -> bool {
    head.match_indices("xmlns").any(|(i, _)| {
        let before = head.as_bytes()[i - 1];
        let after = head[i + 5..].trim_start();
        before.is_ascii_whitespace() && after.starts_with('=')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_in_pieces(s: &str, piece: usize) -> Vec<Unit> {
        let mut sp = Splitter::new();
        let mut out = Vec::new();
        for chunk in s.as_bytes().chunks(piece) {
            sp.push(chunk, &mut out);
        }
        assert_eq!(sp.pending(), 0, "left over in {s:?}");
        out
    }

    #[test]
    fn splits_a_whole_stream_in_any_pieces() {
        let header = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' id='a>b' from='localhost'>";
        let s = format!(
            "<?xml version='1.0'?>{header}<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>\n<message to='a@b' type=\"chat\"><body>1 > 0 &amp; &lt;x/&gt;</body><x a='/>'/></message><iq type='result' id='1'/></stream:stream>"
        );
        let want = vec![
            Unit::Header(header.to_owned()),
            Unit::Element("<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>".into()),
            Unit::Element("<message to='a@b' type=\"chat\"><body>1 > 0 &amp; &lt;x/&gt;</body><x a='/>'/></message>".into()),
            Unit::Element("<iq type='result' id='1'/>".into()),
            Unit::End,
        ];
        for piece in [1, 2, 3, 7, 64, 10_000] {
            assert_eq!(split_in_pieces(&s, piece), want, "pieces of {piece}");
        }
    }

    #[test]
    fn nested_elements_of_the_same_name() {
        let s = "<iq><query><item><item/></item></query></iq><a/>";
        assert_eq!(
            split_in_pieces(s, 5),
            vec![
                Unit::Element("<iq><query><item><item/></item></query></iq>".into()),
                Unit::Element("<a/>".into())
            ]
        );
    }

    #[test]
    fn stream_errors_end_the_stream() {
        let s = "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>";
        let units = split_in_pieces(s, 4);
        assert_eq!(units.len(), 2);
        assert_eq!(units[1], Unit::End);
        let Unit::Element(e) = &units[0] else {
            panic!()
        };
        assert!(standalone_element(e)
            .starts_with("<stream:error xmlns:stream='http://etherx.jabber.org/streams'>"));
    }

    #[test]
    fn header_becomes_open_and_back() {
        let header = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en' id='x&apos;1' from='localhost'>";
        assert_eq!(
            header_to_open(header),
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' version='1.0' xml:lang='en' id='x&apos;1' from='localhost'/>"
        );
        let open =
            r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="localhost" version="1.0"/>"#;
        assert_eq!(
            client_frame(open),
            ClientFrame::Open("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>".into())
        );
        assert_eq!(
            client_frame("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"),
            ClientFrame::Close
        );
        // Not in the framing namespace, or another element: passed on.
        assert_eq!(client_frame("<open to='x'/>"), ClientFrame::Other);
        assert_eq!(client_frame("<message/>"), ClientFrame::Other);
    }

    #[test]
    fn elements_get_the_namespace_they_inherited() {
        assert_eq!(
            standalone_element("<message to='a'><body>x</body></message>"),
            "<message xmlns='jabber:client' to='a'><body>x</body></message>"
        );
        assert_eq!(standalone_element("<iq/>"), "<iq xmlns='jabber:client'/>");
        let sasl = "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>";
        assert_eq!(standalone_element(sasl), sasl);
        // An attribute value mentioning xmlns is not a declaration.
        assert_eq!(
            standalone_element("<message id='xmlns'/>"),
            "<message xmlns='jabber:client' id='xmlns'/>"
        );
        assert_eq!(
            standalone_element("<stream:features/>"),
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'/>"
        );
    }
}
