//! The adaptive sampling-rate controller (Chameleon / Memtis style). Pure logic,
//! stepped by [`super::SamplingSet::adapt`] once per drain interval.
//!
//! * The hot-set picture **churns** (the set of hot 2 MiB blocks changes a lot
//!   between drains) or is **coarse** (too few checks per aggregation to tell hot
//!   from warm): sample faster, if the overhead leaves room.
//! * The measured overhead exceeds the budget (`budget_pct_per_gb` × managed GiB,
//!   at least `MIN_BUDGET_PCT`): sample slower, whatever the picture.
//! * The picture has been calm for a while: drift back to the configured period.
//!
//! Each change holds for `HOLD_STEPS` steps so the overhead measurement (taken over
//! about a second) reflects the new rate before the next decision.

use std::collections::HashSet;

/// Block size of the hot-set picture used to measure churn.
pub const BLOCK_SHIFT: u32 = 21;
/// Churn (Jaccard distance) above which the picture is uncertain.
pub const CHURN_HIGH: f64 = 0.3;
/// Churn below which a step counts as calm.
pub const CHURN_LOW: f64 = 0.05;
/// Calm steps before relaxing toward the configured period.
pub const CALM_STEPS: u32 = 20;
/// Steps a change holds before the next one.
pub const HOLD_STEPS: u32 = 10;
/// Fewer checks per aggregation than this makes DAMON's counts coarse.
pub const MIN_CHECKS: f64 = 10.0;
/// The budget never drops below this (percent of one CPU), however little is managed.
pub const MIN_BUDGET_PCT: f64 = 0.5;
/// Only faster when the overhead is below this share of the budget.
const HEADROOM: f64 = 0.7;
const FASTER: f64 = 1.0 / 1.5;
const SLOWER: f64 = 1.5;
const RELAX: f64 = 1.2;

/// One step's view of the world.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Jaccard distance between this drain's hot blocks and the previous drain's.
    pub churn: f64,
    /// Measured sampling overhead, percent of one CPU.
    pub overhead_pct: f64,
    /// Allowed overhead, percent of one CPU.
    pub budget_pct: f64,
    /// Checks per aggregation at the current period (aggr / sample).
    pub checks_per_aggr: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Keep,
    Faster,
    Slower,
    Relax,
}

#[derive(Debug, Clone)]
pub struct RateController {
    period_us: u64,
    base_us: u64,
    min_us: u64,
    max_us: u64,
    hold: u32,
    calm: u32,
}

impl RateController {
    pub fn new(base_us: u64, min_us: u64, max_us: u64) -> Self {
        RateController {
            period_us: base_us.clamp(min_us, max_us),
            base_us,
            min_us,
            max_us,
            hold: 0,
            calm: 0,
        }
    }

    pub fn period_us(&self) -> u64 {
        self.period_us
    }

    /// Follows the period a backend actually applied.
    pub fn set_period_us(&mut self, period_us: u64) {
        self.period_us = period_us;
    }

    /// New bounds from a reloaded config.
    pub fn reconfigure(&mut self, base_us: u64, min_us: u64, max_us: u64) {
        *self = RateController {
            hold: 0,
            calm: 0,
            ..RateController::new(base_us, min_us, max_us)
        };
    }

    /// One step; returns the decision and the period to apply.
    pub fn step(&mut self, o: &Observation) -> (Decision, u64) {
        self.calm = if o.churn < CHURN_LOW {
            self.calm + 1
        } else {
            0
        };
        if self.hold > 0 {
            self.hold -= 1;
            return (Decision::Keep, self.period_us);
        }
        let scaled =
            |p: u64, f: f64| ((p as f64 * f).round() as u64).clamp(self.min_us, self.max_us);
        let (d, p) = if o.overhead_pct > o.budget_pct {
            (Decision::Slower, scaled(self.period_us, SLOWER))
        } else if (o.churn > CHURN_HIGH || o.checks_per_aggr < MIN_CHECKS)
            && o.overhead_pct < HEADROOM * o.budget_pct
        {
            (Decision::Faster, scaled(self.period_us, FASTER))
        } else if self.calm >= CALM_STEPS && self.period_us < self.base_us {
            (
                Decision::Relax,
                scaled(self.period_us, RELAX).min(self.base_us),
            )
        } else {
            (Decision::Keep, self.period_us)
        };
        if p == self.period_us {
            return (Decision::Keep, p);
        }
        self.period_us = p;
        self.hold = HOLD_STEPS;
        self.calm = 0;
        (d, p)
    }
}

