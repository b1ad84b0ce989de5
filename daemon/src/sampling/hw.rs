//! The `hw-sample` backend: precise load sampling with data addresses, Intel PEBS
//! (`cpu/mem-loads`) or AMD IBS (`ibs_op`), one perf event per CPU with
//! `ebpf/hwsample.bpf.c` attached, counting sampled addresses per 64 KiB granule.
//!
//! aya's own perf-event attach cannot ask for `PERF_SAMPLE_ADDR` or `precise_ip`,
//! so the events are opened here (a minimal `perf_event_attr`) and the program is
//! attached with `PERF_EVENT_IOC_SET_BPF`. Where no such PMU exists (VMs, this CI
//! machine) [`open`] fails with the reason and the backend reports `active: false`.

use super::abi::PageKey;
use super::bpf::{self, BpfHash};
use super::pages::{PageSampler, GRANULE_SHIFT};
use super::SamplerError;
use aya::maps::{HashMap, MapData};
use aya::programs::PerfEvent;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

const NAME: &str = "hw-sample";
const OBJECT: &str = "hwsample.bpf.o";
const PROGRAM: &str = "tierd_hw_sample";
const PMU_DIR: &str = "/sys/bus/event_source/devices";
/// One sample per this many loads.
const SAMPLE_PERIOD: u64 = 10_007;
const PERF_TYPE_RAW: u32 = 4;

pub type HwSampler = PageSampler<BpfHash<PageKey, u64>, HashMap<MapData, u32, u8>>;

/// The precise memory-sampling event this CPU offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmuEvent {
    pub kind: &'static str,
    pub type_: u32,
    pub config: u64,
    pub config1: u64,
    pub precise_ip: u64,
}

/// Finds PEBS mem-loads or IBS op under `devices` (`/sys/bus/event_source/devices`).
pub fn detect(devices: &Path) -> Result<PmuEvent, String> {
    let ibs = devices.join("ibs_op/type");
    if let Ok(t) = std::fs::read_to_string(&ibs) {
        let type_ = t
            .trim()
            .parse()
            .map_err(|_| format!("{}: {t:?}", ibs.display()))?;
        return Ok(PmuEvent {
            kind: "AMD IBS op",
            type_,
            config: 0,
            config1: 0,
            precise_ip: 0,
        });
    }
    let ml = devices.join("cpu/events/mem-loads");
    if let Ok(spec) = std::fs::read_to_string(&ml) {
        let (config, config1) = parse_intel_event(spec.trim())
            .ok_or_else(|| format!("{}: cannot parse {spec:?}", ml.display()))?;
        return Ok(PmuEvent {
            kind: "Intel PEBS mem-loads",
            type_: PERF_TYPE_RAW,
            config,
            config1,
            precise_ip: 2,
        });
    }
    Err(format!(
        "no precise memory-sampling PMU: neither {}/cpu/events/mem-loads (Intel PEBS) nor \
         {}/ibs_op (AMD IBS) exists (no hardware PMU, e.g. in a VM)",
        devices.display(),
        devices.display()
    ))
}

/// `event=0xcd,umask=0x1,ldlat=3` with Intel's core PMU format (event config:0-7,
/// umask config:8-15, ldlat config1:0-15) into `(config, config1)`.
pub fn parse_intel_event(spec: &str) -> Option<(u64, u64)> {
    let (mut config, mut config1) = (0u64, 0u64);
    for part in spec.split(',') {
        let (k, v) = part.split_once('=')?;
        let v = v.trim();
        let n = match v.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok()?,
            None => v.parse().ok()?,
        };
        match k.trim() {
            "event" => config |= n & 0xff,
            "umask" => config |= (n & 0xff) << 8,
            "ldlat" => config1 |= n & 0xffff,
            _ => return None,
        }
    }
    Some((config, config1))
}

