//! Loading tierd's BPF objects (compiled from `ebpf/*.bpf.c` by `build.rs` and
//! embedded here) and the typed wrappers the backends drain each interval.
//!
//! Privileged code stays here and thin: the backends see maps only through the
//! [`DrainMap`] and [`PidFilter`] traits, so their aggregation logic is unit-tested
//! with in-memory fakes, without root.

use super::abi::{STAT_DROPPED, STAT_UPDATES};
use aya::maps::{HashMap, MapData, PerCpuArray};
use aya::{Ebpf, EbpfLoader, Pod};
use std::path::Path;

pub const DAMON_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/damon.bpf.o"));
pub const FAULT_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fault.bpf.o"));
pub const HWSAMPLE_OBJ: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hwsample.bpf.o"));

const TRACEFS: &str = super::tracefs::ROOT;

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("loading BPF object {object}: {source}")]
    Load {
        object: &'static str,
        source: aya::EbpfError,
    },
    #[error("{object}: program {program}: {source}")]
    Program {
        object: &'static str,
        program: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("{object}: map {map}: {msg}")]
    Map {
        object: &'static str,
        map: &'static str,
        msg: String,
    },
    #[error("tracefs is not mounted at {path} and mounting it failed: {source}")]
    Tracefs {
        path: &'static str,
        source: nix::Error,
    },
}

