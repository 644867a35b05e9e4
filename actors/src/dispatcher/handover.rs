//! Handover: getting placed tasks to their pool — the local one, or a peer's endpoint —
//! and moving the tasks that must move: refused by a peer, or claimed from a lost node.
//! A task held by one node in the store is moved there (`reassign`, which fences the old
//! holder) before it is sent to another.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::ActorRef;
use taskmesh_cluster::wire::DispatchedTask;
use taskmesh_kernels::task::{TaskId, TaskStatus};

use super::DispatcherMessage;
use super::policy::{self, Need, PoolView};
use super::remote::{self, CallFailure, frames};
use super::state::DispatcherState;
use crate::context::NodeContext;
use crate::handoff::Job;
use crate::store::Transition;
use crate::task::{Finish, TaskRecord, now_ms};
use crate::worker_pool::PoolMessage;
use crate::worker_pool::retry::may_retry;

/// How long to wait before retrying a failed move of tasks between holders.
const TRANSFER_RETRY: Duration = Duration::from_secs(1);

/// Sends tasks to the local pool's mailbox, `admitted` of them under a reservation:
/// from then on they count as incoming in [`crate::handoff::LocalLoad`] until the pool
/// takes them.
pub(super) fn to_local_pool(ctx: &NodeContext, jobs: Vec<Job>, admitted: usize) {
    let count = jobs.len();
    ctx.local_load.send(count, admitted);
    match ActorRef::<PoolMessage>::where_is(ctx.names.pool.clone()) {
        Some(pool) if pool.cast(PoolMessage::Enqueue(jobs)).is_ok() => {
            let m = &ctx.metrics.dispatches;
            m.with_label_values(&["local"]).inc_by(count as u64);
        }
        _ => {
            ctx.local_load.taken(count);
            tracing::warn!(
                "local pool unavailable; the tasks stay queued in the store and are \
                 recovered when it restarts"
            );
        }
    }
}

/// Splits tasks claimed from the lost node `from` into those whose attempt died with it
/// and has no retry left (failed rather than run again: a task that keeps killing nodes
/// must not crash-loop the cluster) and those that run again.
pub(super) fn lost_attempts(
    from: &str,
    records: Vec<TaskRecord>,
) -> (Vec<TaskRecord>, Vec<TaskRecord>) {
    let died = Some(crate::store::claimed_error(from));
    records
        .into_iter()
        .partition(|r| r.error == died && !may_retry(r.attempts, r.spec.max_retries))
}

/// Where moved tasks go ([`rehome`]).
#[derive(Debug, Default)]
pub(super) struct Moves {
    /// Tasks for each node.
    pub(super) to: HashMap<String, Vec<Job>>,
    /// Tasks that stay with the node that holds them in the store: no available pool
    /// has their kind, nor does this node.
    pub(super) stay: Vec<Job>,
}

/// Where accepted tasks that must move go, one by one, avoiding the node `avoid`:
/// placed as new ones (only where their kind runs), and to `here` when no pool can take
/// them but this node has their kind (`runs_here`): they were accepted, so they run
/// somewhere, over capacity or labels if need be. A task whose kind no available pool
/// nor this node has stays with its holder.
pub(super) fn rehome(
    mut views: Vec<PoolView>,
    avoid: &str,
    here: &str,
    runs_here: impl Fn(&str) -> bool,
    jobs: Vec<Job>,
) -> Moves {
    for view in &mut views {
        if view.node == avoid {
            view.available = false;
        }
    }
    let mut moves = Moves::default();
    for job in jobs {
        let need = Need::of(&job.spec);
        let target = match policy::place_all(&views, &[need]) {
            Ok(placed) => {
                views[placed[0]].queued += 1;
                views[placed[0]].node.clone()
            }
            Err(_) if runs_here(need.kind) => here.to_owned(),
            Err(_) => {
                moves.stay.push(job);
                continue;
            }
        };
        moves.to.entry(target).or_default().push(job);
    }
    moves
}

impl DispatcherState {
    /// Sends tasks that were not admitted for `node` (claimed, moved or refused ones).
    pub(super) fn send(&mut self, node: &str, jobs: Vec<Job>) {
        if self.is_local(node) {
            to_local_pool(&self.ctx, jobs, 0);
            return;
        }
        self.send_remote(node, jobs);
    }

