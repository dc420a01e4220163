//! Abuse limits that need to know who is asking: registrations per address and per hour, and
//! growing delays after failed logins (per address and per account).
//!
//! Addresses are held in memory only, for the hour a limit needs, as [`PeerAddr`], which has
//! no `Display` or `Debug`: it cannot end up in a log line or on disk.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A client's address, usable only as a key for the limits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr(IpAddr);

impl PeerAddr {
    /// Is this the machine itself (127.0.0.0/8, ::1)? Such clients are exempt from the abuse
    /// limits when `limits.exempt_loopback` is set, as Prosody does: local tools and load
    /// generators, not strangers.
    pub fn is_loopback(&self) -> bool {
        self.0.is_loopback()
    }

    /// Wrap an address (IPv6 addresses are limited per /64, as one host usually owns one).
    pub fn new(ip: IpAddr) -> PeerAddr {
        match ip {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                PeerAddr(IpAddr::V6(std::net::Ipv6Addr::new(
                    s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                )))
            }
            v4 => PeerAddr(v4),
        }
    }
}

const HOUR: Duration = Duration::from_secs(3600);
/// Failures are forgotten after this long.
const FAILURE_MEMORY: Duration = Duration::from_secs(900);

/// The limits' memory.
#[derive(Default)]
pub struct Limiter {
    /// Connections per address that have not authenticated yet (slowloris), and how many of
    /// all of them count against the global cap.
    unauthenticated: Mutex<(HashMap<PeerAddr, usize>, usize)>,
    registrations: Mutex<Registrations>,
    /// The cap on registrations from all addresses was reached and logged (once per episode).
    cap_logged: std::sync::atomic::AtomicBool,
    failures: Mutex<HashMap<FailureKey, (u32, Instant)>>,
}

/// Why a registration was refused, and how long until it would be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationRefused {
    /// `limits.registrations_per_address_per_hour`.
    ThisAddress(Duration),
    /// `limits.registrations_per_hour`, all addresses together.
    AllAddresses(Duration),
}

impl RegistrationRefused {
    /// The text the client gets: which limit, and when to try again (whole minutes, rounded
    /// up).
    pub fn text(self) -> String {
        let (who, wait) = match self {
            RegistrationRefused::ThisAddress(w) => ("from your address", w),
            RegistrationRefused::AllAddresses(w) => ("on this server", w),
        };
        let minutes = wait.as_secs().div_ceil(60).max(1);
        format!(
            "too many new accounts {who} in the last hour; try again in {minutes} minute{}",
            if minutes == 1 { "" } else { "s" }
        )
    }
}

/// Times of the last hour's registrations: all, and per address.
type Registrations = (VecDeque<Instant>, HashMap<PeerAddr, VecDeque<Instant>>);

#[derive(PartialEq, Eq, Hash)]
enum FailureKey {
    Addr(PeerAddr),
    Account(String),
}

fn prune(q: &mut VecDeque<Instant>, now: Instant) {
    while q.front().is_some_and(|t| now.duration_since(*t) > HOUR) {
        q.pop_front();
    }
}

/// A place among an address's unauthenticated connections; freed on drop.
pub struct PendingSlot<'a> {
    limiter: &'a Limiter,
    addr: PeerAddr,
    counted: bool,
}

impl Drop for PendingSlot<'_> {
    fn drop(&mut self) {
        if let Ok(mut g) = self.limiter.unauthenticated.lock() {
            let (m, total) = &mut *g;
            if self.counted {
                *total -= 1;
            }
            if let Some(n) = m.get_mut(&self.addr) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.addr);
                }
            }
        }
    }
}

