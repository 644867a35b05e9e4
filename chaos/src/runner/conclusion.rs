//! The end of a run: the workload stops and every fault is healed, then each accepted
//! task is read back until it is terminal and the invariants are checked; a check that
//! could not be made fails the run.

use std::sync::Mutex;
use std::time::Duration;

use crate::invariants::{self, History};
use crate::workload::{lock, read};

use super::{Life, RunOptions, Runner};

impl Runner {
    pub(super) fn accepted_ids(&self) -> Vec<String> {
        lock(&self.submitter.ledger())
            .accepted
            .iter()
            .map(|a| a.id.clone())
            .collect()
    }

    /// Ends the faults: stops the workload, heals partitions, resumes paused nodes.
    pub(super) async fn wind_down(&mut self) {
        if let Some(w) = self.workload.take() {
            w.stop().await;
        }
        for i in 0..self.lives.len() {
            let healed = match self.lives[i] {
                Life::Paused => self.backend.resume(i).await,
                Life::Partitioned(_) => self.backend.heal(i).await,
                _ => continue,
            };
            match healed {
                Ok(()) => self.set(i, Life::Up),
                Err(e) => self.event("wind down", "failed".into(), Some(format!("{e:#}"))),
            }
        }
        self.event("wind down", "workload stopped, faults healed".into(), None);
    }

    pub(super) async fn conclude(&mut self, options: &RunOptions, history: &Mutex<History>) {
        let mut ids = self.accepted_ids();
        let within = Duration::from_secs_f64(options.settle_secs);
        // Tasks answered `503 outcome_unknown` that were stored after all must run like
        // accepted ones; those never stored are no one's loss.
        let unknown: Vec<String> = lock(&self.submitter.ledger())
            .unknown
            .iter()
            .map(|a| a.id.clone())
            .collect();
        let stored = invariants::stored(&self.api, &self.targets, &unknown, within).await;
        self.event(
            "outcome unknown",
            format!("{} of {} stored", stored.len(), unknown.len()),
            None,
        );
        let stored_count = stored.len();
        ids.extend(stored);
        let mut settled = invariants::settle(&self.api, &self.targets, &ids, within, history).await;
        // A check that could not be made fails the run: it proves nothing either way.
        let mut unchecked = Vec::new();
        if let Some(url) = self.backend.store_url()
            && let Err(e) = invariants::check_store(&url, &mut settled).await
        {
            self.event("check store", "failed".into(), Some(format!("{e:#}")));
            unchecked.push(format!("the store could not be read: {e:#}"));
        }
        let mut duplicates = 0.0;
        let live = read(&self.targets).clone();
        if live.is_empty() {
            unchecked.push("no node left to scrape for duplicate completions".into());
        }
        for (_, url) in live {
            match self
                .api
                .metric_sum(&url, "taskmesh_duplicate_completions_total")
                .await
            {
                Ok(n) => duplicates += n,
                Err(e) => unchecked.push(format!("metrics of {url} not scraped: {e:#}")),
            }
        }
        settled.unchecked = unchecked;
        settled.unknown_stored = stored_count;
        self.report.recovery(&settled, &self.clock);
        let ledger = self.submitter.ledger();
        let regressions = lock(history).regressions.clone();
        self.report.conclude(
            &lock(&ledger),
            settled,
            regressions,
            duplicates,
            self.clock.elapsed_ms(),
            self.backend.logs_hint(),
        );
    }
}
