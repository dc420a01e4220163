//! What kleiber advertises is what it implements. `doap.xml` lists the supported
//! specifications; this test walks the stream features before and after authentication, the
//! server's disco#info and an account's disco#info, and checks each feature the XMPP
//! Compliance Suites (XEP-0479: Core, IM and Mobile, advanced server) look for: advertised if
//! and only if doap.xml says the specification is supported. Features advertised that are in
//! no row of the table fail the test too, so nothing unbuilt slips in.
//!
//! It also checks that README.md's protocol table is the one generated from doap.xml;
//! `KLEIBER_UPDATE_README=1 cargo test --test compliance` rewrites it.

mod common;
use common::*;

use std::collections::{BTreeMap, HashSet};

use kleiber::xml::Element;

const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

/// Where a feature shows.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// A `<feature var/>` of the server's disco#info.
    Server,
    /// A `<feature var/>` of the account's disco#info (its bare JID, asked by its owner).
    Account,
    /// An identity `category/type` of the account's disco#info.
    AccountIdentity,
    /// A stream feature (`name` in namespace `var`) before authentication.
    StreamPre(&'static str),
    /// A stream feature after authentication.
    StreamPost(&'static str),
    /// A data form with this FORM_TYPE in the server's disco#info.
    ServerForm,
    /// A `<feature var/>` of the group-chat service's disco#info (found as the item of the
    /// server's disco#items with identity `conference/text`).
    Muc,
    /// A `<feature var/>` of the upload service's disco#info (the item with identity
    /// `store/file`), where XEP-0363 puts it.
    Upload,
    /// A `<feature var/>` of the file-transfer proxy's disco#info (the item with identity
    /// `proxy/bytestreams`), where XEP-0065 puts it.
    Proxy,
}

/// (XEP number, where, feature var / namespace / identity).
const TABLE: &[(u32, Place, &str)] = &[
    (12, Place::Server, "jabber:iq:last"),
    (30, Place::Server, "http://jabber.org/protocol/disco#info"),
    (30, Place::Server, "http://jabber.org/protocol/disco#items"),
    (30, Place::Account, "http://jabber.org/protocol/disco#info"),
    (30, Place::Account, "http://jabber.org/protocol/disco#items"),
    (45, Place::Muc, "http://jabber.org/protocol/muc"),
    (65, Place::Proxy, "http://jabber.org/protocol/bytestreams"),
    (
        410,
        Place::Muc,
        "http://jabber.org/protocol/muc#self-ping-optimization",
    ),
    (421, Place::Muc, "urn:xmpp:occupant-id:0"),
    (49, Place::Server, "jabber:iq:private"),
    (54, Place::Server, "vcard-temp"),
    (60, Place::Account, "http://jabber.org/protocol/pubsub"),
    (
        60,
        Place::Account,
        "http://jabber.org/protocol/pubsub#retrieve-items",
    ),
    (
        60,
        Place::Account,
        "http://jabber.org/protocol/pubsub#retract-items",
    ),
    (
        60,
        Place::Account,
        "http://jabber.org/protocol/pubsub#delete-items",
    ),
    (
        60,
        Place::Account,
        "http://jabber.org/protocol/pubsub#delete-nodes",
    ),
    (
        60,
        Place::Account,
        "http://jabber.org/protocol/pubsub#create-nodes",
    ),
    (
        60,
        Place::Account,
        "http://jabber.org/protocol/pubsub#config-node",
    ),
    (
        60,
        Place::Account,
        "http://jabber.org/protocol/pubsub#item-ids",
    ),
    (
        60,
        Place::Account,
        "http://jabber.org/protocol/pubsub#persistent-items",
    ),
    (
        60,
        Place::Account,
        "http://jabber.org/protocol/pubsub#access-open",
    ),
    (
        60,
        Place::Account,
        "http://jabber.org/protocol/pubsub#access-presence",
    ),
    (
        60,
        Place::Account,
        "http://jabber.org/protocol/pubsub#access-roster",
    ),
    (
        60,
        Place::Account,
        "http://jabber.org/protocol/pubsub#access-whitelist",
    ),
    (
        60,
        Place::Account,
        "http://jabber.org/protocol/pubsub#last-published",
    ),
    (
        60,
        Place::Account,
        "http://jabber.org/protocol/pubsub#subscribe",
    ),
    (
        60,
        Place::Account,
        "http://jabber.org/protocol/pubsub#retrieve-subscriptions",
    ),
    (
        60,
        Place::Account,
        "http://jabber.org/protocol/pubsub#manage-subscriptions",
    ),
    (
        60,
        Place::Account,
        "http://jabber.org/protocol/pubsub#retrieve-affiliations",
    ),
    (
        60,
        Place::Account,
        "http://jabber.org/protocol/pubsub#modify-affiliations",
    ),
    (
        60,
        Place::Account,
        "http://jabber.org/protocol/pubsub#member-affiliation",
    ),
    (
        60,
        Place::Account,
        "http://jabber.org/protocol/pubsub#outcast-affiliation",
    ),
    (
        60,
        Place::Account,
        "http://jabber.org/protocol/pubsub#retrieve-default",
    ),
    (77, Place::Server, "jabber:iq:register"),
    (
        77,
        Place::StreamPre("register"),
        "http://jabber.org/features/iq-register",
    ),
    (92, Place::Server, "jabber:iq:version"),
    (
        115,
        Place::StreamPost("c"),
        "http://jabber.org/protocol/caps",
    ),
    (
        157,
        Place::ServerForm,
        "http://jabber.org/network/serverinfo",
    ),
    (163, Place::AccountIdentity, "pubsub/pep"),
    (
        163,
        Place::Account,
        "http://jabber.org/protocol/pubsub#publish",
    ),
    (
        163,
        Place::Account,
        "http://jabber.org/protocol/pubsub#auto-create",
    ),
    (
        163,
        Place::Account,
        "http://jabber.org/protocol/pubsub#filtered-notifications",
    ),
    (160, Place::Server, "msgoffline"),
    (191, Place::Server, "urn:xmpp:blocking"),
    (198, Place::StreamPost("sm"), "urn:xmpp:sm:3"),
    (199, Place::Server, "urn:xmpp:ping"),
    (202, Place::Server, "urn:xmpp:time"),
    (
        223,
        Place::Account,
        "http://jabber.org/protocol/pubsub#publish-options",
    ),
    (237, Place::StreamPost("ver"), "urn:xmpp:features:rosterver"),
    (280, Place::Server, "urn:xmpp:carbons:2"),
    // On the account's bare JID (XEP-0313 §7), as Prosody does; not on the server.
    (313, Place::Account, "urn:xmpp:mam:2"),
    (313, Place::Account, "urn:xmpp:mam:2#extended"),
    (359, Place::Account, "urn:xmpp:sid:0"),
    (352, Place::StreamPost("csi"), "urn:xmpp:csi:0"),
    (352, Place::Server, "urn:xmpp:csi:0"),
    (357, Place::Account, "urn:xmpp:push:0"),
    (215, Place::Server, "urn:xmpp:extdisco:2"),
    (363, Place::Upload, "urn:xmpp:http:upload:0"),
    (388, Place::StreamPre("authentication"), "urn:xmpp:sasl:2"),
    (398, Place::Account, "urn:xmpp:pep-vcard-conversion:0"),
    (411, Place::Account, "urn:xmpp:bookmarks:1#compat"),
    (411, Place::Account, "urn:xmpp:bookmarks:1#compat-pep"),
    (
        440,
        Place::StreamPre("sasl-channel-binding"),
        "urn:xmpp:sasl-cb:0",
    ),
    (478, Place::StreamPre("limits"), "urn:xmpp:stream-limits:0"),
    (478, Place::StreamPost("limits"), "urn:xmpp:stream-limits:0"),
];

/// Features advertised because of RFC 6120/6121 themselves (no XEP).
const RFC_FEATURES: &[(Place, &str)] = &[
    (
        Place::StreamPre("mechanisms"),
        "urn:ietf:params:xml:ns:xmpp-sasl",
    ),
    (
        Place::StreamPost("bind"),
        "urn:ietf:params:xml:ns:xmpp-bind",
    ),
    (
        Place::StreamPost("session"),
        "urn:ietf:params:xml:ns:xmpp-session",
    ),
];

/// One supported specification from doap.xml.
#[derive(Debug, Clone)]
struct Spec {
    /// `RFC 6120` or `XEP-0198`.
    name: String,
    url: String,
    status: String,
    note: String,
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let end = s[start..].find(close)? + start;
    Some(&s[start..end])
}

/// doap.xml's `<implements>` lines, sorted (RFCs, then XEPs by number).
fn doap() -> Vec<Spec> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/doap.xml")).unwrap();
    let mut specs: BTreeMap<(u8, u32), Spec> = BTreeMap::new();
    for line in text.lines().filter(|l| l.contains("<implements")) {
        if let Some(n) = between(line, "rfc-editor.org/rfc/rfc", "\"") {
            let num: u32 = n.parse().unwrap();
            specs.insert(
                (0, num),
                Spec {
                    name: format!("RFC {num}"),
                    url: format!("https://www.rfc-editor.org/rfc/rfc{num}"),
                    status: "complete".into(),
                    note: String::new(),
                },
            );
        } else if let Some(n) = between(line, "extensions/xep-", ".html") {
            let num: u32 = n.parse().unwrap();
            specs.insert(
                (1, num),
                Spec {
                    name: format!("XEP-{num:04}"),
                    url: format!("https://xmpp.org/extensions/xep-{num:04}.html"),
                    status: between(line, "<xmpp:status>", "</xmpp:status>")
                        .unwrap_or("complete")
                        .to_owned(),
                    note: between(line, "<xmpp:note>", "</xmpp:note>")
                        .unwrap_or("")
                        .to_owned(),
                },
            );
        }
    }
    specs.into_values().collect()
}

