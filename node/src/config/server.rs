//! Flags that bound the HTTP server and shape the shutdown: drain period, connection
//! and request limits, timeouts, and the cluster handshake timeout.

use std::time::Duration;

use anyhow::bail;
use clap::Args;

/// The longest long-poll a client may ask for (`wait_ms`), whatever the request timeout.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Flags of the HTTP server's bounds and of the shutdown.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Milliseconds the HTTP listener stays open after SIGTERM with `/health/ready`
    /// answering 503 (`draining: true`), so load balancers and Kubernetes stop sending
    /// traffic before the port closes. 0 closes it at once.
    #[arg(long, env = "TASKMESH_DRAIN_MS", default_value_t = 5000)]
    pub drain_ms: u64,

    /// Most open HTTP connections; a connection past it is closed at once.
    #[arg(long, env = "TASKMESH_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Most HTTP requests in flight (`/health`, `/health/ready` and `/metrics` not
    /// counted); past it a request gets `503 overloaded` with `Retry-After: 1`.
    #[arg(long, env = "TASKMESH_MAX_CONCURRENT_REQUESTS", default_value_t = 1024)]
    pub max_concurrent_requests: usize,

    /// Milliseconds a request may run, body upload included (`504 timeout` after). A
    /// long-poll waits at most 60 s and at most this minus one second.
    #[arg(long, env = "TASKMESH_REQUEST_TIMEOUT_MS", default_value_t = 75_000)]
    pub request_timeout_ms: u64,

    /// Milliseconds a connection may take to send a whole request head, or stay idle
    /// between two requests, before it is closed (slowloris protection). Behind a load
    /// balancer, keep it above the balancer's idle timeout.
    #[arg(
        long,
        env = "TASKMESH_HEADER_READ_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub header_read_timeout_ms: u64,

    /// Cluster: milliseconds an incoming node-to-node connection may take to
    /// authenticate (cookie handshake) before it is closed.
    #[arg(
        long,
        env = "TASKMESH_CLUSTER_HANDSHAKE_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub cluster_handshake_timeout_ms: u64,
}

/// The validated values of [`ServerArgs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSettings {
    /// Drain period after SIGTERM.
    pub drain: Duration,
    /// Most open connections.
    pub max_connections: usize,
    /// Most requests in flight.
    pub max_concurrent_requests: usize,
    /// Longest request.
    pub request_timeout: Duration,
    /// Longest long-poll (below the request timeout).
    pub max_wait: Duration,
    /// Longest request-head read or idle keep-alive.
    pub header_read_timeout: Duration,
    /// Longest unauthenticated cluster session.
    pub cluster_handshake_timeout: Duration,
}

impl TryFrom<&ServerArgs> for ServerSettings {
    type Error = anyhow::Error;

    fn try_from(a: &ServerArgs) -> anyhow::Result<Self> {
        if a.drain_ms > 120_000 {
            bail!("--drain-ms must be at most 120000, got {}", a.drain_ms);
        }
        if a.max_connections == 0 || a.max_concurrent_requests == 0 {
            bail!("--max-connections and --max-concurrent-requests must be at least 1");
        }
        if !(1000..=3_600_000).contains(&a.request_timeout_ms) {
            bail!(
                "--request-timeout-ms must be between 1000 and 3600000, got {}",
                a.request_timeout_ms
            );
        }
        if !(100..=600_000).contains(&a.header_read_timeout_ms) {
            bail!(
                "--header-read-timeout-ms must be between 100 and 600000, got {}",
                a.header_read_timeout_ms
            );
        }
        if !(100..=600_000).contains(&a.cluster_handshake_timeout_ms) {
            bail!(
                "--cluster-handshake-timeout-ms must be between 100 and 600000, got {}",
                a.cluster_handshake_timeout_ms
            );
        }
        let request_timeout = Duration::from_millis(a.request_timeout_ms);
        Ok(Self {
            drain: Duration::from_millis(a.drain_ms),
            max_connections: a.max_connections,
            max_concurrent_requests: a.max_concurrent_requests,
            request_timeout,
            max_wait: MAX_WAIT.min(request_timeout - Duration::from_secs(1)),
            header_read_timeout: Duration::from_millis(a.header_read_timeout_ms),
            cluster_handshake_timeout: Duration::from_millis(a.cluster_handshake_timeout_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        server: ServerArgs,
    }

    fn settings(args: &[&str]) -> anyhow::Result<ServerSettings> {
        let w = Wrap::try_parse_from([&["node"], args].concat())?;
        ServerSettings::try_from(&w.server)
    }

    #[test]
    fn defaults_are_valid_and_the_long_poll_fits_in_the_request_timeout() {
        let s = settings(&[]).expect("valid");
        assert_eq!(s.drain, Duration::from_secs(5));
        assert_eq!(s.max_wait, Duration::from_secs(60));
        assert!(s.max_wait < s.request_timeout);
        let s = settings(&["--request-timeout-ms", "10000"]).expect("valid");
        assert_eq!(s.max_wait, Duration::from_secs(9));
    }

    #[test]
    fn bad_values_are_refused_naming_the_flag() {
        for (bad, flag) in [
            (&["--drain-ms", "999999"][..], "--drain-ms"),
            (&["--max-connections", "0"][..], "--max-connections"),
            (
                &["--max-concurrent-requests", "0"][..],
                "--max-concurrent-requests",
            ),
            (&["--request-timeout-ms", "10"][..], "--request-timeout-ms"),
            (
                &["--header-read-timeout-ms", "0"][..],
                "--header-read-timeout-ms",
            ),
            (
                &["--cluster-handshake-timeout-ms", "5"][..],
                "--cluster-handshake-timeout-ms",
            ),
        ] {
            let err = settings(bad).expect_err("invalid");
            assert!(err.to_string().contains(flag), "{bad:?}: {err}");
        }
        assert!(settings(&["--drain-ms", "-1"]).is_err());
    }
}
