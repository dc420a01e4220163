//! The pieces every page is made of: the language ([`Lang`]) and its negotiation, HTML
//! escaping, and [`Page`], which writes the document frame (head, language switch, footer)
//! around the sections the page builders add.
//!
//! Every value that comes from the configuration or the request goes through [`esc`] (or
//! [`uri_link`]) before it reaches the HTML; the builders' own sentences are constants.

use std::fmt::Write as _;

/// The languages the pages are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    De,
}

impl Lang {
    /// The language tag (`<html lang>`, `Content-Language`, `?lang=`).
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
        }
    }

    /// The other language (for the switch link).
    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::De,
            Lang::De => Lang::En,
        }
    }

    /// The text in this language.
    pub fn t<T>(self, en: T, de: T) -> T {
        match self {
            Lang::En => en,
            Lang::De => de,
        }
    }

    /// `n` days, as after "for" / "nach" (German dative plural: "90 Tagen").
    pub fn days(self, n: u64) -> String {
        match (self, n) {
            (Lang::En, 1) => "1 day".into(),
            (Lang::En, n) => format!("{n} days"),
            (Lang::De, 1) => "1 Tag".into(),
            (Lang::De, n) => format!("{n} Tagen"),
        }
    }

    /// `n` days, as a span ("for 90 days" / "90 Tage lang", "90 Tage nach ...": accusative).
    pub fn span(self, n: u64) -> String {
        match (self, n) {
            (Lang::De, 1) => "1 Tag".into(),
            (Lang::De, n) => format!("{n} Tage"),
            (Lang::En, n) => self.days(n),
        }
    }

    /// "every N hours" / "alle N Stunden".
    pub fn every_hours(self, n: u64) -> String {
        match (self, n) {
            (Lang::En, 1) => "every hour".into(),
            (Lang::En, n) => format!("every {n} hours"),
            (Lang::De, 1) => "stündlich".into(),
            (Lang::De, n) => format!("alle {n} Stunden"),
        }
    }
}

/// The page's language: `?lang=de|en` first, else the preferred of German and English in
/// `Accept-Language` (highest `q`, the earlier on a tie), else English.
pub fn negotiate(query: &str, accept_language: Option<&str>) -> Lang {
    let asked = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "lang")
        .map(|(_, v)| v.to_ascii_lowercase());
    match asked.as_deref() {
        Some("de") => return Lang::De,
        Some("en") => return Lang::En,
        _ => {}
    }
    let mut best: Option<(f32, Lang)> = None;
    for part in accept_language.unwrap_or("").split(',') {
        let mut fields = part.split(';');
        let tag = fields.next().unwrap_or("").trim().to_ascii_lowercase();
        let primary = tag.split('-').next().unwrap_or("");
        let lang = match primary {
            "de" => Lang::De,
            "en" => Lang::En,
            _ => continue,
        };
        let q = fields
            .filter_map(|f| f.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, lang));
        }
    }
    best.map_or(Lang::En, |(_, l)| l)
}

/// `s` escaped for HTML text and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A configured URI (a XEP-0157 contact address) as HTML: a link when its scheme is one a
/// visitor can follow (`mailto:`, `xmpp:`, `https:`, `http:`), shown without `mailto:`; any
/// other text escaped and not linked.
pub fn uri_link(uri: &str) -> String {
    let lower = uri.to_ascii_lowercase();
    let shown = ["mailto:", "xmpp:"]
        .iter()
        .find_map(|p| lower.starts_with(p).then(|| &uri[p.len()..]));
    let linkable = ["mailto:", "xmpp:", "https://", "http://"]
        .iter()
        .any(|p| lower.starts_with(p));
    if linkable {
        format!("<a href=\"{}\">{}</a>", esc(uri), esc(shown.unwrap_or(uri)))
    } else {
        esc(uri)
    }
}

/// An external link with constant text and address.
pub fn link(href: &str, text: &str) -> String {
    format!("<a href=\"{}\">{}</a>", esc(href), esc(text))
}

/// A page being written: the frame is fixed, the sections come from the page builders.
pub struct Page {
    pub lang: Lang,
    out: String,
}

