//! Entry points for the fuzz targets (`fuzz/`, `cargo +nightly fuzz run <target>`) and for the
//! regression test that replays their corpora and crash reproducers on stable
//! (`tests/fuzz_regressions.rs`). Each must return without panicking for any input.

use std::sync::OnceLock;

use crate::config::{Config, StaticRoute};
use crate::sasl::{self, ChannelBinding, Mechanism, ScramCredentials};
use crate::xml::{ReaderLimits, StreamEvent, XmlReader};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

/// The stream reader on arbitrary bytes; every element it yields must serialise to XML that
/// parses back to the same element.
pub fn stream(data: &[u8]) {
    let limits = ReaderLimits {
        max_stanza: 64 * 1024,
        max_depth: 32,
    };
    runtime().block_on(async {
        let mut r = XmlReader::new(data, limits);
        for _ in 0..10_000 {
            match r.next().await {
                Ok(StreamEvent::Element(el)) => {
                    let xml = el.to_xml(crate::xmpp::ns::CLIENT);
                    let wrapped = format!("<r xmlns='{}'>{xml}</r>", crate::xmpp::ns::CLIENT);
                    let back = crate::xml::parse_element(&wrapped).unwrap_or_else(|e| {
                        panic!("serialised element does not parse: {e:?}: {xml}")
                    });
                    let inner = back.elements().next().expect("one child");
                    assert_eq!(*inner, el, "round trip changed the element: {xml}");
                }
                Ok(StreamEvent::Header(_)) => {}
                Ok(StreamEvent::End) | Err(_) => break,
            }
        }
    });
}

/// JIDs and the other address parsing: whatever parses must print and parse back the same.
pub fn jid(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    if let Ok(j) = crate::xmpp::jid(&s) {
        let again = crate::xmpp::jid(j.as_str()).expect("a printed JID parses");
        assert_eq!(again, j);
        let _ = j.to_bare();
        let _ = crate::s2s::domain_of(j.as_str());
    }
    let _ = crate::s2s::domain_of(&s);
    let _ = StaticRoute::parse(&s);
    let _ = crate::roster::SubKind::from_type(&s);
}

fn test_credentials(hash: sasl::ScramHash) -> ScramCredentials {
    ScramCredentials::derive(hash, "pencil", b"salt-for-fuzzing", 1)
}

/// SASL: PLAIN and SCRAM client messages (first and final, split at the first 0xff byte)
/// against a server with known credentials.
pub fn sasl(data: &[u8]) {
    let (first, last) = match data.iter().position(|b| *b == 0xff) {
        Some(p) => (&data[..p], &data[p + 1..]),
        None => (data, &[][..]),
    };
    let _ = sasl::parse_plain(first);
    let _ = sasl::decode_payload(&String::from_utf8_lossy(first));
    let cb = ChannelBinding {
        tls_exporter: Some(vec![7; 32]),
        tls_server_end_point: Some(vec![9; 32]),
    };
    for mech in Mechanism::ALL {
        let Ok(cf) = sasl::parse_client_first(mech, first, &cb) else {
            continue;
        };
        let Some(hash) = mech.scram_hash() else {
            continue;
        };
        let (_, pending) = cf.server_first(test_credentials(hash), true);
        let _ = pending.finish(last, &cb);
    }
}

/// The configuration file: any text gives a config or a one-line error naming a key.
pub fn config(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    if let Err(e) = Config::parse(&s) {
        let line = e.to_string();
        assert!(!line.contains('\n'), "multi-line config error: {line}");
    }
}

/// Group chat's parsing of what occupants send (XEP-0045): a `muc#roomconfig` form applied to
/// a configuration, `<history/>` filters, admin items' names; and the split serialisation a
/// room fans out (`Prepared`): the two halves with one more attribute between must be the
/// element with that attribute.
pub fn muc(data: &[u8]) {
    let Ok(el) = crate::xml::parse_element(&String::from_utf8_lossy(data)) else {
        return;
    };
    let cfg = crate::muc::RoomConfig::default();
    if let Ok(c) = crate::muc::form::apply(&cfg, &el, 1000, true) {
        assert!(
            c.max_users >= 1 && c.max_users <= 1000,
            "maxusers out of bounds"
        );
        let (_, values) = crate::xmpp::form::values(&crate::muc::form::config_form(&c, 1000, true));
        assert!(values.contains_key("muc#roomconfig_roomname"));
    }
    let filter = crate::muc::history::Filter::parse(&el);
    let mut h = crate::muc::history::History::new(3);
    h.push(el.clone(), 1);
    let _ = h.select(&filter, 10);
    for a in ["affiliation", "role"] {
        if let Some(v) = el.get_attr(a) {
            let _ = v.parse::<crate::muc::Affiliation>();
            let _ = v.parse::<crate::muc::Role>();
        }
    }
    let mut without = el.clone();
    without.remove_attr("to");
    let (head, tail) = without.to_xml_split(crate::xmpp::ns::CLIENT);
    let mut with = without.clone();
    with.set_attr("to", "a@b/c");
    assert_eq!(
        format!("{head} to='a@b/c'{tail}"),
        with.to_xml(crate::xmpp::ns::CLIENT),
        "split serialisation"
    );
}

