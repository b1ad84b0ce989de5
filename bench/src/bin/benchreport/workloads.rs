//! What the report shows: one [`Workload`] per table, each naming where every arm's
//! figures come from (VM group, scenario, the arm's RESULT-key tag), its columns, its
//! oracle rows and the arms whose placement series go into its plot. The scenarios and
//! tags are those of tests/vm/scenarios/bench-{tiering,hints} and bench/peers/arm.sh;
//! a renamed tag there must be renamed here.

use plotters::style::RGBColor;

pub const TIERING: &str = "bench-tiering";
pub const HINTS: &str = "bench-hints";

/// Where one arm's figures are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct At {
    pub group: &'static str,
    pub scenario: &'static str,
    /// Prefix of the arm's RESULT keys and the name of its series file.
    pub tag: &'static str,
}

const fn at(group: &'static str, scenario: &'static str, tag: &'static str) -> At {
    At {
        group,
        scenario,
        tag,
    }
}

/// A row: an arm that ran, or one that is not part of this comparison and why.
pub enum Arm {
    Ran {
        label: &'static str,
        at: At,
        color: RGBColor,
        /// Drawn in the workload's plot.
        plotted: bool,
    },
    NotRun {
        label: &'static str,
        why: &'static str,
    },
}

/// One arm's figures, by key without the tag.
pub trait Figures {
    fn get(&self, key: &str) -> Option<&str>;
    fn num(&self, key: &str) -> Option<f64> {
        self.get(key)?.parse().ok()
    }
}

pub struct Column {
    pub header: &'static str,
    pub cell: fn(&dyn Figures) -> Option<String>,
}

/// A row computed from the arms that ran (their oracle figures).
pub struct OracleRow {
    pub label: &'static str,
    pub cells: fn(&[&dyn Figures]) -> Vec<String>,
}

pub struct Workload {
    pub title: &'static str,
    /// What is measured, in a sentence or two.
    pub about: &'static str,
    pub arms: Vec<Arm>,
    pub columns: Vec<Column>,
    pub oracles: Vec<OracleRow>,
    /// The plot's file name in the output directory, if this workload has one.
    pub plot: Option<&'static str>,
}

const MEMTIERD: &str = "not built (see \"Arms\")";

// One color per mover, the same in every plot.
const GRAY: RGBColor = RGBColor(130, 130, 130);
const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const LIGHT_GREEN: RGBColor = RGBColor(150, 210, 120);
const RED: RGBColor = RGBColor(214, 39, 40);
const PURPLE: RGBColor = RGBColor(148, 103, 189);
const BROWN: RGBColor = RGBColor(140, 86, 75);

fn fixed(v: Option<f64>, decimals: usize) -> Option<String> {
    v.map(|v| format!("{v:.decimals$}"))
}

/// An integer with thin thousands separators (`1 234 567`).
pub fn grouped(v: f64) -> String {
    let s = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push('\u{2009}');
        }
        out.push(c);
    }
    if v < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// `a` or `a–b` over the values present, each written by `fmt`.
fn span(vals: impl Iterator<Item = Option<f64>>, fmt: fn(f64) -> String) -> String {
    let v: Vec<f64> = vals.flatten().collect();
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = (fmt(lo), fmt(hi));
    if v.is_empty() {
        "–".into()
    } else if lo == hi {
        lo
    } else {
        format!("{lo}–{hi}")
    }
}

fn three(v: f64) -> String {
    format!("{v:.3}")
}

fn hot_window_columns() -> Vec<Column> {
    vec![
        Column {
            header: "window on fast (time share)",
            cell: |f| fixed(f.num("hot_fast_fraction"), 3),
        },
        Column {
            header: "access GB/s",
            cell: |f| fixed(f.num("access_gbps"), 2),
        },
        Column {
            header: "pages migrated",
            cell: |f| f.num("pages_migrated").map(grouped),
        },
        Column {
            header: "moves / ideal",
            cell: |f| fixed(f.num("moves_ratio"), 2).map(|s| s + "×"),
        },
    ]
}

fn kv_columns() -> Vec<Column> {
    vec![
        Column {
            header: "block reads from fast",
            cell: |f| fixed(f.num("kv_fast_hit_fraction"), 3),
        },
        Column {
            header: "first 400 steps",
            cell: |f| fixed(f.num("kv_fast_hit_fraction_400steps"), 3),
        },
        Column {
            header: "× Belady",
            cell: |f| fixed(f.num("kv_fast_hit_vs_belady"), 3),
        },
        Column {
            header: "steps done / planned",
            cell: |f| {
                Some(format!(
                    "{} / {}",
                    f.get("steps_done")?,
                    f.get("steps_planned")?
                ))
            },
        },
        Column {
            header: "pages migrated",
            cell: |f| f.num("pages_migrated").map(grouped),
        },
    ]
}

