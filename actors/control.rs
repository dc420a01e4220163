//! The control socket: operator commands while the server runs.
//!
//! sled lets one process open a data directory, so the running daemon serves `kleiber user`,
//! `registration`, `status`, `errors` and `backup` itself, over a Unix socket in the data
//! directory (`control.sock`, mode 0600, and only peers running as the server's user or root
//! are served). One request per connection:
//! a JSON array of words; the answer is the output, then a last line `OK` or `ERR <reason>`.

use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::directory::RouterHandle;
use super::messages::{SessionCount, SessionsPerHost};
use super::router::Router;
use crate::credentials;
use crate::services::register;
use crate::shared::{blocking, Shared};
use crate::store;
use crate::xmpp::BareJid;

/// The socket's path for a data directory.
pub fn socket_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("control.sock")
}

/// Listen on the control socket (on the current arbiter).
pub fn start(
    shared: Arc<Shared>,
    router: Addr<Router>,
    handle: RouterHandle,
    s2s: Option<Addr<super::s2s::S2s>>,
) -> std::io::Result<()> {
    let path = socket_path(&shared.config.data_dir);
    // We hold the database lock, so a socket file left here is stale.
    let _ = std::fs::remove_file(&path);
    // Created 0600 by the umask `kleiber serve` sets at start (no bind-then-chmod window);
    // `serve` checks each peer's uid as well.
    let listener = UnixListener::bind(&path)?;
    actix_rt::spawn(async move {
        let mut shutdown = shared.shutdown_signal();
        loop {
            let conn = tokio::select! {
                c = listener.accept() => c,
                _ = shutdown.wait_for(|d| *d) => break,
            };
            if let Ok((stream, _)) = conn {
                actix_rt::spawn(serve(
                    stream,
                    shared.clone(),
                    router.clone(),
                    handle.clone(),
                    s2s.clone(),
                ));
            }
        }
        let _ = std::fs::remove_file(&path);
    });
    Ok(())
}

async fn serve(
    stream: UnixStream,
    shared: Arc<Shared>,
    router: Addr<Router>,
    handle: RouterHandle,
    s2s: Option<Addr<super::s2s::S2s>>,
) {
    let uid = stream.peer_cred().map(|c| c.uid()).ok();
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    let mut r = BufReader::new(r);
    if r.read_line(&mut line).await.is_err() {
        return;
    }
    if !peer_allowed(uid) {
        log::warn!("control socket: refused a peer running as another user");
        let _ = w.write_all(b"ERR permission denied\n").await;
        return;
    }
    let answer = match serde_json::from_str::<Vec<String>>(&line) {
        Ok(args) => command(&shared, &router, &handle, s2s.as_ref(), &args).await,
        Err(_) => Err("malformed request".to_owned()),
    };
    let out = match answer {
        Ok(text) => format!(
            "{text}{}OK\n",
            if text.is_empty() || text.ends_with('\n') {
                ""
            } else {
                "\n"
            }
        ),
        Err(e) => format!("ERR {e}\n"),
    };
    let _ = w.write_all(out.as_bytes()).await;
}

/// Operator commands come from the server's own user or root only (the socket's mode says
/// so too; this holds even if the mode was widened).
fn peer_allowed(uid: Option<u32>) -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    let own = unsafe { libc::geteuid() };
    uid.is_some_and(|u| u == own || u == 0)
}

fn split_jid(shared: &Shared, jid: &str) -> Result<(String, String), String> {
    let (user, host) = jid
        .split_once('@')
        .ok_or_else(|| format!("{jid}: expected user@host"))?;
    if !shared.is_account_host(host) {
        return Err(format!("{host}: not a served host"));
    }
    let user =
        register::normalize_username(user).map_err(|_| format!("{user}: invalid user name"))?;
    Ok((user, host.to_owned()))
}

