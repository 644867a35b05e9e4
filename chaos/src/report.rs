//! The report of a run: every step and fault with its time, the submissions, the final
//! state of the accepted tasks, and the invariants, as JSON for programs and Markdown for
//! people.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::clock::RunClock;
use crate::invariants::Settled;
use crate::scenario::Scenario;
use crate::workload::Ledger;

/// One step as it happened.
#[derive(Debug, Serialize)]
pub struct Event {
    /// Milliseconds since the run started.
    pub at_ms: u64,
    /// The step.
    pub step: String,
    /// What came of it.
    pub outcome: String,
    /// Why it failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One fault inflicted.
#[derive(Debug, Serialize)]
pub struct Fault {
    /// Milliseconds since the run started.
    pub at_ms: u64,
    /// What was done.
    pub kind: String,
    /// To which node (by position), if to one.
    pub node: Option<usize>,
    /// Its node id.
    pub node_id: Option<String>,
    /// How long until every other live node saw it down (when a step awaited it).
    pub detection_ms: Option<u64>,
    /// How long until the last task accepted before the fault and finished after it was
    /// finished: the backlog the fault found, cleared.
    pub recovery_ms: Option<i64>,
}

/// One invariant and whether it held.
#[derive(Debug, Serialize)]
pub struct Invariant {
    /// What must hold.
    pub name: String,
    /// Whether it did.
    pub held: bool,
    /// Figures, or the first offenders.
    pub detail: String,
}

/// Counts of the workload's answers.
#[derive(Debug, Default, Serialize)]
pub struct Submissions {
    /// Tasks that got a 202.
    pub accepted: usize,
    /// Documented 503 refusals, by code.
    pub refused: BTreeMap<String, u64>,
    /// Tasks answered `503 outcome_unknown` (perhaps stored; those found stored are in
    /// the tasks' `unknown_stored` and checked like accepted ones).
    pub outcome_unknown: usize,
    /// Undocumented 5xx answers.
    pub server_errors: Vec<String>,
    /// 4xx answers.
    pub rejected: Vec<String>,
    /// Submissions no node answered in time.
    pub unanswered: u64,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// Its description.
    pub about: String,
    /// `loopback` or `compose`.
    pub backend: String,
    /// The seed that replays the run.
    pub seed: u64,
    /// Nodes at the start.
    pub nodes: usize,
    /// How long the run took, in milliseconds.
    pub duration_ms: u64,
    /// Every step, in order.
    pub events: Vec<Event>,
    /// Every fault, in order.
    pub faults: Vec<Fault>,
    /// The workload's answers.
    pub submissions: Submissions,
    /// The accepted tasks in the end.
    pub tasks: Settled,
    /// Late completions refused by fencing, summed over the nodes alive at the end
    /// (`taskmesh_duplicate_completions_total`): executions that happened twice.
    pub duplicate_completions: f64,
    /// What must hold.
    pub invariants: Vec<Invariant>,
    /// Whether every invariant held.
    pub passed: bool,
    /// Where the nodes' logs are.
    pub logs: String,
}

fn first(items: &[String]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    let shown: Vec<&str> = items.iter().take(5).map(String::as_str).collect();
    let more = items.len().saturating_sub(5);
    if more > 0 {
        format!("{} (and {more} more)", shown.join("; "))
    } else {
        shown.join("; ")
    }
}

impl Report {
    /// An empty report for a run about to start.
    pub fn new(scenario: &Scenario, backend: &str, seed: u64) -> Self {
        Self {
            scenario: scenario.name.clone(),
            about: scenario.about.clone(),
            backend: backend.to_owned(),
            seed,
            nodes: scenario.nodes,
            duration_ms: 0,
            events: Vec::new(),
            faults: Vec::new(),
            submissions: Submissions::default(),
            tasks: Settled::default(),
            duplicate_completions: 0.0,
            invariants: Vec::new(),
            passed: false,
            logs: String::new(),
        }
    }

    /// Fills in each node fault's recovery time from the settled records.
    pub fn recovery(&mut self, settled: &Settled, clock: &RunClock) {
        let spans: Vec<(i64, i64)> = settled
            .records
            .values()
            .filter_map(|r| {
                let created = clock.offset_ms(r["created_at"].as_str()?)?;
                let finished = clock.offset_ms(r["finished_at"].as_str()?)?;
                Some((created, finished))
            })
            .collect();
        for fault in self.faults.iter_mut() {
            let at = i64::try_from(fault.at_ms).unwrap_or(i64::MAX);
            fault.recovery_ms = spans
                .iter()
                .filter(|(created, finished)| *created <= at && *finished > at)
                .map(|(_, finished)| finished - at)
                .max();
        }
    }

