//! Splitting dispatches into frames.

use taskmesh_kernels::task::TaskId;

use super::*;
use crate::store::conformance::fixtures::spec;

fn job(params_len: usize) -> Job {
    let mut spec = spec("echo", None);
    spec.params = "x".repeat(params_len);
    Job::new(TaskId::generate(), spec)
}

#[test]
fn dispatches_are_split_below_the_frame_limit_and_keep_every_job() {
    let jobs: Vec<Job> = (0..40).map(|_| job(256 << 10)).collect();
    let ids: Vec<TaskId> = jobs.iter().map(|j| j.id).collect();
    let chunks = frames(jobs);
    assert!(chunks.len() >= 3, "{} chunks", chunks.len());
    for chunk in &chunks {
        let bytes: usize = chunk.iter().map(|j| j.spec.params.len()).sum();
        assert!(bytes <= MAX_FRAME_PAYLOAD, "{bytes}");
    }
    let back: Vec<TaskId> = chunks.into_iter().flatten().map(|j| j.id).collect();
    assert_eq!(back, ids);
    let small: Vec<Job> = (0..1000).map(|_| job(10)).collect();
    assert_eq!(frames(small).len(), 1);
    assert!(frames(Vec::new()).is_empty());
}
