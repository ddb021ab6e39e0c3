//! `agent-guard run --agent NAME --intent TEXT --grant FILE [--ttl 15m] -- CMD [ARGS...]`
//! `agent-guard run --profile NAME [--template NAME --var K=V...] --intent TEXT -- CMD...`
//!
//! Asks the daemon to open a task for this very process (the daemon identifies it by
//! `SO_PEERCRED`), which tags it in the kernel, then execs CMD: CMD and everything it starts are
//! inside the task, and CMD's exit status is this command's. Run inside a task, it opens a
//! sub-task, which the daemon grants only if it is a subset of the current one.
//!
//! Where the kernel has no BPF LSM but has Landlock, the daemon answers with a ruleset compiled
//! from the grant, which this command applies to itself (with `no_new_privs`, and the
//! capabilities the grant does not name dropped) before it execs CMD: the `landlock` level.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context;

use crate::{
    api::{RequestBody, ResponseBody},
    client, confine,
};

/// `agent-guard run`.
#[derive(clap::Args)]
pub struct Args {
    /// Agent identity (with --profile, the profile's name).
    #[arg(long, required_unless_present = "profile")]
    agent: Option<String>,
    /// What the agent declares it is doing in this task.
    #[arg(long)]
    intent: String,
    /// Grant file (YAML, kind Grant).
    #[arg(long, required_unless_present = "profile", conflicts_with = "profile")]
    grant: Option<PathBuf>,
    /// AgentProfile of the daemon's policy directory.
    #[arg(long)]
    profile: Option<String>,
    /// GrantTemplate the profile allows, filled in with --var.
    #[arg(long, requires = "profile")]
    template: Option<String>,
    /// A template variable, NAME=VALUE (repeatable).
    #[arg(long = "var", value_parser = parse_var, requires = "template")]
    vars: Vec<(String, String)>,
    /// Task lifetime (e.g. 90s, 15m); at most the grant's ttl.
    #[arg(long, value_parser = humantime::parse_duration)]
    ttl: Option<Duration>,
    /// Do not confine the task with Landlock where BPF LSM is missing: its files and execs are
    /// then at the `kill` level (an out-of-scope open still runs, and the agent is killed).
    #[arg(long)]
    without_landlock: bool,
    /// Do not print the task id on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// The command to run inside the task.
    #[arg(required = true, last = true)]
    command: Vec<String>,
}

/// Where the grant has `ask` rules: the filter that sends the task's opens and execs to the
/// daemon, whose listener the daemon takes (`pidfd_getfd`) before this process closes its own
/// copy. Nothing here may open a file once the filter is in: the call would wait for a
/// supervisor that does not exist yet.
fn hand_over_asks(socket: &Path, ruleset: &crate::api::LandlockRuleset) -> anyhow::Result<()> {
    if !ruleset.hold_asks {
        return Ok(());
    }
    let listener = confine::notify::install_listener()?;
    let listener_fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    client::call(socket, RequestBody::SuperviseTask { listener_fd })
        .context("handing the ask listener to the daemon")?;
    drop(listener);
    Ok(())
}

fn parse_var(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not NAME=VALUE"))
}

pub fn main(socket: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let (grant_yaml, grant_source) = match &args.grant {
        Some(path) => (
            Some(std::fs::read_to_string(path).with_context(|| format!("grant {}", path.display()))?),
            Some(std::fs::canonicalize(path).unwrap_or(path.clone()).display().to_string()),
        ),
        None => (None, None),
    };
    let reply = client::call(
        socket,
        RequestBody::OpenTask {
            agent: args.agent,
            intent: args.intent,
            grant_yaml,
            grant_source,
            profile: args.profile,
            template: args.template,
            vars: args.vars.into_iter().collect(),
            ttl_secs: args.ttl.map(|d| d.as_secs().max(1)),
            landlock_abi: if args.without_landlock { None } else { confine::landlock_abi() },
        },
    )?;
    let ResponseBody::TaskOpened { task, landlock } = reply else {
        anyhow::bail!("unexpected reply from the daemon: {reply:?}");
    };
    if let Some(ruleset) = &landlock
        && let Err(err) =
            confine::apply::apply(ruleset).map_err(anyhow::Error::from).and_then(|()| hand_over_asks(socket, ruleset))
    {
        // The task is open and this process is in it: exiting ends it, with nothing run.
        eprintln!("agent-guard: task {}: cannot confine {} with Landlock: {err:#}", task.id, args.command[0]);
        return Ok(ExitCode::from(126));
    }
    if !args.quiet {
        let parent = task.parent.map(|p| format!(", sub-task of task {p}")).unwrap_or_default();
        eprintln!(
            "agent-guard: task {} open (agent {}, grant {}, {} mode, expires {}{parent}{level})",
            task.id,
            task.agent,
            task.grant,
            task.mode,
            task.expires,
            level = landlock.as_ref().map(|r| format!(", Landlock ABI {}", r.abi)).unwrap_or_default()
        );
    }
    let err = std::process::Command::new(&args.command[0]).args(&args.command[1..]).exec();
    // exec returned: CMD could not be started. Exit like a shell does (127 not found, 126 otherwise).
    eprintln!("agent-guard: cannot run {}: {err}", args.command[0]);
    Ok(ExitCode::from(if err.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 }))
}
