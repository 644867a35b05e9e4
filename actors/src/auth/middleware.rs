//! The middleware that checks every request's key (installed only with `--auth on`), and
//! its rate limits.
//!
//! Open routes ([`super::scope::Need::Open`]) pass untouched and unlimited. Any other
//! request needs `Authorization: Bearer <key>`: a missing, malformed, unknown, revoked or
//! expired key answers 401 `unauthorized`, a key without the route's scope 403
//! `forbidden`, both before the handler runs, so neither creates, changes or reveals
//! anything. The key id (never the secret) is recorded in the request's span (`key_id`)
//! and handed to the handlers as a [`Caller`].
//!
//! Rate limits (`crate::rate_limit`), when the node has them: a request with a valid key
//! costs 1 against the key's limit before its scope is checked (a batch costs the rest
//! in its handler, [`charge`]); a request without a valid key costs 1 against its
//! client IP's limit. Over either: 429 `rate_limited` instead of the answer. Allowed
//! answers carry the `RateLimit-Policy` and `RateLimit` headers of the limit they were
//! counted against. A limiter that fails (Redis down) lets the request through and logs
//! a warning (at most one per [`FAIL_LOG_EVERY`]): the store's own failure answers the
//! request anyway, and rate limits must not take the API down with them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::scope::{Need, Scope};
use super::verifier::Denied;
use crate::ingress::IngressState;
use crate::ingress::error::ApiError;
use crate::log_limit::LogWindow;
use crate::rate_limit::{Checked, RateError, RateLimit, RateLimits, client_ip};

/// At most one warning about a failing rate limiter per this period.
pub const FAIL_LOG_EVERY: Duration = Duration::from_secs(10);

static FAILURES: Mutex<LogWindow> = Mutex::new(LogWindow::new(FAIL_LOG_EVERY, 1));

/// Who is calling: the authenticated key (a request extension).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The key id.
    pub key_id: String,
    /// The key's scopes.
    pub scopes: Vec<Scope>,
    /// The key's own rate limit (`None`: the node's default).
    pub rate_limit: Option<RateLimit>,
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
    let limits = auth.rate_limits();
    let record = match auth.authenticate(req.headers().get(AUTHORIZATION)).await {
        Ok(record) => record,
        Err(Denied::Unauthorized) => {
            // The client IP is read before awaiting: a request body is not `Sync`, so no
            // reference to the request may be held across the limiter's call.
            let checked = match limits.and_then(|l| Some((l, client_of(l, &req)?))) {
                Some((limits, ip)) => allowed_or_logged(limits.check_ip(ip).await),
                None => None,
            };
            return match checked {
                Some(checked) if !checked.decision.allowed => {
                    refuse(&state, checked).into_response()
                }
                Some(checked) => with_headers(ApiError::Unauthorized.into_response(), checked),
                None => ApiError::Unauthorized.into_response(),
            };
        }
        Err(Denied::Store(e)) => return state.store_failed("get_key", &e).into_response(),
    };
    tracing::Span::current().record("key_id", record.id.as_str());
    state.ctx.metrics.key_requests.count(&record.id);
    let checked = match limits {
        Some(limits) => allowed_or_logged(limits.check_key(&record.id, record.rate_limit, 1).await),
        None => None,
    };
    if let Some(checked) = checked
        && !checked.decision.allowed
    {
        return refuse(&state, checked).into_response();
    }
    if !need.allows(&record.scopes) {
        tracing::debug!(key_id = %record.id, ?need, "request refused: missing scope");
        return ApiError::Forbidden.into_response();
    }
    req.extensions_mut().insert(Caller {
        key_id: record.id,
        scopes: record.scopes,
        rate_limit: record.rate_limit,
    });
    let response = next.run(req).await;
    match checked {
        // A handler that charged more (a batch) set the headers of its later count.
        Some(_) if response.headers().contains_key("ratelimit") => response,
        Some(checked) => with_headers(response, checked),
        None => response,
    }
}

/// Charges `caller` `cost` more against its key's limit (a batch of N tasks costs N: the
/// middleware charged 1, the handler the rest once it knows N). Refuses with 429 when
/// over the limit, and with 422 `over_rate_limit_burst` when the cost can never fit in
/// the key's burst; nothing is charged then. The count, when there is one, is for the
/// answer's headers ([`with_headers`]).
pub async fn charge(
    state: &IngressState,
    caller: &Caller,
    cost: u32,
) -> Result<Option<Checked>, ApiError> {
    let Some(limits) = state.auth.as_ref().and_then(|a| a.rate_limits()) else {
        return Ok(None);
    };
    if cost == 0 {
        return Ok(None);
    }
    if let Some(limit) = caller.rate_limit.or(limits.key_default)
        && !limit.limit().fits(cost + 1)
    {
        return Err(ApiError::Unprocessable(
            "over_rate_limit_burst",
            format!(
                "this request costs {} (one per task), more than this API key's burst of {}; \
                 send at most {} tasks at once",
                cost + 1,
                limit.burst,
                limit.burst
            ),
        ));
    }
    match allowed_or_logged(
        limits
            .check_key(&caller.key_id, caller.rate_limit, cost)
            .await,
    ) {
        Some(checked) if !checked.decision.allowed => Err(refuse(state, checked)),
        checked => Ok(checked),
    }
}

/// The client IP of `req` (see `crate::rate_limit::client_ip`); `None` when the peer
/// address is unknown (a request not from the node's server, as in router tests).
fn client_of(limits: &RateLimits, req: &Request) -> Option<IpAddr> {
    let ConnectInfo(peer) = req.extensions().get::<ConnectInfo<SocketAddr>>()?;
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    Some(client_ip::client_ip(
        peer.ip(),
        forwarded,
        &limits.trusted_proxies,
    ))
}

/// The decision, or `None` (let the request through) when unlimited or the limiter
/// failed, which is logged.
fn allowed_or_logged(outcome: Option<Result<Checked, RateError>>) -> Option<Checked> {
    match outcome? {
        Ok(checked) => Some(checked),
        Err(e) => {
            let mut window = FAILURES.lock().unwrap_or_else(|p| p.into_inner());
            if window.admit(Instant::now()) {
                let failed = window.take_held() + 1;
                tracing::warn!(
                    error = %e,
                    failed,
                    "rate limits could not be checked; requests pass unlimited (one \
                     summary per 10 s)"
                );
            }
            None
        }
    }
}

/// The 429 of `checked`, counted in `taskmesh_rate_limited_total{scope}`.
fn refuse(state: &IngressState, checked: Checked) -> ApiError {
    state
        .ctx
        .metrics
        .rate_limited
        .with_label_values(&[checked.scope.as_str()])
        .inc();
    ApiError::RateLimited(checked)
}

/// `response` with the `RateLimit-Policy` and `RateLimit` headers of `checked`.
pub fn with_headers(mut response: Response, checked: Checked) -> Response {
    for (name, value) in checked.headers() {
        response.headers_mut().insert(name, value);
    }
    response
}

#[cfg(test)]
mod tests;
