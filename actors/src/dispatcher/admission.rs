//! Admission: how much room each pool has, which pools a submission goes to, and the
//! load reports that keep that view fresh. The decision is [`super::policy::place_all`];
//! this module keeps the figures it is fed and the room reserved for submissions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use ractor::ActorRef;
use taskmesh_cluster::wire::{LoadReport, Notice};

use super::DispatcherMessage;
use super::handover::to_local_pool;
use super::policy::{self, Need, PlaceError, PoolView};
use super::remote;
use super::state::DispatcherState;
use crate::context::NodeContext;
use crate::handoff::{Job, LoadFigures, LocalLoad, PoolLoad};

#[cfg(test)]
mod tests;

/// What placement needs of one submitted task: its kind and its optional class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Demand {
    /// The task's kind.
    pub kind: String,
    /// The task's resource class.
    pub class: Option<String>,
}

impl Demand {
    pub(crate) fn need(&self) -> Need<'_> {
        Need {
            kind: &self.kind,
            class: self.class.as_deref(),
        }
    }
}

impl From<Need<'_>> for Demand {
    fn from(need: Need<'_>) -> Self {
        Self {
            kind: need.kind.to_owned(),
            class: need.class.map(str::to_owned),
        }
    }
}

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

/// A peer's pool, as this node knows it.
pub(super) struct PoolEntry {
    pub(super) last: PoolLoad,
    /// Tasks on their way to it as it last reported (admitted there, or sent to it).
    pub(super) admitting: usize,
    /// Tasks this node sent to the pool that it has not acknowledged yet.
    pub(super) unacked: usize,
    /// Tasks it acknowledged (or may hold: no answer) since its last report, which may
    /// not count them yet.
    pub(super) unreported: usize,
    /// Tasks this node admitted for the pool and has not yet placed or released.
    pub(super) reserved: usize,
}

impl PoolEntry {
    /// A pool first heard of.
    pub(super) fn new(last: PoolLoad, admitting: usize) -> Self {
        Self {
            unacked: 0,
            unreported: 0,
            reserved: 0,
            admitting,
            last,
        }
    }

    /// A new report: it counts every task the pool acknowledged before it was made.
    /// (One made between the pool's taking a dispatch and its figures' update can miss
    /// them until the next report, a few hundred milliseconds; never for longer.)
    pub(super) fn reported(&mut self, last: PoolLoad, admitting: usize) {
        self.last = last;
        self.admitting = admitting;
        self.unreported = 0;
    }

    /// The pool answered a dispatch of `n` tasks: it holds them (`held`; also when it
    /// did not answer at all, since it may), or it refused them.
    pub(super) fn answered(&mut self, n: usize, held: bool) {
        self.unacked = self.unacked.saturating_sub(n);
        if held {
            self.unreported += n;
        }
    }

    /// Its view for placement: what it reported, plus what this node sent it that the
    /// report does not count yet (waiting), plus the admissions on their way to it, its
    /// own as reported and this node's (room only) — as this node counts its own pool.
    /// (Comparing what this node sent with what the pool says it received cannot work:
    /// the pool receives from every node, its own ingress included.)
    pub(super) fn view(&self, available: bool, kinds: Arc<[String]>) -> PoolView {
        let unseen = self.unacked + self.unreported;
        PoolView {
            node: self.last.node.clone(),
            local: false,
            labels: self.last.labels.clone(),
            kinds,
            unserved: self.last.unserved.as_slice().into(),
            capacity: self.last.figures.capacity,
            queued: self.last.figures.queued.iter().sum::<usize>() + unseen,
            admitting: self.admitting + self.reserved,
            running: self.last.figures.busy,
            workers: self.last.figures.workers,
            available: available && !self.last.figures.draining && self.last.figures.workers > 0,
        }
    }
}

/// The local pool's view, from its live figures; `None` before the pool published.
pub(super) fn local_view(node: &str, board: &LocalLoad) -> Option<PoolView> {
    let f = board.figures()?;
    Some(PoolView {
        node: node.to_owned(),
        local: true,
        labels: board.labels().to_vec(),
        kinds: board.kinds(),
        unserved: board.unserved(),
        capacity: f.capacity,
        queued: f.queued.iter().sum::<usize>() + board.incoming(),
        admitting: board.admitting(),
        running: f.busy,
        workers: f.workers,
        available: !f.draining && f.workers > 0,
    })
}

