//! `agent-guard status`

use std::{path::Path, process::ExitCode};

use crate::{
    api::{RequestBody, ResponseBody},
    client,
};

/// `agent-guard status`.
#[derive(clap::Args)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn main(socket: &Path, args: &Args) -> anyhow::Result<ExitCode> {
    let ResponseBody::Status { status } = client::call(socket, RequestBody::Status)? else {
        anyhow::bail!("unexpected reply from the daemon");
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("agent-guard {} on Linux {}", status.version, status.kernel);
    println!("enforcement:");
    println!("  network  {}", status.enforcement.network);
    println!("  file     {}", status.enforcement.file);
    println!("  exec     {}", status.enforcement.exec);
    println!(
        "if the daemon dies {}",
        if status.survives_daemon {
            "the programs stay attached (pinned); the next daemon adopts the tasks"
        } else {
            "the programs detach (this kernel does not pin links); the next daemon stops the tasks"
        }
    );
    println!("open tasks      {}", status.open_tasks);
    println!("waiting approvals {}", status.pending_approvals);
    println!("events dropped  {}", status.events_dropped);
    println!("refused approval callbacks  {}", status.refused_callbacks);
    println!("policies        {} ({} files)", status.policy_dir, status.policies.len());
    println!("kernel maps (used / size):");
    for map in &status.maps {
        let percent = map.used as f64 * 100.0 / f64::from(map.size.max(1));
        println!("  {:<12} {:>8} / {:<8} {percent:5.1}%", map.name, map.used, map.size);
    }
    Ok(ExitCode::SUCCESS)
}
