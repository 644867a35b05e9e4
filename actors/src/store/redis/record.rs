//! How a [`TaskRecord`] is laid out in its Redis hash, and how a [`Change`] becomes a
//! patch of that hash.
//!
//! Each part of the record that a transition can change is its own hash field, so the
//! Lua scripts can check the status and write a transition without decoding anything:
//!
//! | field         | value                                  | absent when  |
//! |---------------|----------------------------------------|--------------|
//! | `status`      | `queued`, `running`, `succeeded`, …    | never        |
//! | `attempts`    | decimal                                | never        |
//! | `spec`        | MessagePack [`TaskSpec`] (named)       | never        |
//! | `created_at`  | decimal milliseconds                   | never        |
//! | `result`      | text                                   | `None`       |
//! | `error`       | text                                   | `None`       |
//! | `node`        | text                                   | `None`       |
//! | `started_at`  | decimal milliseconds                   | `None`       |
//! | `finished_at` | decimal milliseconds                   | `None`       |
//! | `lease`       | decimal lease token                    | written before the token existed (reads as 0) |
//! | `progress`    | JSON `{"fraction", "message"}`         | `None`       |
//! | `idem`        | the `{p}idem:{key}` key naming the task | no key       |
//!
//! The spec never changes after creation, so it is one MessagePack blob, like the whole
//! record in the other stores. [`Patch::of`] mirrors the shared `rules::apply`, and a
//! test below checks that patching the fields gives the same record as the rules do.
//!
//! [`TaskSpec`]: taskmesh_kernels::task::TaskSpec

use taskmesh_kernels::Progress;
use taskmesh_kernels::task::{TaskId, TaskStatus};

use crate::store::StoreError;
use crate::store::rules::Change;
use crate::task::{Millis, TaskRecord};

/// The hash fields [`decode`] reads, in the order it expects them (an `HMGET`).
pub(super) const FIELDS: [&str; 11] = [
    "status",
    "attempts",
    "spec",
    "created_at",
    "result",
    "error",
    "node",
    "started_at",
    "finished_at",
    "lease",
    "progress",
];

