//! The tools: `get_grant`, `declare_intent`, `request_access`, `list_requests`. Each is one
//! (or, while waiting, a few) calls to the daemon's API from inside the task, whose answers
//! are the daemon's: a refused request is a failed tool call with the daemon's reason.

use std::{path::PathBuf, time::Duration};

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::protocol::{ToolResult, Tools};
use crate::{
    api::{AccessRules, ApprovalInfo, RequestBody, ResponseBody},
    client,
    grant::{FileRules, Rule, RuleAction},
};

/// The longest `request_access` waits for a decision.
const MAX_WAIT: Duration = Duration::from_hours(1);

/// The tools, answered by the daemon at `socket`.
pub struct DaemonTools {
    pub socket: PathBuf,
}

/// No arguments.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

/// `declare_intent`'s arguments.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct IntentArgs {
    /// The step the agent is about to take (1-4096 printable bytes): recorded, never widens anything.
    intent: String,
}

/// `request_access`'s arguments.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RequestArgs {
    /// Path patterns to read, as in a grant: /dir/** (everything below), /dir/* (direct entries), /file.
    #[serde(default)]
    read: Vec<String>,
    /// Path patterns to write.
    #[serde(default)]
    write: Vec<String>,
    /// Executable path patterns.
    #[serde(default)]
    exec: Vec<String>,
    /// Destinations: ADDRESS[/LEN]:PORT[-PORT][/tcp|udp].
    #[serde(default)]
    connect: Vec<String>,
    /// For how long, in seconds (at most what the profile allows; never past the task's end).
    duration_secs: u64,
    /// Why the agent needs it: shown to the approvers and kept in the audit trail.
    reason: String,
    /// Wait up to this many seconds for the decision (0: return at once while it is pending).
    #[serde(default)]
    wait_secs: u64,
}

fn schema<T: JsonSchema>() -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(T)).expect("schemas serialize");
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
        object.remove("title");
    }
    schema
}

fn args<T: serde::de::DeserializeOwned>(arguments: &Value) -> Result<T, String> {
    serde_json::from_value(arguments.clone()).map_err(|err| format!("bad arguments: {err}"))
}

fn rules<T: std::str::FromStr>(list: &[String]) -> Result<Vec<Rule<T>>, String>
where
    T::Err: std::fmt::Display,
{
    list.iter()
        .map(|text| {
            text.parse::<T>()
                .map(|target| Rule { target, action: RuleAction::Allow })
                .map_err(|err| format!("{text}: {err}"))
        })
        .collect()
}

impl DaemonTools {
    fn get_grant(&self) -> Result<ToolResult, String> {
        let ResponseBody::Grant { grant } =
            client::call(&self.socket, RequestBody::GetGrant).map_err(|e| e.to_string())?
        else {
            return Err("unexpected reply from the daemon".into());
        };
        let text = format!(
            "task {} ({}), {}s left. In force: {}. Requestable (at most {}s): {}.",
            grant.task.id,
            grant.task.agent,
            grant.task.remaining_secs,
            grant.rules.join(", "),
            grant.max_request_secs,
            if grant.requestable.is_empty() { "nothing".to_string() } else { grant.requestable.join(", ") }
        );
        Ok(ToolResult::Done { structured: json!(grant), text: crate::text::printable(&text).into_owned() })
    }

    fn declare_intent(&self, arguments: &Value) -> Result<ToolResult, String> {
        let IntentArgs { intent } = args(arguments)?;
        let ResponseBody::Task { task } =
            client::call(&self.socket, RequestBody::DeclareIntent { intent }).map_err(|e| e.to_string())?
        else {
            return Err("unexpected reply from the daemon".into());
        };
        let step = task.step_intent.clone().unwrap_or_default();
        Ok(ToolResult::Done {
            structured: json!({"task": task.id, "step": step}),
            text: format!("task {}: step recorded", task.id),
        })
    }

