//! Criterion micro-benchmarks of the per-stanza hot path: parsing a stream of messages with
//! the restricted-XML reader, serialising a stanza, the server side of a SCRAM exchange, and
//! the bcrypt check behind SASL PLAIN; archiving a message and reading the last 50 messages
//! with one contact from archives of 10^4 and 10^6 messages (XEP-0313).
//! Run with `cargo bench --bench micro`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kleiber::sasl::{parse_client_first, ChannelBinding, Mechanism, ScramCredentials, ScramHash};
use kleiber::xml::{ReaderLimits, StreamEvent, XmlReader};

const MSG: &str = "<message to='juliet@example.org/balcony' type='chat' id='a1b2c3'>\
<body>Wherefore art thou, Romeo? Deny thy father and refuse thy name.</body>\
<active xmlns='http://jabber.org/protocol/chatstates'/></message>";

fn stream_of(n: usize) -> Vec<u8> {
    let mut s = String::from("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.org' version='1.0'>");
    for _ in 0..n {
        s.push_str(MSG);
    }
    s.into_bytes()
}

fn parse(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let data = stream_of(1000);
    let mut g = c.benchmark_group("xml");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("parse 1000 messages", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut r = XmlReader::new(&data[..], ReaderLimits::default());
                let mut n = 0;
                loop {
                    match r.next().await {
                        Ok(StreamEvent::Element(_)) => n += 1,
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                assert_eq!(n, 1000);
            })
        })
    });
    let el = rt.block_on(async {
        let data = stream_of(1);
        let mut r = XmlReader::new(&data[..], ReaderLimits::default());
        r.next().await.unwrap();
        match r.next().await.unwrap() {
            StreamEvent::Element(e) => e,
            other => panic!("{other:?}"),
        }
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("serialise a message", |b| {
        b.iter(|| el.to_xml("jabber:client"))
    });
    g.finish();
}

fn scram(c: &mut Criterion) {
    let creds = ScramCredentials::derive(ScramHash::Sha256, "pencil", b"0123456789abcdef", 4096);
    let cb = ChannelBinding::default();
    c.bench_function("scram-sha-256 server first + final (wrong proof)", |b| {
        b.iter(|| {
            let first = parse_client_first(
                Mechanism::ScramSha256,
                b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                &cb,
            )
            .unwrap();
            let (sf, pending) = first.server_first(creds.clone(), true);
            let nonce = &sf[2..sf.find(',').unwrap()];
            let fin = format!("c=biws,r={nonce},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
            assert!(pending.finish(fin.as_bytes(), &cb).is_err());
        })
    });
}

fn plain(c: &mut Criterion) {
    // What a SASL PLAIN login costs the blocking pool at the default bcrypt cost.
    let hash = bcrypt::non_truncating_hash("correct horse", 10).unwrap();
    let mut g = c.benchmark_group("bcrypt");
    g.sample_size(10);
    g.bench_function("verify, cost 10 (default)", |b| {
        b.iter(|| assert!(bcrypt::non_truncating_verify("correct horse", &hash).unwrap()))
    });
    g.finish();
}

/// An archive of `n` messages of `alice@localhost` with 100 contacts, in a fresh store.
fn filled_archive(n: u64) -> (tempfile::TempDir, kleiber::store::Store) {
    use kleiber::store::archive::Entry;
    let dir = tempfile::tempdir().unwrap();
    let store = kleiber::store::Store::open(dir.path()).unwrap();
    for i in 0..n {
        let e = Entry {
            id: store.archive.next_id(),
            with: format!("contact{}@example.org/phone", i % 100),
            outgoing: i % 2 == 0,
            xml: MSG.to_owned(),
        };
        store.archive.append("localhost", "alice", &e).unwrap();
    }
    (dir, store)
}

fn archive(c: &mut Criterion) {
    // XEP-0313: the cost of archiving one message, and "the last 50 messages with one
    // contact" with 10^4 and 10^6 messages in the archive (the per-contact index makes it
    // the same).
    use kleiber::store::archive::{Entry, Query};
    let mut g = c.benchmark_group("archive");
    let (_d, store) = filled_archive(0);
    g.bench_function("append one message", |b| {
        b.iter(|| {
            let e = Entry {
                id: store.archive.next_id(),
                with: "bob@example.org/phone".into(),
                outgoing: false,
                xml: MSG.to_owned(),
            };
            store.archive.append("localhost", "alice", &e).unwrap();
        })
    });
    for n in [10_000u64, 1_000_000] {
        let (_d, store) = filled_archive(n);
        let q = Query {
            with: Some("contact42@example.org".into()),
            until_id: u64::MAX,
            last_page: true,
            max: 50,
            ..Default::default()
        };
        g.bench_function(format!("last 50 with one contact, {n} archived"), |b| {
            b.iter(|| {
                let p = store.archive.query("localhost", "alice", &q).unwrap();
                assert_eq!(p.entries.len(), 50);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, parse, scram, plain, archive);
criterion_main!(benches);
