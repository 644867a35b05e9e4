//! The scanning reads of the Redis store: `list`, `unfinished` and `owned_by`.
//!
//! Each walks an index in chunks, one round trip for the chunk's ids (`ZRANGE … BYLEX`
//! from just past the last id seen, so concurrent inserts and purges never shift the walk)
//! and one pipelined round trip for the chunk's records. A record deleted between the two
//! (a purge) is skipped, not an error.

use redis::Value;
use taskmesh_kernels::task::TaskId;

use super::RedisStore;
use super::record::{self, FIELDS};
use crate::store::{ListFilter, StoreError, rules};
use crate::task::TaskRecord;

/// The most ids one chunk reads.
const CHUNK: usize = 1_000;

/// Which way an index is walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    /// Oldest id first.
    Oldest,
    /// Newest id first.
    Newest,
}

impl RedisStore {
    /// `TaskStore::list`: the recent index newest first, within the scan budget.
    pub(super) async fn scan_list(
        &self,
        filter: &ListFilter,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let mut found = Vec::new();
        if filter.limit == 0 {
            return Ok(found);
        }
        let budget = rules::list_scan_budget(filter.limit);
        // Without a filter the newest `limit` ids are the answer; with one, read more.
        let unfiltered =
            filter.status.is_none() && filter.kind.is_none() && filter.submitted_by.is_none();
        let chunk = if unfiltered {
            filter.limit.min(CHUNK)
        } else {
            CHUNK
        };
        self.walk(
            &self.keys.recent(),
            Order::Newest,
            budget,
            chunk,
            |record| {
                if rules::matches(filter, &record) {
                    found.push(record);
                }
                found.len() < filter.limit
            },
        )
        .await?;
        Ok(found)
    }

    /// `TaskStore::unfinished`: the unfinished index, oldest first.
    pub(super) async fn scan_unfinished(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let mut found = Vec::new();
        self.walk(
            &self.keys.unfinished(),
            Order::Oldest,
            usize::MAX,
            CHUNK,
            |record| {
                if !record.status.is_terminal() {
                    found.push(record);
                }
                true
            },
        )
        .await?;
        Ok(found)
    }

    /// [`RedisStore::owned_by`]: the owner set, oldest first.
    pub(super) async fn scan_owner(&self, node: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let members: Vec<String> = self
            .query(redis::cmd("SMEMBERS").arg(self.keys.owner(node)))
            .await?;
        let mut ids: Vec<TaskId> = members.iter().filter_map(|m| parse_id(m)).collect();
        ids.sort_unstable();
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let records = self.fetch(chunk).await?;
            found.extend(records.into_iter().filter(|r| !r.status.is_terminal()));
        }
        Ok(found)
    }

    /// Visits the records of `index` in `order`, chunk by chunk, until `visit` answers
    /// `false`, the index ends, or `budget` ids were examined.
    async fn walk(
        &self,
        index: &str,
        order: Order,
        budget: usize,
        chunk: usize,
        mut visit: impl FnMut(TaskRecord) -> bool,
    ) -> Result<(), StoreError> {
        let mut examined = 0usize;
        let mut after: Option<String> = None;
        while examined < budget {
            let want = chunk.min(budget - examined);
            let (start, stop) = match (order, &after) {
                (Order::Oldest, None) => ("-".to_owned(), "+".to_owned()),
                (Order::Oldest, Some(last)) => (format!("({last}"), "+".to_owned()),
                (Order::Newest, None) => ("+".to_owned(), "-".to_owned()),
                (Order::Newest, Some(last)) => (format!("({last}"), "-".to_owned()),
            };
            let mut range = redis::cmd("ZRANGE");
            range.arg(index).arg(start).arg(stop).arg("BYLEX");
            if order == Order::Newest {
                range.arg("REV");
            }
            range.arg("LIMIT").arg(0).arg(want);
            let members: Vec<String> = self.query(&range).await?;
            examined += members.len();
            let next = (members.len() == want)
                .then(|| members.last().cloned())
                .flatten();
            let ids: Vec<TaskId> = members.iter().filter_map(|m| parse_id(m)).collect();
            for record in self.fetch(&ids).await? {
                if !visit(record) {
                    return Ok(());
                }
            }
            match next {
                Some(last) => after = Some(last),
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// The records of `ids`, in the same order, leaving out those that no longer exist.
    pub(super) async fn fetch(&self, ids: &[TaskId]) -> Result<Vec<TaskRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HMGET")
                .arg(self.keys.task(&id.text()))
                .arg(&FIELDS[..]);
        }
        let replies: Vec<Value> = self.query_pipe(&pipe).await?;
        let mut records = Vec::with_capacity(ids.len());
        for (id, reply) in ids.iter().zip(replies) {
            if let Some(record) = decode_reply(id, reply)? {
                records.push(record);
            }
        }
        Ok(records)
    }
}

/// Decodes one `HMGET` of [`FIELDS`].
pub(super) fn decode_reply(id: &TaskId, reply: Value) -> Result<Option<TaskRecord>, StoreError> {
    let values: Vec<Option<Vec<u8>>> =
        redis::from_redis_value(reply).map_err(|e| StoreError::Corrupt {
            id: id.to_string(),
            reason: format!("unexpected reply to HMGET: {e}"),
        })?;
    record::decode(id, values)
}

/// An index member as an id; a member that is not one is logged and skipped.
fn parse_id(member: &str) -> Option<TaskId> {
    let id = member.parse().ok();
    if id.is_none() {
        tracing::warn!(
            member,
            "task store index holds a member that is not a task id"
        );
    }
    id
}
