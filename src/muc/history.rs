//! A room's discussion history (XEP-0045 §7.2.15): the last messages, in memory only (the
//! privacy policy promises no stored conversations), and the filters a client may put on what
//! it gets when it enters: `maxchars`, `maxstanzas`, `seconds` and `since`.

use std::collections::VecDeque;

use crate::xml::Element;

/// One message of the history: as it was broadcast (from the occupant's room JID, no `to`),
/// when, and its length as XML (what `maxchars` counts).
#[derive(Debug, Clone)]
pub struct Entry {
    pub stanza: Element,
    pub at_ms: u64,
    pub chars: usize,
}

/// The last `capacity` messages.
#[derive(Debug, Default)]
pub struct History {
    entries: VecDeque<Entry>,
    capacity: usize,
}

/// What a client asked for with `<history/>`; `None`: no limit of that kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub max_chars: Option<usize>,
    pub max_stanzas: Option<usize>,
    pub seconds: Option<u64>,
    pub since_ms: Option<u64>,
}

impl Filter {
    /// The filter of a `<history/>` element (unparsable attributes are ignored, as if absent).
    pub fn parse(h: &Element) -> Filter {
        let num = |a: &str| h.get_attr(a).and_then(|v| v.trim().parse::<u64>().ok());
        Filter {
            max_chars: num("maxchars").map(|v| v as usize),
            max_stanzas: num("maxstanzas").map(|v| v as usize),
            seconds: num("seconds"),
            since_ms: h
                .get_attr("since")
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s.trim()).ok())
                .and_then(|t| u64::try_from(t.timestamp_millis()).ok()),
        }
    }
}

impl History {
    pub fn new(capacity: usize) -> History {
        History {
            entries: VecDeque::with_capacity(capacity.min(64)),
            capacity,
        }
    }

    /// Keep `stanza`, dropping the oldest message when full.
    pub fn push(&mut self, stanza: Element, at_ms: u64) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        let chars = stanza.to_xml(crate::xmpp::ns::CLIENT).chars().count();
        self.entries.push_back(Entry {
            stanza,
            at_ms,
            chars,
        });
    }

    /// The messages `filter` lets through at `now_ms`, oldest first: the newest ones that fit
    /// every limit.
    pub fn select(&self, filter: &Filter, now_ms: u64) -> Vec<&Entry> {
        let oldest = filter
            .seconds
            .map(|s| now_ms.saturating_sub(s.saturating_mul(1000)))
            .into_iter()
            .chain(filter.since_ms)
            .max()
            .unwrap_or(0);
        let mut chars = 0usize;
        let mut out = Vec::new();
        for e in self.entries.iter().rev() {
            if e.at_ms < oldest || filter.max_stanzas.is_some_and(|m| out.len() >= m) {
                break;
            }
            chars += e.chars;
            if filter.max_chars.is_some_and(|m| chars > m) {
                break;
            }
            out.push(e);
        }
        out.reverse();
        out
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: &str) -> Element {
        Element::new("message", "jabber:client")
            .child(Element::new("body", "jabber:client").text(body))
    }

    #[test]
    fn filters() {
        let mut h = History::new(3);
        for (i, b) in ["a", "b", "c", "d"].iter().enumerate() {
            h.push(msg(b), 1000 * (i as u64 + 1));
        }
        assert_eq!(h.len(), 3);
        let all = h.select(&Filter::default(), 10_000);
        let bodies: Vec<String> = all
            .iter()
            .map(|e| {
                e.stanza
                    .get_child("body", "jabber:client")
                    .unwrap()
                    .text_content()
            })
            .collect();
        assert_eq!(bodies, ["b", "c", "d"]);
        let two = Filter {
            max_stanzas: Some(2),
            ..Filter::default()
        };
        assert_eq!(h.select(&two, 10_000).len(), 2);
        let none = Filter {
            max_chars: Some(0),
            ..Filter::default()
        };
        assert!(h.select(&none, 10_000).is_empty());
        let recent = Filter {
            seconds: Some(7),
            ..Filter::default()
        };
        // now 10 s: only messages from 3 s on.
        assert_eq!(h.select(&recent, 10_000).len(), 2);
        let f = Filter::parse(
            &Element::new("history", "x")
                .attr("maxstanzas", "5")
                .attr("since", "1970-01-01T00:00:03Z"),
        );
        assert_eq!(f.max_stanzas, Some(5));
        assert_eq!(f.since_ms, Some(3000));
        assert_eq!(h.select(&f, 10_000).len(), 2);
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let mut h = History::new(0);
        h.push(msg("x"), 1);
        assert!(h.is_empty());
    }
}
