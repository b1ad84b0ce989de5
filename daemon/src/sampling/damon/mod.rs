//! The `damon` backend: DAMON virtual-address monitoring of the managed processes by
//! tierd's own kdamond ([`sysfs`]), with `ebpf/damon.bpf.c` on the tracepoint
//! `damon:damon_aggregated` summing each region's access count in a BPF hash map.
//!
//! Target changes are applied lazily, at the next drain: the map is drained with the
//! old target-id → pid mapping first, then the kdamond is reconfigured and restarted
//! (its new kthread pid replaces the old one in the program's filter, so late events
//! of the old run are recognisable and dropped). Drained by [`super::SamplingSet`]
//! every `sampling.drain_interval_ms`.

mod aggregate;
pub mod ledger;
pub mod sysfs;

use super::abi::{DamonKey, DamonVal};
use super::bpf::{self, BpfHash, DrainMap, PidFilter, Stats};
use super::{tracefs, AccessSample, Sampler, SamplerError};
use aggregate::Drained;
use std::path::Path;
use std::time::{Duration, Instant};
use sysfs::{Attrs, KdamondCtl, SysfsKdamond};
use tierd_api::BackendStatus;
use tierd_config::{DamonConfig, SamplingConfig};

const NAME: &str = "damon";
const OBJECT: &str = "damon.bpf.o";
const PROGRAM: &str = "tierd_damon_aggregated";
/// Wait between attempts to start the kdamond after a failure.
const RETRY: Duration = Duration::from_secs(5);
/// Drains between checks that the kdamond still runs.
const RUNNING_CHECK_DRAINS: u64 = 10;

pub struct DamonSampler<M, F, K> {
    regions: M,
    filter: F,
    kdamond: K,
    stats: Option<Stats>,
    _attached: Option<Box<dyn Send>>,
    attrs: Attrs,
    /// Pids to monitor, in target-id order once applied.
    wanted: Vec<i32>,
    /// Pids the running kdamond monitors; index = DAMON target id.
    applied: Vec<i32>,
    kthread: Option<u32>,
    dirty: bool,
    error: Option<String>,
    retry_at: Option<Instant>,
    last: Drained,
    buf: Vec<(DamonKey, DamonVal)>,
    seen_updates: u64,
    /// Drains since the last running check.
    drains: u64,
}

pub type RealDamon = DamonSampler<
    BpfHash<DamonKey, DamonVal>,
    aya::maps::HashMap<aya::maps::MapData, u32, u8>,
    SysfsKdamond,
>;

/// DAMON attributes from the config.
pub fn attrs(cfg: &DamonConfig, sample_us: u64) -> Attrs {
    Attrs {
        sample_us,
        aggr_us: cfg.aggr_ms * 1000,
        min_regions: cfg.min_regions,
        max_regions: cfg.max_regions,
    }
}

/// Checks for DAMON's sysfs interface, loads and attaches the program.
pub fn open(cfg: &DamonConfig) -> Result<RealDamon, SamplerError> {
    let err = |msg: String| SamplerError::Unavailable { backend: NAME, msg };
    let admin = Path::new(sysfs::ADMIN);
    if !admin.join("nr_kdamonds").exists() {
        return Err(err(format!(
            "{} absent: kernel without CONFIG_DAMON_SYSFS / CONFIG_DAMON_VADDR",
            admin.display()
        )));
    }
    bpf::ensure_tracefs().map_err(|e| err(e.to_string()))?;
    let off = tracefs::offsets(
        Path::new(tracefs::ROOT),
        "damon",
        "damon_aggregated",
        &[
            ("target_id", 8),
            ("nr_regions", 4),
            ("start", 8),
            ("end", 8),
            ("nr_accesses", 4),
        ],
    )
    .map_err(|e| err(e.to_string()))?;
    let globals = [
        ("off_target_id", off[0]),
        ("off_nr_regions", off[1]),
        ("off_start", off[2]),
        ("off_end", off[3]),
        ("off_nr_accesses", off[4]),
    ];
    let mut obj = bpf::load(OBJECT, bpf::DAMON_OBJ, &globals).map_err(|e| err(e.to_string()))?;
    bpf::attach_tracepoint(&mut obj, OBJECT, PROGRAM, "damon", "damon_aggregated").map_err(err)?;
    let regions =
        bpf::hash_map(&mut obj, OBJECT, "damon_regions").map_err(|e| err(e.to_string()))?;
    let kdamonds = bpf::hash_map(&mut obj, OBJECT, "kdamonds").map_err(|e| err(e.to_string()))?;
    let stats = bpf::stats(&mut obj, OBJECT).map_err(|e| err(e.to_string()))?;
    let mut s = DamonSampler::new(
        BpfHash(regions),
        kdamonds,
        SysfsKdamond::new(admin),
        attrs(cfg, cfg.sample_us),
    );
    s.stats = Some(stats);
    s._attached = Some(Box::new(obj));
    Ok(s)
}

