//! Connection limits: how many connections a socket holds at once, in total and per
//! uid, with the last few kept for root.
//!
//! The accept thread asks its [`Gate`] before it starts a connection's thread; the
//! [`Permit`] it gets travels with the connection and gives the slot back when dropped.
//! The limits are read from the config at every accept, so a reload applies to new
//! connections (open ones are never cut for it).
//!
//! On the control socket root gets in even when the socket is full of idle connections
//! (its own included, e.g. a leaky monitoring script): the connection idle the longest
//! (other users' first) is closed to make room ([`Limits::evict_idle_for_root`]). A
//! connection counts as idle while its thread waits for a request ([`Permit::idle`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The limits of one socket, and the config section they come from (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `daemon` or `client`.
    pub section: &'static str,
    /// Connections at once, root's reserve included.
    pub max_total: u32,
    /// Connections at once per non-root uid.
    pub max_per_uid: u32,
    /// The last this-many of `max_total` are only for root.
    pub root_reserve: u32,
    /// When root finds the socket full, close a connection idle at least this long to
    /// make room (`None`: refuse root like anyone else).
    pub evict_idle_for_root: Option<Duration>,
}

/// Closes an admitted connection from outside its thread (the thread then sees the
/// end of the stream, finishes and drops its [`Permit`]).
pub trait Evict: Send + Sync {
    fn evict(&self);
}

/// Why a connection was refused; the text is what the caller reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "uid {uid} already holds {held} connections to tierd's {section} socket \
         ({section}.max_connections_per_uid = {limit}); close some and retry"
    )]
    PerUid {
        section: &'static str,
        uid: u32,
        held: u32,
        limit: u32,
    },
    #[error(
        "tierd's {section} socket is full: {held} connections open \
         ({section}.max_connections = {limit}{reserve}); retry later"
    )]
    Total {
        section: &'static str,
        held: u32,
        limit: u32,
        reserve: String,
    },
}

struct Conn {
    uid: u32,
    /// Since when it waits for a request; `None` while one is handled.
    idle_since: Option<Instant>,
    evictor: Option<Arc<dyn Evict>>,
    evicted: bool,
}

#[derive(Default)]
struct Counts {
    total: u32,
    per_uid: HashMap<u32, u32>,
    next_id: u64,
    conns: HashMap<u64, Conn>,
}

impl Counts {
    /// The idle connection to close for root, if one has been idle `min_idle`: other
    /// users' before root's, then the longest idle.
    fn idlest(&mut self, now: Instant, min_idle: Duration) -> Option<(u64, Arc<dyn Evict>)> {
        let (id, c) = self
            .conns
            .iter_mut()
            .filter(|(_, c)| !c.evicted && c.evictor.is_some())
            .filter(|(_, c)| {
                c.idle_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= min_idle)
            })
            .min_by_key(|(_, c)| (c.uid == 0, c.idle_since))?;
        c.evicted = true;
        Some((*id, c.evictor.clone()?))
    }
}

/// The open connections of one socket, counted per uid.
#[derive(Clone, Default)]
pub struct Gate {
    counts: Arc<Mutex<Counts>>,
}

/// One admitted connection's slot; dropping it frees the slot.
pub struct Permit {
    counts: Arc<Mutex<Counts>>,
    id: u64,
    uid: u32,
}