impl Page {
    /// Start a page at `path` titled `title` (escaped here) in `lang`, with the language
    /// switch and the navigation.
    pub fn new(lang: Lang, path: &str, title: &str) -> Page {
        let mut out = String::with_capacity(16 * 1024);
        let other = lang.other();
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"{code}\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{title}</title>\n<link rel=\"stylesheet\" href=\"/style.css\">\n</head>\n\
             <body>\n<nav>{home} · {privacy} · \
             <a href=\"{path}?lang={ocode}\" hreflang=\"{ocode}\" lang=\"{ocode}\">{oname}</a></nav>\n\
             <main>\n<h1>{title}</h1>\n",
            code = lang.code(),
            title = esc(title),
            home = nav_link(lang, "/", lang.t("Home", "Start")),
            privacy = nav_link(lang, "/privacy", lang.t("Privacy", "Datenschutz")),
            path = esc(path),
            ocode = other.code(),
            oname = other.t("English", "Deutsch"),
        );
        Page { lang, out }
    }

    /// A section heading (constant or escaped text).
    pub fn h2(&mut self, text: &str) {
        let _ = writeln!(self.out, "<h2>{}</h2>", esc(text));
    }

    /// A paragraph of HTML (configured values already escaped).
    pub fn p(&mut self, html: &str) {
        let _ = writeln!(self.out, "<p>{html}</p>");
    }

    /// A paragraph in a highlighted box of `class` (`open`, `closed`, `note`).
    pub fn boxed(&mut self, class: &str, heading: &str, html: &str) {
        let _ = writeln!(
            self.out,
            "<div class=\"box {class}\"><h2>{}</h2><p>{html}</p></div>",
            esc(heading)
        );
    }

    /// A list of HTML items.
    pub fn list<S: AsRef<str>>(&mut self, items: &[S]) {
        self.out.push_str("<ul>\n");
        for item in items {
            let _ = writeln!(self.out, "<li>{}</li>", item.as_ref());
        }
        self.out.push_str("</ul>\n");
    }

    /// Close the page with the footer.
    pub fn finish(mut self) -> String {
        let _ = write!(
            self.out,
            "</main>\n<footer>{}</footer>\n</body>\n</html>\n",
            self.lang.t(
                "This server runs <a href=\"https://xmpp.org/\">XMPP</a> with kleiber.",
                "Dieser Server spricht <a href=\"https://xmpp.org/\">XMPP</a> mit kleiber.",
            )
        );
        self.out
    }
}

/// A link to one of our own pages that keeps the language.
pub fn nav_link(lang: Lang, path: &str, text: &str) -> String {
    format!(
        "<a href=\"{}?lang={}\">{}</a>",
        esc(path),
        lang.code(),
        esc(text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_is_negotiated() {
        assert_eq!(negotiate("", None), Lang::En);
        assert_eq!(negotiate("lang=de", Some("en")), Lang::De);
        assert_eq!(negotiate("x=1&lang=en", Some("de")), Lang::En);
        assert_eq!(negotiate("lang=fr", Some("de-DE,de;q=0.9")), Lang::De);
        assert_eq!(negotiate("", Some("de-AT, en;q=0.8")), Lang::De);
        assert_eq!(negotiate("", Some("en-GB,en;q=0.9,de;q=0.8")), Lang::En);
        assert_eq!(negotiate("", Some("fr, de;q=0.5, en;q=0.4")), Lang::De);
        assert_eq!(negotiate("", Some("fr, en;q=0.5, de;q=0.9")), Lang::De);
        assert_eq!(negotiate("", Some("de;q=0, en;q=0.1")), Lang::En);
        assert_eq!(negotiate("", Some("fr, *")), Lang::En);
    }

    #[test]
    fn values_are_escaped() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(
            uri_link("mailto:a@b.org"),
            "<a href=\"mailto:a@b.org\">a@b.org</a>"
        );
        assert_eq!(uri_link("javascript:alert(1)"), "javascript:alert(1)");
        assert_eq!(
            uri_link("https://x.org/?a=1&b=\"2\""),
            "<a href=\"https://x.org/?a=1&amp;b=&quot;2&quot;\">https://x.org/?a=1&amp;b=&quot;2&quot;</a>"
        );
    }
}
