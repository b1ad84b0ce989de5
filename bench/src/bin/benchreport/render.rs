//! Markdown of the report's generated part: where and when the run was taken, then a
//! table per workload ([`crate::workloads`]) with its plot, and the splice of that text
//! between the markers of a hand-written page.

use crate::run::Run;
use crate::workloads::{Arm, At, Figures, Workload};
use anyhow::bail;
use std::fmt::Write;

pub const BEGIN: &str = "<!-- benchreport:begin";
pub const END: &str = "<!-- benchreport:end -->";

/// One arm's figures in a run.
struct ArmFigures<'a> {
    run: &'a Run,
    at: At,
}

impl Figures for ArmFigures<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.run.value(
            self.at.group,
            self.at.scenario,
            &format!("{}.{key}", self.at.tag),
        )
    }
}

/// The run's header: machine, VM, build, each group's wall time and verdict.
fn header(run: &Run, out: &mut String) {
    let m = |k: &str| run.meta(k).unwrap_or("?").to_string();
    let _ = writeln!(
        out,
        "Measured {} on {} ({} CPUs, {} GiB RAM, Linux {}), QEMU {}; tierd {}, commit {}. \
         Command: `{}`.\n",
        m("date"),
        m("host_cpu"),
        m("host_cpus"),
        m("host_mem_gib"),
        m("host_kernel"),
        m("qemu"),
        m("version"),
        m("commit"),
        m("command"),
    );
    let _ = writeln!(
        out,
        "| VM group | guest kernel | wall time | host load (mean / max) | scenarios |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for g in [crate::workloads::TIERING, crate::workloads::HINTS] {
        let wall = run
            .meta(&format!("{g}.wall_s"))
            .map_or("–".to_string(), |s| format!("{s} s"));
        let verdict = match (run.groups.get(g), run.meta(&format!("{g}.rc"))) {
            (None, _) => "not run".to_string(),
            (Some(_), Some("0")) => "all passed".to_string(),
            (Some(_), Some(rc)) => format!("**failed** (run.sh exit {rc}: see {g}/console.log)"),
            (Some(_), None) => "?".to_string(),
        };
        let kernel = run
            .groups
            .get(g)
            .and_then(|x| x.kernel.as_deref())
            .unwrap_or("–");
        let load = match (
            run.meta(&format!("{g}.load_mean")),
            run.meta(&format!("{g}.load_max")),
        ) {
            (Some(mean), Some(max)) => format!("{mean} / {max}"),
            _ => "–".to_string(),
        };
        let _ = writeln!(out, "| `{g}` | {kernel} | {wall} | {load} | {verdict} |");
    }
    let _ = writeln!(
        out,
        "\nHost load: the 1-minute load average every 10 s while the group ran; the VM's \
         two vCPU threads account for about 2 of it, and anything above the host's CPU \
         count means the emulated CPUs waited for the host (slower movers and workloads)."
    );
    if let Some(total) = run.meta("total_wall_s") {
        let build = run
            .meta("build_s")
            .map(|b| format!(", of it the build {b} s"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "The whole command (build, VM setup, the boots above, this report) took {total} s{build}."
        );
    }
    out.push('\n');
}

/// One workload's table (and its plot, as `{img_prefix}{file}`).
fn table(run: &Run, w: &Workload, img_prefix: &str, out: &mut String) {
    let _ = writeln!(out, "### {}\n\n{}\n", w.title, w.about);
    let _ = write!(out, "| arm |");
    for c in &w.columns {
        let _ = write!(out, " {} |", c.header);
    }
    let _ = write!(out, "\n|---|");
    for _ in &w.columns {
        let _ = write!(out, "---|");
    }
    out.push('\n');
    let blanks = "|".repeat(w.columns.len().saturating_sub(1));
    let mut ran: Vec<ArmFigures> = Vec::new();
    for arm in &w.arms {
        match arm {
            Arm::NotRun { label, why } => {
                let _ = writeln!(out, "| {label} | *{why}* |{blanks}");
            }
            Arm::Ran { label, at, .. } if !run.groups.contains_key(at.group) => {
                let _ = writeln!(
                    out,
                    "| {label} | *not run: this run had no `{}` boot* |{blanks}",
                    at.group
                );
            }
            Arm::Ran { label, at, .. } => {
                let f = ArmFigures { run, at: *at };
                let cells: Vec<Option<String>> = w.columns.iter().map(|c| (c.cell)(&f)).collect();
                if cells.iter().all(Option::is_none) {
                    let _ = writeln!(
                        out,
                        "| {label} | *no figures: {}/{} failed (see its console.log)* |{blanks}",
                        at.group, at.scenario
                    );
                    continue;
                }
                let _ = write!(out, "| {label} |");
                for c in cells {
                    let _ = write!(out, " {} |", c.as_deref().unwrap_or("–"));
                }
                out.push('\n');
                ran.push(f);
            }
        }
    }
    if !ran.is_empty() {
        let figs: Vec<&dyn Figures> = ran.iter().map(|f| f as &dyn Figures).collect();
        for o in &w.oracles {
            let _ = write!(out, "| {} |", o.label);
            for c in (o.cells)(&figs) {
                let _ = write!(out, " {c} |");
            }
            out.push('\n');
        }
    }
    out.push('\n');
    if let Some(file) = w.plot {
        let _ = writeln!(
            out,
            "![{}: share of the workload's memory on the fast node over time, per arm]({img_prefix}{file})\n",
            w.title
        );
    }
}

/// The generated markdown: header, then every workload's table and plot.
pub fn report(run: &Run, workloads: &[Workload], img_prefix: &str) -> String {
    let mut out = String::new();
    header(run, &mut out);
    for w in workloads {
        table(run, w, img_prefix, &mut out);
    }
    out
}

/// `page` with the lines between its BEGIN and END markers replaced by `body`.
pub fn splice(page: &str, body: &str) -> anyhow::Result<String> {
    let (Some(b), Some(e)) = (page.find(BEGIN), page.find(END)) else {
        bail!("no {BEGIN} ... --> / {END} markers");
    };
    if e < b {
        bail!("{END} comes before {BEGIN}");
    }
    let Some(after_begin) = page[b..].find('\n').map(|i| b + i + 1) else {
        bail!("nothing after {BEGIN}");
    };
    Ok(format!(
        "{}\n{}\n\n{}",
        &page[..after_begin],
        body.trim_end_matches('\n'),
        &page[e..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_the_marked_block() {
        let page = "# T\n\nbefore\n<!-- benchreport:begin (generated) -->\nold\nold\n<!-- benchreport:end -->\nafter\n";
        let got = splice(page, "new table\n").unwrap();
        assert_eq!(
            got,
            "# T\n\nbefore\n<!-- benchreport:begin (generated) -->\n\nnew table\n\n<!-- benchreport:end -->\nafter\n"
        );
        // Splicing again gives the same page.
        assert_eq!(splice(&got, "new table\n").unwrap(), got);
        assert!(splice("no markers", "x").is_err());
        assert!(splice(
            "<!-- benchreport:end -->\n<!-- benchreport:begin -->\n",
            "x"
        )
        .is_err());
    }
}
