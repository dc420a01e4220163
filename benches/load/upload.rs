//! File upload (--upload MB): XEP-0363 throughput, `--repeat` rounds.
//!
//! One user (`PREFIX-up`, registered first if need be) asks the upload service
//! (`--upload-service`, default `upload.DOMAIN`) for a slot for a file of MB mebibytes of
//! random bytes, PUTs it (raw HTTP/1.1 over TLS to `--host` and the URL's port, with the URL's
//! host as SNI and `Host`, and the headers the slot names), then GETs it back and checks every
//! byte. Reports the medians of upload and download MB/s and, with `--server-pid`, the server's
//! CPU seconds per MB each way.

use std::pin::Pin;
use std::time::Instant;

use openssl::ssl::SslVerifyMode;
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use crate::cli::*;
use crate::client::*;
use crate::cpu::*;
use crate::link::Tls;
use crate::shared::*;
use crate::stats::*;
use crate::xml::*;
use crate::Res;

/// A slot: where to PUT (with which headers) and where to GET.
struct Slot {
    put: String,
    headers: Vec<(String, String)>,
    get: String,
}

/// Unescape the few entities a URL in an attribute can carry.
fn unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&apos;", "'")
        .replace("&quot;", "\"")
}

async fn request_slot(x: &mut Tls, service: &str, name: &str, size: usize) -> Res<Slot> {
    let r = x
        .iq(
            name,
            &format!(
                "<iq type='get' id='{name}' to='{service}'><request xmlns='urn:xmpp:http:upload:0' \
                 filename='{name}.bin' size='{size}' content-type='application/octet-stream'/></iq>"
            ),
        )
        .await?;
    if attr(&r, "type") != Some("result") {
        return Err(format!("slot refused: {}", error_condition(&r)).into());
    }
    let put_at = r.find("<put").ok_or("slot without put")?;
    let get_at = r.find("<get").ok_or("slot without get")?;
    let put = unescape(attr(&r[put_at..], "url").ok_or("put without url")?);
    let get = unescape(attr(&r[get_at..], "url").ok_or("get without url")?);
    let mut headers = Vec::new();
    let mut rest = &r[put_at..];
    while let Some(h) = rest.find("<header") {
        rest = &rest[h..];
        let name = attr(rest, "name").unwrap_or("").to_owned();
        let value = child_text(rest, "header").unwrap_or("").to_owned();
        headers.push((name, unescape(&value)));
        rest = &rest[7..];
    }
    Ok(Slot { put, headers, get })
}

/// `https://host[:port]/path` → (host, port, path).
fn split_url(url: &str) -> Res<(String, u16, String)> {
    let rest = url.strip_prefix("https://").ok_or("not an https URL")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p.parse()?),
        None => (authority.to_owned(), 443),
    };
    Ok((host, port, path.to_owned()))
}

async fn https(sh: &Shared, url: &str) -> Res<(SslStream<TcpStream>, String, String)> {
    let (host, port, path) = split_url(url)?;
    let tcp = TcpStream::connect((sh.args.host.as_str(), port)).await?;
    tcp.set_nodelay(true)?;
    let mut cfg = sh.tls.configure()?;
    cfg.set_verify_hostname(false);
    cfg.set_verify(SslVerifyMode::NONE);
    let mut tls = SslStream::new(cfg.into_ssl(&host)?, tcp)?;
    Pin::new(&mut tls).connect().await?;
    Ok((tls, format!("{host}:{port}"), path))
}

/// Read a response to its end (the request said `Connection: close`): status, headers and
/// body length; the body itself is compared with `expect` when given.
async fn response(s: &mut SslStream<TcpStream>, expect: Option<&[u8]>) -> Res<(u16, usize, bool)> {
    let mut buf = Vec::with_capacity(1 << 16);
    let mut chunk = vec![0u8; 1 << 16];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n", 0) {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err("connection closed before the response headers".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status")?;
    let mut len = buf.len() - head_end;
    let mut same = expect.is_none_or(|e| e.starts_with(&buf[head_end..]));
    loop {
        let n = match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(e) = expect {
            same = same && e.get(len..len + n) == Some(&chunk[..n]);
        }
        len += n;
    }
    Ok((status, len, same && expect.is_none_or(|e| e.len() == len)))
}

async fn put(sh: &Shared, slot: &Slot, data: &[u8]) -> Res<()> {
    let (mut s, host, path) = https(sh, &slot.put).await?;
    let mut req = format!(
        "PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\
         Content-Type: application/octet-stream\r\nConnection: close\r\n",
        data.len()
    );
    for (k, v) in &slot.headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    for c in data.chunks(1 << 16) {
        s.write_all(c).await?;
    }
    s.flush().await?;
    let (status, _, _) = response(&mut s, None).await?;
    if !(200..300).contains(&status) {
        return Err(format!("PUT: HTTP {status}").into());
    }
    Ok(())
}

async fn get(sh: &Shared, url: &str, data: &[u8]) -> Res<()> {
    let (mut s, host, path) = https(sh, url).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let (status, len, same) = response(&mut s, Some(data)).await?;
    if status != 200 || !same {
        return Err(format!("GET: HTTP {status}, {len} bytes, identical: {same}").into());
    }
    Ok(())
}

/// Seconds and server CPU seconds of `f`.
pub(crate) async fn timed<F: std::future::Future<Output = Res<()>>>(
    pids: &[u32],
    f: F,
) -> Res<(f64, Option<f64>)> {
    let c0 = server_cpu_ns(pids);
    let t0 = Instant::now();
    f.await?;
    let secs = t0.elapsed().as_secs_f64();
    let cpu = ns_diff_ms(c0, server_cpu_ns(pids)).map(|ms| ms / 1000.0);
    Ok((secs, cpu))
}

pub(crate) async fn upload(args: Args, mb: usize) -> Res<()> {
    let (sh, _phase) = Shared::new(&args, 1)?;
    let user = format!("{}-up", args.user_prefix);
    let (mut x, _jid) = login_as(&sh, &user, "upload", true, false).await?;
    let service = args
        .upload_service
        .clone()
        .unwrap_or_else(|| format!("upload.{}", args.domain));
    let mut data = vec![0u8; mb << 20];
    rand::thread_rng().fill_bytes(&mut data);
    let pids = &args.server_pid;
    let (mut up, mut down, mut up_cpu, mut down_cpu) = (vec![], vec![], vec![], vec![]);
    for round in 0..args.repeat.max(1) {
        let name = format!("slot{round}-{}", sh.run_id);
        let slot = request_slot(&mut x, &service, &name, data.len()).await?;
        let (secs, cpu) = timed(pids, put(&sh, &slot, &data)).await?;
        up.push(mb as f64 / secs);
        up_cpu.extend(cpu.map(|c| c / mb as f64));
        let (secs, cpu) = timed(pids, get(&sh, &slot.get, &data)).await?;
        down.push(mb as f64 / secs);
        down_cpu.extend(cpu.map(|c| c / mb as f64));
        eprintln!(
            "  round {round}: up {:.1} MB/s, down {:.1} MB/s",
            up[round], down[round]
        );
    }
    x.close(std::time::Duration::from_secs(2)).await;
    println!(
        "RESULT server={} mode=upload mb={mb} rounds={} up_mb_per_s={} down_mb_per_s={} \
         up_cpu_s_per_mb={} down_cpu_s_per_mb={}",
        args.label,
        up.len(),
        fmt_opt(median(up), 1),
        fmt_opt(median(down), 1),
        fmt_opt(median(up_cpu), 4),
        fmt_opt(median(down_cpu), 4),
    );
    Ok(())
}
