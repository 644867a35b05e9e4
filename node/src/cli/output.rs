//! What the client subcommands print: data on stdout (tables, task views, JSON), nothing
//! else there. Pure formatting, unit-tested here.

use std::io::Write;

use serde_json::Value;

/// Writes `text` and a newline to stdout. A closed stdout (`| head`) ends the output
/// silently instead of panicking.
pub(crate) fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").is_err() {
        std::process::exit(0);
    }
}

/// A JSON value on one line.
pub(crate) fn compact(value: &Value) -> String {
    value.to_string()
}

/// A JSON string's text, or the value as JSON; `-` for null or absent.
pub(crate) fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `rows` under `headers`, columns left-aligned and separated by two spaces.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let render = |cells: &mut dyn Iterator<Item = &str>| {
        let parts: Vec<String> = cells
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        parts.join("  ").trim_end().to_owned()
    };
    let mut lines = vec![render(&mut headers.iter().copied())];
    for row in rows {
        lines.push(render(&mut row.iter().map(String::as_str)));
    }
    lines.join("\n")
}

/// A task view (`GET /v1/tasks/{id}`) as `name: value` lines.
pub(crate) fn task_lines(task: &Value) -> String {
    let mut lines = vec![
        ("id", cell(&task["id"])),
        ("kind", cell(&task["kind"])),
        ("status", cell(&task["status"])),
        ("priority", cell(&task["priority"])),
        (
            "attempts",
            format!(
                "{} (max retries {})",
                cell(&task["attempts"]),
                cell(&task["max_retries"])
            ),
        ),
        ("node", cell(&task["node"])),
        ("created", cell(&task["created_at"])),
    ];
    for (name, field) in [("started", "started_at"), ("finished", "finished_at")] {
        if !task[field].is_null() {
            lines.push((name, cell(&task[field])));
        }
    }
    if let Some(progress) = task.get("progress").filter(|p| !p.is_null()) {
        let percent = progress["fraction"].as_f64().unwrap_or(0.0) * 100.0;
        let message = progress["message"].as_str().unwrap_or("");
        lines.push((
            "progress",
            format!("{percent:.0}% {message}").trim_end().to_owned(),
        ));
    }
    if let Some(result) = task.get("result") {
        lines.push(("result", compact(result)));
    }
    if !task["error"].is_null() {
        lines.push(("error", cell(&task["error"])));
    }
    lines
        .iter()
        .map(|(name, value)| format!("{:<10}{value}", format!("{name}:")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["a".to_owned(), "long value".to_owned()],
            vec!["bbb".to_owned(), "x".to_owned()],
        ];
        assert_eq!(
            table(&["ID", "V"], &rows),
            "ID   V\na    long value\nbbb  x"
        );
    }

    #[test]
    fn task_lines_show_result_error_and_progress() {
        let task = json!({
            "id": "t1", "kind": "spin", "status": "failed", "priority": "normal",
            "attempts": 2, "max_retries": 1, "node": "n1",
            "created_at": "2026-01-01T00:00:00Z", "error": "boom",
            "progress": {"fraction": 0.5, "message": "half"}
        });
        let text = task_lines(&task);
        assert!(text.contains("status:   failed"), "{text}");
        assert!(text.contains("attempts: 2 (max retries 1)"), "{text}");
        assert!(text.contains("progress: 50% half"), "{text}");
        assert!(text.contains("error:    boom"), "{text}");
        assert!(!text.contains("result"), "{text}");
    }
}
