//! API keys in the embedded store: the `api_keys` table (key id → JSON [`KeyRecord`]).
//!
//! Key writes are rare (an operator creating or revoking a key), so they take their own
//! write transaction here instead of riding the committer's group commit; redb runs one
//! write transaction at a time, so they simply wait for the committer's current one.
//! Each runs on tokio's blocking pool (see `EmbeddedStore::scan`).

use redb::{Database, ReadableDatabase, ReadableTable};

use super::schema::API_KEYS;
use crate::auth::key::KeyRecord;
use crate::store::StoreError;
use crate::task::Millis;

fn decode(id: &str, bytes: &[u8]) -> Result<KeyRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        id: format!("api key {id}"),
        reason: e.to_string(),
    })
}

fn encode(key: &KeyRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(key).map_err(|e| StoreError::Backend(format!("encoding an api key: {e}")))
}

/// `TaskStore::put_key`.
pub(super) fn put(db: &Database, key: &KeyRecord) -> Result<bool, StoreError> {
    let txn = db.begin_write()?;
    let written = {
        let mut table = txn.open_table(API_KEYS)?;
        if table.get(key.id.as_str())?.is_some() {
            false
        } else {
            table.insert(key.id.as_str(), encode(key)?.as_slice())?;
            true
        }
    };
    txn.commit()?;
    Ok(written)
}

/// `TaskStore::get_key`.
pub(super) fn get(db: &Database, id: &str) -> Result<Option<KeyRecord>, StoreError> {
    let table = db.begin_read()?.open_table(API_KEYS)?;
    let found = table.get(id)?;
    found.map(|bytes| decode(id, bytes.value())).transpose()
}

/// `TaskStore::list_keys`.
pub(super) fn list(db: &Database) -> Result<Vec<KeyRecord>, StoreError> {
    let table = db.begin_read()?.open_table(API_KEYS)?;
    let mut keys = Vec::new();
    for entry in table.iter()? {
        let (id, bytes) = entry?;
        keys.push(decode(id.value(), bytes.value())?);
    }
    crate::store::sort_keys(&mut keys);
    Ok(keys)
}

/// `TaskStore::revoke_key`.
pub(super) fn revoke(db: &Database, id: &str, at_ms: Millis) -> Result<bool, StoreError> {
    let txn = db.begin_write()?;
    let found = {
        let mut table = txn.open_table(API_KEYS)?;
        let stored = table
            .get(id)?
            .map(|bytes| decode(id, bytes.value()))
            .transpose()?;
        match stored {
            None => false,
            Some(mut key) => {
                if key.revoked_at_ms.is_none() {
                    key.revoked_at_ms = Some(at_ms);
                    table.insert(id, encode(&key)?.as_slice())?;
                }
                true
            }
        }
    };
    txn.commit()?;
    Ok(found)
}
