//! `agent-guard completions SHELL` and `agent-guard man`: shell completions and the man page,
//! generated from the command line's own definition (so they never drift from it).

use std::process::ExitCode;

use clap::CommandFactory;

/// `agent-guard completions`.
#[derive(clap::Args)]
pub struct Args {
    /// The shell to complete for.
    shell: clap_complete::Shell,
}

#[expect(clippy::unnecessary_wraps, reason = "every verb's main has this signature (cli/mod.rs dispatches on it)")]
pub fn completions(args: &Args) -> anyhow::Result<ExitCode> {
    clap_complete::generate(args.shell, &mut super::Cli::command(), "agent-guard", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// The man page (roff), for `man -l -` or /usr/share/man/man8/agent-guard.8.
pub fn man() -> anyhow::Result<ExitCode> {
    clap_mangen::Man::new(super::Cli::command()).section("8").render(&mut std::io::stdout())?;
    Ok(ExitCode::SUCCESS)
}
