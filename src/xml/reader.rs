//! Incremental, namespace-aware XML stream reader over quick-xml's `NsReader`.
//!
//! Turns the bytes of an XMPP stream into [`StreamEvent`]s: the stream header, each complete
//! top-level element (stanza or nonza), and the end of the stream. It enforces the restricted
//! XML profile of RFC 6120 §11 (no DOCTYPE, comments, processing instructions or entities
//! beyond the predefined ones) and bounds memory for any input: the bytes a single stanza may
//! take are counted as they arrive from the socket (not after the fact), and nesting depth is
//! limited. quick-xml does neither by itself.

use std::collections::{HashMap, HashSet};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};

use super::element::{is_xml_char, Element, Node};

/// Most bytes taken from the transport in one read.
const READ_BUF: usize = 4096;
/// An event buffer that grew beyond this (long stanza) is released after the event.
const KEEP_BUF: usize = 4096;

/// What the reader produces.
#[derive(Debug)]
pub enum StreamEvent {
    /// The opening `<stream:stream>` tag (or `<stream>` in another prefix).
    Header(StreamHeader),
    /// A complete top-level element.
    Element(Element),
    /// The peer closed the stream (`</stream:stream>`).
    End,
}

/// The attributes of a stream header that matter to a server.
#[derive(Debug, Clone, Default)]
pub struct StreamHeader {
    /// Local name of the root element (must be `stream`).
    pub name: String,
    /// Namespace of the root element (must be `http://etherx.jabber.org/streams`).
    pub ns: String,
    /// The default namespace declared on the root (`jabber:client` for c2s).
    pub default_ns: String,
    /// The prefix used for the stream namespace (must be `stream`).
    pub prefix: String,
    /// Every non-namespace attribute (`to`, `from`, `version`, `xml:lang`, `id`).
    pub attrs: HashMap<String, String>,
}

