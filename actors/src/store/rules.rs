//! The store rules as pure functions, shared by every implementation so they cannot drift:
//! which status changes are allowed, what each writes, and which records a listing keeps.

use taskmesh_kernels::Progress;
use taskmesh_kernels::task::TaskStatus;

use crate::store::{ListFilter, Transition};
use crate::task::{Fence, Finish, Millis, TaskRecord};

/// A conditional change to one task: the arguments of `start`, `requeue` or `finish`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// `queued|running → running`.
    Start {
        /// The node running the attempt.
        node: String,
        /// The attempt's lease token.
        lease: u64,
        /// Attempts started so far, this one included.
        attempts: u32,
        /// When the attempt started.
        started_at_ms: Millis,
    },
    /// `queued|running → queued`, for a retry; bumps the lease token by one.
    Requeue {
        /// The node asking (it must hold the task).
        node: String,
        /// The attempt's lease token.
        lease: u64,
        /// Attempts started so far.
        attempts: u32,
        /// Why the last attempt failed.
        error: Option<String>,
    },
    /// Any non-terminal status → a terminal one.
    Finish(Finish),
    /// The latest progress of the running attempt; the status does not change.
    Progress {
        /// The node running the attempt (it must hold the task).
        node: String,
        /// The attempt's lease token.
        lease: u64,
        /// What the attempt reported.
        progress: Progress,
    },
}

impl Change {
    /// The change `start` asks for: `fence.node` runs attempt number `attempts` under
    /// `fence.lease`, started at `started_at_ms`.
    pub(crate) fn start(fence: Fence<'_>, attempts: u32, started_at_ms: Millis) -> Self {
        Change::Start {
            node: fence.node.to_owned(),
            lease: fence.lease,
            attempts,
            started_at_ms,
        }
    }

    /// The change `requeue` asks for: `fence.node` puts the task back for a retry after
    /// `attempts` attempts, the last one failing with `error`.
    pub(crate) fn requeue(fence: Fence<'_>, attempts: u32, error: Option<String>) -> Self {
        Change::Requeue {
            node: fence.node.to_owned(),
            lease: fence.lease,
            attempts,
            error,
        }
    }

    /// The change `progress` asks for: `fence.node`'s attempt under `fence.lease` reports
    /// `progress`.
    pub(crate) fn progress(fence: Fence<'_>, progress: Progress) -> Self {
        Change::Progress {
            node: fence.node.to_owned(),
            lease: fence.lease,
            progress,
        }
    }

    /// The node the change is made on behalf of, which must hold the task: the starting
    /// or requeueing node, or a finish's node (`None`: a finish that is not fenced).
    pub(crate) fn fence(&self) -> Option<&str> {
        match self {
            Change::Start { node, .. }
            | Change::Requeue { node, .. }
            | Change::Progress { node, .. } => Some(node),
            Change::Finish(finish) => finish.node.as_deref(),
        }
    }

    /// The lease token the change carries, which must equal the record's.
    pub(crate) fn lease(&self) -> u64 {
        match self {
            Change::Start { lease, .. }
            | Change::Requeue { lease, .. }
            | Change::Progress { lease, .. } => *lease,
            Change::Finish(finish) => finish.lease,
        }
    }
}

/// `Some(holder)` when `record` is held by a node other than `caller`: the fencing rule.
pub(crate) fn foreign_holder<'r>(record: &'r TaskRecord, caller: Option<&str>) -> Option<&'r str> {
    let holder = record.node.as_deref()?;
    caller.filter(|&c| c != holder).map(|_| holder)
}

/// Applies `change` to `record` if its current status, holder and lease token allow it.
///
/// On [`Transition::Applied`] the record holds the new state; otherwise it is untouched.
/// Checked in order: a terminal task is `Rejected`; a task held by another node than the
/// change's [`Change::fence`] is `NotHolder`; a change whose [`Change::lease`] is not the
/// record's token is `NotHolder` too (with the current holder, which may be the caller
/// itself: the task went away and came back, and this attempt is a stale one); a
/// `Finish` whose status is not terminal is a caller bug that would break the "terminal
/// is final" index bookkeeping, so it is refused like any other disallowed change
/// (`Rejected` with the current status). The token is checked for every change, a
/// `Finish` without a node included; an applied `Requeue` bumps it by one (the retry
/// runs under the new token, and the failed attempt's late writes are refused), start,
/// progress and finish never change it.
pub(crate) fn apply(record: &mut TaskRecord, change: Change) -> Transition {
    let current = record.status;
    if current.is_terminal() {
        return Transition::Rejected(current);
    }
    if let Some(holder) = foreign_holder(record, change.fence()) {
        return Transition::NotHolder(Some(holder.to_owned()));
    }
    if change.lease() != record.lease {
        return Transition::NotHolder(record.node.clone());
    }
    match change {
        Change::Start {
            node,
            attempts,
            started_at_ms,
            ..
        } => {
            record.status = TaskStatus::Running;
            record.node = Some(node);
            // Never below the attempts already recorded: a stale attempt (a node whose
            // task came back to it through claims while it was cut off) still counts.
            record.attempts = attempts.max(record.attempts + 1);
            record.started_at_ms = Some(started_at_ms);
        }
        Change::Requeue {
            attempts, error, ..
        } => {
            record.status = TaskStatus::Queued;
            record.attempts = attempts.max(record.attempts);
            record.error = error;
            record.progress = None;
            record.lease += 1;
        }
        Change::Progress { progress, .. } => record.progress = Some(progress),
        Change::Finish(finish) => {
            if !finish.status.is_terminal() {
                return Transition::Rejected(current);
            }
            record.status = finish.status;
            record.result = finish.result;
            record.error = finish.error;
            record.node = finish.node;
            record.attempts = finish.attempts.max(record.attempts);
            record.started_at_ms = finish.started_at_ms;
            record.finished_at_ms = Some(finish.finished_at_ms);
        }
    }
    Transition::Applied
}