    fn request_access(&self, arguments: &Value) -> Result<ToolResult, String> {
        let a: RequestArgs = args(arguments)?;
        let access = AccessRules {
            files: FileRules { read: rules(&a.read)?, write: rules(&a.write)? },
            exec: rules(&a.exec)?,
            connect: rules::<crate::grant::Destination>(&a.connect)?,
        };
        let request = RequestBody::RequestAccess { rules: access, duration_secs: a.duration_secs, reason: a.reason };
        let ResponseBody::Approval { approval } = client::call(&self.socket, request).map_err(|e| e.to_string())?
        else {
            return Err("unexpected reply from the daemon".into());
        };
        let wait = Duration::from_secs(a.wait_secs).min(MAX_WAIT);
        let approval = client::wait_decided(&self.socket, approval, wait).map_err(|e| e.to_string())?;
        let until = approval.request.as_ref().and_then(|r| r.until.clone());
        let text = match approval.state.as_str() {
            "approved" => format!("request {} approved until {}", approval.id, until.unwrap_or_default()),
            "pending" => format!("request {} is pending: ask list_requests later", approval.id),
            other => format!("request {} {other}", approval.id),
        };
        Ok(ToolResult::Done { structured: json!(approval), text })
    }

    fn list_requests(&self) -> Result<ToolResult, String> {
        let requests: Vec<ApprovalInfo> = client::approvals(&self.socket)
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|a| a.request.is_some())
            .collect();
        let text = requests
            .iter()
            .map(|r| format!("request {}: {} ({})", r.id, r.state, r.path))
            .collect::<Vec<_>>()
            .join("\n");
        Ok(ToolResult::Done {
            structured: json!({"requests": requests}),
            text: if text.is_empty() { "no requests".into() } else { crate::text::printable(&text).into_owned() },
        })
    }
}

impl Tools for DaemonTools {
    fn list(&self) -> Vec<Value> {
        vec![
            json!({
                "name": "get_grant",
                "title": "What may I do, and for how long",
                "description": "The task's grant in force now (approved requests included), the time left, and what may be requested.",
                "inputSchema": schema::<NoArgs>(),
                "annotations": {"readOnlyHint": true, "openWorldHint": false},
            }),
            json!({
                "name": "declare_intent",
                "title": "Declare the step",
                "description": "Record the step the agent is about to take: the task's following events carry it. It never changes what is allowed.",
                "inputSchema": schema::<IntentArgs>(),
                "annotations": {"readOnlyHint": false, "destructiveHint": false, "idempotentHint": true, "openWorldHint": false},
            }),
            json!({
                "name": "request_access",
                "title": "Ask a human for more access",
                "description": "Ask for more access for a while, with a reason. Approvers named by the task's profile decide (CLI, Slack, Teams, webhook); nothing is granted until they do. Refused at once when the rules are not requestable.",
                "inputSchema": schema::<RequestArgs>(),
                "annotations": {"readOnlyHint": false, "destructiveHint": false, "idempotentHint": false, "openWorldHint": true},
            }),
            json!({
                "name": "list_requests",
                "title": "My access requests",
                "description": "This task's access requests and their state (pending, approved until, denied, timed out, ended).",
                "inputSchema": schema::<NoArgs>(),
                "annotations": {"readOnlyHint": true, "openWorldHint": false},
            }),
        ]
    }

    fn call(&mut self, name: &str, arguments: &Value) -> Option<ToolResult> {
        let result = match name {
            "get_grant" => args::<NoArgs>(arguments).and_then(|_| self.get_grant()),
            "declare_intent" => self.declare_intent(arguments),
            "request_access" => self.request_access(arguments),
            "list_requests" => args::<NoArgs>(arguments).and_then(|_| self.list_requests()),
            _ => return None,
        };
        Some(result.unwrap_or_else(|reason| ToolResult::Failed(crate::text::printable(&reason).into_owned())))
    }
}
