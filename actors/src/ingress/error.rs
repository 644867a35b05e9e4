//! `ApiError`: every error the HTTP API returns, as `{"error": {"code", "message"}}`.
//!
//! Messages are written for clients. Internal failures are logged here with their
//! details and reach the client only as a generic message.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer of the API.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed.
    BadRequest(&'static str, String),
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
    /// 503 with `Retry-After`: saturated or not ready; retry later.
    Unavailable(&'static str, String, u32),
    /// 500: a bug or an unexpected failure; details are logged, not sent.
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::BadRequest(code, m) => (StatusCode::BAD_REQUEST, code, m.clone()),
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
            ApiError::Unavailable(code, m, _) => (StatusCode::SERVICE_UNAVAILABLE, code, m.clone()),
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
        let body = Json(json!({ "error": { "code": code, "message": message } }));
        let mut response = (status, body).into_response();
        if let ApiError::Unavailable(_, _, secs) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let text = rejection.body_text();
        match rejection {
            JsonRejection::JsonSyntaxError(_) => ApiError::BadRequest("malformed_json", text),
            JsonRejection::JsonDataError(_) => ApiError::Unprocessable("invalid_request", text),
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
                "expected a request with `Content-Type: application/json`".into(),
            ),
            r if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::TooLarge("request body is larger than the node's limit".into())
            }
            _ => ApiError::BadRequest("bad_body", text),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest("invalid_query", rejection.body_text())
    }
}
