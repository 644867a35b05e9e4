//! The HealthMonitor: the node's readiness (store reachable, pool alive, not draining).
//!
//! Checks run on a timer in a task of their own and report back as messages, so a
//! readiness query is answered at once from the last verdict and never waits on I/O.
//! Peer failure detection joins it with the cluster.

use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;

use crate::context::NodeContext;
use crate::worker_pool::PoolMessage;

/// Settings of the HealthMonitor.
#[derive(Clone, Copy, Debug)]
pub struct HealthConfig {
    /// Time between checks.
    pub interval: Duration,
    /// Limit on each check's I/O.
    pub timeout: Duration,
    /// How long this node's hold on its tasks lasts without renewal. Renewed on every
    /// check; once it lapses, any node may claim the tasks.
    pub lease_ttl: Duration,
    /// Every this many checks, look for nodes whose lease lapsed and claim their tasks.
    pub reap_every: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(500),
            timeout: Duration::from_millis(1000),
            lease_ttl: Duration::from_secs(5),
            reap_every: 4,
        }
    }
}

/// The readiness verdict, as `/health/ready` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// True when the node should receive traffic.
    pub ready: bool,
    /// `ok` or what is wrong with the store.
    pub store: String,
    /// `ok` or what is wrong with the local pool.
    pub pool: String,
    /// True once shutdown has begun.
    pub draining: bool,
    /// `ok`, or which of the node's actors keep failing.
    pub supervision: String,
}

/// Messages of the HealthMonitor.
pub enum HealthMessage {
    /// Timer: run the checks.
    Check,
    /// Results of a check run.
    Checked {
        /// Store verdict.
        store: Result<(), String>,
        /// Pool verdict.
        pool: Result<(), String>,
    },
    /// The last verdict.
    GetReadiness(RpcReplyPort<Readiness>),
    /// Shutdown began: report not ready from now on.
    SetDraining,
    /// The root supervisor's verdict: `None` when no actor is crash-looping.
    Supervision(Option<String>),
}

// Local only: the cluster feature of ractor needs the impl spelled out.
impl ractor::Message for HealthMessage {}

/// The HealthMonitor actor.
pub struct HealthMonitor;

/// What the HealthMonitor is started with.
pub struct HealthArgs {
    /// Shared node handles.
    pub ctx: NodeContext,
    /// Settings.
    pub config: HealthConfig,
}

/// The HealthMonitor's state.
pub struct HealthState {
    ctx: NodeContext,
    config: HealthConfig,
    verdict: Readiness,
    checks: u32,
    /// Since when every check reached the store; `None` while it does not.
    store_reachable_since: Option<Instant>,
}

/// Whether this node may claim the tasks of nodes whose lease lapsed: only once the store
/// has answered its checks for a whole lease period. A store that was away (restarted,
/// cut off) may come back with every lease lapsed at once, live nodes' included; waiting
/// one lease period gives every live node time to renew before anyone reaps.
pub fn may_reap(reachable_since: Option<Instant>, now: Instant, lease_ttl: Duration) -> bool {
    reachable_since.is_some_and(|since| now.saturating_duration_since(since) >= lease_ttl)
}

impl Actor for HealthMonitor {
    type Msg = HealthMessage;
    type State = HealthState;
    type Arguments = HealthArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: HealthArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(args.config.interval, || HealthMessage::Check);
        let _ = myself.cast(HealthMessage::Check);
        Ok(HealthState {
            ctx: args.ctx,
            config: args.config,
            verdict: Readiness {
                ready: false,
                store: "not checked yet".into(),
                pool: "not checked yet".into(),
                draining: false,
                supervision: "ok".into(),
            },
            checks: 0,
            store_reachable_since: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            HealthMessage::Check => {
                let (ctx, config) = (state.ctx.clone(), state.config);
                state.checks = state.checks.wrapping_add(1);
                let reap = state.checks % config.reap_every.max(1) == 0
                    && !state.verdict.draining
                    && may_reap(
                        state.store_reachable_since,
                        Instant::now(),
                        config.lease_ttl,
                    );
                tokio::spawn(async move {
                    let (store, pool) = tokio::join!(check_store(&ctx, &config), check_pool(&ctx));
                    let _ = myself.cast(HealthMessage::Checked {
                        store: store.clone(),
                        pool,
                    });
                    if reap && store.is_ok() {
                        reap_lapsed(&ctx, config.timeout).await;
                    }
                });
            }
            HealthMessage::Checked { store, pool } => {
                state.store_reachable_since = match (&store, state.store_reachable_since) {
                    (Ok(()), since) => since.or_else(|| Some(Instant::now())),
                    (Err(_), _) => None,
                };
                let v = &mut state.verdict;
                let was_ready = v.ready;
                v.store = store.err().unwrap_or_else(|| "ok".into());
                v.pool = pool.err().unwrap_or_else(|| "ok".into());
                v.ready = v.store == "ok" && v.pool == "ok" && v.supervision == "ok" && !v.draining;
                if was_ready != v.ready {
                    tracing::info!(ready = v.ready, store = %v.store, pool = %v.pool, "readiness changed");
                }
                state.ctx.metrics.ready.set(i64::from(v.ready));
            }
            HealthMessage::GetReadiness(reply) => {
                let _ = reply.send(state.verdict.clone());
            }
            HealthMessage::Supervision(verdict) => {
                let v = &mut state.verdict;
                v.supervision = verdict.unwrap_or_else(|| "ok".into());
                v.ready = v.ready && v.supervision == "ok";
                state.ctx.metrics.ready.set(i64::from(v.ready));
            }
            HealthMessage::SetDraining => {
                state.verdict.draining = true;
                state.verdict.ready = false;
                state.ctx.metrics.ready.set(0);
            }
        }
        Ok(())
    }
}

/// Renews this node's lease, which doubles as the store's reachability check.
///
/// The verdict is a fixed word (`unreachable`, `timeout`) because `/health/ready` shows
/// it to anyone; the store's own error is logged here.
async fn check_store(ctx: &NodeContext, config: &HealthConfig) -> Result<(), String> {
    let ttl_ms = config.lease_ttl.as_millis() as u64;
    let renew = ctx.store.renew_lease(&ctx.node_id, ttl_ms);
    match tokio::time::timeout(config.timeout, renew).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "store check failed");
            Err("unreachable".into())
        }
        Err(_) => {
            tracing::warn!(timeout = ?config.timeout, "store check timed out");
            Err("timeout".into())
        }
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

async fn check_pool(ctx: &NodeContext) -> Result<(), String> {
    let pool = ActorRef::<PoolMessage>::where_is(ctx.names.pool.clone())
        .ok_or_else(|| "not running".to_owned())?;
    let load = ractor::call_t!(pool, PoolMessage::GetLoad, 1000)
        .map_err(|_| "not answering".to_owned())?;
    if load.workers == 0 {
        return Err("no workers".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::may_reap;

    #[test]
    fn reaping_waits_for_a_whole_lease_of_reachable_store() {
        let ttl = Duration::from_secs(5);
        let t0 = Instant::now();
        assert!(!may_reap(None, t0, ttl), "store unreachable");
        assert!(!may_reap(Some(t0), t0 + Duration::from_millis(4999), ttl));
        assert!(may_reap(Some(t0), t0 + ttl, ttl));
        assert!(
            !may_reap(Some(t0 + ttl), t0, ttl),
            "a clock going back reaps nothing"
        );
    }
}