/// The web side's framing: the splitter of the session's output gives the same units however
/// the bytes are cut, and every unit converts to a frame; the WebSocket client-frame check and
/// the BOSH request parser take anything.
pub fn framing(data: &[u8]) {
    use crate::transport::framing::{self, Splitter, Unit};
    let whole = {
        let mut out = Vec::new();
        Splitter::new().push(data, &mut out);
        out
    };
    let cut = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    let mut pieces = Vec::new();
    let mut s = Splitter::new();
    s.push(&data[..cut], &mut pieces);
    s.push(&data[cut..], &mut pieces);
    assert_eq!(whole, pieces, "cut at {cut}");
    for unit in &whole {
        match unit {
            Unit::Header(h) => drop(framing::header_to_open(h)),
            Unit::Element(e) => drop(framing::standalone_element(e)),
            Unit::End => {}
        }
    }
    let _ = framing::client_frame(&String::from_utf8_lossy(data));
    let _ = crate::http::bosh::wire::parse_request(data);
}

/// The file-transfer proxy's SOCKS5 handshake (`src/proxy65/socks5.rs`) on arbitrary client
/// bytes, followed by the end of the client's stream: it must end in an error or a
/// destination that is the 40 lower-case hex digits of a pairing hash.
pub fn socks5(data: &[u8]) {
    use tokio::io::AsyncWriteExt;
    let data = &data[..data.len().min(60 * 1024)];
    runtime().block_on(async {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        client.write_all(data).await.expect("fits the pipe");
        client.shutdown().await.expect("shutdown");
        if let Ok(hash) = crate::proxy65::socks5::accept(&mut server).await {
            assert!(
                hash.len() == 40 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                "destination {hash:?}"
            );
        }
    });
}

/// The message archive's parsing of what clients send (XEP-0313 queries with XEP-0059 paging,
/// XEP-0441 preferences) and the query itself on a small archive: a page never holds more
/// than asked, comes in time order, and preferences read back as written; a stanza id
/// stamped is the only one by its owner.
pub fn mam(data: &[u8]) {
    use crate::services::mam;
    use std::sync::OnceLock;
    static ARCHIVE: OnceLock<crate::store::Store> = OnceLock::new();
    let Ok(mut el) = crate::xml::parse_element(&String::from_utf8_lossy(data)) else {
        return;
    };
    let store = ARCHIVE.get_or_init(|| {
        // One small archive per process, in the system's temporary directory.
        let dir = std::env::temp_dir().join(format!("kleiber-fuzz-mam-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = crate::store::Store::open(&dir).expect("store");
        for (i, with) in ["a@x/r", "b@y", "c@z/s", "a@x/q"]
            .iter()
            .cycle()
            .take(40)
            .enumerate()
        {
            let e = crate::store::archive::Entry {
                id: crate::store::archive::id_at(1_000 + i as u64 * 100),
                with: (*with).into(),
                outgoing: i % 2 == 0,
                xml: format!("<message xmlns='jabber:client'><body>{i}</body></message>"),
            };
            store.archive.append("x", "u", &e).expect("append");
        }
        store
    });
    if let Ok(r) = mam::parse_query(&el, 10) {
        assert!(r.query.max <= 10, "page size over the limit");
        if let Ok(page) = store.archive.query("x", "u", &r.query) {
            assert!(page.entries.len() <= r.query.max, "page too long");
            assert!(
                page.entries.windows(2).all(|w| w[0].id < w[1].id),
                "not in time order"
            );
        }
    }
    if let Ok(p) = mam::parse_prefs(&el) {
        assert_eq!(
            mam::parse_prefs(&mam::prefs_element(&p)).ok(),
            Some(p),
            "prefs round trip"
        );
    }
    let _ = mam::archivable(&el);
    mam::stamp(&mut el, "u@x", 7);
    assert_eq!(mam::stamped_id(&el, "u@x"), Some(7));
    let n = el
        .elements()
        .filter(|e| e.name == "stanza-id" && e.ns == mam::SID && e.get_attr("by") == Some("u@x"))
        .count();
    assert_eq!(n, 1, "one stanza id by its owner");
}
