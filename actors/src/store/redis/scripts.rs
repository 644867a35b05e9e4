//! The Lua scripts that make every write of the Redis store atomic, and the `EVALSHA`
//! commands that call them.
//!
//! - `create.lua`: one `create` call, all its tasks in order (idempotency keys, ids,
//!   the unfinished and recent indexes, and the owner set of each task's node).
//! - `change.lua`: `start`, `requeue` or `finish` of one task, refused unless the current
//!   status allows it, with the unfinished, finished and owner indexes.
//! - `purge.lua`: one bounded batch of `purge_finished` (records, idempotency keys and
//!   every index entry, owner sets included).
//! - `transfer.lua`: `claim` (every live task of a node) or `reassign` (chosen tasks),
//!   moving each between owner sets with its record.
//! - `expired.lua`: `expired_holders`, pruning the holders set of nodes that hold nothing.
//!
//! Commands carry only the script's SHA1. The scripts are loaded when the store connects,
//! and the batcher loads them again when Redis answers `NOSCRIPT` (after a restart, a
//! fail-over or `SCRIPT FLUSH`) and resends the refused commands.

use redis::{Cmd, Pipeline, Script};

use taskmesh_kernels::task::TaskId;

use super::keys::Keys;
use super::record::{self, FIELDS, Field, Patch};
use crate::store::{Created, StoreError};
use crate::task::{Millis, NewTask, TaskRecord};

/// The store's scripts, hashed once.
pub(super) struct Scripts {
    create: Script,
    change: Script,
    purge: Script,
    transfer: Script,
    expired: Script,
    sources: [&'static str; 5],
}

/// Which tasks `transfer.lua` considers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Moving<'a> {
    /// Every task in the old holder's owner set (`claim`).
    All,
    /// These ids (`reassign`).
    Only(&'a [TaskId]),
}

impl Scripts {
    /// Hashes the scripts (nothing is sent).
    pub(super) fn new() -> Self {
        let sources = [
            include_str!("scripts/create.lua"),
            include_str!("scripts/change.lua"),
            include_str!("scripts/purge.lua"),
            include_str!("scripts/transfer.lua"),
            include_str!("scripts/expired.lua"),
        ];
        Self {
            create: Script::new(sources[0]),
            change: Script::new(sources[1]),
            purge: Script::new(sources[2]),
            transfer: Script::new(sources[3]),
            expired: Script::new(sources[4]),
            sources,
        }
    }

    /// A pipeline of `SCRIPT LOAD` for every script.
    pub(super) fn load(&self) -> Pipeline {
        let mut pipe = redis::pipe();
        for source in self.sources {
            pipe.cmd("SCRIPT").arg("LOAD").arg(source).ignore();
        }
        pipe
    }

    /// `create.lua` for `tasks`; fails only if a spec cannot be encoded.
    pub(super) fn create(&self, keys: &Keys, tasks: Vec<NewTask>) -> Result<Cmd, StoreError> {
        let mut call = evalsha(&self.create, 3 + 3 * tasks.len());
        let mut argv: Vec<Vec<u8>> = Vec::with_capacity(tasks.len() * 14);
        call.arg(keys.unfinished())
            .arg(keys.recent())
            .arg(keys.holders());
        for task in tasks {
            let record = TaskRecord::queued(task);
            let task_key = keys.task(&record.id.text());
            let idem = record
                .spec
                .idempotency_key
                .as_deref()
                .map(|k| keys.idempotency(k));
            let owner = record.node.as_deref().map(|node| keys.owner(node));
            call.arg(&task_key)
                .arg(idem.as_deref().unwrap_or(&task_key))
                .arg(owner.as_deref().unwrap_or(&task_key));
            let has_key: &[u8] = if idem.is_some() { b"1" } else { b"0" };
            argv.push(record.id.text().as_bytes().to_vec());
            argv.push(has_key.to_vec());
            argv.push(record.node.clone().unwrap_or_default().into_bytes());
            push_fields(&mut argv, record::encode(&record)?);
        }
        call.arg(argv);
        Ok(call)
    }

