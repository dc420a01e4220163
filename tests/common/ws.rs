//! A raw RFC 7395 client for the tests: WebSocket (tokio-tungstenite) over TLS to the web
//! listener, one XML element per text frame.

use std::net::SocketAddr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{tls_connect, TestServer, Tls, WAIT};
use kleiber::actors::ListenerKind;
use kleiber::xml::{parse_element, Element};

pub const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

impl TestServer {
    /// The HTTPS listener of the web side.
    pub fn https(&self) -> SocketAddr {
        self.server
            .as_ref()
            .unwrap()
            .addr(ListenerKind::Https)
            .expect("an HTTPS listener")
    }
}

/// A WebSocket client of `/xmpp-websocket`.
pub struct Ws {
    pub ws: WebSocketStream<Tls>,
    pub jid: String,
}

/// The `<open/>` frame for `localhost`.
pub fn open_frame() -> String {
    format!("<open xmlns='{FRAMING}' to='localhost' version='1.0'/>")
}

impl Ws {
    /// Connect, asking for `protocol` (normally `Some("xmpp")`); `Err(status)` when the
    /// upgrade is refused.
    pub async fn try_connect(addr: SocketAddr, protocol: Option<&str>) -> Result<Ws, u16> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let tls = tls_connect(tcp, false).await;
        let mut req = format!("wss://localhost:{}/xmpp-websocket", addr.port())
            .into_client_request()
            .unwrap();
        if let Some(p) = protocol {
            req.headers_mut()
                .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
        }
        match tokio_tungstenite::client_async(req, tls).await {
            Ok((ws, resp)) => {
                assert_eq!(
                    resp.headers()
                        .get("sec-websocket-protocol")
                        .map(|v| v.to_str().unwrap()),
                    Some("xmpp")
                );
                Ok(Ws {
                    ws,
                    jid: String::new(),
                })
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
            Err(e) => panic!("websocket: {e}"),
        }
    }

    pub async fn connect(addr: SocketAddr) -> Ws {
        Ws::try_connect(addr, Some("xmpp")).await.expect("upgrade")
    }

    pub async fn send(&mut self, frame: &str) {
        self.ws.send(Message::text(frame)).await.unwrap();
    }

    /// The next text frame; `None` when the WebSocket closed.
    pub async fn next_frame(&mut self) -> Option<String> {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time")?;
            match m {
                Ok(Message::Text(t)) => return Some(t.to_string()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// The next frame, which must come, parsed on its own (so it must declare its
    /// namespaces).
    pub async fn recv(&mut self) -> Element {
        let f = self.next_frame().await.expect("a frame, not the close");
        parse_standalone(&f)
    }

    /// Send `<open/>` and read the `<open/>` and the features that answer it.
    pub async fn open(&mut self) -> Element {
        self.send(&open_frame()).await;
        let open = self.recv().await;
        assert!(open.is("open", FRAMING), "{}", open.to_xml(FRAMING));
        let features = self.recv().await;
        assert!(features.is("features", "http://etherx.jabber.org/streams"));
        features
    }

    /// Open, log in with PLAIN, restart and bind `resource`.
    pub async fn login(addr: SocketAddr, user: &str, pw: &str, resource: &str) -> Ws {
        let mut ws = Ws::connect(addr).await;
        ws.open().await;
        ws.auth_plain(user, pw).await.expect("login");
        ws.open().await;
        ws.send(&format!(
            "<iq xmlns='jabber:client' type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"
        ))
        .await;
        let r = ws.recv().await;
        assert_eq!(r.get_attr("type"), Some("result"), "{}", r.to_xml(""));
        ws.jid = format!("{user}@localhost/{resource}");
        ws
    }

    /// SASL PLAIN: `Err(condition)` on failure.
    pub async fn auth_plain(&mut self, user: &str, pw: &str) -> Result<(), String> {
        let msg = B64.encode(format!("\0{user}\0{pw}"));
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{msg}</auth>"
        ))
        .await;
        let r = self.recv().await;
        match r.name.as_str() {
            "success" => Ok(()),
            _ => Err(r
                .elements()
                .next()
                .map(|e| e.name.clone())
                .unwrap_or_default()),
        }
    }
}

/// Parse a frame as a document of its own: it must carry every namespace it uses.
pub fn parse_standalone(frame: &str) -> Element {
    // parse_element declares jabber:client around the element; the empty wrapper undoes that
    // so that a frame without its own xmlns is caught.
    let wrapped = format!("<w xmlns=''>{frame}</w>");
    let w = parse_element(&wrapped).unwrap_or_else(|e| panic!("frame {frame}: {e:?}"));
    let first = w.elements().next().cloned();
    first.expect("one element")
}
