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

    /// As [`TokenBucket::new`], but starting with a full burst.
    pub fn new_full(rate_mbps: u64) -> TokenBucket {
        let b = TokenBucket::new(rate_mbps);
        {
            let mut s = b.lock();
            s.tokens = s.rate_bytes_per_s as f64 / 4.0;
        }
        b
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

    /// Takes `bytes` if they may be sent now (a take larger than the burst passes when
    /// the bucket is full, leaving a debt); otherwise takes nothing and says false. For
    /// callers that must not wait (the prefetch thread serves every client).
    pub fn try_take(&self, bytes: u64, now: Instant) -> bool {
        let mut s = self.lock();
        if s.rate_bytes_per_s == 0 {
            return true;
        }
        let rate = s.rate_bytes_per_s as f64;
        let burst = rate / 4.0;
        let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
        s.last = now;
        s.tokens = (s.tokens + elapsed * rate).min(burst);
        if s.tokens < (bytes as f64).min(burst) {
            return false;
        }
        s.tokens -= bytes as f64;
        true
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
    fn try_take_refuses_without_debt() {
        let b = TokenBucket::new(100); // 100 MB/s, 25 MB burst
        let t0 = Instant::now();
        b.take(0, t0);
        assert!(!b.try_take(1_000_000, t0), "an empty bucket refuses");
        let t1 = t0 + Duration::from_millis(100); // 10 MB earned
        assert!(b.try_take(8_000_000, t1));
        assert!(!b.try_take(8_000_000, t1), "2 MB left");
        // Larger than the burst: passes once the bucket is full, then owes.
        let t2 = t1 + Duration::from_secs(10);
        assert!(b.try_take(60_000_000, t2));
        assert!(!b.try_take(1, t2 + Duration::from_millis(100)));
        assert!(TokenBucket::new(0).try_take(u64::MAX, t0), "unlimited");
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
