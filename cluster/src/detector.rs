//! The peer failure detector: pure, with the clock passed in.
//!
//! Each peer's heartbeats restart its silence; how long the silence has lasted decides
//! its [`Liveness`]:
//!
//! ```text
//! Up ──(silent ≥ suspect_after)──▶ Suspect ──(silent ≥ down_after)──▶ Down
//!  ▲                                  │                                 │
//!  └───────────────(a heartbeat)──────┴─────────────────────────────────┘
//! ```
//!
//! # Why timeouts and not phi-accrual
//! Phi-accrual (Hayashibara et al., as Akka and Cassandra use it) learns the
//! distribution of inter-arrival times and suspects a peer once a silence becomes
//! improbable. It pays off when heartbeats share a link or a mailbox with other traffic
//! and their timing wanders. Ours do neither: a dedicated actor sends them on a fixed
//! period and receives them in a mailbox that holds nothing else, so the learned
//! distribution is a spike at the send period, and the minimum standard deviation and
//! the acceptable pause that keep phi sane would make the thresholds anyway. What we do
//! need is a bound: "a paused node is down on every survivor within 3 s". A timeout gives
//! it by construction (down after `down_after` plus one evaluation period), whereas
//! phi's time to down grows with the history it learned (a run of slow heartbeats
//! under load stretches the mean and postpones the verdict). Timeouts in milliseconds
//! are also what an operator can reason about and set as flags. Jitter shorter than
//! `suspect_after` (five heartbeat periods by default) goes unnoticed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

/// A peer's liveness, as the detector judges it; ordered from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    /// Heard from within `suspect_after`.
    Up,
    /// Silent for `suspect_after` or longer: give it no new work.
    Suspect,
    /// Silent for `down_after` or longer: presumed dead or cut off.
    Down,
}

impl Liveness {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Up => "up",
            Liveness::Suspect => "suspect",
            Liveness::Down => "down",
        }
    }
}

/// The detector's thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DetectorConfig {
    /// A peer silent for this long is suspect.
    pub suspect_after: Duration,
    /// A peer silent for this long is down. Longer than `suspect_after`.
    pub down_after: Duration,
}

impl Default for DetectorConfig {
    /// Suspect after 1 s, down after 2 s: with heartbeats every 200 ms, a peer must miss
    /// five in a row to be suspect and ten to be down, and a paused peer is down about
    /// 2 s after its last heartbeat.
    fn default() -> Self {
        Self {
            suspect_after: Duration::from_secs(1),
            down_after: Duration::from_secs(2),
        }
    }
}

impl DetectorConfig {
    /// The liveness of a peer silent for `silence`.
    pub fn judge(&self, silence: Duration) -> Liveness {
        if silence >= self.down_after {
            Liveness::Down
        } else if silence >= self.suspect_after {
            Liveness::Suspect
        } else {
            Liveness::Up
        }
    }
}

#[derive(Clone, Debug)]
struct Watch {
    last: Instant,
    heartbeats: u64,
    reported: Option<Liveness>,
}

/// Watches a set of peers, keyed by node id.
#[derive(Clone, Debug, Default)]
pub struct Detector {
    config: DetectorConfig,
    peers: HashMap<String, Watch>,
}

impl Detector {
    /// A detector watching no peer.
    pub fn new(config: DetectorConfig) -> Self {
        Self {
            config,
            peers: HashMap::new(),
        }
    }

    /// Its thresholds.
    pub fn config(&self) -> DetectorConfig {
        self.config
    }

    /// Starts watching `peer` as though it had been heard at `now`; a peer already
    /// watched is left as it is. Returns whether the peer is new.
    pub fn watch(&mut self, peer: &str, now: Instant) -> bool {
        if self.peers.contains_key(peer) {
            return false;
        }
        let watch = Watch {
            last: now,
            heartbeats: 0,
            reported: None,
        };
        self.peers.insert(peer.to_owned(), watch);
        true
    }

