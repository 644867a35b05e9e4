//! The few HTTP calls the runner makes to nodes, each with a short timeout so a paused or
//! partitioned node slows nothing down.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use std::sync::Arc;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::Value;
use taskmesh_actors::auth::key::ApiKey;
use taskmesh_actors::testing::metric_sum;

/// What became of one submission.
#[derive(Debug)]
pub enum Submitted {
    /// 202: accepted, with the new ids.
    Accepted(Vec<String>),
    /// A documented refusal (503 with a code, e.g. `saturated`, `store_unavailable`).
    Refused(String),
    /// 503 `outcome_unknown`: the store failed during the write and the node could not
    /// tell whether the tasks were stored; the ids they were given.
    Unknown(Vec<String>),
    /// A 5xx that is not a documented 503: a bug.
    ServerError(u16, String),
    /// Any other answer (a 4xx): the workload itself is wrong.
    Rejected(u16, String),
    /// No answer: the node is dead, paused or cut off.
    Unreachable,
}

/// An HTTP client for the nodes. It holds the run's admin key, made fresh by
/// [`Api::new`]: the backends give it to every node as `TASKMESH_ADMIN_KEY`, and every
/// request sends it.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    admin_key: Arc<str>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

impl Api {
    /// A client whose every request gives up after `timeout`, with a fresh admin key.
    pub fn new(timeout: Duration) -> anyhow::Result<Self> {
        let admin_key: Arc<str> = ApiKey::generate().expose().into();
        let mut auth = HeaderValue::from_str(&format!("Bearer {admin_key}"))?;
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(32)
            .default_headers(HeaderMap::from_iter([(AUTHORIZATION, auth)]))
            .build()?;
        Ok(Self { http, admin_key })
    }

    /// The run's admin key, for the nodes' `TASKMESH_ADMIN_KEY`.
    pub fn admin_key(&self) -> &str {
        &self.admin_key
    }

