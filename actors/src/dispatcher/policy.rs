//! Placement: which pool runs each task. Pure; the actor feeds it a view of every pool.
//!
//! A pool takes a task while its queue has room — counting the tasks admitted for it and
//! not yet stored, so concurrent admissions never overcommit it — while its node can run
//! the task's `kind` (the kinds each node advertises in its introduction), and, when the
//! task names a resource `class`, its labels contain it. Among those pools the task goes
//! where it would wait least, with a hysteresis that keeps it local:
//!
//! - The expected wait of a pool, in thousandths of a task length, is the work ahead of
//!   the new task beyond its workers: `max(0, queued + running + 1 - workers) / workers`.
//!   A pool with a free worker has no wait. Admissions in flight (admitted, not yet
//!   stored) are left out on every pool alike: they come and go within a store write,
//!   and each node sees its own exactly but a peer's only as last reported, so counting
//!   them made every node look busier to itself than to its peers.
//! - The local pool keeps the task unless another pool's wait is shorter by more than
//!   [`HOP_COST`], half a task length: a hop costs a network round trip, a handover and
//!   a view up to a report old, so it must buy a real saving. Under an even load every
//!   pool waits alike and tasks stay where they arrive; a node whose workers are all
//!   busy hands the next task to a peer with a free one (a saving of a whole task).
//! - Among other pools, equal waits (every pool with a free worker waits 0) go to the
//!   less busy one ([`PoolView::busy_share`]), so a burst to one node spreads over all
//!   its peers instead of filling the first one listed.
//! - Each placement updates the view, so a batch spreads across pools as their load
//!   evens out.

/// The saving, in thousandths of a task length, that a task must gain from leaving the
/// local pool.
pub const HOP_COST: u64 = 500;

/// The wait of a task of an external kind on a pool where no HTTP worker serves it: as
/// if a thousand tasks were ahead, so a pool with a worker always wins, and the task
/// waits on one without (the local one first) only when no pool has a worker.
pub const UNSERVED_WAIT: u64 = 1_000_000;

use std::sync::Arc;

use taskmesh_kernels::task::TaskSpec;

/// What placement needs to know of one task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need<'a> {
    /// Its kind: only a node that has it runs the task.
    pub kind: &'a str,
    /// Its resource class, if any: only a node with that label runs the task.
    pub class: Option<&'a str>,
}

impl<'a> Need<'a> {
    /// What placement needs of the task `spec` describes.
    pub fn of(spec: &'a TaskSpec) -> Self {
        Self {
            kind: &spec.kind,
            class: spec.class.as_deref(),
        }
    }
}

/// What the dispatcher knows of one pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolView {
    /// The node the pool runs on.
    pub node: String,
    /// Whether it is this node's own pool.
    pub local: bool,
    /// Resource labels of the node (e.g. `heavy`, `gpu`).
    pub labels: Vec<String>,
    /// The task kinds the node can run (shared: they change only when the node starts),
    /// its external kinds included.
    pub kinds: Arc<[String]>,
    /// Its external kinds that no HTTP worker serves now ([`UNSERVED_WAIT`]).
    pub unserved: Arc<[String]>,
    /// Queue capacity: tasks waiting beyond this are refused.
    pub capacity: usize,
    /// Tasks waiting, including those sent to it and not taken yet.
    pub queued: usize,
    /// Tasks admitted for it and not yet stored or sent (by any node, as far as known):
    /// they count against its capacity, not in its wait.
    pub admitting: usize,
    /// Tasks running.
    pub running: usize,
    /// Live workers.
    pub workers: usize,
    /// False when the pool must get no new tasks (circuit open, draining).
    pub available: bool,
}

impl PoolView {
    /// The expected wait of one more task, in thousandths of a task length.
    pub fn wait(&self) -> u64 {
        let workers = self.workers.max(1);
        let ahead = (self.queued + self.running + 1).saturating_sub(workers);
        ahead as u64 * 1000 / workers as u64
    }

    /// The expected wait of one more task of `kind`: [`PoolView::wait`], or
    /// [`UNSERVED_WAIT`] for an external kind no worker of the pool serves.
    pub fn wait_for(&self, kind: &str) -> u64 {
        if self.unserved.iter().any(|k| k == kind) {
            UNSERVED_WAIT
        } else {
            self.wait()
        }
    }

