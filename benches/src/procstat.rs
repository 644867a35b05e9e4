//! CPU time and memory of a process: the node's from `/proc` (Linux), the generator's
//! own from `getrusage`, and the machine's load average.
//!
//! Per-thread CPU comes from `/proc/PID/task/*/stat` and is grouped by thread name (the
//! kernel keeps 15 bytes of it: `tokio-rt-worker`, `taskmesh-store-`, …): a cheap profile
//! of which threads burn the node's CPU. Each thread's `schedstat` adds how long it was
//! runnable but waiting for a core, which shows when the cores were oversubscribed.
//! Threads that exit between the two samples are missing from the per-thread table but
//! not from the process total.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::time::Duration;

use nix::sys::resource::{UsageWho, getrusage};
use nix::unistd::{SysconfVar, sysconf};
use serde::Serialize;

/// One reading of a process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcSample {
    /// User CPU, in clock ticks.
    pub utime: u64,
    /// System CPU, in clock ticks.
    pub stime: u64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Peak resident set size since the process started, KiB.
    pub hwm_kib: u64,
    /// Per thread.
    pub threads: Vec<ThreadSample>,
}

/// One reading of one thread.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadSample {
    /// Thread id.
    pub tid: u32,
    /// Thread name (`comm`).
    pub name: String,
    /// User + system CPU, in clock ticks.
    pub ticks: u64,
    /// Time spent runnable but waiting for a CPU, in ns (`schedstat`; 0 if unavailable).
    pub wait_ns: u64,
}

/// Reads `/proc/PID/stat`, `/proc/PID/status` and each thread's stat.
pub fn sample(pid: u32) -> io::Result<ProcSample> {
    let (_, utime, stime) = parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat"))?)?;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let mut threads = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/task"))? {
        let entry = entry?;
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // A thread may exit between listing and reading: skip it.
        if let Ok(text) = fs::read_to_string(entry.path().join("stat"))
            && let Ok((name, u, s)) = parse_stat(&text)
        {
            let wait_ns = fs::read_to_string(entry.path().join("schedstat"))
                .ok()
                .and_then(|t| t.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(0);
            threads.push(ThreadSample {
                tid,
                name,
                ticks: u + s,
                wait_ns,
            });
        }
    }
    Ok(ProcSample {
        utime,
        stime,
        rss_kib: status_kib(&status, "VmRSS:").unwrap_or(0),
        hwm_kib: status_kib(&status, "VmHWM:").unwrap_or(0),
        threads,
    })
}

/// (comm, utime, stime) from a `stat` line; comm may hold spaces and parentheses.
pub(crate) fn parse_stat(text: &str) -> io::Result<(String, u64, u64)> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc stat format");
    let open = text.find('(').ok_or_else(bad)?;
    let close = text.rfind(')').ok_or_else(bad)?;
    let name = text.get(open + 1..close).ok_or_else(bad)?.to_owned();
    // Fields after the name start at field 3 (state); utime and stime are fields 14, 15.
    let mut rest = text.get(close + 1..).ok_or_else(bad)?.split_whitespace();
    let utime = rest.nth(11).and_then(|f| f.parse().ok()).ok_or_else(bad)?;
    let stime = rest.next().and_then(|f| f.parse().ok()).ok_or_else(bad)?;
    Ok((name, utime, stime))
}

/// The value in KiB of a `Name:   123 kB` line of `/proc/PID/status`.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn clock_ticks() -> u64 {
    sysconf(SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// CPU seconds of `ticks` clock ticks.
pub(crate) fn seconds(ticks: u64) -> f64 {
    ticks as f64 / clock_ticks() as f64
}

/// A node's CPU time and memory between two samples.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NodeUsage {
    /// The node's process id.
    pub pid: u32,
    /// User + system CPU seconds between the samples.
    pub cpu_s: f64,
    /// User CPU seconds.
    pub user_s: f64,
    /// System CPU seconds.
    pub sys_s: f64,
    /// RSS at the first sample, KiB.
    pub rss_before_kib: u64,
    /// RSS at the second sample, KiB.
    pub rss_after_kib: u64,
    /// Peak RSS since the node started (VmHWM), KiB.
    pub hwm_kib: u64,
    /// CPU seconds by thread name, busiest first.
    pub threads: Vec<ThreadUsage>,
}

/// CPU of the threads sharing a name.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ThreadUsage {
    /// Thread name (`comm`, at most 15 bytes).
    pub name: String,
    /// Threads with this name alive at the second sample.
    pub count: usize,
    /// Their CPU seconds between the samples.
    pub cpu_s: f64,
    /// Seconds they were runnable but waiting for a CPU (from `schedstat`): high values
    /// mean the cores were oversubscribed.
    pub runqueue_wait_s: f64,
}

