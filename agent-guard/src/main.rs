//! agent-guard: kernel-enforced, task-scoped access boundaries for AI agents.
//! One executable: the daemon and the CLI verbs that talk to it.

mod api;
mod audit;
mod cli;
mod client;
mod daemon;
mod grant;
mod policy;

use clap::Parser;

// The daemon's event pipeline allocates per event on several threads: glibc's arenas took a
// sixth of its time in malloc and its lock (perf, BENCHMARKS.md); mimalloc keeps per-thread heaps.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("agent-guard: {err:#}");
            std::process::ExitCode::from(1)
        }
    }
}