fn supported_xeps() -> HashSet<u32> {
    doap()
        .iter()
        .filter_map(|s| s.name.strip_prefix("XEP-")?.parse().ok())
        .collect()
}

/// What the server advertises, place by place.
struct Advertised {
    server: HashSet<String>,
    server_forms: HashSet<String>,
    account: HashSet<String>,
    muc: HashSet<String>,
    upload: HashSet<String>,
    proxy: HashSet<String>,
    identities: HashSet<String>,
    pre: HashSet<(String, String)>,
    post: HashSet<(String, String)>,
}

fn features(q: &Element) -> HashSet<String> {
    q.elements()
        .filter(|e| e.name == "feature")
        .filter_map(|e| e.get_attr("var").map(str::to_owned))
        .collect()
}

fn stream_features(f: &Element) -> HashSet<(String, String)> {
    f.elements()
        .map(|e| (e.name.clone(), e.ns.clone()))
        .collect()
}

async fn disco(c: &mut Client, to: &str, id: &str) -> Element {
    c.send(&format!(
        "<iq type='get' id='{id}' to='{to}'><query xmlns='{DISCO_INFO}'/></iq>"
    ))
    .await;
    loop {
        let e = c.recv().await;
        if e.get_attr("id") == Some(id) {
            return e.get_child("query", DISCO_INFO).unwrap().clone();
        }
    }
}

