//! Smoke test of the load generator against a real node: tiny workloads in every mode
//! that talks to a node, checking the counts (never the timings: no test asserts a
//! wall-clock figure).

use clap::Parser;
use integration_tests::TestNode;
use taskmesh_benches::cli::Args;
use taskmesh_benches::report::Report;

async fn run(node: &TestNode, flags: &[&str]) -> Report {
    let target = node.url("");
    let pid = node.pid().expect("running").to_string();
    // Keys are on by default: the generator sends the node's admin key.
    let key = node.api_key().expect("the node wrote its admin key");
    let args = [
        "loadgen",
        "--target",
        &target,
        "--node-pid",
        &pid,
        "--api-key",
        key,
    ]
    .into_iter()
    .chain(flags.iter().copied());
    let args = Args::try_parse_from(args).expect("valid flags");
    let report = taskmesh_benches::run(&args).await.expect("run");
    let mut table = Vec::new();
    report.print(&mut table).expect("print");
    assert!(!table.is_empty());
    serde_json::to_string(&report).expect("report serializes");
    report
}

/// Every accepted task was read back terminal, and succeeded.
fn assert_all_done(report: &Report, tasks: u64) {
    let submit = report.submit.as_ref().expect("submit phase");
    assert_eq!(submit.tasks_accepted, tasks, "{submit:?}");
    assert_eq!(submit.statuses.get("202"), submit.requests, "{submit:?}");
    assert_eq!(submit.transport_errors.total(), 0, "{submit:?}");
    let done = report.completion.as_ref().expect("completion phase");
    assert_eq!(done.tally.checked, tasks, "{done:?}");
    assert_eq!(done.tally.succeeded, tasks, "{done:?}");
    assert!(done.e2e_tasks_per_s.is_some(), "{done:?}");
    assert_eq!(report.nodes.len(), 1);
}

#[tokio::test]
async fn loadgen_counts_match_against_a_real_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = TestNode::start(dir.path(), &[]).await.expect("node starts");

    let closed = run(&node, &["--connections", "8", "--tasks", "200"]).await;
    assert_all_done(&closed, 200);
    assert_eq!(closed.submit.as_ref().map(|s| s.connects), Some(8));

    let batched = run(&node, &["-c", "4", "--tasks", "205", "--batch", "50"]).await;
    assert_all_done(&batched, 205);
    assert_eq!(batched.submit.as_ref().map(|s| s.requests), Some(5));

    let open = [
        "--mode",
        "open",
        "--rate",
        "400",
        "-c",
        "8",
        "--tasks",
        "100",
        "--kind",
        "echo",
        "--params",
        r#"{"value": 1}"#,
    ];
    let open = run(&node, &open).await;
    assert_all_done(&open, 100);
    assert!(
        open.submit
            .as_ref()
            .is_some_and(|s| s.service_time_us.is_some())
    );

    let sampled = run(&node, &["-c", "4", "--tasks", "100", "--verify", "10"]).await;
    let done = sampled.completion.as_ref().expect("completion phase");
    assert_eq!(done.tally.checked, done.tally.succeeded);
    assert!((10..=14).contains(&done.tally.checked), "{done:?}");

    let rtt = run(&node, &["--mode", "rtt", "--tasks", "20", "--warmup", "2"]).await;
    let rtt = rtt.rtt.expect("rtt figures");
    assert_eq!(rtt.round_trip_us.count, 20);
    assert_eq!((rtt.not_terminal, rtt.errors.total()), (0, 0));
}
