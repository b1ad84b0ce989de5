//! Connection limits: how many connections a socket holds at once, in total and per
//! uid, with the last few kept for root.
//!
//! The accept thread asks its [`Gate`] before it starts a connection's thread; the
//! [`Permit`] it gets travels with the connection and gives the slot back when dropped.
//! The limits are read from the config at every accept, so a reload applies to new
//! connections (open ones are never cut for it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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

#[derive(Debug, Default)]
struct Counts {
    total: u32,
    per_uid: HashMap<u32, u32>,
}

/// The open connections of one socket, counted per uid.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    counts: Arc<Mutex<Counts>>,
}

/// One admitted connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Permit {
    counts: Arc<Mutex<Counts>>,
    uid: u32,
}

impl Gate {
    /// Takes a slot for a connection of `uid`, or says why not. Root is held to the
    /// total only; everyone else to their per-uid limit and to the total less root's
    /// reserve.
    pub fn admit(&self, uid: u32, limits: &Limits) -> Result<Permit, Refused> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let held = c.per_uid.get(&uid).copied().unwrap_or(0);
        if uid == 0 {
            if c.total >= limits.max_total {
                return Err(Refused::Total {
                    section: limits.section,
                    held: c.total,
                    limit: limits.max_total,
                    reserve: String::new(),
                });
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
        c.total += 1;
        *c.per_uid.entry(uid).or_insert(0) += 1;
        Ok(Permit {
            counts: self.counts.clone(),
            uid,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> u32 {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

impl Permit {
    pub fn uid(&self) -> u32 {
        self.uid
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
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
    };

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
