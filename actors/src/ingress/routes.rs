//! `fn router(state) -> Router`: every HTTP route of a node.

use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Extension, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use ractor::ActorRef;
use taskmesh_kernels::task::{TaskId, TaskStatus};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::IngressState;
use super::dto::{
    CancelAnswer, Health, ListQuery, Ready, ReadyChecks, SubmitBatch, SubmitTask, Submitted,
    SubmittedBatch, TaskList, TaskView, WaitQuery,
};
use super::error::{ApiError, ErrorBody, REQUEST_ID};
use super::openapi;
use crate::auth::owner;
use crate::auth::{self, middleware::Caller};
use crate::dispatcher::DispatcherMessage;
use crate::dispatcher::view::ClusterView;
use crate::health::HealthMessage;
use crate::store::{Created, ListFilter};

/// The task, cluster, health and document routes, each with its OpenAPI operation (the
/// worker and key routes are in their modules; [`openapi::parts`] puts them together).
pub(super) fn routes() -> OpenApiRouter<IngressState> {
    OpenApiRouter::new()
        .routes(routes!(submit, list))
        .routes(routes!(submit_batch))
        .routes(routes!(get_task, cancel))
        .routes(routes!(cluster))
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
        .routes(routes!(openapi::serve_document))
}

/// The node's HTTP API.
pub fn router(state: IngressState) -> Router {
    let body_limit = state.limits.max_body_bytes;
    let parts = openapi::parts();
    let mut app = parts.api.merge(openapi::ui());
    if state.auth.is_some() {
        app = app.merge(parts.keys);
    }
    app = app
        .layer(Extension(openapi::Served::new(&parts.doc)))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(body_limit));
    if state.auth.is_some() {
        // Inside the span (it records the key id) and the bounds; outside every handler.
        app = app.layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::middleware::require_key,
        ));
    }
    super::server::bounded(app, &state.limits)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request| {
                            let request_id = req
                                .headers()
                                .get("x-request-id")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-");
                            tracing::info_span!(
                                "http",
                                method = %req.method(),
                                path = %req.uri().path(),
                                request_id,
                                key_id = tracing::field::Empty,
                            )
                        })
                        .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                        // 503s under overload are expected answers, not errors to log one
                        // by one; internal errors are logged by `ApiError`.
                        .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
                )
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
        .with_state(state)
}

/// Records the request counter and latency histogram by matched route, and makes the
/// request id known to error bodies built while answering.
async fn observe(State(state): State<IngressState>, req: Request, next: Next) -> Response {
    let id = request_id(req.headers());
    // Both are reference-counted or inline: no copy of the path or method per request.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let start = Instant::now();
    let response = REQUEST_ID.scope(id, next.run(req)).await;
    state.http.observe(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        method.as_str(),
        response.status().as_str(),
        start.elapsed().as_secs_f64(),
    );
    response
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    let id = headers.get("x-request-id")?.to_str().ok()?;
    Some(id.chars().take(128).collect())
}

/// The id of the request being answered, as [`observe`] recorded it (handlers read it
/// there rather than taking a copy of every header with a `HeaderMap` extractor).
fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok().flatten()
}

/// Submit one task.
///
/// `202` with `Location` for a new task; `200` with the first task's id and status when
/// `idempotency_key` repeats one.
#[utoipa::path(post, path = "/v1/tasks", tag = "tasks", request_body = SubmitTask,
    responses(
        (status = 202, description = "Accepted and stored.", body = Submitted,
            headers(("Location" = String, description = "The task's URL."))),
        (status = 200, description = "The idempotency key was already used: the first task.", body = Submitted),
        (status = 413, description = "`too_large`: `params` over `--max-params-bytes`.", body = ErrorBody),
        (status = 422, description = "`unknown_kind`, `invalid_params`, `invalid_request` or `unknown_class`.", body = ErrorBody),
        (status = 503, description = "`saturated`, `kind_unavailable`, `not_ready`, `store_unavailable` or `outcome_unknown` (with `error.ids`).", body = ErrorBody),
    ))]
