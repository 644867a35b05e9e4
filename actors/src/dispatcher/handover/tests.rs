//! The pure parts of moving tasks: which claimed tasks run again, and where moved
//! tasks go.

use taskmesh_kernels::task::{TaskId, TaskStatus};

use super::*;
use crate::store::conformance::fixtures::spec;

fn record(error: Option<String>, attempts: u32, max_retries: u32) -> TaskRecord {
    let mut spec = spec("noop", None);
    spec.max_retries = max_retries;
    TaskRecord {
        id: TaskId::generate(),
        spec: spec.into(),
        status: TaskStatus::Queued,
        attempts,
        result: None,
        error,
        node: Some("here".into()),
        created_at_ms: 1,
        started_at_ms: None,
        finished_at_ms: None,
        lease: 1,
        progress: None,
    }
}

#[test]
fn a_claimed_task_whose_last_attempt_died_with_its_node_is_not_run_again() {
    let died = Some(crate::store::claimed_error("b"));
    let records = vec![
        record(died.clone(), 1, 0),         // its only attempt died: failed
        record(died.clone(), 1, 2),         // retries left: runs again
        record(None, 0, 0),                 // never started: runs
        record(Some("other".into()), 1, 0), // failed otherwise: runs (not ours to judge)
    ];
    let ids: Vec<TaskId> = records.iter().map(|r| r.id).collect();
    let (exhausted, alive) = lost_attempts("b", records);
    assert_eq!(exhausted.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[0]]);
    assert_eq!(alive.len(), 3);
}

fn view(node: &str, local: bool, queued: usize, workers: usize) -> PoolView {
    PoolView {
        node: node.into(),
        local,
        labels: vec![],
        kinds: Arc::from(["noop".to_owned()]),
        unserved: Arc::from([]),
        capacity: 4,
        queued,
        admitting: 0,
        running: 0,
        workers,
        available: true,
    }
}

#[test]
fn moved_tasks_avoid_their_old_holder_and_land_here_when_nothing_has_room() {
    let jobs = |n: usize| -> Vec<Job> {
        (0..n)
            .map(|_| Job::new(TaskId::generate(), spec("noop", None)))
            .collect()
    };
    // b refused them: they spread over a and c, never b.
    let views = vec![
        view("a", true, 0, 1),
        view("b", false, 0, 8),
        view("c", false, 0, 1),
    ];
    let moved = rehome(views.clone(), "b", "a", |_| true, jobs(6)).to;
    assert!(!moved.contains_key("b"), "{:?}", moved.keys());
    assert_eq!(moved.values().map(Vec::len).sum::<usize>(), 6);
    assert!(
        moved.get("c").is_some_and(|j| j.len() >= 2),
        "{:?}",
        moved.keys()
    );
    // No room anywhere but on b: accepted tasks still run, here.
    let full = vec![
        view("a", true, 4, 1),
        view("b", false, 0, 1),
        view("c", false, 4, 1),
    ];
    let moved = rehome(full, "b", "a", |_| true, jobs(3)).to;
    assert_eq!(moved.len(), 1);
    assert_eq!(moved.get("a").map(Vec::len), Some(3));
}

#[test]
fn moved_tasks_go_only_where_their_kind_runs_else_here_else_stay() {
    let jobs = |n: usize| -> Vec<Job> {
        (0..n)
            .map(|_| Job::new(TaskId::generate(), spec("word_count", None)))
            .collect()
    };
    let has = |kind: &str| kind == "word_count";
    let mut c = view("c", false, 3, 1);
    c.kinds = Arc::from(["noop".to_owned(), "word_count".to_owned()]);
    // Only c has the kind: it goes there, however busy, while it has room.
    let views = vec![view("a", true, 0, 4), view("b", false, 0, 4), c.clone()];
    let moves = rehome(views, "b", "a", has, jobs(1));
    assert_eq!(moves.to.keys().collect::<Vec<_>>(), ["c"]);
    assert!(moves.stay.is_empty());
    // c is down (or full): no available node has it. This node runs them if it has the
    // kind; if not, they stay with their holder.
    c.available = false;
    let views = vec![view("a", true, 0, 4), view("b", false, 0, 4), c];
    let moves = rehome(views.clone(), "b", "a", has, jobs(2));
    assert_eq!(moves.to.keys().collect::<Vec<_>>(), ["a"]);
    let moves = rehome(views, "b", "a", |_| false, jobs(2));
    assert!(moves.to.is_empty(), "{:?}", moves.to.keys());
    assert_eq!(moves.stay.len(), 2);
}
