//! The redb tables of the embedded store and the mapping of redb errors.
//!
//! | table         | key                      | value                      |
//! |---------------|--------------------------|----------------------------|
//! | `tasks`       | task id                  | MessagePack [`TaskRecord`] |
//! | `idempotency` | idempotency key          | task id                    |
//! | `unfinished`  | task id (queued/running) | `()`                       |
//! | `finished`    | (finished_at_ms, id)     | `()`                       |
//! | `api_keys`    | API key id               | JSON [`KeyRecord`]         |
//!
//! Ids are UUIDv7 text, so both id-keyed tables iterate in creation order.
//!
//! [`TaskRecord`]: crate::task::TaskRecord
//! [`KeyRecord`]: crate::auth::key::KeyRecord

use redb::{TableDefinition, WriteTransaction};

use crate::store::StoreError;

/// Every task record, by id.
pub(super) const TASKS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("tasks");
/// Idempotency key → the id of the first task created with it.
pub(super) const IDEMPOTENCY: TableDefinition<'static, &str, &str> =
    TableDefinition::new("idempotency");
/// The ids of queued and running tasks, for `unfinished` without a full scan.
pub(super) const UNFINISHED: TableDefinition<'static, &str, ()> =
    TableDefinition::new("unfinished");
/// Terminal tasks by finish time, for `purge_finished` without a full scan.
pub(super) const FINISHED: TableDefinition<'static, (u64, &str), ()> =
    TableDefinition::new("finished");

/// API keys by id (JSON records, see `embedded/keys.rs`).
pub(super) const API_KEYS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("api_keys");

/// Creates any missing table, so read transactions can always open all of them.
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(TASKS)?;
    txn.open_table(IDEMPOTENCY)?;
    txn.open_table(UNFINISHED)?;
    txn.open_table(FINISHED)?;
    txn.open_table(API_KEYS)?;
    Ok(())
}

macro_rules! backend_errors {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for StoreError {
            fn from(e: $error) -> Self {
                StoreError::Backend(e.to_string())
            }
        }
    )*};
}

backend_errors!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
);
