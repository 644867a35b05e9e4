//! The tracing subscriber: logs go to stdout (what container runtimes collect), pretty on a
//! terminal, JSON lines on request. Errors that stop the process go to stderr.

use std::io::IsTerminal;

use anyhow::Context;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

pub mod limit;
mod span_fields;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `filter`. The log
/// lines of ractor and ractor_cluster are rate-limited ([`limit`]).
pub fn init(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => EnvFilter::try_new(env),
        _ => EnvFilter::try_new(filter),
    }
    .context("invalid log filter")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let format = match format {
        LogFormat::Auto if std::io::stdout().is_terminal() => LogFormat::Pretty,
        LogFormat::Auto => LogFormat::Text,
        other => other,
    };
    let limit = limit::LogLimit::start();
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .fmt_fields(span_fields::SpanFields)
            .finish()
            .with(limit)
            .try_init(),
        LogFormat::Pretty => builder.pretty().finish().with(limit).try_init(),
        LogFormat::Text | LogFormat::Auto => {
            builder.with_ansi(false).finish().with(limit).try_init()
        }
    };
    installed.map_err(|e| anyhow::anyhow!("installing the log subscriber failed: {e}"))
}
