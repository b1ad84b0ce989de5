//! Counts the `move_pages(2)` calls that ask to move pages of one process, from the
//! kernel's own syscall tracepoint (`syscalls/sys_enter_move_pages`), whoever makes
//! them: the event is enabled in a trace instance of its own, filtered on the target
//! pid and a non-NULL node list (queries, `nodes == NULL`, move nothing and are not
//! counted), and the count is what the instance's buffers took in (entries kept plus
//! those overwritten, per CPU), so nothing is lost when the buffer wraps. The count
//! covers every mapping of the process, so for a pinned region it is an upper bound on
//! the calls that touched it: zero means none did.
//!
//! Needs tracefs (`/sys/kernel/tracing`, mounted in the VM) and root. Set up once by
//! `kvreplay --count-move-pages`, read at the end of the run; dropping it disables the
//! event and removes the instance.

use anyhow::Context;
use std::path::PathBuf;

const TRACEFS: &str = "/sys/kernel/tracing";
const EVENT: &str = "events/syscalls/sys_enter_move_pages";

pub struct MovePagesCount {
    instance: PathBuf,
}

impl MovePagesCount {
    /// Starts counting calls that move pages of `pid`.
    pub fn start(pid: u32) -> anyhow::Result<MovePagesCount> {
        let instance = PathBuf::from(TRACEFS).join(format!("instances/tierd-movecount-{pid}"));
        std::fs::create_dir(&instance)
            .with_context(|| format!("creating trace instance {}", instance.display()))?;
        let c = MovePagesCount { instance };
        let event = c.instance.join(EVENT);
        let write = |file: &str, what: &str| {
            let path = event.join(file);
            std::fs::write(&path, what)
                .with_context(|| format!("writing '{what}' to {}", path.display()))
        };
        write("filter", &format!("pid == {pid} && nodes != 0"))?;
        write("enable", "1")?;
        Ok(c)
    }

    /// Calls counted so far.
    pub fn calls(&self) -> anyhow::Result<u64> {
        let dir = self.instance.join("per_cpu");
        let mut total = 0;
        for e in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let stats = e?.path().join("stats");
            let text = std::fs::read_to_string(&stats)
                .with_context(|| format!("reading {}", stats.display()))?;
            total += taken_in(&text);
        }
        Ok(total)
    }
}

impl Drop for MovePagesCount {
    fn drop(&mut self) {
        // Best effort: an instance left behind only counts, and goes with the VM.
        let _ = std::fs::write(self.instance.join(EVENT).join("enable"), "0");
        let _ = std::fs::remove_dir(&self.instance);
    }
}

/// Events a per-CPU `stats` file says its buffer took in: `entries` + `overrun`.
fn taken_in(stats: &str) -> u64 {
    stats
        .lines()
        .filter_map(|l| {
            l.strip_prefix("entries:")
                .or_else(|| l.strip_prefix("overrun:"))
        })
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_overruns_are_added() {
        let stats = "entries: 3\noverrun: 2\ncommit overrun: 7\nbytes: 96\noldest event ts: 1.0\n";
        assert_eq!(taken_in(stats), 5);
        assert_eq!(taken_in("entries: 0\noverrun: 0\n"), 0);
    }
}
