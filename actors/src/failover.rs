//! Failover: this node's lease in the store, and when the tasks of another node move
//! here.
//!
//! The Failover actor
//! - renews this node's lease every `--lease-renew-ms` ([`TaskStore::renew_lease`]);
//! - watches the peers the Dispatcher holds down ([`FailoverMessage::Down`]), reads
//!   their leases every poll and claims a peer's tasks only on the store's evidence
//!   that it stopped renewing ([`decide`]): fast verdicts (a closed session, the
//!   failure detector) only stop new work going to a peer;
//! - every couple of seconds claims the tasks of any node whose lease lapsed
//!   ([`TaskStore::expired_holders`]: a node that died unseen, or the whole cluster
//!   restarted).
//!
//! Store I/O runs in tasks of its own that report back as messages, so a slow store
//! never blocks a poll. The watches are the actor's state: after a restart the
//! Dispatcher's next tick (250 ms) hands the down set over again, and a stall is
//! measured afresh.
//!
//! [`ensure_id_free`] is the start-up check that no running node uses this node's id.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::context::NodeContext;
use crate::store::{LeaseInfo, TaskStore};

pub mod decide;

use decide::{Cause, Verdict, Watch};

/// Settings of the Failover actor.
#[derive(Clone, Copy, Debug)]
pub struct FailoverConfig {
    /// Time between two renewals of this node's lease (`--lease-renew-ms`).
    pub renew: Duration,
    /// How long a renewal lasts (`--lease-ttl-ms`).
    pub lease_ttl: Duration,
    /// A peer whose session closed is claimed once its renewal counter has not moved
    /// for this long (`--claim-after-ms`, 2 × the renewal period by default).
    pub claim_after: Duration,
    /// Limit on each store call.
    pub timeout: Duration,
    /// Time between two looks for lapsed leases.
    pub reap_every: Duration,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        Self {
            renew: Duration::from_millis(500),
            lease_ttl: Duration::from_secs(5),
            claim_after: Duration::from_millis(1000),
            timeout: Duration::from_millis(1000),
            reap_every: Duration::from_secs(2),
        }
    }
}

impl FailoverConfig {
    /// How often the actor looks at its timers and at the watched peers' leases: a
    /// fifth of the renewal period, between 20 and 100 ms.
    pub fn poll(&self) -> Duration {
        (self.renew / 5).clamp(Duration::from_millis(20), Duration::from_millis(100))
    }
}

/// Messages of the Failover actor.
pub enum FailoverMessage {
    /// Timer: renew, poll, reap when due.
    Tick,
    /// The peers the Dispatcher holds down, and why: the whole set each time.
    Down(Vec<(String, Cause)>),
    /// How a renewal of this node's lease ended.
    Renewed(Result<(), String>),
    /// The watched peers' leases as read (or why a read failed).
    Leases(Vec<(String, Result<Option<LeaseInfo>, String>)>),
    /// A claim of a peer's tasks ended: `false` if it failed (it is tried again).
    Claimed {
        /// The peer.
        node: String,
        /// Whether the claim was written.
        done: bool,
    },
    /// Shutdown began: keep renewing (the pool is draining) but claim nothing more.
    SetDraining,
}

// Local only: the cluster feature of ractor needs the impl spelled out.
impl ractor::Message for FailoverMessage {}

/// The Failover actor.
pub struct Failover;

/// What the Failover actor is started with.
pub struct FailoverArgs {
    /// Shared node handles.
    pub ctx: NodeContext,
    /// Settings.
    pub config: FailoverConfig,
}

/// The Failover actor's state.
pub struct FailoverState {
    ctx: NodeContext,
    config: FailoverConfig,
    watches: HashMap<String, Watch>,
    /// Since when every renewal reached the store; `None` while they do not.
    reachable_since: Option<Instant>,
    next_renew: Instant,
    next_reap: Instant,
    renewing: bool,
    polling: bool,
    draining: bool,
}

impl FailoverState {
    fn store_steady(&self, now: Instant) -> bool {
        decide::may_reap(self.reachable_since, now, self.config.lease_ttl)
    }

    fn tick(&mut self, myself: &ActorRef<FailoverMessage>, now: Instant) {
        if now >= self.next_renew && !self.renewing {
            self.renewing = true;
            self.next_renew = now + self.config.renew;
            let (ctx, config, myself) = (self.ctx.clone(), self.config, myself.clone());
            tokio::spawn(async move {
                let ttl_ms = config.lease_ttl.as_millis() as u64;
                let renew = ctx.store.renew_lease(&ctx.node_id, ttl_ms);
                let outcome = match tokio::time::timeout(config.timeout, renew).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out".into()),
                };
                let _ = myself.cast(FailoverMessage::Renewed(outcome));
            });
        }
        if now >= self.next_reap && !self.draining && self.store_steady(now) {
            self.next_reap = now + self.config.reap_every;
            let (ctx, timeout) = (self.ctx.clone(), self.config.timeout);
            tokio::spawn(async move { reap_lapsed(&ctx, timeout).await });
        }
        self.poll(myself);
    }

    /// Reads the lease of every watched peer not claimed yet, in a task of its own.
    fn poll(&mut self, myself: &ActorRef<FailoverMessage>) {
        let nodes: Vec<String> = self
            .watches
            .iter()
            .filter(|(_, w)| !w.claiming)
            .map(|(n, _)| n.clone())
            .collect();
        if nodes.is_empty() || self.polling || self.draining {
            return;
        }
        self.polling = true;
        let (store, timeout, myself) =
            (self.ctx.store.clone(), self.config.timeout, myself.clone());
        tokio::spawn(async move {
            let mut leases = Vec::with_capacity(nodes.len());
            for node in nodes {
                let read = read_lease(&*store, &node, timeout).await;
                leases.push((node, read));
            }
            let _ = myself.cast(FailoverMessage::Leases(leases));
        });
    }

    fn leases(&mut self, leases: Vec<(String, Result<Option<LeaseInfo>, String>)>, now: Instant) {
        self.polling = false;
        let steady = self.store_steady(now);
        for (node, read) in leases {
            let Some(watch) = self.watches.get_mut(&node) else {
                continue;
            };
            let lease = match read {
                Ok(lease) => lease,
                Err(e) => {
                    tracing::debug!(peer = %node, error = %e, "reading a peer's lease failed");
                    watch.read_failed();
                    continue;
                }
            };
            if let Verdict::Claim(why) = watch.observe(lease, now, self.config.claim_after, steady)
                && !self.draining
            {
                let cause = watch.cause;
                tracing::warn!(peer = %node, ?cause, why, "the store shows the peer stopped; claiming its tasks");
                let ctx = self.ctx.clone();
                let myself = ActorRef::<FailoverMessage>::where_is(ctx.names.failover.clone());
                tokio::spawn(async move {
                    let done = crate::dispatcher::claim_from(&ctx, &node, why).await;
                    if let Some(me) = myself {
                        let _ = me.cast(FailoverMessage::Claimed { node, done });
                    }
                });
            }
        }
    }
}

