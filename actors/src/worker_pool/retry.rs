//! Retry decisions: pure functions of the attempt count, a random draw, and the store's
//! answer to a retry's requeue.

use std::time::Duration;

use crate::store::{StoreError, Transition};

/// Exponential backoff with jitter, configured per node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry (before jitter).
    pub base: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// Delay before retrying after `failed_attempts` failures (1 for the first), with
    /// "equal jitter": half the exponential delay plus a random share of the other half.
    /// `unit` is a uniform draw in `[0, 1)`.
    pub fn delay(&self, failed_attempts: u32, unit: f64) -> Duration {
        let exp = failed_attempts.saturating_sub(1).min(30);
        let raw = self.base.saturating_mul(1u32 << exp).min(self.max);
        let unit = unit.clamp(0.0, 1.0);
        raw / 2 + raw.mul_f64(unit / 2.0)
    }
}

/// Whether a task that has started `attempts` attempts may start another.
pub fn may_retry(attempts: u32, max_retries: u32) -> bool {
    attempts <= max_retries
}

/// What the pool does after one try of a retry's requeue write under token `lease`
/// ([`after_requeue`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RequeueNext {
    /// The requeue is applied, so the task's token is `lease + 1`: the retry (the delayed
    /// copy, held under `lease + 1`) becomes due once the rest of the backoff elapsed.
    Due,
    /// The task moved away (claimed or reassigned: another node holds it, or this one
    /// under a newer token), ended (terminal, e.g. cancelled meanwhile), or is gone:
    /// the delayed copy must go. Carries the holder the store answered, if any.
    Forget(Option<String>),
    /// The store failed: try the same write again after a pause.
    TryAgain,
}

/// Maps the store's answer to a retry's requeue, written by `node`, to what the pool
/// does next. `maybe_applied`: an earlier try of the same write failed in a way that
/// may have written it ([`StoreError::nothing_written`] is false). Then a refusal as
/// stale with this node as the holder is most likely that earlier try, applied (the
/// token is already `lease + 1`), and counts as applied. If the task rather went away
/// and came back (its token is `lease + 2` or more), the retry's start under `lease + 1`
/// is refused in turn and the pool forgets that copy then; the store's copy reaches the
/// pool again by a dispatch or a sweep.
pub(crate) fn after_requeue(
    answer: Result<Transition, StoreError>,
    node: &str,
    maybe_applied: bool,
) -> RequeueNext {
    match answer {
        Ok(Transition::Applied) => RequeueNext::Due,
        Ok(Transition::NotHolder(Some(holder))) if maybe_applied && holder == node => {
            RequeueNext::Due
        }
        Ok(Transition::NotHolder(holder)) => RequeueNext::Forget(holder),
        Ok(Transition::Rejected(_) | Transition::NotFound) => RequeueNext::Forget(None),
        Err(_) => RequeueNext::TryAgain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use taskmesh_kernels::task::TaskStatus;

    #[test]
    fn a_requeue_answer_decides_the_retry() {
        let here = || Transition::NotHolder(Some("n1".into()));
        let elsewhere = || Transition::NotHolder(Some("n2".into()));
        let backend = || StoreError::Backend("timed out".into());
        for maybe_applied in [false, true] {
            let next = |answer| after_requeue(answer, "n1", maybe_applied);
            assert_eq!(next(Ok(Transition::Applied)), RequeueNext::Due);
            assert_eq!(
                next(Ok(elsewhere())),
                RequeueNext::Forget(Some("n2".into())),
                "moved to another node"
            );
            assert_eq!(
                next(Ok(Transition::Rejected(TaskStatus::Cancelled))),
                RequeueNext::Forget(None),
                "ended meanwhile"
            );
            assert_eq!(next(Ok(Transition::NotFound)), RequeueNext::Forget(None));
            assert_eq!(
                next(Ok(Transition::NotHolder(None))),
                RequeueNext::Forget(None)
            );
            assert_eq!(next(Err(backend())), RequeueNext::TryAgain);
            assert_eq!(next(Err(StoreError::Closed)), RequeueNext::TryAgain);
        }
        assert_eq!(
            after_requeue(Ok(here()), "n1", false),
            RequeueNext::Forget(Some("n1".into())),
            "a first try refused as stale: the task went away and came back"
        );
        assert_eq!(
            after_requeue(Ok(here()), "n1", true),
            RequeueNext::Due,
            "a repeat refused as stale by this node: the earlier try was applied"
        );
    }

    #[test]
    fn delays_double_and_are_capped() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(50));
        assert_eq!(b.delay(2, 0.0), Duration::from_millis(100));
        assert_eq!(b.delay(3, 1.0), Duration::from_millis(400));
        assert_eq!(b.delay(10, 1.0), Duration::from_millis(1000));
        assert_eq!(b.delay(u32::MAX, 1.0), Duration::from_millis(1000));
    }

    #[test]
    fn retries_stop_after_max_retries() {
        assert!(may_retry(1, 3));
        assert!(may_retry(3, 3));
        assert!(!may_retry(4, 3));
        assert!(!may_retry(1, 0));
    }

    proptest! {
        #[test]
        fn jitter_stays_within_half_and_full_delay(attempt in 1u32..40, unit in 0.0f64..1.0) {
            let b = Backoff::default();
            let d = b.delay(attempt, unit);
            let full = b.delay(attempt, 1.0);
            prop_assert!(d <= full && d >= full / 2 && d <= b.max);
        }
    }
}
