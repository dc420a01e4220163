//! `kleiber check-config` warns about what a valid configuration still lacks for a public
//! server: an abuse contact (XEP-0157) for each public host.

use std::process::Command;

fn check(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("k.toml");
    std::fs::write(
        &cfg,
        format!("data_dir = {:?}\n{config}", dir.path().join("data")),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kleiber"))
        .arg("check-config")
        .arg(&cfg)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn public_host_without_abuse_contact_is_warned_about() {
    let (ok, out) = check("[hosts.\"example.org\"]\n[hosts.\"chat.test\"]\n");
    assert!(ok, "{out}");
    let warnings: Vec<&str> = out.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{out}");
    assert!(
        warnings[0].contains("hosts.example.org") && warnings[0].contains("contact.abuse"),
        "{out}"
    );
    assert!(out.contains("config OK"), "{out}");
    let (ok, out) =
        check("[hosts.\"example.org\"]\n[contact]\nabuse = [\"mailto:abuse@example.org\"]\n");
    assert!(ok && !out.contains("warning:"), "{out}");
    let (ok, out) = check("");
    assert!(
        ok && !out.contains("warning:"),
        "localhost needs none: {out}"
    );
}