fn kv_oracles() -> Vec<OracleRow> {
    vec![
        OracleRow {
            label: "oracle: Belady MIN (first reads miss)",
            cells: |arms| {
                let mut c = vec![span(arms.iter().map(|f| f.num("kv_oracle_belady")), three)];
                c.extend(["–", "1.000", "", ""].map(String::from));
                c
            },
        },
        OracleRow {
            label: "oracle: prefetch, unlimited bandwidth",
            cells: |arms| {
                let mut c = vec![span(
                    arms.iter().map(|f| f.num("kv_oracle_prefetch")),
                    three,
                )];
                c.extend(["–", "–", "", ""].map(String::from));
                c
            },
        },
    ]
}

fn ran(label: &'static str, at: At, color: RGBColor) -> Arm {
    Arm::Ran {
        label,
        at,
        color,
        plotted: true,
    }
}

/// Every table of the report, in order.
pub fn all() -> Vec<Workload> {
    let hw = |tag| at(TIERING, "01-hotwindow", tag);
    let var = |tag| at(TIERING, "04-hotwindow-variants", tag);
    let moon = |tag| at(TIERING, "02-kvreplay-mooncake", tag);
    let moon_h = |tag| at(HINTS, "01-kvreplay-hints", tag);
    let azure = |tag| at(TIERING, "03-kvreplay-azure", tag);
    let proto = |tag| at(HINTS, "02-prefetch-ingest", tag);
    vec![
        Workload {
            title: "Moving hot window",
            about: "`hotwindow --mb 640 --hot-mb 128 --move-s 10 --seconds 40`: 640 MiB first \
                    placed on the slow node, a 128 MiB window read and written continuously, \
                    stepping 128 MiB every 10 s. *Window on fast* = time-weighted share of the \
                    current window on the fast node (the figure to compare); *moves / ideal* = \
                    pages migrated system-wide over the oracle's minimum.",
            arms: vec![
                ran("none", hw("none"), GRAY),
                ran("kernel (NUMA balancing + demotion)", hw("kernel"), BLUE),
                ran("DAMON (HMSDK-style)", hw("damon"), ORANGE),
                Arm::NotRun {
                    label: "memtierd",
                    why: MEMTIERD,
                },
                ran("tierd", hw("tierd"), GREEN),
                Arm::NotRun {
                    label: "tierd + hints",
                    why: "n/a: the workload sends no hints",
                },
            ],
            columns: hot_window_columns(),
            oracles: vec![OracleRow {
                label: "oracle (each window promoted once)",
                cells: |arms| {
                    vec![
                        "1 (by construction)".into(),
                        "–".into(),
                        span(arms.iter().map(|f| f.num("ideal_moves")), grouped),
                        "1.00×".into(),
                    ]
                },
            }],
            plot: Some("hotwindow.png"),
        },
        Workload {
            title: "Hot-window variants (tierd)",
            about: "The same window with THP-backed memory; a 1 GiB footprint (twice the fast \
                    node) whose eight windows are each hot once for 5 s; two processes with \
                    256 MiB hot sets that do not both fit, priority 10 and 0 (the first should \
                    keep its window, the second not). The priority pair is started outside \
                    arm.sh and has no series.",
            arms: vec![
                ran("THP", var("thp_tierd"), GREEN),
                ran("2× footprint", var("twice_tierd"), PURPLE),
                Arm::Ran {
                    label: "priority 10",
                    at: var("prio_tierd_hi"),
                    color: RED,
                    plotted: false,
                },
                Arm::Ran {
                    label: "priority 0",
                    at: var("prio_tierd_lo"),
                    color: BROWN,
                    plotted: false,
                },
            ],
            columns: hot_window_columns(),
            oracles: vec![],
            plot: Some("hotwindow-variants.png"),
        },
        Workload {
            title: "KV-cache replay, Mooncake trace",
            about: "`kvreplay --pool-mb 1024 --block-kib 256 --compress 2 --step-ms 25 \
                    --seconds 40 --oracle`: a 1 GiB pool of 256 KiB KV blocks (one per \
                    512-token trace block, shared prefixes reused) first on the slow node, \
                    25 ms decode steps reading every block of every running request. *Block \
                    reads from fast* is the figure to compare; *first 400 steps* covers the \
                    same requests in every arm (a mover that slows the VM leaves fewer steps); \
                    *× Belady* = hits over Belady's on the arm's own read sequence. Rows from \
                    the `bench-hints` boot are marked.",
            arms: vec![
                ran("none [bench-hints]", moon_h("none"), GRAY),
                ran("kernel", moon("kernel"), BLUE),
                ran("DAMON", moon("damon"), ORANGE),
                Arm::NotRun {
                    label: "memtierd",
                    why: MEMTIERD,
                },
                ran("tierd", moon("tierd"), GREEN),
                ran("tierd [bench-hints]", moon_h("sampling"), LIGHT_GREEN),
                ran("tierd + hints [bench-hints]", moon_h("hints"), RED),
                ran(
                    "tierd + hints, no recycling [bench-hints]",
                    moon_h("hints_norecycle"),
                    PURPLE,
                ),
            ],
            columns: kv_columns(),
            oracles: kv_oracles(),
            plot: Some("kv-mooncake.png"),
        },
        Workload {
            title: "KV-cache replay, Azure conversation trace",
            about: "As Mooncake with `--compress 4`; the Azure trace has no prefix hashes, so \
                    no block is shared between requests.",
            arms: vec![
                Arm::NotRun {
                    label: "none",
                    why: "not run: with no mover nothing reaches the fast node (the Mooncake table's none row)",
                },
                ran("kernel", azure("kernel"), BLUE),
                ran("DAMON", azure("damon"), ORANGE),
                Arm::NotRun {
                    label: "memtierd",
                    why: MEMTIERD,
                },
                ran("tierd", azure("tierd"), GREEN),
                Arm::NotRun {
                    label: "tierd + hints",
                    why: "not run (bench-hints replays Mooncake only)",
                },
            ],
            columns: kv_columns(),
            oracles: kv_oracles(),
            plot: Some("kv-azure.png"),
        },
        Workload {
            title: "Client protocol: hint ingest and PREFETCH latency",
            about: "`hintbench`: ACCESS hints of 64 blocks per call for 3 s (blocks tierd applied \
                    per second); then 400 blocks of 64 KiB on the slow node, each PREFETCHed \
                    alone, the client polling the placement table until it reads the fast \
                    node. The kernel row is the floor: the same moves by the process's own \
                    `move_pages(2)`, no tierd.",
            arms: vec![
                Arm::Ran {
                    label: "tierd, defaults",
                    at: proto("default"),
                    color: GREEN,
                    plotted: false,
                },
                Arm::Ran {
                    label: "tierd, hints only (no sampling)",
                    at: proto("hints_only"),
                    color: RED,
                    plotted: false,
                },
                Arm::Ran {
                    label: "kernel floor (own move_pages)",
                    at: proto("kernel"),
                    color: BLUE,
                    plotted: false,
                },
            ],
            columns: vec![
                Column {
                    header: "hint blocks/s applied",
                    cell: |f| f.num("hint_applied_blocks_per_s").map(|v| format!("{:.1} M", v / 1e6)),
                },
                Column {
                    header: "p50 ms",
                    cell: |f| f.get("prefetch_p50_ms").or(f.get("rawmove_p50_ms")).map(String::from),
                },
                Column {
                    header: "p99 ms",
                    cell: |f| f.get("prefetch_p99_ms").or(f.get("rawmove_p99_ms")).map(String::from),
                },
                Column {
                    header: "max ms",
                    cell: |f| f.get("prefetch_max_ms").map(String::from),
                },
                Column {
                    header: "missed / samples",
                    cell: |f| {
                        Some(format!("{} / {}", f.get("prefetch_misses")?, f.get("prefetch_samples")?))
                    },
                },
            ],
            oracles: vec![],
            plot: None,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(grouped(0.0), "0");
        assert_eq!(grouped(999.0), "999");
        assert_eq!(grouped(460850.0), "460\u{2009}850");
        assert_eq!(grouped(1234567.0), "1\u{2009}234\u{2009}567");
        assert_eq!(
            span([Some(0.9941), None, Some(0.9949)].into_iter(), three),
            "0.994–0.995"
        );
        assert_eq!(
            span([Some(0.9941), Some(0.9944)].into_iter(), three),
            "0.994"
        );
        assert_eq!(
            span([Some(152808.0), Some(159244.0)].into_iter(), grouped),
            "152\u{2009}808–159\u{2009}244"
        );
        assert_eq!(span(std::iter::empty(), three), "–");
    }

    #[test]
    fn tags_are_unique_per_scenario() {
        let mut seen = std::collections::HashSet::new();
        for w in all() {
            for a in &w.arms {
                if let Arm::Ran { at, .. } = a {
                    assert!(seen.insert(*at), "{at:?} twice");
                }
            }
        }
    }
}
