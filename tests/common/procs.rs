//! Programs not written here that the interop tests start (IRC servers, gateways, TURN
//! servers, terminal clients): whether one is installed, a guard that kills it when the test
//! ends, and what it prints, gathered while it runs.

use std::io::Read;
use std::path::Path;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long to wait for a program to show something before giving up (a hang guard).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Is `bin` (a path, or a name looked up on `PATH`) installed? If not, skip (or fail under
/// `KLEIBER_REQUIRE_INTEROP=1`).
pub fn installed(bin: &str) -> bool {
    let found = if bin.contains('/') {
        Path::new(bin).exists()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
    };
    if found {
        return true;
    }
    assert!(
        std::env::var("KLEIBER_REQUIRE_INTEROP").as_deref() != Ok("1"),
        "{bin} is not installed but KLEIBER_REQUIRE_INTEROP=1"
    );
    eprintln!("{bin} is not installed: skipped");
    false
}

/// Everything a child process writes on one of its pipes, gathered by a thread.
#[derive(Clone)]
pub struct Collected(Arc<Mutex<String>>);

impl Collected {
    pub fn of(mut r: impl Read + Send + 'static) -> Collected {
        let text = Arc::new(Mutex::new(String::new()));
        let t = text.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                t.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Collected(text)
    }

    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    /// Wait until `pred` holds for the text so far.
    pub async fn until(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = std::time::Instant::now();
        loop {
            let t = self.text();
            if pred(&t) {
                return t;
            }
            assert!(start.elapsed() < PATIENCE, "{what}: not seen in\n{t}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A client process, killed (by its id) when the test ends, passing or not.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
