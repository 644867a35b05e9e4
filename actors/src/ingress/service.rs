//! What the HTTP handlers do once a request is parsed: validation, the
//! admit → store → place sequence of a submission, reads and cancellation.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ractor::ActorRef;
use serde_json::json;
use taskmesh_cluster::protocol::{TaskId, TaskSpec, TaskStatus};
use taskmesh_kernels::KernelError;

use super::IngressState;
use super::dto::SubmitTask;
use super::error::ApiError;
use crate::dispatcher::DispatcherMessage;
use crate::dispatcher::policy::PlaceError;
use crate::store::{Created, Transition};
use crate::task::{Finish, NewTask, TaskRecord, now_ms};
use crate::worker_pool::{CancelOutcome, Job, PoolMessage};

const DEFAULT_MAX_RETRIES: u32 = 3;

fn unavailable(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Unavailable(code, message.into(), 1)
}

impl IngressState {
    /// Checks one submitted task and turns it into a spec.
    pub fn validate(
        &self,
        task: SubmitTask,
        request_id: Option<String>,
    ) -> Result<TaskSpec, ApiError> {
        let limits = &self.limits;
        let params = task
            .params
            .map_or_else(|| "{}".to_owned(), |p| p.get().to_owned());
        if params.len() > limits.max_params_bytes {
            return Err(ApiError::TooLarge(format!(
                "`params` is {} bytes; the limit is {}",
                params.len(),
                limits.max_params_bytes
            )));
        }
        match self.ctx.kernels.validate(&task.kind, &params) {
            Ok(()) => {}
            Err(e @ KernelError::UnknownKind { .. }) => {
                return Err(ApiError::Unprocessable("unknown_kind", e.to_string()));
            }
            Err(e) => return Err(ApiError::Unprocessable("invalid_params", e.to_string())),
        }
        let invalid = |m: String| ApiError::Unprocessable("invalid_request", m);
        if let Some(t) = task.timeout_ms
            && !(1..=limits.max_timeout_ms).contains(&t)
        {
            return Err(invalid(format!(
                "`timeout_ms` must be between 1 and {}",
                limits.max_timeout_ms
            )));
        }
        let max_retries = task.max_retries.unwrap_or(DEFAULT_MAX_RETRIES);
        if max_retries > limits.max_retries {
            return Err(invalid(format!(
                "`max_retries` must be at most {}",
                limits.max_retries
            )));
        }
        if let Some(k) = &task.idempotency_key
            && (k.is_empty() || k.len() > 256)
        {
            return Err(invalid("`idempotency_key` must be 1 to 256 bytes".into()));
        }
        if let Some(c) = &task.class
            && (c.is_empty() || c.len() > 64)
        {
            return Err(invalid("`class` must be 1 to 64 bytes".into()));
        }
        Ok(TaskSpec {
            kind: task.kind,
            params,
            priority: task.priority,
            timeout_ms: task.timeout_ms,
            max_retries,
            idempotency_key: task.idempotency_key,
            class: task.class,
            request_id,
        })
    }

    /// Admits, durably stores and places tasks. Returns once every record is durable.
    ///
    /// The work runs in a task of its own: hyper drops a handler's future when its client
    /// hangs up, and stopping between admission and placement would leak the reserved
    /// room and leave a stored task that no pool runs.
    pub async fn submit(&self, specs: Vec<TaskSpec>) -> Result<Vec<Created>, ApiError> {
        let this = self.clone();
        tokio::spawn(async move { this.admit_store_place(specs).await })
            .await
            .map_err(|e| ApiError::Internal(format!("submission task failed: {e}")))?
    }