    /// `change.lua` applying `patch` to the task `id`.
    pub(super) fn change(&self, keys: &Keys, id: &str, patch: Patch) -> Cmd {
        let task_key = keys.task(id);
        let owner_key = patch.owner.as_deref().map(|node| keys.owner(node));
        let mut call = evalsha(&self.change, 5);
        call.arg(&task_key)
            .arg(keys.unfinished())
            .arg(keys.finished())
            .arg(owner_key.as_deref().unwrap_or(&task_key))
            .arg(keys.holders());
        call.arg(id)
            .arg(keys.owner_prefix())
            .arg(match patch.status {
                Some(status) => status.as_str(),
                None if patch.keep_status => "=",
                None => "",
            })
            .arg(patch.owner.as_deref().unwrap_or(""))
            .arg(patch.finished_at.map(|t| t.to_string()).unwrap_or_default())
            .arg(patch.fence.as_deref().unwrap_or(""))
            .arg(patch.lease);
        let mut argv = Vec::with_capacity(1 + 2 * patch.set.len() + patch.unset.len());
        push_fields(&mut argv, patch.set);
        argv.extend(patch.unset.iter().map(|f| f.as_bytes().to_vec()));
        call.arg(argv);
        call
    }

    /// `purge.lua`: deletes at most `max` tasks finished before `before`.
    pub(super) fn purge(&self, keys: &Keys, before: Millis, max: usize) -> Cmd {
        let mut call = evalsha(&self.purge, 2);
        call.arg(keys.finished())
            .arg(keys.recent())
            .arg(keys.task_prefix())
            .arg(keys.owner_prefix())
            .arg(before)
            .arg(max);
        call
    }

    /// `transfer.lua`: moves `moving` from `from` to `to`, giving a running task `error`.
    pub(super) fn transfer(
        &self,
        keys: &Keys,
        moving: Moving<'_>,
        from: &str,
        to: &str,
        error: &str,
    ) -> Cmd {
        let mut call = evalsha(&self.transfer, 3);
        call.arg(keys.owner(from))
            .arg(keys.owner(to))
            .arg(keys.holders());
        let mode = match moving {
            Moving::All => "claim",
            Moving::Only(_) => "ids",
        };
        call.arg(keys.task_prefix())
            .arg(from)
            .arg(to)
            .arg(error)
            .arg(mode)
            .arg(FIELDS.len())
            .arg(&FIELDS[..]);
        if let Moving::Only(ids) = moving {
            for id in ids {
                call.arg(id.text().as_str());
            }
        }
        call
    }

    /// `expired.lua`: the expired holders, pruning the holders set.
    pub(super) fn expired(&self, keys: &Keys) -> Cmd {
        let mut call = evalsha(&self.expired, 1);
        call.arg(keys.holders())
            .arg(keys.owner_prefix())
            .arg(keys.lease_prefix());
        call
    }
}

/// `EVALSHA sha numkeys`, ready for the keys and then the arguments.
fn evalsha(script: &Script, keys: usize) -> Cmd {
    let mut call = redis::cmd("EVALSHA");
    call.arg(script.get_hash()).arg(keys);
    call
}

/// Appends `n` and then the `n` field/value pairs.
fn push_fields(argv: &mut Vec<Vec<u8>>, fields: Vec<Field>) {
    argv.push(fields.len().to_string().into_bytes());
    for (field, value) in fields {
        argv.push(field.as_bytes().to_vec());
        argv.push(value);
    }
}

/// Reads the reply of `create.lua`: per task, a flag and an id.
pub(super) fn created(reply: redis::Value) -> Result<Vec<Created>, StoreError> {
    let bad = |what: &str| StoreError::Backend(format!("create script answered {what}"));
    let flat: Vec<redis::Value> =
        redis::from_redis_value(reply).map_err(|e| bad(&e.to_string()))?;
    flat.chunks(2)
        .map(|pair| {
            let [flag, id] = pair else {
                return Err(bad("an odd number of values"));
            };
            let flag: i64 = redis::from_redis_value_ref(flag).map_err(|e| bad(&e.to_string()))?;
            let id: String = redis::from_redis_value_ref(id).map_err(|e| bad(&e.to_string()))?;
            let id = id
                .parse()
                .map_err(|_| bad(&format!("the invalid id {id:?}")))?;
            Ok(if flag == 0 {
                Created::New(id)
            } else {
                Created::Existing(id)
            })
        })
        .collect()
}
