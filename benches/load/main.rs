//! XMPP c2s load generator for kleiber (and, for comparison, Prosody and ejabberd).
//!
//! Run with `cargo bench --bench load -- --help`. It is a standalone client: it does not use the
//! kleiber library, only tokio, OpenSSL and the hashing crates (its SCRAM computation is the
//! one the tests use, `tests/common/scram.rs`).
//!
//! Ten modes:
//!
//! * throughput (default): `2 * --pairs` clients log in (STARTTLS or direct TLS, SASL PLAIN or
//!   SCRAM-SHA-1/256, resource binding, initial presence); then client `i` and client
//!   `i + pairs` play ping-pong with chat messages for `--duration` seconds, so every pair has
//!   exactly one message in flight. Reports messages/s, latency percentiles, errors, logins/s
//!   and, with `--server-pid`, server RSS per connection and server CPU seconds per 1000
//!   messages.
//! * federation throughput (`--peer-port P --peer-domain B`): the same ping-pong across two
//!   servers. Clients `0..pairs` log in on the first server (`--host`/`--port`/`--domain`),
//!   clients `pairs..2*pairs` on the second one (`--peer-host` (default `--host`)/`--peer-port`/
//!   `--peer-domain`), so every message goes client → server A → s2s → server B → client (or
//!   back); each client writes to its partner's full JID as bound on the other server.
//!   `--register`/`--register-only` register each user on its own server. `--server-pid` takes
//!   the pids of both servers (CPU and RSS summed; also printed per pid, `*_by_pid`, and the
//!   total RSS after the run, `rss_kib`). `--warmup S` (advisable here: the first messages
//!   wait for the server-to-server links to be set up) lets the pairs ping-pong S seconds
//!   before the measured `--duration` starts. The RESULT line says `mode=federation`.
//! * idle memory (`--idle N`): N clients log in and stay idle; reports server RSS per session.
//! * large-roster login (`--roster-login N`): user `PREFIX-owner` has N contacts
//!   `PREFIX-c0..c{N-1}`, all subscribed both ways (set up through the protocol, RFC 6121
//!   subscribe/subscribed, if not already so), `--roster-online` of them (default N/2) logged in
//!   with initial presence sent. The owner then logs in, gets its roster, sends initial presence;
//!   reports the time from the TCP connect (and from the initial presence) until the owner has an
//!   available presence from every online contact and every online contact has the owner's,
//!   and the server CPU used meanwhile. `--repeat K` measures K logins (medians reported).
//! * offline messages (`--offline N`): `PREFIX-osend` sends N chat messages to `PREFIX-orecv`,
//!   which is offline, as fast as it can (pipelined: writes of up to 64 KiB, or `--batch`
//!   messages each), then pings the server: stored/s = N / (first send until the ping result;
//!   the server may still be storing then: its CPU until it goes quiet is reported too; when
//!   the messages reach the disk is not observable from a client). Then the recipient logs
//!   in and sends initial presence: delivered/s = N / (presence sent until the N-th message),
//!   also timed from the TCP connect. Every message carries a sequence number: each must arrive
//!   exactly once, in order, with an XEP-0203 delay. `--repeat K` rounds, medians reported.
//! * reconnect-and-resume storm (`--resume-storm N`): users `PREFIX0..N-1` log in (bind, initial
//!   presence; `--concurrency` at a time) and enable XEP-0198 stream management with resumption
//!   (`<enable resume='true'/>`, the id of `<enabled/>` kept). `--settle` seconds later all N
//!   TCP connections are cut at once: closed with SO_LINGER 0 (an RST; no `</stream:stream>`,
//!   no TLS close_notify), as when a network drops, but noticed by the server at once. Then
//!   (after `--storm-delay-ms`, default 0) every client reconnects (TCP, STARTTLS or direct
//!   TLS, SASL), `--concurrency` at a time, and sends `<resume previd h/>` as the first element
//!   after the stream restart; `h` counts the stanzas (message, presence, iq) received since
//!   `<enabled/>`, and the server's `h` in `<resumed/>` is checked against the stanzas sent.
//!   The client keeps SCRAM's salted password from the first login (as real clients do), so
//!   the reconnections cost it no PBKDF2. Reports the time from the cut (and from the first
//!   reconnection) until the last `<resumed/>`, resumed and failed sessions (by reason),
//!   per-session resume latency percentiles (connect to `<resumed/>`), and with
//!   `--server-pid` the server CPU from the cut to the last `<resumed/>` (per resumption too)
//!   and its RSS before and after; also the machine's TCP counters over the storm (accept queue
//!   overflows, SYNs sent again: with more connections at once than the server's listen
//!   backlog, the kernel drops SYNs and the clients retry after 1 s, 3 s, 7 s, ...). With
//!   `--storm-message`, before the cut session i sends a chat message to session i+1 and every
//!   recipient resumes with an `h` that leaves it out (as if it had been lost with the
//!   connection): the server must send it again after `<resumed/>`, and it must arrive exactly
//!   once. The clients acknowledge everything before closing.
//! * soak (`--soak N`, N = 10,000 if not given): users `PREFIX0..N-1` log in (bind, initial
//!   presence; `--concurrency` at a time), then for `--duration` seconds (default 1800) they
//!   send `--rate` chat messages per second in all (default 1,000) from random senders to
//!   random other sessions (their full JIDs). Every message carries a sequence number and must
//!   arrive exactly once, at its addressee: lost, duplicated and unexpected (wrong addressee,
//!   unknown) messages are counted, as are error stanzas, stream errors and lost connections;
//!   after the last one is sent, the missing ones are waited for up to `--drain-secs`. With
//!   `--server-pid`, the server's RSS and CPU are sampled every `--sample-secs` (one `SAMPLE`
//!   line each on stdout) and the RSS at the end of `--warmup` (default 300 s) is compared
//!   with the RSS at the end; the slope of a least-squares line through the samples after the
//!   warm-up says, in KiB per minute, whether memory stays flat.
//!
//! * group chat (`--muc N`): N occupants in one room each send a message per second for
//!   `--duration` seconds; reports deliveries/s, the time from a send until the last occupant
//!   has it, the server's CPU per 1,000 deliveries and RSS per occupant, and the join time
//!   into the full room with 20 messages of history (see `muc.rs`).
//!
//! * file upload (`--upload MB`): XEP-0363 slot, PUT and GET of MB MiB, `--repeat` times;
//!   reports MB/s each way and the server's CPU per MB (see `upload.rs`).
//!
//! * external component (`--component HOST:PORT`): the generator is an XEP-0114 component
//!   echoing messages, `--pairs` clients each keep one in flight through it; reports round
//!   trips/s and the server's CPU per 1,000 (see `component.rs`).
//! * file-transfer proxy (`--proxy65 MB`): XEP-0065 transfer of MB MiB through the server's
//!   SOCKS5 proxy, `--repeat` times; reports MB/s and the server's CPU per MB (see
//!   `proxy65.rs`).
//!
//! * message archive (`--mam-write N`, `--mam-fill N`, `--mam-query Q`): XEP-0313 write cost
//!   (server CPU per 1,000 archived messages) and the latency of "the last 50 messages with
//!   one contact" as the archive grows (see `mam.rs` and `benches/mam.sh`).
//!
//! The last line printed is a machine-readable `RESULT key=value ...` summary.
//!
//! Modules: `cli` (arguments), `shared` (state of a run), `xml` (stream scanner), `client`
//! (connect, STARTTLS, SASL, register, bind), `ws` (`--websocket`: RFC 7395 instead of TCP), `link` (connections run by pump tasks), `cpu`
//! (/proc figures), `stats` (percentiles, medians, RESULT formatting), and one per mode:
//! `throughput` (also idle and federation), `roster`, `offline`, `storm`, `soak`, `muc`,
//! `upload`, `component`, `proxy65`, `mam`.