/// Loads an embedded object, first setting its `const volatile` u32 globals.
pub fn load(
    object: &'static str,
    bytes: &[u8],
    globals: &[(&'static str, u32)],
) -> Result<Ebpf, BpfError> {
    let mut loader = EbpfLoader::new();
    // No CO-RE relocations in our programs (see tracefs.rs): skip parsing the
    // kernel's BTF, which takes seconds under emulation.
    loader.btf(None);
    for (name, value) in globals {
        loader.override_global(name, value, true);
    }
    loader
        .load(bytes)
        .map_err(|source| BpfError::Load { object, source })
}

/// Loads tracepoint program `program` of a loaded object and attaches it to
/// `category:name` (shared by the damon and fault backends).
pub fn attach_tracepoint(
    bpf: &mut Ebpf,
    object: &'static str,
    program: &'static str,
    category: &str,
    name: &str,
) -> Result<(), String> {
    let prog: &mut aya::programs::TracePoint = bpf
        .program_mut(program)
        .ok_or_else(|| format!("{object}: no program {program}"))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    prog.load()
        .and_then(|()| prog.attach(category, name).map(|_| ()))
        .map_err(|e| format!("attaching {program} to {category}:{name}: {e}"))
}

/// Takes a hash (or LRU hash) map out of a loaded object.
pub fn hash_map<K: Pod, V: Pod>(
    bpf: &mut Ebpf,
    object: &'static str,
    map: &'static str,
) -> Result<HashMap<MapData, K, V>, BpfError> {
    let m = bpf.take_map(map).ok_or_else(|| BpfError::Map {
        object,
        map,
        msg: "not in the object".into(),
    })?;
    HashMap::try_from(m).map_err(|e| BpfError::Map {
        object,
        map,
        msg: e.to_string(),
    })
}

/// Takes the per-CPU `stats` array out of a loaded object.
pub fn stats(bpf: &mut Ebpf, object: &'static str) -> Result<Stats, BpfError> {
    let m = bpf.take_map("stats").ok_or_else(|| BpfError::Map {
        object,
        map: "stats",
        msg: "not in the object".into(),
    })?;
    let arr = PerCpuArray::try_from(m).map_err(|e| BpfError::Map {
        object,
        map: "stats",
        msg: e.to_string(),
    })?;
    Ok(Stats(arr))
}

/// Tracepoints need tracefs (aya reads the event id there); mount it when absent.
pub fn ensure_tracefs() -> Result<(), BpfError> {
    let path = Path::new(TRACEFS);
    let populated = std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_some());
    if populated {
        return Ok(());
    }
    nix::mount::mount(
        Some("tracefs"),
        TRACEFS,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|source| BpfError::Tracefs {
        path: TRACEFS,
        source,
    })?;
    tracing::info!(
        path = TRACEFS,
        "mounted tracefs for the sampling tracepoints"
    );
    Ok(())
}

/// The per-CPU counters every program keeps (`TIERD_STAT_*`).
pub struct Stats(PerCpuArray<MapData, u64>);

impl Stats {
    /// Sum over CPUs of counter `idx` (0 when unreadable: statistics only).
    pub fn sum(&self, idx: u32) -> u64 {
        self.0.get(&idx, 0).map(|v| v.iter().sum()).unwrap_or(0)
    }

    pub fn dropped(&self) -> u64 {
        self.sum(STAT_DROPPED)
    }

    /// Whether the program changed its map since the last call that returned true.
    /// Iterating a BPF hash costs O(max_entries) (0.7 ms for an empty 256 Ki-entry
    /// LRU hash on the host), so drains skip maps nothing was written to.
    pub fn changed_since(&self, seen: &mut u64) -> bool {
        let n = self.sum(STAT_UPDATES);
        let changed = n != *seen;
        *seen = n;
        changed
    }
}

/// A BPF map the daemon empties every drain.
pub trait DrainMap<K, V>: Send {
    /// Moves every entry into `out` and deletes it from the map.
    fn drain_into(&mut self, out: &mut Vec<(K, V)>) -> Result<(), String>;
}

/// The set of pids (tgids or kthread pids) a program counts events for.
pub trait PidFilter: Send {
    fn add(&mut self, pid: u32) -> Result<(), String>;
    fn remove(&mut self, pid: u32);
}

/// A BPF hash map drained by reading then deleting each key. An increment that
/// lands between the read and the delete of the same key is lost: a sub-
/// microsecond window per key per drain, against ~100 ms of accumulation.
pub struct BpfHash<K: Pod, V: Pod>(pub HashMap<MapData, K, V>);

impl<K: Pod + Send, V: Pod + Send> DrainMap<K, V> for BpfHash<K, V> {
    fn drain_into(&mut self, out: &mut Vec<(K, V)>) -> Result<(), String> {
        let keys: Vec<K> = self
            .0
            .keys()
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        for k in keys {
            if let Ok(v) = self.0.get(&k, 0) {
                out.push((k, v));
            }
            // A key the program already re-deleted is fine to miss.
            let _ = self.0.remove(&k);
        }
        Ok(())
    }
}

impl PidFilter for HashMap<MapData, u32, u8> {
    fn add(&mut self, pid: u32) -> Result<(), String> {
        self.insert(pid, 1, 0).map_err(|e| e.to_string())
    }

    fn remove(&mut self, pid: u32) {
        let _ = HashMap::remove(self, &pid);
    }
}

#[cfg(test)]
pub mod fake {
    //! In-memory stand-ins for the BPF maps.
    use super::{DrainMap, PidFilter};
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};

    /// Entries shared with the test, which plays the BPF program's part.
    #[derive(Clone, Default)]
    pub struct FakeMap<K, V>(pub Arc<Mutex<Vec<(K, V)>>>);

    impl<K: Send, V: Send> DrainMap<K, V> for FakeMap<K, V> {
        fn drain_into(&mut self, out: &mut Vec<(K, V)>) -> Result<(), String> {
            out.append(&mut self.0.lock().unwrap());
            Ok(())
        }
    }

    #[derive(Clone, Default)]
    pub struct FakeFilter(pub Arc<Mutex<BTreeSet<u32>>>);

    impl PidFilter for FakeFilter {
        fn add(&mut self, pid: u32) -> Result<(), String> {
            self.0.lock().unwrap().insert(pid);
            Ok(())
        }
        fn remove(&mut self, pid: u32) {
            self.0.lock().unwrap().remove(&pid);
        }
    }
}
