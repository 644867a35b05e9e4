//! Which tasks this pool finished lately, so a copy that arrives after the task's
//! terminal write (a dispatch held up in a cut link and delivered on heal, after the
//! sweep adopted the task and it ran) is dropped instead of run a second time.
//!
//! Bounded: it remembers the last [`RecentlyFinished::CAPACITY`] tasks, oldest forgotten
//! first. A copy older than that is still refused by the store (its finish is rejected),
//! so forgetting costs a duplicate execution at worst, never a wrong result.

use std::collections::{HashMap, VecDeque};

use taskmesh_kernels::task::TaskId;

/// The tasks finished lately, with the lease token they were finished under.
#[derive(Debug, Default)]
pub(super) struct RecentlyFinished {
    order: VecDeque<TaskId>,
    lease: HashMap<TaskId, u64>,
}

impl RecentlyFinished {
    /// How many tasks it remembers (about 100 bytes each).
    pub(super) const CAPACITY: usize = 16_384;

    /// Records that the pool issued the terminal write of `id` under `lease`.
    pub(super) fn record(&mut self, id: &TaskId, lease: u64) {
        if self.lease.insert(*id, lease).is_none() {
            self.order.push_back(*id);
        }
        while self.order.len() > Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.lease.remove(&old);
            }
        }
    }

    /// Whether a copy of `id` under `lease` is stale: the pool finished the task under
    /// that token or a newer one. A newer token means the task moved and came back after
    /// this pool's finish was refused: that copy runs.
    pub(super) fn covers(&self, id: &TaskId, lease: u64) -> bool {
        self.lease.get(id).is_some_and(|&done| done >= lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_under_the_finished_token_or_an_older_one_is_stale() {
        let (a, b) = (TaskId::generate(), TaskId::generate());
        let mut recent = RecentlyFinished::default();
        recent.record(&a, 2);
        assert!(recent.covers(&a, 2));
        assert!(recent.covers(&a, 1));
        assert!(!recent.covers(&a, 3), "came back under a newer token: runs");
        assert!(!recent.covers(&b, 0), "never finished here");
    }

    #[test]
    fn it_forgets_the_oldest_past_its_capacity() {
        let mut recent = RecentlyFinished::default();
        let ids: Vec<TaskId> = (0..=RecentlyFinished::CAPACITY)
            .map(|_| TaskId::generate())
            .collect();
        for id in &ids {
            recent.record(id, 0);
        }
        assert!(!recent.covers(&ids[0], 0));
        assert!(recent.covers(&ids[1], 0));
        assert!(recent.covers(&ids[RecentlyFinished::CAPACITY], 0));
        assert_eq!(recent.order.len(), RecentlyFinished::CAPACITY);
        assert_eq!(recent.lease.len(), RecentlyFinished::CAPACITY);
    }
}
