//! The set of sampling backends the daemon runs, with the adaptive rate controller.
//! The tiering loop owns one `SamplingSet` and calls it every drain interval:
//! `sync_targets` → `drain` → `adapt`, and `status` for tierctl and metrics.

use super::cputime::{self, OverheadMeter};
use super::rate::{self, Observation, RateController};
use super::{damon, fault, hw, AccessSample, Sampler};
use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::time::Instant;
use tierd_api::{BackendStatus, SamplingStatus};
use tierd_config::{BackendKind, SamplingConfig};

/// A sample at least this heavy marks its block hot for the churn measure.
const HOT_WEIGHT: f64 = 0.5;

enum Slot {
    On {
        sampler: Box<dyn Sampler>,
        tracked: BTreeSet<i32>,
        /// The last error, logged once until it changes.
        last_error: Option<String>,
    },
    Off(BackendStatus),
}

pub struct SamplingSet {
    cfg: SamplingConfig,
    slots: Vec<Slot>,
    rate: RateController,
    meter: OverheadMeter,
    prev_hot: HashSet<(i32, u64)>,
    churn: f64,
}

fn open(kind: BackendKind, cfg: &SamplingConfig) -> Result<Box<dyn Sampler>, super::SamplerError> {
    Ok(match kind {
        BackendKind::Damon => Box::new(damon::open(&cfg.damon)?),
        BackendKind::Fault => Box::new(fault::open()?),
        BackendKind::HwSample => Box::new(hw::open()?),
    })
}

fn kind_name(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::Damon => "damon",
        BackendKind::Fault => "fault",
        BackendKind::HwSample => "hw-sample",
    }
}

impl SamplingSet {
    /// Tries every configured backend; the ones that cannot run report why in status.
    pub fn new(cfg: &SamplingConfig) -> SamplingSet {
        let mut slots = Vec::new();
        for &kind in &cfg.backends {
            match open(kind, cfg) {
                Ok(sampler) => {
                    let st = sampler.status();
                    tracing::info!(backend = %st.name, detail = %st.detail, "sampling backend on");
                    slots.push(Slot::On {
                        sampler,
                        tracked: BTreeSet::new(),
                        last_error: None,
                    });
                }
                Err(e) => {
                    tracing::warn!(backend = kind_name(kind), reason = %e, "sampling backend off");
                    slots.push(Slot::Off(BackendStatus {
                        name: kind_name(kind).into(),
                        active: false,
                        detail: e.to_string(),
                    }));
                }
            }
        }
        Self::with_slots(cfg, slots)
    }

    /// A set of given samplers (tests drive the tiering loop with fakes).
    #[cfg(test)]
    pub fn of(cfg: &SamplingConfig, samplers: Vec<Box<dyn Sampler>>) -> SamplingSet {
        let slots = samplers
            .into_iter()
            .map(|sampler| Slot::On {
                sampler,
                tracked: BTreeSet::new(),
                last_error: None,
            })
            .collect();
        Self::with_slots(cfg, slots)
    }

    fn with_slots(cfg: &SamplingConfig, slots: Vec<Slot>) -> SamplingSet {
        let d = &cfg.damon;
        SamplingSet {
            cfg: cfg.clone(),
            slots,
            rate: RateController::new(d.sample_us, d.min_sample_us, d.max_sample_us),
            meter: OverheadMeter::new(Path::new("/proc")),
            prev_hot: HashSet::new(),
            churn: 0.0,
        }
    }

    /// Tracks exactly these pids from now on (track new ones, untrack gone ones).
    pub fn sync_targets(&mut self, pids: &[i32]) {
        let want: BTreeSet<i32> = pids.iter().copied().collect();
        for slot in &mut self.slots {
            let Slot::On {
                sampler,
                tracked,
                last_error,
            } = slot
            else {
                continue;
            };
            for gone in tracked.difference(&want).copied().collect::<Vec<_>>() {
                sampler.untrack(gone);
                tracked.remove(&gone);
            }
            for &pid in want.difference(&tracked.clone()) {
                match sampler.track(pid) {
                    Ok(()) => {
                        tracked.insert(pid);
                    }
                    Err(e) => note_error(sampler.name(), last_error, e.to_string()),
                }
            }
        }
    }

