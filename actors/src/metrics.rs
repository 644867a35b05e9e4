//! Prometheus metrics of one node, registered once and shared by every actor.

use std::sync::{Arc, RwLock};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub mod key_labels;

/// Every metric the node exports on `/metrics`.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `taskmesh_tasks_submitted_total{kind,priority}`
    pub submitted: IntCounterVec,
    /// `taskmesh_tasks_completed_total{kind,outcome}`
    pub completed: IntCounterVec,
    /// `taskmesh_task_retries_total{kind}`
    pub retries: IntCounterVec,
    /// `taskmesh_tasks_rejected_total{reason}`: submissions refused with 503.
    pub rejected: IntCounterVec,
    /// `taskmesh_duplicate_completions_total`: terminal writes refused because one exists.
    pub duplicate_completions: IntCounter,
    /// `taskmesh_queue_depth{priority}`
    pub queue_depth: IntGaugeVec,
    /// `taskmesh_workers{state}` with state busy or idle.
    pub workers: IntGaugeVec,
    /// `taskmesh_worker_restarts_total`
    pub worker_restarts: IntCounter,
    /// `taskmesh_actor_restarts_total{actor}`: top-level actors restarted by the root.
    pub actor_restarts: IntCounterVec,
    /// `taskmesh_task_duration_seconds{kind}`: one attempt's run time.
    pub task_duration: HistogramVec,
    /// `taskmesh_task_queue_wait_seconds{priority}`: enqueue to start.
    pub queue_wait: HistogramVec,
    /// `taskmesh_http_requests_total{route,method,status}`
    pub http_requests: IntCounterVec,
    /// `taskmesh_http_request_duration_seconds{route,method}`
    pub http_duration: HistogramVec,
    /// `taskmesh_store_errors_total{op}`
    pub store_errors: IntCounterVec,
    /// `taskmesh_rate_limited_total{scope}`: requests refused with 429, by the limit that
    /// refused them: `key` (an API key's) or `ip` (a client without a valid key).
    pub rate_limited: IntCounterVec,
    /// `taskmesh_key_requests_total{key_id}`: authenticated requests by API key id (a
    /// bounded label: [`key_labels`]).
    pub key_requests: Arc<key_labels::KeyRequests>,
    /// `taskmesh_ready`: 1 when the node is ready.
    pub ready: IntGauge,
    /// `taskmesh_peers{state}`: known peers by membership state.
    pub peers: IntGaugeVec,
    /// `taskmesh_dispatches_total{target}`: tasks handed to a pool, `local` or `remote`.
    pub dispatches: IntCounterVec,
    /// `taskmesh_remote_dispatch_seconds`: send to acknowledgement of a remote dispatch.
    pub remote_dispatch: HistogramVec,
    /// `taskmesh_remote_dispatch_failures_total{reason}`: dispatches a peer did not take.
    pub remote_dispatch_failures: IntCounterVec,
    /// `taskmesh_circuit_transitions_total{peer,to}`
    pub circuit_transitions: IntCounterVec,
    /// `taskmesh_circuit_state{peer}`: 0 closed, 1 half-open, 2 open.
    pub circuit_state: IntGaugeVec,
    /// `taskmesh_peer_decode_failures_total`: peer messages dropped as undecodable.
    pub decode_failures: IntCounter,
    /// `taskmesh_tasks_reclaimed_total`: tasks this node claimed from lost nodes.
    pub reclaimed: IntCounter,
    /// `taskmesh_heartbeats_received_total`: heartbeats from peers.
    pub heartbeats_received: IntCounter,
    /// `taskmesh_peer_liveness_changes_total{peer,to}`: the failure detector's verdicts.
    pub liveness_changes: IntCounterVec,
    /// The HTTP workers of external kinds.
    pub external: ExternalMetrics,
}