/// Why reading the stream failed; each maps to one RFC 6120 stream error condition.
#[derive(Debug)]
pub enum ParseError {
    /// Syntax error, invalid UTF-8, forbidden character, duplicate attribute, unbound prefix.
    NotWellFormed(String),
    /// DOCTYPE, comment, processing instruction or an undefined entity (RFC 6120 §11.1).
    RestrictedXml(&'static str),
    /// Stanza larger than the limit, or nested too deep.
    PolicyViolation(&'static str),
    /// The transport failed or closed without `</stream:stream>`.
    Io(io::Error),
}

/// Byte budget shared by the [`Limited`] transport and the parser.
#[derive(Debug, Default)]
struct Budget {
    /// Bytes handed to the parser so far.
    read: AtomicU64,
    /// The parser may not be handed bytes beyond this absolute offset.
    allowed: AtomicU64,
    /// Set when a read was refused for lack of budget.
    exceeded: AtomicBool,
}

/// An `AsyncRead` that refuses to deliver bytes beyond the current budget, so a peer cannot
/// make the parser buffer an unbounded stanza.
pub struct Limited<R> {
    inner: R,
    budget: Arc<Budget>,
    /// Optional traffic shaper (bytes per second), as Prosody and ejabberd have.
    shaper: Option<Shaper>,
}

/// A token bucket: `rate` bytes per second, at most `burst` at once.
struct Shaper {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: tokio::time::Instant,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Shaper {
    fn refill(&mut self) {
        let now = tokio::time::Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
    }

    /// Bytes that may be read now, or Pending (with a wake-up) when none.
    fn poll_allowance(&mut self, cx: &mut Context<'_>) -> Poll<usize> {
        loop {
            self.refill();
            if self.tokens >= 1.0 {
                self.wait = None;
                return Poll::Ready(self.tokens as usize);
            }
            let secs = (1.0 - self.tokens) / self.rate;
            let at = tokio::time::Instant::now() + std::time::Duration::from_secs_f64(secs);
            let sleep = self
                .wait
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            sleep.as_mut().reset(at);
            if std::future::Future::poll(sleep.as_mut(), cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Limited<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let read = self.budget.read.load(Ordering::Relaxed);
        let allowed = self.budget.allowed.load(Ordering::Relaxed);
        if read >= allowed {
            self.budget.exceeded.store(true, Ordering::Relaxed);
            return Poll::Ready(Err(io::Error::other("stanza too large")));
        }
        let mut room = (allowed - read).min(buf.remaining() as u64) as usize;
        if let Some(shaper) = &mut self.shaper {
            match shaper.poll_allowance(cx) {
                Poll::Ready(n) => room = room.min(n),
                Poll::Pending => return Poll::Pending,
            }
        }
        let mut sub = buf.take(room);
        let before = sub.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, &mut sub) {
            Poll::Ready(Ok(())) => {
                let n = sub.filled().len() - before;
                // SAFETY: `take` handed out the unfilled part of `buf`, and the inner reader
                // initialised and filled its first `n` bytes.
                unsafe { buf.assume_init(n) };
                buf.advance(n);
                self.budget.read.fetch_add(n as u64, Ordering::Relaxed);
                if let Some(shaper) = &mut self.shaper {
                    shaper.tokens -= n as f64;
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

/// A buffered reader that holds no buffer while it waits: bytes are read into a stack buffer
/// and copied to the heap only when some arrived, and the heap buffer is freed as soon as the
/// parser consumed it. An idle connection therefore costs no read buffer (the same idea as
/// OpenSSL's `SSL_MODE_RELEASE_BUFFERS`, which we also set).
pub struct LazyBufReader<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
}

impl<R> LazyBufReader<R> {
    fn new(inner: R) -> Self {
        LazyBufReader {
            inner,
            buf: Vec::new(),
            pos: 0,
        }
    }

    /// Bytes read from the transport and not yet consumed.
    fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn into_inner(self) -> R {
        self.inner
    }

    fn get_mut_inner(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for LazyBufReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.buffered() == 0 {
            return Pin::new(&mut self.inner).poll_read(cx, out);
        }
        let this = &mut *self;
        let n = (this.buf.len() - this.pos).min(out.remaining());
        out.put_slice(&this.buf[this.pos..this.pos + n]);
        Pin::new(this).consume(n);
        Poll::Ready(Ok(()))
    }
}

impl<R: AsyncRead + Unpin> AsyncBufRead for LazyBufReader<R> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.pos >= this.buf.len() {
            // Uninitialised: zeroing 4 KiB per read was 18 % of the instructions per routed
            // message under callgrind.
            let mut tmp = [std::mem::MaybeUninit::<u8>::uninit(); READ_BUF];
            let mut rb = ReadBuf::uninit(&mut tmp);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    this.buf = rb.filled().to_vec();
                    this.pos = 0;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(&this.buf[this.pos..]))
    }

    fn consume(mut self: Pin<&mut Self>, amt: usize) {
        self.pos += amt;
        if self.pos >= self.buf.len() {
            self.buf = Vec::new();
            self.pos = 0;
        }
    }
}

/// Limits applied by the reader.
#[derive(Debug, Clone, Copy)]
pub struct ReaderLimits {
    /// Maximum bytes of one top-level element (stanza), counted on the wire.
    pub max_stanza: usize,
    /// Maximum element nesting depth inside a stanza.
    pub max_depth: usize,
}

impl Default for ReaderLimits {
    fn default() -> Self {
        ReaderLimits {
            max_stanza: 256 * 1024,
            max_depth: 32,
        }
    }
}

/// The stream reader. One per connection; reset on every stream restart.
pub struct XmlReader<R> {
    /// Always `Some`, except for the instant of a reset.
    reader: Option<NsReader<LazyBufReader<Limited<R>>>>,
    budget: Arc<Budget>,
    buf: Vec<u8>,
    stack: Vec<Element>,
    limits: ReaderLimits,
    /// Position (in parser bytes) where the current top-level element started.
    stanza_start: u64,
    /// Have we seen the stream header of the current stream?
    open: bool,
}

impl<R: AsyncRead + Unpin> XmlReader<R> {
    /// A reader over `inner` with the given limits.
    pub fn new(inner: R, limits: ReaderLimits) -> Self {
        let budget = Arc::new(Budget::default());
        let limited = Limited {
            inner,
            budget: budget.clone(),
            shaper: None,
        };
        let mut r = XmlReader {
            reader: Some(new_ns_reader(LazyBufReader::new(limited))),
            budget,
            buf: Vec::new(),
            stack: Vec::new(),
            limits,
            stanza_start: 0,
            open: false,
        };
        r.renew_budget();
        r
    }

    /// Shape the peer's traffic to `rate` bytes per second, `burst` at once (0 = unlimited).
    /// Needs a tokio runtime with timers.
    pub fn set_rate(&mut self, rate: u64, burst: u64) {
        let Some(r) = self.reader.as_mut() else {
            return;
        };
        let limited = r.get_mut().get_mut_inner();
        limited.shaper = (rate > 0).then(|| Shaper {
            rate: rate as f64,
            burst: burst.max(rate).max(1) as f64,
            tokens: burst.max(rate) as f64,
            last: tokio::time::Instant::now(),
            wait: None,
        });
    }

    /// Change the limits (e.g. the larger stanza limit after authentication).
    pub fn set_limits(&mut self, limits: ReaderLimits) {
        self.limits = limits;
        self.renew_budget();
    }

    /// Start a new stream on the same transport (after SASL success). Bytes the peer already
    /// sent (its new stream header) are kept.
    pub fn reset(&mut self) {
        let Some(old) = self.reader.take() else {
            return;
        };
        let inner = old.into_inner();
        // The parser's byte offsets restart at zero; keep the budget relative to them.
        let buffered = inner.buffered() as u64;
        self.budget.read.store(buffered, Ordering::Relaxed);
        self.reader = Some(new_ns_reader(inner));
        self.stack.clear();
        self.open = false;
        self.renew_budget();
    }

    /// Give up the transport (for STARTTLS: buffered plaintext is discarded on purpose).
    pub fn into_inner(mut self) -> R {
        self.ns_reader_take().into_inner().into_inner().inner
    }

    fn ns_reader_take(&mut self) -> NsReader<LazyBufReader<Limited<R>>> {
        self.reader.take().expect("reader present outside reset")
    }

    fn rd(&self) -> &NsReader<LazyBufReader<Limited<R>>> {
        self.reader.as_ref().expect("reader present outside reset")
    }

    fn renew_budget(&mut self) {
        let pos = self.reader.as_ref().map_or(0, |r| r.buffer_position());
        self.stanza_start = pos;
        let allowed = pos + self.limits.max_stanza as u64 + READ_BUF as u64;
        self.budget.allowed.store(allowed, Ordering::Relaxed);
    }

    /// The reader as a stream of events that ends after the stream's end or an error (what
    /// an actor adds to its context).
    pub fn into_events(self) -> impl futures_util::Stream<Item = Result<StreamEvent, ParseError>>
    where
        R: 'static,
    {
        futures_util::stream::unfold(Some(self), |reader| async move {
            let mut reader = reader?;
            let ev = reader.next().await;
            let more = matches!(ev, Ok(StreamEvent::Element(_)));
            Some((ev, more.then_some(reader)))
        })
    }

    /// The next event of the stream.
    pub async fn next(&mut self) -> Result<StreamEvent, ParseError> {
        if !self.open {
            self.check_prolog().await?;
        }
        let mut buf = std::mem::take(&mut self.buf);
        let result = loop {
            buf.clear();
            let reader = self.reader.as_mut().expect("reader present outside reset");
            let ev = match reader.read_event_into_async(&mut buf).await {
                Ok(ev) => ev,
                Err(e) => break Err(self.map_err(e)),
            };
            match self.handle(ev) {
                Ok(None) => {}
                Ok(Some(out)) => break Ok(out),
                Err(e) => break Err(e),
            }
        };
        if buf.capacity() <= KEEP_BUF {
            self.buf = buf;
        }
        result
    }

    /// Before the stream header only whitespace and markup may come: anything else (an HTTP
    /// request, a TLS ClientHello on the STARTTLS port, binary junk) is refused at once
    /// instead of waiting for a `<` that never comes.
    async fn check_prolog(&mut self) -> Result<(), ParseError> {
        use tokio::io::AsyncBufReadExt;
        let inner = self
            .reader
            .as_mut()
            .expect("reader present outside reset")
            .get_mut();
        let data = inner.fill_buf().await.map_err(ParseError::Io)?;
        match data
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        {
            Some(b'<') | None => Ok(()),
            Some(_) => Err(ParseError::NotWellFormed(
                "text before the stream header".into(),
            )),
        }
    }

    fn handle(&mut self, ev: Event<'_>) -> Result<Option<StreamEvent>, ParseError> {
        match ev {
            Event::Decl(_) if !self.open => {}
            Event::Decl(_) | Event::PI(_) => {
                return Err(ParseError::RestrictedXml("processing instruction"))
            }
            Event::DocType(_) => return Err(ParseError::RestrictedXml("DOCTYPE")),
            Event::Comment(_) => return Err(ParseError::RestrictedXml("comment")),
            Event::Eof => {
                return Err(ParseError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "stream closed without </stream>",
                )))
            }
            Event::Start(start) if !self.open => {
                let header = self.header(&start)?;
                self.open = true;
                self.renew_budget();
                return Ok(Some(StreamEvent::Header(header)));
            }
            Event::Empty(_) if !self.open => {
                return Err(ParseError::NotWellFormed("empty stream header".into()))
            }
            Event::Start(start) => {
                if self.stack.len() >= self.limits.max_depth {
                    return Err(ParseError::PolicyViolation("nesting too deep"));
                }
                let el = self.element(&start)?;
                self.stack.push(el);
            }
            Event::Empty(start) => {
                let el = self.element(&start)?;
                return self.push_child(el).map(|o| o.map(StreamEvent::Element));
            }
            Event::End(_) => match self.stack.pop() {
                None => {
                    self.open = false;
                    return Ok(Some(StreamEvent::End));
                }
                Some(el) => return self.push_child(el).map(|o| o.map(StreamEvent::Element)),
            },
            Event::Text(t) => {
                // Text ends at '<' or '&', so a literal "]]>" is always within one event.
                if t.windows(3).any(|w| w == b"]]>") {
                    return Err(ParseError::NotWellFormed("']]>' in text".into()));
                }
                let s = t
                    .decode()
                    .map_err(|e| ParseError::NotWellFormed(e.to_string()))?;
                self.text(&s)?;
            }
            Event::CData(t) => {
                let s = std::str::from_utf8(&t)
                    .map_err(|e| ParseError::NotWellFormed(e.to_string()))?;
                self.text(s)?;
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => c,
                    Ok(None) => {
                        let name = r
                            .decode()
                            .map_err(|e| ParseError::NotWellFormed(e.to_string()))?;
                        match predefined_entity(&name) {
                            Some(c) => c,
                            None => return Err(ParseError::RestrictedXml("entity")),
                        }
                    }
                    Err(e) => return Err(ParseError::NotWellFormed(e.to_string())),
                };
                self.text(c.encode_utf8(&mut [0; 4]))?;
            }
        }
        Ok(None)
    }

    fn map_err(&self, e: quick_xml::Error) -> ParseError {
        use quick_xml::errors::IllFormedError;
        if self.budget.exceeded.load(Ordering::Relaxed) {
            return ParseError::PolicyViolation("stanza too large");
        }
        match e {
            quick_xml::Error::Io(io) => ParseError::Io(io::Error::new(io.kind(), io.to_string())),
            quick_xml::Error::Escape(e) => escape_error(e),
            quick_xml::Error::IllFormed(IllFormedError::MissingDoctypeName) => {
                ParseError::RestrictedXml("DOCTYPE")
            }
            other => ParseError::NotWellFormed(other.to_string()),
        }
    }

    /// Add text to the element being built; whitespace between stanzas is a keepalive.
    fn text(&mut self, s: &str) -> Result<(), ParseError> {
        if let Some(c) = s.chars().find(|c| !is_xml_char(*c)) {
            return Err(ParseError::NotWellFormed(format!(
                "character U+{:04X} is not allowed in XML",
                c as u32
            )));
        }
        match self.stack.last_mut() {
            Some(top) => {
                if let Some(Node::Text(prev)) = top.children.last_mut() {
                    prev.push_str(s);
                } else {
                    top.children.push(Node::Text(s.to_owned()));
                }
                Ok(())
            }
            None if s.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n')) => {
                self.renew_budget();
                Ok(())
            }
            None => Err(ParseError::NotWellFormed(
                "text outside of a stanza".to_owned(),
            )),
        }
    }

    /// Attach a finished element to its parent, or return it when it is top-level.
    fn push_child(&mut self, el: Element) -> Result<Option<Element>, ParseError> {
        match self.stack.last_mut() {
            Some(parent) => {
                parent.children.push(Node::Element(el));
                Ok(None)
            }
            None => {
                let end = self.rd().buffer_position();
                if end.saturating_sub(self.stanza_start) > self.limits.max_stanza as u64 {
                    return Err(ParseError::PolicyViolation("stanza too large"));
                }
                self.renew_budget();
                Ok(Some(el))
            }
        }
    }

    fn resolve_ns(&self, res: ResolveResult<'_>) -> Result<String, ParseError> {
        match res {
            // quick-xml hands over the declaration's raw value: references in it (`&amp;`,
            // `&#58;`) must be resolved like in any attribute, or the namespace read here
            // would differ from what every other parser reads (found by fuzzing).
            ResolveResult::Bound(ns) => {
                let raw = std::str::from_utf8(ns.as_ref())
                    .map_err(|e| ParseError::NotWellFormed(e.to_string()))?;
                let value = quick_xml::escape::unescape(raw).map_err(escape_error)?;
                if value.chars().any(|c| !is_xml_char(c)) {
                    return Err(ParseError::NotWellFormed(
                        "forbidden character in a namespace name".into(),
                    ));
                }
                Ok(value.into_owned())
            }
            ResolveResult::Unbound => Ok(String::new()),
            ResolveResult::Unknown(p) => Err(ParseError::NotWellFormed(format!(
                "undeclared prefix {}",
                String::from_utf8_lossy(&p)
            ))),
        }
    }

    fn element(&self, start: &BytesStart<'_>) -> Result<Element, ParseError> {
        // quick-xml takes any bytes up to whitespace as a name; names are written out again
        // as they are, so an invalid one would make the stream to the recipient ill-formed.
        check_qname(start.name().as_ref())?;
        let (res, local) = self.rd().resolver().resolve_element(start.name());
        let ns = self.resolve_ns(res)?;
        let name = utf8(local.as_ref())?;
        let mut el = Element::new(&name, &ns);
        // quick-xml's duplicate-attribute check compares each attribute with all before it
        // (quadratic: half a second of CPU for a 256 KiB stanza of attributes, in a release
        // build); `has_duplicates` stays linear, and also catches two prefixes bound to the
        // same namespace.
        let mut decls = Vec::new();
        for attr in start.attributes().with_checks(false) {
            let attr = attr.map_err(|e| ParseError::NotWellFormed(e.to_string()))?;
            let key = attr.key.as_ref();
            check_qname(key)?;
            if attr.value.contains(&b'<') {
                return Err(ParseError::NotWellFormed(
                    "'<' in an attribute value".into(),
                ));
            }
            if key == b"xmlns" || key.starts_with(b"xmlns:") {
                let uri = utf8(&attr.value)?;
                if uri.chars().any(|c| !is_xml_char(c)) {
                    return Err(ParseError::NotWellFormed(
                        "forbidden character in a namespace name".into(),
                    ));
                }
                if key != b"xmlns" && uri.is_empty() {
                    return Err(ParseError::NotWellFormed(
                        "empty namespace name for a prefix".into(),
                    ));
                }
                decls.push(attr.key.into_inner());
                continue;
            }
            let value = attr.unescape_value().map_err(|e| match e {
                quick_xml::Error::Escape(e) => escape_error(e),
                other => ParseError::NotWellFormed(other.to_string()),
            })?;
            if value.chars().any(|c| !is_xml_char(c)) {
                return Err(ParseError::NotWellFormed(
                    "forbidden character in attribute".into(),
                ));
            }
            let name = if attr.key.prefix().is_none() || key.starts_with(b"xml:") {
                utf8(key)?
            } else {
                let (res, local) = self.rd().resolver().resolve_attribute(attr.key);
                let ns = self.resolve_ns(res)?;
                format!("{{{ns}}}{}", utf8(local.as_ref())?)
            };
            el.attrs.push((name, value.into_owned()));
        }
        if has_duplicates(&decls)
            || has_duplicates(
                &el.attrs
                    .iter()
                    .map(|(k, _)| k.as_bytes())
                    .collect::<Vec<_>>(),
            )
        {
            return Err(ParseError::NotWellFormed("duplicate attribute".into()));
        }
        Ok(el)
    }

    fn header(&self, start: &BytesStart<'_>) -> Result<StreamHeader, ParseError> {
        let el = self.element(start)?;
        let mut header = StreamHeader {
            name: el.name,
            ns: el.ns,
            prefix: start
                .name()
                .prefix()
                .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned())
                .unwrap_or_default(),
            ..StreamHeader::default()
        };
        for attr in start.attributes().flatten() {
            if attr.key.as_ref() == b"xmlns" {
                header.default_ns = utf8(&attr.value)?;
            }
        }
        header.attrs = el.attrs.into_iter().collect();
        Ok(header)
    }
}

fn new_ns_reader<B: AsyncBufRead + Unpin>(inner: B) -> NsReader<B> {
    let mut r = NsReader::from_reader(inner);
    let cfg = r.config_mut();
    cfg.trim_text(false);
    cfg.expand_empty_elements = false;
    cfg.check_end_names = true;
    r
}

/// Only a reference to an entity other than the five predefined ones is restricted XML
/// (RFC 6120 §11.1); a bad character reference (`&#0;`, a surrogate) or a bare `&` is a
/// well-formedness error.
fn escape_error(e: quick_xml::escape::EscapeError) -> ParseError {
    match e {
        quick_xml::escape::EscapeError::UnrecognizedEntity(..) => {
            ParseError::RestrictedXml("entity")
        }
        other => ParseError::NotWellFormed(other.to_string()),
    }
}

/// Are any two of `names` equal? Pairwise for a few, with a set beyond.
fn has_duplicates(names: &[&[u8]]) -> bool {
    if names.len() <= 8 {
        return names
            .iter()
            .enumerate()
            .any(|(i, a)| names[..i].contains(a));
    }
    let mut seen = HashSet::with_capacity(names.len());
    !names.iter().all(|n| seen.insert(*n))
}

/// XML 1.0 (fifth edition) NameStartChar, without ':'.
fn is_name_start(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}'
        | '\u{F8}'..='\u{2FF}' | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}'
        | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}'
        | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}'
        | '\u{10000}'..='\u{EFFFF}')
}

