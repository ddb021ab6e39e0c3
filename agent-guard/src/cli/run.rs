//! `agent-guard run --agent NAME --intent TEXT --grant FILE [--ttl 15m] -- CMD [ARGS...]`
//!
//! Asks the daemon to open a task for this very process (the daemon identifies it by
//! SO_PEERCRED), which tags it in the kernel, then execs CMD: CMD and everything it starts are
//! inside the task, and CMD's exit status is this command's.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context;

use crate::{
    api::{RequestBody, ResponseBody},
    client,
};

#[derive(clap::Args)]
pub struct Args {
    /// Agent identity.
    #[arg(long)]
    agent: String,
    /// What the agent declares it is doing in this task.
    #[arg(long)]
    intent: String,
    /// Grant file (YAML, kind Grant).
    #[arg(long)]
    grant: PathBuf,
    /// Task lifetime (e.g. 90s, 15m); at most the grant's ttl.
    #[arg(long, value_parser = humantime::parse_duration)]
    ttl: Option<Duration>,
    /// Do not print the task id on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// The command to run inside the task.
    #[arg(required = true, last = true)]
    command: Vec<String>,
}

pub fn main(socket: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let grant_yaml = std::fs::read_to_string(&args.grant).with_context(|| format!("grant {}", args.grant.display()))?;
    let grant_source = std::fs::canonicalize(&args.grant).unwrap_or(args.grant.clone()).display().to_string();
    let reply = client::call(
        socket,
        RequestBody::OpenTask {
            agent: args.agent,
            intent: args.intent,
            grant_yaml,
            grant_source,
            ttl_secs: args.ttl.map(|d| d.as_secs().max(1)),
        },
    )?;
    let ResponseBody::TaskOpened { task } = reply else {
        anyhow::bail!("unexpected reply from the daemon: {reply:?}");
    };
    if !args.quiet {
        eprintln!(
            "agent-guard: task {} open (agent {}, grant {}, {} mode, expires {})",
            task.id, task.agent, task.grant, task.mode, task.expires
        );
    }
    let err = std::process::Command::new(&args.command[0]).args(&args.command[1..]).exec();
    // exec returned: CMD could not be started. Exit like a shell does (127 not found, 126 otherwise).
    eprintln!("agent-guard: cannot run {}: {err}", args.command[0]);
    Ok(ExitCode::from(if err.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 }))
}
