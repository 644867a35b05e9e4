//! `ApiError`: every error the HTTP API returns, as
//! `{"error": {"code", "message", "request_id"}}`.
//!
//! Messages are written for clients and never carry internal text: a store's error, a
//! path, or an error chain is logged where it happens (inside the request's span, so
//! with its request id) and reaches the client only as a stable code and a plain
//! message. `request_id` is the request's `x-request-id` (the client's, or the one the
//! node generated), so a client can quote it and an operator can find the log lines.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::rate_limit::{Checked, Scope};

tokio::task_local! {
    /// The request id of the request being answered; set by the router's middleware
    /// around each request, read when an error body is built.
    pub(super) static REQUEST_ID: Option<String>;
}

/// An error answer of the API.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed.
    BadRequest(&'static str, String),
    /// 401 `unauthorized` with `WWW-Authenticate: Bearer`: a missing, malformed,
    /// unknown, revoked or expired key (one answer for all).
    Unauthorized,
    /// 403 `forbidden`: the key lacks the scope the route needs.
    Forbidden,
    /// 404: no such task or route.
    NotFound(String),
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 409: the task's state does not allow the operation.
    Conflict(&'static str, String),
    /// 413: body or params over the limit.
    TooLarge(String),
    /// 415: not `application/json`.
    UnsupportedMediaType(String),
    /// 422: well-formed but invalid (unknown kind, bad params, wrong types).
    Unprocessable(&'static str, String),
    /// 429 `rate_limited` with `Retry-After` and the `RateLimit-Policy` / `RateLimit`
    /// headers: over an API key's or a client IP's rate limit (`crate::rate_limit`).
    RateLimited(Checked),
    /// 503 with `Retry-After`: saturated or not ready; retry later.
    Unavailable(&'static str, String, u32),
    /// 503 `outcome_unknown` with `Retry-After`: the store did not confirm a submission's
    /// write in time and it may or may not have been stored; carries the ids it was given.
    OutcomeUnknown(Vec<String>),
    /// 504 `timeout` with `Retry-After`: the request ran past the node's request timeout
    /// (carried); a submission may or may not have taken effect.
    Timeout(std::time::Duration),
    /// 500: a bug or an unexpected failure; details are logged, not sent.
    Internal(String),
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong, in an [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code (the table in docs/api.md), e.g. `not_found`.
    #[schema(value_type = String)]
    pub code: &'static str,
    /// Plain text for people; may change.
    pub message: String,
    /// The request's `x-request-id`: quote it to find the node's log lines.
    #[schema(required)]
    pub request_id: Option<String>,
    /// `outcome_unknown` only: the ids the submitted tasks were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
}

/// The message of every `store_unavailable` answer.
const STORE_UNAVAILABLE: &str = "the task store is unavailable; retry later";

impl ApiError {
    /// `503 store_unavailable` for a failed store call. The client gets only the plain
    /// message; the detail (which may name Redis, a path, an OS error) is logged by the
    /// caller, with the request's span.
    pub fn store_unavailable() -> Self {
        ApiError::Unavailable("store_unavailable", STORE_UNAVAILABLE.into(), 1)
    }

    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::BadRequest(code, m) => (StatusCode::BAD_REQUEST, code, m.clone()),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid API key is needed: `Authorization: Bearer tm_…`".into(),
            ),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "this API key's scopes do not allow this request".into(),
            ),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.clone()),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method".into(),
            ),
            ApiError::Conflict(code, m) => (StatusCode::CONFLICT, code, m.clone()),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", m.clone()),
            ApiError::UnsupportedMediaType(m) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                m.clone(),
            ),
            ApiError::Unprocessable(code, m) => (StatusCode::UNPROCESSABLE_ENTITY, code, m.clone()),
            ApiError::RateLimited(checked) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                match checked.scope {
                    Scope::Key => format!(
                        "this API key is over its rate limit of {} requests per second \
                         (burst {}); retry after {} s",
                        checked.limit.per_sec,
                        checked.limit.burst,
                        checked.decision.retry_after_secs()
                    ),
                    Scope::Ip => format!(
                        "too many requests without a valid API key from this address (limit \
                         {} per second, burst {}); retry after {} s",
                        checked.limit.per_sec,
                        checked.limit.burst,
                        checked.decision.retry_after_secs()
                    ),
                },
            ),
            ApiError::Unavailable(code, m, _) => (StatusCode::SERVICE_UNAVAILABLE, code, m.clone()),
            ApiError::OutcomeUnknown(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "outcome_unknown",
                "the task store did not confirm the submission in time: the tasks in `ids` \
                 may or may not have been accepted; read them, or resubmit with the same \
                 idempotency keys"
                    .into(),
            ),
            ApiError::Timeout(limit) => (
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!(
                    "the request took longer than the node's limit of {} ms; it may or may \
                     not have taken effect (retry with the same idempotency_key)",
                    limit.as_millis()
                ),
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; see the node's logs".into(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error answering a request");
        }
        let (status, code, message) = self.parts();
        let request_id = REQUEST_ID.try_with(Clone::clone).ok().flatten();
        let ids = match &self {
            ApiError::OutcomeUnknown(ids) => Some(ids.clone()),
            _ => None,
        };
        let error = ErrorDetail {
            code,
            message,
            request_id,
            ids,
        };
        let mut response = (status, Json(ErrorBody { error })).into_response();
        if let ApiError::Unauthorized = self {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::RateLimited(checked) = &self {
            for (name, value) in checked.headers() {
                response.headers_mut().insert(name, value);
            }
        }
        let retry_after = match self {
            ApiError::Unavailable(_, _, secs) => Some(u64::from(secs)),
            ApiError::OutcomeUnknown(_) | ApiError::Timeout(_) => Some(1),
            ApiError::RateLimited(checked) => Some(checked.decision.retry_after_secs()),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        // Syntax and data errors describe the client's JSON (serde's words, no server
        // text); the others (a body that could not be read) get a fixed message.
        match rejection {
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::BadRequest("malformed_json", e.body_text())
            }
            JsonRejection::JsonDataError(e) => {
                ApiError::Unprocessable("invalid_request", e.body_text())
            }
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
                "expected a request with `Content-Type: application/json`".into(),
            ),
            r if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::TooLarge("request body is larger than the node's limit".into())
            }
            r => {
                tracing::debug!(rejection = %r.body_text(), "request body could not be read");
                ApiError::BadRequest("bad_body", "the request body could not be read".into())
            }
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest("invalid_query", rejection.body_text())
    }
}
