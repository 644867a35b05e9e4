//! JSON bodies of the HTTP API (not wire types: these never leave the HTTP edge).

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use taskmesh_kernels::Progress;
use taskmesh_kernels::task::{Priority, TaskStatus};
use utoipa::{IntoParams, ToSchema};

use crate::task::{Millis, TaskRecord};

/// `POST /v1/tasks` body, and each entry of a batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"kind": "echo", "params": {"value": 42}, "priority": "high"}))]
pub struct SubmitTask {
    /// Kernel name.
    pub kind: String,
    /// Kernel params (a JSON object); absent means `{}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
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
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitBatch {
    /// The tasks, validated all or nothing.
    pub tasks: Vec<SubmitTask>,
}

/// Answer to a single submission.
#[derive(Debug, Serialize, ToSchema)]
pub struct Submitted {
    /// The task's id (the first task's, for a repeated idempotency key).
    pub id: String,
    /// Its status now.
    pub status: TaskStatus,
}

/// Answer to a batch submission.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubmittedBatch {
    /// One id per submitted task, in order.
    pub ids: Vec<String>,
}

/// Query of `GET /v1/tasks/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Long-poll until terminal or this many milliseconds pass.
    pub wait_ms: Option<u64>,
}

/// Query of `GET /v1/tasks`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this status (empty: any).
    #[param(schema_with = status_filter)]
    pub status: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// At most this many (default 50).
    pub limit: Option<usize>,
}

/// The schema of `status` in [`ListQuery`]: a status, or empty for any.
fn status_filter() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    let empty = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([""]));
    OneOfBuilder::new()
        .item(utoipa::openapi::Ref::from_schema_name("TaskStatus"))
        .item(empty)
        .into()
}

/// A task as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
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
    #[schema(value_type = serde_json::Value)]
    pub params: Box<RawValue>,
    /// The result, once succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
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
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskList {
    /// Newest first.
    pub tasks: Vec<TaskView>,
}

/// `DELETE /v1/tasks/{id}` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CancelAnswer {
    /// The task's id.
    pub id: String,
    /// `cancelled` (200), or `running` (202: its worker was told to stop).
    pub status: TaskStatus,
    /// `requested`, with a 202.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel: Option<String>,
}

/// `GET /health` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
    /// The node's id.
    pub node: String,
}

/// `GET /health/ready` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready` (200) or `not_ready` (503).
    pub status: &'static str,
    /// The checks, or why there are none.
    pub checks: ReadyChecks,
}

/// The checks of a readiness answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ReadyChecks {
    /// The health monitor's last verdict.
    Verdict(crate::health::Readiness),
    /// Why there is no verdict (the health monitor is not answering).
    Missing(&'static str),
}
