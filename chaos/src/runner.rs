//! Runs a scenario's steps against a backend, keeping track of which nodes live, then
//! heals everything, settles the accepted tasks and checks the invariants.
//!
//! # Layout
//! - this module: the [`Runner`], its steps and the membership changes they make.
//! - `verdicts`: waiting until the nodes see a node down, or each other up.
//! - `conclusion`: the end of a run: faults healed, tasks settled, invariants checked.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::backend::Backend;
use crate::client::Api;
use crate::clock::RunClock;
use crate::invariants::{self, History, Watch};
use crate::report::{Event, Fault, Report};
use crate::scenario::{Cut, Scenario, Step, Target};
use crate::workload::{Submitter, Targets, Workload, lock};

mod conclusion;
mod verdicts;

/// How the run goes beyond the scenario file.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Seed of every random choice (targets, schedules, task mix).
    pub seed: u64,
    /// Overrides the length of `random_faults` schedules.
    pub soak_secs: Option<f64>,
    /// How long accepted tasks may take to finish once the faults are over.
    pub settle_secs: f64,
}

/// What a node is going through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    Up,
    Killed,
    Stopped,
    Paused,
    Partitioned(Cut),
    Removed,
}

impl Life {
    /// Whether its HTTP port may answer.
    fn reachable(self) -> bool {
        matches!(self, Life::Up | Life::Partitioned(_))
    }
}

/// A run in progress.
pub struct Runner {
    backend: Box<dyn Backend>,
    api: Api,
    clock: RunClock,
    rng: ChaCha8Rng,
    lives: Vec<Life>,
    ids: Vec<String>,
    last: Option<usize>,
    targets: Targets,
    submitter: Submitter,
    workload: Option<Workload>,
    report: Report,
}

impl Runner {
    /// Runs `scenario` on `backend` and returns the report; the backend is shut down
    /// whatever happens.
    pub async fn run(
        scenario: &Scenario,
        backend: Box<dyn Backend>,
        options: &RunOptions,
    ) -> anyhow::Result<Report> {
        let api = backend.api();
        let clock = RunClock::start();
        let targets: Targets = Arc::new(RwLock::new(Vec::new()));
        let submitter = Submitter::new(
            api.clone(),
            scenario.workload.clone(),
            Arc::clone(&targets),
            options.seed,
            clock,
        );
        let mut runner = Runner {
            report: Report::new(scenario, backend.name(), options.seed),
            backend,
            api,
            clock,
            rng: ChaCha8Rng::seed_from_u64(options.seed),
            lives: Vec::new(),
            ids: Vec::new(),
            last: None,
            targets,
            submitter,
            workload: None,
        };
        let result = runner.go(scenario, options).await;
        runner.backend.shutdown().await;
        result.map(|()| runner.report)
    }

    async fn go(&mut self, scenario: &Scenario, options: &RunOptions) -> anyhow::Result<()> {
        self.backend
            .start(scenario.nodes)
            .await
            .context("starting the cluster")?;
        for i in 0..scenario.nodes {
            self.joined(i).await?;
        }
        self.event("start", format!("{} nodes ready", scenario.nodes), None);
        self.await_up(60.0).await;
        let history = Arc::new(Mutex::new(History::default()));
        let watch = Watch::start(self.api.clone(), Arc::clone(&self.targets), history);
        for step in scenario.expand(options.seed, options.soak_secs) {
            let name = describe(&step);
            if let Err(e) = self.step(step).await {
                self.event(&name, "failed".into(), Some(format!("{e:#}")));
            }
        }
        self.wind_down().await;
        let history = watch.stop().await;
        self.conclude(options, &history).await;
        Ok(())
    }

    /// Records node `i` as up and learns its id.
    async fn joined(&mut self, i: usize) -> anyhow::Result<()> {
        let url = self.backend.urls()[i].clone();
        let id = self.api.node_id(&url).await?;
        if i < self.lives.len() {
            self.lives[i] = Life::Up;
            self.ids[i] = id;
        } else {
            self.lives.push(Life::Up);
            self.ids.push(id);
        }
        self.refresh_targets();
        Ok(())
    }

    fn refresh_targets(&self) {
        let urls = self.backend.urls();
        let live = self
            .lives
            .iter()
            .enumerate()
            .filter(|(_, life)| life.reachable())
            .map(|(i, _)| (i, urls[i].clone()))
            .collect();
        *self
            .targets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = live;
    }

    fn event(&mut self, step: &str, outcome: String, error: Option<String>) {
        let at_ms = self.clock.elapsed_ms();
        tracing::info!(at_ms, step, %outcome, error = error.as_deref().unwrap_or(""), "step");
        self.report.events.push(Event {
            at_ms,
            step: step.to_owned(),
            outcome,
            error,
        });
    }

    fn resolve(&mut self, target: &Target) -> anyhow::Result<usize> {
        let i = match target {
            Target::Random => {
                let up: Vec<usize> = (0..self.lives.len())
                    .filter(|&i| self.lives[i] == Life::Up)
                    .collect();
                if up.is_empty() {
                    bail!("no node is up to pick from");
                }
                up[self.rng.random_range(0..up.len())]
            }
            Target::Submitter => 0,
            Target::Last => self.last.context("no earlier fault to refer to")?,
            Target::Index(i) => *i,
        };
        if i >= self.lives.len() {
            bail!("there is no node {i}");
        }
        self.last = Some(i);
        Ok(i)
    }

    fn fault(&mut self, kind: &str, node: Option<usize>) {
        let at_ms = self.clock.elapsed_ms();
        let node_id = node.map(|i| self.ids[i].clone());
        self.report.faults.push(Fault {
            at_ms,
            kind: kind.to_owned(),
            node,
            node_id: node_id.clone(),
            detection_ms: None,
            recovery_ms: None,
        });
        let on = node_id.map_or_else(String::new, |id| format!(" on {id}"));
        self.event(kind, format!("{kind}{on}"), None);
    }