/// A peer known from its introduction, with no load report yet: it takes no work.
fn unreported_view(node: &str, kinds: &Arc<[String]>) -> PoolView {
    PoolView {
        node: node.to_owned(),
        local: false,
        labels: Vec::new(),
        kinds: Arc::clone(kinds),
        unserved: Arc::from([]),
        capacity: 0,
        queued: 0,
        admitting: 0,
        running: 0,
        workers: 0,
        available: false,
    }
}

/// The local pool's load report, with what is on its way to it.
pub(super) fn local_report(node: &str, board: &LocalLoad) -> Option<LoadReport> {
    let load = board.load(node)?;
    Some(to_report(&load, board.admitting() + board.incoming()))
}

pub(super) fn to_report(load: &PoolLoad, admitting: usize) -> LoadReport {
    LoadReport {
        node_id: load.node.clone(),
        incarnation: load.figures.incarnation,
        queued: load.figures.queued.map(|q| q as u64),
        delayed: load.figures.delayed as u64,
        busy: load.figures.busy as u64,
        workers: load.figures.workers as u64,
        capacity: load.figures.capacity as u64,
        received_total: load.figures.received_total,
        labels: load.labels.clone(),
        draining: load.figures.draining,
        admitting: admitting as u64,
        unserved: load.unserved.clone(),
    }
}

pub(super) fn from_report(r: LoadReport) -> (PoolLoad, usize) {
    let admitting = r.admitting as usize;
    let figures = LoadFigures {
        incarnation: r.incarnation,
        queued: r.queued.map(|q| q as usize),
        delayed: r.delayed as usize,
        busy: r.busy as usize,
        workers: r.workers as usize,
        capacity: r.capacity as usize,
        received_total: r.received_total,
        draining: r.draining,
    };
    let mut load = PoolLoad::new(r.node_id, r.labels, figures);
    load.unserved = r.unserved;
    (load, admitting)
}