/// The usage between `before` and `after` of process `pid`.
pub fn usage(pid: u32, before: &ProcSample, after: &ProcSample) -> NodeUsage {
    let earlier: BTreeMap<u32, &ThreadSample> = before.threads.iter().map(|t| (t.tid, t)).collect();
    let mut by_name: BTreeMap<&str, (usize, u64, u64)> = BTreeMap::new();
    for t in &after.threads {
        let (ticks, wait) = earlier.get(&t.tid).map_or((0, 0), |e| (e.ticks, e.wait_ns));
        let entry = by_name.entry(&t.name).or_default();
        entry.0 += 1;
        entry.1 += t.ticks.saturating_sub(ticks);
        entry.2 += t.wait_ns.saturating_sub(wait);
    }
    let mut threads: Vec<ThreadUsage> = by_name
        .into_iter()
        .map(|(name, (count, ticks, wait_ns))| ThreadUsage {
            name: name.to_owned(),
            count,
            cpu_s: seconds(ticks),
            runqueue_wait_s: wait_ns as f64 / 1e9,
        })
        .collect();
    threads.sort_by(|a, b| b.cpu_s.total_cmp(&a.cpu_s));
    let user = after.utime.saturating_sub(before.utime);
    let sys = after.stime.saturating_sub(before.stime);
    NodeUsage {
        pid,
        cpu_s: seconds(user + sys),
        user_s: seconds(user),
        sys_s: seconds(sys),
        rss_before_kib: before.rss_kib,
        rss_after_kib: after.rss_kib,
        hwm_kib: after.hwm_kib,
        threads,
    }
}

/// The generator's own resource use (`getrusage(RUSAGE_SELF)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct SelfUsage {
    /// User + system CPU seconds.
    pub cpu_s: f64,
    /// User CPU seconds.
    pub user_s: f64,
    /// System CPU seconds.
    pub sys_s: f64,
    /// Peak RSS, KiB.
    pub max_rss_kib: u64,
}

impl SelfUsage {
    /// Now, since the process started.
    pub fn now() -> anyhow::Result<Self> {
        let u = getrusage(UsageWho::RUSAGE_SELF)?;
        let secs = |t: nix::sys::time::TimeVal| {
            Duration::new(
                u64::try_from(t.tv_sec()).unwrap_or(0),
                u32::try_from(t.tv_usec()).unwrap_or(0) * 1000,
            )
            .as_secs_f64()
        };
        let (user_s, sys_s) = (secs(u.user_time()), secs(u.system_time()));
        Ok(Self {
            cpu_s: user_s + sys_s,
            user_s,
            sys_s,
            max_rss_kib: u64::try_from(u.max_rss()).unwrap_or(0),
        })
    }

    /// The CPU spent since `earlier` (the peak RSS stays the process's).
    pub fn since(&self, earlier: &SelfUsage) -> SelfUsage {
        SelfUsage {
            cpu_s: self.cpu_s - earlier.cpu_s,
            user_s: self.user_s - earlier.user_s,
            sys_s: self.sys_s - earlier.sys_s,
            max_rss_kib: self.max_rss_kib,
        }
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> Option<[f64; 3]> {
    let text = fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

/// Waits until the 1-minute load average is below `limit`, checking every 5 s, for at
/// most `timeout`. Returns the load average seen last.
pub async fn wait_for_load_below(limit: f64, timeout: Duration) -> Option<[f64; 3]> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let load = load_average();
        let low = load.is_some_and(|l| l[0] < limit);
        if low || load.is_none() || tokio::time::Instant::now() >= deadline {
            return load;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let line = "42 (tokio (rt) w) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(
            parse_stat(line).expect("parses"),
            ("tokio (rt) w".into(), 250, 75)
        );
        assert!(parse_stat("garbage").is_err());
    }

    #[test]
    fn status_values_are_read_in_kib() {
        let status = "Name:\ttaskmesh\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(10_240));
        assert_eq!(status_kib(status, "VmHWM:"), Some(20_480));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let pid = std::process::id();
        let before = sample(pid).expect("sample");
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = sample(pid).expect("sample");
        let u = usage(pid, &before, &after);
        assert!(u.rss_after_kib > 0 && u.hwm_kib >= u.rss_after_kib);
        assert!(!u.threads.is_empty());
        assert!(SelfUsage::now().expect("rusage").cpu_s > 0.0);
        assert!(load_average().is_some());
    }

    #[test]
    fn usage_groups_threads_by_name() {
        let thread = |tid, name: &str, ticks, wait_ns| ThreadSample {
            tid,
            name: name.into(),
            ticks,
            wait_ns,
        };
        let before = ProcSample {
            utime: 100,
            threads: vec![thread(1, "a", 10, 0), thread(2, "b", 0, 0)],
            ..ProcSample::default()
        };
        let after = ProcSample {
            utime: 300,
            stime: 100,
            threads: vec![
                thread(1, "a", 110, 500_000_000),
                thread(2, "b", 50, 0),
                thread(3, "b", 50, 0),
            ],
            ..ProcSample::default()
        };
        let u = usage(7, &before, &after);
        let ticks = clock_ticks() as f64;
        assert!((u.cpu_s - 300.0 / ticks).abs() < 1e-9);
        assert_eq!(u.threads[0].name, "a");
        assert!((u.threads[0].runqueue_wait_s - 0.5).abs() < 1e-9);
        assert_eq!(u.threads[1].count, 2);
        assert!((u.threads[1].cpu_s - 100.0 / ticks).abs() < 1e-9);
    }
}
