//! Per-priority FIFO queues with a starvation guard: pure, no I/O.
//!
//! `pop` serves the highest non-empty priority, except that a lower priority that has
//! been passed over [`STARVATION_LIMIT`] times in a row is served next. Under a flood of
//! high tasks a waiting low task therefore starts within `STARVATION_LIMIT + 1` pops.

use std::collections::VecDeque;

use taskmesh_kernels::task::Priority;

/// How many times in a row a waiting priority may be passed over, indexed by priority.
/// High is never passed over; normal yields to high 4 times, low to the others 8 times.
pub const STARVATION_LIMIT: [u32; 3] = [u32::MAX, 4, 8];

/// Three FIFO queues, one per priority.
#[derive(Debug)]
pub struct PriorityQueues<T> {
    queues: [VecDeque<T>; 3],
    passed_over: [u32; 3],
}

impl<T> Default for PriorityQueues<T> {
    fn default() -> Self {
        Self {
            queues: Default::default(),
            passed_over: [0; 3],
        }
    }
}

impl<T> PriorityQueues<T> {
    /// Appends `item` to its priority's queue.
    pub fn push(&mut self, priority: Priority, item: T) {
        self.queues[priority.index()].push_back(item);
    }

    /// The priority [`pop`](Self::pop) serves next: the highest non-empty one, unless a
    /// lower one is starving.
    pub fn next_priority(&self) -> Option<Priority> {
        let starving = Priority::ALL.into_iter().rev().find(|p| {
            !self.queues[p.index()].is_empty()
                && self.passed_over[p.index()] >= STARVATION_LIMIT[p.index()]
        });
        starving.or_else(|| {
            Priority::ALL
                .into_iter()
                .find(|p| !self.queues[p.index()].is_empty())
        })
    }

    /// Takes the next item to run, with its priority.
    pub fn pop(&mut self) -> Option<(Priority, T)> {
        let chosen = self.next_priority()?;
        for p in Priority::ALL {
            if p == chosen {
                self.passed_over[p.index()] = 0;
            } else if !self.queues[p.index()].is_empty() {
                self.passed_over[p.index()] = self.passed_over[p.index()].saturating_add(1);
            }
        }
        self.queues[chosen.index()]
            .pop_front()
            .map(|item| (chosen, item))
    }

    /// The item `pop` would take next from `priority`'s queue.
    pub fn peek(&self, priority: Priority) -> Option<&T> {
        self.queues[priority.index()].front()
    }

    /// Removes and returns the first item matching `pred` (cancellation).
    pub fn remove_where(&mut self, mut pred: impl FnMut(&T) -> bool) -> Option<T> {
        for q in &mut self.queues {
            if let Some(pos) = q.iter().position(&mut pred) {
                return q.remove(pos);
            }
        }
        None
    }

    /// Queue lengths, indexed by priority.
    pub fn depths(&self) -> [usize; 3] {
        [
            self.queues[0].len(),
            self.queues[1].len(),
            self.queues[2].len(),
        ]
    }

    /// Items waiting in all queues.
    pub fn len(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn serves_high_before_normal_before_low() {
        let mut q = PriorityQueues::default();
        q.push(Priority::Low, "l");
        q.push(Priority::Normal, "n");
        q.push(Priority::High, "h");
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, x)| x)).collect();
        assert_eq!(order, ["h", "n", "l"]);
    }

    #[test]
    fn low_task_completes_under_a_flood_of_high_ones() {
        let mut q = PriorityQueues::default();
        q.push(Priority::Low, "low");
        let mut pops = 0;
        loop {
            // The flood: two new high tasks for every one served.
            q.push(Priority::High, "high");
            q.push(Priority::High, "high");
            let (_, item) = q.pop().expect("non-empty");
            pops += 1;
            if item == "low" {
                break;
            }
            assert!(pops < 100, "low task starved");
        }
        assert_eq!(pops, STARVATION_LIMIT[2] as usize + 1);
    }

    #[test]
    fn remove_where_takes_one_item_out() {
        let mut q = PriorityQueues::default();
        q.push(Priority::Normal, 1);
        q.push(Priority::Low, 2);
        assert_eq!(q.remove_where(|x| *x == 2), Some(2));
        assert_eq!(q.remove_where(|x| *x == 2), None);
        assert_eq!(q.depths(), [0, 1, 0]);
    }

    proptest! {
        #[test]
        fn every_pushed_item_pops_exactly_once(prios in proptest::collection::vec(0usize..3, 0..200)) {
            let mut q = PriorityQueues::default();
            for (i, p) in prios.iter().enumerate() {
                q.push(Priority::ALL[*p], i);
            }
            let mut seen: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, x)| x)).collect();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..prios.len()).collect::<Vec<_>>());
        }
    }
}
