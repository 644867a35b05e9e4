//! The task SDK seen from outside: progress reported by a running kernel, and a node
//! built as a library with a kind of its own (`node/examples/custom_kernel.rs`).

use std::time::Duration;

use integration_tests::{ONE_WORKER, TestNode, eventually};
use serde_json::{Value, json};

/// Deadline of any single wait in these tests (generous: CI machines are slow).
const WITHIN: Duration = Duration::from_secs(60);

/// The progress of `id` once it reported a fraction above `above`.
async fn progress_above(node: &TestNode, id: &str, above: f64) -> anyhow::Result<Value> {
    eventually(
        WITHIN,
        &format!("progress of {id} above {above}"),
        async || {
            let view = node.task(id).await?;
            let progress = view.get("progress").filter(|p| {
                p["fraction"]
                    .as_f64()
                    .is_some_and(|fraction| fraction > above)
            });
            Ok(progress.cloned())
        },
    )
    .await
}

#[tokio::test]
async fn a_running_task_shows_its_latest_progress() -> anyhow::Result<()> {
    let node = TestNode::start_temp(ONE_WORKER).await?;
    let quiet = node.submit(&json!({ "kind": "noop" })).await?;
    let view = node.wait_terminal(&quiet, WITHIN).await?;
    assert_eq!(view.get("progress"), None, "absent until reported: {view}");

    let sleeper = node
        .submit(&json!({ "kind": "sleep", "params": { "ms": 600_000 } }))
        .await?;
    let first = progress_above(&node, &sleeper, 0.0).await?;
    let message = first["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("slept ") && message.ends_with(" ms of 600000"),
        "{first}"
    );
    let fraction = first["fraction"].as_f64().unwrap_or_default();
    let later = progress_above(&node, &sleeper, fraction).await?;
    assert_ne!(later["message"], first["message"], "it moves on");

    let answer = node.delete(&format!("/v1/tasks/{sleeper}")).await?;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let view = node.wait_terminal(&sleeper, WITHIN).await?;
    assert_eq!(view["status"], "cancelled");
    Ok(())
}