    /// Records the outcome and checks the invariants.
    pub fn conclude(
        &mut self,
        ledger: &Ledger,
        tasks: Settled,
        regressions: Vec<String>,
        duplicates: f64,
        duration_ms: u64,
        logs: String,
    ) {
        self.submissions = Submissions {
            accepted: ledger.accepted.len(),
            refused: ledger.refused.clone(),
            outcome_unknown: ledger.unknown.len(),
            server_errors: ledger.server_errors.clone(),
            rejected: ledger.rejected.clone(),
            unanswered: ledger.unanswered,
        };
        let accepted = ledger.accepted.len();
        let open: Vec<String> = tasks
            .not_terminal
            .iter()
            .chain(&tasks.missing)
            .cloned()
            .collect();
        let not_ok: Vec<String> = tasks
            .records
            .iter()
            .filter(|(_, r)| {
                let status = r["status"].as_str().unwrap_or("");
                taskmesh_actors::testing::is_terminal(status) && status != "succeeded"
            })
            .map(|(id, r)| format!("{id}: {} ({})", r["status"], r["error"]))
            .collect();
        let failed_steps: Vec<String> = self
            .events
            .iter()
            .filter_map(|e| Some(format!("{}: {}", e.step, e.error.as_deref()?)))
            .collect();
        let mut invariants = vec![
            Invariant {
                name: "the workload got tasks accepted".into(),
                held: accepted > 0,
                detail: format!("{accepted} accepted"),
            },
            Invariant {
                name: "every accepted task reached a terminal state (none lost)".into(),
                held: open.is_empty(),
                detail: if open.is_empty() {
                    let checked = accepted + tasks.unknown_stored;
                    format!("{checked} of {checked} terminal")
                } else {
                    format!(
                        "{} not terminal, {} unknown: {}",
                        tasks.not_terminal.len(),
                        tasks.missing.len(),
                        first(&open)
                    )
                },
            },
            Invariant {
                name: "every accepted task succeeded".into(),
                held: not_ok.is_empty(),
                detail: if not_ok.is_empty() {
                    "0 failed, 0 cancelled".into()
                } else {
                    first(&not_ok)
                },
            },
            Invariant {
                name: "no status went backwards".into(),
                held: regressions.is_empty(),
                detail: if regressions.is_empty() {
                    "none seen".into()
                } else {
                    first(&regressions)
                },
            },
            Invariant {
                name: "no 5xx other than documented 503s".into(),
                held: ledger.server_errors.is_empty(),
                detail: format!("{} undocumented 5xx", ledger.server_errors.len()),
            },
            Invariant {
                name: "the workload was valid (no 4xx)".into(),
                held: ledger.rejected.is_empty(),
                detail: first(&ledger.rejected),
            },
            Invariant {
                name: "every step completed (detection within its limit included)".into(),
                held: failed_steps.is_empty(),
                detail: first(&failed_steps),
            },
        ];
        invariants.push(Invariant {
            name: "every check could be made (store read, metrics scraped)".into(),
            held: tasks.unchecked.is_empty(),
            detail: if tasks.unchecked.is_empty() {
                "all made".into()
            } else {
                first(&tasks.unchecked)
            },
        });
        if tasks.store_checked {
            invariants.push(Invariant {
                name: "the store holds the same terminal state as the API".into(),
                held: tasks.store_mismatches.is_empty(),
                detail: if tasks.store_mismatches.is_empty() {
                    format!("{} records compared", tasks.records.len())
                } else {
                    first(&tasks.store_mismatches)
                },
            });
        }
        self.passed = invariants.iter().all(|i| i.held);
        self.invariants = invariants;
        self.tasks = tasks;
        self.duplicate_completions = duplicates;
        self.duration_ms = duration_ms;
        self.logs = logs;
    }