/// The disco#info of the server's group-chat service.
async fn muc_service(c: &mut Client) -> Element {
    service_with(c, "conference", "text").await
}

/// The disco#info of the item of the server's disco#items with the identity
/// `category/type`, or an empty one.
async fn service_with(c: &mut Client, category: &str, kind: &str) -> Element {
    const ITEMS: &str = "http://jabber.org/protocol/disco#items";
    c.send(&format!(
        "<iq type='get' id='items' to='localhost'><query xmlns='{ITEMS}'/></iq>"
    ))
    .await;
    let items = loop {
        let e = c.recv().await;
        if e.get_attr("id") == Some("items") {
            break e.get_child("query", ITEMS).unwrap().clone();
        }
    };
    for (i, item) in items.elements().enumerate() {
        let jid = item.get_attr("jid").unwrap();
        let info = disco(c, jid, &format!("m{i}")).await;
        let found = info.elements().any(|e| {
            e.name == "identity"
                && e.get_attr("category") == Some(category)
                && e.get_attr("type") == Some(kind)
        });
        if found {
            return info;
        }
    }
    Element::new("query", DISCO_INFO)
}

async fn advertised() -> Advertised {
    let s = TestServer::start_with(|c| {
        c.contact.abuse = vec!["mailto:abuse@localhost".into()];
        // A STUN server announced: XEP-0215 is advertised only with services.
        c.turn = toml::from_str("[[services]]\ntype = \"stun\"\nhost = \"stun.localhost\"\n")
            .expect("turn config");
        // The archive is the operator's choice: XEP-0313 and XEP-0359 are advertised with it.
        c.archive.enabled = true;
        c.archive.retention_days = Some(30);
    });
    s.add_user("juliet", "pw");
    let mut c = Client::starttls(s.starttls, "localhost").await;
    let pre = stream_features(&c.features);
    c.auth_scram("SCRAM-SHA-256", "juliet", "pw").await.unwrap();
    let post = stream_features(&c.features);
    c.bind(Some("r")).await;
    let server = disco(&mut c, "localhost", "s").await;
    let account = disco(&mut c, "juliet@localhost", "a").await;
    let muc = muc_service(&mut c).await;
    let upload = service_with(&mut c, "store", "file").await;
    let proxy = service_with(&mut c, "proxy", "bytestreams").await;
    Advertised {
        proxy: features(&proxy),
        muc: features(&muc),
        upload: features(&upload),
        server: features(&server),
        server_forms: server
            .elements()
            .filter(|x| x.name == "x")
            .flat_map(|x| {
                x.elements()
                    .filter(|f| f.get_attr("var") == Some("FORM_TYPE"))
                    .filter_map(|f| f.get_child("value", "jabber:x:data"))
                    .map(Element::text_content)
                    .collect::<Vec<_>>()
            })
            .map(|v| v.trim().to_owned())
            .collect(),
        account: features(&account),
        identities: account
            .elements()
            .filter(|e| e.name == "identity")
            .map(|e| {
                format!(
                    "{}/{}",
                    e.get_attr("category").unwrap_or_default(),
                    e.get_attr("type").unwrap_or_default()
                )
            })
            .collect(),
        pre,
        post,
    }
}

