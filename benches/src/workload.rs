//! What is sent (request bodies, built once) and what is read back (ids, task states).

use anyhow::Context;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use taskmesh_kernels::task::TaskStatus;
use uuid::Uuid;

/// The submissions of a run: one task spec, sent alone or in batches.
#[derive(Clone, Debug)]
pub struct Workload {
    batch: usize,
    task: Value,
    full: Bytes,
    single: Bytes,
}

impl Workload {
    /// Tasks of `kind` with `params` (JSON text), `batch` per request.
    pub fn new(
        kind: &str,
        params: &str,
        priority: Option<&str>,
        batch: usize,
    ) -> anyhow::Result<Self> {
        let params: Value = serde_json::from_str(params).context("--params is not JSON")?;
        let mut task = json!({ "kind": kind, "params": params });
        if let (Some(p), Some(fields)) = (priority, task.as_object_mut()) {
            fields.insert("priority".into(), Value::from(p));
        }
        let single = Bytes::from(serde_json::to_vec(&task)?);
        let mut workload = Self {
            batch: batch.max(1),
            task,
            full: Bytes::new(),
            single,
        };
        workload.full = workload.build(workload.batch)?;
        Ok(workload)
    }

    /// Tasks per request.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Where requests go: `/v1/tasks`, or `/v1/tasks/batch` when batching.
    pub fn path(&self) -> &'static str {
        if self.batch > 1 {
            "/v1/tasks/batch"
        } else {
            "/v1/tasks"
        }
    }

    /// The body of a request carrying `tasks` tasks (a full batch is built once and
    /// shared; only a shorter last batch is built on demand).
    pub fn body(&self, tasks: usize) -> anyhow::Result<Bytes> {
        if tasks == self.batch {
            Ok(self.full.clone())
        } else {
            self.build(tasks)
        }
    }

    /// The body of one `POST /v1/tasks`, whatever the batch size.
    pub fn single(&self) -> Bytes {
        self.single.clone()
    }

    fn build(&self, tasks: usize) -> anyhow::Result<Bytes> {
        if self.batch == 1 {
            return Ok(self.single.clone());
        }
        let body = json!({ "tasks": vec![&self.task; tasks] });
        Ok(Bytes::from(serde_json::to_vec(&body)?))
    }
}

#[derive(Deserialize)]
struct OneId<'a> {
    #[serde(borrow)]
    id: &'a str,
}

#[derive(Deserialize)]
struct ManyIds<'a> {
    #[serde(borrow)]
    ids: Vec<&'a str>,
}

/// Appends the ids of a `202` answer (single or batch) to `out`; returns how many.
pub fn accepted_ids(body: &[u8], batch: bool, out: &mut Vec<Uuid>) -> anyhow::Result<usize> {
    if batch {
        let answer: ManyIds<'_> = serde_json::from_slice(body)?;
        for id in &answer.ids {
            out.push(Uuid::try_parse(id)?);
        }
        Ok(answer.ids.len())
    } else {
        let answer: OneId<'_> = serde_json::from_slice(body)?;
        out.push(Uuid::try_parse(answer.id)?);
        Ok(1)
    }
}

/// The fields of `GET /v1/tasks/{id}` the generator reads.
#[derive(Debug, Deserialize)]
pub struct TaskState<'a> {
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    #[serde(borrow)]
    pub status: &'a str,
    /// RFC 3339 with milliseconds, once terminal.
    #[serde(borrow, default)]
    pub finished_at: Option<&'a str>,
}

impl TaskState<'_> {
    /// Whether the status is final ([`TaskStatus::is_terminal`]'s rule).
    pub fn is_terminal(&self) -> bool {
        self.status
            .parse::<TaskStatus>()
            .is_ok_and(TaskStatus::is_terminal)
    }

    /// `finished_at` in milliseconds since the Unix epoch.
    pub fn finished_at_ms(&self) -> Option<u64> {
        let at = humantime::parse_rfc3339(self.finished_at?).ok()?;
        let since = at.duration_since(std::time::UNIX_EPOCH).ok()?;
        u64::try_from(since.as_millis()).ok()
    }
}

/// `/v1/tasks/{id}`, with `?wait_ms=` when `wait_ms` is not zero.
pub fn task_path(id: &Uuid, wait_ms: u64) -> String {
    if wait_ms == 0 {
        format!("/v1/tasks/{id}")
    } else {
        format!("/v1/tasks/{id}?wait_ms={wait_ms}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_bodies_carry_the_task_n_times() {
        let w = Workload::new("noop", "{}", Some("high"), 3).expect("valid");
        assert_eq!(w.path(), "/v1/tasks/batch");
        let body: Value = serde_json::from_slice(&w.body(3).expect("body")).expect("json");
        assert_eq!(body["tasks"].as_array().map(Vec::len), Some(3));
        assert_eq!(body["tasks"][2]["priority"], "high");
        let short: Value = serde_json::from_slice(&w.body(2).expect("body")).expect("json");
        assert_eq!(short["tasks"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn single_bodies_are_one_task() {
        let w = Workload::new("echo", r#"{"value": 1}"#, None, 1).expect("valid");
        assert_eq!(w.path(), "/v1/tasks");
        let body: Value = serde_json::from_slice(&w.body(1).expect("body")).expect("json");
        assert_eq!(body, json!({"kind": "echo", "params": {"value": 1}}));
    }

    #[test]
    fn ids_are_read_from_single_and_batch_answers() {
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        let mut out = Vec::new();
        let single = format!(r#"{{"id":"{a}","status":"queued"}}"#);
        assert_eq!(
            accepted_ids(single.as_bytes(), false, &mut out).ok(),
            Some(1)
        );
        let batch = format!(r#"{{"ids":["{a}","{b}"]}}"#);
        assert_eq!(accepted_ids(batch.as_bytes(), true, &mut out).ok(), Some(2));
        assert_eq!(out, [a, a, b]);
        assert!(accepted_ids(b"{}", false, &mut out).is_err());
    }

    #[test]
    fn task_state_reads_status_and_finish_time() {
        let body = r#"{"id":"x","status":"succeeded","params":{},"finished_at":"1970-01-01T00:00:01.500Z"}"#;
        let state: TaskState<'_> = serde_json::from_str(body).expect("json");
        assert!(state.is_terminal());
        assert_eq!(state.finished_at_ms(), Some(1500));
        let queued: TaskState<'_> = serde_json::from_str(r#"{"status":"queued"}"#).expect("json");
        assert!(!queued.is_terminal());
        assert_eq!(queued.finished_at_ms(), None);
    }
}
