//! The Heartbeat actor: heartbeats between nodes and the failure detector they feed.
//!
//! Every clustered node runs one. It joins the process group [`HEARTBEAT_GROUP`], which
//! ractor_cluster mirrors to every peer, and on each tick of its own
//! (`--heartbeat-interval-ms`, 200 ms by default):
//! 1. watches the group's members on other nodes, and forgets those that left;
//! 2. sends each of them a [`Heartbeat`];
//! 3. judges every watched peer with a [`Detector`] and tells the Dispatcher about the
//!    peers whose liveness changed ([`DispatcherMessage::PeerLiveness`]), and about
//!    every peer once a second, so a restarted Dispatcher catches up.
//!
//! A peer's heartbeat is recorded in the detector as it arrives.
//!
//! A node that was itself frozen (SIGSTOP, a stalled VM) does not judge its peers by its
//! own silence: when the gap between two of its own ticks is five intervals or more
//! ([`own_stall`]), every peer counts as heard at the wake-up ([`Detector::excuse`]) and
//! is judged afresh. (Claims never follow from these verdicts alone: the Failover actor
//! claims only on the store's evidence, [`crate::failover`].)
//!
//! A peer silent for `--forget-peer-after-secs` is forgotten: out of the detector and
//! not watched again until a heartbeat of its own arrives (its session may still be open
//! while it is paused); it then starts afresh, as new.
//!
//! Its mailbox only ever holds peers' heartbeats and its own ticks, and handling either
//! does no I/O and awaits nothing (it only casts), so neither a slow store nor a busy
//! Dispatcher or endpoint can delay a heartbeat or a verdict. With the default
//! thresholds (suspect after 1 s, down after 2 s of silence) a paused or cut-off node is
//! down on every survivor 2 to 2.2 s after its last heartbeat; a killed node is down at
//! once, when its session closes (the Dispatcher sees its endpoint leave).
//!
//! The detector's state is the actor's: after a restart every peer is watched afresh,
//! as though just heard.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef};
use taskmesh_cluster::detector::{Detector, DetectorConfig, Liveness, own_stall};
use taskmesh_cluster::wire::{HEARTBEAT_GROUP, Heartbeat, HeartbeatMessage};

use crate::context::{HEARTBEAT_ROLE, NodeContext, node_of};
use crate::dispatcher::DispatcherMessage;
use crate::dispatcher::peers::PeerPulse;
use crate::task::now_ms;

/// How often every peer's liveness goes to the Dispatcher, changed or not.
const RESYNC: Duration = Duration::from_secs(1);

/// Settings of the Heartbeat actor.
#[derive(Clone, Debug)]
pub struct HeartbeatConfig {
    /// Time between two heartbeats to each peer, and between two verdicts.
    pub interval: Duration,
    /// When silence makes a peer suspect, and down.
    pub detector: DetectorConfig,
    /// The process group heartbeat actors meet in: [`HEARTBEAT_GROUP`] (tests give each
    /// cluster its own).
    pub group: String,
    /// A peer silent this long is forgotten (`--forget-peer-after-secs`).
    pub forget_after: Duration,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(200),
            detector: DetectorConfig::default(),
            group: HEARTBEAT_GROUP.to_owned(),
            forget_after: Duration::from_secs(300),
        }
    }
}

/// What the Heartbeat actor is started with.
pub struct HeartbeatArgs {
    /// Shared node handles.
    pub ctx: NodeContext,
    /// Settings.
    pub config: HeartbeatConfig,
}

/// The Heartbeat actor.
pub struct HeartbeatActor;

/// The Heartbeat actor's state.
pub struct HeartbeatState {
    ctx: NodeContext,
    config: HeartbeatConfig,
    myself: ActorId,
    detector: Detector,
    /// The heartbeat actors of the peers, with their node ids, as of the last tick.
    members: Vec<(String, ActorCell)>,
    /// The next heartbeat's sequence number.
    seq: u64,
    ticks: u64,
    /// When the last tick ran: a long gap since is this node's own stall.
    last_tick: Option<Instant>,
    /// Peers forgotten after a long silence whose actors are still in the group: not
    /// watched again until they send a heartbeat.
    forgotten: HashSet<String>,
}

