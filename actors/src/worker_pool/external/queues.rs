//! The queues of external tasks: one [`PriorityQueues`] per kind and resource class, so
//! a poll takes only what its worker runs. Pure.
//!
//! A worker of class `c` takes tasks of class `c` and tasks of no class (as a labelled
//! node runs unlabelled tasks too); a worker of no class takes only tasks of no class.
//! Among the queues a worker may take from, the next task is the one of the highest
//! priority each queue would serve next (its starvation guard included), the oldest
//! queue head first among equals.

use std::collections::HashMap;

use taskmesh_kernels::task::{Priority, TaskId};

use crate::handoff::Job;
use crate::worker_pool::queue::PriorityQueues;

/// A queue's key: kind and class.
type Key = (String, Option<String>);

/// External tasks waiting for a worker.
#[derive(Debug, Default)]
pub struct ExternalQueues {
    queues: HashMap<Key, PriorityQueues<Job>>,
    len: usize,
}

impl ExternalQueues {
    /// Queues `job` behind the tasks of its kind, class and priority.
    pub fn push(&mut self, job: Job) {
        let key = (job.spec.kind.clone(), job.spec.class.clone());
        let priority = job.spec.priority;
        self.queues.entry(key).or_default().push(priority, job);
        self.len += 1;
    }

    /// The next task for a worker running `kinds` with class `class`.
    pub fn pop_for(&mut self, kinds: &[String], class: Option<&str>) -> Option<(Priority, Job)> {
        let takes =
            |(kind, c): &Key| kinds.contains(kind) && c.as_deref().is_none_or(|c| Some(c) == class);
        let key = self
            .queues
            .iter()
            .filter(|(key, _)| takes(key))
            .filter_map(|(key, q)| {
                let priority = q.next_priority()?;
                let head = q.peek(priority)?.enqueued_at;
                Some(((priority, head), key))
            })
            .min_by_key(|(rank, _)| *rank)
            .map(|(_, key)| key.clone())?;
        let taken = self.queues.get_mut(&key)?.pop();
        if taken.is_some() {
            self.len -= 1;
        }
        taken
    }

    /// Removes the task `id` if it waits here.
    pub fn remove(&mut self, id: &TaskId) -> Option<Job> {
        let removed = self
            .queues
            .values_mut()
            .find_map(|q| q.remove_where(|j| &j.id == id));
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// Tasks waiting, per priority.
    pub fn depths(&self) -> [usize; 3] {
        self.queues.values().fold([0; 3], |mut acc, q| {
            let d = q.depths();
            (0..3).for_each(|i| acc[i] += d[i]);
            acc
        })
    }

    /// Tasks waiting in all.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no task waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tasks waiting per kind (kinds with none left out).
    pub fn per_kind(&self) -> HashMap<&str, usize> {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for ((kind, _), q) in &self.queues {
            if !q.is_empty() {
                *counts.entry(kind.as_str()).or_default() += q.len();
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use taskmesh_kernels::task::Priority;

    use super::*;
    use crate::store::conformance::fixtures::spec;

    fn job(kind: &str, class: Option<&str>, priority: Priority, age_ms: u64) -> Job {
        let mut spec = spec(kind, None);
        spec.class = class.map(str::to_owned);
        spec.priority = priority;
        let mut job = Job::new(TaskId::generate(), Arc::new(spec));
        job.enqueued_at = Instant::now() - Duration::from_millis(age_ms);
        job
    }

    fn kinds(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_worker_takes_only_its_kinds_and_its_class_or_none() {
        let mut q = ExternalQueues::default();
        q.push(job("a", Some("gpu"), Priority::Normal, 0));
        q.push(job("b", None, Priority::Normal, 0));
        assert!(q.pop_for(&kinds(&["a"]), None).is_none());
        assert!(q.pop_for(&kinds(&["c"]), Some("gpu")).is_none());
        let (_, got) = q
            .pop_for(&kinds(&["a", "b"]), Some("gpu"))
            .expect("a gpu task");
        assert_eq!(got.spec.kind, "a");
        let (_, got) = q
            .pop_for(&kinds(&["b"]), Some("gpu"))
            .expect("a classless task");
        assert_eq!(got.spec.kind, "b");
        assert!(q.is_empty() && q.depths() == [0, 0, 0]);
    }

    #[test]
    fn across_kinds_the_higher_priority_then_the_older_head_goes_first() {
        let mut q = ExternalQueues::default();
        q.push(job("a", None, Priority::Low, 50));
        q.push(job("b", None, Priority::High, 0));
        q.push(job("c", None, Priority::Low, 90));
        let all = kinds(&["a", "b", "c"]);
        let order: Vec<String> = std::iter::from_fn(|| q.pop_for(&all, None))
            .map(|(_, j)| j.spec.kind.clone())
            .collect();
        assert_eq!(order, ["b", "c", "a"]);
    }

    #[test]
    fn remove_and_counts_follow_the_queues() {
        let mut q = ExternalQueues::default();
        let first = job("a", None, Priority::High, 0);
        let id = first.id;
        q.push(first);
        q.push(job("a", None, Priority::Low, 0));
        q.push(job("b", Some("x"), Priority::Low, 0));
        assert_eq!(q.len(), 3);
        assert_eq!(q.depths(), [1, 0, 2]);
        assert_eq!(q.per_kind().get("a"), Some(&2));
        assert!(q.remove(&id).is_some());
        assert!(q.remove(&id).is_none());
        assert_eq!(q.len(), 2);
        assert_eq!(q.per_kind().get("a"), Some(&1));
    }
}