async fn submit(
    State(state): State<IngressState>,
    caller: Option<Extension<Caller>>,
    body: Result<Json<SubmitTask>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(task) = body?;
    let mut spec = state.validate(task, current_request_id())?;
    owner::stamp(&mut spec, caller.as_deref());
    let created = state.submit(vec![spec]).await?;
    let Some(created) = created.into_iter().next() else {
        return Err(ApiError::Internal("store returned no outcome".into()));
    };
    match created {
        Created::New(id) => {
            let location = HeaderValue::try_from(format!("/v1/tasks/{id}"))
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            let body = Submitted {
                id: id.to_string(),
                status: TaskStatus::Queued,
            };
            Ok((
                StatusCode::ACCEPTED,
                [(header::LOCATION, location)],
                Json(body),
            )
                .into_response())
        }
        Created::Existing(id) => {
            let status = state
                .get_record(&id)
                .await?
                .map_or(TaskStatus::Queued, |r| r.status);
            let body = Submitted {
                id: id.to_string(),
                status,
            };
            Ok((StatusCode::OK, Json(body)).into_response())
        }
    }
}

/// Submit up to 1000 tasks, all or nothing.
#[utoipa::path(post, path = "/v1/tasks/batch", tag = "tasks", request_body = SubmitBatch,
    responses(
        (status = 202, description = "Every task accepted and stored (or found by its idempotency key).", body = SubmittedBatch),
        (status = 413, description = "`too_large`: a task's `params` over `--max-params-bytes`.", body = ErrorBody),
        (status = 422, description = "`invalid_batch`, or a task's `unknown_kind`, `invalid_params`, `invalid_request` or `unknown_class` (the message names `tasks[i]`).", body = ErrorBody),
        (status = 503, description = "`saturated`, `kind_unavailable`, `not_ready`, `store_unavailable` or `outcome_unknown` (with `error.ids`).", body = ErrorBody),
    ))]
async fn submit_batch(
    State(state): State<IngressState>,
    caller: Option<Extension<Caller>>,
    body: Result<Json<SubmitBatch>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(batch) = body?;
    let max = state.limits.max_batch;
    if batch.tasks.is_empty() || batch.tasks.len() > max {
        return Err(ApiError::Unprocessable(
            "invalid_batch",
            format!(
                "`tasks` must hold 1 to {max} tasks, got {}",
                batch.tasks.len()
            ),
        ));
    }
    let rid = current_request_id();
    let specs = batch
        .tasks
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let mut spec = state.validate(t, rid.clone()).map_err(|e| match e {
                ApiError::Unprocessable(code, m) => {
                    ApiError::Unprocessable(code, format!("tasks[{i}]: {m}"))
                }
                ApiError::TooLarge(m) => ApiError::TooLarge(format!("tasks[{i}]: {m}")),
                other => other,
            })?;
            owner::stamp(&mut spec, caller.as_deref());
            Ok(spec)
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    // A batch of N costs N against the key's rate limit: the middleware charged 1.
    let charged = match &caller {
        Some(Extension(caller)) => {
            let more = u32::try_from(specs.len() - 1).unwrap_or(u32::MAX);
            auth::middleware::charge(&state, caller, more).await?
        }
        None => None,
    };
    let created = state.submit(specs).await?;
    let ids = created.iter().map(|c| c.id().to_string()).collect();
    let response = (StatusCode::ACCEPTED, Json(SubmittedBatch { ids })).into_response();
    Ok(match charged {
        Some(checked) => auth::middleware::with_headers(response, checked),
        None => response,
    })
}

fn parse_id(id: &str) -> Result<TaskId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::BadRequest("invalid_id", format!("`{id}` is not a task id")))
}

/// Read a task, waiting up to wait_ms for it to end.
///
/// With `wait_ms`, the answer comes when the task is terminal or the time passes
/// (at most 60 s, and `--request-timeout-ms` minus 1 s).
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "The task id (a UUID)."), WaitQuery),
    responses(
        (status = 200, description = "The task.", body = TaskView),
        (status = 400, description = "`invalid_id`: not a task id.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such task.", body = ErrorBody),
        (status = 503, description = "`store_unavailable`.", body = ErrorBody),
    ))]
async fn get_task(
    State(state): State<IngressState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Json<TaskView>, ApiError> {
    let id = parse_id(&id)?;
    let Query(query) = query?;
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0)).min(state.limits.max_wait);
    let record = state.wait_terminal(&id, wait, caller.as_deref()).await?;
    Ok(Json(record.into()))
}

