//! The HealthMonitor: the node's readiness (store reachable, pool alive, not draining).
//!
//! Checks run on a timer in a task of their own and report back as messages, so a
//! readiness query is answered at once from the last verdict and never waits on I/O.
//! This node's lease and the claiming of other nodes' tasks live in
//! [`crate::failover`].

use std::time::Duration;

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
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(500),
            timeout: Duration::from_millis(1000),
        }
    }
}

/// The readiness verdict, as `/health/ready` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
                tokio::spawn(async move {
                    let (store, pool) = tokio::join!(check_store(&ctx, &config), check_pool(&ctx));
                    let _ = myself.cast(HealthMessage::Checked { store, pool });
                });
            }
            HealthMessage::Checked { store, pool } => {
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

/// Pings the store (the lease is renewed by [`crate::failover`]).
///
/// The verdict is a fixed word (`unreachable`, `timeout`) because `/health/ready` shows
/// it to anyone; the store's own error is logged here.
async fn check_store(ctx: &NodeContext, config: &HealthConfig) -> Result<(), String> {
    match tokio::time::timeout(config.timeout, ctx.store.ping()).await {
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

async fn check_pool(ctx: &NodeContext) -> Result<(), String> {
    let pool = ActorRef::<PoolMessage>::where_is(ctx.names.pool.clone())
        .ok_or_else(|| "not running".to_owned())?;
    let load = ractor::call_t!(pool, PoolMessage::GetLoad, 1000)
        .map_err(|_| "not answering".to_owned())?;
    if load.figures.workers == 0 {
        return Err("no workers".into());
    }
    Ok(())
}
