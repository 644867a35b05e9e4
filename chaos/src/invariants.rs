//! What must hold whatever the faults: every accepted task reaches exactly one terminal
//! state, visible through the API and the same in the store; no status goes backwards.
//!
//! The [`Watch`] samples the newest tasks through the API while the run goes on and
//! remembers what it saw of each; [`settle`] then reads every accepted task until it is
//! terminal or time runs out.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use taskmesh_actors::store::TaskStore;
use taskmesh_actors::store::redis::RedisStore;
use taskmesh_actors::testing::is_terminal;
use taskmesh_kernels::task::TaskId;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::client::Api;
use crate::workload::{Targets, lock, read};

/// What was last seen of one task.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    status: String,
    attempts: u64,
}

/// Every task seen so far and every backwards step among them.
#[derive(Debug, Default)]
pub struct History {
    seen: HashMap<String, Seen>,
    /// Human-readable descriptions of statuses that went backwards.
    pub regressions: Vec<String>,
}

impl History {
    /// Takes in one observation of a task record.
    pub fn observe(&mut self, record: &Value) {
        let (Some(id), Some(status)) = (record["id"].as_str(), record["status"].as_str()) else {
            return;
        };
        let now = Seen {
            status: status.to_owned(),
            attempts: record["attempts"].as_u64().unwrap_or(0),
        };
        if let Some(before) = self.seen.get(id) {
            if is_terminal(&before.status) && before.status != now.status {
                self.regressions.push(format!(
                    "{id}: {} then {} (a terminal status changed)",
                    before.status, now.status
                ));
            }
            if now.attempts < before.attempts {
                self.regressions.push(format!(
                    "{id}: attempts went from {} to {}",
                    before.attempts, now.attempts
                ));
            }
            if is_terminal(&before.status) {
                return; // keep the first terminal status seen
            }
        }
        self.seen.insert(id.to_owned(), now);
    }
}

/// Samples recent tasks every half second while the run goes on.
pub struct Watch {
    history: Arc<Mutex<History>>,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl Watch {
    /// Starts sampling through whichever target answers.
    pub fn start(api: Api, targets: Targets, history: Arc<Mutex<History>>) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let shared = Arc::clone(&history);
        let handle = tokio::spawn(async move {
            let mut n = 0usize;
            loop {
                let urls: Vec<String> = read(&targets).iter().map(|(_, u)| u.clone()).collect();
                if !urls.is_empty() {
                    n += 1;
                    let url = &urls[n % urls.len()];
                    if let Ok(records) = api.recent(url, 1000).await {
                        let mut history = lock(&shared);
                        records.iter().for_each(|r| history.observe(r));
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stopped.changed() => return,
                }
            }
        });
        Self {
            history,
            stop,
            handle,
        }
    }

    /// Stops sampling and hands back what was seen.
    pub async fn stop(self) -> Arc<Mutex<History>> {
        self.stop.send_replace(true);
        let _ = self.handle.await;
        self.history
    }
}

/// The final state of the accepted tasks.
#[derive(Debug, Default, Serialize)]
pub struct Settled {
    /// Count per final status read through the API (non-terminal ones included).
    pub by_status: BTreeMap<String, u64>,
    /// Tasks still not terminal when time ran out.
    pub not_terminal: Vec<String>,
    /// Tasks no node knows (404).
    pub missing: Vec<String>,
    /// Tasks that ran more than once (attempts > 1).
    pub re_executed: u64,
    /// The largest attempt count.
    pub max_attempts: u64,
    /// Tasks whose store record disagrees with the API, or is absent.
    pub store_mismatches: Vec<String>,
    /// Tasks answered `503 outcome_unknown` that were found stored, and so checked
    /// here like accepted ones.
    pub unknown_stored: usize,
    /// Whether the store itself was read.
    pub store_checked: bool,
    /// Checks that could not be made (the store unreadable, a node's metrics not
    /// scraped): each fails the run, which proves nothing either way.
    pub unchecked: Vec<String>,
    /// Each task's record as last read, by id (not in the report).
    #[serde(skip)]
    pub records: HashMap<String, Value>,
}

/// Reads every task in `ids` through the API until all are terminal or `within` passes.
pub async fn settle(
    api: &Api,
    targets: &Targets,
    ids: &[String],
    within: Duration,
    history: &Mutex<History>,
) -> Settled {
    let deadline = tokio::time::Instant::now() + within;
    let mut pending: Vec<String> = ids.to_vec();
    let mut records: HashMap<String, Value> = HashMap::new();
    let mut missing: HashSet<String> = HashSet::new();
    let limit = Arc::new(Semaphore::new(32));
    loop {
        let urls: Vec<String> = read(targets).iter().map(|(_, u)| u.clone()).collect();
        if urls.is_empty() {
            break;
        }
        let mut reads = JoinSet::new();
        for (n, id) in pending.iter().enumerate() {
            let (api, url, id, limit) = (
                api.clone(),
                urls[n % urls.len()].clone(),
                id.clone(),
                Arc::clone(&limit),
            );
            reads.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let got = api.task(&url, &id).await;
                (id, got)
            });
        }
        while let Some(Ok((id, got))) = reads.join_next().await {
            match got {
                Ok(Some(record)) => {
                    lock(history).observe(&record);
                    missing.remove(&id);
                    records.insert(id, record);
                }
                Ok(None) => {
                    missing.insert(id);
                }
                Err(_) => {} // that node did not answer; another one is asked next round
            }
        }
        pending.retain(|id| {
            records
                .get(id)
                .and_then(|r| r["status"].as_str())
                .is_none_or(|s| !is_terminal(s))
        });
        if pending.is_empty() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut settled = Settled::default();
    for id in ids {
        match records.get(id) {
            Some(record) => {
                let status = record["status"].as_str().unwrap_or("?").to_owned();
                if !is_terminal(&status) {
                    settled.not_terminal.push(id.clone());
                }
                *settled.by_status.entry(status).or_default() += 1;
                let attempts = record["attempts"].as_u64().unwrap_or(0);
                settled.re_executed += u64::from(attempts > 1);
                settled.max_attempts = settled.max_attempts.max(attempts);
            }
            None if missing.contains(id) => settled.missing.push(id.clone()),
            None => settled.not_terminal.push(id.clone()),
        }
    }
    settled.records = records;
    settled
}

