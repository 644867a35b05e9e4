//! What the code that checks a node from outside shares — the black-box tests (`tests`)
//! and the chaos runner (`chaos`) — so each check is written once: polling with a
//! deadline, reading a task's status, reading `/metrics`. Only with the `testsuite`
//! feature (and in this crate's own tests).

use std::time::Duration;

use anyhow::bail;
use taskmesh_kernels::task::TaskStatus;
use tokio::time::Instant;

/// Whether a status as the API writes it (`"succeeded"`, …) is terminal: the rule of
/// [`TaskStatus::is_terminal`], for JSON text. An unknown status is not terminal.
pub fn is_terminal(status: &str) -> bool {
    status
        .parse::<TaskStatus>()
        .is_ok_and(TaskStatus::is_terminal)
}

/// Polls `check` every 20 ms until it yields `Some`, and returns that value; fails with
/// `what` and the last error once `within` has passed. `check` errors are retried too
/// (the condition may depend on a node that is still starting).
pub async fn eventually<T>(
    within: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + within;
    loop {
        let last = match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => String::from("condition not met"),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() > deadline {
            bail!("{what}: still not true after {within:?} ({last})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the sample `name{labels}` in Prometheus text, where `labels` must match
/// the sample's label set exactly (in any order); `None` when there is no such sample.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(text).find_map(|(sample_name, sample_labels, value)| {
        let sample_labels = parse_labels(sample_labels)?;
        let same_labels = sample_labels.len() == labels.len()
            && labels
                .iter()
                .all(|(k, v)| sample_labels.iter().any(|(sk, sv)| sk == k && sv == v));
        (sample_name == name && same_labels).then_some(value)
    })
}

/// The sum of every sample of the metric called exactly `name`, whatever its labels
/// (`taskmesh_task_retries_total` sums every kind; `taskmesh_task_retries` sums nothing);
/// 0 when there is none.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    samples(text)
        .filter(|(sample_name, _, _)| *sample_name == name)
        .map(|(_, _, value)| value)
        .sum()
}

/// Each sample line of Prometheus text as (name, label text without braces, value).
fn samples(text: &str) -> impl Iterator<Item = (&str, &str, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            Some((name, labels, value))
        })
}

/// `k="v",k2="v2"` → pairs (values in our metrics never hold quotes or commas).
fn parse_labels(text: &str) -> Option<Vec<(&str, &str)>> {
    text.split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k, v.trim_matches('"')))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP taskmesh_workers Workers of the local pool
# TYPE taskmesh_workers gauge
taskmesh_workers{state=\"busy\"} 1
taskmesh_workers{state=\"idle\"} 3
taskmesh_workers_total 100
taskmesh_tasks_completed_total{kind=\"noop\",outcome=\"succeeded\"} 5
taskmesh_worker_restarts_total 2
";

    #[test]
    fn metric_matches_the_exact_label_set() {
        assert_eq!(
            metric(TEXT, "taskmesh_workers", &[("state", "idle")]),
            Some(3.0)
        );
        let labels = [("outcome", "succeeded"), ("kind", "noop")];
        assert_eq!(
            metric(TEXT, "taskmesh_tasks_completed_total", &labels),
            Some(5.0),
            "label order does not matter"
        );
        assert_eq!(
            metric(TEXT, "taskmesh_tasks_completed_total", &[("kind", "noop")]),
            None,
            "a subset of the labels is not the sample"
        );
        assert_eq!(
            metric(TEXT, "taskmesh_worker_restarts_total", &[]),
            Some(2.0)
        );
        assert_eq!(metric(TEXT, "taskmesh_workers", &[]), None);
    }

    #[test]
    fn metric_sum_adds_every_label_set_of_one_name_only() {
        assert_eq!(metric_sum(TEXT, "taskmesh_workers"), 4.0);
        assert_eq!(metric_sum(TEXT, "taskmesh_worker"), 0.0, "not a prefix");
        assert_eq!(metric_sum(TEXT, "taskmesh_nothing"), 0.0);
    }

    #[test]
    fn only_succeeded_failed_and_cancelled_are_terminal() {
        for status in ["succeeded", "failed", "cancelled"] {
            assert!(is_terminal(status), "{status}");
        }
        for status in ["queued", "running", "", "Succeeded"] {
            assert!(!is_terminal(status), "{status}");
        }
    }

    #[tokio::test]
    async fn eventually_returns_the_first_value_and_fails_with_the_last_error() {
        let mut calls = 0;
        let value = eventually(Duration::from_secs(5), "third call", async || {
            calls += 1;
            Ok((calls == 3).then_some(calls))
        })
        .await;
        assert_eq!(value.ok(), Some(3));
        let failed = eventually(Duration::from_millis(50), "never", async || {
            anyhow::Result::<Option<()>>::Err(anyhow::anyhow!("node down"))
        })
        .await;
        let message = format!("{:#}", failed.expect_err("it never holds"));
        assert!(
            message.contains("never") && message.contains("node down"),
            "{message}"
        );
    }
}