    /// Appends what every active backend saw since the last drain.
    pub fn drain(&mut self, out: &mut Vec<AccessSample>) {
        let t0 = cputime::thread_cpu();
        let before = out.len();
        for slot in &mut self.slots {
            if let Slot::On {
                sampler,
                last_error,
                ..
            } = slot
            {
                if let Err(e) = sampler.drain(out) {
                    note_error(sampler.name(), last_error, e.to_string());
                }
            }
        }
        let hot = rate::hot_blocks(&out[before..], HOT_WEIGHT);
        // A drain without samples (no aggregation ended in it) says nothing new.
        if !hot.is_empty() {
            // The first picture has nothing to differ from.
            self.churn = if self.prev_hot.is_empty() {
                0.0
            } else {
                rate::churn(&self.prev_hot, &hot)
            };
            self.prev_hot = hot;
        } else {
            self.churn = 0.0;
        }
        self.meter
            .add_drain(cputime::thread_cpu().saturating_sub(t0));
    }

    /// The backend whose rate the controller drives (the first with a period).
    fn rated(&mut self) -> Option<&mut Box<dyn Sampler>> {
        self.slots.iter_mut().find_map(|s| match s {
            Slot::On { sampler, .. } if sampler.period_us() > 0 => Some(sampler),
            _ => None,
        })
    }

    /// One rate-controller step; `managed_bytes` sizes the overhead budget.
    pub fn adapt(&mut self, managed_bytes: u64) {
        let kthreads: Vec<i32> = self
            .slots
            .iter()
            .flat_map(|s| match s {
                Slot::On { sampler, .. } => sampler.kthreads(),
                Slot::Off(_) => Vec::new(),
            })
            .collect();
        self.meter.update(&kthreads, Instant::now());
        if !self.cfg.adaptive {
            return;
        }
        let obs = Observation {
            churn: self.churn,
            overhead_pct: self.meter.pct(),
            budget_pct: rate::budget_pct(self.cfg.budget_pct_per_gb, managed_bytes),
            checks_per_aggr: (self.cfg.damon.aggr_ms * 1000) as f64
                / self.rate.period_us().max(1) as f64,
        };
        let (decision, period) = self.rate.step(&obs);
        if decision == rate::Decision::Keep {
            return;
        }
        if let Some(s) = self.rated() {
            let applied = s.set_period_us(period);
            tracing::debug!(?decision, ?obs, period_us = applied, "sampling rate");
            self.rate.set_period_us(applied);
        }
    }

    pub fn status(&self) -> SamplingStatus {
        let backends = self
            .slots
            .iter()
            .map(|s| match s {
                Slot::On { sampler, .. } => sampler.status(),
                Slot::Off(st) => st.clone(),
            })
            .collect();
        let period_us = self
            .slots
            .iter()
            .find_map(|s| match s {
                Slot::On { sampler, .. } if sampler.period_us() > 0 => Some(sampler.period_us()),
                _ => None,
            })
            .unwrap_or(0);
        SamplingStatus {
            backends,
            interval_ms: period_us.div_ceil(1000),
            overhead_pct: self.meter.pct(),
            budget_pct_per_gb: self.cfg.budget_pct_per_gb,
        }
    }

    /// Applies a reloaded `[sampling]` section. A changed backend list reopens the
    /// backends (targets are re-tracked at the next `sync_targets`).
    pub fn set_config(&mut self, cfg: &SamplingConfig) {
        if cfg.backends != self.cfg.backends {
            // Drop the old backends first: the kdamond and programs go with them.
            self.slots.clear();
            *self = SamplingSet::new(cfg);
            return;
        }
        let d = &cfg.damon;
        if d != &self.cfg.damon {
            self.rate
                .reconfigure(d.sample_us, d.min_sample_us, d.max_sample_us);
            if let Some(s) = self.rated() {
                s.set_period_us(d.sample_us);
            }
        }
        for slot in &mut self.slots {
            if let Slot::On { sampler, .. } = slot {
                sampler.reconfigure(cfg);
            }
        }
        self.cfg = cfg.clone();
    }
}

