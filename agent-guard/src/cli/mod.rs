//! Command-line verbs, one module each.
// The doc comments of clap types are the CLI's help text, printed as written.
#![allow(clippy::doc_markdown, reason = "doc comments here are --help text, not rustdoc")]

mod approval;
mod audit;
mod completions;
mod config;
mod daemon;
mod events;
mod grant;
mod intent;
mod mcp;
mod policy;
mod preflight;
mod report;
mod request;
mod run;
mod status;
mod task;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::api::DEFAULT_SOCKET;

/// The command line.
#[derive(Parser)]
#[command(name = "agent-guard", version, about = "Kernel-enforced, task-scoped access boundaries for AI agents")]
pub struct Cli {
    /// The daemon's API socket.
    #[arg(long, global = true, env = "AGENT_GUARD_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the guard: load the kernel programs, serve the API, write events.
    Daemon(daemon::Args),
    /// Open a task for an agent and run CMD inside it.
    Run(run::Args),
    /// List or stop tasks.
    Task {
        #[command(subcommand)]
        command: task::Command,
    },
    /// Show the daemon's enforcement levels and counters.
    Status(status::Args),
    /// Revoke or extend a running task's grant.
    Grant {
        #[command(subcommand)]
        command: grant::Command,
    },
    /// Check the daemon's config file, offline (no daemon needed).
    Config {
        #[command(subcommand)]
        command: config::Command,
    },
    /// Check grant files, or print their JSON Schema (no daemon needed).
    Policy {
        #[command(subcommand)]
        command: policy::Command,
    },
    /// The event format: print the JSON Schema of event lines (no daemon needed).
    Events {
        #[command(subcommand)]
        command: events::Command,
    },
    /// Inside a task: declare the step the agent is taking (carried by the task's next events).
    Intent(intent::Args),
    /// Inside a task: ask for more access for a while, with a reason; approvers the profile
    /// names decide (or `--show` the grant in force and what may be requested).
    Request(request::Args),
    /// Inside a task: serve the Model Context Protocol on stdin/stdout (tools get_grant,
    /// declare_intent, request_access, list_requests) for the agent's framework.
    Mcp(mcp::Args),
    /// Let an action held by an `ask` rule continue, or approve an access request.
    Approve(approval::Approve),
    /// Refuse an action held by an `ask` rule (it fails with EPERM), or an access request.
    Deny(approval::Deny),
    /// List held actions and access requests, and their decisions.
    Approvals(approval::List),
    /// Which enforcement level each capability would get on this machine, and why (no daemon
    /// needed, nothing changed).
    Preflight(preflight::Args),
    /// Query the audit store's events, or list its tasks (no daemon needed).
    Audit(audit::Args),
    /// A task's evidence report from the audit store: Markdown, JSON or HTML (no daemon needed).
    Report(report::Args),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions(completions::Args),
    /// Print the man page (roff).
    Man,
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if !matches!(cli.command, Command::Daemon(_) | Command::Run(_)) {
        // Rust starts with SIGPIPE ignored, so a verb whose output is piped into `head` would
        // panic on the closed pipe; like any Unix tool it should just end.
        // SAFETY: setting a signal's disposition to its default has no preconditions.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match cli.command {
        Command::Daemon(args) => daemon::main(&cli.socket, args),
        Command::Run(args) => run::main(&cli.socket, args),
        Command::Task { command } => task::main(&cli.socket, command),
        Command::Status(args) => status::main(&cli.socket, &args),
        Command::Config { command } => config::main(&command),
        Command::Policy { command } => policy::main(command),
        Command::Events { command } => events::main(&command),
        Command::Grant { command } => grant::main(&cli.socket, &command),
        Command::Intent(args) => intent::main(&cli.socket, args),
        Command::Request(args) => request::main(&cli.socket, args),
        Command::Mcp(args) => mcp::main(&cli.socket, args),
        Command::Approve(args) => approval::approve(&cli.socket, &args),
        Command::Deny(args) => approval::deny(&cli.socket, &args),
        Command::Approvals(args) => approval::list(&cli.socket, &args),
        Command::Preflight(args) => preflight::main(&args),
        Command::Audit(args) => audit::main(args),
        Command::Report(args) => report::main(&args),
        Command::Completions(args) => completions::completions(&args),
        Command::Man => completions::man(),
    }
}
