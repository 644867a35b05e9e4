//! The store rules as pure functions, shared by every implementation so they cannot drift:
//! which status changes are allowed, what each writes, and which records a listing keeps.

use taskmesh_cluster::protocol::TaskStatus;

use crate::store::{ListFilter, Transition};
use crate::task::{Finish, Millis, TaskRecord};

/// A conditional change to one task: the arguments of `start`, `requeue` or `finish`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// `queued|running → running`.
    Start {
        /// The node running the attempt.
        node: String,
        /// Attempts started so far, this one included.
        attempts: u32,
        /// When the attempt started.
        started_at_ms: Millis,
    },
    /// `queued|running → queued`, for a retry.
    Requeue {
        /// Attempts started so far.
        attempts: u32,
        /// Why the last attempt failed.
        error: Option<String>,
    },
    /// Any non-terminal status → a terminal one.
    Finish(Finish),
}

/// Applies `change` to `record` if its current status allows it.
///
/// On [`Transition::Applied`] the record holds the new state; otherwise it is untouched.
/// A `Finish` whose status is not terminal is a caller bug that would break the
/// "terminal is final" index bookkeeping, so it is refused like any other disallowed
/// change (`Rejected` with the current status).
pub(crate) fn apply(record: &mut TaskRecord, change: Change) -> Transition {
    let current = record.status;
    if current.is_terminal() {
        return Transition::Rejected(current);
    }
    match change {
        Change::Start {
            node,
            attempts,
            started_at_ms,
        } => {
            record.status = TaskStatus::Running;
            record.node = Some(node);
            record.attempts = attempts;
            record.started_at_ms = Some(started_at_ms);
        }
        Change::Requeue { attempts, error } => {
            record.status = TaskStatus::Queued;
            record.attempts = attempts;
            record.error = error;
        }
        Change::Finish(finish) => {
            if !finish.status.is_terminal() {
                return Transition::Rejected(current);
            }
            record.status = finish.status;
            record.result = finish.result;
            record.error = finish.error;
            record.node = finish.node;
            record.attempts = finish.attempts;
            record.started_at_ms = finish.started_at_ms;
            record.finished_at_ms = Some(finish.finished_at_ms);
        }
    }
    Transition::Applied
}

/// Whether `record` passes the status and kind filters of a listing.
pub(crate) fn matches(filter: &ListFilter, record: &TaskRecord) -> bool {
    filter.status.is_none_or(|s| s == record.status)
        && filter.kind.as_deref().is_none_or(|k| k == record.spec.kind)
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
    use taskmesh_cluster::protocol::{Priority, TaskId, TaskSpec};

    use super::*;
    use crate::task::NewTask;

    fn record(status: TaskStatus, finished_at_ms: Option<Millis>) -> TaskRecord {
        let spec = TaskSpec {
            kind: "echo".into(),
            params: "{}".into(),
            priority: Priority::Normal,
            timeout_ms: None,
            max_retries: 0,
            idempotency_key: None,
            class: None,
            request_id: None,
        };
        let new = NewTask {
            id: TaskId::generate(),
            spec,
            created_at_ms: 0,
            node: None,
        };
        TaskRecord {
            status,
            finished_at_ms,
            ..TaskRecord::queued(new)
        }
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
        };
        assert!(matches(&ListFilter::default(), &r));
        assert!(matches(&filter(Some(TaskStatus::Queued), "echo"), &r));
        assert!(!matches(&filter(Some(TaskStatus::Queued), "other"), &r));
        assert!(!matches(&filter(Some(TaskStatus::Running), "echo"), &r));
    }
}