    fn set(&mut self, i: usize, life: Life) {
        self.lives[i] = life;
        self.refresh_targets();
    }

    async fn step(&mut self, step: Step) -> anyhow::Result<()> {
        match step {
            Step::Workload => {
                if self.workload.is_none() {
                    self.workload = Some(self.submitter.start());
                }
                self.event("workload", "steady workload started".into(), None);
            }
            Step::StopWorkload => {
                if let Some(w) = self.workload.take() {
                    w.stop().await;
                }
                self.event("stop_workload", "steady workload stopped".into(), None);
            }
            Step::Submit { count } => {
                let before = lock(&self.submitter.ledger()).accepted.len();
                self.submitter.burst(count).await;
                let accepted = lock(&self.submitter.ledger()).accepted.len() - before;
                self.event("submit", format!("{accepted} of {count} accepted"), None);
            }
            Step::Wait { secs } => tokio::time::sleep(Duration::from_secs_f64(secs)).await,
            Step::Kill { target } => {
                let i = self.resolve(&target)?;
                self.backend.kill(i).await?;
                self.set(i, Life::Killed);
                self.fault("kill", Some(i));
            }
            Step::Terminate { target } => {
                let i = self.resolve(&target)?;
                self.set(i, Life::Stopped);
                self.fault("terminate", Some(i));
                self.backend.terminate(i).await?;
            }
            Step::Pause { target } => {
                let i = self.resolve(&target)?;
                self.backend.pause(i).await?;
                self.set(i, Life::Paused);
                self.fault("pause", Some(i));
            }
            Step::Partition { target, from } => {
                let i = self.resolve(&target)?;
                self.backend.partition(i, from).await?;
                self.set(i, Life::Partitioned(from));
                let kind = match from {
                    Cut::Peers => "partition from peers",
                    Cut::Redis => "partition from redis",
                };
                self.fault(kind, Some(i));
            }
            Step::Restart { target } => {
                let i = self.resolve(&target)?;
                self.backend.restart(i).await?;
                self.joined(i).await?;
                self.event("restart", format!("{} is back", self.ids[i]), None);
            }
            Step::Resume { target } => {
                let i = self.resolve(&target)?;
                self.backend.resume(i).await?;
                self.set(i, Life::Up);
                self.event("resume", format!("{} resumed", self.ids[i]), None);
            }
            Step::Heal { target } => {
                let i = self.resolve(&target)?;
                self.backend.heal(i).await?;
                self.set(i, Life::Up);
                self.event("heal", format!("{} healed", self.ids[i]), None);
            }
            Step::RestartRedis => {
                self.fault("restart redis", None);
                self.backend.restart_redis().await?;
                self.event("restart_redis", "redis is back".into(), None);
            }
            Step::Scale { nodes } => self.scale(nodes).await?,
            Step::RollingRestart => self.rolling_restart().await?,
            Step::AwaitDown {
                target,
                within_secs,
            } => {
                let i = self.resolve(&target)?;
                self.await_down(i, within_secs).await?;
            }
            Step::AwaitUp { within_secs } => {
                let started = self.clock.elapsed_ms();
                if !self.await_up(within_secs).await {
                    bail!("the live nodes did not all see each other up within {within_secs} s");
                }
                let took = self.clock.elapsed_ms() - started;
                self.event(
                    "await_up",
                    format!("every live node sees the others up ({took} ms)"),
                    None,
                );
            }
            Step::AwaitAllTerminal { within_secs } => {
                let ids = self.accepted_ids();
                let history = Mutex::new(History::default());
                let within = Duration::from_secs_f64(within_secs);
                let settled =
                    invariants::settle(&self.api, &self.targets, &ids, within, &history).await;
                let open = settled.not_terminal.len() + settled.missing.len();
                if open > 0 {
                    bail!(
                        "{open} of {} tasks not terminal within {within_secs} s",
                        ids.len()
                    );
                }
                self.event(
                    "await_all_terminal",
                    format!("{} tasks terminal", ids.len()),
                    None,
                );
            }
            Step::RandomFaults { .. } => bail!("random_faults is expanded before the run"),
        }
        Ok(())
    }
    async fn scale(&mut self, nodes: usize) -> anyhow::Result<()> {
        let present: Vec<usize> = (0..self.lives.len())
            .filter(|&i| self.lives[i] != Life::Removed)
            .collect();
        if nodes > present.len() {
            for _ in present.len()..nodes {
                let i = self.backend.add_node().await?;
                self.joined(i).await?;
            }
        } else {
            for &i in present.iter().rev().take(present.len() - nodes) {
                let running = self.lives[i] != Life::Killed && self.lives[i] != Life::Stopped;
                self.set(i, Life::Removed);
                if running {
                    self.backend.terminate(i).await?;
                }
            }
        }
        self.fault(&format!("scale to {nodes}"), None);
        Ok(())
    }

    async fn rolling_restart(&mut self) -> anyhow::Result<()> {
        for i in 0..self.lives.len() {
            if self.lives[i] != Life::Up {
                continue;
            }
            self.set(i, Life::Stopped);
            self.fault("rolling restart", Some(i));
            self.backend.terminate(i).await?;
            self.backend.restart(i).await?;
            self.joined(i).await?;
            if !self.await_up(60.0).await {
                bail!("{} did not rejoin within 60 s", self.ids[i]);
            }
        }
        Ok(())
    }
}

/// A step's name for the report.
fn describe(step: &Step) -> String {
    serde_json::to_value(step)
        .ok()
        .and_then(|v| v["do"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "step".into())
}
