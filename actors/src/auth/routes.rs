//! The keys API (admin scope, only with `--auth on`):
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/keys {name, scopes, expires_in_secs?, rate_limit?}` | `201 {id, key, name, scopes, created_at, expires_at?, rate_limit?}`: the whole key, shown this once |
//! | `GET /v1/keys` | `200 {keys: [{id, name, scopes, created_at, expires_at?, revoked_at?, rate_limit?}]}`: no secrets, no hashes |
//!
//! `rate_limit` is `{"per_sec": 50, "burst": 100}`: the key's own limit; without it the
//! node's `--key-rate-limit` applies (`crate::rate_limit`).
//! | `DELETE /v1/keys/{id}` | `204`; `404` for an unknown id; revoking twice is fine |

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::key::{ApiKey, KeyRecord};
use super::scope::Scope;
use crate::ingress::IngressState;
use crate::ingress::dto::rfc3339;
use crate::ingress::error::{ApiError, ErrorBody};
use crate::rate_limit::RateLimit;
use crate::task::now_ms;

/// Longest key name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Longest lifetime a key may be given (ten years).
pub const MAX_EXPIRES_IN_SECS: u64 = 10 * 365 * 24 * 3600;

/// `POST /v1/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// A name for people: 1 to 64 printable characters.
    #[schema(min_length = 1)]
    pub name: String,
    /// What the key may do (at least one).
    #[schema(min_items = 1)]
    pub scopes: Vec<Scope>,
    /// Seconds until the key stops working; never when absent.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 315_360_000)]
    pub expires_in_secs: Option<u64>,
    /// The key's own rate limit; the node's default when absent.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

/// A key as listed: no secret, no hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// The key id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<Scope>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it expires (RFC 3339), if ever.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// When it was revoked (RFC 3339), if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// Its own rate limit, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

impl From<KeyRecord> for KeyView {
    fn from(r: KeyRecord) -> Self {
        Self {
            id: r.id,
            name: r.name,
            scopes: r.scopes,
            created_at: rfc3339(r.created_at_ms),
            expires_at: r.expires_at_ms.map(rfc3339),
            revoked_at: r.revoked_at_ms.map(rfc3339),
            rate_limit: r.rate_limit,
        }
    }
}

/// The answer to `POST /v1/keys`: the listing's fields and the whole key.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    /// The whole key, `tm_<id>_<secret>`: shown once, never again.
    pub key: String,
    /// Everything else.
    #[serde(flatten)]
    pub view: KeyView,
}

/// `GET /v1/keys`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    /// Every key, by creation time.
    pub keys: Vec<KeyView>,
}

/// The keys API's routes, each with its OpenAPI operation.
pub fn routes() -> OpenApiRouter<IngressState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(revoke))
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::Unprocessable("invalid_request", message.into())
}

fn validate(body: &CreateKey) -> Result<(), ApiError> {
    let name = body.name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(invalid(format!(
            "`name` must be 1 to {MAX_NAME_CHARS} printable characters"
        )));
    }
    if body.scopes.is_empty() {
        return Err(invalid(
            "`scopes` must name at least one of submit, read, admin",
        ));
    }
    if let Some(secs) = body.expires_in_secs
        && !(1..=MAX_EXPIRES_IN_SECS).contains(&secs)
    {
        return Err(invalid(format!(
            "`expires_in_secs` must be between 1 and {MAX_EXPIRES_IN_SECS}"
        )));
    }
    if let Some(limit) = body.rate_limit
        && let Err(e) = RateLimit::new(limit.per_sec, limit.burst)
    {
        return Err(invalid(format!("`rate_limit`: {e}")));
    }
    Ok(())
}

/// Create a key; the answer shows the whole key this once.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = CreateKey,
    responses(
        (status = 201, description = "Created: `key` is shown this once.", body = CreatedKey),
        (status = 422, description = "`invalid_request`: a bad name, no scope, or `expires_in_secs` out of range.", body = ErrorBody),
        (status = 503, description = "`store_unavailable`.", body = ErrorBody),
    ))]
async fn create(
    State(state): State<IngressState>,
    body: Result<Json<CreateKey>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(mut body) = body?;
    validate(&body)?;
    body.scopes.sort();
    body.scopes.dedup();
    let now = now_ms();
    let expires = body
        .expires_in_secs
        .map(|secs| now.saturating_add(secs.saturating_mul(1000)));
    // A fresh id collides with a stored one about never; try again if it does.
    for _ in 0..3 {
        let key = ApiKey::generate();
        let mut record = KeyRecord::new(&key, body.name.trim(), body.scopes.clone(), now, expires);
        record.rate_limit = body.rate_limit;
        let written = state
            .ctx
            .store
            .put_key(record.clone())
            .await
            .map_err(|e| state.store_failed("put_key", &e))?;
        if written {
            if let Some(auth) = &state.auth {
                auth.forget(key.id());
            }
            tracing::info!(key_id = %record.id, name = %record.name, "API key created");
            let body = CreatedKey {
                key: key.expose(),
                view: record.into(),
            };
            return Ok((StatusCode::CREATED, Json(body)).into_response());
        }
    }
    Err(ApiError::Internal(
        "three generated key ids were all taken".into(),
    ))
}

/// Every key, revoked and expired ones included: no secrets, no hashes.
#[utoipa::path(get, path = "/v1/keys", tag = "keys",
    responses(
        (status = 200, description = "The keys, oldest first.", body = KeyList),
        (status = 503, description = "`store_unavailable`.", body = ErrorBody),
    ))]
async fn list(State(state): State<IngressState>) -> Result<Json<KeyList>, ApiError> {
    let keys = state
        .ctx
        .store
        .list_keys()
        .await
        .map_err(|e| state.store_failed("list_keys", &e))?;
    Ok(Json(KeyList {
        keys: keys.into_iter().map(KeyView::from).collect(),
    }))
}

/// Revoke a key (revoking twice is harmless).
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "The key id (between `tm_` and the second `_`).")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 404, description = "`not_found`: no such key.", body = ErrorBody),
        (status = 503, description = "`store_unavailable`.", body = ErrorBody),
    ))]
async fn revoke(
    State(state): State<IngressState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !super::key::is_key_id(&id) {
        return Err(ApiError::NotFound("no such API key".into()));
    }
    let found = state
        .ctx
        .store
        .revoke_key(&id, now_ms())
        .await
        .map_err(|e| state.store_failed("revoke_key", &e))?;
    if !found {
        return Err(ApiError::NotFound("no such API key".into()));
    }
    if let Some(auth) = &state.auth {
        auth.forget(&id);
    }
    tracing::info!(key_id = %id, "API key revoked");
    Ok(StatusCode::NO_CONTENT.into_response())
}
