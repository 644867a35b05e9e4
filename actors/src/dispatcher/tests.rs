//! What a submission costs the Dispatcher, counted: a real Dispatcher and WorkerPool on
//! an in-memory store, with a proxy under the dispatcher's name that counts every
//! message before passing it on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use taskmesh_kernels::task::TaskStatus;
use taskmesh_kernels::{Registry, RegistryOptions};

use super::*;
use crate::context::ActorNames;
use crate::ingress::{IngressLimits, IngressState};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::store::Created;
use crate::store::conformance::fixtures::spec;
use crate::store::memory::MemoryStore;
use crate::testing::eventually;
use crate::worker_pool::retry::Backoff;
use crate::worker_pool::{WorkerPool, WorkerPoolArgs, WorkerPoolConfig};

type Seen = Arc<Mutex<Vec<&'static str>>>;

fn kind(message: &DispatcherMessage) -> &'static str {
    match message {
        DispatcherMessage::Admit { .. } => "Admit",
        DispatcherMessage::Place { .. } => "Place",
        DispatcherMessage::Handover { .. } => "Handover",
        DispatcherMessage::Dispatched { .. } => "Dispatched",
        _ => "other",
    }
}

/// Registered under the dispatcher's name: counts each message, then passes it on.
struct Counting;

impl Actor for Counting {
    type Msg = DispatcherMessage;
    type State = (ActorRef<DispatcherMessage>, Seen);
    type Arguments = (ActorRef<DispatcherMessage>, Seen);

    async fn pre_start(
        &self,
        _: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        message: Self::Msg,
        (real, seen): &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Ok(mut seen) = seen.lock() {
            seen.push(kind(&message));
        }
        let _ = real.cast(message);
        Ok(())
    }
}

#[tokio::test]
async fn a_local_submission_costs_the_dispatcher_one_message() -> anyhow::Result<()> {
    let node = format!("count-{}", taskmesh_kernels::task::TaskId::generate());
    let ctx = NodeContext {
        cluster: None,
        node_id: node.as_str().into(),
        store: Arc::new(MemoryStore::new()),
        kernels: Registry::new(RegistryOptions { test_kernels: true }),
        metrics: Arc::new(Metrics::new()?),
        notifier: Arc::new(Notifier::default()),
        names: Arc::new(ActorNames::for_node(&node)),
        local_load: Default::default(),
    };
    let pool_args = WorkerPoolArgs {
        ctx: ctx.clone(),
        config: WorkerPoolConfig {
            initial_workers: 2,
            queue_capacity: 100,
            backoff: Backoff::default(),
            report_interval: Duration::from_millis(100),
            labels: vec![],
        },
    };
    let (pool, _) = Actor::spawn(Some(ctx.names.pool.clone()), WorkerPool, pool_args).await?;
    let args = DispatcherArgs {
        ctx: ctx.clone(),
        config: DispatcherConfig::default(),
    };
    let (real, _) = Actor::spawn(None, Dispatcher, args).await?;
    let seen = Seen::default();
    let name = Some(ctx.names.dispatcher.clone());
    let (proxy, _) = Actor::spawn(name, Counting, (real.clone(), seen.clone())).await?;

    let ingress = IngressState::new(ctx.clone(), Arc::new(IngressLimits::default()));
    let mut ids = Vec::new();
    for _ in 0..10 {
        let one = ingress.submit(vec![spec("noop", None)]).await;
        ids.extend(one.map_err(|e| anyhow::anyhow!("{e:?}"))?);
    }
    let batch = (0..5).map(|_| spec("noop", None)).collect();
    let five = ingress.submit(batch).await;
    ids.extend(five.map_err(|e| anyhow::anyhow!("{e:?}"))?);
    let store = ctx.store.clone();
    eventually(Duration::from_secs(10), "every task succeeded", || async {
        for created in &ids {
            let (Created::New(id) | Created::Existing(id)) = created;
            let record = store.get(id).await?;
            if record.is_none_or(|r| r.status != TaskStatus::Succeeded) {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await?;
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    // Eleven submissions (ten single tasks and a batch of five): one Admit each; the
    // tasks went to the pool without a Place, and the pool sent no load reports.
    assert_eq!(seen, vec!["Admit"; 11]);
    assert_eq!(ctx.local_load.admitting(), 0, "no room left reserved");
    assert_eq!(ctx.local_load.incoming(), 0, "every task taken by the pool");
    for actor in [proxy.get_cell(), real.get_cell(), pool.get_cell()] {
        actor.stop(None);
    }
    Ok(())
}
