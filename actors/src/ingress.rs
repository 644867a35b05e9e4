//! The HttpIngress: owns the node's axum server, validates requests and turns them into
//! messages for the Dispatcher.
//!
//! The actor binds nothing itself: it serves a listener the node bound once, so a
//! restarted ingress serves the same port. Stopping the actor closes the listener and
//! stops the server gracefully: in-flight requests get [`FINISH_WITHIN`] to finish, then
//! are cut. The server's bounds (connections, header read, requests in flight, request
//! time) are in [`server`].

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::auth::Authenticator;
use crate::context::NodeContext;
use crate::metrics::HttpMetrics;

pub mod dto;
pub mod error;
pub mod openapi;
pub mod routes;
mod server;
mod service;
pub mod workers;

/// How long in-flight requests get to finish once the server is told to stop (after the
/// node's drain period); a long-poll still waiting then is cut.
pub const FINISH_WITHIN: Duration = Duration::from_secs(5);

/// Limits the ingress enforces on requests.
#[derive(Clone, Debug)]
pub struct IngressLimits {
    /// Largest request body (413 above).
    pub max_body_bytes: usize,
    /// Largest `params` of one task (413 above).
    pub max_params_bytes: usize,
    /// Largest result an HTTP worker may report (413 above; the lease stays valid).
    pub max_result_bytes: usize,
    /// Most tasks in one batch.
    pub max_batch: usize,
    /// Longest long-poll.
    pub max_wait: Duration,
    /// Most tasks in one listing.
    pub max_list: usize,
    /// Largest `max_retries` a task may ask for.
    pub max_retries: u32,
    /// Largest `timeout_ms` a task may ask for.
    pub max_timeout_ms: u64,
    /// Most open HTTP connections; past it a new connection is closed at once.
    pub max_connections: usize,
    /// Most requests in flight (probes and `/metrics` exempt); past it `503 overloaded`.
    pub max_concurrent_requests: usize,
    /// Longest a request may run, body upload included (`504 timeout` after). A
    /// long-poll waits at most this minus one second.
    pub request_timeout: Duration,
    /// Longest a connection may take to send a whole request head, and stay idle
    /// between two requests; closed after.
    pub header_read_timeout: Duration,
}

impl Default for IngressLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 << 20,
            max_params_bytes: 256 << 10,
            max_result_bytes: 1 << 20,
            max_batch: 1000,
            max_wait: Duration::from_secs(60),
            max_list: 1000,
            max_retries: 20,
            max_timeout_ms: 24 * 3600 * 1000,
            max_connections: 4096,
            max_concurrent_requests: 1024,
            request_timeout: Duration::from_secs(75),
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

/// What the HTTP handlers share: one `Arc`, so the clones axum makes for every
/// middleware and extractor of every request cost one reference count, not one per
/// handle in [`NodeContext`] (profiled: 1.6 % of the runtime threads in dropping them).
#[derive(Clone)]
pub struct IngressState(Arc<IngressShared>);

/// The contents of an [`IngressState`].
pub struct IngressShared {
    /// Shared node handles.
    pub ctx: NodeContext,
    /// Request limits.
    pub limits: Arc<IngressLimits>,
    /// Checks API keys; `None` when the node runs with `--auth off`.
    pub auth: Option<Arc<Authenticator>>,
    /// The HTTP metrics' label children, looked up once per route, method and status.
    http: HttpMetrics,
}

impl IngressState {
    /// The state of a node's handlers.
    pub fn new(ctx: NodeContext, limits: Arc<IngressLimits>) -> Self {
        Self::with_auth(ctx, limits, None)
    }

    /// The state of a node's handlers, checking API keys with `auth` when given.
    pub fn with_auth(
        ctx: NodeContext,
        limits: Arc<IngressLimits>,
        auth: Option<Arc<Authenticator>>,
    ) -> Self {
        let http = HttpMetrics::new(Arc::clone(&ctx.metrics));
        Self(Arc::new(IngressShared {
            ctx,
            limits,
            auth,
            http,
        }))
    }
}

impl std::ops::Deref for IngressState {
    type Target = IngressShared;

    fn deref(&self) -> &IngressShared {
        &self.0
    }
}

/// Messages of the HttpIngress: none, it is driven by its server task and stopped by
/// its supervisor.
pub enum IngressMessage {}

// Local only: the cluster feature of ractor needs the impl spelled out.
impl ractor::Message for IngressMessage {}

/// The HttpIngress actor.
pub struct HttpIngress;

/// What the HttpIngress is started with.
pub struct HttpIngressArgs {
    /// The bound listener (cloned for each incarnation of the actor).
    pub listener: Arc<std::net::TcpListener>,
    /// HTTPS: every connection is a TLS session; `None` for plain HTTP.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Handler state.
    pub state: IngressState,
}

/// The HttpIngress's state.
pub struct HttpIngressState {
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl Actor for HttpIngress {
    type Msg = IngressMessage;
    type State = HttpIngressState;
    type Arguments = HttpIngressArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: HttpIngressArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let std_listener = args.listener.try_clone()?;
        std_listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let limits = args.state.limits.clone();
        let app = routes::router(args.state);
        let scheme = if args.tls.is_some() { "https" } else { "http" };
        let server = tokio::spawn(async move {
            server::serve(listener, args.tls, app, &limits, FINISH_WITHIN, async {
                let _ = rx.await;
            })
            .await;
        });
        tracing::info!(%addr, scheme, "HTTP API listening");
        Ok(HttpIngressState {
            shutdown: Some(tx),
            server: Some(server),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(tx) = state.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = state.server.take() {
            // The server cuts what is still running after FINISH_WITHIN itself.
            if tokio::time::timeout(FINISH_WITHIN + Duration::from_secs(1), server)
                .await
                .is_err()
            {
                tracing::warn!("HTTP server did not stop in time");
            }
        }
        Ok(())
    }
}