impl Limiter {
    /// Take a place among `addr`'s connections still in TLS or login, or `None` when it has
    /// `max` of them already, or when `global` such places are taken by all addresses
    /// together (0 = no limit; a connection asking with `global` = 0, an exempt one, is not
    /// counted against it).
    pub fn unauthenticated_slot(
        &self,
        addr: PeerAddr,
        max: usize,
        global: usize,
    ) -> Option<PendingSlot<'_>> {
        let mut g = self.unauthenticated.lock().ok()?;
        let (m, total) = &mut *g;
        if global > 0 && *total >= global {
            return None;
        }
        let n = m.entry(addr).or_insert(0);
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        if global > 0 {
            *total += 1;
        }
        Some(PendingSlot {
            limiter: self,
            addr,
            counted: global > 0,
        })
    }

    /// May `addr` register now? Counts the registration if so. `0` disables a limit. A
    /// refusal says which limit and when the oldest registration it counts leaves the hour.
    pub fn allow_registration(
        &self,
        addr: Option<PeerAddr>,
        per_addr: u32,
        global: u32,
    ) -> Result<(), RegistrationRefused> {
        let now = Instant::now();
        let Ok(mut g) = self.registrations.lock() else {
            return Ok(());
        };
        let (all, by_addr) = &mut *g;
        prune(all, now);
        let wait = |q: &VecDeque<Instant>| {
            q.front().map_or(Duration::ZERO, |t| {
                HOUR.saturating_sub(now.duration_since(*t))
            })
        };
        if global > 0 && all.len() >= global as usize {
            return Err(RegistrationRefused::AllAddresses(wait(all)));
        }
        if let (Some(a), true) = (addr, per_addr > 0) {
            let q = by_addr.entry(a).or_default();
            prune(q, now);
            if q.len() >= per_addr as usize {
                return Err(RegistrationRefused::ThisAddress(wait(q)));
            }
            q.push_back(now);
        }
        by_addr.retain(|_, q| !q.is_empty());
        all.push_back(now);
        Ok(())
    }

    /// The cap on all addresses refused a registration: `true` the first time in an episode
    /// (to log it once).
    pub fn registration_cap_noticed(&self) -> bool {
        !self
            .cap_logged
            .swap(true, std::sync::atomic::Ordering::AcqRel)
    }

    /// A registration was accepted: the cap is not reached (any more).
    pub fn registration_cap_over(&self) {
        self.cap_logged
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// While the cap on registrations from all addresses together is reached: how long until
    /// a place frees up.
    pub fn registration_cap_reached(&self, global: u32) -> Option<Duration> {
        let now = Instant::now();
        let mut g = self.registrations.lock().ok()?;
        let (all, _) = &mut *g;
        prune(all, now);
        (global > 0 && all.len() >= global as usize).then(|| {
            all.front().map_or(Duration::ZERO, |t| {
                HOUR.saturating_sub(now.duration_since(*t))
            })
        })
    }

    /// How long to wait before answering a login attempt from `addr` for `account`:
    /// 0 at first, then doubling with each recent failure, up to `max`.
    pub fn login_delay(&self, addr: Option<PeerAddr>, account: &str, max: Duration) -> Duration {
        let Ok(mut f) = self.failures.lock() else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        f.retain(|_, (_, t)| now.duration_since(*t) < FAILURE_MEMORY);
        let n = [
            addr.map(FailureKey::Addr),
            Some(FailureKey::Account(account.to_owned())),
        ]
        .into_iter()
        .flatten()
        .filter_map(|k| f.get(&k).map(|(n, _)| *n))
        .max()
        .unwrap_or(0);
        if n == 0 {
            return Duration::ZERO;
        }
        (Duration::from_millis(250) * 2u32.saturating_pow(n.min(16) - 1)).min(max)
    }

    /// Remember a failed login.
    pub fn login_failed(&self, addr: Option<PeerAddr>, account: &str) {
        let Ok(mut f) = self.failures.lock() else {
            return;
        };
        let now = Instant::now();
        for k in [
            addr.map(FailureKey::Addr),
            Some(FailureKey::Account(account.to_owned())),
        ]
        .into_iter()
        .flatten()
        {
            let e = f.entry(k).or_insert((0, now));
            e.0 = e.0.saturating_add(1);
            e.1 = now;
        }
    }

    /// A successful login clears the account's failures (not the address's).
    pub fn login_succeeded(&self, account: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(&FailureKey::Account(account.to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_per_address_and_global() {
        let l = Limiter::default();
        let a = Some(PeerAddr::new("192.0.2.1".parse().unwrap()));
        let b = Some(PeerAddr::new("192.0.2.2".parse().unwrap()));
        assert!(l.allow_registration(a, 2, 3).is_ok());
        assert!(l.allow_registration(a, 2, 3).is_ok());
        let per = l.allow_registration(a, 2, 3).unwrap_err();
        assert!(
            matches!(per, RegistrationRefused::ThisAddress(w) if w > Duration::from_secs(3590))
        );
        assert!(
            per.text()
                .contains("from your address in the last hour; try again in 60 minutes"),
            "{}",
            per.text()
        );
        assert!(l.allow_registration(b, 2, 3).is_ok());
        assert!(l.registration_cap_reached(3).is_some());
        assert!(l.registration_cap_reached(0).is_none());
        let all = l.allow_registration(b, 2, 3).unwrap_err();
        assert!(
            matches!(all, RegistrationRefused::AllAddresses(_)),
            "global"
        );
        assert!(all.text().contains("on this server"));
        let v6a = PeerAddr::new("2001:db8::1".parse().unwrap());
        let v6b = PeerAddr::new("2001:db8::ffff".parse().unwrap());
        assert!(v6a == v6b, "one /64");
    }

    #[test]
    fn unauthenticated_connections_per_address() {
        let l = Limiter::default();
        let a = PeerAddr::new("192.0.2.1".parse().unwrap());
        let s1 = l.unauthenticated_slot(a, 2, 0).unwrap();
        let _s2 = l.unauthenticated_slot(a, 2, 0).unwrap();
        assert!(l.unauthenticated_slot(a, 2, 0).is_none());
        drop(s1);
        assert!(l.unauthenticated_slot(a, 2, 0).is_some());
    }

    #[test]
    fn unauthenticated_connections_in_all() {
        let l = Limiter::default();
        let addr = |s: &str| PeerAddr::new(s.parse().unwrap());
        let s1 = l.unauthenticated_slot(addr("192.0.2.1"), 5, 2).unwrap();
        let _s2 = l.unauthenticated_slot(addr("192.0.2.2"), 5, 2).unwrap();
        assert!(l.unauthenticated_slot(addr("192.0.2.3"), 5, 2).is_none());
        // Exempt connections (global 0) are neither refused nor counted.
        let _e = l.unauthenticated_slot(addr("127.0.0.1"), 0, 0).unwrap();
        drop(s1);
        assert!(l.unauthenticated_slot(addr("192.0.2.3"), 5, 2).is_some());
    }

    #[test]
    fn growing_login_delays() {
        let l = Limiter::default();
        let a = Some(PeerAddr::new("192.0.2.1".parse().unwrap()));
        let max = Duration::from_secs(5);
        assert_eq!(l.login_delay(a, "juliet", max), Duration::ZERO);
        l.login_failed(a, "juliet");
        assert_eq!(l.login_delay(a, "juliet", max), Duration::from_millis(250));
        l.login_failed(a, "juliet");
        assert_eq!(
            l.login_delay(None, "juliet", max),
            Duration::from_millis(500),
            "per account"
        );
        for _ in 0..10 {
            l.login_failed(a, "juliet");
        }
        assert_eq!(l.login_delay(a, "romeo", max), max, "per address, capped");
        l.login_succeeded("juliet");
        assert_eq!(l.login_delay(None, "juliet", max), Duration::ZERO);
    }
}