/// Loads the program and opens one sampling event per online CPU.
pub fn open() -> Result<HwSampler, SamplerError> {
    let err = |msg: String| SamplerError::Unavailable { backend: NAME, msg };
    let ev = detect(Path::new(PMU_DIR)).map_err(err)?;
    let mut obj = bpf::load(
        OBJECT,
        bpf::HWSAMPLE_OBJ,
        &[("granule_shift", GRANULE_SHIFT)],
    )
    .map_err(|e| err(e.to_string()))?;
    let prog: &mut PerfEvent = obj
        .program_mut(PROGRAM)
        .ok_or_else(|| err(format!("{OBJECT}: no program {PROGRAM}")))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| err(e.to_string()))?;
    prog.load().map_err(|e| err(e.to_string()))?;
    let prog_fd = prog
        .fd()
        .map_err(|e| err(e.to_string()))?
        .as_fd()
        .as_raw_fd();
    let cpus = aya::util::online_cpus().map_err(|(p, e)| err(format!("{p}: {e}")))?;
    let mut events = Vec::new();
    for cpu in cpus {
        let fd = perf::open(&ev, cpu)
            .map_err(|e| err(format!("perf_event_open({}, cpu {cpu}): {e}", ev.kind)))?;
        perf::attach(&fd, prog_fd).map_err(|e| {
            err(format!(
                "attaching to the {} event on cpu {cpu}: {e}",
                ev.kind
            ))
        })?;
        events.push(fd);
    }
    let pages = bpf::hash_map(&mut obj, OBJECT, "hw_pages").map_err(|e| err(e.to_string()))?;
    let tracked = bpf::hash_map(&mut obj, OBJECT, "tracked").map_err(|e| err(e.to_string()))?;
    let stats = bpf::stats(&mut obj, OBJECT).map_err(|e| err(e.to_string()))?;
    let mut s = PageSampler::new(
        NAME,
        BpfHash(pages),
        tracked,
        1.0,
        format!(
            "{} (1 in {SAMPLE_PERIOD} loads) on {} CPUs",
            ev.kind,
            events.len()
        ),
    );
    s.stats = Some(stats);
    s._attached = Some(Box::new((obj, events)));
    Ok(s)
}

mod perf {
    //! The two perf syscalls aya does not expose with the options we need.
    use super::{AsRawFd, FromRawFd, OwnedFd, PmuEvent, SAMPLE_PERIOD};

    /// `struct perf_event_attr` up to `config2` (PERF_ATTR_SIZE_VER1).
    #[repr(C)]
    #[derive(Default)]
    struct Attr {
        type_: u32,
        size: u32,
        config: u64,
        sample_period: u64,
        sample_type: u64,
        read_format: u64,
        flags: u64,
        wakeup_events: u32,
        bp_type: u32,
        config1: u64,
        config2: u64,
    }
    const _: () = assert!(std::mem::size_of::<Attr>() == 72);

    const SAMPLE_TID: u64 = 1 << 1;
    const SAMPLE_ADDR: u64 = 1 << 3;
    const FLAG_DISABLED: u64 = 1 << 0;
    const FLAG_EXCLUDE_KERNEL: u64 = 1 << 5;
    const FLAG_EXCLUDE_HV: u64 = 1 << 6;
    const PRECISE_IP_SHIFT: u64 = 15;
    const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
    const IOC_ENABLE: libc::c_ulong = 0x2400;
    const IOC_SET_BPF: libc::c_ulong = 0x4004_2408;

    pub fn open(ev: &PmuEvent, cpu: u32) -> std::io::Result<OwnedFd> {
        let attr = Attr {
            type_: ev.type_,
            size: std::mem::size_of::<Attr>() as u32,
            config: ev.config,
            sample_period: SAMPLE_PERIOD,
            sample_type: SAMPLE_TID | SAMPLE_ADDR,
            flags: FLAG_DISABLED
                | FLAG_EXCLUDE_KERNEL
                | FLAG_EXCLUDE_HV
                | (ev.precise_ip << PRECISE_IP_SHIFT),
            config1: ev.config1,
            ..Attr::default()
        };
        // SAFETY: `attr` is a valid, initialised perf_event_attr of the size it
        // declares; pid -1 with a cpu samples every process on that cpu.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const Attr,
                -1,
                cpu as libc::c_int,
                -1,
                PERF_FLAG_FD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the syscall returned a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    pub fn attach(fd: &OwnedFd, prog_fd: i32) -> std::io::Result<()> {
        for (req, arg) in [(IOC_SET_BPF, prog_fd), (IOC_ENABLE, 0)] {
            // SAFETY: perf ioctls on an fd we own, with an integer argument.
            if unsafe { libc::ioctl(fd.as_raw_fd(), req, arg) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intel_event_spec_is_parsed() {
        assert_eq!(
            parse_intel_event("event=0xcd,umask=0x1,ldlat=3"),
            Some((0x1cd, 3))
        );
        assert_eq!(parse_intel_event("event=0xcd,bogus=1"), None);
    }

    #[test]
    fn absent_pmu_is_reported_with_the_paths() {
        let t = tempfile::tempdir().unwrap();
        let e = detect(t.path()).unwrap_err();
        assert!(e.contains("ibs_op") && e.contains("mem-loads"), "{e}");
        std::fs::create_dir_all(t.path().join("ibs_op")).unwrap();
        std::fs::write(t.path().join("ibs_op/type"), "11\n").unwrap();
        assert_eq!(detect(t.path()).unwrap().type_, 11);
    }
}