/// Why a running task lost its attempt when [`TaskStore::claim`] moved it.
///
/// [`TaskStore::claim`]: crate::store::TaskStore::claim
pub(crate) fn claimed_error(from: &str) -> String {
    format!("node {from} was lost")
}

/// Why a running task lost its attempt when [`TaskStore::reassign`] moved it.
///
/// [`TaskStore::reassign`]: crate::store::TaskStore::reassign
pub(crate) fn reassigned_error(from: &str) -> String {
    format!("reassigned from node {from}")
}

/// Moves `record` from `from` to `to` if it is live and held by `from` (and `from != to`);
/// answers whether it moved. A running task goes back to `queued` with `attempts` kept
/// and `error` set to `error`; a queued one only changes holder. Every move bumps the
/// lease token by one, so writes carrying the old token are refused from now on, and
/// clears the old attempt's progress.
pub(crate) fn transfer(record: &mut TaskRecord, from: &str, to: &str, error: &str) -> bool {
    if from == to || record.status.is_terminal() || record.node.as_deref() != Some(from) {
        return false;
    }
    if record.status == TaskStatus::Running {
        record.status = TaskStatus::Queued;
        record.error = Some(error.to_owned());
    }
    record.node = Some(to.to_owned());
    record.lease += 1;
    record.progress = None;
    true
}

/// Whether `record` passes the status, kind and submitter filters of a listing.
pub(crate) fn matches(filter: &ListFilter, record: &TaskRecord) -> bool {
    filter.status.is_none_or(|s| s == record.status)
        && filter.kind.as_deref().is_none_or(|k| k == record.spec.kind)
        && filter
            .submitted_by
            .as_deref()
            .is_none_or(|by| Some(by) == record.spec.submitted_by.as_deref())
}

/// How many records a listing may examine before it stops, so that a rare filter cannot
/// walk millions of records: the newest `max(limit × 50, 10 000)`.
pub(crate) fn list_scan_budget(limit: usize) -> usize {
    limit.saturating_mul(50).max(10_000)
}

