//! The report of a run: what was asked, what was measured, and the conditions (load
//! average, the node's and the generator's CPU time). Printed as a table, written as
//! JSON.

use std::io::{self, Write};

use serde::Serialize;

use crate::cli::Mode;
use crate::complete::Tally;
use crate::kernel_loop::KernelLoopReport;
use crate::machine::MachineUsage;
use crate::procstat::{NodeUsage, SelfUsage};
use crate::rtt::RttReport;
use crate::startup::StartupReport;
use crate::stats::{Counts, Percentiles};

/// Everything a run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The run's settings.
    pub config: RunConfig,
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
    /// Load average (1, 5, 15 min) when the run started.
    pub load_before: Option<[f64; 3]>,
    /// Load average when it ended.
    pub load_after: Option<[f64; 3]>,
    /// closed / open: the submit phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submit: Option<SubmitReport>,
    /// closed / open: the completion phase (absent with `--verify none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion: Option<CompletionReport>,
    /// rtt figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt: Option<RttReport>,
    /// kernel-loop figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_loop: Option<KernelLoopReport>,
    /// startup figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup: Option<StartupReport>,
    /// Each sampled node (`--node-pid`), from the start until the tasks were seen
    /// complete (or the submit phase ended, with `--verify none`).
    pub nodes: Vec<NodeUsage>,
    /// Node CPU seconds spent answering the verification reads, per sampled node.
    pub nodes_verify_cpu_s: Vec<f64>,
    /// The generator itself over the same interval as `nodes`.
    pub generator: SelfUsage,
    /// The whole machine over the same interval as `nodes`.
    pub machine: MachineUsage,
}

/// The settings a run was started with.
#[derive(Clone, Debug, Serialize)]
pub struct RunConfig {
    /// Mode.
    pub mode: Mode,
    /// Node URLs.
    pub targets: Vec<String>,
    /// Connections (kernel-loop: threads).
    pub connections: usize,
    /// Open loop: requests per second.
    pub rate: Option<f64>,
    /// Tasks per request.
    pub batch: usize,
    /// Task kind.
    pub kind: String,
    /// Kernel params.
    pub params: serde_json::Value,
    /// `--tasks`, if given.
    pub tasks: Option<u64>,
    /// `--duration`, if given.
    pub duration_s: Option<f64>,
    /// How accepted tasks were checked.
    pub verify: String,
    /// The generator's runtime threads.
    pub threads: usize,
    /// `--label`.
    pub label: Option<String>,
}

/// The submit phase in figures.
#[derive(Debug, Serialize)]
pub struct SubmitReport {
    /// Requests sent.
    pub requests: u64,
    /// Tasks in them.
    pub tasks_sent: u64,
    /// Tasks accepted (202).
    pub tasks_accepted: u64,
    /// First send to last answer.
    pub elapsed_s: f64,
    /// Requests answered per second (any status).
    pub requests_per_s: f64,
    /// Tasks accepted per second.
    pub accepted_per_s: f64,
    /// Answers by status.
    pub statuses: Counts,
    /// Requests with no answer, by kind.
    pub transport_errors: Counts,
    /// 202 answers without readable ids.
    pub bad_answers: u64,
    /// TCP connections opened.
    pub connects: u64,
    /// Request latency (open loop: from the due time).
    pub latency_us: Percentiles,
    /// Open loop: from the actual send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_time_us: Option<Percentiles>,
}

/// The completion phase in figures.
#[derive(Debug, Serialize)]
pub struct CompletionReport {
    /// How the tasks were checked.
    pub method: String,
    /// What the reads found.
    pub tally: Tally,
    /// First submission until the last `finished_at` (node clock, ms resolution).
    pub e2e_s: Option<f64>,
    /// Accepted tasks / `e2e_s`.
    pub e2e_tasks_per_s: Option<f64>,
    /// First submission until the generator saw each connection's last task terminal.
    pub observed_s: f64,
    /// Accepted tasks / `observed_s`.
    pub observed_tasks_per_s: f64,
    /// Time spent reading tasks back (not part of either figure).
    pub verify_s: f64,
}

