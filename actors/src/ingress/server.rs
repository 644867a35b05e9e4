//! The HTTP server loop: accepts connections up to a cap, serves each with hyper's
//! HTTP/1 connection (with a header-read timeout), bounds every request (a timeout and a
//! limit on requests in flight), and stops gracefully.
//!
//! `axum::serve` has none of these knobs, so the node runs its own accept loop, as
//! axum's `serve-with-hyper` example does.
//!
//! Bounds, all set by [`IngressLimits`]:
//! - **connections**: past `max_connections` open connections, a new one is accepted and
//!   closed at once (the kernel's backlog would otherwise hold it unanswered);
//! - **header read**: a connection that has not sent a whole request head within
//!   `header_read_timeout` (slowloris, idle keep-alive) is closed;
//! - **requests in flight**: past `max_concurrent_requests`, a request is answered
//!   `503 overloaded` with `Retry-After: 1`; the probes and `/metrics` are exempt, so
//!   an orchestrator never restarts a node for being busy;
//! - **request time**: a request still running after `request_timeout` (body upload
//!   included) is answered `504 timeout`.
//!
//! With a TLS acceptor (HTTPS, `--tls-cert`), each connection is handshaken on its own
//! task before hyper sees it, within `header_read_timeout` too; a connection that fails
//! the handshake (plain HTTP, for one) is closed and logged at debug level only, so
//! strangers cannot fill the log.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::IngressLimits;
use super::error::ApiError;
use crate::log_limit::LogWindow;

/// Paths never refused for load: liveness, readiness and metrics must answer while the
/// node is busy.
pub(super) const EXEMPT: [&str; 3] = ["/health", "/health/ready", "/metrics"];

/// At most one warning per this period about refused connections or requests.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Counts refusals and logs a summary at most once per [`WARN_EVERY`], so a flood
/// writes a bounded number of log lines.
struct Refusals {
    what: &'static str,
    window: LogWindow,
}

impl Refusals {
    fn new(what: &'static str) -> Self {
        Self {
            what,
            window: LogWindow::new(WARN_EVERY, 1),
        }
    }

    /// Counts one refusal at `now`; returns the count to log when a summary is due.
    fn record(&mut self, now: Instant) -> Option<u64> {
        self.window.admit(now).then(|| self.window.take_held() + 1)
    }

    fn note(&mut self, limit: usize) {
        if let Some(n) = self.record(Instant::now()) {
            tracing::warn!(
                refused = n,
                limit,
                "{} refused at the limit (one summary per 10 s)",
                self.what
            );
        }
    }
}

/// What the request guard shares.
struct Guard {
    slots: Arc<Semaphore>,
    max: usize,
    timeout: Duration,
    refusals: std::sync::Mutex<Refusals>,
}

/// Wraps `app` in the per-request bounds: requests in flight and request time. The
/// router applies it inside its request-id and metrics layers, so a refusal or a
/// timeout carries the request id and is counted like any other answer.
pub(super) fn bounded<S>(app: Router<S>, limits: &IngressLimits) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let guard = Arc::new(Guard {
        slots: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
        max: limits.max_concurrent_requests,
        timeout: limits.request_timeout,
        refusals: std::sync::Mutex::new(Refusals::new("HTTP requests")),
    });
    app.layer(middleware::from_fn_with_state(guard, guard_request))
}

async fn guard_request(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let exempt = EXEMPT.contains(&req.uri().path());
    let _permit = if exempt {
        None
    } else {
        match guard.slots.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                guard
                    .refusals
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .note(guard.max);
                return ApiError::Unavailable(
                    "overloaded",
                    "the node is serving as many requests as it allows; retry later".into(),
                    1,
                )
                .into_response();
            }
        }
    };
    match tokio::time::timeout(guard.timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(guard.timeout).into_response(),
    }
}

/// Serves `app` on `listener` (over TLS when `tls` is set) until `stop` resolves; then
/// closes the listener, lets in-flight requests finish for up to `finish_within`, and
/// cuts what is left.
pub(super) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: &IngressLimits,
    finish_within: Duration,
    stop: impl Future<Output = ()>,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let mut refusals = Refusals::new("HTTP connections");
    let (closing, closed) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut stop = pin!(stop);
    loop {
        let accepted = tokio::select! {
            () = &mut stop => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, mostly: wait rather than spin.
                tracing::warn!(error = %e, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            drop(stream);
            refusals.note(limits.max_connections);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // The peer's address, for the per-IP rate limit (`ConnectInfo`, as axum's own
        // server sets it).
        let app = app
            .clone()
            .map_request(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let (builder, service) = (builder.clone(), TowerToHyperService::new(app));
        let (tls, handshake_within) = (tls.clone(), limits.header_read_timeout);
        let mut closed = closed.clone();
        connections.spawn(async move {
            match tls {
                None => serve_connection(&builder, stream, service, &mut closed).await,
                Some(acceptor) => {
                    let handshake = tokio::select! {
                        done = tokio::time::timeout(handshake_within, acceptor.accept(stream)) => done,
                        _ = closed.changed() => return,
                    };
                    match handshake {
                        Ok(Ok(stream)) => {
                            serve_connection(&builder, stream, service, &mut closed).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = closing.send(true);
    let finished = tokio::time::timeout(finish_within, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "HTTP requests still running after {} ms; cut",
            finish_within.as_millis()
        );
        connections.shutdown().await;
    }
}

/// Serves one connection (a TCP stream, or a TLS session on one) until it ends, or
/// until `closed` changes; then lets its request in flight finish.
async fn serve_connection<S, Svc>(
    builder: &hyper::server::conn::http1::Builder,
    stream: S,
    service: Svc,
    closed: &mut watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Svc: hyper::service::HttpService<hyper::body::Incoming>,
    Svc::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    Svc::ResBody: 'static,
    <Svc::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        // Sent once, after this receiver was made: any change means "close".
        _ = closed.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_summarised_once_per_period() {
        let mut r = Refusals::new("x");
        let t0 = Instant::now();
        assert_eq!(r.record(t0), Some(1), "the first refusal is logged at once");
        for i in 1..100u64 {
            assert_eq!(r.record(t0 + Duration::from_millis(i * 10)), None);
        }
        assert_eq!(
            r.record(t0 + WARN_EVERY + Duration::from_millis(1)),
            Some(100),
            "the next summary counts every refusal since the last one"
        );
    }
}