    async fn admit_store_place(&self, specs: Vec<TaskSpec>) -> Result<Vec<Created>, ApiError> {
        let names = &self.ctx.names;
        let dispatcher = ActorRef::<DispatcherMessage>::where_is(names.dispatcher.clone())
            .ok_or_else(|| unavailable("not_ready", "the dispatcher is restarting"))?;
        let classes = specs.iter().map(|s| s.class.clone()).collect();
        let admitted = ractor::call_t!(
            dispatcher,
            |reply| DispatcherMessage::Admit { classes, reply },
            2000
        )
        .map_err(|_| unavailable("not_ready", "the dispatcher is not answering"))?;
        let reservation = match admitted {
            Ok(r) => r,
            Err(PlaceError::Saturated) => {
                self.ctx
                    .metrics
                    .rejected
                    .with_label_values(&["saturated"])
                    .inc();
                return Err(unavailable(
                    "saturated",
                    "every worker queue is full; retry later",
                ));
            }
            Err(e @ PlaceError::NoSuchClass(_)) => {
                return Err(ApiError::Unprocessable("unknown_class", e.to_string()));
            }
        };
        let created_at_ms = now_ms();
        // Each task belongs to the node it is placed on from the moment it is stored,
        // so that node takes it back if it restarts.
        let tasks: Vec<NewTask> = specs
            .into_iter()
            .zip(reservation.targets())
            .map(|(spec, target)| NewTask {
                id: TaskId::generate(),
                spec,
                created_at_ms,
                node: Some(target.clone()),
            })
            .collect();
        let created = match self.ctx.store.create(tasks.clone()).await {
            Ok(c) => c,
            Err(e) => {
                self.ctx
                    .metrics
                    .store_errors
                    .with_label_values(&["create"])
                    .inc();
                self.ctx
                    .metrics
                    .rejected
                    .with_label_values(&["store"])
                    .inc();
                let jobs = (0..reservation.len()).map(|_| None).collect();
                let _ = dispatcher.cast(DispatcherMessage::Place { reservation, jobs });
                return Err(unavailable(
                    "store_unavailable",
                    format!("task store error: {e}"),
                ));
            }
        };
        let jobs: Vec<Option<Job>> = tasks
            .into_iter()
            .zip(&created)
            .map(|(task, c)| match c {
                Created::New(id) => {
                    self.ctx
                        .metrics
                        .submitted
                        .with_label_values(&[task.spec.kind.as_str(), task.spec.priority.as_str()])
                        .inc();
                    Some(Job::new(id.clone(), task.spec))
                }
                Created::Existing(_) => None,
            })
            .collect();
        if let Err(e) = dispatcher.cast(DispatcherMessage::Place { reservation, jobs }) {
            // The dispatcher died after admitting: give the tasks to the pool directly.
            if let ractor::MessagingErr::SendErr(DispatcherMessage::Place { jobs, .. }) = e
                && let Some(pool) = ActorRef::<PoolMessage>::where_is(names.pool.clone())
            {
                let _ = pool.cast(PoolMessage::Enqueue(jobs.into_iter().flatten().collect()));
            }
        }
        Ok(created)
    }

    /// The task's record, or `None`.
    pub async fn get_record(&self, id: &TaskId) -> Result<Option<TaskRecord>, ApiError> {
        self.ctx.store.get(id).await.map_err(|e| {
            self.ctx
                .metrics
                .store_errors
                .with_label_values(&["get"])
                .inc();
            unavailable("store_unavailable", format!("task store error: {e}"))
        })
    }

    /// The task's record, or 404.
    pub async fn require_record(&self, id: &TaskId) -> Result<TaskRecord, ApiError> {
        self.get_record(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no task with id {id}")))
    }

    /// `DELETE /v1/tasks/{id}`.
    pub async fn cancel(&self, id: &TaskId) -> Result<Response, ApiError> {
        let record = self.require_record(id).await?;
        let terminal = |status: TaskStatus| {
            ApiError::Conflict(
                "already_terminal",
                format!("task is already {}", status.as_str()),
            )
        };
        if record.status.is_terminal() {
            return Err(terminal(record.status));
        }
        let dispatcher = ActorRef::<DispatcherMessage>::where_is(self.ctx.names.dispatcher.clone())
            .ok_or_else(|| unavailable("not_ready", "the dispatcher is restarting"))?;
        let outcome = ractor::call_t!(dispatcher, DispatcherMessage::Cancel, 6000, id.clone())
            .map_err(|_| unavailable("not_ready", "the dispatcher is not answering"))?;
        if outcome == CancelOutcome::Signalled {
            let body = json!({ "id": id.to_string(), "status": "running", "cancel": "requested" });
            return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
        }
        let finish = Finish {
            status: TaskStatus::Cancelled,
            result: None,
            error: Some("cancelled by client".into()),
            node: record.node,
            // The token read with the record: a claim or reassign between that read and
            // this write bumps it, so the write is refused and the client retries.
            lease: record.lease,
            attempts: record.attempts,
            started_at_ms: record.started_at_ms,
            finished_at_ms: now_ms(),
        };
        match self.ctx.store.finish(id, finish).await {
            Ok(Transition::Applied) => {
                self.ctx.notifier.notify(id);
                self.ctx
                    .metrics
                    .completed
                    .with_label_values(&[record.spec.kind.as_str(), "cancelled"])
                    .inc();
                let body = json!({ "id": id.to_string(), "status": "cancelled" });
                Ok((StatusCode::OK, Json(body)).into_response())
            }
            Ok(Transition::Rejected(status)) => Err(terminal(status)),
            // Claimed or reassigned between the read and the write: the dispatcher was
            // asked about the old holder, so retrying here could cancel a task the new
            // holder is running without signalling it. The client retries the DELETE,
            // which asks about the new holder.
            Ok(Transition::NotHolder(_)) => Err(ApiError::Conflict(
                "holder_changed",
                "the task moved to another node while it was being cancelled; retry".into(),
            )),
            Ok(Transition::NotFound) => Err(ApiError::NotFound(format!("no task with id {id}"))),
            Err(e) => Err(unavailable(
                "store_unavailable",
                format!("task store error: {e}"),
            )),
        }
    }
}
