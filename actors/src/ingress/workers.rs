//! The HTTP worker API: worker processes of external kinds register, poll for leases,
//! heartbeat and report (the pool's side is [`crate::worker_pool::external`]).
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/workers` | `201 {worker_id, lease_ms, heartbeat_ms}`; 422 `not_external` |
//! | `POST /v1/workers/{wid}/poll` | `200 {tasks: [{id, kind, params, attempt, token, timeout_ms?}]}` |
//! | `POST /v1/workers/{wid}/heartbeat` | `200 {leases: [{token, state}]}` |
//! | `POST /v1/workers/{wid}/results` | `200 {results: [{id, outcome, status?, will_retry?}]}` |
//! | `DELETE /v1/workers/{wid}` | `204` |
//! | `POST /v1/tasks/{id}/complete` | `200`; 409 `stale_token` / `already_terminal`; 413 |
//! | `POST /v1/tasks/{id}/fail` | `200 {will_retry}`; the same 409s |
//!
//! A worker id the pool does not know (never registered, expired, left, or the node
//! restarted) answers 404: the worker registers again.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ractor::rpc::CallResult;
use ractor::{ActorRef, RpcReplyPort};
use serde_json::value::RawValue;
use taskmesh_kernels::Progress;
use taskmesh_kernels::task::{TaskId, TaskStatus};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::IngressState;
use super::error::{ApiError, ErrorBody};
use crate::store::Transition;
use crate::worker_pool::PoolMessage;
use crate::worker_pool::external::{
    Report, Reported, Token, UnknownWorker, WorkerOutcome, WorkerRequest, WorkerSpec,
};

pub mod dto;

use dto::{
    CompleteBody, FailBody, FailureBody, HeartbeatAnswer, HeartbeatBody, LeaseStateBody,
    LeasedTask, PollAnswerBody, PollBody, RegisterAnswer, RegisterBody, ResultAnswer, ResultEntry,
    ResultsAnswer, ResultsBody,
};

/// The longest a poll may wait for a first task.
pub const MAX_POLL_WAIT_MS: u64 = 30_000;

/// Most tasks one poll leases, results one call reports, tokens one heartbeat carries.
pub const MAX_ITEMS: usize = 1000;

/// The longest error message kept from a worker, in bytes.
const MAX_ERROR_BYTES: usize = 4096;

/// How long a call to the pool may take besides a poll's wait.
const POOL_ANSWERS_WITHIN: Duration = Duration::from_secs(5);

/// The worker API's routes, each with its OpenAPI operation.
pub fn routes() -> OpenApiRouter<IngressState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(leave))
        .routes(routes!(poll))
        .routes(routes!(heartbeat))
        .routes(routes!(results))
        .routes(routes!(complete))
        .routes(routes!(fail))
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::Unprocessable("invalid_request", message.into())
}

fn unknown_worker(wid: &str) -> ApiError {
    ApiError::NotFound(format!(
        "no worker `{wid}` on this node (expired, left, or the node restarted); register again"
    ))
}

/// Asks the pool, waiting at most `within` for its answer.
async fn ask<T: Send + 'static>(
    state: &IngressState,
    request: impl FnOnce(RpcReplyPort<T>) -> WorkerRequest,
    within: Duration,
) -> Result<T, ApiError> {
    let not_ready =
        || ApiError::Unavailable("not_ready", "the worker pool is restarting".into(), 1);
    let pool =
        ActorRef::<PoolMessage>::where_is(state.ctx.names.pool.clone()).ok_or_else(not_ready)?;
    match pool
        .call(|reply| PoolMessage::Worker(request(reply)), Some(within))
        .await
    {
        Ok(CallResult::Success(answer)) => Ok(answer),
        _ => Err(not_ready()),
    }
}

/// Register a worker process for external kinds.
#[utoipa::path(post, path = "/v1/workers", tag = "workers", request_body = RegisterBody,
    responses(
        (status = 201, description = "Registered.", body = RegisterAnswer),
        (status = 422, description = "`not_external`: a kind the node does not declare external; `invalid_request`: out-of-range fields.", body = ErrorBody),
        (status = 503, description = "`not_ready`: the worker pool is restarting or the node is stopping.", body = ErrorBody),
    ))]
async fn register(
    State(state): State<IngressState>,
    body: Result<Json<RegisterBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let name = body.name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(invalid("`name` must hold 1 to 128 bytes"));
    }
    if body.kinds.is_empty() || body.kinds.len() > 64 {
        return Err(invalid("`kinds` must hold 1 to 64 kinds"));
    }
    if let Some(kind) = body
        .kinds
        .iter()
        .find(|k| !state.ctx.kernels.is_external(k))
    {
        let declared: Vec<&str> = state.ctx.kernels.external_kinds().collect();
        return Err(ApiError::Unprocessable(
            "not_external",
            format!(
                "kind `{kind}` is not declared external on this node (--external-kinds: {declared:?})"
            ),
        ));
    }
    if !(1..=MAX_ITEMS).contains(&body.slots) {
        return Err(invalid(format!(
            "`slots` must lie between 1 and {MAX_ITEMS}"
        )));
    }
    if body
        .class
        .as_ref()
        .is_some_and(|c| c.is_empty() || c.len() > 64)
    {
        return Err(invalid("`class` must hold 1 to 64 bytes"));
    }
    let mut kinds = body.kinds;
    kinds.sort();
    kinds.dedup();
    let spec = WorkerSpec {
        name: name.to_owned(),
        kinds,
        slots: body.slots,
        class: body.class,
    };
    let registered = ask(
        &state,
        |reply| WorkerRequest::Register(spec, reply),
        POOL_ANSWERS_WITHIN,
    )
    .await?;
    let answer = RegisterAnswer {
        worker_id: registered.worker_id.to_string(),
        lease_ms: registered.lease_ms,
        heartbeat_ms: registered.heartbeat_ms,
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// Lease tasks, waiting for a first one if none is queued.
///
/// Up to `max` tasks (capped at the worker's free slots), waiting up to `wait_ms` (at
/// most 30 s) for a first one.
#[utoipa::path(post, path = "/v1/workers/{wid}/poll", tag = "workers", request_body = PollBody,
    params(("wid" = String, Path, description = "The worker id `POST /v1/workers` gave.")),
    responses(
        (status = 200, description = "The leased tasks; empty when the wait ran out.", body = PollAnswerBody),
        (status = 404, description = "`not_found`: the node does not know the worker (never registered, expired, left, or the node restarted): register again.", body = ErrorBody),
        (status = 503, description = "`not_ready`: the worker pool is restarting or the node is stopping.", body = ErrorBody),
    ))]
async fn poll(
    State(state): State<IngressState>,
    Path(wid): Path<String>,
    body: Result<Json<PollBody>, JsonRejection>,
) -> Result<Json<PollAnswerBody>, ApiError> {
    let Json(body) = body?;
    if !(1..=MAX_ITEMS).contains(&body.max) {
        return Err(invalid(format!("`max` must lie between 1 and {MAX_ITEMS}")));
    }
    // Within the request timeout, with a second to answer.
    let longest = state
        .limits
        .request_timeout
        .saturating_sub(Duration::from_secs(1));
    let wait = Duration::from_millis(body.wait_ms.min(MAX_POLL_WAIT_MS)).min(longest);
    let worker = wid.clone();
    let request = |reply| WorkerRequest::Poll {
        worker,
        max: body.max,
        wait,
        reply,
    };
    let grants = ask(&state, request, wait + POOL_ANSWERS_WITHIN)
        .await?
        .map_err(|UnknownWorker| unknown_worker(&wid))?;
    let tasks = grants
        .into_iter()
        .map(|g| LeasedTask {
            id: g.id.to_string(),
            kind: g.kind,
            // Params were checked as JSON when the task was accepted.
            params: RawValue::from_string(g.params).unwrap_or_else(|_| RawValue::NULL.to_owned()),
            attempt: g.attempt,
            token: g.token.to_string(),
            timeout_ms: g.timeout_ms,
        })
        .collect();
    Ok(Json(PollAnswerBody { tasks }))
}

/// Keep the worker's leases, report progress, learn of cancels.
#[utoipa::path(post, path = "/v1/workers/{wid}/heartbeat", tag = "workers", request_body = HeartbeatBody,
    params(("wid" = String, Path, description = "The worker id `POST /v1/workers` gave.")),
    responses(
        (status = 200, description = "One state per token sent, in order.", body = HeartbeatAnswer),
        (status = 404, description = "`not_found`: the node does not know the worker (never registered, expired, left, or the node restarted): register again.", body = ErrorBody),
        (status = 503, description = "`not_ready`: the worker pool is restarting or the node is stopping.", body = ErrorBody),
    ))]
async fn heartbeat(
    State(state): State<IngressState>,
    Path(wid): Path<String>,
    body: Result<Json<HeartbeatBody>, JsonRejection>,
) -> Result<Json<HeartbeatAnswer>, ApiError> {
    let Json(body) = body?;
    if body.tokens.len() > MAX_ITEMS || body.progress.len() > MAX_ITEMS {
        return Err(invalid(format!(
            "at most {MAX_ITEMS} tokens and progress reports"
        )));
    }
    let progress: Vec<(Token, Progress)> = body
        .progress
        .into_iter()
        .filter_map(|(t, p)| Some((Token::quoted(t), Progress::new(p.fraction, &p.message)?)))
        .collect();
    let tokens: Vec<Token> = body.tokens.into_iter().map(Token::quoted).collect();
    let worker = wid.clone();
    let sent = tokens.clone();
    let request = |reply| WorkerRequest::Heartbeat {
        worker,
        tokens,
        progress,
        reply,
    };
    let states = ask(&state, request, POOL_ANSWERS_WITHIN)
        .await?
        .map_err(|UnknownWorker| unknown_worker(&wid))?;
    let leases = sent
        .into_iter()
        .zip(states)
        .map(|(token, s)| LeaseStateBody {
            token: token.to_string(),
            state: s.as_str(),
        })
        .collect();
    Ok(Json(HeartbeatAnswer { leases }))
}

/// Unregister: the worker's leased tasks go back to the queue without using an attempt.
#[utoipa::path(delete, path = "/v1/workers/{wid}", tag = "workers",
    params(("wid" = String, Path, description = "The worker id `POST /v1/workers` gave.")),
    responses(
        (status = 204, description = "Gone."),
        (status = 404, description = "`not_found`: the node does not know the worker (never registered, expired, left, or the node restarted): register again.", body = ErrorBody),
        (status = 503, description = "`not_ready`: the worker pool is restarting or the node is stopping.", body = ErrorBody),
    ))]
async fn leave(
    State(state): State<IngressState>,
    Path(wid): Path<String>,
) -> Result<StatusCode, ApiError> {
    let worker = wid.clone();
    ask(
        &state,
        |reply| WorkerRequest::Leave { worker, reply },
        POOL_ANSWERS_WITHIN,
    )
    .await?
    .map_err(|UnknownWorker| unknown_worker(&wid))?;
    Ok(StatusCode::NO_CONTENT)
}

/// A reported outcome from its JSON parts, or why it is refused.
fn outcome(
    state: &IngressState,
    result: Option<Box<RawValue>>,
    error: Option<FailureBody>,
) -> Result<WorkerOutcome, (&'static str, String)> {
    match (result, error) {
        (Some(result), None) => {
            let limit = state.limits.max_result_bytes;
            if result.get().len() > limit {
                let m = format!(
                    "the result is {} bytes; the limit is {limit}",
                    result.get().len()
                );
                return Err(("too_large", m));
            }
            Ok(WorkerOutcome::Succeeded(result.get().to_owned()))
        }
        (None, Some(error)) => {
            let mut message = error.message;
            let mut end = message.len().min(MAX_ERROR_BYTES);
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            Ok(WorkerOutcome::Failed {
                message,
                retryable: error.retryable,
            })
        }
        _ => Err(("invalid", "give exactly one of `result` and `error`".into())),
    }
}

/// Why a report that is not of a live lease recorded nothing, as the task's record
/// tells: no such task, a finished one, or a token of an earlier attempt.
async fn unrecorded(state: &IngressState, id: &TaskId) -> Result<&'static str, ApiError> {
    Ok(match state.get_record(id).await? {
        None => "not_found",
        Some(r) if r.status.is_terminal() => "already_terminal",
        Some(_) => "stale_token",
    })
}

/// Counts a report that recorded nothing.
fn refused(state: &IngressState, outcome: &'static str) {
    count_refused(state, outcome, 1);
}

/// What became of one report, once its write (if any) is answered.
async fn answer(
    state: &IngressState,
    id: TaskId,
    reported: Reported,
) -> Result<ResultAnswer, ApiError> {
    let entry = |outcome: &'static str, status, will_retry| {
        if outcome != "recorded" {
            refused(state, outcome);
        }
        ResultAnswer {
            id: id.to_string(),
            outcome,
            status,
            will_retry,
            message: None,
        }
    };
    let (status, write) = match reported {
        Reported::Retrying => return Ok(entry("recorded", Some("queued"), Some(true))),
        Reported::Unknown => return Ok(entry(unrecorded(state, &id).await?, None, None)),
        Reported::Writing(status, write) => (status, write),
    };
    // The pool stopped before the write was answered: the node is stopping.
    let stopping = |_| ApiError::Unavailable("not_ready", "the node is stopping".into(), 1);
    Ok(match write.await.map_err(stopping)? {
        Transition::Applied => {
            let will_retry = (status == TaskStatus::Failed).then_some(false);
            entry("recorded", Some(status.as_str()), will_retry)
        }
        Transition::Rejected(_) => entry("already_terminal", None, None),
        Transition::NotFound => entry("not_found", None, None),
        // The task moved since the lease was granted.
        Transition::NotHolder(_) => entry(unrecorded(state, &id).await?, None, None),
    })
}

/// Counts `n` reports refused with `outcome` in `taskmesh_external_refused_reports_total`.
fn count_refused(state: &IngressState, outcome: &str, n: usize) {
    state
        .ctx
        .metrics
        .external
        .refused_reports
        .with_label_values(&[outcome])
        .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
}

async fn report_all(
    state: &IngressState,
    worker: Option<String>,
    reports: Vec<Report>,
) -> Result<Vec<Reported>, ApiError> {
    let missing = worker.clone();
    let count = reports.len();
    let request = |reply| WorkerRequest::Report {
        worker,
        reports,
        reply,
    };
    let reported = ask(state, request, POOL_ANSWERS_WITHIN).await?;
    reported.map_err(|UnknownWorker| {
        // The whole batch is refused: its worker's leases ended with its registration.
        count_refused(state, "unknown_worker", count);
        unknown_worker(missing.as_deref().unwrap_or("-"))
    })
}

/// Report many ended attempts at once (results or failures), in order.
#[utoipa::path(post, path = "/v1/workers/{wid}/results", tag = "workers", request_body = ResultsBody,
    params(("wid" = String, Path, description = "The worker id `POST /v1/workers` gave.")),
    responses(
        (status = 200, description = "One answer per entry, in order.", body = ResultsAnswer),
        (status = 404, description = "`not_found`: the node does not know the worker (never registered, expired, left, or the node restarted): register again.", body = ErrorBody),
        (status = 503, description = "`not_ready`: the worker pool is restarting or the node is stopping.", body = ErrorBody),
    ))]
async fn results(
    State(state): State<IngressState>,
    Path(wid): Path<String>,
    body: Result<Json<ResultsBody>, JsonRejection>,
) -> Result<Json<ResultsAnswer>, ApiError> {
    let Json(body) = body?;
    if body.results.len() > MAX_ITEMS {
        return Err(invalid(format!(
            "`results` must hold at most {MAX_ITEMS} entries"
        )));
    }
    // Entries refused here get their answer now; the others go to the pool, in order.
    let mut answers: Vec<Option<ResultAnswer>> = Vec::with_capacity(body.results.len());
    let mut reports = Vec::new();
    for ResultEntry {
        id,
        token,
        result,
        error,
    } in body.results
    {
        let refused = |outcome, message: String| {
            refused(&state, outcome);
            ResultAnswer {
                id: id.clone(),
                outcome,
                status: None,
                will_retry: None,
                message: Some(message),
            }
        };
        let Ok(task) = id.parse::<TaskId>() else {
            answers.push(Some(refused("invalid", format!("`{id}` is not a task id"))));
            continue;
        };
        match outcome(&state, result, error) {
            Ok(outcome) => {
                reports.push(Report {
                    id: task,
                    token: Token::quoted(token),
                    outcome,
                });
                answers.push(None);
            }
            Err((code, message)) => answers.push(Some(refused(code, message))),
        }
    }
    let ids: Vec<TaskId> = reports.iter().map(|r| r.id).collect();
    let reported = report_all(&state, Some(wid), reports).await?;
    // The pool issued every write at once; awaiting them in order takes as long as the
    // slowest.
    let mut settled = Vec::with_capacity(ids.len());
    for (id, r) in ids.into_iter().zip(reported) {
        settled.push(answer(&state, id, r).await?);
    }
    let mut settled = settled.into_iter();
    let results = answers
        .into_iter()
        .filter_map(|a| a.or_else(|| settled.next()))
        .collect();
    Ok(Json(ResultsAnswer { results }))
}

fn parse_id(id: &str) -> Result<TaskId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::BadRequest("invalid_id", format!("`{id}` is not a task id")))
}

/// One attempt reported through `/v1/tasks/{id}/complete` or `/fail`, as an HTTP answer.
async fn report_one(
    state: &IngressState,
    id: TaskId,
    token: String,
    outcome: Result<WorkerOutcome, (&'static str, String)>,
) -> Result<Response, ApiError> {
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err((code, message)) => {
            refused(state, code);
            return Err(match code {
                "too_large" => ApiError::TooLarge(message),
                _ => invalid(message),
            });
        }
    };
    let report = Report {
        id,
        token: Token::quoted(token),
        outcome,
    };
    let reported = report_all(state, None, vec![report]).await?;
    let Some(reported) = reported.into_iter().next() else {
        return Err(ApiError::Internal("the pool answered no report".into()));
    };
    let answer = answer(state, id, reported).await?;
    match answer.outcome {
        "recorded" => Ok((StatusCode::OK, Json(answer)).into_response()),
        "stale_token" => Err(ApiError::Conflict(
            "stale_token",
            "the token is not the task's current attempt (its lease expired, or the task moved or was retried); nothing was recorded".into(),
        )),
        "already_terminal" => Err(ApiError::Conflict(
            "already_terminal",
            "the task already reached a terminal status; nothing was recorded".into(),
        )),
        _ => Err(ApiError::NotFound(format!("no task with id {id}"))),
    }
}

/// Report an attempt's result.
#[utoipa::path(post, path = "/v1/tasks/{id}/complete", tag = "workers", request_body = CompleteBody,
    params(("id" = String, Path, description = "The task id (a UUID).")),
    responses(
        (status = 200, description = "Recorded.", body = ResultAnswer),
        (status = 400, description = "`invalid_id`: not a task id.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such task.", body = ErrorBody),
        (status = 409, description = "`stale_token` or `already_terminal`: nothing was recorded.", body = ErrorBody),
        (status = 413, description = "`too_large`: the result is over `--max-result-bytes`; the lease stays valid.", body = ErrorBody),
        (status = 503, description = "`not_ready`: the worker pool is restarting or the node is stopping.", body = ErrorBody),
    ))]
async fn complete(
    State(state): State<IngressState>,
    Path(id): Path<String>,
    body: Result<Json<CompleteBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let Json(body) = body?;
    let outcome = outcome(&state, Some(body.result), None);
    report_one(&state, id, body.token, outcome).await
}

/// Report an attempt's failure.
#[utoipa::path(post, path = "/v1/tasks/{id}/fail", tag = "workers", request_body = FailBody,
    params(("id" = String, Path, description = "The task id (a UUID).")),
    responses(
        (status = 200, description = "Recorded; `will_retry` tells whether the task runs again.", body = ResultAnswer),
        (status = 400, description = "`invalid_id`: not a task id.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such task.", body = ErrorBody),
        (status = 409, description = "`stale_token` or `already_terminal`: nothing was recorded.", body = ErrorBody),
        (status = 503, description = "`not_ready`: the worker pool is restarting or the node is stopping.", body = ErrorBody),
    ))]
async fn fail(
    State(state): State<IngressState>,
    Path(id): Path<String>,
    body: Result<Json<FailBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let Json(body) = body?;
    let outcome = outcome(&state, None, Some(body.error));
    report_one(&state, id, body.token, outcome).await
}
