//! The dispatcher's state and what each message does to it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{ActorCell, ActorRef, RpcReplyPort};
use taskmesh_cluster::breaker::CircuitState;
use taskmesh_cluster::detector::Liveness;
use taskmesh_cluster::protocol::PROTOCOL_VERSION;
use taskmesh_cluster::wire::{
    CancelFound, DispatchedTask, ENDPOINT_GROUP, Hello, LoadReport, Notice,
};
use taskmesh_kernels::task::{TaskId, TaskStatus};

use super::peers::{PeerPulse, PeerState, PeerTable};
use super::policy::{self, PlaceError, PoolView};
use super::remote::{self, CallFailure};
use super::view::{ClusterView, LoadView, NodeView};
use super::{DispatcherConfig, DispatcherMessage};
use crate::context::{ENDPOINT_ROLE, NodeContext, node_of};
use crate::failover::FailoverMessage;
use crate::handoff::{CancelOutcome, Job, PoolLoad};
use crate::store::Transition;
use crate::task::{Finish, TaskRecord, now_ms};
use crate::worker_pool::PoolMessage;
use crate::worker_pool::retry::may_retry;

/// Room reserved for a submission: one target node per task, in order.
#[derive(Debug)]
pub struct Reservation {
    targets: Vec<String>,
}

impl Reservation {
    /// How many tasks the reservation covers.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether it covers no task.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The node chosen for each task, in order.
    pub fn targets(&self) -> &[String] {
        &self.targets
    }
}

struct PoolEntry {
    last: PoolLoad,
    /// Tasks sent to the pool's current incarnation.
    sent_total: u64,
    /// Tasks admitted for the pool and not yet placed or released.
    reserved: usize,
}

impl PoolEntry {
    fn view(&self, local: bool, available: bool) -> PoolView {
        let unseen = self.sent_total.saturating_sub(self.last.received_total) as usize;
        PoolView {
            node: self.last.node.clone(),
            local,
            labels: self.last.labels.clone(),
            capacity: self.last.capacity,
            queued: self.last.queued.iter().sum::<usize>() + unseen + self.reserved,
            running: self.last.busy,
            workers: self.last.workers,
            available: available && !self.last.draining && self.last.workers > 0,
        }
    }
}

fn to_report(load: &PoolLoad) -> LoadReport {
    LoadReport {
        node_id: load.node.clone(),
        incarnation: load.incarnation,
        queued: load.queued.map(|q| q as u64),
        delayed: load.delayed as u64,
        busy: load.busy as u64,
        workers: load.workers as u64,
        capacity: load.capacity as u64,
        received_total: load.received_total,
        labels: load.labels.clone(),
        draining: load.draining,
    }
}

fn from_report(r: LoadReport) -> PoolLoad {
    PoolLoad {
        node: r.node_id,
        incarnation: r.incarnation,
        queued: r.queued.map(|q| q as usize),
        delayed: r.delayed as usize,
        busy: r.busy as usize,
        workers: r.workers as usize,
        capacity: r.capacity as usize,
        received_total: r.received_total,
        labels: r.labels,
        draining: r.draining,
    }
}

/// How long to wait before retrying a failed move of tasks between holders.
const TRANSFER_RETRY: Duration = Duration::from_secs(1);

/// The most task payload one dispatch message carries. ractor_cluster tears down a
/// whole session on a frame over 16 MiB, so larger dispatches are split well below it.
const MAX_FRAME_PAYLOAD: usize = 4 << 20;

/// Splits jobs into dispatch messages of at most [`MAX_FRAME_PAYLOAD`] bytes of payload
/// (a single task is bounded by the HTTP params limit).
fn frames(jobs: Vec<Job>) -> Vec<Vec<Job>> {
    let mut out: Vec<Vec<Job>> = Vec::new();
    let mut size = 0;
    for job in jobs {
        let len = job.spec.params.len() + job.spec.kind.len() + 256;
        match out.last_mut() {
            Some(chunk) if size + len <= MAX_FRAME_PAYLOAD => chunk.push(job),
            _ => {
                out.push(vec![job]);
                size = 0;
            }
        }
        size += len;
    }
    out
}

