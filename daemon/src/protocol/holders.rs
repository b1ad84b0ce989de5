//! Which pool files some process still holds: an open descriptor (`/proc/PID/fd/*`) or
//! a mapping (`/proc/PID/maps`), matched by device and inode.
//!
//! A pool counts against its creator's quota until nobody holds it, however the holders
//! got their descriptor (from tierd, inherited across fork, passed over a socket);
//! connections are no measure, since a client keeps its descriptor and mapping after
//! closing its connection. The kernel exposes no open count for a memfd, so tierd looks:
//! only at pools no open connection references, at most once a second
//! ([`super::pools`] decides when), skipping its own process. Cost: one readlink per
//! descriptor of every process plus a read of the maps of processes that have a pool
//! file open or mapped; tens of milliseconds with thousands of processes.
//! Not seen: a descriptor in flight in an unreceived `SCM_RIGHTS` message (a pool then
//! leaves the table early; its memory stays charged to whoever faulted it).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A file's identity: (device, inode).
pub type FileId = (u64, u64);

/// The members of `files` that a process other than `skip_pid` holds, looking in the
/// proc file system at `proc_root`.
pub fn held(proc_root: &Path, files: &HashSet<FileId>, skip_pid: u32) -> HashSet<FileId> {
    let mut found = HashSet::new();
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return found;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == skip_pid {
            continue;
        }
        found.extend(held_by(&e.path(), files));
        if found.len() == files.len() {
            break;
        }
    }
    found
}

/// The members of `files` that the process of `/proc/PID` directory `pid_dir` holds.
pub fn held_by(pid_dir: &Path, files: &HashSet<FileId>) -> HashSet<FileId> {
    let mut found = HashSet::new();
    scan_fds(pid_dir, files, &mut found);
    scan_maps(pid_dir, files, &mut found);
    found
}

fn scan_fds(pid_dir: &Path, files: &HashSet<FileId>, found: &mut HashSet<FileId>) {
    let Ok(fds) = std::fs::read_dir(pid_dir.join("fd")) else {
        return;
    };
    for fd in fds.flatten() {
        // Only memfds need a stat; their link reads "/memfd:NAME (deleted)".
        let is_memfd = std::fs::read_link(fd.path())
            .is_ok_and(|t| t.as_os_str().as_encoded_bytes().starts_with(b"/memfd:"));
        if !is_memfd {
            continue;
        }
        if let Ok(m) = std::fs::metadata(fd.path()) {
            let id = (m.dev(), m.ino());
            if files.contains(&id) {
                found.insert(id);
            }
        }
    }
}

fn scan_maps(pid_dir: &Path, files: &HashSet<FileId>, found: &mut HashSet<FileId>) {
    let Ok(maps) = std::fs::read_to_string(pid_dir.join("maps")) else {
        return;
    };
    for line in maps.lines().filter(|l| l.contains("/memfd:")) {
        if let Some(id) = parse_maps_id(line) {
            let hit = files.iter().find(|f| (dev_parts(f.0), f.1) == id).copied();
            if let Some(f) = hit {
                found.insert(f);
            }
        }
    }
}

/// ((major, minor), inode) of a maps line: `start-end perms offset MAJ:MIN inode path`.
fn parse_maps_id(line: &str) -> Option<((u64, u64), u64)> {
    let mut it = line.split_whitespace();
    let dev = it.nth(3)?;
    let ino = it.next()?.parse().ok()?;
    let (maj, min) = dev.split_once(':')?;
    Some((
        (
            u64::from_str_radix(maj, 16).ok()?,
            u64::from_str_radix(min, 16).ok()?,
        ),
        ino,
    ))
}

fn dev_parts(dev: u64) -> (u64, u64) {
    (libc::major(dev) as u64, libc::minor(dev) as u64)
}

/// The identity of an open file.
pub fn file_id(f: &impl std::os::fd::AsFd) -> std::io::Result<FileId> {
    let m = std::fs::File::from(f.as_fd().try_clone_to_owned()?).metadata()?;
    Ok((m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn memfd(name: &std::ffi::CStr) -> std::os::fd::OwnedFd {
        let fd =
            nix::sys::memfd::memfd_create(name, nix::sys::memfd::MemFdCreateFlag::empty()).unwrap();
        nix::unistd::ftruncate(&fd, 4096).unwrap();
        fd
    }

    #[test]
    fn maps_lines_are_parsed() {
        let l = "7f1c2a000000-7f1c2a001000 rw-s 00000000 00:01 3072 /memfd:tierd-pool-a (deleted)";
        assert_eq!(parse_maps_id(l), Some(((0, 1), 3072)));
        assert_eq!(parse_maps_id("garbage"), None);
    }

    /// A child holding a descriptor and a mapping (and having closed a third file); then
    /// nothing once it exited. Other tests of this process fork too, and their children
    /// inherit these files for a while: the child is looked at alone, the whole scan
    /// only until it settles.
    #[test]
    fn descriptors_and_mappings_of_other_processes_are_found() {
        let (fd_held, mapped, gone) = (
            memfd(c"tierd-pool-t1"),
            memfd(c"tierd-pool-t2"),
            memfd(c"tierd-pool-t3"),
        );
        let ids: HashSet<FileId> = [&fd_held, &mapped, &gone]
            .iter()
            .map(|f| file_id(*f).unwrap())
            .collect();
        let (rd, wr) = nix::unistd::pipe().unwrap(); // child -> parent
        let (rd2, wr2) = nix::unistd::pipe().unwrap(); // parent -> child
                                                       // SAFETY: the child only makes raw calls (mmap, close, write, read) then _exits.
        let child = match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    mapped.as_raw_fd(),
                    0,
                );
                libc::close(mapped.as_raw_fd());
                libc::close(gone.as_raw_fd());
                libc::write(wr.as_raw_fd(), b"x".as_ptr().cast(), 1);
                let mut b = 0u8;
                libc::read(rd2.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
                libc::_exit(0)
            },
            nix::unistd::ForkResult::Parent { child } => child,
        };
        let mut b = [0u8];
        nix::unistd::read(rd.as_raw_fd(), &mut b).unwrap();
        let found = held_by(Path::new(&format!("/proc/{child}")), &ids);
        nix::unistd::write(&wr2, b"y").unwrap();
        nix::sys::wait::waitpid(child, None).unwrap();
        let want: HashSet<FileId> = [file_id(&fd_held).unwrap(), file_id(&mapped).unwrap()]
            .into_iter()
            .collect();
        assert_eq!(
            found, want,
            "the descriptor and the mapping, not the closed one"
        );
        let t0 = std::time::Instant::now();
        while !held(Path::new("/proc"), &ids, std::process::id()).is_empty() {
            assert!(
                t0.elapsed().as_secs() < 30,
                "still held after the child exited"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}
