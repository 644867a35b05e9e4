//! API keys and scopes: who may call the HTTP API, and what they may do.
//!
//! On by default: a node checks keys unless started with `--auth off` (the ingress then
//! carries an [`Authenticator`]); with `--auth off` (trusted networks only, a warning at
//! every start) the API is open and no `/v1/keys` route exists.
//!
//! # Layout
//! - [`key`]: the `tm_<key id>_<secret>` format, the stored [`key::KeyRecord`] (a hash
//!   of the secret, never the secret), constant-time verification. Pure.
//! - [`scope`]: the scopes and which one each route needs. Pure.
//! - [`verifier`]: [`Authenticator`], which reads keys from the task store (shared by
//!   every node of a cluster) with a cache of at most [`verifier::CACHE_TTL`], so a
//!   revoke takes effect on every node within a second.
//! - [`middleware`]: the axum middleware (401 / 403, the key id in the request's span).
//! - [`owner`]: whose tasks a caller may read and cancel (`submit`-only keys: their own).
//!   Pure.
//! - [`routes`]: `POST /v1/keys`, `GET /v1/keys`, `DELETE /v1/keys/{id}` (admin scope).

pub mod key;
pub mod middleware;
pub mod owner;
pub mod routes;
pub mod scope;
pub mod verifier;

pub use verifier::Authenticator;
