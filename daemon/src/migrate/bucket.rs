//! A token bucket in bytes: the MB/s cap shared by every migration job.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct TokenBucket {
    inner: Mutex<State>,
}

struct State {
    rate_bytes_per_s: u64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// `rate_mbps` = 0 means unlimited. Burst is a quarter second of traffic.
    pub fn new(rate_mbps: u64) -> TokenBucket {
        TokenBucket {
            inner: Mutex::new(State {
                rate_bytes_per_s: rate_mbps * 1_000_000,
                tokens: 0.0,
                last: Instant::now(),
            }),
        }
    }

    pub fn set_rate(&self, rate_mbps: u64) {
        let mut s = self.lock();
        s.rate_bytes_per_s = rate_mbps * 1_000_000;
    }

    pub fn rate_mbps(&self) -> u64 {
        self.lock().rate_bytes_per_s / 1_000_000
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long to wait before `bytes` may be sent (and takes them). Zero when unlimited.
    pub fn take(&self, bytes: u64, now: Instant) -> Duration {
        let mut s = self.lock();
        if s.rate_bytes_per_s == 0 {
            return Duration::ZERO;
        }
        let rate = s.rate_bytes_per_s as f64;
        let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
        s.last = now;
        s.tokens = (s.tokens + elapsed * rate).min(rate / 4.0);
        s.tokens -= bytes as f64;
        if s.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.tokens / rate)
        }
    }

    /// Blocks until `bytes` may be sent.
    pub fn acquire(&self, bytes: u64) {
        let wait = self.take(bytes, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_never_waits() {
        let b = TokenBucket::new(0);
        assert_eq!(b.take(1 << 40, Instant::now()), Duration::ZERO);
    }

    #[test]
    fn rate_is_enforced_over_time() {
        let b = TokenBucket::new(100); // 100 MB/s
        let t0 = Instant::now();
        // 1000 MB at once: about ten seconds of debt.
        let w = b.take(1_000_000_000, t0);
        assert!((9.9..=10.1).contains(&w.as_secs_f64()), "{w:?}");
        // After the debt is paid, a small take is free again.
        let w = b.take(1_000_000, t0 + Duration::from_secs(11));
        assert_eq!(w, Duration::ZERO);
    }

    #[test]
    fn burst_is_capped() {
        let b = TokenBucket::new(100);
        let t0 = Instant::now();
        b.take(0, t0);
        // An hour idle buys only a quarter second of burst.
        let w = b.take(50_000_000, t0 + Duration::from_secs(3600));
        assert!(w > Duration::from_millis(200), "{w:?}");
    }
}
