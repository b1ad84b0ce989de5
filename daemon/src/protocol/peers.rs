//! Which client connections lost their peer: the identity check the placement refresher
//! (`tierd-placement`) runs before every pass, every [`super::REFRESH_PERIOD`].
//!
//! A connection's peer is pinned when it connects ([`super::session::PeerWatch`]); it is
//! gone when that process exited (its pidfd says so, no `/proc` read) or when its
//! credentials changed (a set-uid exec: only `/proc/PID/status` tells). Reading
//! credentials costs a `/proc/PID/status` read and a `stat` of `/proc/PID/ns/user`
//! (milliseconds under emulation), so it is done once per peer *process* per pass,
//! however many connections that process holds: 256 client threads of one process
//! are one read, not 256 (each connection's own credentials at connect time are still
//! compared one by one). Live watches with the same pid are the same process: a pid is
//! not reused while the process holding it runs.

use crate::access::process::{Creds, ProcessError};
use std::collections::BTreeMap;

/// What the check needs of a connection's peer (a trait so that the grouping is tested
/// without processes).
pub trait Watched {
    fn pid(&self) -> i32;
    /// Still running (a pidfd poll: cheap).
    fn alive(&self) -> bool;
    /// The process's credentials now (`/proc` reads: what this module economises).
    fn read_creds(&self) -> Result<Creds, ProcessError>;
    /// Why the peer is not the process that connected, given its credentials now.
    fn judge(&self, now: &Result<Creds, ProcessError>) -> Option<String>;
}

/// The connections among `watches` whose peer is gone, with the reason; credentials are
/// read once per live peer process.
pub fn departed<W: Watched>(watches: &[(u64, &W)]) -> Vec<(u64, String)> {
    let mut by_pid: BTreeMap<i32, Vec<(u64, &W)>> = BTreeMap::new();
    for &(conn, w) in watches {
        by_pid.entry(w.pid()).or_default().push((conn, w));
    }
    let mut gone = Vec::new();
    for (pid, group) in by_pid {
        let mut now: Option<Result<Creds, ProcessError>> = None;
        for (conn, w) in group {
            if !w.alive() {
                gone.push((conn, ProcessError::Exited(pid).to_string()));
                continue;
            }
            // The first live watch reads for the process; the others share its reading.
            // A reading that failed (the process exited during it) is not shared: a
            // watch still alive after that is judged on its own reading.
            let reading = match &now {
                Some(Ok(_)) => now.as_ref(),
                _ => {
                    now = Some(w.read_creds());
                    now.as_ref()
                }
            };
            if let Some(why) = reading.and_then(|r| w.judge(r)) {
                gone.push((conn, why));
            }
        }
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::process::Ids;
    use std::cell::Cell;

    /// A peer process as the fake kernel sees it, shared by its connections.
    struct Proc {
        pid: i32,
        alive: Cell<bool>,
        uid: Cell<u32>,
        reads: Cell<u32>,
    }

    /// One connection's watch: the process and the uid it had at connect time.
    struct Watch<'a> {
        p: &'a Proc,
        uid_at_connect: u32,
    }

    fn creds(uid: u32) -> Creds {
        Creds {
            uid: Ids {
                real: uid,
                effective: uid,
                saved: uid,
                fs: uid,
            },
            ..Creds::default()
        }
    }

    impl Watched for Watch<'_> {
        fn pid(&self) -> i32 {
            self.p.pid
        }
        fn alive(&self) -> bool {
            self.p.alive.get()
        }
        fn read_creds(&self) -> Result<Creds, ProcessError> {
            self.p.reads.set(self.p.reads.get() + 1);
            if self.p.alive.get() {
                Ok(creds(self.p.uid.get()))
            } else {
                Err(ProcessError::Exited(self.p.pid))
            }
        }
        fn judge(&self, now: &Result<Creds, ProcessError>) -> Option<String> {
            match now {
                Ok(c) if *c == creds(self.uid_at_connect) => None,
                Ok(_) => Some("credentials changed".into()),
                Err(e) => Some(e.to_string()),
            }
        }
    }

    fn proc(pid: i32, uid: u32) -> Proc {
        Proc {
            pid,
            alive: Cell::new(true),
            uid: Cell::new(uid),
            reads: Cell::new(0),
        }
    }

    #[test]
    fn many_connections_of_one_process_cost_one_credentials_read() {
        let (a, b) = (proc(10, 1000), proc(11, 1001));
        let mut watches: Vec<Watch> = (0..256)
            .map(|_| Watch {
                p: &a,
                uid_at_connect: 1000,
            })
            .collect();
        watches.push(Watch {
            p: &b,
            uid_at_connect: 1001,
        });
        let list: Vec<(u64, &Watch)> = watches
            .iter()
            .enumerate()
            .map(|(i, w)| (i as u64, w))
            .collect();
        assert!(departed(&list).is_empty());
        assert_eq!(
            (a.reads.get(), b.reads.get()),
            (1, 1),
            "one read per process per pass, not one per connection"
        );
    }

    #[test]
    fn each_connection_is_judged_against_its_own_credentials() {
        let a = proc(10, 1000);
        // Connection 1 connected before the process switched to uid 0 (set-uid exec),
        // connection 2 after: the same reading ends 1 and keeps 2.
        let w1 = Watch {
            p: &a,
            uid_at_connect: 1000,
        };
        let w2 = Watch {
            p: &a,
            uid_at_connect: 0,
        };
        a.uid.set(0);
        let gone = departed(&[(1, &w1), (2, &w2)]);
        assert_eq!(gone, vec![(1, "credentials changed".to_string())]);
        assert_eq!(a.reads.get(), 1);
    }

    #[test]
    fn an_exited_peer_is_gone_without_a_read() {
        let a = proc(10, 1000);
        let w = Watch {
            p: &a,
            uid_at_connect: 1000,
        };
        a.alive.set(false);
        let gone = departed(&[(7, &w), (8, &w)]);
        assert_eq!(
            gone,
            vec![
                (7, "process 10 exited".to_string()),
                (8, "process 10 exited".to_string())
            ]
        );
        assert_eq!(a.reads.get(), 0, "the pidfd told: no /proc read");
    }
}
