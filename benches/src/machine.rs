//! The whole machine during a run: how busy the cores were (`/proc/stat`), and which
//! other processes used CPU meanwhile (every `/proc/PID/stat`).
//!
//! The node and the generator share the cores with the kernel's own workers (loopback
//! TCP, the filesystem's writeback after each fsync) and with anything else running;
//! this shows them, so a figure taken on a busy machine can be recognised as such.

use std::collections::BTreeMap;
use std::fs;

use serde::Serialize;

use crate::procstat::{parse_stat, seconds};

/// How many other processes the report lists.
const OTHERS: usize = 6;

/// One reading of the machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineSample {
    /// The `cpu` line of `/proc/stat`: user, nice, system, idle, iowait, irq, softirq,
    /// steal, in clock ticks summed over the cores.
    cpu: [u64; 8],
    /// CPU ticks (user + system) of every process, with its name.
    procs: BTreeMap<u32, (String, u64)>,
}

/// Reads `/proc/stat` and every process's `stat`; a process that exits meanwhile is
/// skipped.
pub fn sample() -> MachineSample {
    let mut cpu = [0; 8];
    if let Ok(stat) = fs::read_to_string("/proc/stat")
        && let Some(line) = stat.lines().find(|l| l.starts_with("cpu "))
    {
        for (slot, field) in cpu.iter_mut().zip(line.split_whitespace().skip(1)) {
            *slot = field.parse().unwrap_or(0);
        }
    }
    let mut procs = BTreeMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Ok(text) = fs::read_to_string(entry.path().join("stat"))
                && let Ok((name, u, s)) = parse_stat(&text)
            {
                procs.insert(pid, (name, u + s));
            }
        }
    }
    MachineSample { cpu, procs }
}

/// The machine between two samples.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MachineUsage {
    /// Cores in the machine.
    pub cores: usize,
    /// Average cores busy (everything but idle and iowait).
    pub busy_cores: f64,
    /// Shares of all CPU time, in percent.
    pub user_pct: f64,
    /// System (kernel on behalf of processes).
    pub system_pct: f64,
    /// Software interrupts (e.g. loopback TCP delivery).
    pub softirq_pct: f64,
    /// Idle while waiting for I/O (fsync).
    pub iowait_pct: f64,
    /// Idle.
    pub idle_pct: f64,
    /// Taken by the hypervisor.
    pub steal_pct: f64,
    /// The busiest processes other than the node(s) and the generator.
    pub others: Vec<ProcessUsage>,
}

/// CPU of one process between two samples.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProcessUsage {
    /// Process id.
    pub pid: u32,
    /// Its name (`comm`; kernel workers show what they work on).
    pub name: String,
    /// CPU seconds.
    pub cpu_s: f64,
}

/// The usage between `before` and `after`, listing other processes except `exclude`.
pub fn usage(before: &MachineSample, after: &MachineSample, exclude: &[u32]) -> MachineUsage {
    let delta: Vec<f64> = after
        .cpu
        .iter()
        .zip(before.cpu)
        .map(|(a, b)| a.saturating_sub(b) as f64)
        .collect();
    let total: f64 = delta.iter().sum::<f64>().max(1.0);
    let pct = |i: usize| 100.0 * delta[i] / total;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut others: Vec<ProcessUsage> = after
        .procs
        .iter()
        .filter(|(pid, _)| !exclude.contains(pid))
        .filter_map(|(&pid, (name, ticks))| {
            let earlier = before.procs.get(&pid).map_or(0, |(_, t)| *t);
            let spent = ticks.saturating_sub(earlier);
            (spent > 0).then(|| ProcessUsage {
                pid,
                name: name.clone(),
                cpu_s: seconds(spent),
            })
        })
        .collect();
    others.sort_by(|a, b| b.cpu_s.total_cmp(&a.cpu_s));
    others.truncate(OTHERS);
    MachineUsage {
        cores,
        busy_cores: cores as f64 * (100.0 - pct(3) - pct(4)) / 100.0,
        user_pct: pct(0) + pct(1),
        system_pct: pct(2),
        softirq_pct: pct(5) + pct(6),
        iowait_pct: pct(4),
        idle_pct: pct(3),
        steal_pct: pct(7),
        others,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_excluded_processes_are_left_out() {
        let before = MachineSample {
            cpu: [100, 0, 50, 800, 50, 0, 0, 0],
            procs: BTreeMap::from([(1, ("node".into(), 10)), (2, ("kworker".into(), 5))]),
        };
        let after = MachineSample {
            cpu: [200, 0, 100, 1000, 100, 0, 0, 0],
            procs: BTreeMap::from([
                (1, ("node".into(), 60)),
                (2, ("kworker".into(), 25)),
                (3, ("idle".into(), 0)),
            ]),
        };
        let u = usage(&before, &after, &[1]);
        let sum = u.user_pct + u.system_pct + u.softirq_pct + u.iowait_pct + u.idle_pct;
        assert!((sum - 100.0).abs() < 1e-9, "{u:?}");
        assert!((u.user_pct - 25.0).abs() < 1e-9);
        assert_eq!(u.others.len(), 1);
        assert_eq!(u.others[0].name, "kworker");
    }

    #[test]
    fn this_machine_can_be_sampled() {
        let s = sample();
        assert!(s.cpu.iter().sum::<u64>() > 0);
        assert!(s.procs.contains_key(&std::process::id()));
    }
}
