//! Placement: which pool runs each task. Pure; the actor feeds it a view of every pool.
//!
//! The score of a pool is its expected wait in task lengths, `(queued + running) /
//! workers`. A task stays on the node it arrived on unless another pool's expected wait
//! is shorter by more than [`HOP_COST`] (one task length): moving a task costs a network
//! hop, a store write and a peer's CPU, which only pays off when it saves real waiting.
//! Among the other pools the lowest score wins. A pool only takes a task while its queue
//! has room and, when the task names a resource `class`, the pool's labels contain it.
//!
//! Room admitted on this node and not stored yet ([`PoolView::reserved`]) counts against
//! a pool's capacity, but only a peer's counts in its expected wait: the local pool's
//! reservations are this node's own submissions in flight, which a peer's view of its
//! own pool never shows either. Counting them would make every busy node look busier
//! than its peers and send most of its tasks away under an even load.

/// What the dispatcher knows of one pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolView {
    /// The node the pool runs on.
    pub node: String,
    /// Whether it is this node's own pool.
    pub local: bool,
    /// Resource labels of the node (e.g. `heavy`, `gpu`).
    pub labels: Vec<String>,
    /// Queue capacity: tasks waiting beyond this are refused.
    pub capacity: usize,
    /// Tasks waiting, including those on their way to it.
    pub queued: usize,
    /// Tasks this node admitted for the pool and has not stored yet.
    pub reserved: usize,
    /// Tasks running.
    pub running: usize,
    /// Live workers.
    pub workers: usize,
    /// False when the pool must get no new tasks (circuit open, draining).
    pub available: bool,
}

/// Why a set of tasks could not be placed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    /// No pool carries the label the task asked for.
    #[error("no node has resource class `{0}`")]
    NoSuchClass(String),
    /// Every eligible pool's queue is full.
    #[error("every eligible pool is at capacity")]
    Saturated,
}

/// How much shorter, in thousandths of a task length, another pool's expected wait must
/// be before a task leaves the node it arrived on.
pub const HOP_COST: u64 = 1000;

/// Expected wait in thousandths of a task length.
fn score(p: &PoolView) -> u64 {
    let reserved = if p.local { 0 } else { p.reserved };
    (p.queued + reserved + p.running) as u64 * 1000 / p.workers.max(1) as u64
}

fn eligible(p: &PoolView, class: Option<&str>) -> bool {
    class.is_none_or(|c| p.labels.iter().any(|l| l == c))
}

fn has_room(p: &PoolView) -> bool {
    p.available && p.queued + p.reserved < p.capacity
}

/// The pool for one task: the local one unless another waits less by more than
/// [`HOP_COST`].
fn choose(view: &[PoolView], class: Option<&str>) -> Option<usize> {
    let open = || {
        view.iter()
            .enumerate()
            .filter(|(_, p)| eligible(p, class) && has_room(p))
    };
    let best = open().min_by_key(|(_, p)| (score(p), !p.local));
    let local = open().find(|(_, p)| p.local);
    match (local, best) {
        (Some((i, here)), Some((_, there))) if score(here) <= score(there) + HOP_COST => Some(i),
        (_, best) => best.map(|(i, _)| i),
    }
}

