//! Scenarios as data: a TOML file names the cluster size, the workload and a list of
//! steps. A `random_faults` step is expanded into concrete fault and heal steps from the
//! run's seed before anything runs, so the schedule is in the report and replays exactly.
//!
//! ```toml
//! name = "kill-random"
//! about = "SIGKILL a random node while tasks are in flight"
//! nodes = 3
//!
//! [workload]
//! rate = 60                      # submissions per second while the workload runs
//! mix = [{ kind = "sleep", params = { ms = 100 }, weight = 3 }]
//!
//! [[steps]]
//! do = "workload"                # start the steady workload
//! [[steps]]
//! do = "kill"
//! target = "random"
//! [[steps]]
//! do = "await_down"
//! within_secs = 5
//! ```

use std::path::Path;

use anyhow::{Context, bail};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A whole scenario.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in report file names.
    pub name: String,
    /// One line for people.
    #[serde(default)]
    pub about: String,
    /// Nodes started before the first step.
    #[serde(default = "default_nodes")]
    pub nodes: usize,
    /// What the steady workload submits.
    #[serde(default)]
    pub workload: WorkloadSpec,
    /// What happens, in order.
    pub steps: Vec<Step>,
}

fn default_nodes() -> usize {
    3
}

/// The steady workload and the task mix every submission draws from.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Submissions per second while the workload runs.
    #[serde(default = "default_rate")]
    pub rate: f64,
    /// Where submissions go.
    #[serde(default)]
    pub submit_to: SubmitTo,
    /// The kinds of task submitted, drawn by weight.
    #[serde(default = "default_mix")]
    pub mix: Vec<TaskSpec>,
}

fn default_rate() -> f64 {
    40.0
}

fn default_mix() -> Vec<TaskSpec> {
    vec![TaskSpec {
        kind: "sleep".into(),
        params: serde_json::json!({"ms": 100}),
        weight: 1,
    }]
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        Self {
            rate: default_rate(),
            submit_to: SubmitTo::default(),
            mix: default_mix(),
        }
    }
}

/// Which nodes receive submissions.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SubmitTo {
    /// Every live node in turn, like a load balancer.
    #[default]
    All,
    /// The first node while it answers (the "submitter"), the others when it does not.
    First,
}

/// One kind of task in the mix.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// The task kind.
    pub kind: String,
    /// Its parameters.
    #[serde(default)]
    pub params: Value,
    /// Relative frequency.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// Which node a fault hits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A live node drawn with the run's seed.
    #[default]
    Random,
    /// The first node, the one `submit_to = "first"` sends to.
    Submitter,
    /// The node the previous fault hit.
    Last,
    /// A node by position (0-based).
    #[serde(untagged)]
    Index(usize),
}

/// What a partition cuts a node off from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cut {
    /// Every other node (the node keeps its store).
    Peers,
    /// The store (the node keeps its peers).
    Redis,
}

/// One step of a scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Start the steady workload (the scenario's `workload`).
    Workload,
    /// Stop the steady workload.
    StopWorkload,
    /// Submit `count` tasks at once (batches of up to 100) to the submitter.
    Submit {
        /// How many.
        count: usize,
    },
    /// Do nothing for a while.
    Wait {
        /// Seconds.
        secs: f64,
    },
    /// SIGKILL a node (`docker kill -s KILL`).
    Kill {
        /// Which.
        #[serde(default)]
        target: Target,
    },
    /// SIGTERM a node and wait for it to exit (`docker stop`).
    Terminate {
        /// Which.
        #[serde(default)]
        target: Target,
    },
    /// Start a killed or terminated node again, under the same node id.
    Restart {
        /// Which.
        #[serde(default = "last")]
        target: Target,
    },
    /// SIGSTOP a node (`docker pause`).
    Pause {
        /// Which.
        #[serde(default)]
        target: Target,
    },
    /// SIGCONT a paused node (`docker unpause`).
    Resume {
        /// Which.
        #[serde(default = "last")]
        target: Target,
    },
    /// Cut a node off from its peers or from Redis.
    Partition {
        /// Which.
        #[serde(default)]
        target: Target,
        /// From what.
        from: Cut,
    },
    /// Undo every partition of a node.
    Heal {
        /// Which.
        #[serde(default = "last")]
        target: Target,
    },
    /// Restart Redis (SIGTERM, then start it on the same data).
    RestartRedis,
    /// Grow or shrink the cluster; shrinking terminates the newest nodes (SIGTERM).
    Scale {
        /// The new number of nodes.
        nodes: usize,
    },
    /// Terminate and restart every node, one at a time, waiting for each to rejoin.
    RollingRestart,
    /// Assert that every other live node sees the target down within a time; the time
    /// taken is the detection time.
    AwaitDown {
        /// Which.
        #[serde(default = "last")]
        target: Target,
        /// The limit.
        within_secs: f64,
    },
    /// Assert that every live node sees every other live node up within a time.
    AwaitUp {
        /// The limit.
        within_secs: f64,
    },
    /// Assert that every accepted task is terminal within a time.
    AwaitAllTerminal {
        /// The limit.
        within_secs: f64,
    },
    /// Faults drawn from `faults` with the run's seed for `secs` seconds, one every
    /// `gap_secs` (min, max) seconds, each healed before the next.
    RandomFaults {
        /// How long.
        secs: f64,
        /// Which faults to draw from.
        faults: Vec<FaultKind>,
        /// The pause between faults, drawn in this range.
        #[serde(default = "default_gap")]
        gap_secs: (f64, f64),
    },
}

fn last() -> Target {
    Target::Last
}

fn default_gap() -> (f64, f64) {
    (3.0, 8.0)
}

