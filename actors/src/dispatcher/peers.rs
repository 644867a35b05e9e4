//! What the dispatcher knows of each peer: its endpoint, its introduction, its
//! membership state and its circuit breaker. Pure bookkeeping; the clock is passed in.
//!
//! Whether a peer is alive is not judged here: the Heartbeat actor
//! ([`crate::heartbeat`]) runs the failure detector and sends its verdicts
//! ([`PeerPulse`]). A closed session or a goodbye marks a peer down at once. Down is a
//! verdict for placement only: which down peers have their tasks claimed, and when, is
//! the Failover actor's decision ([`crate::failover::decide`]), from [`PeerTable::down_set`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::ActorCell;
use serde::Serialize;
use taskmesh_cluster::breaker::{Breaker, BreakerConfig, CircuitState};
use taskmesh_cluster::detector::Liveness;
use taskmesh_cluster::wire::NodeInfo;

use crate::failover::decide::Cause;

/// A peer's membership state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    /// Its endpoint is visible but it has not answered our introduction yet.
    Joining,
    /// Introduced, and its heartbeats arrive.
    Up,
    /// Introduced, but it missed its heartbeats for longer than the suspicion timeout:
    /// gets no new work.
    Suspect,
    /// Its session closed, it said it is leaving, or it missed its heartbeats for longer
    /// than the down timeout (paused or cut off): gets no work, and its tasks are claimed
    /// once the store shows it stopped renewing its lease ([`crate::failover`]).
    Down,
}

impl PeerState {
    /// Every state, for the per-state gauge.
    pub const ALL: [PeerState; 4] = [Self::Joining, Self::Up, Self::Suspect, Self::Down];

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Joining => "joining",
            Self::Up => "up",
            Self::Suspect => "suspect",
            Self::Down => "down",
        }
    }
}

/// The Heartbeat actor's verdict on one peer ([`crate::heartbeat`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerPulse {
    /// The peer's node id.
    pub node: String,
    /// What the failure detector makes of its heartbeats.
    pub liveness: Liveness,
    /// When its last heartbeat arrived (or it was first seen), in Unix milliseconds.
    pub last_heard_ms: u64,
}

/// Settings of the peer table.
#[derive(Clone, Copy, Debug)]
pub struct PeerSettings {
    /// The circuit breaker of every peer.
    pub breaker: BreakerConfig,
    /// A peer down for this long is forgotten (`--forget-peer-after-secs`).
    pub forget_after: Duration,
}

impl Default for PeerSettings {
    fn default() -> Self {
        Self {
            breaker: BreakerConfig::default(),
            forget_after: Duration::from_secs(300),
        }
    }
}

/// One peer.
#[derive(Debug)]
pub struct Peer {
    /// Its endpoint actor, while its session is open.
    pub endpoint: Option<ActorCell>,
    /// Its introduction, once received.
    pub info: Option<NodeInfo>,
    /// The kinds it advertised in its introduction (shared by every placement view).
    pub kinds: Arc<[String]>,
    /// Whether it was introduced and has not gone down since.
    pub introduced: bool,
    /// Set when its session closes or it leaves.
    pub down: bool,
    /// Its circuit breaker.
    pub breaker: Breaker,
    /// The failure detector's last verdict (up until one arrives, and on a re-join).
    pub liveness: Liveness,
    /// When it was last heard (its last heartbeat, or its join), in Unix milliseconds.
    pub last_heard_ms: u64,
    /// Whether it said it is leaving (since its last join).
    pub left: bool,
    /// Since when it has been down, in Unix milliseconds (as of the last
    /// [`PeerTable::forget_long_down`]).
    pub down_since_ms: Option<u64>,
}

impl Peer {
    /// Its membership state.
    pub fn state(&self) -> PeerState {
        if self.down || self.endpoint.is_none() {
            PeerState::Down
        } else if !self.introduced {
            PeerState::Joining
        } else {
            match self.liveness {
                Liveness::Up => PeerState::Up,
                Liveness::Suspect => PeerState::Suspect,
                Liveness::Down => PeerState::Down,
            }
        }
    }

    /// Whether it may be given new work at `now`.
    pub fn takes_work(&self, now: Instant) -> bool {
        self.state() == PeerState::Up && self.breaker.allows(now)
    }
}

