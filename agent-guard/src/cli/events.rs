//! `agent-guard events schema`: the JSON Schema of event lines (docs/event.schema.json).

use std::process::ExitCode;

/// `agent-guard events`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Print the JSON Schema of one event line (schema `agent-guard.event/v1`).
    Schema,
}

#[expect(clippy::unnecessary_wraps, reason = "every verb's main has this signature (cli/mod.rs dispatches on it)")]
pub fn main(command: &Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Schema => print!("{}", crate::daemon::events::schema::json_schema()),
    }
    Ok(ExitCode::SUCCESS)
}