/// The node id of a peer's endpoint, from its registered name `{node_id}/endpoint`.
fn endpoint_node(cell: &ActorCell) -> Option<String> {
    node_of(&cell.get_name()?, ENDPOINT_ROLE)
}

/// The dispatcher's state.
pub struct DispatcherState {
    ctx: NodeContext,
    config: DispatcherConfig,
    myself: ActorRef<DispatcherMessage>,
    pools: HashMap<String, PoolEntry>,
    peers: PeerTable,
}

impl DispatcherState {
    pub(super) fn new(
        ctx: NodeContext,
        config: DispatcherConfig,
        myself: ActorRef<DispatcherMessage>,
    ) -> Self {
        Self {
            ctx,
            peers: PeerTable::new(config.peers),
            config,
            myself,
            pools: HashMap::new(),
        }
    }

    fn is_local(&self, node: &str) -> bool {
        node == &*self.ctx.node_id
    }

    /// The local pool's view, from its live figures; `None` before the pool published.
    fn local_view(&self) -> Option<PoolView> {
        let board = &self.ctx.local_load;
        let f = board.figures()?;
        Some(PoolView {
            node: self.ctx.node_id.to_string(),
            local: true,
            labels: board.labels().to_vec(),
            capacity: f.capacity,
            queued: f.queued.iter().sum::<usize>() + board.incoming(),
            running: f.busy,
            workers: f.workers,
            available: !f.draining && f.workers > 0,
        })
    }

    /// Every pool's view at `now`, sorted by node, with the node ids.
    pub(super) fn views(&self, now: Instant) -> (Vec<String>, Vec<PoolView>) {
        let mut views: Vec<PoolView> = self
            .pools
            .iter()
            .filter(|(n, _)| !self.is_local(n))
            .map(|(n, entry)| entry.view(false, self.peers.takes_work(n, now)))
            .chain(self.local_view())
            .collect();
        views.sort_by(|a, b| a.node.cmp(&b.node));
        (views.iter().map(|v| v.node.clone()).collect(), views)
    }

    pub(super) fn admit(&mut self, classes: &[Option<String>]) -> Result<Reservation, PlaceError> {
        let (nodes, views) = self.views(Instant::now());
        let classes: Vec<Option<&str>> = classes.iter().map(Option::as_deref).collect();
        let placed = policy::place_all(&views, &classes)?;
        let targets: Vec<String> = placed.into_iter().map(|i| nodes[i].clone()).collect();
        for node in &targets {
            if self.is_local(node) {
                self.ctx.local_load.add_incoming(1);
            } else if let Some(entry) = self.pools.get_mut(node) {
                entry.reserved += 1;
            }
        }
        Ok(Reservation { targets })
    }

    pub(super) fn place(&mut self, reservation: Reservation, jobs: Vec<Option<Job>>) {
        let mut batches: HashMap<String, Vec<Job>> = HashMap::new();
        let mut local = Vec::new();
        for (node, job) in reservation.targets.into_iter().zip(jobs) {
            if self.is_local(&node) {
                match job {
                    Some(job) => local.push(job),
                    None => self.ctx.local_load.remove_incoming(1),
                }
                continue;
            }
            if let Some(entry) = self.pools.get_mut(&node) {
                entry.reserved = entry.reserved.saturating_sub(1);
            }
            if let Some(job) = job {
                batches.entry(node).or_default().push(job);
            }
        }
        if !local.is_empty() {
            self.send_local(local);
        }
        for (node, jobs) in batches {
            self.send(&node, jobs);
        }
    }

