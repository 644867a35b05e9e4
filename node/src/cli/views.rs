//! `cluster` (the nodes, from `GET /v1/cluster`) and `stats` (a summary of the node's
//! `/metrics`).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::Exit;
use super::args::{Output, ViewArgs};
use super::client::{CliError, Client};
use super::output::{cell, compact, line, table};

/// `taskmesh cluster`.
pub(crate) async fn cluster(args: ViewArgs) -> Result<Exit, CliError> {
    let client = Client::new(&args.client)?;
    let view = client.get(&["v1", "cluster"], &[]).await?;
    if args.client.output == Output::Json {
        line(&compact(&view));
        return Ok(Exit::Success);
    }
    let nodes = std::iter::once(&view["node"])
        .chain(view["peers"].as_array().into_iter().flatten())
        .filter(|n| !n.is_null());
    let rows: Vec<Vec<String>> = nodes
        .map(|n| {
            let load = &n["load"];
            let load = if load.is_null() {
                "-".to_owned()
            } else {
                format!(
                    "{} queued, {} running, {} workers",
                    cell(&load["queued"]),
                    cell(&load["running"]),
                    cell(&load["workers"])
                )
            };
            vec![
                cell(&n["id"]),
                cell(&n["state"]),
                cell(&n["circuit"]),
                load,
                cell(&n["http_address"]),
            ]
        })
        .collect();
    line(&table(&["NODE", "STATE", "CIRCUIT", "LOAD", "HTTP"], &rows));
    Ok(Exit::Success)
}

/// `taskmesh stats`.
pub(crate) async fn stats(args: ViewArgs) -> Result<Exit, CliError> {
    let client = Client::new(&args.client)?;
    let text = client.get_text(&["metrics"]).await?;
    let summary = summarize(&text);
    match args.client.output {
        Output::Json => line(&compact(&summary)),
        Output::Text => line(&stats_lines(&summary)),
    }
    Ok(Exit::Success)
}

/// One sample of the Prometheus text: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// The samples of a Prometheus text exposition (comments and bad lines skipped).
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let value: f64 = value.trim().parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, labels(rest.strip_suffix('}')?)),
                None => (series, BTreeMap::new()),
            };
            Some((name.to_owned(), labels, value))
        })
        .collect()
}

/// `a="x",b="y"` → {a: x, b: y} (values with `\"` escapes kept as written).
fn labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut end = 0;
        let bytes = after.as_bytes();
        while end < bytes.len() && !(bytes[end] == b'"' && (end == 0 || bytes[end - 1] != b'\\')) {
            end += 1;
        }
        labels.insert(
            key.trim_start_matches(',').trim().to_owned(),
            after[..end].to_owned(),
        );
        rest = after.get(end + 1..).unwrap_or("");
    }
    labels
}

/// Sums `metric` by `label` (every series when `label` is `None`, under `""`).
fn sum_by(samples: &[Sample], metric: &str, label: Option<&str>) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for (name, labels, value) in samples {
        if name == metric {
            let key = label
                .and_then(|l| labels.get(l).cloned())
                .unwrap_or_default();
            *sums.entry(key).or_insert(0.0) += value;
        }
    }
    sums
}

/// A JSON object of counts (whole numbers as integers).
fn counts(map: BTreeMap<String, f64>) -> Value {
    Value::Object(map.into_iter().map(|(k, v)| (k, number(v))).collect())
}

fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

/// The summary `stats` prints, from the node's `/metrics` text.
fn summarize(text: &str) -> Value {
    let s = samples(text);
    let total = |metric: &str| number(sum_by(&s, metric, None).values().sum());
    let mut summary = Map::new();
    summary.insert("submitted".into(), total("taskmesh_tasks_submitted_total"));
    let completed = sum_by(&s, "taskmesh_tasks_completed_total", Some("outcome"));
    summary.insert("completed".into(), counts(completed));
    let depth = sum_by(&s, "taskmesh_queue_depth", Some("priority"));
    summary.insert("queue_depth".into(), counts(depth));
    summary.insert("retries".into(), total("taskmesh_task_retries_total"));
    summary.insert(
        "workers".into(),
        counts(sum_by(&s, "taskmesh_workers", Some("state"))),
    );
    let external = sum_by(&s, "taskmesh_external_workers", Some("kind"));
    if !external.is_empty() {
        summary.insert("external_workers".into(), counts(external));
        summary.insert("external_leases".into(), total("taskmesh_external_leases"));
    }
    Value::Object(summary)
}

/// The order of the lines of `stats`.
const STATS_ORDER: &[&str] = &[
    "submitted",
    "completed",
    "queue_depth",
    "retries",
    "workers",
    "external_workers",
    "external_leases",
];

/// The summary as `name  values` lines, in [`STATS_ORDER`].
fn stats_lines(summary: &Value) -> String {
    let render = |v: &Value| match v {
        Value::Object(map) if map.is_empty() => "-".to_owned(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    STATS_ORDER
        .iter()
        .filter_map(|name| summary.get(*name).map(|value| (name, value)))
        .map(|(name, value)| format!("{:<18}{}", name.replace('_', " "), render(value)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = r#"# HELP taskmesh_tasks_submitted_total x
# TYPE taskmesh_tasks_submitted_total counter
taskmesh_tasks_submitted_total{kind="noop",priority="normal"} 3
taskmesh_tasks_submitted_total{kind="sleep",priority="high"} 2
taskmesh_tasks_completed_total{kind="noop",outcome="succeeded"} 3
taskmesh_tasks_completed_total{kind="sleep",outcome="failed"} 1
taskmesh_queue_depth{priority="high"} 1
taskmesh_queue_depth{priority="low"} 0
taskmesh_workers{state="busy"} 1
taskmesh_workers{state="idle"} 3
taskmesh_ready 1
"#;

    #[test]
    fn summary_adds_series_up() {
        let summary = summarize(METRICS);
        assert_eq!(summary["submitted"], 5);
        assert_eq!(summary["completed"]["succeeded"], 3);
        assert_eq!(summary["completed"]["failed"], 1);
        assert_eq!(summary["queue_depth"]["high"], 1);
        assert_eq!(summary["workers"]["idle"], 3);
        assert_eq!(summary["retries"], 0);
        assert!(summary.get("external_workers").is_none());
        let text = stats_lines(&summary);
        assert!(text.contains("workers           busy=1 idle=3"), "{text}");
        assert!(text.starts_with("submitted         5\n"), "{text}");
    }

    #[test]
    fn labels_with_commas_and_escapes() {
        let l = labels(r#"a="x,y",b="say \"hi\"""#);
        assert_eq!(l["a"], "x,y");
        assert_eq!(l["b"], r#"say \"hi\""#);
    }
}
