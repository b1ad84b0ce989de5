//! One benchmark run as bench/run.sh leaves it on disk, read once at start.
//!
//! ```text
//! RUN/meta.txt                  key=value: host, commit, each group's wall time and exit code
//! RUN/<group>/results.txt       "<group>/<scenario> key=value", one RESULT line each (tests/vm/run.sh)
//! RUN/<group>/console.log       the guest's serial log (its kernel release)
//! RUN/<group>/series-<scenario>-<tag>.txt   one arm's placement over time (fastshare)
//! ```
//!
//! A group that did not run has no directory (or no results.txt): its tables say so.

use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The node the VM gives the CPUs and the fast memory (tests/vm/README.md).
pub const FAST_NODE: u32 = 0;

/// One VM group's results.
#[derive(Debug, Default)]
pub struct Group {
    pub dir: PathBuf,
    /// scenario (e.g. `01-hotwindow`) -> key (e.g. `tierd.hot_fast_fraction`) -> value.
    pub results: BTreeMap<String, BTreeMap<String, String>>,
    /// The guest kernel, from the console's `TIERD-INIT-READY` line.
    pub kernel: Option<String>,
}

#[derive(Debug, Default)]
pub struct Run {
    /// meta.txt, in file order.
    pub meta: Vec<(String, String)>,
    pub groups: BTreeMap<String, Group>,
}

/// One arm's placement over time: (seconds since the workload was released, share of
/// its resident bytes on [`FAST_NODE`]).
pub type Series = Vec<(f64, f64)>;

impl Run {
    /// Reads `dir`'s meta.txt (optional) and every `<dir>/<group>/results.txt`.
    pub fn load(dir: &Path) -> anyhow::Result<Run> {
        let mut run = Run::default();
        let meta = dir.join("meta.txt");
        if meta.exists() {
            let text = std::fs::read_to_string(&meta)
                .with_context(|| format!("reading {}", meta.display()))?;
            run.meta = parse_meta(&text);
        }
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("reading {}", dir.display()))?;
            let path = e.path();
            let results = path.join("results.txt");
            if !results.is_file() {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&results)
                .with_context(|| format!("reading {}", results.display()))?;
            let group = Group {
                results: parse_results(&name, &text)
                    .with_context(|| format!("parsing {}", results.display()))?,
                kernel: std::fs::read_to_string(path.join("console.log"))
                    .ok()
                    .and_then(|c| guest_kernel(&c)),
                dir: path,
            };
            run.groups.insert(name, group);
        }
        Ok(run)
    }

    /// The value of `key` in `group/scenario`, if that ran and printed it.
    pub fn value(&self, group: &str, scenario: &str, key: &str) -> Option<&str> {
        self.groups
            .get(group)?
            .results
            .get(scenario)?
            .get(key)
            .map(String::as_str)
    }

    pub fn meta(&self, key: &str) -> Option<&str> {
        self.meta
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The series one arm recorded, or None when the group did not run or the arm left
    /// no file.
    pub fn series(&self, group: &str, scenario: &str, tag: &str) -> anyhow::Result<Option<Series>> {
        let Some(g) = self.groups.get(group) else {
            return Ok(None);
        };
        let path = g.dir.join(format!("series-{scenario}-{tag}.txt"));
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(parse_series(&text))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

/// `key=value` lines; blank lines and `#` comments skipped.
pub fn parse_meta(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// results.txt of group `group`: `"<group>/<scenario> key=value"` per line.
pub fn parse_results(
    group: &str,
    text: &str,
) -> anyhow::Result<BTreeMap<String, BTreeMap<String, String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = line.split_once(' ').and_then(|(id, kv)| {
            let scenario = id.strip_prefix(group)?.strip_prefix('/')?;
            let (k, v) = kv.split_once('=')?;
            Some((scenario, k, v))
        });
        let Some((scenario, k, v)) = parsed else {
            bail!(
                "line {}: {line:?} is not \"{group}/<scenario> key=value\"",
                i + 1
            );
        };
        out.entry(scenario.to_string())
            .or_default()
            .insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// The kernel release on the console's `TIERD-INIT-READY <group> kernel=<release> ...`.
pub fn guest_kernel(console: &str) -> Option<String> {
    console
        .lines()
        .find(|l| l.contains("TIERD-INIT-READY "))?
        .split_whitespace()
        .find_map(|w| w.strip_prefix("kernel="))
        .map(str::to_string)
}

/// fastshare's lines `T N0=BYTES N1=BYTES ...` to (T, share on [`FAST_NODE`]). Comments,
/// malformed lines and samples with no bytes (the range unmapped at exit) are skipped.
pub fn parse_series(text: &str) -> Series {
    let fast = format!("N{FAST_NODE}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let t: f64 = words.next()?.parse().ok()?;
            let (mut on_fast, mut total) = (0f64, 0f64);
            for w in words {
                let (node, bytes) = w.split_once('=')?;
                let bytes: f64 = bytes.parse().ok()?;
                total += bytes;
                if node == fast {
                    on_fast += bytes;
                }
            }
            (t.is_finite() && total > 0.0).then(|| (t, on_fast / total))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_lines_split_into_scenario_and_key() {
        let r = parse_results(
            "bench-tiering",
            "bench-tiering/01-hotwindow tierd.hot_fast_fraction=0.8740\n\
             bench-tiering/01-hotwindow kernel.moves_ratio=0.24\n\n\
             bench-tiering/02-kvreplay-mooncake tierd.kv_fast_hit_fraction=0.8650\n",
        )
        .unwrap();
        assert_eq!(r["01-hotwindow"]["tierd.hot_fast_fraction"], "0.8740");
        assert_eq!(r["01-hotwindow"]["kernel.moves_ratio"], "0.24");
        assert_eq!(r["02-kvreplay-mooncake"].len(), 1);
        let err = parse_results("bench-tiering", "bench-hints/01-x a=1\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        assert!(parse_results("g", "g/s no-equals-sign\n").is_err());
    }

    #[test]
    fn series_lines_become_fast_shares() {
        let s = parse_series(
            "# t_s N<node>=bytes\n\
             0.00 N1=4096\n\
             1.02 N0=1024 N1=3072\n\
             garbage\n\
             2.05\n\
             3.10 N0=x\n\
             4.00 N0=8192\n",
        );
        assert_eq!(s, vec![(0.0, 0.0), (1.02, 0.25), (4.0, 1.0)]);
    }

    #[test]
    fn meta_and_kernel() {
        let m = parse_meta("# run\ncommit=abc123\n\nhost_cpus = 2\nnot a pair\n");
        assert_eq!(
            m,
            vec![
                ("commit".to_string(), "abc123".to_string()),
                ("host_cpus".to_string(), "2".to_string())
            ]
        );
        let c = "boot noise\nTIERD-INIT-READY bench-tiering kernel=6.12.118+deb12-cloud-amd64 uptime_s=3.1\n";
        assert_eq!(
            guest_kernel(c).as_deref(),
            Some("6.12.118+deb12-cloud-amd64")
        );
        assert_eq!(guest_kernel("nothing"), None);
    }
}
