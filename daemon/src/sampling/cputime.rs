//! Sampling overhead: CPU time of the kernel threads that sample for tierd (its
//! kdamond) from `/proc/PID/stat`, plus the daemon's own drain time, per wall time.
//! Updated by [`super::SamplingSet::adapt`] at most once per `WINDOW` (the stat
//! counters tick at 10 ms, too coarse for a single 100 ms drain).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(1);

/// CPU time of the calling thread (drain cost as CPU, not wall time: a drain that
/// is preempted should not count the preemption).
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// utime + stime of a task, from `ROOT/PID/stat` (fields 14 and 15, in ticks).
pub fn task_cpu(proc_root: &Path, pid: i32, ticks_per_s: u64) -> Option<Duration> {
    let s = std::fs::read_to_string(proc_root.join(format!("{pid}/stat"))).ok()?;
    // The command name may hold spaces and parentheses: split after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(Duration::from_micros(
        (utime + stime) * 1_000_000 / ticks_per_s.max(1),
    ))
}

pub struct OverheadMeter {
    proc_root: PathBuf,
    ticks_per_s: u64,
    window_start: Instant,
    /// CPU time of each kthread at the window start.
    base: HashMap<i32, Duration>,
    /// The daemon's drain time accumulated in this window.
    drain: Duration,
    pct: f64,
}

impl OverheadMeter {
    pub fn new(proc_root: &Path) -> Self {
        OverheadMeter {
            proc_root: proc_root.to_path_buf(),
            ticks_per_s: procfs::ticks_per_second(),
            window_start: Instant::now(),
            base: HashMap::new(),
            drain: Duration::ZERO,
            pct: 0.0,
        }
    }

    /// Adds the daemon's own time spent draining.
    pub fn add_drain(&mut self, d: Duration) {
        self.drain += d;
    }

    /// Percent of one CPU over the last complete window.
    pub fn pct(&self) -> f64 {
        self.pct
    }

    /// Closes the window when it is long enough; `kthreads` are the sampling threads now.
    pub fn update(&mut self, kthreads: &[i32], now: Instant) {
        let wall = now.saturating_duration_since(self.window_start);
        let mut cpu = self.drain;
        let mut next = HashMap::new();
        for &pid in kthreads {
            if let Some(t) = task_cpu(&self.proc_root, pid, self.ticks_per_s) {
                // A kthread first seen in this window counts from now on.
                let base = self.base.get(&pid).copied().unwrap_or(t);
                cpu += t.saturating_sub(base);
                next.insert(pid, t);
            }
        }
        if wall < WINDOW {
            // Keep the bases of known threads; learn new ones.
            for (pid, t) in next {
                self.base.entry(pid).or_insert(t);
            }
            return;
        }
        self.pct = 100.0 * cpu.as_secs_f64() / wall.as_secs_f64();
        self.base = next;
        self.drain = Duration::ZERO;
        self.window_start = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(root: &Path, pid: i32, utime: u64, stime: u64) {
        std::fs::create_dir_all(root.join(pid.to_string())).unwrap();
        let line = format!(
            "{pid} (kdamond.0 (x)) S 2 0 0 0 -1 2129984 0 0 0 0 {utime} {stime} 0 0 20 0 1 0 5 0 0"
        );
        std::fs::write(root.join(format!("{pid}/stat")), line).unwrap();
    }

    #[test]
    fn reads_utime_and_stime_after_the_command_name() {
        let t = tempfile::tempdir().unwrap();
        stat(t.path(), 7, 30, 20);
        assert_eq!(task_cpu(t.path(), 7, 100), Some(Duration::from_millis(500)));
        assert_eq!(task_cpu(t.path(), 8, 100), None);
    }

    #[test]
    fn overhead_is_kthread_and_drain_time_per_wall_time() {
        let t = tempfile::tempdir().unwrap();
        let mut m = OverheadMeter::new(t.path());
        m.ticks_per_s = 100;
        let t0 = Instant::now();
        m.window_start = t0;
        stat(t.path(), 7, 0, 100);
        m.update(&[7], t0 + Duration::from_millis(100));
        assert_eq!(m.pct(), 0.0, "window not complete yet");
        // +20 ticks = 200 ms of kthread time, +100 ms of drains, over 2 s.
        stat(t.path(), 7, 0, 120);
        m.add_drain(Duration::from_millis(100));
        m.update(&[7], t0 + Duration::from_secs(2));
        assert!((m.pct() - 15.0).abs() < 1e-9, "{}", m.pct());
    }
}