fn note_error(backend: &str, last: &mut Option<String>, e: String) {
    if last.as_deref() != Some(e.as_str()) {
        tracing::warn!(backend, error = %e, "sampling backend error");
        *last = Some(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::SamplerError;
    use std::sync::{Arc, Mutex};

    /// A backend that returns scripted samples and records tracking.
    struct Scripted {
        tracked: Arc<Mutex<BTreeSet<i32>>>,
        next: Arc<Mutex<Vec<AccessSample>>>,
        period_us: u64,
    }

    impl Sampler for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn track(&mut self, pid: i32) -> Result<(), SamplerError> {
            if pid < 0 {
                return Err(SamplerError::Track {
                    backend: "scripted",
                    pid,
                    msg: "bad pid".into(),
                });
            }
            self.tracked.lock().unwrap().insert(pid);
            Ok(())
        }
        fn untrack(&mut self, pid: i32) {
            self.tracked.lock().unwrap().remove(&pid);
        }
        fn drain(&mut self, out: &mut Vec<AccessSample>) -> Result<(), SamplerError> {
            out.append(&mut self.next.lock().unwrap());
            Ok(())
        }
        fn status(&self) -> BackendStatus {
            BackendStatus {
                name: "scripted".into(),
                active: true,
                detail: String::new(),
            }
        }
        fn period_us(&self) -> u64 {
            self.period_us
        }
        fn set_period_us(&mut self, p: u64) -> u64 {
            self.period_us = p;
            p
        }
    }

    type Shared<T> = Arc<Mutex<T>>;

    fn set() -> (
        SamplingSet,
        Shared<BTreeSet<i32>>,
        Shared<Vec<AccessSample>>,
    ) {
        let tracked = Arc::new(Mutex::new(BTreeSet::new()));
        let next = Arc::new(Mutex::new(Vec::new()));
        let cfg = SamplingConfig::default();
        let slots = vec![
            Slot::On {
                sampler: Box::new(Scripted {
                    tracked: tracked.clone(),
                    next: next.clone(),
                    period_us: cfg.damon.sample_us,
                }),
                tracked: BTreeSet::new(),
                last_error: None,
            },
            Slot::Off(BackendStatus {
                name: "hw-sample".into(),
                active: false,
                detail: "no PMU".into(),
            }),
        ];
        (SamplingSet::with_slots(&cfg, slots), tracked, next)
    }

    fn hot(start: u64) -> AccessSample {
        AccessSample {
            pid: 1,
            start,
            end: start + (32 << 20),
            weight: 1.0,
        }
    }

    #[test]
    fn targets_follow_the_managed_pids() {
        let (mut s, tracked, _) = set();
        s.sync_targets(&[1, 2, -3]);
        assert_eq!(
            tracked.lock().unwrap().iter().copied().collect::<Vec<_>>(),
            vec![1, 2]
        );
        s.sync_targets(&[2, 4]);
        assert_eq!(
            tracked.lock().unwrap().iter().copied().collect::<Vec<_>>(),
            vec![2, 4]
        );
    }

    #[test]
    fn status_lists_off_backends_with_the_reason_and_the_rate() {
        let (s, _, _) = set();
        let st = s.status();
        assert_eq!(st.backends.len(), 2);
        assert!(!st.backends[1].active);
        assert_eq!(st.backends[1].detail, "no PMU");
        assert_eq!(st.interval_ms, 5);
    }

    #[test]
    fn a_moving_hot_set_raises_the_rate() {
        let (mut s, _, next) = set();
        let mut out = Vec::new();
        next.lock().unwrap().push(hot(0));
        s.drain(&mut out);
        s.adapt(1 << 30);
        let p0 = s.status().interval_ms;
        next.lock().unwrap().push(hot(1 << 30));
        s.drain(&mut out);
        assert_eq!(s.churn, 1.0);
        s.adapt(1 << 30);
        assert!(
            s.status().interval_ms < p0,
            "{} !< {p0}",
            s.status().interval_ms
        );
        assert_eq!(out.len(), 2);
    }
}
