//! `agent-guard intent "reading ticket 4412 to draft a reply"`: inside a task, declares the
//! step the agent is taking. The task's following events carry it until the next declaration.
//! It is a statement for the audit trail: it never changes what the grant allows.

use std::{path::Path, process::ExitCode};

use crate::{
    api::{RequestBody, ResponseBody},
    client,
};

/// `agent-guard intent`.
#[derive(clap::Args)]
pub struct Args {
    /// What the agent is about to do (1-4096 printable bytes).
    text: String,
}

pub fn main(socket: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let ResponseBody::Task { task } = client::call(socket, RequestBody::DeclareIntent { intent: args.text })? else {
        anyhow::bail!("unexpected reply from the daemon");
    };
    eprintln!("agent-guard: task {}: step {}", task.id, task.step_intent.as_deref().unwrap_or(""));
    Ok(ExitCode::SUCCESS)
}