    /// A heartbeat from `peer` arrived at `now`; an unwatched peer starts being watched.
    pub fn heartbeat(&mut self, peer: &str, now: Instant) {
        self.watch(peer, now);
        if let Some(w) = self.peers.get_mut(peer) {
            w.last = w.last.max(now);
            w.heartbeats += 1;
        }
    }

    /// Stops watching `peer`. Returns whether it was watched.
    pub fn forget(&mut self, peer: &str) -> bool {
        self.peers.remove(peer).is_some()
    }

    /// Keeps only the peers for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.peers.retain(|peer, _| keep(peer));
    }

    /// Whether `peer` is watched.
    pub fn watches(&self, peer: &str) -> bool {
        self.peers.contains_key(peer)
    }

    /// Every watched peer.
    pub fn peers(&self) -> impl Iterator<Item = &str> {
        self.peers.keys().map(String::as_str)
    }

    /// When `peer` was last heard (or started being watched).
    pub fn last_heard(&self, peer: &str) -> Option<Instant> {
        self.peers.get(peer).map(|w| w.last)
    }

    /// How many heartbeats arrived from `peer` since it started being watched.
    pub fn heartbeats(&self, peer: &str) -> Option<u64> {
        self.peers.get(peer).map(|w| w.heartbeats)
    }

    /// How long `peer` has been silent at `now`.
    pub fn silence(&self, peer: &str, now: Instant) -> Option<Duration> {
        self.last_heard(peer)
            .map(|last| now.saturating_duration_since(last))
    }

    /// The liveness of `peer` at `now`; `None` if it is not watched.
    pub fn state(&self, peer: &str, now: Instant) -> Option<Liveness> {
        self.silence(peer, now).map(|s| self.config.judge(s))
    }

    /// This node itself was stalled until `now` (see [`own_stall`]): whatever it did not
    /// hear meanwhile is its own absence, not its peers' silence. Every peer counts as
    /// heard at `now`; a peer that is really gone is judged again from here.
    pub fn excuse(&mut self, now: Instant) {
        for w in self.peers.values_mut() {
            w.last = w.last.max(now);
        }
    }

    /// Stops watching the peers silent for `after` or longer at `now`, and returns them
    /// sorted (a peer down that long is forgotten).
    pub fn forget_silent(&mut self, now: Instant, after: Duration) -> Vec<String> {
        let mut gone = Vec::new();
        self.peers.retain(|peer, w| {
            let keep = now.saturating_duration_since(w.last) < after;
            if !keep {
                gone.push(peer.clone());
            }
            keep
        });
        gone.sort();
        gone
    }

    /// The peers whose liveness at `now` differs from what the last call returned for
    /// them (a newly watched peer once, with its first verdict), sorted by node id.
    pub fn changes(&mut self, now: Instant) -> Vec<(String, Liveness)> {
        let config = self.config;
        let mut changed: Vec<(String, Liveness)> = self
            .peers
            .iter_mut()
            .filter_map(|(peer, w)| {
                let state = config.judge(now.saturating_duration_since(w.last));
                (w.reported != Some(state)).then(|| {
                    w.reported = Some(state);
                    (peer.clone(), state)
                })
            })
            .collect();
        changed.sort();
        changed
    }
}

