//! The `taskmesh` binary: the node with the built-in task kinds, run from the command
//! line until SIGINT/SIGTERM. A program of one's own with extra kinds is the same line
//! with `.kind(…)` calls (`node/examples/custom_kernel.rs`).

// Profiling showed glibc malloc's arena locks contended between the runtime threads and
// the store's committer thread; mimalloc's thread-local heaps avoid that (+31 % no-op
// tasks/s, docs/benchmarks.md). Built with `no_thp`: with transparent huge pages its
// arenas made an idle node 20 MB instead of 9 MB.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    taskmesh_node::Node::new().run_cli()
}
