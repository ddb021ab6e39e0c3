//! `agent-guard task list` and `agent-guard task stop ID`

use std::{path::Path, process::ExitCode};

use crate::text::printable;

use crate::{
    api::{RequestBody, ResponseBody, TaskInfo},
    client,
};

/// `agent-guard task`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// List tasks (open and ended since the daemon started).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Every task the audit store holds, finished ones of earlier daemon runs included
        /// (read from the store: works with the daemon down).
        #[arg(long)]
        all: bool,
        /// The audit store, for --all.
        #[arg(long, env = "AGENT_GUARD_AUDIT_STORE", default_value = crate::audit::DEFAULT_STORE)]
        store: std::path::PathBuf,
    },
    /// Stop a task: revoke its grant in the kernel and kill its processes.
    Stop { id: u32 },
    /// Show one task: time left, and reported actions by decision and rule.
    Show {
        id: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn print_table(tasks: &[TaskInfo]) {
    println!(
        "{:<5} {:<16} {:<8} {:<20} {:<8} {:>5}  {:<27} INTENT",
        "ID", "AGENT", "STATE", "GRANT", "MODE", "PROCS", "EXPIRES"
    );
    for t in tasks {
        let state = crate::api::wire_name(&t.state);
        // Names and intents are the agents' (checked printable by the daemon, escaped here too:
        // a store or daemon of another version may hold anything).
        println!(
            "{:<5} {:<16} {:<8} {:<20} {:<8} {:>5}  {:<27} {}",
            t.id,
            printable(&t.agent),
            state,
            printable(&t.grant),
            t.mode,
            t.live_processes,
            t.expires,
            printable(&t.intent)
        );
    }
}

pub fn main(socket: &Path, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::List { json, all: true, store } => {
            let tasks = crate::audit::Store::open_read_only(&store)?.tasks()?;
            super::audit::print_tasks(&tasks, json)?;
        }
        Command::List { json, .. } => {
            let ResponseBody::Tasks { tasks } = client::call(socket, RequestBody::ListTasks)? else {
                anyhow::bail!("unexpected reply from the daemon");
            };
            if json {
                println!("{}", crate::text::json_safe(serde_json::to_string_pretty(&tasks)?));
            } else {
                print_table(&tasks);
            }
        }
        Command::Show { id, json } => {
            let ResponseBody::Tasks { tasks } = client::call(socket, RequestBody::ListTasks)? else {
                anyhow::bail!("unexpected reply from the daemon");
            };
            let task = tasks.into_iter().find(|t| t.id == id).ok_or_else(|| anyhow::anyhow!("no task {id}"))?;
            if json {
                println!("{}", crate::text::json_safe(serde_json::to_string_pretty(&task)?));
            } else {
                let (agent, grant) = (printable(&task.agent), printable(&task.grant));
                println!("task {} — agent {agent}, grant {grant} ({} mode)", task.id, task.mode);
                println!("intent     {}", printable(&task.intent));
                if let Some(step) = &task.step_intent {
                    println!("step       {}", printable(step));
                }
                println!("state      {:?}{}", task.state, if task.revoked { ", grant revoked" } else { "" });
                println!("started    {}", task.started);
                println!("expires    {} ({} s left)", task.expires, task.remaining_secs);
                println!("processes  {}", task.live_processes);
                for (what, count) in &task.counts {
                    // "decision rule": a grant's rule names the agent's paths.
                    println!("  {count:>6}  {}", crate::text::printable(what));
                }
            }
        }
        Command::Stop { id } => {
            let ResponseBody::TaskStopped { task } = client::call(socket, RequestBody::StopTask { id })? else {
                anyhow::bail!("unexpected reply from the daemon");
            };
            println!("task {} stopped: grant revoked in the kernel, processes killed", task.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}