    /// Whether `/health/ready` answers 200.
    pub async fn ready(&self, url: &str) -> bool {
        self.http
            .get(format!("{url}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    }

    async fn json(&self, url: String) -> anyhow::Result<(StatusCode, Value)> {
        let response = self.http.get(&url).send().await?;
        let status = response.status();
        let body = response
            .json()
            .await
            .with_context(|| format!("body of {url}"))?;
        Ok((status, body))
    }

    /// The node's own id, from `GET /v1/cluster`.
    pub async fn node_id(&self, url: &str) -> anyhow::Result<String> {
        let (_, view) = self.json(format!("{url}/v1/cluster")).await?;
        view["node"]["id"]
            .as_str()
            .map(str::to_owned)
            .context("no node.id in /v1/cluster")
    }

    /// Each peer's state (`up`, `suspect`, `down`, ...) as the node sees it, by id.
    pub async fn peer_states(&self, url: &str) -> anyhow::Result<HashMap<String, String>> {
        let (_, view) = self.json(format!("{url}/v1/cluster")).await?;
        let peers = view["peers"]
            .as_array()
            .context("no peers in /v1/cluster")?;
        Ok(peers
            .iter()
            .filter_map(|p| {
                Some((
                    p["id"].as_str()?.to_owned(),
                    p["state"].as_str()?.to_owned(),
                ))
            })
            .collect())
    }

    /// A task record, or `None` when the node answers 404.
    pub async fn task(&self, url: &str, id: &str) -> anyhow::Result<Option<Value>> {
        let (status, body) = self.json(format!("{url}/v1/tasks/{id}")).await?;
        match status {
            StatusCode::OK => Ok(Some(body)),
            StatusCode::NOT_FOUND => Ok(None),
            other => bail!("GET task {id}: {other}"),
        }
    }

    /// The newest `limit` task records.
    pub async fn recent(&self, url: &str, limit: usize) -> anyhow::Result<Vec<Value>> {
        let (_, body) = self.json(format!("{url}/v1/tasks?limit={limit}")).await?;
        match body {
            Value::Object(mut o) => match o.remove("tasks") {
                Some(Value::Array(tasks)) => Ok(tasks),
                _ => bail!("no tasks in the list answer"),
            },
            _ => bail!("the list answer is not an object"),
        }
    }

    /// The sum of every sample of metric `name` (all label sets).
    pub async fn metric_sum(&self, url: &str, name: &str) -> anyhow::Result<f64> {
        let text = self
            .http
            .get(format!("{url}/metrics"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        // A page without the metric (a proxy's error page, a metric renamed) is a scrape
        // that failed, not a zero.
        if !exposes(&text, name) {
            anyhow::bail!("{url}/metrics has no sample of {name}");
        }
        Ok(metric_sum(&text, name))
    }

    /// Posts one task (`POST /v1/tasks`) or a batch (`POST /v1/tasks/batch`).
    pub async fn submit(&self, url: &str, tasks: &[Value]) -> Submitted {
        let (path, body) = match tasks {
            [one] => ("/v1/tasks", one.clone()),
            many => ("/v1/tasks/batch", serde_json::json!({ "tasks": many })),
        };
        let Ok(response) = self
            .http
            .post(format!("{url}{path}"))
            .json(&body)
            .send()
            .await
        else {
            return Submitted::Unreachable;
        };
        let status = response.status();
        let body = match response.json::<Value>().await {
            Ok(body) => body,
            // The node died between the headers and the body: the ids are unknown.
            Err(_) if status == StatusCode::ACCEPTED => return Submitted::Unreachable,
            // Any other answer stands on its status (a 4xx is not a reason to try
            // another node).
            Err(_) => Value::Null,
        };
        let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
        match status {
            StatusCode::ACCEPTED => Submitted::Accepted(ids(&body)),
            StatusCode::SERVICE_UNAVAILABLE if code == "outcome_unknown" => {
                Submitted::Unknown(ids(&body["error"]))
            }
            StatusCode::SERVICE_UNAVAILABLE if !code.is_empty() => Submitted::Refused(code),
            s if s.is_server_error() => Submitted::ServerError(s.as_u16(), code),
            s => Submitted::Rejected(s.as_u16(), code),
        }
    }
}

/// The ids in an answer: `id` (one task) or `ids` (a batch).
fn ids(body: &Value) -> Vec<String> {
    match (&body["id"], &body["ids"]) {
        (Value::String(id), _) => vec![id.clone()],
        (_, Value::Array(ids)) => ids
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether the Prometheus text has at least one sample of `name`.
fn exposes(text: &str, name: &str) -> bool {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .any(|(series, _)| series.split_once('{').map_or(series, |(n, _)| n) == name)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn ids_come_from_a_single_answer_a_batch_answer_or_an_outcome_unknown_error() {
        assert_eq!(super::ids(&json!({"id": "a"})), ["a"]);
        assert_eq!(super::ids(&json!({"ids": ["a", "b"]})), ["a", "b"]);
        let unknown = json!({"error": {"code": "outcome_unknown", "ids": ["c"]}});
        assert_eq!(super::ids(&unknown["error"]), ["c"]);
        assert!(super::ids(&json!({"error": {"code": "saturated"}})).is_empty());
    }

    #[test]
    fn a_page_exposes_a_metric_only_with_a_sample_of_that_exact_name() {
        let text =
            "# HELP x\nx_total{a=\"1\"} 2\nx_total{a=\"2\"} 3\nx_total_more 100\nx_total 1\n";
        assert!(super::exposes(text, "x_total"));
        assert!(super::exposes(text, "x_total_more"));
        assert!(!super::exposes(text, "absent"));
        assert!(!super::exposes("<html>502 Bad Gateway</html>", "x_total"));
        assert!(!super::exposes("# HELP x_total\n", "x_total"));
    }
}
