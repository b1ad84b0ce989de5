//! Where the tiering loop's time goes (wall time per phase), logged at debug level as
//! `tiering loop time`: on a busy machine the loop's CPU time is CPU that migration and
//! the workload do not get (docs/policy.md, "What a plan costs").

use std::time::{Duration, Instant};

/// Where the loop's time goes, logged at debug level every [`COSTS_PERIOD`].
#[derive(Default)]
pub struct Costs {
    since: Option<Instant>,
    pub sample: Duration,
    pub drain: Duration,
    pub record: Duration,
    pub scan: Duration,
    /// Of `scan`: the kernel queries (maps, resident pages, `move_pages`), without the
    /// heat commands applied before the result is recorded.
    pub scan_query: Duration,
    /// Heat commands (hint edits, move outcomes, reads) run between the steps,
    /// wherever they ran (also inside `scan`).
    pub heat: Duration,
    pub heat_cmds: u64,
    pub views: Duration,
    pub plan: Duration,
    pub plans: u32,
}

const COSTS_PERIOD: Duration = Duration::from_secs(10);

impl Costs {
    /// Logs and restarts the tally once it covers [`COSTS_PERIOD`].
    pub fn maybe_log(&mut self) {
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() < COSTS_PERIOD {
            return;
        }
        tracing::debug!(
            secs = since.elapsed().as_secs_f64(),
            sample_ms = self.sample.as_millis() as u64,
            drain_ms = self.drain.as_millis() as u64,
            record_ms = self.record.as_millis() as u64,
            scan_ms = self.scan.as_millis() as u64,
            scan_query_ms = self.scan_query.as_millis() as u64,
            heat_ms = self.heat.as_millis() as u64,
            heat_cmds = self.heat_cmds,
            views_ms = self.views.as_millis() as u64,
            plan_ms = self.plan.as_millis() as u64,
            plans = self.plans,
            "tiering loop time"
        );
        *self = Costs {
            since: Some(Instant::now()),
            ..Costs::default()
        };
    }
}
