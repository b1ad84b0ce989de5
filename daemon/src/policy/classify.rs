//! Per-policy eligibility and ranking of one granule. Everything policy-specific lives
//! here; `plan.rs` only does capacity arithmetic.

use super::{GranuleView, Knobs, MoveCause};
use crate::heat::flags;
use tierd_config::PolicyName;

/// Moves within the ping-pong window after which a granule stays put unless a client
/// hint says otherwise.
pub const PINGPONG_MOVES: u8 = 3;

/// Hinted by a client to be on the fast tier now.
pub fn wants_fast(g: &GranuleView) -> bool {
    g.flags & (flags::PIN_FAST | flags::PREFETCH) != 0 && g.flags & flags::FREE == 0
}

/// Accessed within `recent_ms`: in the "hot now" class, which ranks above every
/// granule that is not, whatever their heat (see `plan.rs`).
pub fn recent(g: &GranuleView, k: &Knobs) -> bool {
    g.idle_ms <= k.recent_ms
}

/// The last attempt to move it failed recently: leave it alone.
pub fn stuck(g: &GranuleView, k: &Knobs) -> bool {
    g.flags & flags::STUCK != 0 && g.since_move_ms < k.stuck_retry_ms
}

/// Why and how strongly a granule on a lower tier should be promoted: `Some(score)`,
/// higher first; `None` = not a candidate.
pub fn promote_score(p: PolicyName, g: &GranuleView, node_tier: u32, k: &Knobs) -> Option<f64> {
    if g.flags & (flags::FREE | flags::PINNED) != 0 || stuck(g, k) {
        return None;
    }
    if wants_fast(g) {
        return Some(f64::INFINITY);
    }
    let settled = g.since_move_ms >= k.min_residency_ms && g.moves < PINGPONG_MOVES;
    let hot = g.hot_for_ms >= k.hot_threshold_ms && recent(g, k);
    match p {
        PolicyName::Off => None,
        PolicyName::Static => (node_tier > k.static_tier).then_some(f64::MAX),
        PolicyName::Tpp => (settled && hot && g.flags & flags::COLD == 0).then_some(g.heat),
        // Promote on reuse: the most recently reused first.
        PolicyName::LruTiered => (settled && hot).then_some(1e12 - g.idle_ms as f64),
    }
}

/// Why a promotion candidate is promoted: a client's hint, its policy's placement
/// (`static`), or sampled heat.
pub fn promote_cause(p: PolicyName, g: &GranuleView) -> MoveCause {
    if wants_fast(g) {
        MoveCause::Hint
    } else if p == PolicyName::Static {
        MoveCause::Policy
    } else {
        MoveCause::Sampling
    }
}

/// Why a granule is demoted regardless of pressure ([`demote_unconditionally`]): a
/// client's COLD hint, or its policy (`lru-tiered`'s cold age, `static`'s tier).
pub fn unconditional_cause(g: &GranuleView) -> MoveCause {
    if g.flags & flags::COLD != 0 {
        MoveCause::Hint
    } else {
        MoveCause::Policy
    }
}

/// Whether a granule on a node of the lowest tier (never a resident the plan could
/// demote) can be a promotion candidate under policy `p` at all: `tpp` and
/// `lru-tiered` promote only data accessed within `recent_ms`, `static` everything,
/// `off` nothing; under every policy, data a client hinted to the fast tier. The
/// tiering loop leaves the others out of the policy's view: most of a large slow tier
/// is cold, and computing their heat would cost more than the rest of the plan (see
/// [`promote_score`]).
pub fn may_promote(p: PolicyName, idle_ms: u64, flags: u8, k: &Knobs) -> bool {
    if flags & flags::PINNED != 0 {
        return false;
    }
    if flags & (flags::PIN_FAST | flags::PREFETCH) != 0 {
        return true;
    }
    match p {
        PolicyName::Off => false,
        PolicyName::Static => true,
        PolicyName::Tpp | PolicyName::LruTiered => idle_ms <= k.recent_ms,
    }
}

/// Order in which residents of an upper node give up their place: `Some(rank)`, lower
/// first; `None` = never demoted by this policy.
pub fn demote_rank(p: PolicyName, g: &GranuleView, k: &Knobs) -> Option<f64> {
    if g.flags & (flags::PIN_FAST | flags::PINNED) != 0 || stuck(g, k) {
        return None;
    }
    if g.flags & flags::FREE != 0 {
        return Some(-2e12);
    }
    if g.flags & flags::COLD != 0 {
        return Some(-1e12);
    }
    if g.since_move_ms < k.min_residency_ms {
        return None;
    }
    match p {
        PolicyName::Off | PolicyName::Static => None,
        PolicyName::Tpp => Some(g.heat),
        // Least recently used first.
        PolicyName::LruTiered => Some(-(g.idle_ms.min(1 << 40) as f64)),
    }
}

/// Idle long enough to go to make headroom ahead of need (`idle_demote_watermark`).
pub fn idle(p: PolicyName, g: &GranuleView, k: &Knobs) -> bool {
    !matches!(p, PolicyName::Off | PolicyName::Static)
        && g.flags & (flags::PIN_FAST | flags::PREFETCH | flags::PINNED) == 0
        && g.idle_ms >= k.cold_age_ms
        && g.since_move_ms >= k.min_residency_ms
        && !stuck(g, k)
}

/// Demote even without memory pressure: cold-hinted contents, or (lru-tiered) data
/// unused for `cold_age_ms`, or (static) data above its pinned tier. Dead (`FREE`)
/// contents are not here: they never count as fitting and are the first victims when
/// room is needed, but moving them while the node has room would spend migration
/// bandwidth on data nobody reads, and an engine typically refills a freed block soon
/// (its next ACCESS / PREFETCH then finds it already on the fast tier).
pub fn demote_unconditionally(p: PolicyName, g: &GranuleView, node_tier: u32, k: &Knobs) -> bool {
    if g.flags & (flags::PIN_FAST | flags::PINNED) != 0 || stuck(g, k) {
        return false;
    }
    if g.flags & flags::COLD != 0 {
        return true;
    }
    match p {
        PolicyName::LruTiered => {
            g.idle_ms >= k.cold_age_ms && g.since_move_ms >= k.min_residency_ms
        }
        PolicyName::Static => node_tier < k.static_tier,
        _ => false,
    }
}
