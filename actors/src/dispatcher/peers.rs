//! What the dispatcher knows of each peer: its endpoint, its introduction, its
//! membership state and its circuit breaker. Pure bookkeeping; the clock is passed in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ractor::ActorCell;
use serde::Serialize;
use taskmesh_cluster::breaker::{Breaker, BreakerConfig, CircuitState};
use taskmesh_cluster::wire::NodeInfo;

/// A peer's membership state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    /// Its endpoint is visible but it has not answered our introduction yet.
    Joining,
    /// Introduced and heard from recently.
    Up,
    /// Introduced, but silent for longer than the suspicion timeout: gets no new work.
    Suspect,
    /// Its session closed, it said it is leaving, or it has been silent for longer than
    /// the down timeout (paused or cut off): its tasks are claimed by the survivors.
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

/// Settings of the peer table.
#[derive(Clone, Copy, Debug)]
pub struct PeerSettings {
    /// A peer silent for this long is suspect and gets no new work.
    pub suspect_after: Duration,
    /// A peer silent for this long is down and its tasks are claimed.
    pub down_after: Duration,
    /// The circuit breaker of every peer.
    pub breaker: BreakerConfig,
}

impl Default for PeerSettings {
    fn default() -> Self {
        Self {
            suspect_after: Duration::from_secs(1),
            down_after: Duration::from_millis(2500),
            breaker: BreakerConfig::default(),
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
    /// Whether it was introduced and has not gone down since.
    pub introduced: bool,
    /// Set when its session closes or it leaves.
    pub down: bool,
    /// Its circuit breaker.
    pub breaker: Breaker,
    /// When anything was last heard from it.
    pub last_heard: Instant,
    /// The same instant as wall-clock milliseconds, for display.
    pub last_heard_ms: u64,
    /// Whether its tasks were claimed since it was last heard from.
    pub claimed: bool,
}

impl Peer {
    /// Its membership state at `now`.
    pub fn state(&self, now: Instant, settings: &PeerSettings) -> PeerState {
        if self.down || self.endpoint.is_none() {
            PeerState::Down
        } else if !self.introduced {
            PeerState::Joining
        } else if now.duration_since(self.last_heard) > settings.down_after {
            PeerState::Down
        } else if now.duration_since(self.last_heard) > settings.suspect_after {
            PeerState::Suspect
        } else {
            PeerState::Up
        }
    }

    /// Whether it may be given new work at `now`.
    pub fn takes_work(&self, now: Instant, settings: &PeerSettings) -> bool {
        self.state(now, settings) == PeerState::Up && self.breaker.allows(now)
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

    fn entry(&mut self, node_id: &str, now: Instant, now_ms: u64) -> &mut Peer {
        let breaker = self.settings.breaker;
        self.peers
            .entry(node_id.to_owned())
            .or_insert_with(|| Peer {
                endpoint: None,
                info: None,
                introduced: false,
                down: false,
                breaker: Breaker::new(breaker),
                last_heard: now,
                last_heard_ms: now_ms,
                claimed: false,
            })
    }

    /// A peer's endpoint appeared (a session to it is ready).
    pub fn endpoint_joined(&mut self, node_id: &str, cell: ActorCell, now: Instant, now_ms: u64) {
        let peer = self.entry(node_id, now, now_ms);
        peer.endpoint = Some(cell);
        peer.introduced = false;
        peer.down = false;
        peer.last_heard = now;
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
    pub fn introduced(&mut self, info: NodeInfo, now: Instant, now_ms: u64) {
        let fresh = Breaker::new(self.settings.breaker);
        let peer = self.entry(&info.node_id.clone(), now, now_ms);
        let restarted = peer
            .info
            .as_ref()
            .is_some_and(|i| i.generation != info.generation);
        if restarted {
            peer.breaker = fresh;
        }
        peer.info = Some(info);
        peer.introduced = true;
        peer.last_heard = now;
        peer.last_heard_ms = now_ms;
    }

    /// Something arrived from the peer.
    pub fn heard(&mut self, node_id: &str, now: Instant, now_ms: u64) {
        if let Some(peer) = self.peers.get_mut(node_id) {
            if peer.claimed {
                tracing::info!(peer = node_id, "peer is heard from again; it is up");
            }
            peer.last_heard = now;
            peer.last_heard_ms = now_ms;
            peer.claimed = false;
        }
    }

    /// Peers that fell silent past the down timeout and whose tasks were not claimed
    /// yet; they are marked claimed.
    pub fn newly_silent(&mut self, now: Instant) -> Vec<String> {
        let settings = self.settings;
        self.peers
            .iter_mut()
            // Down by silence only: a closed session or a goodbye is claimed elsewhere.
            .filter(|(_, p)| !p.claimed && p.endpoint.is_some() && !p.down)
            .filter(|(_, p)| p.state(now, &settings) == PeerState::Down)
            .map(|(id, p)| {
                p.claimed = true;
                id.clone()
            })
            .collect()
    }

    /// The peer said it is leaving.
    pub fn leaving(&mut self, node_id: &str) {
        if let Some(peer) = self.peers.get_mut(node_id) {
            peer.down = true;
        }
    }

    /// How many peers are in each state at `now`.
    pub fn counts(&self, now: Instant) -> [(PeerState, usize); 4] {
        PeerState::ALL.map(|s| {
            let n = self
                .peers
                .values()
                .filter(|p| p.state(now, &self.settings) == s)
                .count();
            (s, n)
        })
    }

    /// Whether `node_id` may be given new work at `now`.
    pub fn takes_work(&self, node_id: &str, now: Instant) -> bool {
        self.peers
            .get(node_id)
            .is_some_and(|p| p.takes_work(now, &self.settings))
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
        }
    }

    #[tokio::test]
    async fn a_peer_goes_joining_up_suspect_up_down() {
        let (cell, handle) = Actor::spawn(None, Dummy, ()).await.unwrap();
        let t0 = Instant::now();
        let mut table = PeerTable::new(PeerSettings::default());
        let state = |t: &PeerTable, now| t.peers["b"].state(now, &t.settings);
        table.endpoint_joined("b", cell.get_cell(), t0, 0);
        assert_eq!(state(&table, t0), PeerState::Joining);
        assert!(
            !table.takes_work("b", t0),
            "no work before the introduction"
        );
        table.introduced(info("b", 1), t0, 0);
        assert_eq!(state(&table, t0), PeerState::Up);
        assert!(table.takes_work("b", t0));
        let quiet = t0 + Duration::from_secs(2);
        assert_eq!(state(&table, quiet), PeerState::Suspect);
        assert!(!table.takes_work("b", quiet));
        assert!(table.newly_silent(quiet).is_empty(), "suspect is not down");
        let silent = t0 + Duration::from_secs(4);
        assert_eq!(state(&table, silent), PeerState::Down);
        assert_eq!(table.newly_silent(silent), ["b"]);
        assert!(
            table.newly_silent(silent).is_empty(),
            "claimed once per silence"
        );
        table.heard("b", silent, 4000);
        assert_eq!(state(&table, silent), PeerState::Up);
        assert!(table.endpoint_left("b", &cell.get_cell()));
        assert_eq!(state(&table, silent), PeerState::Down);
        assert_eq!(table.counts(silent)[3], (PeerState::Down, 1));
        cell.stop(None);
        handle.await.unwrap();
    }

    #[tokio::test]
    async fn an_open_circuit_takes_no_work_and_a_restart_resets_it() {
        let (cell, handle) = Actor::spawn(None, Dummy, ()).await.unwrap();
        let t0 = Instant::now();
        let mut table = PeerTable::new(PeerSettings::default());
        table.endpoint_joined("b", cell.get_cell(), t0, 0);
        table.introduced(info("b", 1), t0, 0);
        let peer = table.peers.get_mut("b").unwrap();
        for _ in 0..3 {
            peer.breaker.on_failure(t0);
        }
        assert_eq!(table.circuit("b", t0), Some(CircuitState::Open));
        assert!(!table.takes_work("b", t0));
        // The same node restarted (new generation): a fresh breaker.
        table.introduced(info("b", 2), t0, 0);
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