/// Every peer, by node id.
#[derive(Debug, Default)]
pub struct PeerTable {
    /// Settings.
    pub settings: PeerSettings,
    /// The peers.
    pub peers: HashMap<String, Peer>,
}

impl PeerTable {
    /// An empty table.
    pub fn new(settings: PeerSettings) -> Self {
        Self {
            settings,
            peers: HashMap::new(),
        }
    }

    fn entry(&mut self, node_id: &str, now_ms: u64) -> &mut Peer {
        let breaker = self.settings.breaker;
        self.peers
            .entry(node_id.to_owned())
            .or_insert_with(|| Peer {
                endpoint: None,
                info: None,
                kinds: Arc::from([]),
                introduced: false,
                down: false,
                breaker: Breaker::new(breaker),
                liveness: Liveness::Up,
                last_heard_ms: now_ms,
                left: false,
                down_since_ms: None,
            })
    }

    /// A peer's endpoint appeared (a session to it is ready): a (re-)join, so it is
    /// alive whatever the detector said of its last session.
    pub fn endpoint_joined(&mut self, node_id: &str, cell: ActorCell, now_ms: u64) {
        let peer = self.entry(node_id, now_ms);
        peer.endpoint = Some(cell);
        peer.introduced = false;
        peer.down = false;
        peer.liveness = Liveness::Up;
        peer.left = false;
        peer.down_since_ms = None;
        peer.last_heard_ms = now_ms;
    }

    /// A peer's endpoint disappeared. Returns whether this was the current endpoint.
    pub fn endpoint_left(&mut self, node_id: &str, cell: &ActorCell) -> bool {
        match self.peers.get_mut(node_id) {
            Some(peer) if peer.endpoint.as_ref().map(ActorCell::get_id) == Some(cell.get_id()) => {
                peer.endpoint = None;
                peer.down = true;
                true
            }
            _ => false,
        }
    }

    /// A peer introduced itself, or answered our introduction.
    pub fn introduced(&mut self, info: NodeInfo, now_ms: u64) {
        let fresh = Breaker::new(self.settings.breaker);
        let peer = self.entry(&info.node_id.clone(), now_ms);
        let restarted = peer
            .info
            .as_ref()
            .is_some_and(|i| i.generation != info.generation);
        if restarted {
            peer.breaker = fresh;
        }
        peer.kinds = info.kinds.iter().cloned().collect();
        peer.info = Some(info);
        peer.introduced = true;
        peer.last_heard_ms = peer.last_heard_ms.max(now_ms);
    }

    /// The failure detector's verdict on a peer. Returns its liveness before, when the
    /// verdict changed it.
    pub fn pulse(&mut self, pulse: &PeerPulse) -> Option<Liveness> {
        let peer = self.peers.get_mut(&pulse.node)?;
        peer.last_heard_ms = peer.last_heard_ms.max(pulse.last_heard_ms);
        let before = std::mem::replace(&mut peer.liveness, pulse.liveness);
        (before != pulse.liveness).then_some(before)
    }

    /// The peers down, with why, for the Failover actor ([`crate::failover`]): a
    /// closed session (after a goodbye or not), or the detector's verdict on a peer whose
    /// session is open. A peer that said it is leaving but whose session is still open
    /// is draining its pool: not in the set until its session closes. Sorted by id.
    pub fn down_set(&self) -> Vec<(String, Cause)> {
        let mut down: Vec<(String, Cause)> = self
            .peers
            .iter()
            .filter_map(|(id, p)| {
                let cause = match (p.endpoint.is_some(), p.left) {
                    (false, true) => Cause::Departed,
                    (false, false) => Cause::SessionClosed,
                    (true, true) => return None,
                    (true, false) if p.state() == PeerState::Down => Cause::Silent,
                    (true, false) => return None,
                };
                Some((id.clone(), cause))
            })
            .collect();
        down.sort();
        down
    }

    /// Forgets the peers down for `settings.forget_after` or longer at `now_ms`, and
    /// returns them; notes since when each other peer is down.
    pub fn forget_long_down(&mut self, now_ms: u64) -> Vec<String> {
        let after = self.settings.forget_after.as_millis() as u64;
        let mut forgotten = Vec::new();
        self.peers.retain(|id, p| {
            if p.state() != PeerState::Down {
                p.down_since_ms = None;
                return true;
            }
            let since = *p.down_since_ms.get_or_insert(now_ms);
            let keep = now_ms.saturating_sub(since) < after;
            if !keep {
                forgotten.push(id.clone());
            }
            keep
        });
        forgotten.sort();
        forgotten
    }

