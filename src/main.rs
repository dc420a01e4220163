//! The `kleiber` command: `serve` runs the daemon; the other commands are for the operator.

#![warn(clippy::too_many_lines)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use kleiber::actors::ListenerKind;
use kleiber::config::Config;
use kleiber::server::ServerThread;
use kleiber::services::register;
use kleiber::store::{self, Store};

#[derive(Parser)]
#[command(
    name = "kleiber",
    version,
    about = "A small, privacy-minded XMPP server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Configuration file (defaults apply when none is given).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and its certificates, and print what would be served.
    CheckConfig {
        /// Configuration file.
        path: Option<PathBuf>,
    },
    /// Manage accounts (through the running server, or the data directory when it is stopped).
    User {
        #[command(subcommand)]
        action: UserAction,
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Write a snapshot of all data to PATH (while the server is stopped; the running server
    /// writes its own snapshots, see [snapshots] in the config).
    Backup {
        path: PathBuf,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Create the data directory from a snapshot (the data directory must not hold a database).
    Restore {
        path: PathBuf,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Open or close in-band registration at once (kept across restarts until the config's
    /// `registration.open` changes), or show it.
    Registration {
        #[arg(value_parser = ["open", "close", "status"])]
        action: String,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Uptime, sessions, accounts, queued offline messages and version of the running server.
    Status {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the delivery-error log (time, from, to, reason).
    Errors {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Only entries of the last N days.
        #[arg(long, default_value_t = 30)]
        days: u64,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Create an account; the password is read from standard input.
    Add { jid: String },
    /// Delete an account and everything stored for it.
    Del { jid: String },
    /// Set a new password, read from standard input.
    Passwd { jid: String },
    /// List the accounts of a host (default: all hosts).
    List { host: Option<String> },
}

fn load_config(path: Option<&Path>) -> Result<Config, String> {
    match path {
        Some(p) => Config::load(p).map_err(|e| e.to_string()),
        None => Ok(Config::default()),
    }
}

fn main() -> ExitCode {
    // Everything kleiber creates (database, snapshots, backups, certificates, the control
    // socket) is for its own user only, even when started outside the systemd unit. Set
    // before any file exists, so no file is ever created wider and narrowed later.
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file mode mask; no thread exists yet.
    unsafe {
        libc::umask(0o077);
    }
    // actix-web's server logs the addresses it listens on at info and its connections below;
    // kleiber logs its own listeners once, so the HTTP machinery speaks only of problems,
    // whatever RUST_LOG says (no address reaches a log through it).
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info,sled=warn"))
        .filter_module("actix_server", log::LevelFilter::Warn)
        .filter_module("actix_http", log::LevelFilter::Warn)
        .filter_module("actix_web", log::LevelFilter::Warn)
        .filter_module("h2", log::LevelFilter::Warn)
        .format_timestamp_secs()
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => serve(config.as_deref()),
        Command::CheckConfig { path } => check_config(path.as_deref()),
        Command::User { action, config } => user(action, config.as_deref()),
        Command::Errors { config, days } => errors(config.as_deref(), days),
        Command::Registration { action, config } => registration(&action, config.as_deref()),
        Command::Status { config } => status(config.as_deref()),
        Command::Backup { path, config } => backup(&path, config.as_deref()),
        Command::Restore { path, config } => restore(&path, config.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kleiber: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(path: Option<&Path>) -> Result<(), String> {
    let config = load_config(path)?;
    let server = ServerThread::start(config).map_err(|e| e.to_string())?;
    for (kind, addr) in &server.listeners {
        let what = match kind {
            ListenerKind::StartTls | ListenerKind::S2s => "STARTTLS",
            ListenerKind::DirectTls | ListenerKind::S2sDirectTls => "direct TLS",
            ListenerKind::Https => "HTTPS: upload, WebSocket, BOSH, pages",
            ListenerKind::Http => "plain HTTP for a reverse proxy",
            ListenerKind::Component => "XEP-0114, plain TCP: keep it private",
            ListenerKind::Proxy65 => "SOCKS5 proxy, XEP-0065",
        };
        let who = match kind {
            ListenerKind::S2s | ListenerKind::S2sDirectTls => "servers",
            ListenerKind::Component => "components",
            ListenerKind::Https | ListenerKind::Http => "the web",
            ListenerKind::Proxy65 => "file transfers",
            _ => "clients",
        };
        log::info!("listening for {who} on {addr} ({what})");
    }
    log::info!(
        "kleiber {} serving {} (registration {})",
        env!("CARGO_PKG_VERSION"),
        server
            .shared
            .config
            .hosts
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        if server.shared.registration_open() {
            "open"
        } else {
            "closed"
        }
    );
    wait_for_signal(|| match server.shared.tls.reload(&server.shared.config) {
        Ok(()) => log::info!("SIGHUP: certificates reloaded"),
        Err(e) => log::error!("SIGHUP: certificates not reloaded, the old ones stay in use: {e}"),
    });
    log::info!("shutting down");
    server.stop();
    log::info!("stopped");
    Ok(())
}

/// Block until SIGTERM or SIGINT; run `on_hup` for each SIGHUP.
fn wait_for_signal(on_hup: impl Fn()) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("signal runtime");
    rt.block_on(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = tokio::signal::ctrl_c() => break,
                    _ = hup.recv() => on_hup(),
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = &on_hup;
            let _ = tokio::signal::ctrl_c().await;
        }
    });
}

fn check_config(path: Option<&Path>) -> Result<(), String> {
    let config = load_config(path)?;
    for host in config.hosts.keys() {
        let (cert, key) = kleiber::tls::cert_paths(&config, host);
        if config.hosts[host].certificate.is_some() {
            let pem = std::fs::read(&cert).map_err(|e| format!("{}: {e}", cert.display()))?;
            let x = openssl::x509::X509::from_pem(&pem)
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            std::fs::metadata(&key).map_err(|e| format!("{}: {e}", key.display()))?;
            println!(
                "host {host}: certificate {} (expires {})",
                cert.display(),
                x.not_after()
            );
        } else {
            println!("host {host}: self-signed certificate in {}", cert.display());
        }
    }
    for a in &config.listen.c2s_starttls {
        println!("clients (STARTTLS): {a}");
    }
    for a in &config.listen.c2s_direct_tls {
        println!("clients (direct TLS): {a}");
    }
    for a in &config.http.listen {
        println!("web (HTTPS): {a}");
    }
    for a in &config.http.listen_plain {
        println!("web (plain HTTP, behind a proxy): {a}");
    }
    if config.proxy65.enabled {
        for a in &config.proxy65.listen {
            println!("file transfer proxy (SOCKS5, XEP-0065): {a}");
        }
    }
    if config.http.enabled() {
        for host in config.hosts.keys() {
            let url = config.http.url_of(host);
            let ws = url.replacen("http", "ws", 1);
            println!("web of {host}: {url}/ (WebSocket {ws}/xmpp-websocket, BOSH {url}/http-bind)");
        }
    }
    println!("data: {}", config.data_dir.display());
    println!(
        "registration: {}",
        if config.registration.open {
            "open"
        } else {
            "closed"
        }
    );
    for w in config.warnings() {
        println!("warning: {w}");
    }
    println!("config OK");
    Ok(())
}

fn split_jid(jid: &str, config: &Config) -> Result<(String, String), String> {
    let (user, host) = jid
        .split_once('@')
        .ok_or_else(|| format!("{jid}: expected user@host"))?;
    if !config.hosts.contains_key(host) {
        return Err(format!("{host}: not a configured host"));
    }
    let user =
        register::normalize_username(user).map_err(|_| format!("{user}: invalid user name"))?;
    Ok((user, host.to_owned()))
}

/// `kleiber user add|passwd` on a stopped server: read the password, prepare it as the
/// server does (SASLprep, length) and store its verifiers.
fn offline_set_password(
    store: &store::Store,
    config: &Config,
    account: (&str, &str),
    what: kleiber::credentials::SetPassword,
) -> Result<bool, String> {
    let pw = read_password()?;
    let pw = register::prepare_password(&pw)
        .map_err(|e| e.text.unwrap_or_else(|| "invalid password".into()))?;
    kleiber::credentials::set_password(store, &config.auth, account, &pw, what)
        .map_err(|e| e.to_string())
}

fn read_password() -> Result<String, String> {
    if atty_stdin() {
        eprint!("password: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let pw = line.trim_end_matches(['\r', '\n']).to_owned();
    register::prepare_password(&pw).map_err(|e| e.text.unwrap_or_else(|| "invalid password".into()))
}

fn atty_stdin() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal()
}

fn open_store(config: &Config) -> Result<Store, String> {
    let store = Store::open_with(&config.data_dir, config.storage.flush_window_ms)
        .map_err(|e| e.to_string())?;
    store.space.set_min_free(config.storage.min_free_mb << 20);
    store.set_reregistration_block(config.accounts.reregistration_block_days * 86_400);
    Ok(store)
}

/// Run a command on the running server; `None` when it is not running.
fn remote(config: &Config, args: &[&str]) -> Option<Result<(), String>> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    kleiber::actors::control::client(&config.data_dir, &args).map(|r| r.map(|out| print!("{out}")))
}

fn registration(action: &str, path: Option<&Path>) -> Result<(), String> {
    let config = load_config(path)?;
    if let Some(r) = remote(&config, &["registration", action]) {
        return r;
    }
    let store = open_store(&config)?;
    let current = match store.registration_override().map_err(|e| e.to_string())? {
        Some((open, cfg)) if cfg == config.registration.open => open,
        _ => config.registration.open,
    };
    match action {
        "status" => println!(
            "{} (server not running)",
            if current { "open" } else { "closed" }
        ),
        _ => {
            let open = action == "open";
            store
                .set_registration_override(open, config.registration.open)
                .map_err(|e| e.to_string())?;
            println!(
                "registration {} (from the next start)",
                if open { "open" } else { "closed" }
            );
        }
    }
    Ok(())
}

fn status(path: Option<&Path>) -> Result<(), String> {
    let config = load_config(path)?;
    remote(&config, &["status"]).unwrap_or_else(|| Err("the server is not running".into()))
}

fn user(action: UserAction, path: Option<&Path>) -> Result<(), String> {
    let config = load_config(path)?;
    // Through the running server when there is one (it holds the database).
    if std::os::unix::net::UnixStream::connect(kleiber::actors::control::socket_path(
        &config.data_dir,
    ))
    .is_ok()
    {
        let mut args: Vec<String> = match &action {
            UserAction::Add { jid } => vec!["user".into(), "add".into(), jid.clone()],
            UserAction::Passwd { jid } => vec!["user".into(), "passwd".into(), jid.clone()],
            UserAction::Del { jid } => vec!["user".into(), "del".into(), jid.clone()],
            UserAction::List { host } => ["user".to_owned(), "list".to_owned()]
                .into_iter()
                .chain(host.clone())
                .collect(),
        };
        if matches!(action, UserAction::Add { .. } | UserAction::Passwd { .. }) {
            args.push(read_password()?);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if let Some(r) = remote(&config, &args) {
            return r;
        }
    }
    let store = open_store(&config)?;
    match action {
        UserAction::Add { jid } => {
            let (user, host) = split_jid(&jid, &config)?;
            let what = kleiber::credentials::SetPassword::Create;
            if !offline_set_password(&store, &config, (&host, &user), what)? {
                return Err(format!("{user}@{host} already exists"));
            }
            println!("created {user}@{host}");
        }
        UserAction::Del { jid } => {
            let (user, host) = split_jid(&jid, &config)?;
            let bare = kleiber::xmpp::BareJid::new(&format!("{user}@{host}"))
                .map_err(|e| e.to_string())?;
            // The server is stopped: no stanza can be sent, the store's part does the rest.
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .map_err(|e| e.to_string())?;
            let n = rt
                .block_on(kleiber::actors::account::delete(&store, None, vec![bare]))
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err(format!("{user}@{host} does not exist"));
            }
            println!("deleted {user}@{host}");
        }
        UserAction::Passwd { jid } => {
            let (user, host) = split_jid(&jid, &config)?;
            let what = kleiber::credentials::SetPassword::Change;
            if !offline_set_password(&store, &config, (&host, &user), what)? {
                return Err(format!("{user}@{host} does not exist"));
            }
            println!("password changed for {user}@{host}");
        }
        UserAction::List { host } => {
            let hosts: Vec<String> = match host {
                Some(h) if config.hosts.contains_key(&h) => vec![h],
                Some(h) => return Err(format!("{h}: not a configured host")),
                None => config.hosts.keys().cloned().collect(),
            };
            for h in hosts {
                for u in store.accounts.list(&h).map_err(|e| e.to_string())? {
                    println!("{u}@{h}");
                }
            }
        }
    }
    Ok(())
}

fn errors(path: Option<&Path>, days: u64) -> Result<(), String> {
    let config = load_config(path)?;
    if let Some(r) = remote(&config, &["errors", &days.to_string()]) {
        return r;
    }
    let store = open_store(&config)?;
    print!(
        "{}",
        kleiber::store::delivery_errors::format_since(&store, days).map_err(|e| e.to_string())?
    );
    Ok(())
}

fn backup(path: &Path, config: Option<&Path>) -> Result<(), String> {
    let config = load_config(config)?;
    let abs = std::path::absolute(path).map_err(|e| e.to_string())?;
    if let Some(r) = remote(&config, &["backup", &abs.to_string_lossy()]) {
        return r;
    }
    let store = open_store(&config)?;
    store.snapshot(path).map_err(|e| e.to_string())?;
    println!("snapshot written to {}", path.display());
    Ok(())
}

fn restore(path: &Path, config: Option<&Path>) -> Result<(), String> {
    let config = load_config(config)?;
    if config.data_dir.join("db").exists() {
        return Err(format!(
            "{} already holds a database; move it away first",
            config.data_dir.display()
        ));
    }
    let store = open_store(&config)?;
    let n = store.restore_from(path).map_err(|e| e.to_string())?;
    println!("restored {n} entries into {}", config.data_dir.display());
    Ok(())
}
