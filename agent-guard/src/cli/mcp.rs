//! `agent-guard mcp`: serves the Model Context Protocol on stdin/stdout for an agent framework
//! that starts it inside the task (src/mcp). Logs nothing on stdout, which is the protocol's.

use std::{path::Path, process::ExitCode};

/// `agent-guard mcp`.
#[derive(clap::Args)]
pub struct Args {}

pub fn main(socket: &Path, _args: Args) -> anyhow::Result<ExitCode> {
    let mut tools = crate::mcp::DaemonTools { socket: socket.to_path_buf() };
    crate::mcp::serve(std::io::stdin().lock(), std::io::stdout().lock(), &mut tools)?;
    Ok(ExitCode::SUCCESS)
}