async fn read_lease(
    store: &dyn TaskStore,
    node: &str,
    timeout: Duration,
) -> Result<Option<LeaseInfo>, String> {
    match tokio::time::timeout(timeout, store.lease(node)).await {
        Ok(read) => read.map_err(|e| e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

impl Actor for Failover {
    type Msg = FailoverMessage;
    type State = FailoverState;
    type Arguments = FailoverArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: FailoverArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(args.config.poll(), || FailoverMessage::Tick);
        let _ = myself.cast(FailoverMessage::Tick);
        let now = Instant::now();
        Ok(FailoverState {
            ctx: args.ctx,
            config: args.config,
            watches: HashMap::new(),
            reachable_since: None,
            next_renew: now,
            next_reap: now,
            renewing: false,
            polling: false,
            draining: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            FailoverMessage::Tick => state.tick(&myself, Instant::now()),
            FailoverMessage::Down(down) => {
                let me = &*state.ctx.node_id;
                let down: Vec<_> = down.into_iter().filter(|(n, _)| n != me).collect();
                if decide::sync_watches(&mut state.watches, &down) {
                    state.poll(&myself);
                }
            }
            FailoverMessage::Renewed(outcome) => {
                state.renewing = false;
                match outcome {
                    Ok(()) => {
                        state.reachable_since.get_or_insert_with(Instant::now);
                    }
                    Err(e) => {
                        if state.reachable_since.take().is_some() {
                            tracing::warn!(error = %e, "renewing this node's lease failed");
                        }
                    }
                }
            }
            FailoverMessage::Leases(leases) => state.leases(leases, Instant::now()),
            FailoverMessage::Claimed { node, done } => {
                if !done && let Some(w) = state.watches.get_mut(&node) {
                    *w = Watch::new(w.cause);
                }
            }
            FailoverMessage::SetDraining => state.draining = true,
        }
        Ok(())
    }
}

/// Claims the tasks of every node whose lease lapsed (it died, alone or unseen, or the
/// whole cluster restarted) and hands them to the dispatcher, which places them like
/// new ones. Only one claimant wins each task.
async fn reap_lapsed(ctx: &NodeContext, timeout: Duration) {
    let lapsed = match tokio::time::timeout(timeout, ctx.store.expired_holders()).await {
        Ok(Ok(nodes)) => nodes,
        Ok(Err(e)) => return tracing::warn!(error = %e, "looking for lapsed leases failed"),
        Err(_) => return tracing::warn!("looking for lapsed leases timed out"),
    };
    for node in lapsed.into_iter().filter(|n| **n != *ctx.node_id) {
        crate::dispatcher::claim_from(ctx, &node, "its lease lapsed").await;
    }
}

/// Why a node may not start under its id.
#[derive(Debug, thiserror::Error)]
pub enum IdError {
    /// Another running node renews the id's lease.
    #[error(
        "node id {0:?} is in use: another running node renews its lease in the store; \
         give each node its own --node-id (TASKMESH_NODE_ID)"
    )]
    InUse(String),
    /// The store could not be read.
    #[error("reading the lease of node id {id:?} failed: {source}")]
    Store {
        /// The id.
        id: String,
        /// What failed.
        source: crate::store::StoreError,
    },
}

/// Refuses to start a node whose id a running node uses: reads the id's lease, and if
/// there is one, reads it again `2 × renew + 100 ms` later; a counter that moved means a
/// live node renews it ([`decide::id_in_use`]). A lease left by a killed node does not
/// move, so a node restarted under its old id starts (after that wait) and takes its
/// tasks back. A store private to one node never has a lease at start.
pub async fn ensure_id_free(
    store: &dyn TaskStore,
    node_id: &str,
    renew: Duration,
) -> Result<(), IdError> {
    let read = async || {
        store.lease(node_id).await.map_err(|source| IdError::Store {
            id: node_id.to_owned(),
            source,
        })
    };
    let Some(before) = read().await? else {
        return Ok(());
    };
    tracing::info!(
        node = node_id,
        "this node id has a live lease; checking that no running node renews it"
    );
    tokio::time::sleep(renew.saturating_mul(2) + Duration::from_millis(100)).await;
    let after = read().await?;
    if decide::id_in_use(Some(before), after) {
        return Err(IdError::InUse(node_id.to_owned()));
    }
    Ok(())
}
