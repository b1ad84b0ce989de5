//! PSI backoff: the background migration rate shrinks while memory pressure is high.
//!
//! Once a second the `tierd-ops` thread reads memory pressure through a
//! [`PressureSource`] (`/proc/pressure/memory`; a cgroup's `memory.pressure` has the same
//! format, for scopes) and hands it to the engine (`MigrationEngine::note_pressure`),
//! whose [`Backoff`] halves the rate factor each tick the `some avg10` share is above
//! `migrate.psi_threshold_pct`, down to `migrate.psi_min_rate_pct`, and doubles it back
//! to 1 each tick it is not. The factor scales `migrate.rate_limit_mbps`, or, with no
//! cap configured, the engine's measured move_pages throughput.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PressureError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no \"some avg10=\" field in {text:?}")]
    Parse { path: PathBuf, text: String },
}

/// Where memory pressure comes from (the kernel's PSI files, or a fake in tests).
pub trait PressureSource: Send + Sync {
    /// The share of the last 10 s in which some task stalled on memory, in percent.
    fn memory_some_avg10_pct(&self) -> Result<f64, PressureError>;
}

/// A PSI file: `/proc/pressure/memory`, or a cgroup's `memory.pressure`.
pub struct PsiFile {
    path: PathBuf,
}

impl PsiFile {
    /// The whole machine's memory pressure.
    pub fn system() -> PsiFile {
        PsiFile {
            path: PathBuf::from("/proc/pressure/memory"),
        }
    }

    /// One cgroup's memory pressure (`<cgroup dir>/memory.pressure`), for scopes.
    pub fn cgroup(dir: &Path) -> PsiFile {
        PsiFile {
            path: dir.join("memory.pressure"),
        }
    }
}

impl PressureSource for PsiFile {
    fn memory_some_avg10_pct(&self) -> Result<f64, PressureError> {
        let text = std::fs::read_to_string(&self.path).map_err(|source| PressureError::Io {
            path: self.path.clone(),
            source,
        })?;
        parse_some_avg10(&text).ok_or_else(|| PressureError::Parse {
            path: self.path.clone(),
            text: text.lines().next().unwrap_or("").to_string(),
        })
    }
}

/// `some avg10=1.23 avg60=... total=...` → 1.23.
pub fn parse_some_avg10(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("avg10="))?
        .parse()
        .ok()
}

/// The rate factor's state: pure, stepped once per pressure reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    factor: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { factor: 1.0 }
    }
}

impl Backoff {
    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// One reading: halves the factor (not below `min_pct` / 100) while `pressure_pct`
    /// is above `threshold_pct`, doubles it back (not above 1) otherwise. A threshold
    /// of 0 turns the backoff off (factor 1).
    pub fn step(&mut self, pressure_pct: f64, threshold_pct: f64, min_pct: f64) -> f64 {
        let min = (min_pct / 100.0).clamp(0.01, 1.0);
        self.factor = if threshold_pct <= 0.0 {
            1.0
        } else if pressure_pct > threshold_pct {
            (self.factor / 2.0).max(min)
        } else {
            (self.factor * 2.0).min(1.0)
        };
        self.factor
    }
}

/// The engine's side of the backoff: the factor, the last pressure read, and the
/// measured move_pages throughput the factor scales when no cap is configured.
#[derive(Default)]
pub struct Throttle {
    inner: std::sync::Mutex<ThrottleState>,
}

#[derive(Debug, Default)]
struct ThrottleState {
    backoff: Backoff,
    pressure_pct: Option<f64>,
    /// Moving average of move_pages throughput, MB/s (0 until a batch is timed).
    measured_mbps: f64,
}

/// Used as the full rate when no cap is configured and nothing was timed yet.
const UNMEASURED_MBPS: f64 = 100.0;

impl Throttle {
    fn lock(&self) -> std::sync::MutexGuard<'_, ThrottleState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A timed move_pages call of `bytes` (the engine, per batch).
    pub fn note_moved(&self, bytes: u64, took: std::time::Duration) {
        let secs = took.as_secs_f64();
        if bytes == 0 || secs < 1e-6 {
            return;
        }
        let mbps = bytes as f64 / 1e6 / secs;
        let mut s = self.lock();
        s.measured_mbps = if s.measured_mbps == 0.0 {
            mbps
        } else {
            0.8 * s.measured_mbps + 0.2 * mbps
        };
    }

