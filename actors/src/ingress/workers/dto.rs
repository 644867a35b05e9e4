//! JSON bodies of the HTTP worker API (`/v1/workers`, `/v1/tasks/{id}/complete|fail`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// `POST /v1/workers` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// A name for humans (host and process, say), 1 to 128 bytes.
    #[schema(min_length = 1)]
    pub name: String,
    /// The external kinds the worker runs (declared by `--external-kinds`).
    #[schema(min_items = 1, max_items = 64)]
    pub kinds: Vec<String>,
    /// How many tasks it runs at once.
    #[schema(minimum = 1, maximum = 1000)]
    pub slots: usize,
    /// Its resource class, if any.
    #[schema(min_length = 1, max_length = 64)]
    pub class: Option<String>,
}

/// `POST /v1/workers` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegisterAnswer {
    /// The worker's id, for every later call.
    pub worker_id: String,
    /// How long the node keeps the worker's leases without a call.
    pub lease_ms: u64,
    /// How often the worker should heartbeat.
    pub heartbeat_ms: u64,
}

/// `POST /v1/workers/{wid}/poll` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PollBody {
    /// At most this many tasks (capped at the worker's free slots).
    #[schema(minimum = 1, maximum = 1000)]
    pub max: usize,
    /// How long to wait for a first task, at most [`MAX_POLL_WAIT_MS`](super::MAX_POLL_WAIT_MS).
    #[serde(default)]
    pub wait_ms: u64,
}

/// One leased task in a poll's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeasedTask {
    /// The task's id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// Its params, as submitted.
    #[schema(value_type = serde_json::Value)]
    pub params: Box<RawValue>,
    /// The attempt number (1 for the first).
    pub attempt: u32,
    /// What every report of this attempt quotes.
    pub token: String,
    /// The task's hard time limit, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `POST /v1/workers/{wid}/poll` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct PollAnswerBody {
    /// The leased tasks; empty when the wait ran out.
    pub tasks: Vec<LeasedTask>,
}

/// Progress as a worker reports it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressBody {
    /// Share of the work done, in `[0, 1]`.
    pub fraction: f64,
    /// What the task is doing.
    #[serde(default)]
    pub message: String,
}

/// `POST /v1/workers/{wid}/heartbeat` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBody {
    /// The tokens the worker holds.
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub tokens: Vec<String>,
    /// Latest progress per token (at most 1000).
    #[serde(default)]
    pub progress: BTreeMap<String, ProgressBody>,
}

/// One token's state in a heartbeat's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeaseStateBody {
    /// The token.
    pub token: String,
    /// `ok`, `cancel_requested` or `stale`.
    pub state: &'static str,
}

/// `POST /v1/workers/{wid}/heartbeat` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeartbeatAnswer {
    /// One state per token sent, in order.
    pub leases: Vec<LeaseStateBody>,
}

/// How a worker says an attempt failed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailureBody {
    /// What went wrong.
    pub message: String,
    /// Whether another attempt may help.
    pub retryable: bool,
}

/// `POST /v1/tasks/{id}/complete` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    /// The attempt's token.
    pub token: String,
    /// The result (any JSON value).
    #[schema(value_type = serde_json::Value)]
    pub result: Box<RawValue>,
}

/// `POST /v1/tasks/{id}/fail` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailBody {
    /// The attempt's token.
    pub token: String,
    /// The failure.
    pub error: FailureBody,
}

/// One entry of `POST /v1/workers/{wid}/results`: a result or an error.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultEntry {
    /// The task.
    pub id: String,
    /// The attempt's token.
    pub token: String,
    /// The result, for a success. `null` is a result (a handler that returned nothing,
    /// e.g. after a cancel); only an absent `result` is none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub result: Option<Box<RawValue>>,
    /// The failure, for a failure.
    pub error: Option<FailureBody>,
}

/// A field that is present, whatever its JSON value (`null` included).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// `POST /v1/workers/{wid}/results` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultsBody {
    /// The attempts that ended.
    #[schema(max_items = 1000)]
    pub results: Vec<ResultEntry>,
}

/// What became of one reported attempt.
#[derive(Debug, Serialize, PartialEq, Eq, ToSchema)]
pub struct ResultAnswer {
    /// The task.
    pub id: String,
    /// `recorded`, `stale_token`, `already_terminal`, `too_large`, `not_found` or
    /// `invalid`.
    pub outcome: &'static str,
    /// The task's status after a recorded report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    /// For a recorded failure: whether the task will be retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub will_retry: Option<bool>,
    /// Why, for `invalid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `POST /v1/workers/{wid}/results` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResultsAnswer {
    /// One answer per entry, in order.
    pub results: Vec<ResultAnswer>,
}

#[cfg(test)]
mod tests {
    use super::ResultEntry;

    #[test]
    fn a_null_result_is_a_result_and_an_absent_one_is_none() {
        let null: ResultEntry =
            serde_json::from_str(r#"{"id":"t","token":"k","result":null}"#).expect("parses");
        assert_eq!(
            null.result.map(|r| r.get().to_owned()).as_deref(),
            Some("null")
        );
        let absent: ResultEntry = serde_json::from_str(
            r#"{"id":"t","token":"k","error":{"message":"m","retryable":true}}"#,
        )
        .expect("parses");
        assert!(absent.result.is_none());
    }
}