/// The clock: tokio's, so tests can pause it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl HeartbeatState {
    /// A peer's heartbeat arrived. One from a node whose actor this node does not see in
    /// the group yet is ignored: it is watched from the next tick on.
    fn beat(&mut self, beat: &Heartbeat, at: Instant) {
        self.ctx.metrics.heartbeats_received.inc();
        if self.forgotten.remove(&beat.from) {
            tracing::info!(peer = %beat.from, "a forgotten peer's heartbeats arrive again");
            self.detector.heartbeat(&beat.from, at);
        } else if self.detector.watches(&beat.from) {
            self.detector.heartbeat(&beat.from, at);
        } else {
            tracing::debug!(peer = %beat.from, seq = beat.seq, "heartbeat from a peer not watched yet");
        }
    }

    fn tick(&mut self, at: Instant) {
        if let Some(gap) = own_stall(self.last_tick, at, self.config.interval) {
            tracing::warn!(
                stalled_ms = gap.as_millis() as u64,
                "this node was stalled; its peers' silence meanwhile is not held against them"
            );
            self.detector.excuse(at);
        }
        self.last_tick = Some(at);
        for peer in self.detector.forget_silent(at, self.config.forget_after) {
            tracing::info!(peer = %peer, "peer silent too long; forgotten");
            self.forgotten.insert(peer);
        }
        self.sync_members(at);
        self.send_heartbeats();
        self.judge(at);
        self.ticks = self.ticks.wrapping_add(1);
    }

    /// Watches every member of the group on another node; forgets those that left.
    fn sync_members(&mut self, at: Instant) {
        let me = &*self.ctx.node_id;
        self.members = ractor::pg::get_members(&self.config.group)
            .into_iter()
            .filter(|cell| cell.get_id() != self.myself)
            .filter_map(|cell| {
                let node = node_of(&cell.get_name()?, HEARTBEAT_ROLE)?;
                (node != me).then_some((node, cell))
            })
            .collect();
        let current: HashSet<&str> = self.members.iter().map(|(n, _)| n.as_str()).collect();
        self.detector.retain(|peer| current.contains(peer));
        self.forgotten
            .retain(|peer| current.contains(peer.as_str()));
        for (node, _) in &self.members {
            if !self.forgotten.contains(node) && self.detector.watch(node, at) {
                tracing::debug!(peer = %node, "watching a peer's heartbeats");
            }
        }
    }

    fn send_heartbeats(&mut self) {
        let beat = Heartbeat {
            from: self.ctx.node_id.to_string(),
            seq: self.seq,
        };
        self.seq = self.seq.wrapping_add(1);
        for (_, cell) in &self.members {
            // A failure only means the peer's session is gone: it leaves the group.
            let _ = cell.send_message(HeartbeatMessage::Beat(beat.clone()));
        }
    }

    /// Tells the Dispatcher what changed (and, once per [`RESYNC`], everything).
    fn judge(&mut self, at: Instant) {
        let changes = self.detector.changes(at);
        for (peer, liveness) in &self.changes_to_log(&changes) {
            let silence = self.detector.silence(peer, at).unwrap_or_default();
            tracing::info!(peer = %peer, liveness = liveness.as_str(),
                silence_ms = silence.as_millis() as u64, "peer liveness changed");
        }
        for (peer, liveness) in &changes {
            let m = &self.ctx.metrics.liveness_changes;
            m.with_label_values(&[peer.as_str(), liveness.as_str()])
                .inc();
        }
        let per_resync = (RESYNC.as_nanos() / self.config.interval.as_nanos().max(1)).max(1);
        let resync = u128::from(self.ticks) % per_resync == 0;
        let nodes: Vec<String> = if resync {
            self.detector.peers().map(str::to_owned).collect()
        } else {
            changes.into_iter().map(|(peer, _)| peer).collect()
        };
        if nodes.is_empty() {
            return;
        }
        let wall = now_ms();
        let pulses = nodes
            .into_iter()
            .filter_map(|node| {
                let liveness = self.detector.state(&node, at)?;
                let silence = self.detector.silence(&node, at)?;
                let last_heard_ms = wall.saturating_sub(silence.as_millis() as u64);
                Some(PeerPulse {
                    node,
                    liveness,
                    last_heard_ms,
                })
            })
            .collect();
        let dispatcher = ActorRef::<DispatcherMessage>::where_is(self.ctx.names.dispatcher.clone());
        if let Some(d) = dispatcher {
            let _ = d.cast(DispatcherMessage::PeerLiveness(pulses));
        }
    }

    /// The changes worth a log line: all but a newly watched peer's first `up`.
    fn changes_to_log(&self, changes: &[(String, Liveness)]) -> Vec<(String, Liveness)> {
        changes
            .iter()
            .filter(|(peer, l)| *l != Liveness::Up || self.detector.heartbeats(peer) != Some(0))
            .cloned()
            .collect()
    }
}

impl Actor for HeartbeatActor {
    type Msg = HeartbeatMessage;
    type State = HeartbeatState;
    type Arguments = HeartbeatArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: HeartbeatArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        if args.ctx.cluster.is_none() {
            return Err("the heartbeat actor runs only on a clustered node".into());
        }
        ractor::pg::join(args.config.group.clone(), vec![myself.get_cell()]);
        myself.send_interval(args.config.interval, || HeartbeatMessage::Tick);
        let _ = myself.cast(HeartbeatMessage::Tick);
        Ok(HeartbeatState {
            detector: Detector::new(args.config.detector),
            ctx: args.ctx,
            config: args.config,
            myself: myself.get_id(),
            members: Vec::new(),
            seq: 0,
            ticks: 0,
            last_tick: None,
            forgotten: HashSet::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            HeartbeatMessage::Beat(beat) => state.beat(&beat, now()),
            HeartbeatMessage::Tick => state.tick(now()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