impl<M, F, K> DamonSampler<M, F, K>
where
    M: DrainMap<DamonKey, DamonVal>,
    F: PidFilter,
    K: KdamondCtl,
{
    pub fn new(regions: M, filter: F, kdamond: K, attrs: Attrs) -> Self {
        DamonSampler {
            regions,
            filter,
            kdamond,
            stats: None,
            _attached: None,
            attrs,
            wanted: Vec::new(),
            applied: Vec::new(),
            kthread: None,
            dirty: false,
            error: None,
            retry_at: None,
            last: Drained::default(),
            buf: Vec::new(),
            seen_updates: 0,
            drains: 0,
        }
    }

    /// Applies new region bounds / aggregation interval at the next drain.
    pub fn set_attrs(&mut self, attrs: Attrs) {
        if attrs != self.attrs {
            self.attrs = attrs;
            self.dirty = true;
        }
    }

    /// The kthread doing the monitoring, whose CPU time is this backend's cost.
    pub fn kthread(&self) -> Option<u32> {
        self.kthread
    }

    /// Restarts the kdamond on the wanted pids (or stops it when there are none).
    fn reconfigure(&mut self) {
        if let Some(t) = self.retry_at {
            if Instant::now() < t {
                return;
            }
        }
        if let Some(old) = self.kthread.take() {
            self.filter.remove(old);
        }
        self.applied.clear();
        let res = if self.wanted.is_empty() {
            self.kdamond.stop().map(|()| None)
        } else {
            self.kdamond.apply(&self.wanted, &self.attrs).map(Some)
        };
        match res.map_err(|e| e.to_string()).and_then(|kt| {
            if let Some(kt) = kt {
                self.filter.add(kt)?;
            }
            Ok(kt)
        }) {
            Ok(kt) => {
                self.kthread = kt;
                self.applied = if kt.is_some() {
                    self.wanted.clone()
                } else {
                    Vec::new()
                };
                self.dirty = false;
                self.error = None;
                self.retry_at = None;
                tracing::info!(kthread = ?kt, targets = ?self.applied, "DAMON: monitoring");
            }
            Err(e) => {
                if self.error.as_deref() != Some(e.as_str()) {
                    tracing::warn!(error = %e, "DAMON: cannot start monitoring");
                }
                self.error = Some(e);
                self.retry_at = Some(Instant::now() + RETRY);
            }
        }
    }
}

impl<M, F, K> Sampler for DamonSampler<M, F, K>
where
    M: DrainMap<DamonKey, DamonVal>,
    F: PidFilter,
    K: KdamondCtl,
{
    fn name(&self) -> &'static str {
        NAME
    }

    fn track(&mut self, pid: i32) -> Result<(), SamplerError> {
        if !self.wanted.contains(&pid) {
            self.wanted.push(pid);
            self.dirty = true;
        }
        Ok(())
    }

    fn untrack(&mut self, pid: i32) {
        let before = self.wanted.len();
        self.wanted.retain(|&p| p != pid);
        self.dirty |= self.wanted.len() != before;
    }

    fn drain(&mut self, out: &mut Vec<AccessSample>) -> Result<(), SamplerError> {
        self.buf.clear();
        let changed = self
            .stats
            .as_ref()
            .is_none_or(|st| st.changed_since(&mut self.seen_updates));
        let drained = if changed {
            self.regions.drain_into(&mut self.buf)
        } else {
            Ok(())
        };
        let checks = self.attrs.aggr_us as f64 / self.attrs.sample_us.max(1) as f64;
        let before = out.len();
        self.last = aggregate::to_samples(&self.buf, self.kthread, &self.applied, checks, out);
        // Samples of a pid untracked since the last drain are no longer wanted.
        let fresh = out.split_off(before);
        out.extend(fresh.into_iter().filter(|s| self.wanted.contains(&s.pid)));
        // The kdamond stops by itself when all its targets exited (checked every
        // RUNNING_CHECK_DRAINS drains: a sysfs read is slow under emulation).
        self.drains += 1;
        let check = self.drains >= RUNNING_CHECK_DRAINS;
        if check {
            self.drains = 0;
        }
        let died = self.kthread.is_some() && check && !self.kdamond.running();
        if self.dirty || died {
            self.reconfigure();
        }
        drained.map_err(|msg| SamplerError::Drain { backend: NAME, msg })
    }

    fn status(&self) -> BackendStatus {
        let dropped = self.stats.as_ref().map_or(0, |s| s.dropped());
        let (active, detail) = match &self.error {
            Some(e) => (false, format!("cannot monitor: {e}")),
            None => (
                true,
                format!(
                    "{} (kthread {}), {} targets, sample {} us, aggr {} us, regions {}..{} \
                     (last drain: {} accessed, up to {} per target); tracepoint \
                     damon:damon_aggregated; {dropped} regions dropped (map full)",
                    self.kdamond.describe(),
                    self.kthread.map_or("-".into(), |k| k.to_string()),
                    self.applied.len(),
                    self.attrs.sample_us,
                    self.attrs.aggr_us,
                    self.attrs.min_regions,
                    self.attrs.max_regions,
                    self.last.regions,
                    self.last.max_nr_regions,
                ),
            ),
        };
        BackendStatus {
            name: NAME.into(),
            active,
            detail,
        }
    }

    fn period_us(&self) -> u64 {
        self.attrs.sample_us
    }

    fn set_period_us(&mut self, period_us: u64) -> u64 {
        if period_us == self.attrs.sample_us {
            return period_us;
        }
        let old = self.attrs;
        self.attrs.sample_us = period_us;
        if let Err(e) = self.kdamond.set_sample_us(&self.attrs) {
            tracing::warn!(error = %e, "DAMON: cannot change the sampling interval");
            self.attrs = old;
        }
        self.attrs.sample_us
    }

    fn kthreads(&self) -> Vec<i32> {
        self.kthread.map(|k| vec![k as i32]).unwrap_or_default()
    }

    fn reconfigure(&mut self, cfg: &SamplingConfig) {
        self.set_attrs(attrs(&cfg.damon, self.attrs.sample_us));
    }
}

#[cfg(test)]
mod tests;
