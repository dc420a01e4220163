//! A raw XEP-0124/0206 BOSH client for the tests: HTTPS POSTs of `<body/>`s to `/http-bind`,
//! one TLS connection per request.

use std::net::SocketAddr;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{tls_connect, WAIT};
use kleiber::xml::{parse_element, Element};

pub const HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
/// Hang guard for one HTTP request (longer than the `wait` the tests ask for).
pub const REQUEST_GUARD: Duration = Duration::from_secs(60);

/// One HTTP response.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn element(&self) -> Element {
        parse_element(&self.body).unwrap_or_else(|e| panic!("{e:?}: {}", self.body))
    }
}

/// One HTTP/1.1 request over its own TLS connection.
pub async fn http(addr: SocketAddr, method: &str, body: &[u8]) -> Response {
    let request = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut tls = tls_connect(tcp, false).await;
        let head = format!(
            "{method} /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        // A refused oversized body may close the connection before all of it is sent.
        let _ = tls.write_all(body).await;
        let _ = tls.flush().await;
        read_response(&mut tls).await
    };
    tokio::time::timeout(REQUEST_GUARD, request)
        .await
        .expect("HTTP response in time")
}

pub async fn read_response(tls: &mut super::Tls) -> Response {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = tls.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before the response headers");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = tls.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed in the body");
        body.extend_from_slice(&chunk[..n]);
    }
    Response {
        status,
        headers,
        body: String::from_utf8(body).unwrap(),
    }
}

pub async fn post(addr: SocketAddr, body: &str) -> Response {
    http(addr, "POST", body.as_bytes()).await
}

pub fn creation(rid: u64, to: &str) -> String {
    format!("<body rid='{rid}' to='{to}' wait='5' hold='1' ver='1.6' xml:lang='en' xmpp:version='1.0' xmlns='{HTTPBIND}' xmlns:xmpp='urn:xmpp:xbosh'/>")
}

/// The `type='terminate'` condition of a response body, asserting it terminates.
pub fn terminated(r: &Response) -> Option<String> {
    let e = r.element();
    assert_eq!(e.get_attr("type"), Some("terminate"), "{}", r.body);
    e.get_attr("condition").map(str::to_owned)
}

/// A BOSH session as a client sees it.
pub struct Bosh {
    pub addr: SocketAddr,
    pub sid: String,
    pub rid: u64,
    /// Elements received and not yet looked at.
    pub inbox: Vec<Element>,
    /// The last response's body.
    pub last: String,
}

impl Bosh {
    /// Create a session; returns it and the creation response.
    pub async fn create(addr: SocketAddr) -> (Bosh, Element) {
        let r = post(addr, &creation(1000, "localhost")).await;
        assert_eq!(r.status, 200);
        let e = r.element();
        let sid = e.get_attr("sid").expect(&r.body).to_owned();
        let bosh = Bosh {
            addr,
            sid,
            rid: 1000,
            inbox: Vec::new(),
            last: r.body.clone(),
        };
        (bosh, e)
    }

    /// The next request's body, with `attrs` and `payload`.
    pub fn next_body(&mut self, attrs: &str, payload: &str) -> (u64, String) {
        self.rid += 1;
        let body = format!(
            "<body rid='{}' sid='{}'{attrs} xmlns='{HTTPBIND}' xmlns:xmpp='urn:xmpp:xbosh'>{payload}</body>",
            self.rid, self.sid
        );
        (self.rid, body)
    }

    /// Send a request; its response's elements go to the inbox.
    pub async fn send_with(&mut self, attrs: &str, payload: &str) -> Response {
        let (_, body) = self.next_body(attrs, payload);
        let r = post(self.addr, &body).await;
        assert_eq!(r.status, 200, "{}", r.body);
        self.inbox.extend(r.element().elements().cloned());
        self.last = r.body.clone();
        r
    }

    pub async fn send(&mut self, payload: &str) -> Response {
        self.send_with("", payload).await
    }

    /// Poll until an element `name` arrives; take it from the inbox.
    pub async fn expect(&mut self, name: &str) -> Element {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(i) = self.inbox.iter().position(|e| e.name == name) {
                return self.inbox.remove(i);
            }
            assert!(tokio::time::Instant::now() < deadline, "no <{name}/> came");
            let r = self.send("").await;
            assert_ne!(
                r.element().get_attr("type"),
                Some("terminate"),
                "{}",
                r.body
            );
        }
    }

    /// Log in as `user` with PLAIN, restart, bind `resource`.
    pub async fn login(addr: SocketAddr, user: &str, resource: &str) -> Bosh {
        let (mut b, created) = Bosh::create(addr).await;
        assert!(created
            .get_child("features", "http://etherx.jabber.org/streams")
            .is_some());
        let auth = B64.encode(format!("\0{user}\0pw"));
        b.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{auth}</auth>"
        ))
        .await;
        b.expect("success").await;
        b.send_with(" xmpp:restart='true'", "").await;
        let features = b.expect("features").await;
        assert!(features
            .get_child("bind", "urn:ietf:params:xml:ns:xmpp-bind")
            .is_some());
        b.send(&format!("<iq type='set' id='bind1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>")).await;
        let bound = b.expect("iq").await;
        assert_eq!(bound.get_attr("type"), Some("result"));
        b
    }
}