fn shows(a: &Advertised, place: Place, var: &str) -> bool {
    match place {
        Place::Server => a.server.contains(var),
        Place::Account => a.account.contains(var),
        Place::AccountIdentity => a.identities.contains(var),
        Place::StreamPre(name) => a.pre.contains(&(name.to_owned(), var.to_owned())),
        Place::StreamPost(name) => a.post.contains(&(name.to_owned(), var.to_owned())),
        Place::ServerForm => a.server_forms.contains(var),
        Place::Muc => a.muc.contains(var),
        Place::Upload => a.upload.contains(var),
        Place::Proxy => a.proxy.contains(var),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advertised_features_match_doap() {
    let a = advertised().await;
    let supported = supported_xeps();
    let mut wrong = Vec::new();
    for (xep, place, var) in TABLE {
        let built = supported.contains(xep);
        if shows(&a, *place, var) != built {
            wrong.push(format!(
                "XEP-{xep:04} {var} at {place:?}: {} but doap.xml says {}",
                if built { "missing" } else { "advertised" },
                if built { "supported" } else { "not supported" }
            ));
        }
    }
    for (place, var) in RFC_FEATURES {
        if !shows(&a, *place, var) {
            wrong.push(format!("RFC feature {var} at {place:?} missing"));
        }
    }
    // Nothing advertised that the table does not know.
    let known = |p: fn(&Place) -> bool| -> HashSet<&str> {
        TABLE
            .iter()
            .filter(|(_, pl, _)| p(pl))
            .map(|(_, _, v)| *v)
            .collect()
    };
    let server_known = known(|p| matches!(p, Place::Server));
    let account_known = known(|p| matches!(p, Place::Account));
    for f in &a.server {
        if !server_known.contains(f.as_str()) {
            wrong.push(format!("server advertises unknown feature {f}"));
        }
    }
    for f in &a.account {
        if !account_known.contains(f.as_str()) {
            wrong.push(format!("account advertises unknown feature {f}"));
        }
    }
    let muc_known = known(|p| matches!(p, Place::Muc));
    // The service's own disco, items and ping (XEP-0030, XEP-0199) are not what this checks.
    let generic = [
        DISCO_INFO,
        "http://jabber.org/protocol/disco#items",
        "urn:xmpp:ping",
    ];
    for f in &a.muc {
        if !muc_known.contains(f.as_str()) && !generic.contains(&f.as_str()) {
            wrong.push(format!("group-chat service advertises unknown feature {f}"));
        }
    }
    let stream_known: HashSet<(String, String)> = TABLE
        .iter()
        .map(|(_, p, v)| (*p, *v))
        .chain(RFC_FEATURES.iter().copied())
        .filter_map(|(p, v)| match p {
            Place::StreamPre(n) | Place::StreamPost(n) => Some((n.to_owned(), v.to_owned())),
            _ => None,
        })
        .collect();
    for f in a.pre.iter().chain(a.post.iter()) {
        // STARTTLS was negotiated before these features.
        if !stream_known.contains(f) {
            wrong.push(format!("unknown stream feature {f:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// README.md's protocol table, rendered from doap.xml.
fn rendered_table() -> String {
    let mut out = String::from("| Specification | Status | Notes |\n|---|---|---|\n");
    for s in doap() {
        out.push_str(&format!(
            "| [{}]({}) | {} | {} |\n",
            s.name, s.url, s.status, s.note
        ));
    }
    out
}

#[test]
fn readme_protocol_table_is_generated_from_doap() {
    const BEGIN: &str = "<!-- doap:begin -->\n";
    const END: &str = "<!-- doap:end -->";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let start = readme.find(BEGIN).expect("README has a doap:begin marker") + BEGIN.len();
    let end = readme.find(END).expect("README has a doap:end marker");
    let want = rendered_table();
    if readme[start..end] != want {
        if std::env::var("KLEIBER_UPDATE_README").as_deref() == Ok("1") {
            let updated = format!("{}{want}{}", &readme[..start], &readme[end..]);
            std::fs::write(path, updated).unwrap();
        } else {
            panic!(
                "README.md's protocol table is out of date with doap.xml; run\n  KLEIBER_UPDATE_README=1 cargo test --test compliance"
            );
        }
    }
}