/// Cancel a task.
#[utoipa::path(delete, path = "/v1/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "The task id (a UUID).")),
    responses(
        (status = 200, description = "Cancelled (it was queued).", body = CancelAnswer),
        (status = 202, description = "Running: its worker was told to stop; it ends `cancelled`.", body = CancelAnswer),
        (status = 400, description = "`invalid_id`: not a task id.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such task.", body = ErrorBody),
        (status = 409, description = "`already_terminal`, or `holder_changed` (retry).", body = ErrorBody),
        (status = 503, description = "`not_ready` or `store_unavailable`.", body = ErrorBody),
    ))]
async fn cancel(
    State(state): State<IngressState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    state.cancel(&id, caller.as_deref()).await
}

/// Recent tasks, newest first.
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks", params(ListQuery),
    responses(
        (status = 200, description = "The tasks.", body = TaskList),
        (status = 503, description = "`store_unavailable`.", body = ErrorBody),
    ))]
async fn list(
    State(state): State<IngressState>,
    caller: Option<Extension<Caller>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<TaskList>, ApiError> {
    let Query(query) = query?;
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            s.parse::<TaskStatus>()
                .map_err(|e| ApiError::BadRequest("invalid_query", format!("`status`: {e}")))?,
        ),
    };
    let filter = ListFilter {
        status,
        kind: query.kind.filter(|k| !k.is_empty()),
        limit: query.limit.unwrap_or(50).clamp(1, state.limits.max_list),
        // A `submit`-only key lists only the tasks it submitted.
        submitted_by: caller
            .as_deref()
            .and_then(Caller::list_only)
            .map(str::to_owned),
    };
    let records = state
        .ctx
        .store
        .list(&filter)
        .await
        .map_err(|e| state.store_failed("list", &e))?;
    let tasks = records.into_iter().map(TaskView::from).collect();
    Ok(Json(TaskList { tasks }))
}

/// Liveness: answers while the process serves HTTP (no I/O).
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "Alive.", body = Health)))]
async fn health(State(state): State<IngressState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        node: state.ctx.node_id.to_string(),
    })
}

/// Readiness: the store answers, the pool runs workers, nothing crash-loops, not draining.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready for traffic.", body = Ready),
        (status = 503, description = "Not ready (`status: not_ready`) and why.", body = Ready),
    ))]
async fn ready(State(state): State<IngressState>) -> Response {
    let monitor = ActorRef::<HealthMessage>::where_is(state.ctx.names.health.clone());
    let verdict = match monitor {
        Some(m) => ractor::call_t!(m, HealthMessage::GetReadiness, 1000).ok(),
        None => None,
    };
    let (code, status, checks) = match verdict {
        Some(v) if v.ready => (StatusCode::OK, "ready", ReadyChecks::Verdict(v)),
        Some(v) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            ReadyChecks::Verdict(v),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            ReadyChecks::Missing("health monitor not answering"),
        ),
    };
    (code, Json(Ready { status, checks })).into_response()
}

/// This node and every peer it knows.
#[utoipa::path(get, path = "/v1/cluster", tag = "cluster",
    responses(
        (status = 200, description = "The cluster as this node sees it.", body = ClusterView),
        (status = 503, description = "`not_ready`: the dispatcher is restarting.", body = ErrorBody),
    ))]
async fn cluster(State(state): State<IngressState>) -> Result<Response, ApiError> {
    let dispatcher = ActorRef::<DispatcherMessage>::where_is(state.ctx.names.dispatcher.clone())
        .ok_or_else(|| {
            ApiError::Unavailable("not_ready", "the dispatcher is restarting".into(), 1)
        })?;
    let view = ractor::call_t!(dispatcher, DispatcherMessage::GetCluster, 2000).map_err(|_| {
        ApiError::Unavailable("not_ready", "the dispatcher is not answering".into(), 1)
    })?;
    Ok(Json(view).into_response())
}

/// Prometheus metrics (text exposition format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "The node's metrics.", body = String,
        content_type = "text/plain; version=0.0.4")))]
async fn metrics(State(state): State<IngressState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.ctx.metrics.render(),
    )
}