mod cli;
mod client;
mod component;
mod cpu;
mod link;
mod mam;
mod muc;
mod offline;
mod proxy65;
mod roster;
mod shared;
mod soak;
mod stats;
mod storm;
mod throughput;
mod upload;
mod ws;
mod xml;

use clap::Parser;

use cli::Args;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

/// Checks the mode combination and runs the mode the arguments select.
async fn run(args: Args) -> Res<()> {
    shared::START.get_or_init(std::time::Instant::now);
    if args.peer_port.is_some() {
        if args.roster_login.is_some()
            || args.offline.is_some()
            || args.idle.is_some()
            || args.resume_storm.is_some()
            || args.soak.is_some()
        {
            return Err("--peer-port: only with the throughput mode (and --register-only)".into());
        }
        if args.peer_domain.is_none() {
            return Err("--peer-port needs --peer-domain".into());
        }
    }
    if let Some(n) = args.roster_login {
        return roster::roster_login(args, n).await;
    }
    if let Some(n) = args.offline {
        return offline::offline(args, n).await;
    }
    if let Some(n) = args.resume_storm {
        return storm::resume_storm(args, n).await;
    }
    if let Some(n) = args.soak {
        return soak::soak(args, n).await;
    }
    if let Some(n) = args.muc {
        return muc::muc(args, n).await;
    }
    if let Some(mb) = args.upload {
        return upload::upload(args, mb).await;
    }
    if let Some(addr) = args.component.clone() {
        return component::component(args, addr).await;
    }
    if let Some(n) = args.mam_write {
        return mam::mam_write(args, n).await;
    }
    if let Some(n) = args.mam_fill {
        return mam::mam_fill(args, n).await;
    }
    if let Some(n) = args.mam_query {
        return mam::mam_query(args, n).await;
    }
    if let Some(mb) = args.proxy65 {
        return proxy65::proxy65(args, mb).await;
    }
    throughput::run(args).await
}

fn main() {
    let args = Args::parse();
    // A plain `cargo bench` (or `cargo test --all-targets`) runs every bench target with no
    // arguments for us: never generate load then, whatever happens to listen on the port.
    if std::env::args().skip(1).all(|a| a == "--bench") {
        eprintln!("load: no arguments, nothing done; run `cargo bench --bench load -- --help`");
        return;
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.build().expect("tokio runtime");
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("load: {e}");
        std::process::exit(1);
    }
}