    /// How busy the pool is, in thousandths of its workers: `(queued + running) / workers`.
    /// It breaks ties between equal waits (every pool with a free worker waits 0), so
    /// work goes to the idler pool rather than to the first one in the list.
    pub fn busy_share(&self) -> u64 {
        (self.queued + self.running) as u64 * 1000 / self.workers.max(1) as u64
    }

    fn has_room(&self) -> bool {
        self.queued + self.admitting < self.capacity
    }

    fn has_kind(&self, kind: &str) -> bool {
        self.kinds.iter().any(|k| k == kind)
    }
}

/// Why a set of tasks could not be placed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    /// No pool carries the label the task asked for.
    #[error("no node has resource class `{0}`")]
    NoSuchClass(String),
    /// No known node, up or down, can run the kind.
    #[error("no node in the cluster can run kind `{0}`")]
    UnknownKind(String),
    /// Only nodes that take no work now (down, suspect, draining, circuit open) can run
    /// the kind, while others do take work.
    #[error("every node that can run kind `{0}` is unavailable; retry later")]
    KindUnavailable(String),
    /// Every eligible pool's queue is full.
    #[error("every eligible pool is at capacity")]
    Saturated,
}

fn eligible(p: &PoolView, need: Need<'_>) -> bool {
    p.has_kind(need.kind) && need.class.is_none_or(|c| p.labels.iter().any(|l| l == c))
}

/// Why no pool of `pools` takes a task that needs `need`: no pool has its kind; pools
/// take work but none with its kind does; no pool has its class; or (also when no pool
/// takes work at all) every pool that could is full or unavailable.
fn why_not(pools: &[PoolView], need: Need<'_>) -> PlaceError {
    let with_kind = || pools.iter().filter(|p| p.has_kind(need.kind));
    if with_kind().next().is_none() {
        return PlaceError::UnknownKind(need.kind.to_owned());
    }
    if !with_kind().any(|p| p.available) && pools.iter().any(|p| p.available) {
        return PlaceError::KindUnavailable(need.kind.to_owned());
    }
    match need.class {
        Some(class) if !pools.iter().any(|p| eligible(p, need)) => {
            PlaceError::NoSuchClass(class.to_owned())
        }
        _ => PlaceError::Saturated,
    }
}

/// The pool for one task: the least wait (then the least busy), unless the local pool is
/// within [`HOP_COST`] of that wait.
fn place_one(view: &[PoolView], need: Need<'_>) -> Option<usize> {
    let mut open = view
        .iter()
        .enumerate()
        .filter(|(_, p)| eligible(p, need) && p.available && p.has_room());
    // The best is the least wait, then the least busy share.
    let (mut best, mut local) = (None::<(usize, (u64, u64))>, None::<(usize, u64)>);
    for (i, p) in open.by_ref() {
        let rank = (p.wait_for(need.kind), p.busy_share());
        if p.local {
            local = Some((i, rank.0));
        }
        if best.is_none_or(|(_, r)| rank < r) {
            best = Some((i, rank));
        }
    }
    match (local, best) {
        (Some((i, here)), Some((_, (there, _)))) if here <= there + HOP_COST => Some(i),
        (_, best) => best.map(|(i, _)| i),
    }
}

/// Whether [`place_all`] keeps every task on the local pool whatever the other pools'
/// load: each one fits there and waits at most [`HOP_COST`], so no other pool can save
/// more than a hop costs. Then the decision needs no view of the peers.
pub fn keeps_all(local: &PoolView, needs: &[Need<'_>]) -> bool {
    let mut view = local.clone();
    for need in needs {
        let stays = view.local
            && eligible(&view, *need)
            && view.available
            && view.has_room()
            && view.wait_for(need.kind) <= HOP_COST;
        if !stays {
            return false;
        }
        view.queued += 1;
    }
    true
}

/// Places every task (given by its kind and optional class) on a pool, all or nothing:
/// the returned vector holds one index into `pools` per task. Each placement updates the
/// view, so a batch spreads across pools as their load evens out.
pub fn place_all(pools: &[PoolView], needs: &[Need<'_>]) -> Result<Vec<usize>, PlaceError> {
    let mut view: Vec<PoolView> = pools.to_vec();
    let mut placed = Vec::with_capacity(needs.len());
    for need in needs {
        match place_one(&view, *need) {
            Some(i) => {
                view[i].queued += 1;
                placed.push(i);
            }
            None => return Err(why_not(pools, *need)),
        }
    }
    Ok(placed)
}

#[cfg(test)]
mod tests;
