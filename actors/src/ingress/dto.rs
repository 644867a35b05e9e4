//! JSON bodies of the HTTP API (not wire types: these never leave the HTTP edge).

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use taskmesh_kernels::Progress;
use taskmesh_kernels::task::{Priority, TaskStatus};

use crate::task::{Millis, TaskRecord};

/// `POST /v1/tasks` body, and each entry of a batch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitTask {
    /// Kernel name.
    pub kind: String,
    /// Kernel params (a JSON object); absent means `{}`.
    #[serde(default)]
    pub params: Option<Box<RawValue>>,
    /// Defaults to normal.
    #[serde(default)]
    pub priority: Priority,
    /// Per-attempt time limit.
    pub timeout_ms: Option<u64>,
    /// Defaults to 3.
    pub max_retries: Option<u32>,
    /// Client-chosen deduplication key.
    pub idempotency_key: Option<String>,
    /// Resource class matched against node labels.
    pub class: Option<String>,
}

/// `POST /v1/tasks/batch` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBatch {
    /// The tasks, validated all or nothing.
    pub tasks: Vec<SubmitTask>,
}

/// Answer to a single submission.
#[derive(Debug, Serialize)]
pub struct Submitted {
    /// The task's id (the first task's, for a repeated idempotency key).
    pub id: String,
    /// Its status now.
    pub status: TaskStatus,
}

/// Answer to a batch submission.
#[derive(Debug, Serialize)]
pub struct SubmittedBatch {
    /// One id per submitted task, in order.
    pub ids: Vec<String>,
}

/// Query of `GET /v1/tasks/{id}`.
#[derive(Debug, Deserialize)]
pub struct WaitQuery {
    /// Long-poll until terminal or this many milliseconds pass.
    pub wait_ms: Option<u64>,
}

/// Query of `GET /v1/tasks`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Only this status.
    pub status: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// At most this many (default 50).
    pub limit: Option<usize>,
}

/// A task as the API shows it.
#[derive(Debug, Serialize)]
pub struct TaskView {
    /// Id.
    pub id: String,
    /// Kernel name.
    pub kind: String,
    /// Status.
    pub status: TaskStatus,
    /// Priority.
    pub priority: Priority,
    /// Attempts started.
    pub attempts: u32,
    /// Retries allowed.
    pub max_retries: u32,
    /// The params as submitted.
    pub params: Box<RawValue>,
    /// The result, once succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Box<RawValue>>,
    /// The error, once failed (or of the last failed attempt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The node that holds the task: the one it was placed on while queued, the one that ran (or runs) the latest attempt after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The submission's request id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The id of the API key that submitted the task (absent with `--auth off`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submitted_by: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The latest progress the running (or last) attempt reported; absent before any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

pub(crate) fn rfc3339(ms: Millis) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn raw(json: String) -> Box<RawValue> {
    // Stored JSON is validated on the way in; this only guards a corrupt record.
    RawValue::from_string(json).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

impl From<TaskRecord> for TaskView {
    fn from(r: TaskRecord) -> Self {
        // A record read from the store holds the only handle on its spec: no copy.
        let spec = std::sync::Arc::unwrap_or_clone(r.spec);
        Self {
            id: r.id.to_string(),
            kind: spec.kind,
            status: r.status,
            priority: spec.priority,
            attempts: r.attempts,
            max_retries: spec.max_retries,
            params: raw(spec.params),
            result: r.result.map(raw),
            error: r.error,
            node: r.node,
            request_id: spec.request_id,
            submitted_by: spec.submitted_by,
            created_at: rfc3339(r.created_at_ms),
            started_at: r.started_at_ms.map(rfc3339),
            finished_at: r.finished_at_ms.map(rfc3339),
            progress: r.progress,
        }
    }
}

/// `GET /v1/tasks` answer.
#[derive(Debug, Serialize)]
pub struct TaskList {
    /// Newest first.
    pub tasks: Vec<TaskView>,
}
