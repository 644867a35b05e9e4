//! The middleware that checks every request's key (installed only with `--auth on`).
//!
//! Open routes ([`super::scope::Need::Open`]) pass untouched. Any other request needs
//! `Authorization: Bearer <key>`: a missing, malformed, unknown, revoked or expired key
//! answers 401 `unauthorized`, a key without the route's scope 403 `forbidden`, both
//! before the handler runs, so neither creates, changes or reveals anything. The key id
//! (never the secret) is recorded in the request's span (`key_id`) and handed to the
//! handlers as a [`Caller`].

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::scope::{Need, Scope};
use super::verifier::Denied;
use crate::ingress::IngressState;
use crate::ingress::error::ApiError;

/// Who is calling: the authenticated key (a request extension).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The key id.
    pub key_id: String,
    /// The key's scopes.
    pub scopes: Vec<Scope>,
}

/// Checks the request's key against the route's need (see the module docs). Passes every
/// request when the node runs without authentication.
pub async fn require_key(
    State(state): State<IngressState>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(auth) = state.auth.as_ref() else {
        return next.run(req).await;
    };
    let need = auth.need(req.method(), req.uri().path());
    if need == Need::Open {
        return next.run(req).await;
    }
    let record = match auth.authenticate(req.headers().get(AUTHORIZATION)).await {
        Ok(record) => record,
        Err(Denied::Unauthorized) => return ApiError::Unauthorized.into_response(),
        Err(Denied::Store(e)) => return state.store_failed("get_key", &e).into_response(),
    };
    tracing::Span::current().record("key_id", record.id.as_str());
    if !need.allows(&record.scopes) {
        tracing::debug!(key_id = %record.id, ?need, "request refused: missing scope");
        return ApiError::Forbidden.into_response();
    }
    req.extensions_mut().insert(Caller {
        key_id: record.id,
        scopes: record.scopes,
    });
    next.run(req).await
}
