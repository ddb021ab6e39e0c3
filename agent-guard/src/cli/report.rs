//! `agent-guard report --task ID`: a task's evidence report from the audit store, read
//! directly (the daemon may be down).

use std::{io::Write as _, path::PathBuf, process::ExitCode};

use anyhow::Context as _;

use crate::audit::{AuditError, DEFAULT_STORE, Report, Store};

/// Report formats.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Md,
    Json,
    Html,
}

/// `agent-guard report`.
#[derive(clap::Args)]
pub struct Args {
    /// The audit store (opened read-only).
    #[arg(long, env = "AGENT_GUARD_AUDIT_STORE", default_value = DEFAULT_STORE)]
    store: PathBuf,
    /// The task to report on (its newest instance, unless --open-event names one).
    #[arg(long)]
    task: u32,
    /// The task.open event_id of the instance meant, when the id was reused after a daemon
    /// restart (`agent-guard audit --tasks` lists them).
    #[arg(long)]
    open_event: Option<String>,
    #[arg(long, value_enum, default_value = "md")]
    format: Format,
    /// Write the report here instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
}

pub fn main(args: &Args) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(&args.store)?;
    let events = store.task_events(args.task, args.open_event.as_deref())?;
    if events.is_empty() {
        let which = args.open_event.as_deref().map(|e| format!(" opened by event {e}")).unwrap_or_default();
        anyhow::bail!("no task {}{which} in the audit store {}", args.task, args.store.display());
    }
    let report = Report::build(args.task, &events)?;
    let text = match args.format {
        Format::Md => report.to_markdown(),
        Format::Html => report.to_html(),
        Format::Json => {
            let mut json = crate::text::json_safe(
                serde_json::to_string_pretty(&report).map_err(|source| AuditError::Json { task: args.task, source })?,
            );
            json.push('\n');
            json
        }
    };
    match &args.output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?,
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}
