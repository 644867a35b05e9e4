//! The actors of a taskmesh node, the task model and the task store.
//!
//! # Layout
//! - [`auth`]: API keys and scopes (`--auth on`): the key format, verification against
//!   the store, the middleware and the `/v1/keys` routes.
//! - [`rate_limit`]: rate limits per API key and per client IP (GCRA), in memory or in
//!   Redis (cluster-wide), checked by the auth middleware.
//! - [`ingress`]: HttpIngress — the axum server, request validation, [`ingress::error::ApiError`],
//!   the OpenAPI document and `/docs` ([`ingress::openapi`]).
//! - [`dispatcher`]: Dispatcher — admission control, placement across the cluster
//!   ([`dispatcher::policy`]), peers and their circuit breakers.
//! - [`endpoint`]: PeerEndpoint — the node's face to its peers (the wire messages).
//! - [`heartbeat`]: Heartbeat — heartbeats between nodes and the failure detector.
//! - [`worker_pool`]: WorkerPool — queues, supervised workers, retries, cancellation.
//! - [`health`]: HealthMonitor — readiness.
//! - [`failover`]: Failover — renews this node's lease and claims a lost peer's tasks
//!   on store evidence ([`failover::decide`]).
//! - [`autoscaler`]: Autoscaler — sizes the pool ([`autoscaler::policy`]).
//! - [`store`]: the `TaskStore` trait and its implementations.
//! - [`task`]: the durable task record.
//! - [`handoff`]: what the dispatcher, the pool and their callers hand each other (jobs,
//!   cancel outcomes, the pool's load and its live figures).
//! - [`context`], [`metrics`], [`notify`]: what the actors share.
//! - `testing` (feature `testsuite`): what the black-box tests and the chaos runner
//!   share (polling with a deadline, task statuses, `/metrics` readers).
//!
//! The supervision tree that ties them together lives in the `node` crate.

pub mod auth;
pub mod autoscaler;
pub mod context;
pub mod dispatcher;
pub mod endpoint;
pub mod failover;
pub mod handoff;
pub mod health;
pub mod heartbeat;
pub mod ingress;
pub mod log_limit;
pub mod metrics;
pub mod notify;
pub mod rate_limit;
pub mod store;
pub mod task;
#[cfg(any(test, feature = "testsuite"))]
pub mod testing;
pub mod worker_pool;