    pub(super) fn send_remote(&mut self, node: &str, jobs: Vec<Job>) {
        let now = Instant::now();
        let endpoint = self.peers.peers.get_mut(node).and_then(|peer| {
            let change = peer.breaker.on_send(now);
            peer.endpoint.clone().map(|cell| (cell, change))
        });
        let Some((cell, change)) = endpoint else {
            self.place_again(node, jobs);
            return;
        };
        if let Some(to) = change {
            self.circuit_changed(node, to);
        }
        if let Some(entry) = self.pools.get_mut(node) {
            entry.unacked += jobs.len();
        }
        for chunk in frames(jobs) {
            let tasks = chunk
                .iter()
                .map(|j| DispatchedTask {
                    id: j.id,
                    spec: Arc::clone(&j.spec),
                    attempts: j.attempts,
                    recovered: j.recovered,
                    lease: j.lease,
                })
                .collect();
            let (from, node_id) = (self.ctx.node_id.to_string(), node.to_owned());
            let (myself, timeout, cell) =
                (self.myself.clone(), self.config.ack_timeout, cell.clone());
            tokio::spawn(async move {
                let sent_at = Instant::now();
                let outcome = remote::dispatch(&cell, from, tasks, timeout).await;
                let _ = myself.cast(DispatcherMessage::Dispatched {
                    node_id,
                    jobs: chunk,
                    sent_at,
                    outcome,
                });
            });
        }
    }

    pub(super) fn dispatched(
        &mut self,
        node: &str,
        jobs: Vec<Job>,
        sent_at: Instant,
        outcome: Result<(), CallFailure>,
    ) {
        let m = &self.ctx.metrics;
        let change = match &outcome {
            Ok(()) => {
                m.remote_dispatch
                    .with_label_values(&[] as &[&str])
                    .observe(sent_at.elapsed().as_secs_f64());
                m.dispatches
                    .with_label_values(&["remote"])
                    .inc_by(jobs.len() as u64);
                self.peers
                    .peers
                    .get_mut(node)
                    .and_then(|p| p.breaker.on_success())
            }
            Err(failure) => {
                m.remote_dispatch_failures
                    .with_label_values(&[failure.reason])
                    .inc();
                tracing::warn!(
                    peer = node,
                    tasks = jobs.len(),
                    reason = failure.reason,
                    detail = %failure.detail,
                    "dispatch to a peer failed"
                );
                let now = Instant::now();
                let peer = self.peers.peers.get_mut(node);
                if failure.reason == "refused" {
                    // It answered: a full or draining peer is healthy, and its load
                    // report keeps work away. Its circuit is for peers that fail.
                    peer.and_then(|p| p.breaker.on_success())
                } else {
                    peer.and_then(|p| p.breaker.on_failure(now))
                }
            }
        };
        if let Some(to) = change {
            self.circuit_changed(node, to);
        }
        if let Some(entry) = self.pools.get_mut(node) {
            let refused = matches!(&outcome, Err(f) if f.reason == "refused");
            entry.answered(jobs.len(), !refused);
        }
        match outcome {
            Ok(()) => {}
            // The peer answered that it did not take them: place them elsewhere.
            Err(failure) if failure.reason == "refused" => self.place_again(node, jobs),
            // No answer: the peer may hold and run them (the acknowledgement was lost in
            // a cut). They stay with it, as the store says: its sweep adopts them if the
            // dispatch never arrived, and failover claims them if it is gone
            // (`crate::failover`). Moving them away would run them twice.
            Err(_) => tracing::warn!(
                peer = node,
                tasks = jobs.len(),
                "dispatch to a peer unconfirmed; the tasks stay with it until the store shows it gone"
            ),
        }
    }

    /// Places tasks held in the store by `holder` again, avoiding it. They were
    /// accepted, so when no pool has room they go to the local pool regardless of its
    /// capacity or labels — if it has their kind; if not, they stay with `holder`
    /// ([`Self::place_held`]).
    pub(super) fn place_again(&mut self, avoid: &str, jobs: Vec<Job>) {
        self.place_held(avoid, avoid, jobs);
    }

