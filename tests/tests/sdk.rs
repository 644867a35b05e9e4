//! The task SDK seen from outside: progress reported by a running kernel, a node built
//! as a library with a kind of its own (`node/examples/custom_kernel.rs`), and a cluster
//! where only some nodes have that kind.

use std::process::{Command, Stdio};
use std::time::Duration;

use integration_tests::cluster::{TestCluster, cluster_view};
use integration_tests::{ONE_WORKER, TestNode, eventually, example_bin};
use serde_json::{Value, json};
use taskmesh_actors::store::redis::testing::RedisServer;

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
        .submit(&json!({ "kind": "spin", "params": { "ms": 60_000 } }))
        .await?;
    let first = progress_above(&node, &sleeper, 0.0).await?;
    let message = first["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("spun ") && message.ends_with(" ms of 60000"),
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

#[tokio::test]
async fn a_node_built_as_a_library_runs_its_own_kind_next_to_the_built_in_ones()
-> anyhow::Result<()> {
    let node = TestNode::start_example("custom_kernel", &[]).await?;
    let id = node
        .submit(&json!({ "kind": "word_count", "params": { "text": "to be\nor not  to be" } }))
        .await?;
    let view = node.wait_terminal(&id, WITHIN).await?;
    assert_eq!(view["status"], "succeeded", "{view}");
    assert_eq!(view["result"], json!({ "words": 6 }));

    // The built-in kinds are still there, and the whole CLI (here `--test-kernels`).
    let echo = node
        .submit(&json!({ "kind": "echo", "params": { "value": 1 } }))
        .await?;
    assert_eq!(
        node.wait_terminal(&echo, WITHIN).await?["status"],
        "succeeded"
    );
    let flaky = node
        .submit(&json!({ "kind": "flaky", "params": { "fail_attempts": 0 } }))
        .await?;
    assert_eq!(
        node.wait_terminal(&flaky, WITHIN).await?["status"],
        "succeeded"
    );

    // Bad params are refused before anything is stored, naming the field.
    for (params, field) in [
        (json!({}), "text"),
        (json!({ "text": 3 }), "text"),
        (json!({ "text": "a", "txet": "b" }), "txet"),
    ] {
        let answer = node
            .post(
                "/v1/tasks",
                &json!({ "kind": "word_count", "params": params }),
            )
            .await?;
        assert_eq!(
            (answer.status, answer.error_code()),
            (422, "invalid_params"),
            "{params}: {:?}",
            answer.body
        );
        let message = answer.error_message();
        assert!(
            message.contains(&format!("field `{field}`")),
            "{params}: {message}"
        );
    }
    assert!(
        node.list("kind=word_count").await?.len() == 1,
        "only the valid task was stored"
    );
    Ok(())
}

#[test]
fn a_kind_registered_twice_stops_the_node_at_start_naming_the_kind() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let out = Command::new(example_bin("clashing_kind")?)
        .args(["node", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path().join("store"))
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("kind `echo` is registered twice"),
        "{stderr}"
    );
    assert!(
        !data.path().join("store").exists(),
        "nothing was opened before the check"
    );
    Ok(())
}

/// Whether `view` (of `GET /v1/cluster`) shows peer `id` in `state`.
fn peer_state_is(view: &Value, id: &str, state: &str) -> bool {
    view["peers"]
        .as_array()
        .is_some_and(|peers| peers.iter().any(|p| p["id"] == id && p["state"] == state))
}

#[tokio::test]
async fn in_a_cluster_a_kind_runs_only_on_the_nodes_that_have_it() -> anyhow::Result<()> {
    // n1 and n2 run the plain `taskmesh`; only n3, the custom_kernel example, has
    // word_count.
    let redis = RedisServer::start()?;
    let binaries = [None, None, Some("custom_kernel")];
    let mut cluster = TestCluster::start_binaries(redis, &binaries, &[]).await?;
    let view = cluster_view(&cluster.nodes[0]).await?;
    let n3 = view["peers"]
        .as_array()
        .and_then(|peers| peers.iter().find(|p| p["id"] == "n3"))
        .cloned()
        .unwrap_or_default();
    assert!(
        n3["kinds"]
            .as_array()
            .is_some_and(|k| k.contains(&json!("word_count")) && k.contains(&json!("noop"))),
        "n3 advertises its kinds: {view}"
    );

    // Submitted to nodes without it, word_count runs on n3 and succeeds; a batch that
    // mixes kinds puts each task where its kind runs.
    for node in &cluster.nodes[..2] {
        let id = node
            .submit(&json!({ "kind": "word_count", "params": { "text": "one two three" } }))
            .await?;
        let done = node.wait_terminal(&id, WITHIN).await?;
        assert_eq!(
            (&done["status"], &done["node"], &done["result"]),
            (&json!("succeeded"), &json!("n3"), &json!({ "words": 3 })),
            "{done}"
        );
    }
    let ids = cluster.nodes[1]
        .submit_batch(&[
            json!({ "kind": "word_count", "params": { "text": "a b" } }),
            json!({ "kind": "echo", "params": { "value": 1 } }),
        ])
        .await?;
    let counted = cluster.nodes[1].wait_terminal(&ids[0], WITHIN).await?;
    assert_eq!(
        (&counted["status"], &counted["node"]),
        (&json!("succeeded"), &json!("n3"))
    );
    let echoed = cluster.nodes[1].wait_terminal(&ids[1], WITHIN).await?;
    assert_eq!(echoed["status"], "succeeded", "{echoed}");

    // A node without the kind cannot check its params: it accepts a JSON object, and
    // the node that runs the task refuses bad ones (a permanent failure, naming the
    // field); what is not an object is refused at once.
    let bad = cluster.nodes[0]
        .submit(&json!({ "kind": "word_count", "params": { "text": 3 } }))
        .await?;
    let failed = cluster.nodes[0].wait_terminal(&bad, WITHIN).await?;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"].as_str().is_some_and(|e| e.contains("text")),
        "{failed}"
    );
    let answer = cluster.nodes[0]
        .post("/v1/tasks", &json!({ "kind": "word_count", "params": [1] }))
        .await?;
    assert_eq!(
        (answer.status, answer.error_code()),
        (422, "invalid_params")
    );

    // A kind no node has is refused by every node, naming it.
    for node in &cluster.nodes {
        let answer = node
            .post("/v1/tasks", &json!({ "kind": "pdf_render" }))
            .await?;
        assert_eq!(
            (answer.status, answer.error_code()),
            (422, "unknown_kind"),
            "{:?}",
            answer.body
        );
        assert!(
            answer.error_message().contains("pdf_render"),
            "{:?}",
            answer.body
        );
    }

    // With n3 gone, word_count waits for it: 503 with Retry-After, not 422; other
    // kinds still run.
    cluster.nodes[2].kill();
    let n1 = &cluster.nodes[0];
    eventually(WITHIN, "n1 sees n3 down", || async {
        let view = cluster_view(n1).await?;
        Ok(peer_state_is(&view, "n3", "down").then_some(()))
    })
    .await?;
    let answer = n1
        .post(
            "/v1/tasks",
            &json!({ "kind": "word_count", "params": { "text": "x" } }),
        )
        .await?;
    assert_eq!(
        (
            answer.status,
            answer.error_code(),
            answer.header("retry-after")
        ),
        (503, "kind_unavailable", Some("1")),
        "{:?}",
        answer.body
    );
    let echo = n1.submit(&json!({ "kind": "noop" })).await?;
    assert_eq!(
        n1.wait_terminal(&echo, WITHIN).await?["status"],
        "succeeded"
    );
    Ok(())
}