    /// One pressure reading (`None`: PSI unreadable, the factor recovers); returns the
    /// cap for the shared bucket, MB/s (0 = none).
    pub fn step(&self, pressure_pct: Option<f64>, cfg: &tierd_config::MigrateConfig) -> u64 {
        let mut s = self.lock();
        s.pressure_pct = pressure_pct;
        s.backoff.step(
            pressure_pct.unwrap_or(0.0),
            cfg.psi_threshold_pct,
            cfg.psi_min_rate_pct,
        );
        s.cap_mbps(cfg)
    }

    /// The cap for the shared bucket under the current factor, MB/s (0 = none).
    pub fn cap_mbps(&self, cfg: &tierd_config::MigrateConfig) -> u64 {
        self.lock().cap_mbps(cfg)
    }

    /// (pressure read last, factor, measured throughput MB/s).
    pub fn snapshot(&self) -> (Option<f64>, f64, f64) {
        let s = self.lock();
        (s.pressure_pct, s.backoff.factor(), s.measured_mbps)
    }
}

impl ThrottleState {
    fn cap_mbps(&self, cfg: &tierd_config::MigrateConfig) -> u64 {
        let f = self.backoff.factor();
        if f >= 1.0 {
            return cfg.rate_limit_mbps;
        }
        let full = match cfg.rate_limit_mbps {
            0 if self.measured_mbps > 0.0 => self.measured_mbps,
            0 => UNMEASURED_MBPS,
            cap => cap as f64,
        };
        ((full * f).round() as u64).max(1)
    }
}

#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use std::sync::Mutex;

    /// Pressure set by the test.
    #[derive(Default)]
    pub struct FakePressure(pub Mutex<f64>);

    impl PressureSource for FakePressure {
        fn memory_some_avg10_pct(&self) -> Result<f64, PressureError> {
            Ok(*self.0.lock().unwrap())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernels_format() {
        let t = "some avg10=12.50 avg60=3.00 avg300=0.61 total=123456\n\
                 full avg10=1.00 avg60=0.00 avg300=0.00 total=1000\n";
        assert_eq!(parse_some_avg10(t), Some(12.5));
        assert_eq!(parse_some_avg10("full avg10=1.00\n"), None);
    }

    #[test]
    fn backs_off_to_the_floor_under_pressure_and_recovers_after() {
        let mut b = Backoff::default();
        let seq: Vec<f64> = [40.0, 40.0, 40.0, 40.0, 40.0]
            .iter()
            .map(|&p| b.step(p, 10.0, 10.0))
            .collect();
        assert_eq!(seq, vec![0.5, 0.25, 0.125, 0.1, 0.1]);
        let seq: Vec<f64> = [2.0, 2.0, 2.0, 2.0, 2.0]
            .iter()
            .map(|&p| b.step(p, 10.0, 10.0))
            .collect();
        assert_eq!(seq, vec![0.2, 0.4, 0.8, 1.0, 1.0]);
        assert_eq!(b.step(90.0, 0.0, 10.0), 1.0, "threshold 0 is off");
    }

    #[test]
    fn the_cap_scales_the_configured_rate_or_the_measured_one() {
        let mut cfg = tierd_config::MigrateConfig {
            psi_threshold_pct: 10.0,
            psi_min_rate_pct: 10.0,
            rate_limit_mbps: 400,
            ..Default::default()
        };
        let t = Throttle::default();
        assert_eq!(
            t.step(Some(5.0), &cfg),
            400,
            "no pressure: the configured cap"
        );
        assert_eq!(t.step(Some(50.0), &cfg), 200);
        assert_eq!(t.step(Some(50.0), &cfg), 100);
        cfg.rate_limit_mbps = 0;
        // No cap configured: the factor scales the measured throughput (300 MB/s).
        t.note_moved(300_000_000, std::time::Duration::from_secs(1));
        assert_eq!(t.cap_mbps(&cfg), 75);
        assert_eq!(t.step(None, &cfg), 150, "unreadable PSI: recovers");
        assert_eq!(t.step(Some(0.0), &cfg), 0, "recovered: no cap again");
        assert_eq!(t.snapshot().1, 1.0);
    }

    #[test]
    fn a_missing_psi_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let e = PsiFile::cgroup(dir.path())
            .memory_some_avg10_pct()
            .unwrap_err()
            .to_string();
        assert!(e.contains("memory.pressure"), "{e}");
        std::fs::write(
            dir.path().join("memory.pressure"),
            "some avg10=7.25 avg60=0\n",
        )
        .unwrap();
        assert_eq!(
            PsiFile::cgroup(dir.path()).memory_some_avg10_pct().unwrap(),
            7.25
        );
    }
}