/// Places every task (given by its optional class) on a pool, all or nothing: the
/// returned vector holds one index into `pools` per task. Each placement updates the
/// view, so a batch spreads across pools as their load evens out.
pub fn place_all(pools: &[PoolView], classes: &[Option<&str>]) -> Result<Vec<usize>, PlaceError> {
    let mut view: Vec<PoolView> = pools.to_vec();
    let mut placed = Vec::with_capacity(classes.len());
    for class in classes {
        match choose(&view, *class) {
            Some(i) => {
                view[i].queued += 1;
                placed.push(i);
            }
            None if class.is_some() && !pools.iter().any(|p| eligible(p, *class)) => {
                return Err(PlaceError::NoSuchClass(
                    class.unwrap_or_default().to_owned(),
                ));
            }
            None => return Err(PlaceError::Saturated),
        }
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(node: &str, local: bool, queued: usize, running: usize, workers: usize) -> PoolView {
        PoolView {
            node: node.into(),
            local,
            labels: vec![],
            capacity: 10,
            queued,
            reserved: 0,
            running,
            workers,
            available: true,
        }
    }

    #[test]
    fn picks_the_least_loaded_pool() {
        let pools = [pool("a", true, 5, 4, 4), pool("b", false, 0, 1, 4)];
        assert_eq!(place_all(&pools, &[None]), Ok(vec![1]));
    }

    #[test]
    fn prefers_the_local_pool_on_ties() {
        let pools = [pool("remote", false, 1, 1, 2), pool("me", true, 1, 1, 2)];
        assert_eq!(place_all(&pools, &[None]), Ok(vec![1]));
    }

    #[test]
    fn a_batch_spreads_as_load_evens_out() {
        let pools = [pool("a", true, 0, 0, 1), pool("b", false, 0, 0, 1)];
        let placed = place_all(&pools, &[None; 8]).expect("room");
        // The local pool keeps a lead of one task length, then they alternate.
        assert_eq!(placed.iter().filter(|&&i| i == 0).count(), 5, "{placed:?}");
        assert_eq!(&placed[..3], &[0, 0, 1]);
    }

    #[test]
    fn a_task_stays_local_unless_moving_saves_more_than_a_hop() {
        // Local wait 1.25 task lengths, the peer's 0.5: a saving under one task length.
        let pools = [pool("me", true, 1, 4, 4), pool("peer", false, 0, 2, 4)];
        assert_eq!(place_all(&pools, &[None]), Ok(vec![0]));
        // Local wait 2, the peer's 0.5: worth the hop.
        let pools = [pool("me", true, 4, 4, 4), pool("peer", false, 0, 2, 4)];
        assert_eq!(place_all(&pools, &[None]), Ok(vec![1]));
    }

    #[test]
    fn local_reservations_count_against_room_but_not_against_the_wait() {
        // This node's own submissions in flight do not push work to an equal peer...
        let mut me = pool("me", true, 0, 1, 4);
        me.reserved = 20;
        me.capacity = 100;
        let mut peer = pool("peer", false, 0, 1, 4);
        peer.capacity = 100;
        assert_eq!(place_all(&[me.clone(), peer.clone()], &[None]), Ok(vec![0]));
        // ...but they fill its queue...
        me.capacity = 20;
        assert_eq!(place_all(&[me.clone(), peer.clone()], &[None]), Ok(vec![1]));
        // ...and a peer's reservations (tasks on their way there) count in its wait.
        me.capacity = 100;
        me.queued = 8;
        peer.reserved = 8;
        assert_eq!(place_all(&[me, peer], &[None]), Ok(vec![0]));
    }

    #[test]
    fn without_a_local_pool_the_least_loaded_wins() {
        let pools = [pool("a", false, 5, 4, 4), pool("b", false, 1, 1, 4)];
        assert_eq!(place_all(&pools, &[None]), Ok(vec![1]));
    }

    #[test]
    fn full_or_unavailable_pools_get_nothing() {
        let mut full = pool("a", true, 10, 0, 1);
        assert_eq!(
            place_all(&[full.clone()], &[None]),
            Err(PlaceError::Saturated)
        );
        full.queued = 0;
        full.available = false;
        assert_eq!(place_all(&[full], &[None]), Err(PlaceError::Saturated));
    }

    #[test]
    fn batches_are_all_or_nothing() {
        let pools = [pool("a", true, 8, 0, 1)];
        assert_eq!(place_all(&pools, &[None; 3]), Err(PlaceError::Saturated));
        assert_eq!(place_all(&pools, &[None; 2]), Ok(vec![0, 0]));
    }

    #[test]
    fn classes_match_labels() {
        let mut heavy = pool("h", false, 5, 5, 1);
        heavy.labels = vec!["heavy".into()];
        let pools = [pool("l", true, 0, 0, 4), heavy];
        assert_eq!(place_all(&pools, &[Some("heavy")]), Ok(vec![1]));
        assert_eq!(
            place_all(&pools, &[Some("gpu")]),
            Err(PlaceError::NoSuchClass("gpu".into()))
        );
    }
}
