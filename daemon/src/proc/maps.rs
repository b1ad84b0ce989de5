//! The migratable mappings of a process, from `/proc/PID/maps` (procfs crate).

use tierd_api::AddrRange;

#[derive(Debug, thiserror::Error)]
pub enum MapsError {
    #[error("no process {0}")]
    NoSuchProcess(i32),
    #[error("not permitted to read /proc/{0}/maps")]
    PermissionDenied(i32),
    #[error("range {range} is not mapped in process {pid}")]
    NotMapped { pid: i32, range: AddrRange },
    #[error("/proc/{pid}/maps: {msg}")]
    Other { pid: i32, msg: String },
}

fn map_err(pid: i32, e: procfs::ProcError) -> MapsError {
    match e {
        procfs::ProcError::NotFound(_) => MapsError::NoSuchProcess(pid),
        procfs::ProcError::PermissionDenied(_) => MapsError::PermissionDenied(pid),
        e => MapsError::Other {
            pid,
            msg: e.to_string(),
        },
    }
}

/// Mapped ranges of `pid` that move_pages can act on (not `[vsyscall]`/`[vvar]`/`[vdso]`),
/// clipped to `within` when given. A `within` that touches no mapping is an error.
pub fn migratable_ranges(pid: i32, within: Option<AddrRange>) -> Result<Vec<AddrRange>, MapsError> {
    let proc = procfs::process::Process::new(pid).map_err(|e| map_err(pid, e))?;
    let maps = proc.maps().map_err(|e| map_err(pid, e))?;
    let mut out = Vec::new();
    for m in maps {
        if let procfs::process::MMapPath::Vsyscall
        | procfs::process::MMapPath::Vvar
        | procfs::process::MMapPath::Vdso = m.pathname
        {
            continue;
        }
        let (s, e) = m.address;
        let (s, e) = match within {
            Some(w) => (s.max(w.start), e.min(w.end)),
            None => (s, e),
        };
        if s < e {
            out.push(AddrRange { start: s, end: e });
        }
    }
    if let (Some(range), true) = (within, out.is_empty()) {
        return Err(MapsError::NotMapped { pid, range });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_maps_are_found_and_clipped() {
        let pid = std::process::id() as i32;
        let all = migratable_ranges(pid, None).unwrap();
        assert!(!all.is_empty());
        let first = all[0];
        let inner = AddrRange {
            start: first.start,
            end: first.start + 4096,
        };
        assert_eq!(migratable_ranges(pid, Some(inner)).unwrap(), vec![inner]);
        let nowhere = AddrRange {
            start: 4096,
            end: 8192,
        };
        assert!(matches!(
            migratable_ranges(pid, Some(nowhere)),
            Err(MapsError::NotMapped { .. })
        ));
        assert!(matches!(
            migratable_ranges(i32::MAX, None),
            Err(MapsError::NoSuchProcess(_))
        ));
    }
}