/// One hash field and its value.
pub(super) type Field = (&'static str, Vec<u8>);

/// The fields of a record, `None`s left out.
pub(super) fn encode(record: &TaskRecord) -> Result<Vec<Field>, StoreError> {
    let spec = rmp_serde::to_vec_named(&record.spec)
        .map_err(|e| StoreError::Backend(format!("cannot encode task {}: {e}", record.id)))?;
    let mut fields = vec![
        ("status", record.status.as_str().into()),
        ("attempts", record.attempts.to_string().into()),
        ("spec", spec),
        ("created_at", record.created_at_ms.to_string().into()),
        ("lease", record.lease.to_string().into()),
    ];
    let optional = [
        ("result", record.result.clone().map(String::into_bytes)),
        ("error", record.error.clone().map(String::into_bytes)),
        ("node", record.node.clone().map(String::into_bytes)),
        ("started_at", record.started_at_ms.map(millis)),
        ("finished_at", record.finished_at_ms.map(millis)),
        ("progress", record.progress.as_ref().map(progress_json)),
    ];
    fields.extend(optional.into_iter().filter_map(|(f, v)| Some((f, v?))));
    Ok(fields)
}

/// The record from the values of [`FIELDS`], or `None` if the hash does not exist.
pub(super) fn decode(
    id: &TaskId,
    values: Vec<Option<Vec<u8>>>,
) -> Result<Option<TaskRecord>, StoreError> {
    if values.iter().all(Option::is_none) {
        return Ok(None);
    }
    let corrupt = |reason: String| StoreError::Corrupt {
        id: id.to_string(),
        reason,
    };
    let [
        status,
        attempts,
        spec,
        created,
        result,
        error,
        node,
        started,
        finished,
        lease,
        progress,
    ] = <[Option<Vec<u8>>; 11]>::try_from(values)
        .map_err(|v| corrupt(format!("expected 11 fields, got {}", v.len())))?;
    let required = |name: &str, value: Option<Vec<u8>>| {
        value.ok_or_else(|| corrupt(format!("field `{name}` is missing")))
    };
    let spec = rmp_serde::from_slice(&required("spec", spec)?)
        .map_err(|e| corrupt(format!("field `spec`: {e}")))?;
    Ok(Some(TaskRecord {
        id: *id,
        spec,
        status: parse(&corrupt, "status", required("status", status)?)?,
        attempts: parse(&corrupt, "attempts", required("attempts", attempts)?)?,
        result: result.map(|v| text(&corrupt, "result", v)).transpose()?,
        error: error.map(|v| text(&corrupt, "error", v)).transpose()?,
        node: node.map(|v| text(&corrupt, "node", v)).transpose()?,
        created_at_ms: parse(&corrupt, "created_at", required("created_at", created)?)?,
        started_at_ms: started
            .map(|v| parse(&corrupt, "started_at", v))
            .transpose()?,
        finished_at_ms: finished
            .map(|v| parse(&corrupt, "finished_at", v))
            .transpose()?,
        lease: lease
            .map(|v| parse(&corrupt, "lease", v))
            .transpose()?
            .unwrap_or(0),
        progress: progress
            .map(|v| {
                serde_json::from_slice(&v).map_err(|e| corrupt(format!("field `progress`: {e}")))
            })
            .transpose()?,
    }))
}

/// The `progress` field: JSON, so `redis-cli HGET` shows it as the API does.
fn progress_json(progress: &Progress) -> Vec<u8> {
    // A struct of a float and a string always serializes.
    serde_json::to_vec(progress).unwrap_or_default()
}

fn millis(ms: Millis) -> Vec<u8> {
    ms.to_string().into_bytes()
}

fn text(
    corrupt: &impl Fn(String) -> StoreError,
    name: &str,
    v: Vec<u8>,
) -> Result<String, StoreError> {
    String::from_utf8(v).map_err(|_| corrupt(format!("field `{name}` is not UTF-8")))
}

fn parse<T: std::str::FromStr>(
    corrupt: &impl Fn(String) -> StoreError,
    name: &str,
    v: Vec<u8>,
) -> Result<T, StoreError> {
    let s = text(corrupt, name, v)?;
    s.parse()
        .map_err(|_| corrupt(format!("field `{name}` has the bad value {s:?}")))
}

/// What the change script writes when the task's current status allows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Patch {
    /// The new status; `None` for a `finish` with a live status, which only reads the
    /// current status so it can be refused (as `rules::apply` refuses it), and for a
    /// `progress`, which keeps it ([`Patch::keep_status`]).
    pub(super) status: Option<TaskStatus>,
    /// A `progress`: writes the fields and keeps the current status.
    pub(super) keep_status: bool,
    /// For a start: the node, whose owner set gains the task.
    pub(super) owner: Option<String>,
    /// The node the change is made for, which must hold the task (`Change::fence`).
    pub(super) fence: Option<String>,
    /// The lease token the change carries, which must be the record's (`Change::lease`).
    /// A requeue also sets the `lease` field to this plus one (in [`Patch::set`]).
    pub(super) lease: u64,
    /// For a finish: when, the task's score in the finished index.
    pub(super) finished_at: Option<Millis>,
    /// Fields to set, besides `status`.
    pub(super) set: Vec<Field>,
    /// Fields to delete (parts that become `None`).
    pub(super) unset: Vec<&'static str>,
}

