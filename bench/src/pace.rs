//! Fixed wall-clock steps: a loop body runs once per `step`; a body that overruns its
//! slot makes the loop skip the missed ticks instead of bursting to catch up, and the
//! pacer reports how many steps ran against how many the duration planned.

use std::time::{Duration, Instant};

pub struct Pacer {
    step: Duration,
    start: Instant,
    total: Duration,
    next: u64,
    done: u64,
    late: u64,
}

impl Pacer {
    /// Steps of `step` for `total` wall-clock time, starting now.
    pub fn new(step: Duration, total: Duration) -> Pacer {
        Pacer {
            step,
            start: Instant::now(),
            total,
            next: 0,
            done: 0,
            late: 0,
        }
    }

    /// Waits for the next tick; false once the duration is over. Call once per step,
    /// before the step's work.
    pub fn tick(&mut self) -> bool {
        let now = self.start.elapsed();
        if now >= self.total {
            return false;
        }
        let due = self.step * self.next as u32;
        if now < due {
            std::thread::sleep(due - now);
        } else if self.next > 0 && now >= due + self.step {
            self.late += 1;
        }
        // Skip ticks already missed: the next slot starts after now.
        let now = self.start.elapsed();
        let slot = (now.as_nanos() / self.step.as_nanos().max(1)) as u64;
        self.next = slot.max(self.next) + 1;
        if now >= self.total {
            return false;
        }
        self.done += 1;
        true
    }

    /// Seconds since start.
    pub fn elapsed_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    pub fn steps_done(&self) -> u64 {
        self.done
    }

    /// Steps the duration had room for.
    pub fn steps_planned(&self) -> u64 {
        (self.total.as_nanos() / self.step.as_nanos().max(1)) as u64
    }

    /// Steps that started at least one full step late (the body could not keep up).
    pub fn steps_late(&self) -> u64 {
        self.late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_steps() {
        let mut p = Pacer::new(Duration::from_millis(10), Duration::from_millis(100));
        let mut n = 0;
        while p.tick() {
            n += 1;
        }
        assert_eq!(p.steps_planned(), 10);
        assert!((8..=10).contains(&n), "{n}");
        assert_eq!(p.steps_done(), n);
    }

    #[test]
    fn slow_body_skips_ticks() {
        let mut p = Pacer::new(Duration::from_millis(5), Duration::from_millis(60));
        while p.tick() {
            std::thread::sleep(Duration::from_millis(16));
        }
        assert!(p.steps_done() <= 5, "{}", p.steps_done());
        assert!(p.steps_late() >= 1);
    }
}
