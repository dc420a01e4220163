//! The data directory is the operator's and kleiber's alone: the real binary creates it 0700
//! and every file in it 0600 (database, certificates, snapshots, backups, control socket),
//! refuses a data directory others may write to, and serves the control socket only to its
//! own user and root.

mod common;
use common::*;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Every path under `dir` (itself included) with its mode.
fn modes(dir: &Path) -> Vec<(std::path::PathBuf, u32)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        if p.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
        out.push((p.clone(), mode(&p)));
    }
    out
}

#[test]
fn data_directory_and_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let b = Binary::start(&data, "", "info");
    let sock = data.join("control.sock");
    // 0700 from the umask (a socket's x bits mean nothing): the owner alone may connect.
    assert_eq!(mode(&sock) & 0o077, 0, "control socket");
    let backup = dir.path().join("manual.snap");
    let out = Command::new(env!("CARGO_BIN_EXE_kleiber"))
        .arg("backup")
        .arg(&backup)
        .arg("--config")
        .arg(data.with_extension("toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode(&backup), 0o600, "backup");
    let all = modes(&data);
    assert!(all.len() > 5, "{all:?}");
    for (p, m) in &all {
        if p.is_dir() {
            assert_eq!(*m, 0o700, "{}", p.display());
        } else {
            assert_eq!(m & 0o077, 0, "{} is {m:o}", p.display());
        }
    }
    b.stop();
}

#[test]
fn a_data_directory_others_can_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let cfg = dir.path().join("k.toml");
    std::fs::write(
        &cfg,
        format!("data_dir = {data:?}\n[listen]\nc2s_starttls = [\"127.0.0.1:0\"]\nc2s_direct_tls = [\"127.0.0.1:0\"]\ns2s = []\n[http]\nlisten = [\"127.0.0.1:0\"]\n[proxy65]\nlisten = [\"127.0.0.1:0\"]\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kleiber"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > WAIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server started on a data_dir others can write");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("data_dir") && last.contains(&*data.to_string_lossy()),
        "{err}"
    );
    assert!(
        !data.join("db").exists(),
        "nothing is created in a refused data_dir"
    );
}

/// Only meaningful as root: a process of another user, given access to the socket file, is
/// still refused.
#[test]
fn control_socket_refuses_other_users() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root to run a client as another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let b = Binary::start(&data, "", "info");
    let cfg = data.with_extension("toml");
    // Open the way to the socket for everyone, as a careless operator might.
    for (p, m) in [
        (dir.path(), 0o711),
        (data.as_path(), 0o711),
        (cfg.as_path(), 0o644),
        (data.join("control.sock").as_path(), 0o666),
    ] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }
    let status = |uid: u32| {
        use std::os::unix::process::CommandExt;
        let out = Command::new(env!("CARGO_BIN_EXE_kleiber"))
            .args(["status", "--config"])
            .arg(&cfg)
            .uid(uid)
            .gid(uid)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, text) = status(65534);
    assert!(!ok, "another user was served: {text}");
    assert!(text.contains("permission denied"), "{text}");
    let (ok, text) = status(0);
    assert!(ok && text.contains("uptime"), "{text}");
    b.stop();
}
