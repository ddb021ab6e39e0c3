//! `agent-guard grant revoke ID` and `agent-guard grant extend ID --for 10m`: change a running
//! task's grant. Both are in force in the kernel when the command returns.

use std::{path::Path, process::ExitCode, time::Duration};

use crate::{
    api::{RequestBody, ResponseBody},
    client,
};

/// `agent-guard grant`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Revoke a task's grant: its processes live on, allowed nothing.
    Revoke { id: u32 },
    /// Push a task's expiry back; the time left never exceeds the grant's ttl.
    Extend {
        id: u32,
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        by: Duration,
    },
}

pub fn main(socket: &Path, command: &Command) -> anyhow::Result<ExitCode> {
    let request = match *command {
        Command::Revoke { id } => RequestBody::RevokeGrant { id },
        Command::Extend { id, by } => RequestBody::ExtendGrant { id, secs: by.as_secs().max(1) },
    };
    let ResponseBody::Task { task } = client::call(socket, request)? else {
        anyhow::bail!("unexpected reply from the daemon");
    };
    if task.revoked {
        println!("task {}: grant {} revoked in the kernel", task.id, task.grant);
    } else {
        println!(
            "task {}: grant {} now expires {} ({} s left)",
            task.id, task.grant, task.expires, task.remaining_secs
        );
    }
    Ok(ExitCode::SUCCESS)
}