/// XML 1.0 (fifth edition) NameChar, without ':'.
fn is_name_char(c: char) -> bool {
    is_name_start(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

fn is_ncname(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_name_start) && chars.all(is_name_char)
}

/// An element or attribute name must be a QName (Namespaces in XML 1.0): `NCName` or
/// `NCName:NCName`.
fn check_qname(raw: &[u8]) -> Result<(), ParseError> {
    let s = std::str::from_utf8(raw).map_err(|e| ParseError::NotWellFormed(e.to_string()))?;
    // A byte search: `split_once(':')` here was left out of line by the compiler in some
    // builds, 0.4 % of the instructions per routed message (benches/callgrind.sh).
    let ok = match raw.iter().position(|&b| b == b':') {
        Some(i) => is_ncname(&s[..i]) && is_ncname(&s[i + 1..]),
        None => is_ncname(s),
    };
    if ok {
        Ok(())
    } else {
        Err(ParseError::NotWellFormed(format!("invalid name {s:?}")))
    }
}

fn predefined_entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "apos" => '\'',
        "quot" => '"',
        _ => return None,
    })
}

fn utf8(b: &[u8]) -> Result<String, ParseError> {
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|e| ParseError::NotWellFormed(e.to_string()))
}

/// Parse one element from a string (stored stanzas, tests), with `jabber:client` as the
/// default namespace and the same restricted-XML rules as the stream.
pub fn parse_element(xml: &str) -> Result<Element, ParseError> {
    let doc = format!(
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>{xml}"
    );
    let limits = ReaderLimits {
        max_stanza: doc.len() + 1,
        max_depth: 64,
    };
    let mut r = XmlReader::new(doc.as_bytes(), limits);
    let parse = async {
        r.next().await?;
        match r.next().await? {
            StreamEvent::Element(e) => Ok(e),
            _ => Err(ParseError::NotWellFormed("no element".into())),
        }
    };
    // Reading from memory never waits, so one poll completes the future.
    futures_util::FutureExt::now_or_never(parse)
        .unwrap_or_else(|| Err(ParseError::NotWellFormed("incomplete element".into())))
}

