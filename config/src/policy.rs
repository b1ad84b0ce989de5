//! `[policy]`: promotion/demotion (TPP-style watermarks, Chameleon-style heat classes).

use crate::{Amount, Invalid};
use serde::{Deserialize, Serialize};

/// The policies a managed process can run under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyName {
    /// Proactive demotion with headroom + heat-ranked promotion (default).
    Tpp,
    /// Demote by age since last access, promote on reuse.
    LruTiered,
    /// Keep everything on one tier (`static_tier`).
    Static,
    /// Observe only: sample and report, never move.
    Off,
}

impl PolicyName {
    pub const ALL: [PolicyName; 4] = [
        PolicyName::Tpp,
        PolicyName::LruTiered,
        PolicyName::Static,
        PolicyName::Off,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PolicyName::Tpp => "tpp",
            PolicyName::LruTiered => "lru-tiered",
            PolicyName::Static => "static",
            PolicyName::Off => "off",
        }
    }

    /// Parses a name as `tierctl manage --policy` takes it.
    pub fn parse(s: &str) -> Result<PolicyName, String> {
        PolicyName::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = PolicyName::ALL.iter().map(|p| p.as_str()).collect();
                format!("unknown policy {s:?}; known: {}", names.join(", "))
            })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Policy of a process managed without `--policy`.
    pub default_policy: PolicyName,
    /// Decision period, ms.
    pub interval_ms: u64,
    /// Demote proactively while a fast node has less free memory than this.
    pub demote_watermark: Amount,
    /// Promotions never take a fast node's free memory below this.
    pub promote_watermark: Amount,
    /// While a fast node has less free memory than this, data idle for `cold_age_ms`
    /// is demoted in the background, so the next burst of promotions (or new
    /// allocations) finds room without waiting for demotions. `0%` turns it off.
    pub idle_demote_watermark: Amount,
    /// A plan holds about this much migration work (at the measured migration rate);
    /// the next plan is made when the worker finishes it, on fresh heat.
    pub plan_horizon_ms: u64,
    /// A region must stay hot this long before it is promoted.
    pub hot_threshold_ms: u64,
    /// A region is cold once unaccessed this long (lru-tiered demotes by this age).
    pub cold_age_ms: u64,
    /// Promotion and demotion caps, MB/s (0 = no cap beyond `migrate.rate_limit_mbps`).
    pub promote_rate_mbps: u64,
    pub demote_rate_mbps: u64,
    /// A page stays at least this long where it was moved to.
    pub min_residency_ms: u64,
    /// A slow region must be this many times hotter than the fast region it evicts.
    pub hysteresis: f64,
    /// Window for counting ping-pong (pages moved more than twice).
    pub pingpong_window_ms: u64,
    /// Tier the `static` policy pins to (0 = fastest).
    pub static_tier: u32,
    /// Set the kernel's numa_balancing to this while tierd runs (restored on exit);
    /// unset = leave it as found.
    pub kernel_numa_balancing: Option<u32>,
    /// The kernel's NUMA scanner and its promotion, set while tierd runs (restored on
    /// exit), unset = leave as found. With `kernel_numa_balancing = 2` the scanner
    /// unmaps only slow-tier pages, so a page written on the slow tier takes a NUMA
    /// hint fault (and, unless the rate limit is 0, a promotion) within about one scan
    /// period: `/sys/kernel/debug/sched/numa_balancing/scan_period_min_ms`.
    pub kernel_numa_scan_period_min_ms: Option<u64>,
    /// `/sys/kernel/debug/sched/numa_balancing/scan_size_mb` (1..=2560).
    pub kernel_numa_scan_size_mb: Option<u64>,
    /// `/sys/kernel/debug/sched/numa_balancing/hot_threshold_ms`: a hint fault later
    /// than this after the scan does not promote.
    pub kernel_numa_hot_threshold_ms: Option<u64>,
    /// `/proc/sys/kernel/numa_balancing_promote_rate_limit_MBps`; 0 = the kernel never
    /// promotes (its hint faults are then only access samples for tierd).
    pub kernel_numa_promote_rate_limit_mbps: Option<u64>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            default_policy: PolicyName::Tpp,
            interval_ms: 200,
            demote_watermark: Amount::Percent(6.0),
            promote_watermark: Amount::Percent(3.0),
            idle_demote_watermark: Amount::Percent(25.0),
            plan_horizon_ms: 1000,
            hot_threshold_ms: 100,
            cold_age_ms: 5000,
            promote_rate_mbps: 0,
            demote_rate_mbps: 0,
            min_residency_ms: 1000,
            hysteresis: 1.5,
            pingpong_window_ms: 30_000,
            static_tier: 0,
            kernel_numa_balancing: None,
            kernel_numa_scan_period_min_ms: None,
            kernel_numa_scan_size_mb: None,
            kernel_numa_hot_threshold_ms: None,
            kernel_numa_promote_rate_limit_mbps: None,
        }
    }
}

impl PolicyConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.interval_ms == 0 {
            return Err(Invalid::new("policy.interval_ms", "must be > 0"));
        }
        if !(50..=10_000).contains(&self.plan_horizon_ms) {
            return Err(Invalid::new(
                "policy.plan_horizon_ms",
                format!("{} must be within 50..=10000", self.plan_horizon_ms),
            ));
        }
        if self.hysteresis < 1.0 {
            return Err(Invalid::new(
                "policy.hysteresis",
                format!("{} must be >= 1.0", self.hysteresis),
            ));
        }
        // Compare at a nominal 1 GiB node: both are usually percentages or both bytes.
        let nominal = 1u64 << 30;
        if self.demote_watermark.of(nominal) < self.promote_watermark.of(nominal) {
            return Err(Invalid::new(
                "policy.demote_watermark",
                "must be at least promote_watermark (demotion keeps the headroom promotion uses)",
            ));
        }
        if let Some(m) = self.kernel_numa_balancing {
            if m > 3 {
                return Err(Invalid::new(
                    "policy.kernel_numa_balancing",
                    format!("{m} is not a numa_balancing mode (0..=3)"),
                ));
            }
        }
        // The kernel divides by the scan size and caps scanning at 2560 MB/s.
        if let Some(m) = self.kernel_numa_scan_size_mb {
            if !(1..=2560).contains(&m) {
                return Err(Invalid::new(
                    "policy.kernel_numa_scan_size_mb",
                    format!("{m} is outside 1..=2560"),
                ));
            }
        }
        if self.kernel_numa_scan_period_min_ms == Some(0) {
            return Err(Invalid::new(
                "policy.kernel_numa_scan_period_min_ms",
                "must be > 0",
            ));
        }
        if self.kernel_numa_hot_threshold_ms == Some(0) {
            return Err(Invalid::new(
                "policy.kernel_numa_hot_threshold_ms",
                "must be > 0 (0 would refuse every promotion; use kernel_numa_promote_rate_limit_mbps = 0)",
            ));
        }
        Ok(())
    }
}
