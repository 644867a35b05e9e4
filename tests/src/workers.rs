//! An HTTP worker of external kinds spoken by the test itself, call by call, to check
//! the worker API's contract (the Python client's own process tests are apart).

use anyhow::{Context, ensure};
use serde_json::{Value, json};

use crate::{Answer, TestNode};

/// A worker registered on one node.
#[derive(Debug, Clone)]
pub struct HttpWorker {
    /// Its id.
    pub id: String,
    /// The node's lease period.
    pub lease_ms: u64,
}

/// One leased task, as a poll answered it.
#[derive(Debug, Clone)]
pub struct Leased {
    /// The task's id.
    pub id: String,
    /// The attempt's token.
    pub token: String,
    /// The attempt number.
    pub attempt: u64,
    /// The whole entry.
    pub view: Value,
}

impl HttpWorker {
    /// Registers a worker for `kinds` with `slots` on `node`.
    pub async fn register(node: &TestNode, kinds: &[&str], slots: usize) -> anyhow::Result<Self> {
        let body = json!({ "name": "test-worker", "kinds": kinds, "slots": slots });
        let answer = node.post("/v1/workers", &body).await?;
        ensure!(
            answer.status == 201,
            "register answered {} {}",
            answer.status,
            answer.body
        );
        Ok(Self {
            id: answer.body["worker_id"]
                .as_str()
                .context("no worker_id")?
                .to_owned(),
            lease_ms: answer.body["lease_ms"].as_u64().context("no lease_ms")?,
        })
    }

    /// Polls for up to `max` tasks, waiting up to `wait_ms`; the raw answer.
    pub async fn poll_raw(
        &self,
        node: &TestNode,
        max: usize,
        wait_ms: u64,
    ) -> anyhow::Result<Answer> {
        let path = format!("/v1/workers/{}/poll", self.id);
        node.post(&path, &json!({ "max": max, "wait_ms": wait_ms }))
            .await
    }

    /// Polls for up to `max` tasks, waiting up to `wait_ms`.
    pub async fn poll(
        &self,
        node: &TestNode,
        max: usize,
        wait_ms: u64,
    ) -> anyhow::Result<Vec<Leased>> {
        let answer = self.poll_raw(node, max, wait_ms).await?;
        ensure!(
            answer.status == 200,
            "poll answered {} {}",
            answer.status,
            answer.body
        );
        let tasks = answer.body["tasks"].as_array().context("no tasks")?;
        tasks
            .iter()
            .map(|t| {
                Ok(Leased {
                    id: t["id"].as_str().context("no id")?.to_owned(),
                    token: t["token"].as_str().context("no token")?.to_owned(),
                    attempt: t["attempt"].as_u64().context("no attempt")?,
                    view: t.clone(),
                })
            })
            .collect()
    }

    /// Polls until one task is leased (each poll waits up to 10 s).
    pub async fn lease_one(&self, node: &TestNode) -> anyhow::Result<Leased> {
        for _ in 0..6 {
            if let Some(task) = self.poll(node, 1, 10_000).await?.into_iter().next() {
                return Ok(task);
            }
        }
        anyhow::bail!("no task leased within a minute")
    }

    /// Heartbeats `tokens` (with `progress` per token); the state of each, in order.
    pub async fn heartbeat(
        &self,
        node: &TestNode,
        tokens: &[&str],
        progress: Value,
    ) -> anyhow::Result<Vec<String>> {
        let path = format!("/v1/workers/{}/heartbeat", self.id);
        let answer = node
            .post(&path, &json!({ "tokens": tokens, "progress": progress }))
            .await?;
        ensure!(
            answer.status == 200,
            "heartbeat answered {} {}",
            answer.status,
            answer.body
        );
        let leases = answer.body["leases"].as_array().context("no leases")?;
        Ok(leases
            .iter()
            .map(|l| l["state"].as_str().unwrap_or_default().to_owned())
            .collect())
    }
}

/// `POST /v1/tasks/{id}/complete` with `token` and `result`.
pub async fn complete(
    node: &TestNode,
    id: &str,
    token: &str,
    result: Value,
) -> anyhow::Result<Answer> {
    let body = json!({ "token": token, "result": result });
    node.post(&format!("/v1/tasks/{id}/complete"), &body).await
}

/// `POST /v1/tasks/{id}/fail` with `token` and an error.
pub async fn fail(
    node: &TestNode,
    id: &str,
    token: &str,
    message: &str,
    retryable: bool,
) -> anyhow::Result<Answer> {
    let body = json!({ "token": token, "error": { "message": message, "retryable": retryable } });
    node.post(&format!("/v1/tasks/{id}/fail"), &body).await
}
