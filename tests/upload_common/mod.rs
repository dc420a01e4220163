//! Helpers of the file-upload tests (XEP-0363): asking for slots over XMPP, and a minimal
//! HTTP/1.1 client over TLS (certificate not checked) for the web side's `PUT`, `GET`, `HEAD`
//! and `OPTIONS`.
#![allow(dead_code)]

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{read_until_closed, tls_connect, Client, Tls};
use kleiber::xml::Element;

pub const NS: &str = "urn:xmpp:http:upload:0";
pub const SERVICE: &str = "upload.localhost";

/// Send the IQ `xml` (with id `id`) and wait for its answer.
pub async fn iq(c: &mut Client, xml: &str, id: &str) -> Element {
    c.send(xml).await;
    loop {
        let e = c.recv().await;
        if e.name == "iq" && e.get_attr("id") == Some(id) {
            return e;
        }
    }
}

/// Ask for a slot; `attrs` are the request's attributes as XML (`filename='a' size='1'`).
pub async fn request(c: &mut Client, attrs: &str) -> Element {
    let id = format!("slot{}", rand_id());
    iq(
        c,
        &format!("<iq type='get' to='{SERVICE}' id='{id}'><request xmlns='{NS}' {attrs}/></iq>"),
        &id,
    )
    .await
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A granted slot: the URLs' paths and the `PUT`'s headers.
#[derive(Debug, Clone)]
pub struct SlotUrls {
    pub put_url: String,
    pub get_url: String,
    pub put_path: String,
    pub get_path: String,
    pub headers: Vec<(String, String)>,
}

/// The slot of a result; panics on an error.
pub fn slot_of(answer: &Element) -> SlotUrls {
    let slot = answer
        .get_child("slot", NS)
        .unwrap_or_else(|| panic!("no slot: {}", answer.to_xml("jabber:client")));
    let put = slot.get_child("put", NS).unwrap();
    let get = slot.get_child("get", NS).unwrap();
    let put_url = put.get_attr("url").unwrap().to_owned();
    let get_url = get.get_attr("url").unwrap().to_owned();
    let headers = put
        .elements()
        .filter(|e| e.name == "header")
        .map(|h| (h.get_attr("name").unwrap().to_owned(), h.text_content()))
        .collect();
    SlotUrls {
        put_path: path_of(&put_url),
        get_path: path_of(&get_url),
        put_url,
        get_url,
        headers,
    }
}

/// The path of a URL (`https://host:port/upload/...` -> `/upload/...`).
pub fn path_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/".into(), |i| rest[i..].to_owned())
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Connect to the web side over TLS.
pub async fn connect(addr: SocketAddr) -> Tls {
    tls_connect(TcpStream::connect(addr).await.unwrap(), false).await
}

/// The request head (`Connection: close`).
pub fn head(method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut h = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (n, v) in headers {
        h.push_str(&format!("{n}: {v}\r\n"));
    }
    h.push_str("\r\n");
    h
}

/// One request with a body; the whole response.
pub async fn request_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut tls = connect(addr).await;
    tls.write_all(head(method, path, headers).as_bytes())
        .await
        .unwrap();
    // The server may answer (and close) before it read a body it refuses.
    let _ = tls.write_all(body).await;
    let _ = tls.flush().await;
    read_response(&mut tls, method == "HEAD").await
}

/// Read a whole response (to the close).
pub async fn read_response(tls: &mut Tls, head_only: bool) -> Response {
    let (raw, _) = read_until_closed(tls).await;
    parse(&raw, head_only)
}

fn parse(raw: &[u8], head_only: bool) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if head_only {
        rest.to_vec()
    } else if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[i + 2 + n + 2..];
    }
    out
}

/// A `PUT`'s headers: the slot's own, `Content-Length` and `Content-Type`.
fn put_headers(slot: &SlotUrls, content_type: &str, len: usize) -> Vec<(String, String)> {
    let mut headers = slot.headers.clone();
    headers.push(("Content-Length".into(), len.to_string()));
    headers.push(("Content-Type".into(), content_type.into()));
    headers
}

fn as_pairs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

/// `PUT` `body` to the slot with its headers, `Content-Length` and `content_type`.
pub async fn put(addr: SocketAddr, slot: &SlotUrls, content_type: &str, body: &[u8]) -> Response {
    let headers = put_headers(slot, content_type, body.len());
    request_http(addr, "PUT", &slot.put_path, &as_pairs(&headers), body).await
}

/// `GET` (or `HEAD`) `path` with extra headers.
pub async fn get(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    request_http(addr, method, path, headers, b"").await
}

/// Read a bit of whatever the server sent so far (for a request left open).
pub async fn read_some(tls: &mut Tls) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(crate::common::WAIT, tls.read(&mut buf))
        .await
        .map_or(0, |r| r.unwrap_or(0));
    buf.truncate(n);
    buf
}

/// Open a `PUT` to the slot with its headers, announcing `len` bytes of `content_type`; the
/// caller sends the body (or not) on the connection returned.
pub async fn start_put(addr: SocketAddr, slot: &SlotUrls, content_type: &str, len: usize) -> Tls {
    let mut tls = connect(addr).await;
    let headers = put_headers(slot, content_type, len);
    tls.write_all(head("PUT", &slot.put_path, &as_pairs(&headers)).as_bytes())
        .await
        .unwrap();
    tls
}