#[cfg(test)]
mod tests {
    #[test]
    fn namespace_names_are_unescaped() {
        let e = parse_element("<a xmlns='urn:x&amp;y&#58;z&gt;'/>").unwrap();
        assert_eq!(e.ns, "urn:x&y:z>");
        assert!(parse_element("<a xmlns='urn:&#0;'/>").is_err());
        assert!(parse_element("<a xmlns='urn:&bogus;'/>").is_err());
    }

    use super::*;

    #[test]
    fn names_must_be_qnames() {
        for ok in [
            "message",
            "stream:stream",
            "xml:lang",
            "xmlns:a0",
            "_a-b.c",
            "é",
            "a\u{B7}",
        ] {
            assert!(check_qname(ok.as_bytes()).is_ok(), "{ok:?}");
        }
        for bad in [
            "", "1a", "a:", ":a", "a:b:c", "a&amp;b", "a=b", "a'b", "x\u{1}y", "-a", "a}b",
        ] {
            assert!(check_qname(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn duplicates() {
        let few: [&[u8]; 3] = [b"a", b"b", b"a"];
        assert!(has_duplicates(&few));
        assert!(!has_duplicates(&few[..2]));
        let many: Vec<Vec<u8>> = (0..100).map(|i| format!("x{i}").into_bytes()).collect();
        let mut refs: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
        assert!(!has_duplicates(&refs));
        refs.push(b"x42");
        assert!(has_duplicates(&refs));
    }

    #[test]
    fn only_unknown_entities_are_restricted() {
        use quick_xml::escape::{EscapeError, ParseCharRefError};
        assert!(matches!(
            escape_error(EscapeError::UnrecognizedEntity(0..3, "foo".into())),
            ParseError::RestrictedXml(_)
        ));
        assert!(matches!(
            escape_error(EscapeError::UnterminatedEntity(0..1)),
            ParseError::NotWellFormed(_)
        ));
        assert!(matches!(
            escape_error(EscapeError::InvalidCharRef(
                ParseCharRefError::IllegalCharacter(0)
            )),
            ParseError::NotWellFormed(_)
        ));
    }
}
