//! Failed logins counted per client address in fixed windows: an address with
//! `max_failures` refusals in its window is refused unchecked until the window ends, so a
//! password cannot be guessed at the speed the server answers, and the log gets one line
//! per failure up to the limit rather than one per guess.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `brook.authentication.max.failures` per `brook.authentication.failure.window.ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimits {
    pub max_failures: u32,
    pub window: Duration,
}

impl Default for FailureLimits {
    fn default() -> Self {
        FailureLimits {
            max_failures: 10,
            window: Duration::from_secs(60),
        }
    }
}

/// Addresses remembered at most; past it, expired windows are dropped, and when none is,
/// a new address is not counted (its guesses still queue for bcrypt's few slots).
const MAX_PEERS: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

/// The failure counts.
pub struct Limiter {
    limits: FailureLimits,
    peers: Mutex<HashMap<IpAddr, Window>>,
}

impl Limiter {
    pub fn new(limits: FailureLimits) -> Limiter {
        Limiter {
            limits,
            peers: Mutex::default(),
        }
    }

    pub fn limits(&self) -> FailureLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Window>> {
        self.peers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How long `ip` stays refused, if it is.
    pub fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        self.blocked_at(ip, Instant::now())
    }

    fn blocked_at(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let w = *self.lock().get(&ip)?;
        let end = w.start + self.limits.window;
        (w.failures >= self.limits.max_failures && now < end).then(|| end - now)
    }

    /// Counts a failure from `ip`; the count in its window so far.
    pub fn record_failure(&self, ip: IpAddr) -> u32 {
        self.record_failure_at(ip, Instant::now())
    }

    fn record_failure_at(&self, ip: IpAddr, now: Instant) -> u32 {
        let window = self.limits.window;
        let mut peers = self.lock();
        if peers.len() >= MAX_PEERS && !peers.contains_key(&ip) {
            peers.retain(|_, w| now < w.start + window);
            if peers.len() >= MAX_PEERS {
                return 1;
            }
        }
        let w = peers.entry(ip).or_insert(Window {
            start: now,
            failures: 0,
        });
        if now >= w.start + window {
            *w = Window {
                start: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
        w.failures
    }

    /// A successful login clears the address's count.
    pub fn forget(&self, ip: IpAddr) {
        self.lock().remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_its_failures_until_its_window_ends() {
        let limiter = Limiter::new(FailureLimits {
            max_failures: 3,
            window: Duration::from_secs(60),
        });
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let t0 = Instant::now();
        for n in 1..=3 {
            assert_eq!(limiter.blocked_at(ip, t0), None, "before failure {n}");
            assert_eq!(limiter.record_failure_at(ip, t0), n);
        }
        let later = t0 + Duration::from_secs(20);
        assert_eq!(limiter.blocked_at(ip, later), Some(Duration::from_secs(40)));
        assert_eq!(limiter.blocked_at(other, later), None, "per address");
        let after = t0 + Duration::from_secs(60);
        assert_eq!(limiter.blocked_at(ip, after), None, "the window ended");
        assert_eq!(limiter.record_failure_at(ip, after), 1, "a new window");
        limiter.forget(ip);
        assert_eq!(limiter.record_failure_at(ip, after), 1, "forgotten");
    }
}
