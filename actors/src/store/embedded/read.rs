//! The read side of the embedded store: each query runs in its own redb read
//! transaction, a consistent snapshot that never waits for the committer.

use redb::{Database, ReadableDatabase, ReadableTable};

use super::schema::{TASKS, UNFINISHED};
use crate::store::{ListFilter, StoreError, codec, rules};
use crate::task::TaskRecord;

/// `TaskStore::get`.
pub(super) fn get(db: &Database, id: &str) -> Result<Option<TaskRecord>, StoreError> {
    let tasks = db.begin_read()?.open_table(TASKS)?;
    tasks
        .get(id)?
        .map(|bytes| codec::decode(id, bytes.value()))
        .transpose()
}

/// `TaskStore::list`: walks ids newest first, within the scan budget.
pub(super) fn list(db: &Database, filter: &ListFilter) -> Result<Vec<TaskRecord>, StoreError> {
    let tasks = db.begin_read()?.open_table(TASKS)?;
    let mut found = Vec::new();
    for entry in tasks
        .iter()?
        .rev()
        .take(rules::list_scan_budget(filter.limit))
    {
        if found.len() >= filter.limit {
            break;
        }
        let (id, bytes) = entry?;
        let record = codec::decode(id.value(), bytes.value())?;
        if rules::matches(filter, &record) {
            found.push(record);
        }
    }
    Ok(found)
}

/// `TaskStore::unfinished`: the unfinished index, oldest first, joined with the records.
pub(super) fn unfinished(db: &Database) -> Result<Vec<TaskRecord>, StoreError> {
    let txn = db.begin_read()?;
    let (index, tasks) = (txn.open_table(UNFINISHED)?, txn.open_table(TASKS)?);
    let mut found = Vec::new();
    for entry in index.iter()? {
        let (id, _) = entry?;
        let id = id.value();
        let bytes = tasks.get(id)?.ok_or_else(|| StoreError::Corrupt {
            id: id.to_owned(),
            reason: "indexed as unfinished but has no record".into(),
        })?;
        found.push(codec::decode(id, bytes.value())?);
    }
    Ok(found)
}
