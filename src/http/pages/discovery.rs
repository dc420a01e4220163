//! XEP-0156 discovery of the web transports: the host-meta document in its XRD (XML) and
//! JSON forms, listing the enabled endpoints of one host under `http.public_url`.

use crate::config::Config;

/// XEP-0156's relation of the WebSocket endpoint (RFC 7395).
pub const REL_WEBSOCKET: &str = "urn:xmpp:alt-connections:websocket";
/// XEP-0156's relation of the BOSH endpoint (XEP-0206).
pub const REL_BOSH: &str = "urn:xmpp:alt-connections:xbosh";

/// The (relation, URL) pairs of `host`'s enabled endpoints.
pub fn links(config: &Config, host: &str) -> Vec<(&'static str, String)> {
    let http = &config.http;
    let base = http.url_of(host);
    let mut out = Vec::new();
    if http.websocket {
        out.push((REL_WEBSOCKET, format!("{}/xmpp-websocket", ws_base(&base))));
    }
    if http.bosh {
        out.push((REL_BOSH, format!("{base}/http-bind")));
    }
    out
}

/// The WebSocket form of an http(s) base URL (`https:` -> `wss:`, `http:` -> `ws:`).
pub fn ws_base(base: &str) -> String {
    if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    }
}

/// The host-meta XRD document.
pub fn xrd(links: &[(&str, String)]) -> String {
    let mut out = String::from(
        "<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n",
    );
    for (rel, href) in links {
        out.push_str(&format!(
            "  <Link rel=\"{}\" href=\"{}\"/>\n",
            super::esc(rel),
            super::esc(href)
        ));
    }
    out.push_str("</XRD>\n");
    out
}

/// The host-meta JSON document (RFC 6415 appendix A).
pub fn json(links: &[(&str, String)]) -> String {
    let links: Vec<_> = links
        .iter()
        .map(|(rel, href)| serde_json::json!({ "rel": rel, "href": href }))
        .collect();
    serde_json::json!({ "links": links }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_the_config() {
        let mut c = Config::default();
        c.http.public_url = "https://{host}/".into();
        let l = links(&c, "example.org");
        assert_eq!(
            l,
            vec![
                (REL_WEBSOCKET, "wss://example.org/xmpp-websocket".to_owned()),
                (REL_BOSH, "https://example.org/http-bind".to_owned()),
            ]
        );
        c.http.websocket = false;
        assert_eq!(links(&c, "a").len(), 1);
        c.http.public_url = "http://x.test:5280".into();
        c.http.websocket = true;
        c.http.bosh = false;
        assert_eq!(links(&c, "a")[0].1, "ws://x.test:5280/xmpp-websocket");
        let x = xrd(&links(&c, "a"));
        assert!(x.contains(
            "<Link rel=\"urn:xmpp:alt-connections:websocket\" href=\"ws://x.test:5280/xmpp-websocket\"/>"
        ));
        let j: serde_json::Value = serde_json::from_str(&json(&links(&c, "a"))).unwrap();
        assert_eq!(j["links"][0]["rel"], REL_WEBSOCKET);
    }
}
