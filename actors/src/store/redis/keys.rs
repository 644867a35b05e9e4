//! The key schema of the Redis store, in one place. Every key starts with the store's
//! prefix (`taskmesh:` by default), written `{p}` below.
//!
//! | key                 | type       | holds                                                |
//! |---------------------|------------|------------------------------------------------------|
//! | `{p}task:{id}`      | hash       | one task record, a field per part (see `record.rs`)  |
//! | `{p}idem:{key}`     | string     | the id of the first task created with `key`          |
//! | `{p}unfinished`     | sorted set | ids of queued and running tasks (score 0, by id)     |
//! | `{p}recent`         | sorted set | ids of every stored task (score 0, by id)            |
//! | `{p}finished`       | sorted set | ids of terminal tasks, scored by `finished_at_ms`    |
//! | `{p}owner:{node}`   | set        | ids of non-terminal tasks `node` holds (see below)   |
//! | `{p}lease:{node}`   | string     | `node`'s lease: its renewal counter, with a TTL      |
//! | `{p}holders`        | set        | nodes that may hold tasks (see below)                |
//! | `{p}apikey:{id}`    | hash       | one API key's record, a field per part (`apikeys.rs`) |
//! | `{p}apikeys`        | set        | ids of every stored API key                          |
//! | `{p}rate:{bucket}`  | string     | a rate-limit bucket's TAT in µs, expiring once full (`rate_limit::redis`) |
//!
//! A task joins its node's owner set when it is created with a node (`NewTask::node`, the
//! node the dispatcher placed it on), or else when a node first starts it; it moves to
//! another node's set only by `claim` or `reassign`, stays through a requeue, and leaves
//! when it finishes (a purge removes it again, to be sure). The set is what a restarting
//! node recovers (`TaskStore::recoverable`).
//!
//! Every script that adds to an owner set adds the node to `holders` in the same script,
//! and `expired_holders` drops a node from `holders` only when its owner set is empty (in
//! one script), so every node holding a live task is in `holders`. `renew_lease` adds the
//! node too. A node is expired when it is in `holders`, its owner set is not empty, and
//! its lease key has expired (or never existed).
//!
//! Ids are UUIDv7 text, so members of the score-0 sets sort by creation time and are read
//! with `ZRANGE … BYLEX`. The Lua scripts reach keys they cannot be told in advance (the
//! previous owner's set; a record's idempotency key and owner set during a purge), so on
//! Redis Cluster the prefix must be a hash tag such as `{taskmesh}:`, putting every key of
//! a store in one slot.

/// The names of one store's keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    /// The keys of the store whose every key starts with `prefix`.
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix every key starts with.
    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{p}task:{id}`: the record's hash.
    pub(super) fn task(&self, id: &str) -> String {
        format!("{}{id}", self.task_prefix())
    }

    /// `{p}task:`, which the purge script completes with ids from the finished index.
    pub(super) fn task_prefix(&self) -> String {
        format!("{}task:", self.prefix)
    }

    /// `{p}idem:{key}`: the task an idempotency key names.
    pub(super) fn idempotency(&self, key: &str) -> String {
        format!("{}idem:{key}", self.prefix)
    }

    /// `{p}unfinished`: queued and running tasks.
    pub(super) fn unfinished(&self) -> String {
        format!("{}unfinished", self.prefix)
    }

    /// `{p}recent`: every task, for listings.
    pub(super) fn recent(&self) -> String {
        format!("{}recent", self.prefix)
    }

    /// `{p}finished`: terminal tasks by finish time, for purges.
    pub(super) fn finished(&self) -> String {
        format!("{}finished", self.prefix)
    }

    /// `{p}owner:{node}`: the non-terminal tasks `node` holds (placed on it at creation,
    /// or whose latest attempt started on it).
    pub(super) fn owner(&self, node: &str) -> String {
        format!("{}{node}", self.owner_prefix())
    }

    /// `{p}lease:{node}`: present (with a TTL) while `node`'s lease is live.
    pub(super) fn lease(&self, node: &str) -> String {
        format!("{}{node}", self.lease_prefix())
    }

    /// `{p}lease:`, which the expiry script completes with node names.
    pub(super) fn lease_prefix(&self) -> String {
        format!("{}lease:", self.prefix)
    }

    /// `{p}holders`: every node that may hold tasks.
    pub(super) fn holders(&self) -> String {
        format!("{}holders", self.prefix)
    }

    /// `{p}apikey:{id}`: one API key's record.
    pub(super) fn api_key(&self, id: &str) -> String {
        format!("{}apikey:{id}", self.prefix)
    }

    /// `{p}apikeys`: the ids of every API key.
    pub(super) fn api_keys(&self) -> String {
        format!("{}apikeys", self.prefix)
    }

    /// `{p}owner:`, which the change and purge scripts complete with a record's node.
    pub(super) fn owner_prefix(&self) -> String {
        format!("{}owner:", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_starts_with_the_prefix() {
        let keys = Keys::new("{tm}:");
        assert_eq!(keys.task("0190-ab"), "{tm}:task:0190-ab");
        assert_eq!(keys.idempotency("order 7"), "{tm}:idem:order 7");
        assert_eq!(keys.unfinished(), "{tm}:unfinished");
        assert_eq!(keys.recent(), "{tm}:recent");
        assert_eq!(keys.finished(), "{tm}:finished");
        assert_eq!(keys.owner("node-a"), "{tm}:owner:node-a");
        assert!(keys.owner("n").starts_with(&keys.owner_prefix()));
        assert_eq!(keys.lease("node-a"), "{tm}:lease:node-a");
        assert!(keys.lease("n").starts_with(&keys.lease_prefix()));
        assert_eq!(keys.holders(), "{tm}:holders");
        assert!(keys.task("x").starts_with(&keys.task_prefix()));
        assert_eq!(keys.prefix(), "{tm}:");
        assert_eq!(keys.api_key("abc"), "{tm}:apikey:abc");
        assert_eq!(keys.api_keys(), "{tm}:apikeys");
    }
}
