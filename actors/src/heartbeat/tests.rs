//! Heartbeat actors of several nodes in one process, on tokio's paused clock: a peer
//! that never answers goes suspect then down on time, heartbeats bring it back up, and
//! two live actors keep each other up.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use taskmesh_cluster::wire::NodeInfo;
use taskmesh_kernels::task::TaskId;
use taskmesh_kernels::{Registry, RegistryOptions};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;
use crate::context::ActorNames;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::store::memory::MemoryStore;

fn ctx(node: &str) -> NodeContext {
    NodeContext {
        cluster: Some(Arc::new(NodeInfo {
            node_id: node.into(),
            generation: 1,
            cluster_address: format!("{node}:4697"),
            http_address: format!("{node}:8080"),
            labels: vec![],
            kinds: vec![],
        })),
        node_id: node.into(),
        store: Arc::new(MemoryStore::new()),
        kernels: Registry::new(RegistryOptions::default()),
        metrics: Arc::new(Metrics::new().expect("metrics")),
        notifier: Arc::new(Notifier::default()),
        names: Arc::new(ActorNames::for_node(node)),
        local_load: Default::default(),
    }
}

/// Stands in for a node's Dispatcher: passes on every verdict with its time.
struct FakeDispatcher;

type Verdicts = mpsc::UnboundedSender<(Instant, PeerPulse)>;

impl Actor for FakeDispatcher {
    type Msg = DispatcherMessage;
    type State = Verdicts;
    type Arguments = Verdicts;

    async fn pre_start(
        &self,
        _: ActorRef<Self::Msg>,
        tx: Verdicts,
    ) -> Result<Verdicts, ActorProcessingErr> {
        Ok(tx)
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        message: Self::Msg,
        tx: &mut Verdicts,
    ) -> Result<(), ActorProcessingErr> {
        if let DispatcherMessage::PeerLiveness(pulses) = message {
            for p in pulses {
                let _ = tx.send((Instant::now(), p));
            }
        }
        Ok(())
    }
}

/// A member of the group that never sends a heartbeat (a paused node).
struct Mute;

impl Actor for Mute {
    type Msg = HeartbeatMessage;
    type State = ();
    type Arguments = String;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        group: String,
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::join(group, vec![myself.get_cell()]);
        Ok(())
    }
}

struct Node {
    ctx: NodeContext,
    heartbeat: ActorRef<HeartbeatMessage>,
    verdicts: mpsc::UnboundedReceiver<(Instant, PeerPulse)>,
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", TaskId::generate())
}

async fn start_node(node: &str, group: &str) -> Node {
    let ctx = ctx(node);
    let (tx, verdicts) = mpsc::unbounded_channel();
    Actor::spawn(Some(ctx.names.dispatcher.clone()), FakeDispatcher, tx)
        .await
        .expect("spawn the fake dispatcher");
    let args = HeartbeatArgs {
        ctx: ctx.clone(),
        config: HeartbeatConfig {
            group: group.to_owned(),
            ..HeartbeatConfig::default()
        },
    };
    let (heartbeat, _) = Actor::spawn(Some(ctx.names.heartbeat.clone()), HeartbeatActor, args)
        .await
        .expect("spawn the heartbeat actor");
    Node {
        ctx,
        heartbeat,
        verdicts,
    }
}

