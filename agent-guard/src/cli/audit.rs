//! `agent-guard audit`: events from the audit store, read directly (the daemon may be down).

use std::{fmt::Write as _, path::PathBuf, process::ExitCode, time::SystemTime};

use serde_json::Value;

use crate::text::printable;
use crate::{
    audit::{DEFAULT_STORE, Query, Store, TaskRow},
    daemon::events::schema::Kind,
};

/// `agent-guard audit`.
#[derive(clap::Args)]
pub struct Args {
    /// The audit store (opened read-only).
    #[arg(long, env = "AGENT_GUARD_AUDIT_STORE", default_value = DEFAULT_STORE)]
    store: PathBuf,
    /// Only this task's events (every instance of the id).
    #[arg(long)]
    task: Option<u32>,
    /// Only events this recent: 90s, 15m, 1h, 2d.
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<std::time::Duration>,
    /// Only events with this decision.
    #[arg(long, value_parser = ["denied", "flagged", "allowed", "held"])]
    decision: Option<String>,
    /// Only events of this kind, e.g. file.open, network.connect, task.open.
    #[arg(long)]
    kind: Option<String>,
    /// At most the LIMIT most recent matching events.
    #[arg(long)]
    limit: Option<usize>,
    /// List the tasks in the store instead of events.
    #[arg(long, conflicts_with_all = ["since", "decision", "kind", "limit"])]
    tasks: bool,
    /// Print JSON lines (the events as stored; with --tasks, one task each).
    #[arg(long)]
    json: bool,
}

pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(&args.store)?;
    if args.tasks {
        let tasks: Vec<TaskRow> =
            store.tasks()?.into_iter().filter(|t| args.task.is_none_or(|id| t.id == id)).collect();
        if let Some(id) = args.task
            && tasks.is_empty()
        {
            anyhow::bail!("no task {id} in the audit store {}", args.store.display());
        }
        print_tasks(&tasks, args.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(id) = args.task
        && store.task_events(id, None)?.is_empty()
    {
        anyhow::bail!("no task {id} in the audit store {}", args.store.display());
    }
    let since = match args.since {
        Some(ago) => Some(
            SystemTime::now()
                .checked_sub(ago)
                .ok_or_else(|| anyhow::anyhow!("--since {}: too far back", humantime::format_duration(ago)))?,
        ),
        None => None,
    };
    let query = Query { task: args.task, since, decision: args.decision, kind: args.kind, limit: args.limit };
    for event in store.query(&query)? {
        if args.json {
            println!("{}", crate::text::json_safe(event.to_string()));
        } else {
            println!("{}", line(&event));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One compact line: time, kind, decision, task, what, rule. Paths, rules and reasons come
/// from the agent's side: control characters are escaped.
fn line(value: &Value) -> String {
    let Some(event) = crate::audit::typed(value) else { return printable(&value.to_string()).into_owned() };
    let task = event.task.as_ref().map_or("-".into(), |t| format!("task {}", t.id));
    let decision = event.decision().map_or("", |d| d.as_str());
    let kind = match event.kind() {
        Kind::Unknown => value.get("kind").and_then(Value::as_str).unwrap_or("?").to_string(),
        kind => kind.as_str().to_string(),
    };
    let mut out = format!("{} {:<18} {:<8} {:<9}", event.time, kind, decision, task);
    let object = crate::audit::object_of(&event.body).map(|(_, line)| line).unwrap_or_default();
    for part in [object.as_str(), event.rule().unwrap_or("")] {
        if !part.is_empty() {
            out.push(' ');
            out.push_str(part);
        }
    }
    if event.aggregated {
        let _ = write!(out, " (x{})", event.repeats.unwrap_or(1));
    }
    if let Some(reason) = event.body.reason().filter(|r| object.is_empty() && !r.is_empty()) {
        out.push_str(" — ");
        out.push_str(reason);
    }
    printable(&out).into_owned()
}

pub fn print_tasks(tasks: &[TaskRow], json: bool) -> anyhow::Result<()> {
    if json {
        for task in tasks {
            println!("{}", crate::text::json_safe(serde_json::to_string(task)?));
        }
        return Ok(());
    }
    println!(
        "{:<5} {:<16} {:<20} {:<27} {:<9} {:>6} {:>7}  {:<36} INTENT",
        "ID", "AGENT", "GRANT", "OPENED", "ENDED", "DENIED", "FLAGGED", "OPEN EVENT"
    );
    for t in tasks {
        println!(
            "{:<5} {:<16} {:<20} {:<27} {:<9} {:>6} {:>7}  {:<36} {}",
            t.id,
            printable(&t.agent),
            printable(&t.grant),
            t.opened.as_deref().unwrap_or("-"),
            t.ended.as_ref().map_or("open", |e| e.how.name()),
            t.denied,
            t.flagged,
            t.open_event_id.as_deref().unwrap_or("-"),
            printable(&t.intent)
        );
    }
    Ok(())
}
