//! What a submission costs the Dispatcher, counted: a real Dispatcher and WorkerPool on
//! an in-memory store, with a proxy under the dispatcher's name that counts every
//! message before passing it on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use taskmesh_cluster::wire::NodeInfo;
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

/// A node's handles on an in-memory store.
fn context(node: &str, cluster: Option<Arc<NodeInfo>>) -> anyhow::Result<NodeContext> {
    Ok(NodeContext {
        cluster,
        node_id: node.into(),
        store: Arc::new(MemoryStore::new()),
        kernels: Registry::new(RegistryOptions { test_kernels: true }),
        metrics: Arc::new(Metrics::new()?),
        notifier: Arc::new(Notifier::default()),
        names: Arc::new(ActorNames::for_node(node)),
        local_load: Default::default(),
    })
}

/// Ten single submissions and a batch of five to a node with its own pool (clustered or
/// not, with no peer): the messages its Dispatcher got, once every task succeeded.
async fn messages_for_local_submissions(clustered: bool) -> anyhow::Result<Vec<&'static str>> {
    let node = format!("count-{}", taskmesh_kernels::task::TaskId::generate());
    let cluster = clustered.then(|| {
        Arc::new(NodeInfo {
            node_id: node.clone(),
            generation: 1,
            cluster_address: "127.0.0.1:1".into(),
            http_address: "127.0.0.1:2".into(),
            labels: vec![],
            kinds: vec![],
        })
    });
    let ctx = context(&node, cluster)?;
    let pool_args = WorkerPoolArgs {
        ctx: ctx.clone(),
        config: WorkerPoolConfig {
            // More than the ten singles and the batch of five could keep busy, so no task
            // ever waits here.
            initial_workers: 16,
            queue_capacity: 100,
            backoff: Backoff::default(),
            report_interval: Duration::from_millis(100),
            labels: vec![],
            worker_lease: Duration::from_secs(10),
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
    assert_eq!(ctx.local_load.admitting(), 0, "no room left reserved");
    assert_eq!(ctx.local_load.incoming(), 0, "every task taken by the pool");
    for actor in [proxy.get_cell(), real.get_cell(), pool.get_cell()] {
        actor.stop(None);
    }
    Ok(seen)
}

#[tokio::test]
async fn a_local_submission_costs_no_dispatcher_message_clustered_or_not() -> anyhow::Result<()> {
    // The pool has free workers, so the tasks stay here whatever the peers' load: they
    // are admitted without an Admit and handed to the pool without a Place, and the
    // pool sends no load reports.
    for clustered in [false, true] {
        let seen = messages_for_local_submissions(clustered).await?;
        assert_eq!(seen, Vec::<&str>::new(), "clustered: {clustered}");
    }
    Ok(())
}

fn noop(class: Option<&str>) -> Demand {
    Demand {
        kind: "noop".into(),
        class: class.map(str::to_owned),
    }
}

fn sizes(admitted: Option<Result<Reservation, PlaceError>>) -> Option<Result<usize, PlaceError>> {
    admitted.map(|r| r.map(|r| r.len()))
}

#[test]
fn a_lone_node_admits_here_and_never_overcommits_its_pool() -> anyhow::Result<()> {
    let ctx = context("alone", None)?;
    ctx.local_load.started(&[], &ctx.kernels.kinds());
    ctx.local_load.publish(&crate::handoff::LoadFigures {
        workers: 1,
        capacity: 3,
        ..Default::default()
    });
    assert_eq!(
        sizes(admit_here(&ctx, &[noop(None).need(), noop(None).need()])),
        Some(Ok(2))
    );
    assert_eq!(
        sizes(admit_here(&ctx, &[noop(None).need(), noop(None).need()])),
        Some(Err(PlaceError::Saturated)),
        "all or nothing: one place is left, not two"
    );
    assert_eq!(sizes(admit_here(&ctx, &[noop(None).need()])), Some(Ok(1)));
    assert_eq!(ctx.local_load.admitting(), 3);
    assert_eq!(
        sizes(admit_here(&ctx, &[noop(Some("gpu")).need()])),
        Some(Err(PlaceError::NoSuchClass("gpu".into())))
    );
    let pdf = Demand {
        kind: "pdf".into(),
        class: None,
    };
    assert_eq!(
        sizes(admit_here(&ctx, &[pdf.need()])),
        Some(Err(PlaceError::UnknownKind("pdf".into())))
    );
    Ok(())
}

#[test]
fn a_clustered_node_admits_here_only_what_stays_here_whatever_the_peers() -> anyhow::Result<()> {
    let info = NodeInfo {
        node_id: "n1".into(),
        generation: 1,
        cluster_address: "127.0.0.1:1".into(),
        http_address: "127.0.0.1:2".into(),
        labels: vec![],
        kinds: vec![],
    };
    let ctx = context("n1", Some(Arc::new(info)))?;
    ctx.local_load.started(&[], &ctx.kernels.kinds());
    let figures = |busy, queued| crate::handoff::LoadFigures {
        workers: 2,
        busy,
        queued: [queued, 0, 0],
        capacity: 100,
        ..Default::default()
    };
    ctx.local_load.publish(&figures(0, 0));
    assert_eq!(
        sizes(admit_here(&ctx, &[noop(None).need(), noop(None).need()])),
        Some(Ok(2))
    );
    // Both workers busy and one task queued: the next would wait a whole task here,
    // which a peer might save: the dispatcher decides.
    ctx.local_load.publish(&figures(2, 1));
    assert_eq!(sizes(admit_here(&ctx, &[noop(None).need()])), None);
    // So does a class this node lacks (a peer may have it), and nothing was reserved.
    ctx.local_load.publish(&figures(0, 0));
    assert_eq!(sizes(admit_here(&ctx, &[noop(Some("gpu")).need()])), None);
    // And a kind this node lacks.
    let pdf = Demand {
        kind: "pdf".into(),
        class: None,
    };
    assert_eq!(
        sizes(admit_here(&ctx, &[noop(None).need(), pdf.need()])),
        None
    );
    assert_eq!(ctx.local_load.admitting(), 2);
    Ok(())
}
