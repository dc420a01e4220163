//! A raw XEP-0114 component for the tests: plain TCP, the `jabber:component:accept` stream,
//! the SHA-1 handshake, then stanzas in and out.

use std::net::SocketAddr;
use std::time::Duration;

use kleiber::actors::ListenerKind;
use kleiber::xml::{Element, ReaderLimits, StreamEvent, XmlReader};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::TestServer;

const WAIT: Duration = Duration::from_secs(10);

pub const NS_ACCEPT: &str = "jabber:component:accept";

/// A connected component stream.
pub struct Comp {
    pub reader: XmlReader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
    /// The stream id the server gave.
    pub id: String,
}

/// The component port of a test server.
pub fn port_of(s: &TestServer) -> SocketAddr {
    s.server
        .as_ref()
        .unwrap()
        .addr(ListenerKind::Component)
        .expect("a component listener")
}

impl Comp {
    /// Open a stream to `domain` (with `header` if given instead of the usual one) and read
    /// the server's header; `Err` holds the first element when there was no header.
    pub async fn open(addr: SocketAddr, domain: &str) -> Comp {
        let header = format!(
            "<stream:stream xmlns='{NS_ACCEPT}' xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>"
        );
        Self::open_with(addr, &header).await
    }

    pub async fn open_with(addr: SocketAddr, header: &str) -> Comp {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (r, w) = tcp.into_split();
        let mut c = Comp {
            reader: XmlReader::new(r, ReaderLimits::default()),
            writer: w,
            id: String::new(),
        };
        c.send(header).await;
        match c.next().await {
            StreamEvent::Header(h) => {
                assert_eq!(h.default_ns, NS_ACCEPT);
                c.id = h.attrs.get("id").cloned().unwrap_or_default();
            }
            other => panic!("expected the server's header, got {other:?}"),
        }
        c
    }

    /// Open and authenticate; panics unless the server answers `<handshake/>`.
    pub async fn connect(addr: SocketAddr, domain: &str, secret: &str) -> Comp {
        let mut c = Self::open(addr, domain).await;
        c.handshake(secret).await;
        let ok = c.recv().await;
        assert_eq!(ok.name, "handshake", "{}", ok.to_xml(NS_ACCEPT));
        c
    }

    /// Send the handshake for `secret`.
    pub async fn handshake(&mut self, secret: &str) {
        let digest = kleiber::component::digest(&self.id, secret);
        self.send(&format!("<handshake>{digest}</handshake>")).await;
    }

    pub async fn send(&mut self, s: &str) {
        self.writer.write_all(s.as_bytes()).await.unwrap();
    }

    pub async fn next(&mut self) -> StreamEvent {
        tokio::time::timeout(WAIT, self.reader.next())
            .await
            .expect("server answered in time")
            .expect("well-formed stream from server")
    }

    pub async fn recv(&mut self) -> Element {
        match self.next().await {
            StreamEvent::Element(e) => e,
            other => panic!("expected an element, got {other:?}"),
        }
    }

    /// The next stanza named `name`, skipping others (pings, presence).
    pub async fn recv_named(&mut self, name: &str) -> Element {
        loop {
            let e = self.recv().await;
            if e.name == name {
                return e;
            }
        }
    }

    /// Expect `<stream:error>` with `condition`, then the end of the stream.
    pub async fn expect_stream_error(&mut self, condition: &str) {
        let e = self.recv().await;
        assert!(
            e.name == "error"
                && e.get_child(condition, "urn:ietf:params:xml:ns:xmpp-streams")
                    .is_some(),
            "expected stream error {condition}, got {}",
            e.to_xml(NS_ACCEPT)
        );
        match tokio::time::timeout(WAIT, self.reader.next()).await {
            Ok(Ok(StreamEvent::End)) | Ok(Err(_)) => {}
            Ok(Ok(StreamEvent::Element(e))) => {
                panic!("after the stream error: {}", e.to_xml(NS_ACCEPT))
            }
            Ok(Ok(StreamEvent::Header(_))) => panic!("a header after the stream error"),
            Err(_) => panic!("stream not closed after the error"),
        }
    }
}