/// Whether a record is old enough for `purge_finished(finished_before)`.
pub(crate) fn purgeable(record: &TaskRecord, finished_before: Millis) -> bool {
    record.status.is_terminal() && record.finished_at_ms.is_some_and(|t| t < finished_before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::fixtures::task;

    fn record(status: TaskStatus, finished_at_ms: Option<Millis>) -> TaskRecord {
        TaskRecord {
            status,
            finished_at_ms,
            ..TaskRecord::queued(task("echo", None))
        }
    }

    fn held_by(node: Option<&str>, status: TaskStatus) -> TaskRecord {
        TaskRecord {
            node: node.map(str::to_owned),
            attempts: 2,
            ..record(status, None)
        }
    }

    #[test]
    fn only_the_holder_passes_the_fence_and_terminal_comes_first() {
        let start = |node| Change::start(Fence::new(node, 0), 3, 9);
        let mut r = held_by(Some("a"), TaskStatus::Running);
        let before = r.clone();
        assert_eq!(
            apply(&mut r, start("b")),
            Transition::NotHolder(Some("a".into()))
        );
        assert_eq!(r, before, "a refused change writes nothing");
        assert_eq!(apply(&mut r, start("a")), Transition::Applied);
        let mut unheld = held_by(None, TaskStatus::Queued);
        assert_eq!(apply(&mut unheld, start("b")), Transition::Applied);
        assert_eq!(unheld.node.as_deref(), Some("b"));
        let mut done = held_by(Some("a"), TaskStatus::Failed);
        assert_eq!(
            apply(&mut done, start("b")),
            Transition::Rejected(TaskStatus::Failed)
        );
    }

    #[test]
    fn a_change_with_another_lease_token_is_refused_even_by_the_holder() {
        let start = |lease| Change::start(Fence::new("a", lease), 1, 9);
        let mut r = held_by(Some("a"), TaskStatus::Queued);
        r.lease = 2;
        let before = r.clone();
        for stale in [0, 1, 3] {
            assert_eq!(
                apply(&mut r, start(stale)),
                Transition::NotHolder(Some("a".into()))
            );
            assert_eq!(r, before, "a refused change writes nothing");
        }
        let unfenced = Finish {
            status: TaskStatus::Cancelled,
            result: None,
            error: None,
            node: None,
            lease: 1,
            attempts: 0,
            started_at_ms: None,
            finished_at_ms: 10,
        };
        assert_eq!(
            apply(&mut r, Change::Finish(unfenced.clone())),
            Transition::NotHolder(Some("a".into())),
            "a finish without a node still carries a token"
        );
        assert_eq!(apply(&mut r, start(2)), Transition::Applied);
        assert_eq!(r.lease, 2, "a start keeps the token");
        let finish = Finish {
            lease: 2,
            ..unfenced
        };
        assert_eq!(apply(&mut r, Change::Finish(finish)), Transition::Applied);
    }

    #[test]
    fn an_applied_requeue_bumps_the_token_once_and_a_refused_one_writes_nothing() {
        let requeue = |node, lease| Change::requeue(Fence::new(node, lease), 2, None);
        let mut r = held_by(Some("a"), TaskStatus::Running);
        r.lease = 4;
        let before = r.clone();
        for refused in [requeue("b", 4), requeue("a", 3), requeue("a", 5)] {
            assert!(matches!(apply(&mut r, refused), Transition::NotHolder(_)));
            assert_eq!(r, before, "a refused requeue writes nothing");
        }
        assert_eq!(apply(&mut r, requeue("a", 4)), Transition::Applied);
        assert_eq!((r.status, r.lease), (TaskStatus::Queued, 5));
        assert_eq!(
            apply(&mut r, requeue("a", 4)),
            Transition::NotHolder(Some("a".into())),
            "the failed attempt's token is stale now"
        );
        assert_eq!(apply(&mut r, requeue("a", 5)), Transition::Applied);
        assert_eq!(r.lease, 6);
    }

    #[test]
    fn transfer_moves_only_live_tasks_of_the_old_holder() {
        let mut running = held_by(Some("a"), TaskStatus::Running);
        assert!(transfer(&mut running, "a", "c", "lost"));
        assert_eq!(
            (running.status, running.node.as_deref(), running.attempts),
            (TaskStatus::Queued, Some("c"), 2)
        );
        assert_eq!(running.lease, 1, "a move bumps the token once");
        assert_eq!(running.error.as_deref(), Some("lost"));
        let mut queued = held_by(Some("a"), TaskStatus::Queued);
        assert!(transfer(&mut queued, "a", "c", "lost"));
        assert_eq!((queued.node.as_deref(), queued.error), (Some("c"), None));
        for mut r in [
            held_by(Some("b"), TaskStatus::Queued),
            held_by(None, TaskStatus::Queued),
            held_by(Some("a"), TaskStatus::Succeeded),
        ] {
            let before = r.clone();
            assert!(!transfer(&mut r, "a", "c", "lost"));
            assert_eq!(r, before);
        }
        let mut own = held_by(Some("a"), TaskStatus::Running);
        assert!(!transfer(&mut own, "a", "a", "lost"), "from == to");
    }

    #[test]
    fn scan_budget_has_a_floor_and_grows_with_the_limit() {
        assert_eq!(list_scan_budget(0), 10_000);
        assert_eq!(list_scan_budget(100), 10_000);
        assert_eq!(list_scan_budget(1_000), 50_000);
        assert_eq!(list_scan_budget(usize::MAX), usize::MAX);
    }

    #[test]
    fn only_terminal_records_finished_strictly_before_the_cut_off_are_purgeable() {
        assert!(purgeable(&record(TaskStatus::Failed, Some(9)), 10));
        assert!(!purgeable(&record(TaskStatus::Failed, Some(10)), 10));
        assert!(!purgeable(&record(TaskStatus::Running, Some(1)), 10));
        assert!(!purgeable(&record(TaskStatus::Succeeded, None), 10));
    }

    #[test]
    fn filters_combine() {
        let r = record(TaskStatus::Queued, None);
        let filter = |status, kind: &str| ListFilter {
            status,
            kind: Some(kind.into()),
            limit: 1,
            ..ListFilter::default()
        };
        assert!(matches(&ListFilter::default(), &r));
        assert!(matches(&filter(Some(TaskStatus::Queued), "echo"), &r));
        assert!(!matches(&filter(Some(TaskStatus::Queued), "other"), &r));
        assert!(!matches(&filter(Some(TaskStatus::Running), "echo"), &r));
    }
}
