//! Holding across nodes: `claim` and `reassign` (one `transfer.lua` call each), and the
//! leases behind `expired_holders`.
//!
//! A lease is the key `{p}lease:{node}` (value: its renewal counter), bumped (`INCR`) and
//! given its TTL (`PEXPIRE`) by `renew_lease` in the same round trip (`MULTI`) as the
//! node's `SADD` to `{p}holders`; `lease` reads it (`GET`). A node whose lease key is gone while its owner set is not empty
//! is expired; `expired.lua` finds those and prunes `{p}holders` in one script.

use redis::Value;
use taskmesh_kernels::task::TaskId;

use super::RedisStore;
use super::record;
use super::scripts::Moving;
use crate::store::{LeaseInfo, StoreError};
use crate::task::TaskRecord;

impl RedisStore {
    /// `claim` (`Moving::All`) or `reassign` (`Moving::Only`): the moved records, in the
    /// script's order (oldest first for a claim, the given order for a reassign).
    pub(super) async fn transfer(
        &self,
        moving: Moving<'_>,
        from: &str,
        to: &str,
        error: &str,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        if from == to || moving == Moving::Only(&[]) {
            return Ok(Vec::new());
        }
        let cmd = self.scripts.transfer(&self.keys, moving, from, to, error);
        let reply = self.call(cmd).await?;
        moved_records(reply)
    }

    /// `renew_lease`: the lease key's counter bumped and its TTL set, with the holders
    /// entry, in one `MULTI`.
    pub(super) async fn renew(&self, node: &str, ttl_ms: u64) -> Result<(), StoreError> {
        let lease = self.keys.lease(node);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("INCR")
            .arg(&lease)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&lease)
            .arg(ttl_ms.max(1))
            .ignore()
            .cmd("SADD")
            .arg(self.keys.holders())
            .arg(node)
            .ignore();
        self.query_pipe::<()>(&pipe).await
    }

    /// `lease`: the lease key's counter, if the key is live.
    pub(super) async fn read_lease(&self, node: &str) -> Result<Option<LeaseInfo>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.keys.lease(node));
        let reply = self.call(cmd).await?;
        let renewals: Option<u64> = redis::from_redis_value(reply)
            .map_err(|e| StoreError::Backend(format!("lease of {node} read as {e}")))?;
        Ok(renewals.map(|renewals| LeaseInfo { renewals }))
    }

    /// `expired_holders`: one `expired.lua` call.
    pub(super) async fn expired(&self) -> Result<Vec<String>, StoreError> {
        let reply = self.call(self.scripts.expired(&self.keys)).await?;
        redis::from_redis_value(reply)
            .map_err(|e| StoreError::Backend(format!("expiry script answered {e}")))
    }
}

/// Reads the reply of `transfer.lua`: per moved task, its id and its record's fields.
fn moved_records(reply: Value) -> Result<Vec<TaskRecord>, StoreError> {
    let bad = |what: String| StoreError::Backend(format!("transfer script answered {what}"));
    let flat: Vec<Value> = redis::from_redis_value(reply).map_err(|e| bad(e.to_string()))?;
    let mut moved = Vec::with_capacity(flat.len() / 2);
    for pair in flat.chunks(2) {
        let [id, fields] = pair else {
            return Err(bad("an odd number of values".into()));
        };
        let id: String = redis::from_redis_value_ref(id).map_err(|e| bad(e.to_string()))?;
        let id: TaskId = id
            .parse()
            .map_err(|_| bad(format!("the invalid id {id:?}")))?;
        let values: Vec<Option<Vec<u8>>> =
            redis::from_redis_value_ref(fields).map_err(|e| bad(e.to_string()))?;
        let record = record::decode(&id, values)?
            .ok_or_else(|| bad(format!("no record for the moved task {id}")))?;
        moved.push(record);
    }
    Ok(moved)
}
