//! The autoscaling decision: pool sample in, desired worker count out. Pure; the clock
//! is an argument.
//!
//! Celery `--autoscale=max,min` semantics: grow by the backlog when every worker is busy,
//! shrink to the busy count once workers have stood idle for a cool-down, and always stay
//! within `[min, max]`.

use std::time::{Duration, Instant};

/// Bounds and timing of the local pool's autoscaling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AutoscalePolicy {
    /// Never fewer workers than this.
    pub min_workers: usize,
    /// Never more workers than this.
    pub max_workers: usize,
    /// How long workers must stand idle before the pool shrinks.
    pub scale_down_after: Duration,
}

/// What the pool looks like right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSample {
    /// Live workers.
    pub workers: usize,
    /// Workers running a task.
    pub busy: usize,
    /// Tasks waiting for a worker.
    pub queued: usize,
}

/// What the policy remembers between samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AutoscaleMemory {
    idle_since: Option<Instant>,
}

/// The worker count the pool should have, or `None` to leave it as it is.
pub fn decide(
    policy: &AutoscalePolicy,
    sample: PoolSample,
    memory: &mut AutoscaleMemory,
    now: Instant,
) -> Option<usize> {
    let (min, max) = (
        policy.min_workers,
        policy.max_workers.max(policy.min_workers),
    );
    let clamped = sample.workers.clamp(min, max);
    if clamped != sample.workers {
        memory.idle_since = None;
        return Some(clamped);
    }
    let idle = sample.workers.saturating_sub(sample.busy);
    if sample.queued > 0 && idle == 0 {
        memory.idle_since = None;
        let target = (sample.workers + sample.queued).min(max);
        return (target != sample.workers).then_some(target);
    }
    if idle == 0 || sample.queued > 0 {
        memory.idle_since = None;
        return None;
    }
    let since = *memory.idle_since.get_or_insert(now);
    if now.duration_since(since) < policy.scale_down_after {
        return None;
    }
    memory.idle_since = None;
    let target = sample.busy.max(min);
    (target != sample.workers).then_some(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: AutoscalePolicy = AutoscalePolicy {
        min_workers: 2,
        max_workers: 10,
        scale_down_after: Duration::from_secs(5),
    };

    fn sample(workers: usize, busy: usize, queued: usize) -> PoolSample {
        PoolSample {
            workers,
            busy,
            queued,
        }
    }

    #[test]
    fn grows_by_the_backlog_up_to_max() {
        let mut m = AutoscaleMemory::default();
        let now = Instant::now();
        assert_eq!(decide(&POLICY, sample(2, 2, 3), &mut m, now), Some(5));
        assert_eq!(decide(&POLICY, sample(5, 5, 100), &mut m, now), Some(10));
        assert_eq!(decide(&POLICY, sample(10, 10, 100), &mut m, now), None);
    }

    #[test]
    fn does_not_grow_while_workers_are_free() {
        let mut m = AutoscaleMemory::default();
        assert_eq!(
            decide(&POLICY, sample(4, 3, 1), &mut m, Instant::now()),
            None
        );
    }

    #[test]
    fn shrinks_only_after_the_cool_down() {
        let mut m = AutoscaleMemory::default();
        let t0 = Instant::now();
        assert_eq!(decide(&POLICY, sample(8, 1, 0), &mut m, t0), None);
        let t1 = t0 + Duration::from_secs(4);
        assert_eq!(decide(&POLICY, sample(8, 1, 0), &mut m, t1), None);
        let t2 = t0 + Duration::from_secs(5);
        assert_eq!(decide(&POLICY, sample(8, 1, 0), &mut m, t2), Some(2));
    }

    #[test]
    fn a_busy_moment_resets_the_cool_down() {
        let mut m = AutoscaleMemory::default();
        let t0 = Instant::now();
        decide(&POLICY, sample(8, 1, 0), &mut m, t0);
        decide(
            &POLICY,
            sample(8, 8, 0),
            &mut m,
            t0 + Duration::from_secs(3),
        );
        let later = t0 + Duration::from_secs(6);
        assert_eq!(decide(&POLICY, sample(8, 1, 0), &mut m, later), None);
    }

    #[test]
    fn pulls_the_pool_back_within_bounds() {
        let mut m = AutoscaleMemory::default();
        let now = Instant::now();
        assert_eq!(decide(&POLICY, sample(0, 0, 0), &mut m, now), Some(2));
        assert_eq!(decide(&POLICY, sample(30, 0, 0), &mut m, now), Some(10));
    }
}
