//! agent-guard: kernel-enforced, task-scoped access boundaries for AI agents.
//! One executable: the daemon and the CLI verbs that talk to it.

mod api;
mod audit;
mod cli;
mod client;
mod confine;
mod daemon;
mod grant;
mod mcp;
mod policy;
mod text;

use clap::Parser;

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