    /// The peer said it is leaving.
    pub fn leaving(&mut self, node_id: &str) {
        if let Some(peer) = self.peers.get_mut(node_id) {
            peer.down = true;
            peer.left = true;
        }
    }

    /// How many peers are in each state.
    pub fn counts(&self) -> [(PeerState, usize); 4] {
        PeerState::ALL.map(|s| {
            let n = self.peers.values().filter(|p| p.state() == s).count();
            (s, n)
        })
    }

    /// Whether `node_id` may be given new work at `now`.
    pub fn takes_work(&self, node_id: &str, now: Instant) -> bool {
        self.peers.get(node_id).is_some_and(|p| p.takes_work(now))
    }

    /// The circuit state of `node_id` at `now`.
    pub fn circuit(&self, node_id: &str, now: Instant) -> Option<CircuitState> {
        self.peers.get(node_id).map(|p| p.breaker.state(now))
    }
}

#[cfg(test)]
mod tests {
    use ractor::{Actor, ActorProcessingErr, ActorRef};

    use super::*;

    struct Dummy;

    enum Nothing {}

    impl ractor::Message for Nothing {}

    impl Actor for Dummy {
        type Msg = Nothing;
        type State = ();
        type Arguments = ();

        async fn pre_start(&self, _: ActorRef<Nothing>, _: ()) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
    }

    fn info(id: &str, generation: u64) -> NodeInfo {
        NodeInfo {
            node_id: id.into(),
            generation,
            cluster_address: format!("{id}:4697"),
            http_address: format!("{id}:8080"),
            labels: vec![],
            kinds: vec![],
        }
    }

    fn pulse(node: &str, liveness: Liveness, at: u64) -> PeerPulse {
        PeerPulse {
            node: node.into(),
            liveness,
            last_heard_ms: at,
        }
    }

    #[tokio::test]
    async fn a_peer_goes_joining_up_suspect_down_up_down() {
        let (cell, handle) = Actor::spawn(None, Dummy, ()).await.unwrap();
        let t0 = Instant::now();
        let mut table = PeerTable::new(PeerSettings::default());
        let state = |t: &PeerTable| t.peers["b"].state();
        table.endpoint_joined("b", cell.get_cell(), 0);
        assert_eq!(state(&table), PeerState::Joining);
        assert!(
            !table.takes_work("b", t0),
            "no work before the introduction"
        );
        table.introduced(info("b", 1), 0);
        assert_eq!(state(&table), PeerState::Up);
        assert!(table.takes_work("b", t0));
        assert_eq!(table.pulse(&pulse("b", Liveness::Up, 100)), None);
        assert_eq!(
            table.pulse(&pulse("b", Liveness::Suspect, 100)),
            Some(Liveness::Up)
        );
        assert_eq!(state(&table), PeerState::Suspect);
        assert!(!table.takes_work("b", t0));
        assert!(table.down_set().is_empty(), "suspect is not down");
        table.pulse(&pulse("b", Liveness::Down, 100));
        assert_eq!(state(&table), PeerState::Down);
        assert_eq!(table.down_set(), [("b".to_owned(), Cause::Silent)]);
        // Fresh heartbeats: up again, and out of the down set.
        table.pulse(&pulse("b", Liveness::Up, 4000));
        assert_eq!(state(&table), PeerState::Up);
        assert!(table.down_set().is_empty());
        assert_eq!(table.peers["b"].last_heard_ms, 4000);
        table.pulse(&pulse("b", Liveness::Down, 3000));
        assert_eq!(table.peers["b"].last_heard_ms, 4000, "never goes back");
        // A re-join (a new session) is up whatever the detector said before.
        table.endpoint_joined("b", cell.get_cell(), 5000);
        table.introduced(info("b", 1), 5000);
        assert_eq!(state(&table), PeerState::Up);
        // A session close is down at once, for that reason.
        assert!(table.endpoint_left("b", &cell.get_cell()));
        assert_eq!(state(&table), PeerState::Down);
        assert_eq!(table.down_set(), [("b".to_owned(), Cause::SessionClosed)]);
        assert_eq!(table.counts()[3], (PeerState::Down, 1));
        // A verdict on an unknown peer is ignored.
        assert_eq!(table.pulse(&pulse("zz", Liveness::Down, 1)), None);
        assert!(!table.peers.contains_key("zz"));
        cell.stop(None);
        handle.await.unwrap();
    }

