//! [`run`]: one load-generator run, mode by mode, with the node and the generator
//! sampled around it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::cli::{Args, Mode, Verify};
use crate::complete::{self, CompletionPlan};
use crate::http::Target;
use crate::machine::{self, MachineSample, MachineUsage};
use crate::procstat::{self, NodeUsage, ProcSample, SelfUsage};
use crate::report::{CompletionReport, Report, RunConfig, SubmitReport};
use crate::stats::per_second;
use crate::submit::{self, SubmitOutcome, SubmitPlan};
use crate::workload::Workload;
use crate::{kernel_loop, rtt, startup};

/// Runs what `args` asks for and reports it. Call it on a tokio runtime.
pub async fn run(args: &Args) -> anyhow::Result<Report> {
    args.validate()?;
    if let Some(limit) = args.wait_load_below {
        let timeout = Duration::from_secs(args.wait_load_timeout);
        procstat::wait_for_load_below(limit, timeout).await;
    }
    let mut report = Report {
        config: config(args)?,
        started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        load_before: procstat::load_average(),
        load_after: None,
        submit: None,
        completion: None,
        rtt: None,
        kernel_loop: None,
        startup: None,
        nodes: Vec::new(),
        nodes_verify_cpu_s: Vec::new(),
        generator: SelfUsage::default(),
        machine: MachineUsage::default(),
    };
    let nodes = Sampler::start(&args.node_pids)?;
    let me = SelfUsage::now()?;
    let targets = args
        .targets
        .iter()
        .map(|t| {
            let key = args.api_key.as_ref().map(|k| k.0.as_str());
            Target::parse(t)?.with_key(key).map(Arc::new)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let workload = Workload::new(
        &args.kind,
        &args.params,
        args.priority.as_deref(),
        args.batch,
    )?;
    let timeout = Duration::from_millis(args.timeout_ms);
    let mut sampled = false;
    match args.mode {
        Mode::Closed | Mode::Open => {
            sampled = load(args, &mut report, &nodes, &me, targets, workload).await?;
        }
        Mode::Rtt => {
            let iterations = args.iterations();
            let o = rtt::run(
                targets[0].clone(),
                &workload,
                iterations,
                args.warmup,
                timeout,
            );
            report.rtt = Some((&o.await?).into());
        }
        Mode::KernelLoop => {
            let (kind, params) = (args.kind.clone(), args.params.clone());
            let (runs, warmup, threads) = (args.iterations(), args.warmup, args.connections);
            let o = tokio::task::spawn_blocking(move || {
                kernel_loop::run(&kind, &params, runs, warmup, threads)
            });
            report.kernel_loop = Some((&o.await??).into());
        }
        Mode::Startup => {
            report.startup = Some(startup::run(&args.node_bin, &args.node_args, args.runs).await?);
        }
    }
    if !sampled {
        (report.nodes, report.machine) = nodes.usage()?;
        report.generator = SelfUsage::now()?.since(&me);
    }
    report.load_after = procstat::load_average();
    Ok(report)
}

fn config(args: &Args) -> anyhow::Result<RunConfig> {
    let verify = match (args.mode, args.verify) {
        (Mode::Closed | Mode::Open, Verify::None) => "none (submit only)".to_owned(),
        (Mode::Closed | Mode::Open, Verify::All) => "all".to_owned(),
        (Mode::Closed | Mode::Open, Verify::Sample(n)) => format!("sample of {n}"),
        _ => "-".to_owned(),
    };
    Ok(RunConfig {
        mode: args.mode,
        targets: args.targets.clone(),
        connections: args.connections,
        rate: args.rate,
        batch: args.batch,
        kind: args.kind.clone(),
        params: serde_json::from_str(&args.params).context("--params is not JSON")?,
        tasks: args.tasks,
        duration_s: args.duration,
        verify,
        threads: args.threads,
        label: args.label.clone(),
    })
}

/// closed / open: submit, then wait for and verify the tasks. Returns whether it
/// sampled the nodes and the generator itself (it does, before verifying).
async fn load(
    args: &Args,
    report: &mut Report,
    nodes: &Sampler,
    me: &SelfUsage,
    targets: Vec<Arc<Target>>,
    workload: Workload,
) -> anyhow::Result<bool> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let plan = SubmitPlan {
        targets: targets.clone(),
        connections: args.connections,
        workload: Arc::new(workload),
        limit: args.limit(),
        rate: args.rate,
        timeout,
    };
    let sent = submit::run(&plan).await?;
    report.submit = Some(submit_report(&sent));
    if args.verify == Verify::None {
        return Ok(false);
    }
    let completion = CompletionPlan {
        targets,
        connections: args.connections,
        timeout: timeout.max(Duration::from_secs(65)),
        deadline: Instant::now() + Duration::from_secs(args.completion_timeout),
    };
    let (_, seen_done) = complete::wait_for(&completion, &sent.last_ids).await?;
    // The node's and the generator's figures stop here: what follows only reads back.
    (report.nodes, report.machine) = nodes.usage()?;
    report.generator = SelfUsage::now()?.since(me);
    let verify_nodes = Sampler::start(&args.node_pids)?;
    let (tally, verified) =
        complete::verify(&completion, &sent.ids, &sent.last_ids, args.verify).await?;
    report.nodes_verify_cpu_s = verify_nodes.usage()?.0.iter().map(|u| u.cpu_s).collect();
    let accepted = sent.accepted();
    let first_ms = sent
        .first_send_wall
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    let e2e_s = tally
        .last_finished_ms
        .map(|last| ((last as f64 - first_ms) / 1000.0).max(0.001));
    let observed = seen_done - sent.first_send;
    report.completion = Some(CompletionReport {
        method: match args.verify {
            Verify::All => format!("read back all {accepted} accepted tasks"),
            Verify::Sample(n) => format!(
                "read back an evenly spaced sample of {n} of {accepted}, plus each connection's last"
            ),
            Verify::None => "none".into(),
        },
        tally,
        e2e_s,
        e2e_tasks_per_s: e2e_s.map(|s| accepted as f64 / s),
        observed_s: observed.as_secs_f64(),
        observed_tasks_per_s: per_second(accepted, observed),
        verify_s: (verified - seen_done).as_secs_f64(),
    });
    Ok(true)
}

fn submit_report(s: &SubmitOutcome) -> SubmitReport {
    SubmitReport {
        requests: s.requests,
        tasks_sent: s.tasks_sent,
        tasks_accepted: s.accepted(),
        elapsed_s: s.elapsed.as_secs_f64(),
        requests_per_s: per_second(s.requests, s.elapsed),
        accepted_per_s: per_second(s.accepted(), s.elapsed),
        statuses: s.statuses.clone(),
        transport_errors: s.transport_errors.clone(),
        bad_answers: s.bad_answers,
        connects: s.connects,
        latency_us: s.latency.summary(),
        service_time_us: s.service.as_ref().map(|h| h.summary()),
    }
}

/// The first samples of the nodes given by `--node-pid`, and of the machine.
struct Sampler {
    nodes: Vec<(u32, ProcSample)>,
    machine: MachineSample,
}

impl Sampler {
    fn start(pids: &[u32]) -> anyhow::Result<Self> {
        let nodes = pids
            .iter()
            .map(|&pid| {
                procstat::sample(pid)
                    .map(|s| (pid, s))
                    .with_context(|| format!("reading /proc/{pid} (is --node-pid right?)"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            nodes,
            machine: machine::sample(),
        })
    }

    /// The nodes' usage since [`Sampler::start`], and the machine's, listing the
    /// processes other than the nodes and this one.
    fn usage(&self) -> anyhow::Result<(Vec<NodeUsage>, MachineUsage)> {
        let machine = machine::sample();
        let nodes = self
            .nodes
            .iter()
            .map(|(pid, before)| {
                let after = procstat::sample(*pid)
                    .with_context(|| format!("reading /proc/{pid}: did the node exit?"))?;
                Ok(procstat::usage(*pid, before, &after))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut exclude: Vec<u32> = self.nodes.iter().map(|(pid, _)| *pid).collect();
        exclude.push(std::process::id());
        Ok((nodes, machine::usage(&self.machine, &machine, &exclude)))
    }
}