async fn command(
    shared: &Arc<Shared>,
    router: &Addr<Router>,
    handle: &RouterHandle,
    s2s: Option<&Addr<super::s2s::S2s>>,
    args: &[String],
) -> Result<String, String> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let st = |e: store::StoreError| e.to_string();
    match words.as_slice() {
        ["status"] => Ok(status(shared, router, s2s).await),
        ["registration", "status"] => Ok(if shared.registration_open() {
            "open"
        } else {
            "closed"
        }
        .into()),
        ["registration", which @ ("open" | "close")] => set_registration(shared, *which == "open"),
        ["user", action @ ("add" | "passwd"), jid, password] => {
            set_user_password(shared, jid, password, *action == "add").await
        }
        ["user", "del", jid] => delete_user(shared, handle, jid).await,
        ["user", "list", rest @ ..] => {
            let hosts: Vec<String> = match rest {
                [h] if shared.is_account_host(h) => vec![(*h).to_owned()],
                [h] => return Err(format!("{h}: not a served host")),
                _ => shared.config.hosts.keys().cloned().collect(),
            };
            let mut out = String::new();
            for h in hosts {
                for u in shared.store.accounts.list(&h).map_err(st)? {
                    out.push_str(&format!("{u}@{h}\n"));
                }
            }
            Ok(out)
        }
        ["errors", days] => {
            let days: u64 = days
                .parse()
                .map_err(|_| "days must be a number".to_owned())?;
            Ok(crate::store::delivery_errors::format_since(&shared.store, days).map_err(st)?)
        }
        ["backup", path] => {
            let s = shared.clone();
            let p = PathBuf::from(path);
            blocking(move || s.store.snapshot(&p)).await.map_err(st)?;
            Ok(format!("snapshot written to {path}"))
        }
        _ => Err(format!("unknown command: {}", words.join(" "))),
    }
}

/// `status`: version, uptime, hosts, sessions, connections, accounts, queued offline
/// messages, registration, federation and the external components (the operator's own
/// gateways, so named with their domains).
async fn status(
    shared: &Arc<Shared>,
    router: &Addr<Router>,
    s2s: Option<&Addr<super::s2s::S2s>>,
) -> String {
    let sessions = router.send(SessionCount).await.unwrap_or(0);
    let per_host: Vec<String> = router
        .send(SessionsPerHost)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(h, n)| format!("{h} {n}"))
        .collect();
    let up = shared.started.elapsed().as_secs();
    let federation = federation_status(s2s).await;
    let components: Vec<String> = shared
        .config
        .components
        .iter()
        .map(|c| {
            let up = shared.components.is_connected(&c.domain);
            format!("{} {}", c.domain, if up { "connected" } else { "away" })
        })
        .collect();
    let components = if components.is_empty() {
        "none".to_owned()
    } else {
        components.join(", ")
    };
    format!(
        "kleiber {}\nuptime: {}d {}h {}m\nhosts: {}\nsessions: {sessions} ({})\nconnections: {}\naccounts: {}\noffline messages queued: {}\nregistration: {}\nfederation: {federation}\ncomponents: {components}",
        env!("CARGO_PKG_VERSION"),
        up / 86_400,
        up % 86_400 / 3600,
        up % 3600 / 60,
        shared.config.hosts.keys().cloned().collect::<Vec<_>>().join(", "),
        per_host.join(", "),
        shared.connection_count(),
        shared.store.accounts.count(),
        shared.store.offline.total(),
        registration_status(shared)
    )
}

/// The registration line of `status`: open or closed, and whether the hourly cap on all
/// addresses (`limits.registrations_per_hour`) refuses newcomers now.
fn registration_status(shared: &Shared) -> String {
    if !shared.registration_open() {
        return "closed".to_owned();
    }
    let cap = shared.config.limits.registrations_per_hour;
    match shared.limiter.registration_cap_reached(cap) {
        Some(wait) => format!(
            "open, but the hourly cap (limits.registrations_per_hour = {cap}) is reached: newcomers are refused for {} more minutes",
            wait.as_secs().div_ceil(60)
        ),
        None => "open".to_owned(),
    }
}