/// Overhead budget in percent of one CPU for `managed_bytes` of managed memory.
pub fn budget_pct(budget_pct_per_gb: f64, managed_bytes: u64) -> f64 {
    (budget_pct_per_gb * managed_bytes as f64 / (1u64 << 30) as f64).max(MIN_BUDGET_PCT)
}

/// The hot blocks of one drain: `(pid, address >> BLOCK_SHIFT)` of samples whose
/// weight is at least `min_weight`.
pub fn hot_blocks<'a>(
    samples: impl IntoIterator<Item = &'a super::AccessSample>,
    min_weight: f64,
) -> HashSet<(i32, u64)> {
    let mut set = HashSet::new();
    for s in samples {
        if s.weight < min_weight || s.end <= s.start {
            continue;
        }
        for b in (s.start >> BLOCK_SHIFT)..=((s.end - 1) >> BLOCK_SHIFT) {
            set.insert((s.pid, b));
        }
    }
    set
}

/// Jaccard distance: 0 for identical sets (or both empty), 1 for disjoint ones.
pub fn churn(prev: &HashSet<(i32, u64)>, cur: &HashSet<(i32, u64)>) -> f64 {
    let union = prev.union(cur).count();
    if union == 0 {
        return 0.0;
    }
    1.0 - prev.intersection(cur).count() as f64 / union as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::AccessSample;

    fn obs(churn: f64, overhead_pct: f64) -> Observation {
        Observation {
            churn,
            overhead_pct,
            budget_pct: 2.0,
            checks_per_aggr: 20.0,
        }
    }

    fn settle(c: &mut RateController) {
        for _ in 0..HOLD_STEPS {
            assert_eq!(c.step(&obs(0.1, 1.0)).0, Decision::Keep);
        }
    }

    #[test]
    fn churn_raises_the_rate_within_bounds() {
        let mut c = RateController::new(5000, 1000, 50_000);
        assert_eq!(c.step(&obs(0.8, 0.1)), (Decision::Faster, 3333));
        settle(&mut c);
        assert_eq!(c.step(&obs(0.8, 0.1)), (Decision::Faster, 2222));
        for _ in 0..100 {
            c.step(&obs(0.8, 0.1));
        }
        assert_eq!(c.period_us(), 1000, "clamped at min_sample_us");
    }

    #[test]
    fn over_budget_lowers_the_rate_even_when_churning() {
        let mut c = RateController::new(5000, 1000, 50_000);
        assert_eq!(c.step(&obs(0.9, 2.5)), (Decision::Slower, 7500));
        for _ in 0..200 {
            c.step(&obs(0.9, 9.0));
        }
        assert_eq!(c.period_us(), 50_000, "clamped at max_sample_us");
    }

    #[test]
    fn no_faster_without_headroom() {
        let mut c = RateController::new(5000, 1000, 50_000);
        assert_eq!(c.step(&obs(0.9, 1.8)), (Decision::Keep, 5000));
    }

    #[test]
    fn coarse_counts_raise_the_rate() {
        let mut c = RateController::new(5000, 1000, 50_000);
        let o = Observation {
            checks_per_aggr: 4.0,
            ..obs(0.0, 0.1)
        };
        assert_eq!(c.step(&o).0, Decision::Faster);
    }

    #[test]
    fn calm_relaxes_back_to_the_configured_period_only() {
        let mut c = RateController::new(5000, 1000, 50_000);
        c.step(&obs(0.9, 0.1));
        settle(&mut c);
        let mut last = c.period_us();
        for _ in 0..500 {
            c.step(&obs(0.0, 0.1));
            assert!(c.period_us() >= last);
            last = c.period_us();
        }
        assert_eq!(c.period_us(), 5000);
    }

    #[test]
    fn budget_scales_with_managed_memory_with_a_floor() {
        assert_eq!(budget_pct(2.0, 4 << 30), 8.0);
        assert_eq!(budget_pct(2.0, 0), MIN_BUDGET_PCT);
    }

    #[test]
    fn churn_is_jaccard_distance_of_hot_blocks() {
        let s = |start: u64, w: f64| AccessSample {
            pid: 1,
            start,
            end: start + (4 << 20),
            weight: w,
        };
        let a = hot_blocks(&[s(0, 1.0), s(64 << 20, 0.01)], 0.1);
        assert_eq!(a.len(), 2, "the cold sample is not hot");
        let b = hot_blocks(&[s(2 << 20, 1.0)], 0.1);
        assert!((churn(&a, &b) - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(churn(&a, &a), 0.0);
        assert_eq!(churn(&HashSet::new(), &HashSet::new()), 0.0);
    }
}