/// Which of `ids` (tasks of submissions answered `503 outcome_unknown`) were stored: each
/// is read until a node answers 200 or 404. An id no node answered for within `within`
/// is kept, so that [`settle`] checks it rather than the run passing without knowing.
pub async fn stored(api: &Api, targets: &Targets, ids: &[String], within: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + within;
    let mut pending: Vec<String> = ids.to_vec();
    let mut found = Vec::new();
    while !pending.is_empty() && tokio::time::Instant::now() < deadline {
        let urls: Vec<String> = read(targets).iter().map(|(_, u)| u.clone()).collect();
        if urls.is_empty() {
            break;
        }
        let mut unanswered = Vec::new();
        for (n, id) in pending.into_iter().enumerate() {
            match api.task(&urls[n % urls.len()], &id).await {
                Ok(Some(_)) => found.push(id),
                Ok(None) => {} // never stored: the 503 was a refusal after all
                Err(_) => unanswered.push(id),
            }
        }
        pending = unanswered;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    found.extend(pending);
    found
}

/// Compares every settled record with the store's own (Redis) record.
pub async fn check_store(url: &str, settled: &mut Settled) -> anyhow::Result<()> {
    let store = RedisStore::connect(url).await?;
    let mut mismatches = Vec::new();
    for (id, record) in &settled.records {
        let api_status = record["status"].as_str().unwrap_or("?");
        let task_id: TaskId = id.parse().map_err(|e| anyhow::anyhow!("id {id}: {e:?}"))?;
        match store.get(&task_id).await? {
            Some(stored) if stored.status.as_str() == api_status => {}
            Some(stored) => mismatches.push(format!(
                "{id}: the API says {api_status}, the store {}",
                stored.status.as_str()
            )),
            None => mismatches.push(format!("{id}: not in the store")),
        }
    }
    settled.store_mismatches = mismatches;
    settled.store_checked = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::History;

    #[test]
    fn terminal_statuses_never_change_and_attempts_never_shrink() {
        let mut h = History::default();
        h.observe(&json!({"id": "a", "status": "queued", "attempts": 0}));
        h.observe(&json!({"id": "a", "status": "running", "attempts": 1}));
        // A claimed task goes back to queued: allowed.
        h.observe(&json!({"id": "a", "status": "queued", "attempts": 1}));
        h.observe(&json!({"id": "a", "status": "succeeded", "attempts": 2}));
        h.observe(&json!({"id": "a", "status": "succeeded", "attempts": 2}));
        assert!(h.regressions.is_empty(), "{:?}", h.regressions);

        h.observe(&json!({"id": "a", "status": "failed", "attempts": 2}));
        h.observe(&json!({"id": "b", "status": "running", "attempts": 2}));
        h.observe(&json!({"id": "b", "status": "running", "attempts": 1}));
        assert_eq!(h.regressions.len(), 2, "{:?}", h.regressions);
    }
}