/// Admission without a Dispatcher message, when the decision cannot depend on the peers:
///
/// - on a node without a cluster its own pool is the only one, so this is the answer,
///   room or not ([`policy::place_all`] over that one view);
/// - on a clustered node, when the local pool takes every task with a wait within a
///   hop's cost ([`policy::keeps_all`]), placement keeps them here whatever the peers'
///   load: the reservation. Otherwise `None`: the Dispatcher, which knows the peers'
///   pools, decides ([`DispatcherMessage::Admit`]).
///
/// The room is taken with a compare-and-swap on the pool's admissions, so concurrent
/// submissions never overcommit it; one that loses the race decides again.
pub fn admit_here(
    ctx: &NodeContext,
    needs: &[Need<'_>],
) -> Option<Result<Reservation, PlaceError>> {
    let board = &ctx.local_load;
    let alone = ctx.cluster.is_none();
    loop {
        let view = local_view(&ctx.node_id, board);
        let seen = view.as_ref().map_or(0, |v| v.admitting);
        if alone {
            if let Err(e) = policy::place_all(view.as_slice(), needs) {
                return Some(Err(e));
            }
        } else if !view.is_some_and(|v| policy::keeps_all(&v, needs)) {
            return None;
        }
        if board.admit_if(seen, needs.len()) {
            let targets = vec![ctx.node_id.to_string(); needs.len()];
            return Some(Ok(Reservation { targets }));
        }
    }
}

/// Hands stored tasks over under their reservation (`None` releases a task's room),
/// from the caller's own task: tasks for the local pool go straight to its mailbox,
/// without a dispatcher message; only tasks for peers go through the dispatcher
/// ([`DispatcherMessage::Place`]).
pub fn place(
    ctx: &NodeContext,
    dispatcher: &ActorRef<DispatcherMessage>,
    reservation: Reservation,
    jobs: Vec<Option<Job>>,
) {
    let (mut local, mut released) = (Vec::new(), 0);
    let (mut targets, mut remote) = (Vec::new(), Vec::new());
    for (target, job) in reservation.targets.into_iter().zip(jobs) {
        if target == *ctx.node_id {
            match job {
                Some(job) => local.push(job),
                None => released += 1,
            }
        } else {
            targets.push(target);
            remote.push(job);
        }
    }
    ctx.local_load.release(released);
    if !local.is_empty() {
        let n = local.len();
        to_local_pool(ctx, local, n);
    }
    if targets.is_empty() {
        return;
    }
    let reservation = Reservation { targets };
    let placed = dispatcher.cast(DispatcherMessage::Place {
        reservation,
        jobs: remote,
    });
    // The dispatcher died after admitting: this node's pool runs the tasks.
    if let Err(ractor::MessagingErr::SendErr(DispatcherMessage::Place { jobs, .. })) = placed {
        to_local_pool(ctx, jobs.into_iter().flatten().collect(), 0);
    }
}

impl DispatcherState {
    /// Every pool's view at `now`, sorted by node, with the node ids. A peer that
    /// introduced itself but has not reported its load yet is in it as unavailable, so
    /// its kinds count as known.
    pub(super) fn views(&self, now: Instant) -> (Vec<String>, Vec<PoolView>) {
        let kinds = |n: &str| {
            let peer = self.peers.peers.get(n);
            peer.map_or_else(|| Arc::from([]), |p| Arc::clone(&p.kinds))
        };
        let unreported =
            self.peers.peers.iter().filter(|(n, p)| {
                p.info.is_some() && !self.pools.contains_key(*n) && !self.is_local(n)
            });
        let mut views: Vec<PoolView> = self
            .pools
            .iter()
            .filter(|(n, _)| !self.is_local(n))
            .map(|(n, entry)| entry.view(self.peers.takes_work(n, now), kinds(n)))
            .chain(unreported.map(|(n, p)| unreported_view(n, &p.kinds)))
            .chain(local_view(&self.ctx.node_id, &self.ctx.local_load))
            .collect();
        views.sort_by(|a, b| a.node.cmp(&b.node));
        (views.iter().map(|v| v.node.clone()).collect(), views)
    }

    pub(super) fn admit(&mut self, demands: &[Demand]) -> Result<Reservation, PlaceError> {
        let (nodes, views) = self.views(Instant::now());
        let needs: Vec<Need<'_>> = demands.iter().map(Demand::need).collect();
        let placed = policy::place_all(&views, &needs)?;
        let targets: Vec<String> = placed.into_iter().map(|i| nodes[i].clone()).collect();
        for node in &targets {
            if self.is_local(node) {
                self.ctx.local_load.admit(1);
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
                    None => self.ctx.local_load.release(1),
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
            let n = local.len();
            to_local_pool(&self.ctx, local, n);
        }
        for (node, jobs) in batches {
            self.send(&node, jobs);
        }
    }

    pub(super) fn peer_load(&mut self, report: LoadReport) {
        if self.is_local(&report.node_id) {
            return;
        }
        let (load, admitting) = from_report(report);
        match self.pools.get_mut(&load.node) {
            Some(entry) => entry.reported(load, admitting),
            None => {
                let entry = PoolEntry::new(load, admitting);
                self.pools.insert(entry.last.node.clone(), entry);
            }
        }
    }

    /// Reports the local pool's load to every introduced peer.
    pub(super) fn broadcast(&mut self) {
        let Some(report) = local_report(&self.ctx.node_id, &self.ctx.local_load) else {
            return;
        };
        for peer in self.peers.peers.values() {
            if let Some(cell) = &peer.endpoint
                && peer.introduced
            {
                remote::notify(cell, Notice::Load(report.clone()));
            }
        }
    }

    /// Sends the local pool's last load to one peer, so a peer that just joined can
    /// place work here without waiting for the next broadcast.
    pub(super) fn send_load_to(&self, node: &str) {
        let local = local_report(&self.ctx.node_id, &self.ctx.local_load);
        let endpoint = self.peers.peers.get(node).and_then(|p| p.endpoint.as_ref());
        if let (Some(report), Some(cell)) = (local, endpoint) {
            remote::notify(cell, Notice::Load(report));
        }
    }
}