impl Patch {
    /// The patch that makes the same change as `rules::apply(record, change)`.
    pub(super) fn of(change: Change) -> Self {
        let mut patch = Self {
            status: None,
            keep_status: false,
            owner: None,
            fence: change.fence().map(str::to_owned),
            lease: change.lease(),
            finished_at: None,
            set: Vec::new(),
            unset: Vec::new(),
        };
        match change {
            Change::Start {
                node,
                attempts,
                started_at_ms,
                ..
            } => {
                patch.status = Some(TaskStatus::Running);
                patch.put("node", Some(node.clone().into_bytes()));
                patch.put("attempts", Some(attempts.to_string().into_bytes()));
                patch.put("started_at", Some(millis(started_at_ms)));
                patch.owner = Some(node);
            }
            Change::Requeue {
                lease,
                attempts,
                error,
                ..
            } => {
                patch.status = Some(TaskStatus::Queued);
                patch.put("attempts", Some(attempts.to_string().into_bytes()));
                patch.put("error", error.map(String::into_bytes));
                patch.put("progress", None);
                // The bump: change.lua writes the fields only after it found the
                // record's token equal to `lease`, in the same script, so this is the
                // record's token plus one.
                patch.put("lease", Some((lease + 1).to_string().into_bytes()));
            }
            Change::Progress { progress, .. } => {
                patch.keep_status = true;
                patch.put("progress", Some(progress_json(&progress)));
            }
            Change::Finish(finish) if finish.status.is_terminal() => {
                patch.status = Some(finish.status);
                patch.put("result", finish.result.map(String::into_bytes));
                patch.put("error", finish.error.map(String::into_bytes));
                patch.put("node", finish.node.map(String::into_bytes));
                patch.put("attempts", Some(finish.attempts.to_string().into_bytes()));
                patch.put("started_at", finish.started_at_ms.map(millis));
                patch.put("finished_at", Some(millis(finish.finished_at_ms)));
                patch.finished_at = Some(finish.finished_at_ms);
            }
            Change::Finish(_) => {}
        }
        patch
    }