/// The federation line of `status`: `off`, or the server-to-server links.
async fn federation_status(s2s: Option<&Addr<super::s2s::S2s>>) -> String {
    match s2s {
        None => "off".to_owned(),
        Some(m) => {
            let links = m.send(super::messages::S2sLinks).await.unwrap_or_default();
            let list: Vec<String> = links
                .iter()
                .map(|l| {
                    let arrow = if l.outgoing { "->" } else { "<-" };
                    format!("{} {arrow} {} ({})", l.local, l.remote, l.method)
                })
                .collect();
            format!(
                "{} links{}{}",
                links.len(),
                if list.is_empty() { "" } else { ": " },
                list.join(", ")
            )
        }
    }
}

/// `registration open|close`: switch in-band registration, and keep that over restarts.
fn set_registration(shared: &Shared, open: bool) -> Result<String, String> {
    shared.set_registration_open(open);
    shared
        .store
        .set_registration_override(open, shared.config.registration.open)
        .map_err(|e| e.to_string())?;
    log::info!(
        "registration {} by the operator",
        if open { "opened" } else { "closed" }
    );
    Ok(format!(
        "registration {}",
        if open { "open" } else { "closed" }
    ))
}

/// `user add|passwd JID PASSWORD`: create the account (`create`) or change its password.
async fn set_user_password(
    shared: &Arc<Shared>,
    jid: &str,
    password: &str,
    create: bool,
) -> Result<String, String> {
    let (user, host) = split_jid(shared, jid)?;
    if set_password(shared, &host, &user, password, create).await? {
        let done = if create {
            "created"
        } else {
            "password changed for"
        };
        log::info!("operator: account {done}");
        log::debug!("operator: {done} {user}@{host}");
        Ok(format!("{done} {user}@{host}"))
    } else if create {
        Err(format!("{user}@{host} already exists"))
    } else {
        Err(format!("{user}@{host} does not exist"))
    }
}

/// `user del JID`: delete the account with everything stored for it.
async fn delete_user(
    shared: &Arc<Shared>,
    handle: &RouterHandle,
    jid: &str,
) -> Result<String, String> {
    let st = |e: store::StoreError| e.to_string();
    let (user, host) = split_jid(shared, jid)?;
    if !shared.store.accounts.exists(&host, &user).map_err(st)? {
        return Err(format!("{user}@{host} does not exist"));
    }
    let bare = BareJid::new(&format!("{user}@{host}")).map_err(|e| e.to_string())?;
    let live = super::account::Live::from(handle);
    super::account::delete(&shared.store, Some(&live), vec![bare])
        .await
        .map_err(st)?;
    log::info!("operator: account deleted");
    log::debug!("operator: deleted {user}@{host}");
    Ok(format!("deleted {user}@{host}"))
}

/// Create the account with `password` (`create`), or change its password; `Ok(false)` when
/// it already exists (create) or does not exist (change). Hashing on the blocking pool.
async fn set_password(
    shared: &Arc<Shared>,
    host: &str,
    user: &str,
    password: &str,
    create: bool,
) -> Result<bool, String> {
    let pw = register::prepare_password(password).map_err(|e| e.text.unwrap_or_default())?;
    let (store, auth) = (shared.store.clone(), shared.config.auth.clone());
    let (h, u) = (host.to_owned(), user.to_owned());
    let what = if create {
        credentials::SetPassword::Create
    } else {
        credentials::SetPassword::Change
    };
    blocking(move || credentials::set_password(&store, &auth, (&h, &u), &pw, what))
        .await
        .map_err(|e| e.to_string())
}

/// Send a command to a running server; `None` when none is listening.
pub fn client(data_dir: &std::path::Path, args: &[String]) -> Option<Result<String, String>> {
    use std::io::{BufRead, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket_path(data_dir)).ok()?;
    let req = serde_json::to_string(args).ok()?;
    if stream.write_all(format!("{req}\n").as_bytes()).is_err() {
        return Some(Err("the server closed the control socket".into()));
    }
    let mut out = String::new();
    for line in std::io::BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        if line == "OK" {
            return Some(Ok(out));
        }
        if let Some(e) = line.strip_prefix("ERR ") {
            return Some(Err(e.to_owned()));
        }
        out.push_str(&line);
        out.push('\n');
    }
    Some(Err("no answer from the server".into()))
}
