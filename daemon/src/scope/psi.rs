//! A scope's own PSI backoff: while its cgroup's `memory.pressure` (`some avg10`) is
//! above `migrate.psi_threshold_pct`, the share of each plan's promotion bytes the
//! scope may use is halved every second, down to `migrate.psi_min_rate_pct`, and
//! doubled back to full every second once it is not: the machine-wide backoff
//! ([`crate::migrate::pressure`]) applied to one scope. Promotions are what charge a
//! cgroup (a migration allocates the new page before it frees the old one); its
//! demotions go on.
//!
//! Stepped by the scope watcher at each pass ([`super::Scopes::reconcile`], about every
//! 500 ms) but at most once per [`STEP`], so the factor moves at the same pace as the
//! machine's; read by the tiering loop into [`crate::policy::ScopeBudget`].

use crate::migrate::pressure::Backoff;
use std::time::{Duration, Instant};

/// The backoff's tick, as the machine-wide one (`tierd-ops`, once a second).
pub const STEP: Duration = Duration::from_secs(1);

/// One scope's pressure reading and backoff state (kept from pass to pass by name).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScopePsi {
    /// `memory.pressure` "some avg10" as last read (None: a comm scope, no cgroup, or
    /// the file could not be read).
    pub pressure_pct: Option<f64>,
    backoff: Backoff,
    stepped_at: Option<Instant>,
}

impl ScopePsi {
    /// The factor on the scope's promotions (1: full).
    pub fn factor(&self) -> f64 {
        self.backoff.factor()
    }

    /// Records a reading at `now`; steps the backoff when [`STEP`] has passed since the
    /// last step. An unreadable file counts as no pressure (the factor recovers).
    pub fn step(
        &mut self,
        pressure_pct: Option<f64>,
        now: Instant,
        cfg: &tierd_config::MigrateConfig,
    ) {
        self.pressure_pct = pressure_pct;
        if self
            .stepped_at
            .is_some_and(|t| now.saturating_duration_since(t) < STEP)
        {
            return;
        }
        self.stepped_at = Some(now);
        self.backoff.step(
            pressure_pct.unwrap_or(0.0),
            cfg.psi_threshold_pct,
            cfg.psi_min_rate_pct,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_once_a_second_under_pressure_and_recovers() {
        let cfg = tierd_config::MigrateConfig {
            psi_threshold_pct: 10.0,
            psi_min_rate_pct: 25.0,
            ..Default::default()
        };
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut p = ScopePsi::default();
        let mut seq = Vec::new();
        // Passes every 500 ms: only every other one steps.
        for (ms, pct) in [
            (0, 40.0),
            (500, 40.0),
            (1000, 40.0),
            (1500, 40.0),
            (2000, 40.0),
            (3000, 2.0),
            (4000, 2.0),
        ] {
            p.step(Some(pct), at(ms), &cfg);
            seq.push(p.factor());
        }
        assert_eq!(seq, [0.5, 0.5, 0.25, 0.25, 0.25, 0.5, 1.0]);
        assert_eq!(p.pressure_pct, Some(2.0));
        p.step(None, at(5000), &cfg);
        assert_eq!((p.pressure_pct, p.factor()), (None, 1.0));
    }
}