impl Gate {
    /// Takes a slot for a connection of `uid`, or says why not. Root is held to the
    /// total only; everyone else to their per-uid limit and to the total less root's
    /// reserve.
    pub fn admit(&self, uid: u32, limits: &Limits) -> Result<Permit, Refused> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let held = c.per_uid.get(&uid).copied().unwrap_or(0);
        let mut evict = None;
        if uid == 0 {
            if c.total >= limits.max_total {
                evict = limits
                    .evict_idle_for_root
                    .and_then(|min| c.idlest(Instant::now(), min));
                if evict.is_none() {
                    return Err(Refused::Total {
                        section: limits.section,
                        held: c.total,
                        limit: limits.max_total,
                        reserve: String::new(),
                    });
                }
            }
        } else {
            if held >= limits.max_per_uid {
                return Err(Refused::PerUid {
                    section: limits.section,
                    uid,
                    held,
                    limit: limits.max_per_uid,
                });
            }
            let open_to_all = limits.max_total.saturating_sub(limits.root_reserve);
            if c.total >= open_to_all {
                let reserve = if limits.root_reserve > 0 {
                    format!(
                        ", of which {} only for root ({}.root_reserved_connections)",
                        limits.root_reserve, limits.section
                    )
                } else {
                    String::new()
                };
                return Err(Refused::Total {
                    section: limits.section,
                    held: c.total,
                    limit: limits.max_total,
                    reserve,
                });
            }
        }
        // An evicted connection counts until its thread has gone, so the total can
        // exceed the limit by the evictions in flight (each one a distinct idle
        // connection that ends at once).
        c.total += 1;
        *c.per_uid.entry(uid).or_insert(0) += 1;
        c.next_id += 1;
        let id = c.next_id;
        c.conns.insert(
            id,
            Conn {
                uid,
                idle_since: Some(Instant::now()),
                evictor: None,
                evicted: false,
            },
        );
        let total = c.total;
        drop(c);
        if let Some((victim, evictor)) = evict {
            tracing::info!(
                section = limits.section,
                connection = victim,
                open = total,
                "socket full: closed the longest-idle connection to let root in"
            );
            evictor.evict();
        }
        Ok(Permit {
            counts: self.counts.clone(),
            id,
            uid,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> u32 {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("id", &self.id)
            .field("uid", &self.uid)
            .finish()
    }
}

impl Permit {
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// How to close this connection if root needs its slot.
    pub fn set_evictor(&self, e: Arc<dyn Evict>) {
        self.with(|c| c.evictor = Some(e));
    }

    /// The connection waits for a request (it may be evicted for root).
    pub fn idle(&self) {
        self.with(|c| c.idle_since = Some(Instant::now()));
    }

    /// The connection is handling a request.
    pub fn busy(&self) {
        self.with(|c| c.idle_since = None);
    }

    fn with(&self, f: impl FnOnce(&mut Conn)) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(conn) = c.conns.get_mut(&self.id) {
            f(conn);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.conns.remove(&self.id);
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                c.per_uid.remove(&self.uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        section: "daemon",
        max_total: 6,
        max_per_uid: 2,
        root_reserve: 2,
        evict_idle_for_root: None,
    };

    #[derive(Default)]
    struct Flag(std::sync::atomic::AtomicBool);

    impl Evict for Flag {
        fn evict(&self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl Flag {
        fn is_set(&self) -> bool {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[test]
    fn root_at_a_full_socket_evicts_the_idlest_other_users_connection_first() {
        let limits = Limits {
            // Long enough that a loaded machine's scheduling delays in the loop below
            // do not make the first connections idle before the "refused" check.
            evict_idle_for_root: Some(Duration::from_millis(400)),
            ..L
        };
        let g = Gate::default();
        let mut held = Vec::new();
        let mut flags = Vec::new();
        for uid in [0, 0, 1000, 1000, 0, 0] {
            let p = g.admit(uid, &limits).unwrap();
            let f = Arc::new(Flag::default());
            p.set_evictor(f.clone());
            held.push(p);
            flags.push(f);
            std::thread::sleep(Duration::from_millis(2));
        }
        // Nobody idle long enough yet: root is refused.
        assert!(g.admit(0, &limits).is_err());
        std::thread::sleep(Duration::from_millis(450));
        // The first of uid 1000's is busy: the second one goes, although root's own
        // are older.
        held[2].busy();
        let _r = g.admit(0, &limits).unwrap();
        let set: Vec<bool> = flags.iter().map(|f| f.is_set()).collect();
        assert_eq!(set, [false, false, false, true, false, false]);
        // Then root's own oldest idle one; never the same one twice.
        let _r2 = g.admit(0, &limits).unwrap();
        assert!(flags[0].is_set() && !flags[1].is_set());
        // Non-root callers never evict.
        drop(held.remove(5));
        assert!(g.admit(1001, &limits).is_err());
    }

    #[test]
    fn per_uid_limit_refuses_the_next_one_and_frees_on_drop() {
        let g = Gate::default();
        let a = g.admit(1000, &L).unwrap();
        let _b = g.admit(1000, &L).unwrap();
        let e = g.admit(1000, &L).unwrap_err();
        assert!(matches!(
            e,
            Refused::PerUid {
                uid: 1000,
                held: 2,
                limit: 2,
                ..
            }
        ));
        assert!(
            e.to_string().contains("daemon.max_connections_per_uid = 2"),
            "{e}"
        );
        // Another uid is not affected.
        g.admit(1001, &L).unwrap();
        drop(a);
        g.admit(1000, &L).unwrap();
    }

    #[test]
    fn root_keeps_its_reserve_and_is_not_held_to_the_per_uid_limit() {
        let g = Gate::default();
        let mut held = Vec::new();
        for uid in [1000, 1000, 1001, 1001] {
            held.push(g.admit(uid, &L).unwrap());
        }
        // 4 of 6 open: the last 2 are root's.
        let e = g.admit(1002, &L).unwrap_err();
        assert!(
            matches!(
                e,
                Refused::Total {
                    held: 4,
                    limit: 6,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("2 only for root"), "{e}");
        held.push(g.admit(0, &L).unwrap());
        held.push(g.admit(0, &L).unwrap());
        let e = g.admit(0, &L).unwrap_err();
        assert!(matches!(e, Refused::Total { held: 6, .. }), "{e:?}");
        assert_eq!(g.open(), 6);
        held.clear();
        assert_eq!(g.open(), 0);
        // Root alone may use more than the per-uid limit.
        let _r: Vec<_> = (0..5).map(|_| g.admit(0, &L).unwrap()).collect();
    }
}
