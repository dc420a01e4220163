//! Names and URLs of uploads: random tokens, file names made safe for a URL and a file
//! system, and how a stored type is served (inline or as an attachment).

use base64::Engine;

/// Random bytes in a token (144 bits) and in a `PUT` secret.
const TOKEN_BYTES: usize = 18;
/// Longest file name kept, in characters.
const MAX_NAME_CHARS: usize = 120;

/// A new random token (URL-safe base64, no padding).
pub fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crate::sasl::random_bytes(TOKEN_BYTES))
}

/// The file name a client asked for, made safe: the last path component only, letters,
/// digits, `.`, `-` and `_` kept, everything else (slashes, spaces, controls, `%`) as `_`, no
/// leading dot and no `..`, at most [`MAX_NAME_CHARS`] characters. `None` when nothing is left
/// to name the file by.
pub fn sanitize_filename(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut out: String = base
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    while out.contains("..") {
        out = out.replace("..", ".");
    }
    let out = out.trim_start_matches('.');
    let out: String = out.chars().take(MAX_NAME_CHARS).collect();
    (!out.is_empty() && out.chars().any(|c| c != '_')).then_some(out)
}

/// `s` percent-encoded for a URL path segment (everything but RFC 3986's unreserved
/// characters).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URL of an upload under the web side's public base URL `base`.
pub fn url(base: &str, token: &str, filename: &str) -> String {
    format!("{base}/upload/{token}/{}", percent_encode(filename))
}

/// Whether a browser may show a file of `content_type` in the page (pictures, sound, video,
/// plain text); everything else (HTML, SVG, XML, scripts, PDF, unknown types) is served as an
/// attachment, so that a shared file never runs as a page of the server's origin.
pub fn inline(content_type: &str) -> bool {
    let t = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let passive_media = ["image/", "audio/", "video/"]
        .iter()
        .any(|p| t.starts_with(p))
        && !t.contains("svg")
        && !t.contains("xml");
    passive_media || t == "text/plain"
}

/// A content type as a client announced it, if it is a well-formed `type/subtype` (with
/// optional parameters) and short.
pub fn valid_content_type(t: &str) -> bool {
    t.len() <= 255 && t.parse::<mime::Mime>().is_ok() && !t.contains(['\r', '\n'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_made_safe() {
        assert_eq!(sanitize_filename("a.txt").as_deref(), Some("a.txt"));
        assert_eq!(
            sanitize_filename("../../etc/passwd").as_deref(),
            Some("passwd")
        );
        assert_eq!(sanitize_filename("..").as_deref(), None);
        assert_eq!(sanitize_filename("").as_deref(), None);
        assert_eq!(sanitize_filename("a..b").as_deref(), Some("a.b"));
        assert_eq!(sanitize_filename(".hidden").as_deref(), Some("hidden"));
        assert_eq!(
            sanitize_filename("C:\\x\\Über uns %2F.pdf").as_deref(),
            Some("Über_uns__2F.pdf")
        );
        assert_eq!(sanitize_filename(&"x".repeat(500)).unwrap().len(), 120);
        assert_eq!(percent_encode("Über a.pdf"), "%C3%9Cber%20a.pdf");
        assert_eq!(random_token().len(), 24);
    }

    #[test]
    fn active_content_is_an_attachment() {
        for t in [
            "image/png",
            "video/mp4",
            "audio/ogg",
            "text/plain; charset=utf-8",
        ] {
            assert!(inline(t), "{t}");
        }
        for t in [
            "text/html",
            "image/svg+xml",
            "application/xml",
            "application/javascript",
            "application/pdf",
            "application/octet-stream",
        ] {
            assert!(!inline(t), "{t}");
        }
        assert!(valid_content_type("image/png"));
        assert!(!valid_content_type("png"));
    }
}
