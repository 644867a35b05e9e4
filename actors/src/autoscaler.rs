//! The Autoscaler: sizes the local pool between `--min-workers` and `--max-workers`.
//!
//! On each tick it samples the pool, asks the pure [`policy::decide`] for a worker
//! count, and sends the pool a resize when the answer differs. The cluster-wide desired
//! node count joins it with the cluster.

use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::context::NodeContext;
use crate::worker_pool::PoolMessage;

pub mod policy;

use policy::{AutoscaleMemory, AutoscalePolicy, PoolSample};

/// Settings of the Autoscaler.
#[derive(Clone, Copy, Debug)]
pub struct AutoscalerConfig {
    /// Bounds and cool-down.
    pub policy: AutoscalePolicy,
    /// Time between samples.
    pub interval: Duration,
}

/// Messages of the Autoscaler.
pub enum AutoscalerMessage {
    /// Timer: sample the pool and maybe resize it.
    Tick,
}

// Local only: the cluster feature of ractor needs the impl spelled out.
impl ractor::Message for AutoscalerMessage {}

/// The Autoscaler actor.
pub struct Autoscaler;

/// What the Autoscaler is started with.
pub struct AutoscalerArgs {
    /// Shared node handles.
    pub ctx: NodeContext,
    /// Settings.
    pub config: AutoscalerConfig,
}

/// The Autoscaler's state.
pub struct AutoscalerState {
    ctx: NodeContext,
    config: AutoscalerConfig,
    memory: AutoscaleMemory,
}

impl Actor for Autoscaler {
    type Msg = AutoscalerMessage;
    type State = AutoscalerState;
    type Arguments = AutoscalerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: AutoscalerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(args.config.interval, || AutoscalerMessage::Tick);
        Ok(AutoscalerState {
            ctx: args.ctx,
            config: args.config,
            memory: AutoscaleMemory::default(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let AutoscalerMessage::Tick = message;
        let Some(pool) = ActorRef::<PoolMessage>::where_is(state.ctx.names.pool.clone()) else {
            return Ok(());
        };
        let Ok(load) = ractor::call_t!(pool, PoolMessage::GetLoad, 1000) else {
            return Ok(());
        };
        if load.figures.draining {
            return Ok(());
        }
        let sample = PoolSample {
            workers: load.figures.workers,
            busy: load.figures.busy,
            queued: load.figures.queued.iter().sum(),
        };
        if let Some(n) = policy::decide(
            &state.config.policy,
            sample,
            &mut state.memory,
            Instant::now(),
        ) {
            tracing::info!(
                from = load.figures.workers,
                to = n,
                queued = sample.queued,
                "resizing pool"
            );
            let _ = pool.cast(PoolMessage::Resize(n));
        }
        Ok(())
    }
}
