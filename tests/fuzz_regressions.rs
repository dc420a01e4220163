//! The fuzz targets' corpora (`fuzz/corpus/<target>/`, kept after fuzzing) and crash
//! reproducers (`fuzz/regressions/<target>/`) replayed on stable Rust, so that whatever the
//! fuzzer once found stays fixed. The targets are `kleiber::fuzzing::*`; `fuzz/README.md` says
//! how to fuzz.

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for file in files {
            if file.file_name().is_some_and(|n| n == ".gitkeep") {
                continue;
            }
            // A fuzzer running on this tree replaces corpus files as it shrinks them.
            let data = match std::fs::read(&file) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("{}: {e}", file.display()),
            };
            let name = file.display().to_string();
            let ok = std::panic::catch_unwind(|| f(&data));
            assert!(ok.is_ok(), "{name} panics in {target}");
            n += 1;
        }
    }
    n
}

#[test]
fn stream_parser_corpus() {
    assert!(replay("stream", kleiber::fuzzing::stream) > 0);
}

#[test]
fn jid_corpus() {
    assert!(replay("jid", kleiber::fuzzing::jid) > 0);
}

#[test]
fn sasl_corpus() {
    assert!(replay("sasl", kleiber::fuzzing::sasl) > 0);
}

#[test]
fn config_corpus() {
    assert!(replay("config", kleiber::fuzzing::config) > 0);
}

#[test]
fn muc_corpus() {
    assert!(replay("muc", kleiber::fuzzing::muc) > 0);
}

#[test]
fn framing_corpus() {
    assert!(replay("framing", kleiber::fuzzing::framing) > 0);
}

#[test]
fn socks5_corpus() {
    assert!(replay("socks5", kleiber::fuzzing::socks5) > 0);
}

#[test]
fn mam_corpus() {
    assert!(replay("mam", kleiber::fuzzing::mam) > 0);
}
