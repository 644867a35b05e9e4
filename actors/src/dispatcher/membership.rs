//! Membership: what the dispatcher does when a peer's endpoint appears or goes, when
//! a peer introduces itself or answers this node's introduction, when the Heartbeat
//! actor's verdict on a peer changes, and when a peer or this node leaves. The table of
//! peers and its rules are [`super::peers`].

use ractor::ActorCell;
use taskmesh_cluster::detector::Liveness;
use taskmesh_cluster::protocol::PROTOCOL_VERSION;
use taskmesh_cluster::wire::{ENDPOINT_GROUP, Hello, Notice};

use super::DispatcherMessage;
use super::peers::PeerPulse;
use super::remote::{self, CallFailure};
use super::state::{DispatcherState, endpoint_node};
use crate::task::now_ms;

impl DispatcherState {
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
    pub(super) fn rejoin(&mut self, node: &str) {
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

    pub(super) fn peer_hello(&mut self, hello: Hello) {
        if hello.protocol_version == PROTOCOL_VERSION && !self.is_local(&hello.node.node_id) {
            let node = hello.node.node_id.clone();
            self.peers.introduced(hello.node, now_ms());
            self.send_load_to(&node);
            self.refresh_gauges();
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

    pub(super) fn introduce(&self, node_id: String, cell: ActorCell) {
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
}