/// The next verdict on `peer` that differs from `last`.
async fn next_change(node: &mut Node, peer: &str, last: Option<Liveness>) -> (Instant, PeerPulse) {
    loop {
        let (at, pulse) = node.verdicts.recv().await.expect("verdicts");
        if pulse.node == peer && Some(pulse.liveness) != last {
            return (at, pulse);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_goes_suspect_then_down_on_time_and_heartbeats_bring_it_back() {
    let group = unique("hb");
    let (a, b) = (unique("a"), unique("b"));
    let (mute, _) = Actor::spawn(
        Some(ActorNames::for_node(&b).heartbeat),
        Mute,
        group.clone(),
    )
    .await
    .expect("spawn");
    let t0 = Instant::now();
    let mut node = start_node(&a, &group).await;

    let (_, first) = next_change(&mut node, &b, None).await;
    assert_eq!(first.liveness, Liveness::Up, "a new peer starts up");
    let (suspect_at, suspect) = next_change(&mut node, &b, Some(Liveness::Up)).await;
    assert_eq!(suspect.liveness, Liveness::Suspect);
    let (down_at, down) = next_change(&mut node, &b, Some(Liveness::Suspect)).await;
    assert_eq!(down.liveness, Liveness::Down);
    let (suspect_after, down_after) = (suspect_at - t0, down_at - t0);
    assert!(
        suspect_after >= Duration::from_secs(1) && suspect_after <= Duration::from_millis(1250),
        "suspect after {suspect_after:?}"
    );
    assert!(
        down_after >= Duration::from_secs(2) && down_after <= Duration::from_millis(2250),
        "down after {down_after:?}"
    );
    assert!(down.last_heard_ms <= suspect.last_heard_ms + 1);

    // The peer wakes up: its next heartbeat brings it back up at the next tick.
    let woke = Instant::now();
    node.heartbeat
        .cast(HeartbeatMessage::Beat(Heartbeat {
            from: b.clone(),
            seq: 7,
        }))
        .expect("cast");
    let (up_at, up) = next_change(&mut node, &b, Some(Liveness::Down)).await;
    assert_eq!(up.liveness, Liveness::Up);
    assert!(
        up_at - woke <= Duration::from_millis(250),
        "{:?}",
        up_at - woke
    );
    assert_eq!(node.ctx.metrics.heartbeats_received.get(), 1);
    let changes = &node.ctx.metrics.liveness_changes;
    for (to, n) in [("up", 2), ("suspect", 1), ("down", 1)] {
        assert_eq!(
            changes.with_label_values(&[b.as_str(), to]).get(),
            n,
            "{to}"
        );
    }

    // It leaves the group (its session closed): it is forgotten, with no verdict.
    mute.stop(None);
    tokio::time::sleep(Duration::from_secs(5)).await;
    while let Ok((_, p)) = node.verdicts.try_recv() {
        assert!(
            p.node != b || p.liveness == Liveness::Up,
            "no verdict but up after the peer left: {p:?}"
        );
    }
    node.heartbeat.stop(None);
}

#[tokio::test(start_paused = true)]
async fn two_live_nodes_keep_each_other_up_and_resync_their_dispatchers() {
    let group = unique("hb");
    let (a, b) = (unique("a"), unique("b"));
    let mut na = start_node(&a, &group).await;
    let mut nb = start_node(&b, &group).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    for (node, peer) in [(&mut na, &b), (&mut nb, &a)] {
        let mut verdicts = 0;
        while let Ok((_, p)) = node.verdicts.try_recv() {
            assert_eq!(&p.node, peer, "only the peer is judged, never this node");
            assert_eq!(p.liveness, Liveness::Up, "{p:?}");
            verdicts += 1;
        }
        // Every second, whether or not anything changed.
        assert!(verdicts >= 9, "{verdicts} verdicts in 10 s");
        // Five heartbeats a second.
        let received = node.ctx.metrics.heartbeats_received.get();
        assert!(
            (45..=55).contains(&received),
            "{received} heartbeats in 10 s"
        );
    }
    na.heartbeat.stop(None);
    nb.heartbeat.stop(None);
}

#[tokio::test]
async fn the_heartbeat_actor_refuses_to_run_alone() {
    let mut ctx = ctx(&unique("alone"));
    ctx.cluster = None;
    let args = HeartbeatArgs {
        ctx,
        config: HeartbeatConfig::default(),
    };
    assert!(Actor::spawn(None, HeartbeatActor, args).await.is_err());
}
