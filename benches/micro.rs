//! Criterion micro-benchmarks of the per-stanza hot path: parsing a stream of messages with
//! the restricted-XML reader, serialising a stanza, the server side of a SCRAM exchange, and
//! the bcrypt check behind SASL PLAIN.
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

criterion_group!(benches, parse, scram, plain);
criterion_main!(benches);
