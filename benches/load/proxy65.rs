//! File-transfer proxy (--proxy65 MB): XEP-0065 SOCKS5 bytestreams throughput, `--repeat`
//! rounds.
//!
//! Two users (`PREFIX-s5a`, the initiator, and `PREFIX-s5b`, the target; registered first if
//! need be) log in; the initiator asks the proxy (`--proxy-service`, default `proxy.DOMAIN`)
//! for its streamhost. Each round: the target, then the initiator connect to the streamhost's
//! port on `--host` (SOCKS5, no authentication, `CONNECT` to SHA-1(sid + initiator + target)
//! port 0), the initiator activates the pair, writes MB mebibytes of random bytes in 64 KiB
//! pieces and closes its side, and the target reads them all, checking every byte (a round
//! fails when the connection closes early or nothing arrives for 30 s). The offer to the target (an IQ
//! between the clients) is left out: only the proxy is measured. Reports the median MB/s from
//! the activation request until the last byte arrives and, with `--server-pid`, the server's
//! CPU seconds per MB over the same span.

use std::time::Duration;

use rand::RngCore;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::*;
use crate::shared::*;
use crate::stats::*;
use crate::upload::timed;
use crate::xml::*;
use crate::Res;

const NS: &str = "http://jabber.org/protocol/bytestreams";

/// SOCKS5 no-auth greeting and `CONNECT` to `hash`:0 (the reply must be success).
async fn socks(host: &str, port: u16, hash: &str) -> Res<TcpStream> {
    let mut tcp = TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    tcp.write_all(&[5, 1, 0]).await?;
    let mut method = [0u8; 2];
    tcp.read_exact(&mut method).await?;
    if method != [5, 0] {
        return Err(format!("SOCKS5 method reply {method:?}").into());
    }
    let mut req = vec![5, 1, 0, 3, hash.len() as u8];
    req.extend_from_slice(hash.as_bytes());
    req.extend_from_slice(&[0, 0]);
    tcp.write_all(&req).await?;
    let mut head = [0u8; 5];
    tcp.read_exact(&mut head).await?;
    let rest = if head[3] == 3 {
        head[4] as usize + 2
    } else {
        5
    };
    tcp.read_exact(&mut vec![0u8; rest]).await?;
    if head[1] != 0 {
        return Err(format!("SOCKS5 reply {}", head[1]).into());
    }
    Ok(tcp)
}

/// Nothing arriving for this long fails a round (a proxy that holds bytes back).
const STALL: Duration = Duration::from_secs(30);

/// Write `data` on `tx` and close it, as a client does at the end of a file; read it on `rx`,
/// every byte compared, until it is all there.
async fn transfer(mut tx: TcpStream, mut rx: TcpStream, data: &[u8]) -> Res<()> {
    let send = async move {
        for c in data.chunks(1 << 16) {
            tx.write_all(c).await?;
        }
        tx.shutdown().await?;
        Ok::<_, std::io::Error>(tx)
    };
    let receive = async {
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0;
        while got < data.len() {
            let short = || format!("{got} of {} bytes arrived", data.len());
            let n = match tokio::time::timeout(STALL, rx.read(&mut buf)).await {
                Ok(r) => r?,
                Err(_) => return Err(format!("stalled: {}", short()).into()),
            };
            if n == 0 {
                return Err(format!("closed: {}", short()).into());
            }
            if data.get(got..got + n) != Some(&buf[..n]) {
                return Err(format!("different bytes at {got}").into());
            }
            got += n;
        }
        Ok::<_, crate::BoxError>(())
    };
    let (sent, received) = tokio::join!(send, receive);
    sent?;
    received
}

pub(crate) async fn proxy65(args: crate::cli::Args, mb: usize) -> Res<()> {
    let (sh, _phase) = Shared::new(&args, 2)?;
    let prefix = &args.user_prefix;
    let (mut a, a_jid) = login_as(&sh, &format!("{prefix}-s5a"), "s5", true, false).await?;
    let (mut b, b_jid) = login_as(&sh, &format!("{prefix}-s5b"), "s5", true, false).await?;
    let service = args
        .proxy_service
        .clone()
        .unwrap_or_else(|| format!("proxy.{}", args.domain));
    let r = a
        .iq(
            "sh",
            &format!("<iq type='get' id='sh' to='{service}'><query xmlns='{NS}'/></iq>"),
        )
        .await?;
    let at = r.find("<streamhost").ok_or("no streamhost")?;
    let port: u16 = attr(&r[at..], "port")
        .ok_or("streamhost without port")?
        .parse()?;
    let mut data = vec![0u8; mb << 20];
    rand::thread_rng().fill_bytes(&mut data);
    let (mut rates, mut cpus) = (vec![], vec![]);
    for round in 0..args.repeat.max(1) {
        let sid = format!("b{round}x{}", sh.run_id);
        let hash: String = Sha1::digest(format!("{sid}{a_jid}{b_jid}"))
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect();
        let rx = socks(&args.host, port, &hash).await?;
        let tx = socks(&args.host, port, &hash).await?;
        let activated = async {
            let id = format!("act{round}");
            let r = a
                .iq(
                    &id,
                    &format!(
                        "<iq type='set' id='{id}' to='{service}'><query xmlns='{NS}' sid='{sid}'>\
                         <activate>{b_jid}</activate></query></iq>"
                    ),
                )
                .await?;
            if attr(&r, "type") != Some("result") {
                return Err(format!("activation refused: {}", error_condition(&r)).into());
            }
            transfer(tx, rx, &data).await
        };
        let (secs, cpu) = timed(&args.server_pid, activated).await?;
        rates.push(mb as f64 / secs);
        cpus.extend(cpu.map(|c| c / mb as f64));
        eprintln!("  round {round}: {:.1} MB/s", rates[round]);
    }
    a.close(Duration::from_secs(2)).await;
    b.close(Duration::from_secs(2)).await;
    println!(
        "RESULT server={} mode=proxy65 mb={mb} rounds={} mb_per_s={} cpu_s_per_mb={}",
        args.label,
        rates.len(),
        fmt_opt(median(rates), 1),
        fmt_opt(median(cpus), 4),
    );
    Ok(())
}
