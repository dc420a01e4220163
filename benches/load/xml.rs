//! Incremental scanning of the server's XML stream into top-level elements kept as strings,
//! and string helpers on them (element name, attribute, child text, error condition).
//!
//! Why not kleiber's own parser (`kleiber::xml::XmlReader`, `Element`): the load generator
//! must not become the bottleneck, and that parser does much more per element (namespaces,
//! entities, limits, building a tree). Measured on 200,000 chat messages of 165 bytes (release
//! build, one core): this scanner splits 2.1 to 4.5 million elements/s, `XmlReader` builds
//! 290,000 to 340,000 elements/s, about 3 µs more per element; at the 13,000 messages/s of
//! `--pairs 100` that is 4 % more of a core for the generator, on a 2-core machine where it
//! already uses about 30 %. The scanner is not a validating parser: it trusts the server
//! under test to send well-formed XML, and the modes look into elements as text.

use crate::Res;

pub(crate) enum Event {
    StreamHeader,
    Element(String),
    StreamEnd,
}

/// Finds the end of a tag starting at `buf[i] == b'<'`: index just past `>`, respecting quotes.
pub(crate) fn tag_end(buf: &[u8], i: usize) -> Option<usize> {
    let mut quote = 0u8;
    for (j, &c) in buf.iter().enumerate().skip(i + 1) {
        if quote != 0 {
            if c == quote {
                quote = 0;
            }
        } else if c == b'"' || c == b'\'' {
            quote = c;
        } else if c == b'>' {
            return Some(j + 1);
        }
    }
    None
}

pub(crate) fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Returns the next complete top-level event in `buf` and how many bytes it used.
/// `None` means more data is needed. Text between top-level elements is skipped.
pub(crate) fn scan(buf: &[u8]) -> Res<Option<(Event, usize)>> {
    let Some(start) = buf.iter().position(|&c| c == b'<') else {
        return Ok(None);
    };
    let rest = &buf[start..];
    if rest.len() < 2 {
        return Ok(None);
    }
    if rest[1] == b'?' {
        // XML declaration: skip it and go on.
        let Some(e) = find(buf, b"?>", start) else {
            return Ok(None);
        };
        return Ok(scan(&buf[e + 2..])?.map(|(ev, n)| (ev, n + e + 2)));
    }
    if rest.starts_with(b"</") {
        let Some(e) = tag_end(buf, start) else {
            return Ok(None);
        };
        return Ok(Some((Event::StreamEnd, e)));
    }
    let head_len = rest.len().min(16);
    if rest[..head_len].starts_with(b"<stream:stream") || rest.starts_with(b"<stream ") {
        let Some(e) = tag_end(buf, start) else {
            return Ok(None);
        };
        return Ok(Some((Event::StreamHeader, e)));
    }
    // A top-level element: follow tags until its depth returns to zero.
    let mut depth = 0usize;
    let mut i = start;
    loop {
        let Some(p) = buf[i..].iter().position(|&c| c == b'<') else {
            return Ok(None);
        };
        i += p;
        if i + 1 >= buf.len() {
            return Ok(None);
        }
        match buf[i + 1] {
            b'/' => {
                let Some(e) = tag_end(buf, i) else {
                    return Ok(None);
                };
                depth = depth.checked_sub(1).ok_or("unbalanced XML")?;
                i = e;
            }
            b'!' => {
                // Comment or CDATA (not allowed in XMPP, but skip them correctly anyway).
                let (open, close): (&[u8], &[u8]) = if buf[i..].starts_with(b"<![CDATA[") {
                    (b"<![CDATA[", b"]]>")
                } else {
                    (b"<!--", b"-->")
                };
                if buf.len() < i + open.len() {
                    return Ok(None);
                }
                let Some(e) = find(buf, close, i + open.len()) else {
                    return Ok(None);
                };
                i = e + close.len();
            }
            b'?' => {
                let Some(e) = find(buf, b"?>", i + 2) else {
                    return Ok(None);
                };
                i = e + 2;
            }
            _ => {
                let Some(e) = tag_end(buf, i) else {
                    return Ok(None);
                };
                if buf[e - 2] != b'/' {
                    depth += 1;
                }
                i = e;
            }
        }
        if depth == 0 {
            let s = std::str::from_utf8(&buf[start..i])
                .map_err(|_| "invalid UTF-8 from server")?
                .to_owned();
            return Ok(Some((Event::Element(s), i)));
        }
    }
}

/// Name of an element (`message`, `iq`, `stream:features`, ...).
pub(crate) fn elem_name(s: &str) -> &str {
    let s = s.strip_prefix('<').unwrap_or(s);
    let end = s
        .find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/')
        .unwrap_or(s.len());
    &s[..end]
}

/// Value of an attribute of the outermost start tag (not unescaped).
pub(crate) fn attr<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    let head = &s[..tag_end(s.as_bytes(), 0).unwrap_or(s.len())];
    let mut from = 0;
    while let Some(p) = head[from..].find(name) {
        let at = from + p;
        from = at + name.len();
        let before_ok = at > 0 && head.as_bytes()[at - 1].is_ascii_whitespace();
        let after = head[from..].trim_start();
        if !before_ok || !after.starts_with('=') {
            continue;
        }
        let after = after[1..].trim_start();
        let q = after.chars().next()?;
        if q != '\'' && q != '"' {
            return None;
        }
        let v = &after[1..];
        return v.find(q).map(|e| &v[..e]);
    }
    None
}

/// Text content of the first child element named `tag` (`<tag>TEXT</tag>`), `""` if empty.
pub(crate) fn child_text<'a>(s: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}");
    let mut from = 0;
    loop {
        let p = from + s[from..].find(&open)?;
        from = p + open.len();
        let next = s.as_bytes().get(from).copied()?;
        if !(next == b'>' || next == b'/' || next.is_ascii_whitespace()) {
            continue;
        }
        let e = tag_end(s.as_bytes(), p)?;
        if s.as_bytes()[e - 2] == b'/' {
            return Some("");
        }
        let close = format!("</{tag}>");
        let c = e + s[e..].find(&close)?;
        return Some(&s[e..c]);
    }
}

pub(crate) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// The defined-condition element name of an error stanza or stream error, for messages.
pub(crate) fn error_condition(s: &str) -> String {
    let inner = match s.find("<error") {
        Some(p) => &s[p..],
        None => s,
    };
    let mut out = String::new();
    let mut from = 0;
    while let Some(p) = inner[from..].find('<') {
        let at = from + p;
        from = at + 1;
        let n = elem_name(&inner[at..]);
        if !n.is_empty() && n != "error" && n != "stream:error" && !n.starts_with('/') {
            out = n.to_owned();
            break;
        }
    }
    if out.is_empty() {
        out = "unknown".into();
    }
    out
}