    /// The Markdown summary.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let verdict = if self.passed { "PASSED" } else { "FAILED" };
        let _ = writeln!(md, "# Chaos run `{}`: {verdict}\n", self.scenario);
        if !self.about.is_empty() {
            let _ = writeln!(md, "{}\n", self.about);
        }
        let _ = writeln!(
            md,
            "Backend `{}`, {} nodes at the start, seed {} (replay with `--seed {}`), {:.1} s.\n",
            self.backend,
            self.nodes,
            self.seed,
            self.seed,
            self.duration_ms as f64 / 1000.0
        );
        let _ = writeln!(
            md,
            "## Invariants\n\n| | invariant | detail |\n|---|---|---|"
        );
        for i in &self.invariants {
            let mark = if i.held { "ok" } else { "**VIOLATED**" };
            let _ = writeln!(
                md,
                "| {mark} | {} | {} |",
                i.name,
                i.detail.replace('|', "/")
            );
        }
        let _ = writeln!(
            md,
            "\n## Faults\n\n| at (s) | fault | node | detected down after | backlog cleared after |\n|---|---|---|---|---|"
        );
        let ms =
            |v: Option<i64>| v.map_or("–".to_owned(), |v| format!("{:.2} s", v as f64 / 1000.0));
        for f in &self.faults {
            let _ = writeln!(
                md,
                "| {:.2} | {} | {} | {} | {} |",
                f.at_ms as f64 / 1000.0,
                f.kind,
                f.node_id.as_deref().unwrap_or("–"),
                ms(f.detection_ms.and_then(|d| i64::try_from(d).ok())),
                ms(f.recovery_ms),
            );
        }
        let s = &self.submissions;
        let t = &self.tasks;
        let statuses: Vec<String> = t
            .by_status
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let refused: Vec<String> = s.refused.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            md,
            "\n## Tasks\n\n- accepted (202): {}\n- final status: {}\n- ran more than once (attempts > 1): {}, most attempts: {}\n- late completions refused by fencing (duplicate executions): {}\n- refused with a documented 503: {}\n- answered 503 outcome_unknown: {} tasks, {} of them found stored (checked like accepted ones)\n- unanswered submissions (not accepted, not checked): {}\n- store checked directly: {}",
            s.accepted,
            if statuses.is_empty() {
                "none".into()
            } else {
                statuses.join(", ")
            },
            t.re_executed,
            t.max_attempts,
            self.duplicate_completions,
            if refused.is_empty() {
                "none".into()
            } else {
                refused.join(", ")
            },
            s.outcome_unknown,
            t.unknown_stored,
            s.unanswered,
            if t.store_checked {
                "yes"
            } else {
                "no (the API only)"
            },
        );
        let _ = writeln!(
            md,
            "\n## Steps\n\n| at (s) | step | outcome |\n|---|---|---|"
        );
        for e in &self.events {
            let outcome = match &e.error {
                Some(err) => format!("**{}**: {}", e.outcome, err.replace('|', "/")),
                None => e.outcome.clone(),
            };
            let _ = writeln!(
                md,
                "| {:.2} | {} | {outcome} |",
                e.at_ms as f64 / 1000.0,
                e.step
            );
        }
        let _ = writeln!(md, "\nNode logs: {}", self.logs);
        md
    }

    /// Writes `<name>-<seed>.json` and `.md` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let stem = format!("{}-{}-{}", self.scenario, self.backend, self.seed);
        let json = dir.join(format!("{stem}.json"));
        let md = dir.join(format!("{stem}.md"));
        std::fs::write(&json, serde_json::to_string_pretty(self)?)?;
        std::fs::write(&md, self.markdown())?;
        Ok((json, md))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::workload::Accepted;

    /// A run where every task succeeded and the store agreed.
    fn clean(unchecked: Vec<String>) -> Report {
        let scenario = Scenario {
            name: "t".into(),
            about: String::new(),
            nodes: 1,
            workload: Default::default(),
            steps: Vec::new(),
        };
        let mut report = Report::new(&scenario, "loopback", 1);
        let ledger = Ledger {
            accepted: vec![Accepted {
                id: "a".into(),
                at_ms: 0,
                node: 0,
            }],
            ..Ledger::default()
        };
        let mut tasks = Settled::default();
        tasks.by_status.insert("succeeded".into(), 1);
        tasks
            .records
            .insert("a".into(), json!({"id": "a", "status": "succeeded"}));
        tasks.store_checked = unchecked.is_empty();
        tasks.unchecked = unchecked;
        report.conclude(&ledger, tasks, vec![], 0.0, 1, String::new());
        report
    }

    #[test]
    fn a_run_whose_checks_all_ran_and_held_passes() {
        assert!(clean(vec![]).passed);
    }

    #[test]
    fn a_run_that_could_not_be_checked_fails() {
        for what in [
            "the store could not be read: connection refused",
            "metrics of http://n1 not scraped: 502",
        ] {
            let report = clean(vec![what.into()]);
            assert!(!report.passed, "{what}");
            let broken: Vec<&Invariant> = report.invariants.iter().filter(|i| !i.held).collect();
            assert_eq!(broken.len(), 1, "{:?}", report.invariants);
            assert!(broken[0].detail.contains(what), "{}", broken[0].detail);
        }
    }
}