    /// Sends tasks that were not admitted for `node` (claimed, moved or refused ones).
    pub(super) fn send(&mut self, node: &str, jobs: Vec<Job>) {
        if self.is_local(node) {
            self.ctx.local_load.add_incoming(jobs.len());
            self.send_local(jobs);
            return;
        }
        if let Some(entry) = self.pools.get_mut(node) {
            entry.sent_total += jobs.len() as u64;
        }
        self.send_remote(node, jobs);
    }

    /// Hands tasks counted as incoming to the local pool.
    fn send_local(&self, jobs: Vec<Job>) {
        let count = jobs.len();
        match ActorRef::<PoolMessage>::where_is(self.ctx.names.pool.clone()) {
            Some(pool) if pool.cast(PoolMessage::Enqueue(jobs)).is_ok() => {
                let m = &self.ctx.metrics.dispatches;
                m.with_label_values(&["local"]).inc_by(count as u64);
            }
            _ => {
                self.ctx.local_load.remove_incoming(count);
                tracing::warn!(
                    "local pool unavailable; the tasks stay queued in the store and are \
                 recovered when it restarts"
                );
            }
        }
    }

    fn send_remote(&mut self, node: &str, jobs: Vec<Job>) {
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
        match outcome {
            Ok(()) => {}
            // The peer answered that it did not take them: place them elsewhere.
            Err(failure) if failure.reason == "refused" => {
                if let Some(entry) = self.pools.get_mut(node) {
                    entry.sent_total = entry.sent_total.saturating_sub(jobs.len() as u64);
                }
                self.place_again(node, jobs);
            }
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
    /// capacity or labels.
    fn place_again(&mut self, avoid: &str, jobs: Vec<Job>) {
        self.place_held(avoid, avoid, jobs);
    }

    /// Tasks claimed from a lost node: this node holds them now; place them anywhere
    /// but the lost node.
    pub(super) fn reclaimed(&mut self, from: &str, records: Vec<TaskRecord>) {
        // A task whose attempt died with its node has used that attempt; one that has
        // no retry left is failed rather than run again (a task that keeps killing
        // nodes must not crash-loop the cluster).
        let died = Some(crate::store::claimed_error(from));
        let (exhausted, alive): (Vec<TaskRecord>, Vec<TaskRecord>) = records
            .into_iter()
            .partition(|r| r.error == died && !may_retry(r.attempts, r.spec.max_retries));
        for record in exhausted {
            self.fail_lost(record);
        }
        let jobs = alive.into_iter().map(Job::from_record).collect();
        let here = self.ctx.node_id.to_string();
        self.place_held(&here, "", jobs);
    }

    fn fail_lost(&self, record: TaskRecord) {
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

    fn place_held(&mut self, holder: &str, avoid: &str, jobs: Vec<Job>) {
        let (nodes, mut views) = self.views(Instant::now());
        for (node, view) in nodes.iter().zip(views.iter_mut()) {
            if node == avoid {
                view.available = false;
            }
        }
        let mut batches: HashMap<String, Vec<Job>> = HashMap::new();
        for job in jobs {
            let class = job.spec.class.as_deref();
            let target = match policy::place_all(&views, &[class]) {
                Ok(placed) => {
                    views[placed[0]].queued += 1;
                    nodes[placed[0]].clone()
                }
                Err(_) => self.ctx.node_id.to_string(),
            };
            batches.entry(target).or_default().push(job);
        }
        for (node, jobs) in batches {
            self.transfer(holder, node, jobs);
        }
    }

    fn circuit_changed(&self, node: &str, to: CircuitState) {
        let m = &self.ctx.metrics;
        m.circuit_transitions
            .with_label_values(&[node, to.as_str()])
            .inc();
        let level = match to {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        };
        m.circuit_state.with_label_values(&[node]).set(level);
        tracing::info!(peer = node, circuit = to.as_str(), "circuit state changed");
    }

    fn record_load(&mut self, load: PoolLoad) {
        match self.pools.get_mut(&load.node) {
            Some(entry) if entry.last.incarnation == load.incarnation => entry.last = load,
            _ => {
                // A new pool (or a restarted one): it has seen nothing we sent before.
                let entry = PoolEntry {
                    sent_total: load.received_total,
                    reserved: 0,
                    last: load,
                };
                self.pools.insert(entry.last.node.clone(), entry);
            }
        }
    }

    /// Reports the local pool's load to every introduced peer.
    pub(super) fn broadcast(&mut self) {
        let Some(load) = self.ctx.local_load.load(&self.ctx.node_id) else {
            return;
        };
        let report = to_report(&load);
        for peer in self.peers.peers.values() {
            if let Some(cell) = &peer.endpoint
                && peer.introduced
            {
                remote::notify(cell, Notice::Load(report.clone()));
            }
        }
    }

    pub(super) fn tick(&mut self) {
        for node in self.peers.forget_long_down(now_ms()) {
            tracing::info!(peer = %node, after_secs = self.config.peers.forget_after.as_secs(),
                "peer down too long; forgotten (it comes back as new if it returns)");
            self.pools.remove(&node);
        }
        self.report_down();
        self.refresh_gauges();
    }

    /// Hands the peers held down, and why, to the Failover actor, which claims their
    /// tasks once the store shows they stopped ([`crate::failover`]).
    fn report_down(&self) {
        let failover = ActorRef::<FailoverMessage>::where_is(self.ctx.names.failover.clone());
        if let Some(failover) = failover {
            let _ = failover.cast(FailoverMessage::Down(self.peers.down_set()));
        }
    }

    pub(super) fn peer_liveness(&mut self, pulses: &[PeerPulse]) {
        for pulse in pulses {
            let Some(before) = self.peers.pulse(pulse) else {
                if pulse.liveness == Liveness::Up && !self.peers.peers.contains_key(&pulse.node) {
                    self.rejoin(&pulse.node);
                }
                continue;
            };
            match pulse.liveness {
                Liveness::Up => {
                    tracing::info!(peer = %pulse.node, was = before.as_str(),
                        "peer's heartbeats arrive again; it is up");
                }
                Liveness::Suspect => {
                    tracing::warn!(peer = %pulse.node, was = before.as_str(),
                        "peer missed its heartbeats; it is suspect and gets no new work");
                }
                Liveness::Down => {
                    tracing::warn!(peer = %pulse.node, was = before.as_str(),
                        "peer silent past the down timeout; it is down");
                }
            }
        }
        self.report_down();
        self.refresh_gauges();
    }

    /// A forgotten peer is heard again with its session still open (it was paused past
    /// the forget time): introduce it again, as new.
    fn rejoin(&mut self, node: &str) {
        let cells = ractor::pg::get_members(&ENDPOINT_GROUP.to_owned());
        let cells: Vec<ActorCell> = cells
            .into_iter()
            .filter(|c| endpoint_node(c).as_deref() == Some(node))
            .collect();
        if !cells.is_empty() {
            tracing::info!(peer = node, "a forgotten peer is heard again");
            self.endpoints_joined(cells);
        }
    }

    pub(super) fn leave(&mut self) {
        let node_id = self.ctx.node_id.to_string();
        for peer in self.peers.peers.values() {
            if let Some(cell) = &peer.endpoint {
                remote::notify(
                    cell,
                    Notice::Leaving {
                        node_id: node_id.clone(),
                    },
                );
            }
        }
    }

    pub(super) fn peer_load(&mut self, report: LoadReport) {
        if self.is_local(&report.node_id) {
            return;
        }
        self.record_load(from_report(report));
    }

    pub(super) fn peer_hello(&mut self, hello: Hello) {
        if hello.protocol_version == PROTOCOL_VERSION && !self.is_local(&hello.node.node_id) {
            let node = hello.node.node_id.clone();
            self.peers.introduced(hello.node, now_ms());
            self.send_load_to(&node);
            self.refresh_gauges();
        }
    }

    /// Sends the local pool's last load to one peer, so a peer that just joined can
    /// place work here without waiting for the next broadcast.
    fn send_load_to(&self, node: &str) {
        let local = self.ctx.local_load.load(&self.ctx.node_id);
        let endpoint = self.peers.peers.get(node).and_then(|p| p.endpoint.as_ref());
        if let (Some(load), Some(cell)) = (local, endpoint) {
            remote::notify(cell, Notice::Load(to_report(&load)));
        }
    }

    pub(super) fn peer_leaving(&mut self, node: &str) {
        tracing::info!(peer = node, "peer is leaving the cluster");
        self.peers.leaving(node);
        self.report_down();
        self.refresh_gauges();
    }

    pub(super) fn welcomed(&mut self, node: &str, answer: Result<Hello, CallFailure>) {
        match answer {
            Ok(hello) if hello.protocol_version == PROTOCOL_VERSION => {
                tracing::info!(peer = node, address = %hello.node.cluster_address, "peer joined");
                self.peers.introduced(hello.node, now_ms());
                self.send_load_to(node);
            }
            Ok(hello) => tracing::warn!(
                peer = node,
                theirs = hello.protocol_version,
                ours = PROTOCOL_VERSION,
                "peer speaks another protocol version; it gets no work"
            ),
            Err(failure) if failure.reason == "refused" => tracing::warn!(
                peer = node,
                detail = %failure.detail,
                "peer refused our introduction; it gets no work until it rejoins"
            ),
            Err(failure) => {
                tracing::warn!(peer = node, reason = failure.reason, detail = %failure.detail,
                    "peer did not answer our introduction; trying again");
                if let Some(cell) = self.peers.peers.get(node).and_then(|p| p.endpoint.clone()) {
                    self.introduce(node.to_owned(), cell);
                }
            }
        }
        self.refresh_gauges();
    }

    fn introduce(&self, node_id: String, cell: ActorCell) {
        let Some(info) = self.ctx.cluster.as_deref() else {
            return;
        };
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            node: info.clone(),
        };
        let (myself, timeout) = (self.myself.clone(), self.config.hello_timeout);
        tokio::spawn(async move {
            let answer = remote::hello(&cell, hello, timeout).await;
            if answer.is_err() {
                tokio::time::sleep(timeout).await;
            }
            let _ = myself.cast(DispatcherMessage::Welcomed { node_id, answer });
        });
    }

    pub(super) fn endpoints_joined(&mut self, cells: Vec<ActorCell>) {
        for cell in cells {
            if cell.get_id().is_local() {
                continue;
            }
            let Some(node) = endpoint_node(&cell) else {
                continue;
            };
            tracing::info!(peer = %node, "peer endpoint visible; introducing this node");
            self.peers.endpoint_joined(&node, cell.clone(), now_ms());
            self.introduce(node, cell);
        }
        self.refresh_gauges();
    }

    pub(super) fn endpoints_left(&mut self, cells: Vec<ActorCell>) {
        for cell in cells {
            if let Some(node) = endpoint_node(&cell)
                && self.peers.endpoint_left(&node, &cell)
            {
                tracing::warn!(peer = %node, "peer session closed; it is down");
            }
        }
        self.report_down();
        self.refresh_gauges();
    }

    fn refresh_gauges(&self) {
        for (state, count) in self.peers.counts() {
            let g = &self.ctx.metrics.peers;
            g.with_label_values(&[state.as_str()]).set(count as i64);
        }
    }

    pub(super) fn cancel(&self, id: TaskId, reply: RpcReplyPort<CancelOutcome>) {
        let pool = ActorRef::<PoolMessage>::where_is(self.ctx.names.pool.clone());
        let peers: Vec<ActorCell> = self
            .peers
            .peers
            .values()
            .filter(|p| p.introduced && !p.down)
            .filter_map(|p| p.endpoint.clone())
            .collect();
        let timeout = self.config.ack_timeout;
        // Answer from a task of its own so a slow pool or peer never stalls admission.
        tokio::spawn(async move {
            let local = match pool {
                Some(pool) => ractor::call_t!(pool, PoolMessage::Cancel, 2000, id)
                    .unwrap_or(CancelOutcome::NotHere),
                None => CancelOutcome::NotHere,
            };
            if local != CancelOutcome::NotHere {
                let _ = reply.send(local);
                return;
            }
            let mut asks = tokio::task::JoinSet::new();
            for cell in peers {
                asks.spawn(async move { remote::cancel(&cell, id, timeout).await });
            }
            let found: Vec<CancelFound> = asks.join_all().await;
            let outcome = if found.contains(&CancelFound::Signalled) {
                CancelOutcome::Signalled
            } else if found.contains(&CancelFound::Dequeued) {
                CancelOutcome::Removed
            } else {
                CancelOutcome::NotHere
            };
            let _ = reply.send(outcome);
        });
    }

    pub(super) fn cluster_view(&self, now: Instant) -> ClusterView {
        self.refresh_gauges();
        let info = self.ctx.cluster.as_deref();
        let local = self.ctx.local_load.load(&self.ctx.node_id);
        let local = local.as_ref();
        let node = NodeView {
            id: self.ctx.node_id.to_string(),
            address: info.map(|i| i.cluster_address.clone()),
            http_address: info.map(|i| i.http_address.clone()),
            state: PeerState::Up,
            circuit: CircuitState::Closed.as_str(),
            labels: local.map(|l| l.labels.clone()).unwrap_or_default(),
            load: local.map(LoadView::from),
            last_heard_ms: now_ms(),
        };
        let mut peers: Vec<NodeView> = self
            .peers
            .peers
            .iter()
            .map(|(id, p)| NodeView {
                id: id.clone(),
                address: p.info.as_ref().map(|i| i.cluster_address.clone()),
                http_address: p.info.as_ref().map(|i| i.http_address.clone()),
                state: p.state(),
                circuit: p.breaker.state(now).as_str(),
                load: self.pools.get(id).map(|e| LoadView::from(&e.last)),
                labels: p
                    .info
                    .as_ref()
                    .map(|i| i.labels.clone())
                    .unwrap_or_default(),
                last_heard_ms: p.last_heard_ms,
            })
            .collect();
        peers.sort_by(|a, b| a.id.cmp(&b.id));
        ClusterView { node, peers }
    }
}

#[cfg(test)]
mod tests {
    use taskmesh_kernels::task::{Priority, TaskSpec};

    use super::*;

    fn job(params_len: usize) -> Job {
        Job::new(
            TaskId::generate(),
            TaskSpec {
                kind: "echo".into(),
                params: "x".repeat(params_len),
                priority: Priority::Normal,
                timeout_ms: None,
                max_retries: 0,
                idempotency_key: None,
                class: None,
                request_id: None,
            },
        )
    }

    #[test]
    fn dispatches_are_split_below_the_frame_limit_and_keep_every_job() {
        let jobs: Vec<Job> = (0..40).map(|_| job(256 << 10)).collect();
        let ids: Vec<TaskId> = jobs.iter().map(|j| j.id).collect();
        let chunks = frames(jobs);
        assert!(chunks.len() >= 3, "{} chunks", chunks.len());
        for chunk in &chunks {
            let bytes: usize = chunk.iter().map(|j| j.spec.params.len()).sum();
            assert!(bytes <= MAX_FRAME_PAYLOAD, "{bytes}");
        }
        let back: Vec<TaskId> = chunks.into_iter().flatten().map(|j| j.id).collect();
        assert_eq!(back, ids);
        let small: Vec<Job> = (0..1000).map(|_| job(10)).collect();
        assert_eq!(frames(small).len(), 1);
        assert!(frames(Vec::new()).is_empty());
    }
}
