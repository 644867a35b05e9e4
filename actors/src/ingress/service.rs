//! What the HTTP handlers do once a request is parsed: validation, the
//! admit → store → place sequence of a submission, reads and cancellation.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ractor::ActorRef;
use serde_json::json;
use taskmesh_kernels::KernelError;
use taskmesh_kernels::task::{TaskId, TaskSpec, TaskStatus};
use tracing::Instrument;

use super::IngressState;
use super::dto::SubmitTask;
use super::error::ApiError;
use crate::auth::middleware::Caller;
use crate::auth::owner::{self, Access};
use crate::dispatcher::policy::{Need, PlaceError};
use crate::dispatcher::{self, Demand, DispatcherMessage};
use crate::handoff::{CancelOutcome, Job};
use crate::store::{Created, StoreError, Transition};
use crate::task::{Finish, NewTask, TaskRecord, now_ms};

#[cfg(test)]
mod tests;

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
            .map_or_else(|| "{}".to_owned(), |p| String::from(Box::<str>::from(p)));
        if params.len() > limits.max_params_bytes {
            return Err(ApiError::TooLarge(format!(
                "`params` is {} bytes; the limit is {}",
                params.len(),
                limits.max_params_bytes
            )));
        }
        match self.ctx.kernels.validate(&task.kind, &params) {
            Ok(()) => {}
            // In a cluster, a kind this node lacks may run on a peer: its params are
            // checked here only as a JSON object (the node that runs the task validates
            // them), and placement answers whether any node has the kind.
            Err(KernelError::UnknownKind { .. }) if self.ctx.cluster.is_some() => {
                if !params.trim_start().starts_with('{') {
                    return Err(ApiError::Unprocessable(
                        "invalid_params",
                        "`params` must be a JSON object".into(),
                    ));
                }
            }
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
            submitted_by: None,
        })
    }

    /// Admits, durably stores and places tasks. Returns once every record is durable.
    ///
    /// The work runs in a task of its own: hyper drops a handler's future when its client
    /// hangs up, and stopping between admission and placement would leak the reserved
    /// room and leave a stored task that no pool runs.
    pub async fn submit(&self, specs: Vec<TaskSpec>) -> Result<Vec<Created>, ApiError> {
        let this = self.clone();
        // In the request's span, so what it logs carries the request id.
        let work = async move { this.admit_store_place(specs).await };
        tokio::spawn(work.instrument(tracing::Span::current()))
            .await
            .map_err(|e| ApiError::Internal(format!("submission task failed: {e}")))?
    }

    async fn admit_store_place(&self, specs: Vec<TaskSpec>) -> Result<Vec<Created>, ApiError> {
        let names = &self.ctx.names;
        let dispatcher = ActorRef::<DispatcherMessage>::where_is(names.dispatcher.clone())
            .ok_or_else(|| unavailable("not_ready", "the dispatcher is restarting"))?;
        let needs: Vec<Need<'_>> = specs.iter().map(Need::of).collect();
        // Admitted here when the peers cannot change the answer; else the dispatcher,
        // which knows their pools, decides (and needs its own copy of the demands).
        let admitted = match dispatcher::admit_here(&self.ctx, &needs) {
            Some(admitted) => admitted,
            None => {
                let demands: Vec<Demand> = needs.iter().copied().map(Demand::from).collect();
                ractor::call_t!(
                    dispatcher,
                    |reply| DispatcherMessage::Admit { demands, reply },
                    2000
                )
                .map_err(|_| unavailable("not_ready", "the dispatcher is not answering"))?
            }
        };
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
            Err(e @ PlaceError::UnknownKind(_)) => {
                return Err(ApiError::Unprocessable("unknown_kind", e.to_string()));
            }
            Err(e @ PlaceError::KindUnavailable(_)) => {
                self.ctx
                    .metrics
                    .rejected
                    .with_label_values(&["kind_unavailable"])
                    .inc();
                return Err(unavailable("kind_unavailable", e.to_string()));
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
                spec: Arc::new(spec),
                created_at_ms,
                node: Some(target.clone()),
            })
            .collect();
        let created = match self.create_resolved(&tasks).await {
            Ok(c) => c,
            Err(e) => {
                self.ctx
                    .metrics
                    .rejected
                    .with_label_values(&["store"])
                    .inc();
                let jobs = (0..reservation.len()).map(|_| None).collect();
                dispatcher::place(&self.ctx, &dispatcher, reservation, jobs);
                return Err(e);
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
                    Some(Job::new(*id, task.spec))
                }
                Created::Existing(_) => None,
            })
            .collect();
        dispatcher::place(&self.ctx, &dispatcher, reservation, jobs);
        Ok(created)
    }

    /// Creates `tasks` and does not answer until their fate is known.
    ///
    /// A failed `create` whose request may have reached the store (a timeout, a dropped
    /// connection) may still have written the tasks, so it is retried: creating an
    /// existing id writes nothing and answers [`Created::Existing`] with it, so the
    /// retry's answer tells which tasks are stored, and stores the ones that were not.
    /// Retries go on for at most [`RESOLVE_WITHIN`]. Answers:
    /// - the outcomes, as if the first call had answered (an id of ours that comes back
    ///   as `Existing` was written by the first call: it is new to the client);
    /// - `503 store_unavailable` when nothing can have been written (the store refused
    ///   the connection or is closed);
    /// - `503 outcome_unknown` with the ids when no retry was answered in time.
    async fn create_resolved(&self, tasks: &[NewTask]) -> Result<Vec<Created>, ApiError> {
        let first = match self.ctx.store.create(tasks.to_vec()).await {
            Ok(created) => return Ok(created),
            Err(e) => e,
        };
        self.count_store_error("create", &first);
        if first.nothing_written() {
            return Err(ApiError::store_unavailable());
        }
        let deadline = tokio::time::Instant::now() + RESOLVE_WITHIN;
        let mut pause = Duration::from_millis(50);
        loop {
            tokio::time::sleep(pause).await;
            let retry = tokio::time::timeout_at(deadline, self.ctx.store.create(tasks.to_vec()));
            match retry.await {
                Ok(Ok(created)) => {
                    tracing::info!(
                        tasks = tasks.len(),
                        "submission resolved after a store error"
                    );
                    return Ok(resolved(tasks, created));
                }
                Ok(Err(e)) => self.count_store_error("create", &e),
                Err(_) => break,
            };
            pause = (pause * 2).min(Duration::from_millis(500));
            if tokio::time::Instant::now() + pause >= deadline {
                break;
            }
        }
        let ids: Vec<String> = tasks.iter().map(|t| t.id.to_string()).collect();
        tracing::warn!(
            ?ids,
            "the store did not confirm a submission; its outcome is unknown"
        );
        Err(ApiError::OutcomeUnknown(ids))
    }

    /// Counts a failed store call and logs its detail; the client gets a plain 503.
    pub fn store_failed(&self, operation: &'static str, error: &StoreError) -> ApiError {
        self.count_store_error(operation, error);
        ApiError::store_unavailable()
    }

    /// Counts a failed store call and logs its detail (never shown to a client).
    fn count_store_error(&self, operation: &'static str, error: &StoreError) {
        self.ctx
            .metrics
            .store_errors
            .with_label_values(&[operation])
            .inc();
        tracing::warn!(operation, %error, "task store call failed");
    }

    /// The task's record, or `None`.
    pub async fn get_record(&self, id: &TaskId) -> Result<Option<TaskRecord>, ApiError> {
        self.ctx
            .store
            .get(id)
            .await
            .map_err(|e| self.store_failed("get", &e))
    }

    /// The task's record, or 404.
    pub async fn require_record(&self, id: &TaskId) -> Result<TaskRecord, ApiError> {
        self.get_record(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no task with id {id}")))
    }

    /// The task's record if `caller` may see it, else 404 as if there were none (see
    /// [`crate::auth::owner`]), with what the caller may do with it.
    pub async fn visible_record(
        &self,
        id: &TaskId,
        caller: Option<&Caller>,
    ) -> Result<(TaskRecord, Access), ApiError> {
        let record = self.require_record(id).await?;
        match owner::access(caller, &record.spec) {
            Access::Hidden => Err(ApiError::NotFound(format!("no task with id {id}"))),
            access => Ok((record, access)),
        }
    }

    /// The task's record once it is terminal, or after `wait` (404 if there is none, or
    /// if `caller` may not see it).
    ///
    /// A completion on this node wakes the wait at once through the notifier. A task
    /// held by a peer finishes there, so its record is read again every [`REMOTE_POLL`].
    /// A task held here is read again every [`HOLDER_POLL`] too: it can move away (a
    /// peer claims it when this node's lease lapses, or it is reassigned) and finish
    /// where no local notification is sent.
    pub async fn wait_terminal(
        &self,
        id: &TaskId,
        wait: Duration,
        caller: Option<&Caller>,
    ) -> Result<TaskRecord, ApiError> {
        let (record, _) = self.visible_record(id, caller).await?;
        if record.status.is_terminal() || wait.is_zero() {
            return Ok(record);
        }
        // Subscribe first, then re-read, so a completion between the two is not missed.
        let mut done = self.ctx.notifier.subscribe(id);
        let mut record = self.require_record(id).await?;
        let deadline = tokio::time::Instant::now() + wait;
        while !record.status.is_terminal() && tokio::time::Instant::now() < deadline {
            let held_here = record.node.as_deref() == Some(&*self.ctx.node_id);
            let slice = if held_here { HOLDER_POLL } else { REMOTE_POLL };
            let until = deadline.min(tokio::time::Instant::now() + slice);
            if tokio::time::timeout_at(until, &mut done).await.is_ok() {
                done = self.ctx.notifier.subscribe(id);
            }
            record = self.require_record(id).await?;
        }
        Ok(record)
    }

    /// `DELETE /v1/tasks/{id}` by `caller`: 404 for a task it may not see, 403 for one
    /// it may only read.
    pub async fn cancel(&self, id: &TaskId, caller: Option<&Caller>) -> Result<Response, ApiError> {
        let (record, access) = self.visible_record(id, caller).await?;
        if access != Access::Full {
            return Err(ApiError::Forbidden);
        }
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
        let outcome = ractor::call_t!(dispatcher, DispatcherMessage::Cancel, 6000, *id)
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
            // The token read with the record: a claim, reassign or retry's requeue
            // between that read and this write bumps it, so the write is refused and the
            // client retries.
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
            // Claimed, reassigned or requeued for a retry between the read and the
            // write: the dispatcher was asked about the old holder (or attempt), so
            // retrying here could cancel a task the new holder is running without
            // signalling it. The client retries the DELETE, which asks again.
            Ok(Transition::NotHolder(_)) => Err(ApiError::Conflict(
                "holder_changed",
                "the task moved to another node while it was being cancelled; retry".into(),
            )),
            Ok(Transition::NotFound) => Err(ApiError::NotFound(format!("no task with id {id}"))),
            Err(e) => Err(self.store_failed("finish", &e)),
        }
    }
}

/// How often a long-poll re-reads a task that runs on another node.
pub(super) const REMOTE_POLL: Duration = Duration::from_millis(100);

/// How often a long-poll re-reads a task this node holds, in case it moved away.
pub(super) const HOLDER_POLL: Duration = Duration::from_millis(500);

/// How long a submission whose store call failed keeps retrying to learn its outcome.
pub(super) const RESOLVE_WITHIN: Duration = Duration::from_secs(5);

/// The outcomes of a retried create, as the first call would have answered them: one of
/// our own ids answered as `Existing` was stored by an earlier try, so it is new.
fn resolved(tasks: &[NewTask], created: Vec<Created>) -> Vec<Created> {
    tasks
        .iter()
        .zip(created)
        .map(|(task, c)| match c {
            Created::Existing(id) if id == task.id => Created::New(id),
            other => other,
        })
        .collect()
}
