//! `agent-guard approve ID [--for 10m]`, `agent-guard deny ID`, `agent-guard approvals`:
//! decide actions that `ask` rules hold in the kernel.

use crate::text::printable;
use std::{path::Path, process::ExitCode, time::Duration};

use crate::{
    api::{RequestBody, ResponseBody},
    client,
};

/// `agent-guard approve`.
#[derive(clap::Args)]
pub struct Approve {
    /// The approval id (from the approval.request event or `agent-guard approvals`).
    id: u32,
    /// Also allow the same path and access to the task for this long, without asking again.
    #[arg(long = "for", value_parser = humantime::parse_duration)]
    allow_for: Option<Duration>,
}

/// `agent-guard deny`.
#[derive(clap::Args)]
pub struct Deny {
    id: u32,
}

/// `agent-guard approvals`.
#[derive(clap::Args)]
pub struct List {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn decided(reply: ResponseBody) -> anyhow::Result<ExitCode> {
    let ResponseBody::Approval { approval } = reply else {
        anyhow::bail!("unexpected reply from the daemon");
    };
    println!(
        "approval {}: {} {} {} for task {} ({})",
        approval.id,
        approval.state,
        approval.object,
        printable(&approval.path),
        approval.task,
        printable(&approval.agent)
    );
    Ok(ExitCode::SUCCESS)
}

pub fn approve(socket: &Path, args: &Approve) -> anyhow::Result<ExitCode> {
    decided(client::call(
        socket,
        RequestBody::Approve { id: args.id, for_secs: args.allow_for.map(|d| d.as_secs().max(1)) },
    )?)
}

pub fn deny(socket: &Path, args: &Deny) -> anyhow::Result<ExitCode> {
    decided(client::call(socket, RequestBody::Deny { id: args.id })?)
}

pub fn list(socket: &Path, args: &List) -> anyhow::Result<ExitCode> {
    let approvals = client::approvals(socket)?;
    if args.json {
        println!("{}", crate::text::json_safe(serde_json::to_string_pretty(&approvals)?));
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<5} {:<10} {:<6} {:<16} {:<6} {:<28} PATH", "ID", "STATE", "TASK", "AGENT", "PID", "DEADLINE");
    for a in approvals {
        println!(
            "{:<5} {:<10} {:<6} {:<16} {:<6} {:<28} {} {} ({})",
            a.id,
            a.state,
            a.task,
            printable(&a.agent),
            a.pid,
            a.deadline,
            a.object,
            printable(&a.path),
            a.access.join("+")
        );
        if let Some(request) = &a.request {
            println!(
                "      for {}s, {} approver(s) needed{}; reason: {}",
                request.duration_secs,
                request.approvals_needed,
                if request.approved_by.is_empty() {
                    String::new()
                } else {
                    format!(", approved by {}", printable(&request.approved_by.join(" and ")))
                },
                printable(&request.reason)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