/// The faults a random schedule draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Kill a node, later restart it.
    Kill,
    /// Pause a node, later resume it.
    Pause,
    /// Cut a node from its peers, later heal.
    PartitionPeers,
    /// Cut a node from Redis, later heal.
    PartitionRedis,
    /// Restart Redis.
    RestartRedis,
    /// Terminate a node, later restart it.
    Terminate,
}

impl Scenario {
    /// Reads a scenario file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses and checks a scenario.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let scenario: Scenario = toml::from_str(text)?;
        scenario.validate()?;
        Ok(scenario)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.nodes == 0 || self.nodes > 9 {
            bail!("nodes must be 1..=9, not {}", self.nodes);
        }
        let w = &self.workload;
        if !(w.rate > 0.0 && w.rate <= 2_000.0) {
            bail!("workload.rate must be in (0, 2000], not {}", w.rate);
        }
        if w.mix.is_empty() || w.mix.iter().all(|t| t.weight == 0) {
            bail!("workload.mix needs at least one task with a weight above 0");
        }
        for step in &self.steps {
            match step {
                Step::Scale { nodes } if *nodes == 0 || *nodes > 9 => {
                    bail!("scale: nodes must be 1..=9, not {nodes}")
                }
                Step::RandomFaults {
                    secs,
                    faults,
                    gap_secs,
                } if *secs <= 0.0 || faults.is_empty() || gap_secs.0 > gap_secs.1 => {
                    bail!("random_faults needs secs > 0, some faults and gap_secs = [min, max]")
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The steps with every `random_faults` expanded from `seed`; `soak_secs` overrides
    /// each random schedule's length.
    pub fn expand(&self, seed: u64, soak_secs: Option<f64>) -> Vec<Step> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out = Vec::new();
        for step in &self.steps {
            let Step::RandomFaults {
                secs,
                faults,
                gap_secs,
            } = step
            else {
                out.push(step.clone());
                continue;
            };
            let total = soak_secs.unwrap_or(*secs);
            let mut elapsed = 0.0;
            while elapsed < total {
                let gap = rng.random_range(gap_secs.0..=gap_secs.1);
                let hold = rng.random_range(gap_secs.0..=gap_secs.1);
                let kind = faults[rng.random_range(0..faults.len())];
                out.push(Step::Wait { secs: gap });
                out.extend(fault_and_heal(kind, hold));
                elapsed += gap + hold;
            }
        }
        out
    }
}

/// A fault of `kind` on a random node, held for `hold` seconds, then healed.
fn fault_and_heal(kind: FaultKind, hold: f64) -> Vec<Step> {
    let target = Target::Random;
    let (fault, heal) = match kind {
        FaultKind::Kill => (Step::Kill { target }, Step::Restart { target: last() }),
        FaultKind::Terminate => (Step::Terminate { target }, Step::Restart { target: last() }),
        FaultKind::Pause => (Step::Pause { target }, Step::Resume { target: last() }),
        FaultKind::PartitionPeers => (
            Step::Partition {
                target,
                from: Cut::Peers,
            },
            Step::Heal { target: last() },
        ),
        FaultKind::PartitionRedis => (
            Step::Partition {
                target,
                from: Cut::Redis,
            },
            Step::Heal { target: last() },
        ),
        FaultKind::RestartRedis => return vec![Step::RestartRedis, Step::Wait { secs: hold }],
    };
    vec![
        fault,
        Step::Wait { secs: hold },
        heal,
        Step::AwaitUp { within_secs: 60.0 },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const KILL: &str = r#"
        name = "kill"
        [workload]
        rate = 50
        mix = [{ kind = "sleep", params = { ms = 50 }, weight = 2 }, { kind = "noop" }]
        [[steps]]
        do = "workload"
        [[steps]]
        do = "kill"
        target = 1
        [[steps]]
        do = "await_down"
        within_secs = 3
    "#;

    #[test]
    fn parses_steps_targets_and_defaults() {
        let s = Scenario::parse(KILL).expect("valid");
        assert_eq!(s.nodes, 3);
        assert_eq!(s.workload.mix.len(), 2);
        assert_eq!(s.workload.mix[1].weight, 1);
        assert_eq!(
            s.steps,
            vec![
                Step::Workload,
                Step::Kill {
                    target: Target::Index(1)
                },
                Step::AwaitDown {
                    target: Target::Last,
                    within_secs: 3.0
                },
            ]
        );
    }

    #[test]
    fn refuses_unknown_steps_fields_and_bad_values() {
        let unknown = KILL.replace("\"kill\"", "\"explode\"");
        assert!(Scenario::parse(&unknown).is_err());
        let typo = KILL.replace("target = 1", "targt = 1");
        assert!(Scenario::parse(&typo).is_err());
        let rate = KILL.replace("rate = 50", "rate = -1");
        assert!(Scenario::parse(&rate).is_err());
        let nodes = format!("nodes = 0\n{KILL}");
        assert!(Scenario::parse(&nodes).is_err());
    }

    #[test]
    fn random_schedules_replay_from_the_seed() {
        let soak = r#"
            name = "soak"
            [[steps]]
            do = "random_faults"
            secs = 60
            faults = ["kill", "pause", "partition_peers", "restart_redis"]
        "#;
        let s = Scenario::parse(soak).expect("valid");
        let a = s.expand(7, None);
        assert_eq!(a, s.expand(7, None), "same seed, same schedule");
        assert_ne!(a, s.expand(8, None), "another seed, another schedule");
        let waited: f64 = a
            .iter()
            .map(|step| match step {
                Step::Wait { secs } => *secs,
                _ => 0.0,
            })
            .sum();
        assert!(
            waited >= 60.0,
            "the schedule lasts the requested time: {waited}"
        );
        let longer = s.expand(7, Some(120.0));
        assert!(longer.len() > a.len());
    }
}
