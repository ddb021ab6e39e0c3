//! `agent-guard audit`: events from the audit store, read directly (the daemon may be down).

use std::{path::PathBuf, process::ExitCode, time::SystemTime};

use serde_json::Value;

use crate::audit::{DEFAULT_STORE, Query, Store, TaskRow};

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
            println!("{event}");
        } else {
            println!("{}", line(&event));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One compact line: time, kind, decision, task, what, rule.
fn line(event: &Value) -> String {
    let get = |pointer: &str| event.pointer(pointer).and_then(Value::as_str).unwrap_or("");
    let task = event.pointer("/task/id").and_then(Value::as_u64).map_or("-".into(), |id| format!("task {id}"));
    let mut out = format!("{} {:<18} {:<8} {:<9}", get("/time"), get("/kind"), get("/decision"), task);
    let object = match get("/object/type") {
        "network" => format!(
            "{}:{}/{}",
            get("/object/address"),
            event.pointer("/object/port").and_then(Value::as_u64).unwrap_or(0),
            get("/object/protocol")
        ),
        "file" | "executable" => get("/object/path").to_string(),
        _ => String::new(),
    };
    for part in [object.as_str(), get("/rule")] {
        if !part.is_empty() {
            out.push(' ');
            out.push_str(part);
        }
    }
    if event.get("aggregated").and_then(Value::as_bool) == Some(true) {
        let count = event.get("count").and_then(Value::as_u64).unwrap_or(1);
        out.push_str(&format!(" (x{count})"));
    }
    if object.is_empty() && !get("/reason").is_empty() {
        out.push_str(" — ");
        out.push_str(get("/reason"));
    }
    out
}

pub fn print_tasks(tasks: &[TaskRow], json: bool) -> anyhow::Result<()> {
    if json {
        for task in tasks {
            println!("{}", serde_json::to_string(task)?);
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
            t.agent,
            t.grant,
            t.opened.as_deref().unwrap_or("-"),
            t.ended.as_ref().map_or("open", |e| e.how.name()),
            t.denied,
            t.flagged,
            t.open_event_id.as_deref().unwrap_or("-"),
            t.intent
        );
    }
    Ok(())
}
