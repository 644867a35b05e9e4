//! Whether to claim a peer's tasks: pure decisions over what the store says of its
//! lease, with the clock passed in.
//!
//! A peer judged down for placement (its session closed, or the failure detector holds
//! it down) is *watched*: this node reads its lease ([`LeaseInfo`]) every poll and
//! claims its tasks only on store evidence that it stopped:
//!
//! | why it is down ([`Cause`])        | claimed when                                              |
//! |-----------------------------------|-----------------------------------------------------------|
//! | it said it is leaving, then its session closed ([`Cause::Departed`]) | at once (it drained first)      |
//! | its session closed ([`Cause::SessionClosed`]) | its lease lapsed, or its renewal counter did not move for `claim_after` |
//! | it fell silent, session open ([`Cause::Silent`]) | its lease lapsed                               |
//!
//! A killed node's session closes at once, and it renews no more: claimed about
//! `claim_after` (2 × `--lease-renew-ms`, 1 s by default) after the kill. A node cut off
//! from its peers but not from the store keeps renewing: never claimed, whichever way
//! its session ended. A silent node with an open session may be paused or stalled and
//! wake up with its tasks in hand, so it keeps them for as long as its lease lasts
//! (claimed within `--lease-ttl-ms`). A lapse counts only once the store has answered
//! this node for a whole lease period ([`may_reap`]): a store that was away may come
//! back with every lease gone, live nodes' included.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::store::LeaseInfo;

/// Why a peer is down, as the dispatcher judged it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// It announced it is leaving (`Notice::Leaving`) and its session closed since.
    Departed,
    /// Its session closed without a goodbye (killed, crashed, or the link between the
    /// nodes broke).
    SessionClosed,
    /// The failure detector holds it down while its session is open (paused, stalled,
    /// or heartbeats lost).
    Silent,
}

/// What to do about one watched peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Keep watching.
    Wait,
    /// Claim its tasks; the reason goes to the log.
    Claim(&'static str),
}

/// One peer held down, and what this node saw of its lease since.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    /// Why it is down.
    pub cause: Cause,
    /// The last counter read (`None`: no live lease) and since when it has not moved;
    /// `None` until the first read, and again after a failed read.
    seen: Option<(Option<u64>, Instant)>,
    /// A claim is under way or done: decide nothing more.
    pub claiming: bool,
}

impl Watch {
    /// A peer just found down.
    pub fn new(cause: Cause) -> Self {
        Self {
            cause,
            seen: None,
            claiming: false,
        }
    }

    /// The store could not be read: a stall is measured again from the next read, so a
    /// store outage, which stops every node's renewals, is never taken for the peer's.
    pub fn read_failed(&mut self) {
        self.seen = None;
    }

    /// The peer's lease as read at `now`. `store_steady`: the store has answered this
    /// node for a whole lease period ([`may_reap`]).
    pub fn observe(
        &mut self,
        lease: Option<LeaseInfo>,
        now: Instant,
        claim_after: Duration,
        store_steady: bool,
    ) -> Verdict {
        if self.claiming {
            return Verdict::Wait;
        }
        let value = lease.map(|l| l.renewals);
        let stalled_for = match self.seen {
            Some((v, since)) if v == value => now.saturating_duration_since(since),
            _ => {
                self.seen = Some((value, now));
                Duration::ZERO
            }
        };
        let verdict = match self.cause {
            Cause::Departed => Verdict::Claim("it left the cluster"),
            _ if value.is_none() && store_steady => Verdict::Claim("its lease lapsed"),
            Cause::SessionClosed if stalled_for >= claim_after => {
                Verdict::Claim("its session closed and its lease is no longer renewed")
            }
            Cause::SessionClosed | Cause::Silent => Verdict::Wait,
        };
        if verdict != Verdict::Wait {
            self.claiming = true;
        }
        verdict
    }
}

/// Brings the watches in line with the peers the dispatcher holds down: a new peer (or
/// one down for another cause) is watched afresh, a peer no longer down is dropped. A
/// peer already claimed stays claimed while it stays down. Returns whether a peer was
/// added (worth reading at once).
pub fn sync_watches(watches: &mut HashMap<String, Watch>, down: &[(String, Cause)]) -> bool {
    watches.retain(|node, _| down.iter().any(|(n, _)| n == node));
    let mut added = false;
    for (node, cause) in down {
        match watches.get_mut(node) {
            Some(w) if w.cause == *cause => {}
            Some(w) => {
                let claiming = w.claiming;
                *w = Watch::new(*cause);
                w.claiming = claiming;
                added |= !claiming;
            }
            None => {
                watches.insert(node.clone(), Watch::new(*cause));
                added = true;
            }
        }
    }
    added
}

/// Whether a lapsed lease may be acted on: only once the store has answered this node's
/// renewals for a whole lease period. A store that was away (restarted, cut off) may
/// come back with every lease lapsed at once, live nodes' included; waiting one lease
/// period gives every live node time to renew first.
pub fn may_reap(reachable_since: Option<Instant>, now: Instant, lease_ttl: Duration) -> bool {
    reachable_since.is_some_and(|since| now.saturating_duration_since(since) >= lease_ttl)
}

/// Whether a node id is in use by a running node, from two reads of its lease taken
/// some renewal periods apart: it is when its lease was renewed in between. A lease
/// left by a killed node (not renewed since) or none at all leaves the id free.
pub fn id_in_use(before: Option<LeaseInfo>, after: Option<LeaseInfo>) -> bool {
    after.is_some() && before != after
}

#[cfg(test)]
mod tests;