/// Metrics of HTTP workers and external kinds (their attempts' run times are in
/// `taskmesh_task_duration_seconds{kind}` with every other kind's).
#[derive(Clone)]
pub struct ExternalMetrics {
    /// `taskmesh_external_workers{kind}`: HTTP workers registered here, per kind they run.
    pub workers: IntGaugeVec,
    /// `taskmesh_external_leases`: attempts leased to HTTP workers here.
    pub leases: IntGauge,
    /// `taskmesh_external_lease_expiries_total{kind}`: leases lost to a silent worker.
    pub lease_expiries: IntCounterVec,
    /// `taskmesh_external_poll_wait_seconds`: how long polls stayed parked.
    pub poll_wait: Histogram,
    /// `taskmesh_external_parked_polls`: polls waiting here for a task now.
    pub parked_polls: IntGauge,
    /// `taskmesh_external_unserved_tasks{kind}`: tasks queued here for a kind no worker
    /// here runs (they wait until one registers).
    pub unserved_tasks: IntGaugeVec,
    /// `taskmesh_external_refused_reports_total{outcome}`: reported attempts that changed
    /// nothing, by why: `stale_token`, `already_terminal`, `not_found`, `too_large`,
    /// `invalid`, or `unknown_worker` (a results batch of a worker this node no longer
    /// knows).
    pub refused_reports: IntCounterVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
            let h = HistogramVec::new(opts, labels)?;
            registry.register(Box::new(h.clone()))?;
            Ok::<_, prometheus::Error>(h)
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let duplicate_completions = IntCounter::new(
            "taskmesh_duplicate_completions_total",
            "Terminal writes refused because the task already had a terminal state",
        )?;
        registry.register(Box::new(duplicate_completions.clone()))?;
        let worker_restarts = IntCounter::new(
            "taskmesh_worker_restarts_total",
            "Workers restarted by their pool after a panic or error",
        )?;
        registry.register(Box::new(worker_restarts.clone()))?;
        let decode_failures = IntCounter::new(
            "taskmesh_peer_decode_failures_total",
            "Messages from peers dropped because they did not decode",
        )?;
        registry.register(Box::new(decode_failures.clone()))?;
        let reclaimed = IntCounter::new(
            "taskmesh_tasks_reclaimed_total",
            "Unfinished tasks this node claimed from nodes that were lost",
        )?;
        registry.register(Box::new(reclaimed.clone()))?;
        let heartbeats_received = IntCounter::new(
            "taskmesh_heartbeats_received_total",
            "Heartbeats received from peers",
        )?;
        registry.register(Box::new(heartbeats_received.clone()))?;
        let ready = IntGauge::new("taskmesh_ready", "1 when the node reports ready")?;
        registry.register(Box::new(ready.clone()))?;
        let leases = IntGauge::new(
            "taskmesh_external_leases",
            "Attempts leased to HTTP workers on this node",
        )?;
        registry.register(Box::new(leases.clone()))?;
        let poll_wait = Histogram::with_opts(
            HistogramOpts::new(
                "taskmesh_external_poll_wait_seconds",
                "How long HTTP workers' polls stayed parked before tasks or the end of their wait",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(poll_wait.clone()))?;
        let parked_polls = IntGauge::new(
            "taskmesh_external_parked_polls",
            "Polls of HTTP workers waiting on this node for a task",
        )?;
        registry.register(Box::new(parked_polls.clone()))?;
        let external = ExternalMetrics {
            workers: gauge(
                "taskmesh_external_workers",
                "HTTP workers registered on this node, per kind they run",
                &["kind"],
            )?,
            leases,
            lease_expiries: counter(
                "taskmesh_external_lease_expiries_total",
                "Leased attempts lost because their HTTP worker went silent",
                &["kind"],
            )?,
            poll_wait,
            parked_polls,
            unserved_tasks: gauge(
                "taskmesh_external_unserved_tasks",
                "Tasks queued on this node for an external kind no worker here runs",
                &["kind"],
            )?,
            refused_reports: counter(
                "taskmesh_external_refused_reports_total",
                "Results reported by HTTP workers that were refused and changed nothing",
                &["outcome"],
            )?,
        };

        Ok(Self {
            external,
            submitted: counter(
                "taskmesh_tasks_submitted_total",
                "Tasks accepted (202) by this node",
                &["kind", "priority"],
            )?,
            completed: counter(
                "taskmesh_tasks_completed_total",
                "Tasks that reached a terminal state on this node",
                &["kind", "outcome"],
            )?,
            retries: counter(
                "taskmesh_task_retries_total",
                "Attempts that failed and were scheduled again",
                &["kind"],
            )?,
            rejected: counter(
                "taskmesh_tasks_rejected_total",
                "Submissions refused with 503",
                &["reason"],
            )?,
            queue_depth: gauge(
                "taskmesh_queue_depth",
                "Tasks waiting in the local pool",
                &["priority"],
            )?,
            workers: gauge("taskmesh_workers", "Workers of the local pool", &["state"])?,
            actor_restarts: counter(
                "taskmesh_actor_restarts_total",
                "Top-level actors restarted by the node supervisor",
                &["actor"],
            )?,
            task_duration: histogram(
                "taskmesh_task_duration_seconds",
                "Run time of one attempt",
                &["kind"],
            )?,
            queue_wait: histogram(
                "taskmesh_task_queue_wait_seconds",
                "Time from enqueue to start",
                &["priority"],
            )?,
            http_requests: counter(
                "taskmesh_http_requests_total",
                "HTTP requests by route and status",
                &["route", "method", "status"],
            )?,
            http_duration: histogram(
                "taskmesh_http_request_duration_seconds",
                "HTTP request latency",
                &["route", "method"],
            )?,
            store_errors: counter(
                "taskmesh_store_errors_total",
                "Task store operations that failed",
                &["op"],
            )?,
            rate_limited: counter(
                "taskmesh_rate_limited_total",
                "Requests refused with 429 by a rate limit, by scope (key or ip)",
                &["scope"],
            )?,
            key_requests: Arc::new(key_labels::KeyRequests::new(counter(
                "taskmesh_key_requests_total",
                "Authenticated requests by API key id (the first 100 ids a node sees; later ones as `other`)",
                &["key_id"],
            )?)),
            peers: gauge(
                "taskmesh_peers",
                "Known peers by membership state",
                &["state"],
            )?,
            dispatches: counter(
                "taskmesh_dispatches_total",
                "Tasks handed to a pool, by target (local or remote)",
                &["target"],
            )?,
            remote_dispatch: histogram(
                "taskmesh_remote_dispatch_seconds",
                "Time from sending tasks to a peer to its acknowledgement",
                &[],
            )?,
            remote_dispatch_failures: counter(
                "taskmesh_remote_dispatch_failures_total",
                "Dispatches a peer refused or did not acknowledge in time",
                &["reason"],
            )?,
            circuit_transitions: counter(
                "taskmesh_circuit_transitions_total",
                "Circuit breaker state changes, by peer and new state",
                &["peer", "to"],
            )?,
            circuit_state: gauge(
                "taskmesh_circuit_state",
                "Circuit breaker state per peer: 0 closed, 1 half-open, 2 open",
                &["peer"],
            )?,
            liveness_changes: counter(
                "taskmesh_peer_liveness_changes_total",
                "Peer liveness changes judged by the failure detector, by peer and new state",
                &["peer", "to"],
            )?,
            decode_failures,
            reclaimed,
            heartbeats_received,
            duplicate_completions,
            worker_restarts,
            ready,
            registry,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        // The wire module counts process-wide; catch the counter up before exporting.
        let seen = taskmesh_cluster::wire::decode_failures();
        let exported = self.decode_failures.get();
        if seen > exported {
            self.decode_failures.inc_by(seen - exported);
        }
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The HTTP request metrics (`taskmesh_http_requests_total`,
/// `taskmesh_http_request_duration_seconds`) with their label children cached.
///
/// `with_label_values` hashes the labels and takes the vector's lock on every call;
/// a router answers a handful of (route, method, status) combinations, so each is looked
/// up once and kept here. A client can make up methods, so at most [`Self::MAX_CACHED`]
/// combinations are kept; others are looked up every time, as before.
pub struct HttpMetrics {
    metrics: Arc<Metrics>,
    children: RwLock<Vec<HttpChildren>>,
}

struct HttpChildren {
    route: Box<str>,
    method: Box<str>,
    status: Box<str>,
    duration: Histogram,
    requests: IntCounter,
}

impl HttpChildren {
    fn is(&self, route: &str, method: &str, status: &str) -> bool {
        *self.status == *status && *self.method == *method && *self.route == *route
    }

    fn record(&self, seconds: f64) {
        self.duration.observe(seconds);
        self.requests.inc();
    }
}

impl HttpMetrics {
    /// The most (route, method, status) combinations kept.
    pub const MAX_CACHED: usize = 256;

    /// The HTTP metrics of `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            children: RwLock::new(Vec::new()),
        }
    }

    /// Counts one answered request to `route` and its latency.
    pub fn observe(&self, route: &str, method: &str, status: &str, seconds: f64) {
        {
            let children = self.children.read().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = children.iter().find(|c| c.is(route, method, status)) {
                c.record(seconds);
                return;
            }
        }
        let m = &self.metrics;
        let child = HttpChildren {
            route: route.into(),
            method: method.into(),
            status: status.into(),
            duration: m.http_duration.with_label_values(&[route, method]),
            requests: m.http_requests.with_label_values(&[route, method, status]),
        };
        child.record(seconds);
        let mut children = self.children.write().unwrap_or_else(|e| e.into_inner());
        if children.len() < Self::MAX_CACHED
            && !children.iter().any(|c| c.is(route, method, status))
        {
            children.push(child);
        }
    }

    /// Combinations cached now.
    #[cfg(test)]
    fn cached(&self) -> usize {
        self.children.read().map_or(0, |c| c.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_metrics_count_each_combination_and_cache_a_bounded_number() {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let http = HttpMetrics::new(Arc::clone(&metrics));
        for _ in 0..3 {
            http.observe("/v1/tasks", "POST", "202", 0.001);
        }
        http.observe("/v1/tasks", "POST", "503", 0.002);
        http.observe("/health", "GET", "200", 0.0001);
        let count = |labels: &[&str]| metrics.http_requests.with_label_values(labels).get();
        assert_eq!(count(&["/v1/tasks", "POST", "202"]), 3);
        assert_eq!(count(&["/v1/tasks", "POST", "503"]), 1);
        assert_eq!(count(&["/health", "GET", "200"]), 1);
        let observed = |labels: &[&str]| {
            metrics
                .http_duration
                .with_label_values(labels)
                .get_sample_count()
        };
        assert_eq!(observed(&["/v1/tasks", "POST"]), 4);
        assert_eq!(http.cached(), 3);

        for i in 0..2 * HttpMetrics::MAX_CACHED {
            http.observe("/health", &format!("M{i}"), "405", 0.0);
        }
        assert_eq!(http.cached(), HttpMetrics::MAX_CACHED);
        assert_eq!(
            count(&["/health", "M511", "405"]),
            1,
            "past the cap still counted"
        );
    }
}
