//! Placement: which pool runs each task. Pure; the actor feeds it a view of every pool.
//!
//! The score of a pool is its expected wait in task lengths, `(queued + running) /
//! workers`; the lowest score wins, the local pool wins ties, and a pool only takes a
//! task while its queue has room and, when the task names a resource `class`, the pool's
//! labels contain it.

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

fn score(p: &PoolView) -> (u64, bool) {
    // Expected wait in thousandths of a task length; local first on ties.
    let load = (p.queued + p.running) as u64 * 1000 / p.workers.max(1) as u64;
    (load, !p.local)
}

fn eligible(p: &PoolView, class: Option<&str>) -> bool {
    class.is_none_or(|c| p.labels.iter().any(|l| l == c))
}

/// Places every task (given by its optional class) on a pool, all or nothing: the
/// returned vector holds one index into `pools` per task. Each placement updates the
/// view, so a batch spreads across pools as their load evens out.
pub fn place_all(pools: &[PoolView], classes: &[Option<&str>]) -> Result<Vec<usize>, PlaceError> {
    let mut view: Vec<PoolView> = pools.to_vec();
    let mut placed = Vec::with_capacity(classes.len());
    for class in classes {
        let best = view
            .iter()
            .enumerate()
            .filter(|(_, p)| eligible(p, *class))
            .filter(|(_, p)| p.available && p.queued < p.capacity)
            .min_by_key(|(_, p)| score(p))
            .map(|(i, _)| i);
        match best {
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
        let placed = place_all(&pools, &[None; 4]).expect("room");
        assert_eq!(placed.iter().filter(|&&i| i == 0).count(), 2);
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
