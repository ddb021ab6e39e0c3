//! `agent-guard request --read '/srv/reports/**' --for 10m --reason "..."`: inside a task,
//! asks for more access. The daemon refuses at once what the task's profile does not list as
//! requestable; otherwise the approvers its profile names are asked (CLI, Slack, Teams,
//! webhook), and once they approve, the grant widens in the kernel for that long.
//! `agent-guard request --show` prints the grant in force and what may be requested.

use std::{path::Path, process::ExitCode, time::Duration};

use crate::{
    api::{AccessRules, ApprovalInfo, ApprovalState, RequestBody, ResponseBody},
    client,
    grant::{FileRule, NetRule},
    text::printable,
};

/// `agent-guard request`.
#[derive(clap::Args)]
pub struct Args {
    /// A path pattern to read (as in a grant: /dir/**, /dir/*, /file); repeatable.
    #[arg(long, value_name = "PATTERN")]
    read: Vec<String>,
    /// A path pattern to write; repeatable.
    #[arg(long, value_name = "PATTERN")]
    write: Vec<String>,
    /// An executable path pattern; repeatable.
    #[arg(long, value_name = "PATTERN")]
    exec: Vec<String>,
    /// A destination (ADDRESS[/LEN]:PORT[-PORT][/tcp|udp]); repeatable.
    #[arg(long, value_name = "DESTINATION")]
    connect: Vec<String>,
    /// For how long ("10m"); at most the profile's `requestable.maxDuration`.
    #[arg(long = "for", value_parser = humantime::parse_duration, required_unless_present = "show")]
    duration: Option<Duration>,
    /// Why the agent needs it (shown to the approvers, kept in the audit trail).
    #[arg(long, required_unless_present = "show")]
    reason: Option<String>,
    /// Wait for the decision (at most this long) instead of returning while it is pending.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "TIMEOUT")]
    wait: Option<Duration>,
    /// Print the task's grant in force, what it may request, and the approved requests.
    #[arg(long, conflicts_with_all = ["read", "write", "exec", "connect", "duration", "reason", "wait"])]
    show: bool,
}

fn rules<T: std::str::FromStr>(list: &[String]) -> anyhow::Result<Vec<crate::grant::Rule<T>>>
where
    T::Err: std::fmt::Display,
{
    list.iter()
        .map(|text| {
            text.parse::<T>()
                .map(|target| crate::grant::Rule { target, action: crate::grant::RuleAction::Allow })
                .map_err(|err| anyhow::anyhow!("{text}: {err}"))
        })
        .collect()
}

pub fn main(socket: &Path, args: Args) -> anyhow::Result<ExitCode> {
    if args.show {
        return show(socket);
    }
    let read: Vec<FileRule> = rules(&args.read)?;
    let access = AccessRules {
        files: crate::grant::FileRules { read, write: rules(&args.write)? },
        exec: rules(&args.exec)?,
        connect: rules::<crate::grant::Destination>(&args.connect)?.into_iter().collect::<Vec<NetRule>>(),
    };
    let duration = args.duration.expect("required by clap");
    let request = RequestBody::RequestAccess {
        rules: access,
        duration_secs: duration.as_secs().max(1),
        reason: args.reason.expect("required by clap"),
    };
    let ResponseBody::Approval { approval } = client::call(socket, request)? else {
        anyhow::bail!("unexpected reply from the daemon");
    };
    let approval = match args.wait {
        Some(timeout) => client::wait_decided(socket, approval, timeout)?,
        None => approval,
    };
    print(&approval);
    Ok(if matches!(approval.state, ApprovalState::Approved | ApprovalState::Pending) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn print(approval: &ApprovalInfo) {
    let until =
        approval.request.as_ref().and_then(|r| r.until.clone()).map(|u| format!(" until {u}")).unwrap_or_default();
    println!("request {}: {}{until}: {}", approval.id, approval.state, printable(&approval.path));
}

fn show(socket: &Path) -> anyhow::Result<ExitCode> {
    let ResponseBody::Grant { grant } = client::call(socket, RequestBody::GetGrant)? else {
        anyhow::bail!("unexpected reply from the daemon");
    };
    println!("task {} ({}), {}s left", grant.task.id, printable(&grant.task.agent), grant.task.remaining_secs);
    println!("in force:");
    for line in &grant.rules {
        println!("  {}", printable(line));
    }
    for widening in &grant.widenings {
        println!("request {} until {}: {}", widening.approval, widening.until, printable(&widening.rules.join(", ")));
    }
    if grant.requestable.is_empty() {
        println!("requestable: nothing");
    } else {
        println!("requestable (for at most {}s):", grant.max_request_secs);
        for line in &grant.requestable {
            println!("  {}", printable(line));
        }
    }
    Ok(ExitCode::SUCCESS)
}
