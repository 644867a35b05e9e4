//! Waiting for the nodes' verdicts on each other: until every observer sees a node
//! `down` (its detection time goes into the report), or every up node sees the others
//! `up`.

use std::time::Duration;

use anyhow::{Context, bail};

use super::{Life, Runner};

impl Runner {
    /// Polls every other up node until all see node `i` down; the time since the last
    /// fault on `i` is its detection time.
    pub(super) async fn await_down(&mut self, i: usize, within_secs: f64) -> anyhow::Result<()> {
        let target = self.ids[i].clone();
        let urls = self.backend.urls();
        let observers: Vec<String> = (0..self.lives.len())
            .filter(|&j| j != i && self.lives[j] == Life::Up)
            .map(|j| urls[j].clone())
            .collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(within_secs);
        let mut pending = observers;
        while !pending.is_empty() && tokio::time::Instant::now() < deadline {
            let mut still = Vec::new();
            for url in pending {
                let down = self
                    .api
                    .peer_states(&url)
                    .await
                    .is_ok_and(|states| states.get(&target).is_some_and(|s| s == "down"));
                if !down {
                    still.push(url);
                }
            }
            pending = still;
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if !pending.is_empty() {
            bail!(
                "{target} not seen down within {within_secs} s by {}",
                pending.join(", ")
            );
        }
        let now = self.clock.elapsed_ms();
        let fault = self
            .report
            .faults
            .iter_mut()
            .rev()
            .find(|f| f.node == Some(i))
            .context("await_down needs an earlier fault on that node")?;
        let detection = now.saturating_sub(fault.at_ms);
        fault.detection_ms = Some(detection);
        self.event(
            "await_down",
            format!("{target} down everywhere after {detection} ms"),
            None,
        );
        Ok(())
    }

    /// Whether every up node sees every other up node up within the time.
    pub(super) async fn await_up(&mut self, within_secs: f64) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(within_secs);
        let urls = self.backend.urls();
        let up: Vec<usize> = (0..self.lives.len())
            .filter(|&i| self.lives[i] == Life::Up)
            .collect();
        loop {
            let mut all = true;
            for &i in &up {
                let states = self.api.peer_states(&urls[i]).await.unwrap_or_default();
                all &= up
                    .iter()
                    .filter(|&&j| j != i)
                    .all(|&j| states.get(&self.ids[j]).is_some_and(|s| s == "up"));
            }
            if all {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
