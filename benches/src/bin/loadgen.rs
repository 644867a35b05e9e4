//! `loadgen`: drives taskmesh nodes over HTTP and reports what it measured.
//!
//! `cargo run --release -p taskmesh-benches --bin loadgen -- --help` lists the flags;
//! `docs/benchmarks.md` shows the runs behind the published figures.

use std::io::Write;

use anyhow::Context;
use clap::Parser;
use taskmesh_benches::cli::Args;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    let report = runtime.block_on(taskmesh_benches::run(&args))?;
    let mut out = std::io::stdout().lock();
    report.print(&mut out)?;
    out.flush()?;
    if let Some(path) = &args.json_out {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
