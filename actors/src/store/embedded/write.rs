//! The write side of the embedded store: applying one operation inside the committer's
//! write transaction.
//!
//! Invariant the committer relies on: an operation either fails with
//! [`StoreError::Backend`] (redb failed; the whole batch is aborted) or writes nothing
//! before it can fail for its own reasons ([`StoreError::Corrupt`]), so the batch can
//! commit the other operations.

use std::collections::{HashMap, HashSet};

use redb::{ReadableTable, Table, WriteTransaction};
use taskmesh_kernels::task::TaskId;

use super::committer::Transfer;
use super::schema::{FINISHED, IDEMPOTENCY, TASKS, UNFINISHED};
use crate::store::rules::{self, Change};
use crate::store::{Created, StoreError, Transition, codec};
use crate::task::{Millis, NewTask, TaskRecord};

/// The four tables, opened once per batch.
pub(super) struct Tables<'txn> {
    tasks: Table<'txn, &'static str, &'static [u8]>,
    idempotency: Table<'txn, &'static str, &'static str>,
    unfinished: Table<'txn, &'static str, ()>,
    finished: Table<'txn, (u64, &'static str), ()>,
}

impl<'txn> Tables<'txn> {
    /// Opens every table in `txn`.
    pub(super) fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            tasks: txn.open_table(TASKS)?,
            idempotency: txn.open_table(IDEMPOTENCY)?,
            unfinished: txn.open_table(UNFINISHED)?,
            finished: txn.open_table(FINISHED)?,
        })
    }

    /// `TaskStore::create`: decides every task first, then writes the new ones.
    pub(super) fn create(&mut self, tasks: Vec<NewTask>) -> Result<Vec<Created>, StoreError> {
        let mut answers = Vec::with_capacity(tasks.len());
        let mut fresh = Vec::new();
        let mut keys_in_call: HashMap<&str, &TaskId> = HashMap::new();
        let mut ids_in_call = HashSet::new();
        for task in &tasks {
            let key = task.spec.idempotency_key.as_deref();
            if let Some(first) = key.and_then(|k| keys_in_call.get(k)) {
                answers.push(Created::Existing(**first));
                continue;
            }
            if let Some(first) = key.map(|k| self.key_owner(k)).transpose()?.flatten() {
                answers.push(Created::Existing(first));
                continue;
            }
            if ids_in_call.contains(&task.id) || self.tasks.get(task.id.text().as_str())?.is_some()
            {
                answers.push(Created::Existing(task.id));
                continue;
            }
            if let Some(key) = key {
                keys_in_call.insert(key, &task.id);
            }
            ids_in_call.insert(&task.id);
            answers.push(Created::New(task.id));
            fresh.push(task);
        }
        for task in fresh {
            let record = TaskRecord::queued(task.clone());
            let text = record.id.text();
            let id = text.as_str();
            self.tasks.insert(id, codec::encode(&record)?.as_slice())?;
            self.unfinished.insert(id, ())?;
            if let Some(key) = &record.spec.idempotency_key {
                self.idempotency.insert(key.as_str(), id)?;
            }
        }
        Ok(answers)
    }

    /// `start`, `requeue` and `finish`: the shared rules plus index upkeep.
    pub(super) fn change(&mut self, id: &TaskId, change: Change) -> Result<Transition, StoreError> {
        let text = id.text();
        let id = text.as_str();
        let mut record = match self.tasks.get(id)? {
            Some(bytes) => codec::decode(id, bytes.value())?,
            None => return Ok(Transition::NotFound),
        };
        let outcome = rules::apply(&mut record, change);
        if outcome == Transition::Applied {
            self.tasks.insert(id, codec::encode(&record)?.as_slice())?;
            if let Some(at) = record
                .finished_at_ms
                .filter(|_| record.status.is_terminal())
            {
                self.unfinished.remove(id)?;
                self.finished.insert((at, id), ())?;
            }
        }
        Ok(outcome)
    }

    /// `claim` and `reassign`: decides every task first (a corrupt record writes
    /// nothing), then writes the moved ones. Duplicate ids move once.
    pub(super) fn transfer(&mut self, transfer: Transfer) -> Result<Vec<TaskRecord>, StoreError> {
        let Transfer {
            ids,
            from,
            to,
            error,
        } = transfer;
        let ids = match ids {
            Some(ids) => ids,
            None => {
                let mut all = Vec::new();
                for entry in self.unfinished.iter()? {
                    let id = entry?.0.value().to_owned();
                    all.push(id.parse().map_err(|_| StoreError::Corrupt {
                        id: id.clone(),
                        reason: "the unfinished index holds an invalid id".into(),
                    })?);
                }
                all
            }
        };
        let mut moved: Vec<TaskRecord> = Vec::new();
        let mut seen = HashSet::new();
        for id in &ids {
            if !seen.insert(id) {
                continue;
            }
            let Some(bytes) = self.tasks.get(id.text().as_str())? else {
                continue;
            };
            let mut record = codec::decode(&id.text(), bytes.value())?;
            if rules::transfer(&mut record, &from, &to, &error) {
                moved.push(record);
            }
        }
        for record in &moved {
            self.tasks
                .insert(record.id.text().as_str(), codec::encode(record)?.as_slice())?;
        }
        Ok(moved)
    }

    /// Deletes up to `max` terminal tasks finished before `before`; answers how many.
    pub(super) fn purge(&mut self, before: Millis, max: usize) -> Result<usize, StoreError> {
        let mut doomed = Vec::new();
        for entry in self
            .finished
            .range::<(u64, &str)>(..(before, ""))?
            .take(max)
        {
            let (guard, _) = entry?;
            let (at, id) = guard.value();
            let key = match self.tasks.get(id)? {
                Some(bytes) => codec::decode(id, bytes.value())?
                    .spec
                    .idempotency_key
                    .clone(),
                None => None,
            };
            doomed.push((at, id.to_owned(), key));
        }
        for (at, id, key) in &doomed {
            self.finished.remove((*at, id.as_str()))?;
            self.tasks.remove(id.as_str())?;
            if let Some(key) = key
                && self
                    .idempotency
                    .get(key.as_str())?
                    .is_some_and(|v| v.value() == id)
            {
                self.idempotency.remove(key.as_str())?;
            }
        }
        Ok(doomed.len())
    }

    /// The task an idempotency key names, if any.
    fn key_owner(&self, key: &str) -> Result<Option<TaskId>, StoreError> {
        let Some(id) = self.idempotency.get(key)? else {
            return Ok(None);
        };
        let id = id.value();
        id.parse().map(Some).map_err(|_| StoreError::Corrupt {
            id: id.to_owned(),
            reason: format!("idempotency key {key:?} names an invalid id"),
        })
    }
}