/// How long this node itself was stalled, if the gap between two ticks of a timer set to
/// `interval` shows it: five intervals or more (a frozen process, SIGSTOP, a stalled VM,
/// a starved runtime). Such a node heard nothing during the gap and must not hold it
/// against its peers ([`Detector::excuse`]).
pub fn own_stall(last_tick: Option<Instant>, now: Instant, interval: Duration) -> Option<Duration> {
    let gap = now.saturating_duration_since(last_tick?);
    (gap >= interval.saturating_mul(5)).then_some(gap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_of_five_intervals_between_own_ticks_is_a_stall() {
        let t0 = Instant::now();
        let interval = 200 * MS;
        assert_eq!(own_stall(None, t0, interval), None, "first tick");
        assert_eq!(own_stall(Some(t0), t0 + 200 * MS, interval), None);
        assert_eq!(own_stall(Some(t0), t0 + 999 * MS, interval), None, "jitter");
        assert_eq!(
            own_stall(Some(t0), t0 + 3000 * MS, interval),
            Some(3000 * MS)
        );
        assert_eq!(
            own_stall(Some(t0 + MS), t0, interval),
            None,
            "clock going back"
        );
    }

    #[test]
    fn a_stalled_node_excuses_its_peers_silence() {
        let (mut d, t0) = detector();
        d.heartbeat("b", t0);
        d.heartbeat("c", t0 + 3000 * MS);
        // This node was frozen from t0 + 100 ms to t0 + 3.1 s.
        let woke = t0 + 3100 * MS;
        d.excuse(woke);
        assert_eq!(d.state("b", woke), Some(Liveness::Up));
        assert_eq!(d.state("b", woke + 1999 * MS), Some(Liveness::Suspect));
        assert_eq!(
            d.state("b", woke + 2000 * MS),
            Some(Liveness::Down),
            "judged afresh"
        );
        assert_eq!(d.last_heard("c"), Some(woke));
    }

    #[test]
    fn peers_silent_past_the_forget_time_are_forgotten() {
        let (mut d, t0) = detector();
        d.heartbeat("b", t0);
        d.heartbeat("c", t0 + 5000 * MS);
        assert!(d.forget_silent(t0 + 9999 * MS, 10_000 * MS).is_empty());
        assert_eq!(d.forget_silent(t0 + 10_000 * MS, 10_000 * MS), ["b"]);
        assert!(!d.watches("b"));
        assert!(d.watches("c"));
    }

    const MS: Duration = Duration::from_millis(1);

    fn detector() -> (Detector, Instant) {
        (Detector::new(DetectorConfig::default()), Instant::now())
    }

    #[test]
    fn regular_heartbeats_stay_up() {
        let (mut d, t0) = detector();
        d.watch("b", t0);
        for i in 1..=100 {
            let now = t0 + 200 * i * MS;
            d.heartbeat("b", now);
            assert_eq!(d.state("b", now + 199 * MS), Some(Liveness::Up));
        }
        assert_eq!(d.heartbeats("b"), Some(100));
    }

    #[test]
    fn silence_turns_suspect_then_down_at_the_thresholds() {
        let (mut d, t0) = detector();
        d.heartbeat("b", t0);
        assert_eq!(d.state("b", t0 + 999 * MS), Some(Liveness::Up));
        assert_eq!(d.state("b", t0 + 1000 * MS), Some(Liveness::Suspect));
        assert_eq!(d.state("b", t0 + 1999 * MS), Some(Liveness::Suspect));
        assert_eq!(d.state("b", t0 + 2000 * MS), Some(Liveness::Down));
        assert_eq!(d.state("b", t0 + 60_000 * MS), Some(Liveness::Down));
        assert_eq!(d.silence("b", t0 + 2500 * MS), Some(2500 * MS));
    }

    #[test]
    fn a_fresh_heartbeat_brings_a_down_peer_back_up() {
        let (mut d, t0) = detector();
        d.heartbeat("b", t0);
        let later = t0 + 5000 * MS;
        assert_eq!(d.state("b", later), Some(Liveness::Down));
        d.heartbeat("b", later);
        assert_eq!(d.state("b", later), Some(Liveness::Up));
        assert_eq!(d.state("b", later + 1000 * MS), Some(Liveness::Suspect));
    }

    #[test]
    fn jitter_shorter_than_the_suspicion_timeout_goes_unnoticed() {
        let (mut d, t0) = detector();
        d.watch("b", t0);
        // Heartbeats every 200 ms on average, each up to ±180 ms late or early, with a
        // stall of 900 ms now and then (a busy runtime).
        let mut now = t0;
        let mut worst = Duration::ZERO;
        for i in 0u64..500 {
            let gap = match i % 50 {
                0 => 900,
                n if n % 2 == 0 => 20 + (i * 37 % 160),
                _ => 380 - (i * 37 % 160),
            };
            let next = now + Duration::from_millis(gap);
            // Just before the heartbeat arrives, the silence is at its longest.
            let before = next - MS;
            assert_eq!(d.state("b", before), Some(Liveness::Up), "gap {gap} ms");
            worst = worst.max(d.silence("b", before).unwrap_or_default());
            now = next;
            d.heartbeat("b", now);
        }
        assert!(worst < d.config().suspect_after, "{worst:?}");
    }

    #[test]
    fn a_late_arrival_does_not_move_the_clock_back() {
        let (mut d, t0) = detector();
        d.heartbeat("b", t0 + 1000 * MS);
        d.heartbeat("b", t0);
        assert_eq!(d.last_heard("b"), Some(t0 + 1000 * MS));
    }

    #[test]
    fn watching_starts_the_clock_once_and_forgetting_stops_it() {
        let (mut d, t0) = detector();
        assert_eq!(d.state("b", t0), None);
        assert!(d.watch("b", t0));
        assert!(!d.watch("b", t0 + 3000 * MS), "already watched");
        assert_eq!(d.state("b", t0 + 3000 * MS), Some(Liveness::Down));
        assert_eq!(d.heartbeats("b"), Some(0));
        assert!(d.forget("b"));
        assert!(!d.forget("b"));
        assert_eq!(d.state("b", t0), None);
        assert!(!d.watches("b"));
    }

    #[test]
    fn retain_keeps_only_current_members() {
        let (mut d, t0) = detector();
        for p in ["a", "b", "c"] {
            d.watch(p, t0);
        }
        d.retain(|p| p != "b");
        let mut left: Vec<&str> = d.peers().collect();
        left.sort();
        assert_eq!(left, ["a", "c"]);
    }

    #[test]
    fn changes_are_reported_once_each() {
        let (mut d, t0) = detector();
        d.watch("a", t0);
        d.watch("b", t0);
        let up = |p: &str| (p.to_owned(), Liveness::Up);
        assert_eq!(d.changes(t0), [up("a"), up("b")], "new peers once");
        assert!(d.changes(t0 + 500 * MS).is_empty());
        d.heartbeat("a", t0 + 900 * MS);
        let t = t0 + 1200 * MS;
        assert_eq!(d.changes(t), [("b".to_owned(), Liveness::Suspect)]);
        assert!(d.changes(t).is_empty());
        let t = t0 + 2100 * MS;
        assert_eq!(
            d.changes(t),
            [
                ("a".to_owned(), Liveness::Suspect),
                ("b".to_owned(), Liveness::Down)
            ]
        );
        d.heartbeat("b", t);
        assert_eq!(d.changes(t), [up("b")]);
        // Skipping a state (Up straight to Down between two evaluations) is one change.
        assert_eq!(
            d.changes(t + 5000 * MS),
            [
                ("a".to_owned(), Liveness::Down),
                ("b".to_owned(), Liveness::Down)
            ]
        );
        // A forgotten peer watched again is reported again.
        d.forget("a");
        d.watch("a", t + 5000 * MS);
        assert_eq!(d.changes(t + 5000 * MS), [up("a")]);
    }

    #[test]
    fn custom_thresholds_are_honoured() {
        let config = DetectorConfig {
            suspect_after: 300 * MS,
            down_after: 700 * MS,
        };
        assert_eq!(config.judge(299 * MS), Liveness::Up);
        assert_eq!(config.judge(300 * MS), Liveness::Suspect);
        assert_eq!(config.judge(700 * MS), Liveness::Down);
        assert!(Liveness::Up < Liveness::Suspect && Liveness::Suspect < Liveness::Down);
        assert_eq!(Liveness::Suspect.as_str(), "suspect");
    }
}