    /// Tasks claimed from a lost node: this node holds them now; place them anywhere
    /// but the lost node.
    pub(super) fn reclaimed(&mut self, from: &str, records: Vec<TaskRecord>) {
        // A task whose attempt died with its node has used that attempt; one that has
        // no retry left is failed rather than run again (a task that keeps killing
        // nodes must not crash-loop the cluster).
        let (exhausted, alive) = lost_attempts(from, records);
        for record in exhausted {
            self.fail_lost(record);
        }
        let jobs = alive.into_iter().map(Job::from_record).collect();
        let here = self.ctx.node_id.to_string();
        self.place_held(&here, "", jobs);
    }

    pub(super) fn fail_lost(&self, record: TaskRecord) {
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            let finish = Finish {
                status: TaskStatus::Failed,
                result: None,
                error: Some("the node running its last attempt was lost; no retry left".into()),
                node: Some(ctx.node_id.to_string()),
                lease: record.lease,
                attempts: record.attempts,
                started_at_ms: record.started_at_ms,
                finished_at_ms: now_ms(),
            };
            if let Ok(Transition::Applied) = ctx.store.finish(&record.id, finish).await {
                ctx.notifier.notify(&record.id);
                ctx.metrics
                    .completed
                    .with_label_values(&[record.spec.kind.as_str(), "failed"])
                    .inc();
            }
        });
    }

    /// Sends tasks held by `holder` to `target`, moving them in the store first when the
    /// two differ, so the old holder's late writes are refused (fencing). A moved task
    /// is sent under the lease token the move gave it.
    pub(super) fn transfer(&mut self, holder: &str, target: String, jobs: Vec<Job>) {
        if holder == target {
            return self.send(&target, jobs);
        }
        let ids: Vec<TaskId> = jobs.iter().map(|j| j.id).collect();
        let (store, myself, holder) = (
            self.ctx.store.clone(),
            self.myself.clone(),
            holder.to_owned(),
        );
        tokio::spawn(async move {
            match store.reassign(&ids, &holder, &target).await {
                Ok(moved) => {
                    let leases: HashMap<TaskId, u64> =
                        moved.into_iter().map(|r| (r.id, r.lease)).collect();
                    let jobs: Vec<Job> = jobs
                        .into_iter()
                        .filter_map(|mut j| {
                            j.lease = *leases.get(&j.id)?;
                            Some(j)
                        })
                        .collect();
                    if !jobs.is_empty() {
                        let _ = myself.cast(DispatcherMessage::Handover { node: target, jobs });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, %holder, %target, "moving tasks in the store failed; retrying");
                    myself.send_after(TRANSFER_RETRY, move || DispatcherMessage::Transfer {
                        holder,
                        target,
                        jobs,
                    });
                }
            }
        });
    }

    /// Moves tasks held by `holder` to where [`rehome`] places them. Those whose kind no
    /// available node nor this one has stay with `holder` in the store: a live holder's
    /// sweep adopts them (over its capacity), a lost one's are claimed by failover and
    /// placed again then; held here, this pool runs them and fails them as an unknown
    /// kind, rather than keep them waiting for a node that may never come back.
    pub(super) fn place_held(&mut self, holder: &str, avoid: &str, jobs: Vec<Job>) {
        let (_, views) = self.views(Instant::now());
        let kernels = &self.ctx.kernels;
        let moves = rehome(
            views,
            avoid,
            &self.ctx.node_id,
            |k| kernels.contains(k),
            jobs,
        );
        for (node, jobs) in moves.to {
            self.transfer(holder, node, jobs);
        }
        if moves.stay.is_empty() {
            return;
        }
        let kinds: Vec<&str> = moves.stay.iter().map(|j| j.spec.kind.as_str()).collect();
        tracing::warn!(%holder, tasks = moves.stay.len(), ?kinds,
            "no available node has these tasks' kinds; they stay with their holder");
        if self.is_local(holder) {
            to_local_pool(&self.ctx, moves.stay, 0);
        }
    }
}

#[cfg(test)]
mod tests;
