//! External component throughput (`--component HOST:PORT`): the load generator is itself an
//! XEP-0114 component (`--component-domain`, default `echo.DOMAIN`; `--component-secret`,
//! default `bench-secret`, as the peers in `../shared/peers/` are set up) and echoes every
//! message it gets back to its sender. `--pairs` clients log in and each keeps one chat
//! message in flight to `cN@DOMAIN-of-the-component`: client -> server -> component ->
//! server -> client, so each round trip is two routed stanzas and two crossings of the
//! component link. Reports round trips/s, latency percentiles and, with `--server-pid`, the
//! server's CPU per 1,000 round trips.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cli::*;
use crate::client::*;
use crate::cpu::*;
use crate::link::*;
use crate::shared::*;
use crate::stats::*;
use crate::xml::*;
use crate::Res;

/// Connects as the component and runs the handshake; returns the stream, its read buffer
/// holding whatever came after `<handshake/>`.
async fn connect_component(addr: &str, domain: &str, secret: &str) -> Res<(TcpStream, Vec<u8>)> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    tcp.write_all(
        format!(
            "<stream:stream xmlns='jabber:component:accept' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>"
        )
        .as_bytes(),
    )
    .await?;
    let mut buf = Vec::with_capacity(4096);
    // The server's header, for its id.
    let id = loop {
        if let Some(s) = find(&buf, b"<stream:stream", 0) {
            if let Some(e) = tag_end(&buf, s) {
                let head = String::from_utf8_lossy(&buf[s..e]).into_owned();
                buf.drain(..e);
                break attr(&head, "id").ok_or("no stream id")?.to_owned();
            }
        }
        if tcp.read_buf(&mut buf).await? == 0 {
            return Err("component stream closed during the handshake".into());
        }
    };
    let digest: String = Sha1::digest(format!("{id}{secret}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    tcp.write_all(format!("<handshake>{digest}</handshake>").as_bytes())
        .await?;
    loop {
        if let Some((Event::Element(e), used)) = scan(&buf)? {
            buf.drain(..used);
            if elem_name(&e) != "handshake" {
                return Err(format!("handshake refused: {e}").into());
            }
            return Ok((tcp, buf));
        }
        if tcp.read_buf(&mut buf).await? == 0 {
            return Err("component stream closed during the handshake".into());
        }
    }
}

/// The echo: every message back to its sender, from the JID it was sent to; everything that
/// arrived in one read goes back in one write.
async fn echo(mut tcp: TcpStream, mut buf: Vec<u8>, stop: Arc<AtomicBool>, echoed: Arc<AtomicU64>) {
    let mut out = String::with_capacity(16 * 1024);
    loop {
        while let Ok(Some((ev, used))) = scan(&buf) {
            buf.drain(..used);
            let Event::Element(e) = ev else { continue };
            if elem_name(&e) != "message" || attr(&e, "type") == Some("error") {
                continue;
            }
            let (Some(from), Some(to)) = (attr(&e, "from"), attr(&e, "to")) else {
                continue;
            };
            let body = child_text(&e, "body").unwrap_or_default();
            out.push_str(&format!(
                "<message from='{to}' to='{from}' type='chat'><body>{body}</body></message>"
            ));
            echoed.fetch_add(1, Ordering::Relaxed);
        }
        if !out.is_empty() {
            if tcp.write_all(out.as_bytes()).await.is_err() {
                return;
            }
            out.clear();
        }
        if stop.load(Ordering::Relaxed) {
            let _ = tcp.write_all(b"</stream:stream>").await;
            return;
        }
        buf.reserve(16 * 1024);
        match tokio::time::timeout(Duration::from_millis(500), tcp.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            _ => {}
        }
    }
}

/// One client: sends message k+1 when the echo of message k is back, until stopped; returns
/// the round-trip times (µs) of the measured phase.
async fn pinger(
    mut x: Tls,
    to: String,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> (Vec<u32>, u64) {
    let (mut lat, mut errors) = (Vec::new(), 0);
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        let m = format!("<message to='{to}' type='chat' id='p{k}'><body>ping {k}</body></message>");
        if x.send(&m).await.is_err() {
            return (lat, errors + 1);
        }
        loop {
            match tokio::time::timeout(Duration::from_secs(10), x.element()).await {
                Ok(Ok(e)) if elem_name(&e) == "message" => {
                    if attr(&e, "type") == Some("error") {
                        errors += 1;
                    }
                    break;
                }
                Ok(Ok(e)) if elem_name(&e) == "iq" => {
                    let _ = answer_iq(&mut x, &e).await;
                }
                Ok(Ok(_)) => {}
                _ => return (lat, errors + 1),
            }
        }
        if measuring.load(Ordering::Relaxed) {
            lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
        }
        k += 1;
    }
    x.close(Duration::from_secs(2)).await;
    (lat, errors)
}

/// --component HOST:PORT.
pub(crate) async fn component(args: Args, addr: String) -> Res<()> {
    let n = args.pairs;
    let secs = args.duration.unwrap_or(30);
    let domain = args
        .component_domain
        .clone()
        .unwrap_or_else(|| format!("echo.{}", args.domain));
    let (sh, _phase) = Shared::new(&args, n)?;
    let pids = args.server_pid.clone();
    let ticks = clock_ticks();
    eprintln!(
        "component: {n} clients at {} through {domain} at {addr}, {secs} s",
        args.target()
    );
    let (tcp, buf) = connect_component(&addr, &domain, &args.component_secret).await?;
    let (stop, stop_echo) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let echoed = Arc::new(AtomicU64::new(0));
    let echo_task = tokio::spawn(echo(tcp, buf, stop_echo.clone(), echoed.clone()));
    let users: Vec<String> = (0..n).map(|i| user_name(&args, i)).collect();
    let logins = login_all(&sh, &users, args.register || args.register_only).await;
    if args.register_only {
        let ok = logins.iter().filter(|r| r.is_ok()).count();
        return register_result(&args, n, ok, 0.0, sh.stats.errors.load(Ordering::Relaxed));
    }
    let measuring = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, l) in logins.into_iter().enumerate() {
        let (x, _) = l.map_err(|e| format!("login failed: {e}"))?;
        let to = format!("c{i}@{domain}");
        tasks.push(tokio::spawn(pinger(x, to, measuring.clone(), stop.clone())));
    }
    tokio::time::sleep(Duration::from_secs(args.settle.max(2))).await;
    let e0 = echoed.load(Ordering::Relaxed);
    let mark = CpuMark::now(&pids);
    measuring.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    measuring.store(false, Ordering::SeqCst);
    let used = CpuMark::now(&pids).since(&mark, ticks);
    let rounds = echoed.load(Ordering::Relaxed) - e0;
    stop.store(true, Ordering::SeqCst);
    let (mut lat, mut errors) = (Vec::new(), 0);
    for t in tasks {
        if let Ok(Ok((l, e))) = tokio::time::timeout(Duration::from_secs(15), t).await {
            lat.extend(l);
            errors += e;
        }
    }
    // The echo stops last: every client's last message comes back.
    stop_echo.store(true, Ordering::SeqCst);
    let _ = tokio::time::timeout(Duration::from_secs(2), echo_task).await;
    lat.sort_unstable();
    let per_1000 = used.server_s.map(|s| s * 1000.0 / rounds.max(1) as f64);
    println!(
        "RESULT server={} mode=component clients={n} duration_s={secs} round_trips={rounds} \
         round_trips_per_s={:.0} p50_ms={} p99_ms={} server_cpu_s={} cpu_s_per_1000_round_trips={} \
         gen_cpu_pct={} errors={}",
        args.label,
        rounds as f64 / used.wall.max(0.001),
        fmt_opt(lat.first().map(|_| percentile(&lat, 0.5)), 2),
        fmt_opt(lat.first().map(|_| percentile(&lat, 0.99)), 2),
        fmt_opt(used.server_s, 2),
        fmt_opt(per_1000, 4),
        fmt_opt(used.pct(used.gen_s), 0),
        errors + sh.stats.errors.load(Ordering::Relaxed),
    );
    Ok(())
}