    #[tokio::test]
    async fn a_leaving_peer_is_down_at_once_and_departed_once_its_session_closes() {
        let (cell, handle) = Actor::spawn(None, Dummy, ()).await.unwrap();
        let mut table = PeerTable::new(PeerSettings::default());
        table.endpoint_joined("b", cell.get_cell(), 0);
        table.introduced(info("b", 1), 0);
        table.leaving("b");
        assert_eq!(table.peers["b"].state(), PeerState::Down);
        table.pulse(&pulse("b", Liveness::Down, 0));
        assert!(
            table.down_set().is_empty(),
            "draining: its tasks stay while its session is open"
        );
        assert!(table.endpoint_left("b", &cell.get_cell()));
        assert_eq!(table.down_set(), [("b".to_owned(), Cause::Departed)]);
        cell.stop(None);
        handle.await.unwrap();
    }

    #[tokio::test]
    async fn a_peer_down_past_the_forget_time_is_forgotten_and_comes_back_as_new() {
        let (cell, handle) = Actor::spawn(None, Dummy, ()).await.unwrap();
        let settings = PeerSettings {
            forget_after: Duration::from_secs(10),
            ..PeerSettings::default()
        };
        let mut table = PeerTable::new(settings);
        table.endpoint_joined("b", cell.get_cell(), 0);
        table.endpoint_joined("c", cell.get_cell(), 0);
        table.introduced(info("b", 1), 0);
        table.introduced(info("c", 1), 0);
        assert!(table.forget_long_down(1_000).is_empty(), "both up");
        assert!(table.endpoint_left("b", &cell.get_cell()));
        assert!(table.forget_long_down(2_000).is_empty(), "down since 2 s");
        table.pulse(&pulse("c", Liveness::Down, 0));
        assert!(table.forget_long_down(5_000).is_empty(), "c down since 5 s");
        assert!(table.forget_long_down(11_999).is_empty());
        assert_eq!(table.forget_long_down(12_000), ["b"]);
        assert!(!table.peers.contains_key("b"));
        assert_eq!(table.counts()[3], (PeerState::Down, 1), "only c");
        // c comes back before its time: its clock starts again when it goes down again.
        table.pulse(&pulse("c", Liveness::Up, 14_000));
        assert!(table.forget_long_down(14_000).is_empty());
        table.pulse(&pulse("c", Liveness::Down, 14_000));
        assert!(table.forget_long_down(20_000).is_empty());
        assert_eq!(table.forget_long_down(30_000), ["c"]);
        // b returns: a new peer, joining.
        table.endpoint_joined("b", cell.get_cell(), 40_000);
        assert_eq!(table.peers["b"].state(), PeerState::Joining);
        cell.stop(None);
        handle.await.unwrap();
    }

    #[tokio::test]
    async fn an_open_circuit_takes_no_work_and_a_restart_resets_it() {
        let (cell, handle) = Actor::spawn(None, Dummy, ()).await.unwrap();
        let t0 = Instant::now();
        let mut table = PeerTable::new(PeerSettings::default());
        table.endpoint_joined("b", cell.get_cell(), 0);
        table.introduced(info("b", 1), 0);
        let peer = table.peers.get_mut("b").unwrap();
        for _ in 0..3 {
            peer.breaker.on_failure(t0);
        }
        assert_eq!(table.circuit("b", t0), Some(CircuitState::Open));
        assert!(!table.takes_work("b", t0));
        // The same node restarted (new generation): a fresh breaker.
        table.introduced(info("b", 2), 0);
        assert_eq!(table.circuit("b", t0), Some(CircuitState::Closed));
        assert!(table.takes_work("b", t0));
        // A stale endpoint leaving does not take the current one down.
        let (other, other_handle) = Actor::spawn(None, Dummy, ()).await.unwrap();
        assert!(!table.endpoint_left("b", &other.get_cell()));
        assert!(table.takes_work("b", t0));
        for c in [cell, other] {
            c.stop(None);
        }
        handle.await.unwrap();
        other_handle.await.unwrap();
    }
}