impl Report {
    /// Prints the report as a table.
    pub fn print(&self, out: &mut impl Write) -> io::Result<()> {
        let c = &self.config;
        writeln!(
            out,
            "taskmesh loadgen — {:?} mode, {}",
            c.mode, self.started_at
        )?;
        if let Some(label) = &c.label {
            writeln!(out, "  label           {label}")?;
        }
        writeln!(out, "  targets         {}", c.targets.join(", "))?;
        writeln!(
            out,
            "  workload        kind={} params={} batch={} connections={}{}",
            c.kind,
            c.params,
            c.batch,
            c.connections,
            c.rate.map_or(String::new(), |r| format!(" rate={r}/s"))
        )?;
        writeln!(
            out,
            "  load average    before {} / after {}",
            fmt_load(self.load_before),
            fmt_load(self.load_after)
        )?;
        if let Some(s) = &self.submit {
            writeln!(out, "submit")?;
            writeln!(
                out,
                "  requests        {} in {:.3} s = {:.0} req/s; {} tasks sent, {} accepted = {:.0} tasks/s",
                s.requests,
                s.elapsed_s,
                s.requests_per_s,
                s.tasks_sent,
                s.tasks_accepted,
                s.accepted_per_s
            )?;
            writeln!(
                out,
                "  statuses        {}; transport errors: {}; bad answers: {}; connections opened: {}",
                s.statuses.describe(),
                s.transport_errors.describe(),
                s.bad_answers,
                s.connects
            )?;
            let name = if s.service_time_us.is_some() {
                "latency (due)"
            } else {
                "latency"
            };
            print_percentiles(out, name, &s.latency_us)?;
            if let Some(p) = &s.service_time_us {
                print_percentiles(out, "service time", p)?;
            }
        }
        if let Some(done) = &self.completion {
            let t = &done.tally;
            writeln!(out, "completion ({})", done.method)?;
            writeln!(
                out,
                "  checked         {}: succeeded {}, failed {}, cancelled {}, unfinished {}, not found {}, errors {}",
                t.checked, t.succeeded, t.failed, t.cancelled, t.unfinished, t.not_found, t.errors
            )?;
            match (done.e2e_s, done.e2e_tasks_per_s) {
                (Some(s), Some(rate)) => writeln!(
                    out,
                    "  end to end      {s:.3} s = {rate:.0} tasks/s (first submit → last finished_at)"
                )?,
                _ => writeln!(out, "  end to end      n/a (no finished_at read)")?,
            }
            writeln!(
                out,
                "  observed        {:.3} s = {:.0} tasks/s (first submit → seen complete); verify took {:.3} s",
                done.observed_s, done.observed_tasks_per_s, done.verify_s
            )?;
        }
        if let Some(r) = &self.rtt {
            writeln!(out, "round trip (submit → terminal, one at a time)")?;
            print_percentiles(out, "round trip", &r.round_trip_us)?;
            print_percentiles(out, "  submit", &r.submit_us)?;
            print_percentiles(out, "  wait", &r.wait_us)?;
            writeln!(
                out,
                "  not terminal    {}; errors: {}",
                r.not_terminal,
                r.errors.describe()
            )?;
        }
        if let Some(k) = &self.kernel_loop {
            writeln!(out, "kernel loop (in process, no node)")?;
            writeln!(
                out,
                "  runs            {} on {} thread(s) in {:.3} s = {:.2} runs/s; errors {}",
                k.runs, k.threads, k.elapsed_s, k.runs_per_s, k.errors
            )?;
            print_percentiles(out, "run time", &k.latency_us)?;
        }
        if let Some(s) = &self.startup {
            writeln!(out, "startup ({} runs)", s.runs)?;
            print_percentiles(out, "spawn → ready", &s.ready_us)?;
            writeln!(out, "  idle RSS KiB    {:?}", s.idle_rss_kib)?;
        }
        for (i, n) in self.nodes.iter().enumerate() {
            writeln!(
                out,
                "node pid {}      cpu {:.2} s (user {:.2}, sys {:.2}); verify reads {:.2} s; RSS {} → {} KiB, peak {} KiB",
                n.pid,
                n.cpu_s,
                n.user_s,
                n.sys_s,
                self.nodes_verify_cpu_s.get(i).copied().unwrap_or(0.0),
                n.rss_before_kib,
                n.rss_after_kib,
                n.hwm_kib
            )?;
            let threads: Vec<String> = n
                .threads
                .iter()
                .filter(|t| t.cpu_s > 0.0)
                .map(|t| {
                    format!(
                        "{}×{} {:.2}s (waited for a core {:.2}s)",
                        t.name, t.count, t.cpu_s, t.runqueue_wait_s
                    )
                })
                .collect();
            writeln!(out, "  threads         {}", threads.join(", "))?;
        }
        let g = &self.generator;
        writeln!(
            out,
            "generator       cpu {:.2} s (user {:.2}, sys {:.2}), peak RSS {} KiB — shares the machine with the node",
            g.cpu_s, g.user_s, g.sys_s, g.max_rss_kib
        )?;
        let m = &self.machine;
        writeln!(
            out,
            "machine         {:.2} of {} cores busy (user {:.1}%, system {:.1}%, irq+softirq {:.1}%, iowait {:.1}%, idle {:.1}%, steal {:.1}%)",
            m.busy_cores,
            m.cores,
            m.user_pct,
            m.system_pct,
            m.softirq_pct,
            m.iowait_pct,
            m.idle_pct,
            m.steal_pct
        )?;
        let others: Vec<String> = m
            .others
            .iter()
            .map(|p| format!("{} {:.2}s", p.name, p.cpu_s))
            .collect();
        writeln!(out, "  other procs     {}", others.join(", "))
    }
}

fn fmt_load(load: Option<[f64; 3]>) -> String {
    load.map_or("n/a".into(), |l| {
        format!("{:.2} {:.2} {:.2}", l[0], l[1], l[2])
    })
}

fn print_percentiles(out: &mut impl Write, name: &str, p: &Percentiles) -> io::Result<()> {
    writeln!(
        out,
        "  {name:<15} n={} p50 {} p90 {} p99 {} p99.9 {} max {} (mean {})",
        p.count,
        fmt_us(p.p50_us as f64),
        fmt_us(p.p90_us as f64),
        fmt_us(p.p99_us as f64),
        fmt_us(p.p999_us as f64),
        fmt_us(p.max_us as f64),
        fmt_us(p.mean_us)
    )
}

/// Microseconds as µs below 1 ms, ms below 10 s, s above.
fn fmt_us(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.0}µs")
    } else if us < 10_000_000.0 {
        format!("{:.2}ms", us / 1_000.0)
    } else {
        format!("{:.2}s", us / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_pick_a_readable_unit() {
        assert_eq!(fmt_us(850.0), "850µs");
        assert_eq!(fmt_us(12_340.0), "12.34ms");
        assert_eq!(fmt_us(12_500_000.0), "12.50s");
        assert_eq!(fmt_load(None), "n/a");
    }
}