    fn put(&mut self, field: &'static str, value: Option<Vec<u8>>) {
        match value {
            Some(value) => self.set.push((field, value)),
            None => self.unset.push(field),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use taskmesh_kernels::task::{Priority, TaskSpec};

    use super::*;
    use crate::store::Transition;
    use crate::store::rules;
    use crate::task::{Fence, Finish, NewTask};

    fn queued() -> TaskRecord {
        TaskRecord::queued(NewTask {
            id: TaskId::generate(),
            spec: TaskSpec {
                kind: "echo".into(),
                params: r#"{"x":"ü"}"#.into(),
                priority: Priority::Low,
                timeout_ms: Some(9),
                max_retries: 2,
                idempotency_key: Some("k".into()),
                class: Some("gpu".into()),
                request_id: None,
                submitted_by: None,
            }
            .into(),
            created_at_ms: 1_700_000_000_000,
            node: Some("a".into()),
        })
    }

    fn running() -> TaskRecord {
        TaskRecord {
            status: TaskStatus::Running,
            attempts: 1,
            lease: 3,
            error: Some("earlier".into()),
            node: Some("a".into()),
            started_at_ms: Some(5),
            progress: Some(Progress::new(0.25, "a quarter").expect("finite")),
            ..queued()
        }
    }

    /// What the change script answers for `patch` on `record`: its checks in order.
    fn outcome(record: &TaskRecord, patch: &Patch) -> Transition {
        if record.status.is_terminal() {
            return Transition::Rejected(record.status);
        }
        let holder = record.node.as_deref();
        if let (Some(fence), Some(holder)) = (patch.fence.as_deref(), holder)
            && fence != holder
        {
            return Transition::NotHolder(Some(holder.to_owned()));
        }
        if patch.lease != record.lease {
            return Transition::NotHolder(holder.map(str::to_owned));
        }
        match patch.status {
            Some(_) => Transition::Applied,
            None if patch.keep_status => Transition::Applied,
            None => Transition::Rejected(record.status),
        }
    }

    /// What Redis would hold after the change script ran `patch` on `record`'s hash.
    fn patched(record: &TaskRecord, patch: &Patch) -> TaskRecord {
        let mut hash: HashMap<&str, Vec<u8>> =
            encode(record).expect("encode").into_iter().collect();
        if let Some(status) = patch.status {
            hash.insert("status", status.as_str().into());
        }
        let floor = record.attempts + u32::from(patch.owner.is_some());
        hash.extend(patch.set.iter().cloned());
        for field in &patch.unset {
            hash.remove(field);
        }
        let attempts: u32 = hash
            .get("attempts")
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(0);
        if patch.status.is_some() && attempts < floor {
            hash.insert("attempts", floor.to_string().into_bytes());
        }
        let values = FIELDS.iter().map(|f| hash.get(f).cloned()).collect();
        decode(&record.id, values).expect("decode").expect("exists")
    }

    fn half() -> Progress {
        Progress::new(0.5, "half way").expect("finite")
    }

    fn changes() -> Vec<Change> {
        let finish = |status, result: Option<&str>, node: Option<&str>| {
            Change::Finish(Finish {
                status,
                result: result.map(str::to_owned),
                error: None,
                node: node.map(str::to_owned),
                lease: 0,
                attempts: 3,
                started_at_ms: node.map(|_| 7),
                finished_at_ms: 11,
            })
        };
        vec![
            Change::start(Fence::new("a", 0), 2, 6),
            Change::start(Fence::new("a", 3), 2, 6),
            Change::start(Fence::new("b", 0), 2, 6),
            Change::requeue(Fence::new("a", 0), 2, Some("boom".into())),
            Change::requeue(Fence::new("a", 0), 2, None),
            Change::requeue(Fence::new("a", 3), 2, None),
            Change::requeue(Fence::new("b", 0), 2, None),
            finish(TaskStatus::Succeeded, Some("42"), Some("a")),
            finish(TaskStatus::Succeeded, Some("42"), Some("b")),
            finish(TaskStatus::Cancelled, None, None),
            finish(TaskStatus::Running, None, None),
            finish(TaskStatus::Running, None, Some("b")),
            Change::progress(Fence::new("a", 0), half()),
            Change::progress(Fence::new("a", 3), half()),
            Change::progress(Fence::new("b", 3), half()),
        ]
    }

    #[test]
    fn records_round_trip_through_their_fields() {
        for record in [queued(), running()] {
            let hash: HashMap<_, _> = encode(&record).expect("encode").into_iter().collect();
            let values = FIELDS.iter().map(|f| hash.get(f).cloned()).collect();
            assert_eq!(decode(&record.id, values).expect("decode"), Some(record));
        }
    }

    #[test]
    fn a_hash_written_before_the_lease_token_reads_as_token_zero() {
        let record = running();
        let mut hash: HashMap<_, _> = encode(&record).expect("encode").into_iter().collect();
        hash.remove("lease");
        let values = FIELDS.iter().map(|f| hash.get(f).cloned()).collect();
        let legacy = TaskRecord { lease: 0, ..record };
        assert_eq!(decode(&legacy.id, values).expect("decode"), Some(legacy));
    }

    #[test]
    fn patches_make_the_same_change_as_the_shared_rules() {
        let unheld = TaskRecord {
            node: None,
            ..queued()
        };
        let done = TaskRecord {
            status: TaskStatus::Failed,
            ..running()
        };
        let mut applied = 0;
        for before in [queued(), running(), unheld, done] {
            for change in changes() {
                let patch = Patch::of(change.clone());
                let mut expected = before.clone();
                let answer = rules::apply(&mut expected, change.clone());
                assert_eq!(outcome(&before, &patch), answer, "{change:?} on {before:?}");
                if answer == Transition::Applied {
                    applied += 1;
                    assert_eq!(patched(&before, &patch), expected, "{change:?}");
                }
                let is_start = matches!(change, Change::Start { .. });
                assert_eq!(patch.owner.is_some(), is_start);
                let terminal = patch.status.is_some_and(TaskStatus::is_terminal);
                assert_eq!(patch.finished_at.is_some(), terminal);
            }
        }
        assert!(applied > 10, "only {applied} changes were applied");
    }

    #[test]
    fn a_missing_hash_is_none_and_a_broken_one_is_corrupt() {
        let id = TaskId::generate();
        assert_eq!(decode(&id, vec![None; 11]).expect("decode"), None);
        let mut values: Vec<_> = FIELDS.iter().map(|_| None).collect();
        values[0] = Some(b"running".to_vec());
        assert!(matches!(
            decode(&id, values),
            Err(StoreError::Corrupt { .. })
        ));
        let record = queued();
        let hash: HashMap<_, _> = encode(&record).expect("encode").into_iter().collect();
        let mut values: Vec<_> = FIELDS.iter().map(|f| hash.get(f).cloned()).collect();
        values[0] = Some(b"sleeping".to_vec());
        assert!(matches!(
            decode(&record.id, values),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
