//! Percentiles, medians, slopes and the formatting of RESULT fields.

use std::collections::HashMap;
use std::time::Instant;

use crate::cli::*;
use crate::Res;

pub(crate) fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

/// Errors counted by kind (the start of the message, up to its first ':'), for a RESULT field:
/// `kind:count,...` or `none`.
#[derive(Default)]
pub(crate) struct Kinds(pub(crate) HashMap<String, usize>);

impl Kinds {
    pub(crate) fn add(&mut self, e: &str) {
        let kind: String = e
            .split(':')
            .next()
            .unwrap_or("")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(40)
            .collect();
        *self.0.entry(kind).or_default() += 1;
    }
}

impl std::fmt::Display for Kinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut v: Vec<String> = self.0.iter().map(|(k, n)| format!("{k}:{n}")).collect();
        v.sort();
        if v.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&v.join(","))
        }
    }
}

pub(crate) fn fmt_u64(v: Option<u64>) -> String {
    v.map_or("na".to_string(), |v| v.to_string())
}

pub(crate) fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.prec$}"),
        _ => "na".into(),
    }
}

/// Prints the RESULT line of --register-only: `ok` of `users` registered in `secs`; an error
/// if some failed.
pub(crate) fn register_result(
    a: &Args,
    users: usize,
    ok: usize,
    secs: f64,
    errors: u64,
) -> Res<()> {
    let failed = users - ok;
    println!(
        "RESULT server={} mode=register users={users} ok={ok} failed={failed} per_s={:.1} \
         errors={errors}",
        a.label,
        ok as f64 / secs
    );
    if failed == 0 {
        Ok(())
    } else {
        Err("some registrations failed".into())
    }
}

pub(crate) fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

pub(crate) fn ms_since(t0: Instant, t: Instant) -> f64 {
    t.saturating_duration_since(t0).as_secs_f64() * 1000.0
}

pub(crate) fn ns_diff_ms(a: Option<u64>, b: Option<u64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e6),
        _ => None,
    }
}

/// Slope of the least-squares line through `points` (x, y); `None` without two distinct x.
pub(crate) fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}
