//! /proc figures: CPU time and RSS of the server processes, of the generator and of the machine.

use std::collections::HashMap;
use std::time::Instant;

use crate::stats::*;

pub(crate) fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// utime + stime in clock ticks, from /proc/PID/stat.
pub(crate) fn cpu_ticks(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// CPU time in ns of all threads of a process (live ones), from /proc/PID/task/*/schedstat:
/// finer than the clock ticks of /proc/PID/stat, for windows of a few milliseconds.
pub(crate) fn cpu_ns(pid: &str) -> Option<u64> {
    let mut total = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let mut p = t.ok()?.path();
        p.push("schedstat");
        let s = std::fs::read_to_string(p).unwrap_or_default();
        total += s
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}

/// Summed over the server's pids, in ns; `None` without --server-pid or if a process vanished.
pub(crate) fn server_cpu_ns(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| cpu_ns(&p.to_string())).sum()
}

/// CPU time in ns of each live thread of the server's processes, by (pid, thread id), from
/// /proc/PID/task/*/schedstat; `None` without --server-pid or if a process vanished.
pub(crate) type CpuSnap = HashMap<(u32, u32), u64>;

pub(crate) fn cpu_snap(pids: &[u32]) -> Option<CpuSnap> {
    if pids.is_empty() {
        return None;
    }
    let mut snap = HashMap::new();
    for &pid in pids {
        for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
            let t = t.ok()?;
            let Some(tid) = t.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let ns = std::fs::read_to_string(t.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok());
            if let Some(ns) = ns {
                snap.insert((pid, tid), ns);
            }
        }
    }
    Some(snap)
}

/// CPU time in ms used between two snapshots by the threads alive at the second one (a thread
/// started in between counts from zero). Unlike a difference of sums, a thread that ended in
/// between (sled's and tokio's pools end idle threads) cannot make it negative; what such a
/// thread used after the first snapshot is missed.
pub(crate) fn cpu_between_ms(a: &Option<CpuSnap>, b: &Option<CpuSnap>) -> Option<f64> {
    let (a, b) = (a.as_ref()?, b.as_ref()?);
    let ns: u64 = b
        .iter()
        .map(|(k, &v)| v.saturating_sub(a.get(k).copied().unwrap_or(0)))
        .sum();
    Some(ns as f64 / 1e6)
}

pub(crate) fn rss_kib(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Process time of the whole machine (all CPUs), from /proc/stat: user + nice + system.
/// Interrupt and softirq time (loopback TCP is largely processed there) is left out, as it is
/// not charged to any process.
pub(crate) fn machine_busy_ticks() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is included in user/nice).
    Some(v.first()? + v.get(1)? + v.get(2)?)
}

/// (busy, total) ticks of the whole machine from /proc/stat; busy = all but idle and iowait.
pub(crate) fn machine_ticks() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    Some((total - v.get(3)? - v.get(4)?, total))
}

/// Busy percentage of the whole machine (100 = all CPUs) since `machine_ticks()` gave `m0`.
pub(crate) fn busy_pct_since(m0: Option<(u64, u64)>) -> Option<f64> {
    match (m0, machine_ticks()) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            Some(b1.saturating_sub(b0) as f64 / (t1 - t0) as f64 * 100.0)
        }
        _ => None,
    }
}

/// Counters of the whole machine's TCP stack from /proc/net/netstat (`TcpExt` section), in
/// the order of `names`; `None` if one is missing.
pub(crate) fn tcp_ext(names: &[&str]) -> Option<Vec<u64>> {
    let s = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = s.lines().filter(|l| l.starts_with("TcpExt:"));
    let (keys, values) = (lines.next()?, lines.next()?);
    let map: HashMap<&str, &str> = keys
        .split_whitespace()
        .zip(values.split_whitespace())
        .collect();
    names.iter().map(|n| map.get(n)?.parse().ok()).collect()
}

/// Summed over the server's pids; `None` without --server-pid or if a process vanished.
pub(crate) fn server_cpu(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| cpu_ticks(&p.to_string())).sum()
}

pub(crate) fn server_rss(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| rss_kib(&p.to_string())).sum()
}

/// CPU counters at one moment, in clock ticks (from /proc/PID/stat: threads that ended count
/// too): the server's (summed over --server-pid), the generator's, and the process time of the
/// whole machine (`machine_busy_ticks`).
pub(crate) struct CpuMark {
    pub(crate) at: Instant,
    pub(crate) server: Option<u64>,
    pub(crate) gen: Option<u64>,
    pub(crate) busy: Option<u64>,
}

/// CPU used between two `CpuMark`s, in seconds: the server's, the generator's, and that of
/// everything else on the machine (other builds, ...: should be near 0).
pub(crate) struct CpuUse {
    pub(crate) wall: f64,
    pub(crate) server_s: Option<f64>,
    pub(crate) gen_s: Option<f64>,
    pub(crate) other_s: Option<f64>,
}

impl CpuMark {
    pub(crate) fn now(pids: &[u32]) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            server: server_cpu(pids),
            gen: cpu_ticks("self"),
            busy: machine_busy_ticks(),
        }
    }

    /// What was used from `start` until this mark.
    pub(crate) fn since(&self, start: &CpuMark, ticks: f64) -> CpuUse {
        let secs = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?) as f64 / ticks);
        let server_s = secs(start.server, self.server);
        let gen_s = secs(start.gen, self.gen);
        let other_s = match (secs(start.busy, self.busy), server_s, gen_s) {
            (Some(b), Some(s), Some(g)) => Some((b - s - g).max(0.0)),
            _ => None,
        };
        CpuUse {
            wall: self.at.saturating_duration_since(start.at).as_secs_f64(),
            server_s,
            gen_s,
            other_s,
        }
    }
}

impl CpuUse {
    /// `cpu` seconds in percent of one CPU over the window.
    pub(crate) fn pct(&self, cpu: Option<f64>) -> Option<f64> {
        cpu.filter(|_| self.wall > 0.0)
            .map(|c| c / self.wall * 100.0)
    }

    /// The RESULT fields of a login phase: which side limits logins/s. The generator's share
    /// includes its own SCRAM work (PBKDF2, as many iterations as the server's).
    pub(crate) fn login_fields(&self) -> String {
        format!(
            "login_server_cpu_pct={} login_gen_cpu_pct={}",
            fmt_opt(self.pct(self.server_s), 0),
            fmt_opt(self.pct(self.gen_s), 0)
        )
    }
}
