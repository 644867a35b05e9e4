//! The shipped scenarios, run with the loopback backend: real `taskmesh` processes, a
//! real durable `redis-server`, real signals and cut links. Each test passes only when
//! the run's every invariant held; the reports land in `target/chaos-reports/`.

use std::path::PathBuf;

use chaos::backend::loopback::{Loopback, LoopbackConfig, sibling_binary};
use chaos::client::Api;
use chaos::report::Report;
use chaos::runner::{RunOptions, Runner};
use chaos::scenario::Scenario;

fn reports_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/chaos-reports")
}

async fn run(name: &str) -> Report {
    run_for(name, None).await
}

async fn run_for(name: &str, soak_secs: Option<f64>) -> Report {
    let scenario = Scenario::load(&chaos::scenarios_dir().join(format!("{name}.toml")))
        .expect("the shipped scenario parses");
    let work = tempfile::tempdir().expect("temp dir");
    let config = LoopbackConfig {
        bin: sibling_binary().expect("build taskmesh first (cargo build -p taskmesh-node)"),
        work_dir: work.path().to_owned(),
        node_args: Vec::new(),
    };
    let api = Api::new(std::time::Duration::from_secs(2)).expect("client");
    let options = RunOptions {
        seed: 1,
        soak_secs,
        settle_secs: 150.0,
    };
    let report = Runner::run(
        &scenario,
        Box::new(Loopback::new(config, api.clone())),
        &options,
    )
    .await
    .expect("the run is made");
    let (_, md) = report.write(&reports_dir()).expect("report written");
    let markdown = report.markdown();
    if !report.passed {
        // Keep the node logs of a failed run next to its report.
        let logs = reports_dir().join(format!("{name}-logs"));
        let _ = std::fs::create_dir_all(&logs);
        for entry in std::fs::read_dir(work.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::copy(entry.path(), logs.join(entry.file_name()));
        }
    }
    assert!(report.passed, "{}\n(report: {})", markdown, md.display());
    report
}

fn detected(report: &Report) -> u64 {
    let fault = report.faults.first().expect("a fault was made");
    fault.detection_ms.expect("its detection was measured")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_random() {
    let report = run("kill-random").await;
    eprintln!("kill detected after {} ms", detected(&report));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_the_submitter_with_2000_in_flight() {
    let report = run("kill-submitter").await;
    assert!(
        report.submissions.accepted >= 2000,
        "the burst was accepted"
    );
    eprintln!(
        "kill of the submitter detected after {} ms, backlog cleared after {:?} ms, {} re-executed",
        detected(&report),
        report.faults[0].recovery_ms,
        report.tasks.re_executed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_past_the_lease() {
    let report = run("pause-past-lease").await;
    eprintln!("pause detected after {} ms", detected(&report));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_from_peers() {
    let report = run("partition-peers").await;
    eprintln!("partition detected after {} ms", detected(&report));
    // The cut-off node keeps renewing its lease in Redis: nobody claims its tasks, so
    // nothing runs twice and no late completion is refused.
    assert_eq!(
        report.duplicate_completions,
        0.0,
        "late completions refused: {}",
        report.markdown()
    );
    assert_eq!(report.tasks.re_executed, 0, "{}", report.markdown());
    let succeeded = report
        .tasks
        .by_status
        .get("succeeded")
        .copied()
        .unwrap_or(0);
    assert_eq!(
        succeeded,
        report.submissions.accepted as u64,
        "every accepted task succeeded: {}",
        report.markdown()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_from_redis() {
    run("partition-redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_redis() {
    run("restart-redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart() {
    run("rolling-restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_3_5_2() {
    run("scale").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_seeded_soak() {
    let report = run_for("soak", Some(30.0)).await;
    assert!(report.faults.len() >= 2, "the schedule made several faults");
}
