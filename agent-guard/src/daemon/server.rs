//! The API server: one request per line, one response per line (docs/api.md).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{SinkExt, StreamExt};
use tokio::net::UnixStream;
use tokio_util::codec::{Framed, LinesCodec};

use super::{
    events::schema::Actor,
    peer::Peer,
    tasks::{
        Decider, GrantRequest, OpenRequest,
        registry::{Refusal, Registry},
        state::Saving,
    },
};
use crate::api::{API_VERSION, ErrorCode, Request, RequestBody, Response, ResponseBody};

/// Longest request line accepted from outside every task (a grant file travels inside one).
const MAX_LINE: usize = 4 * 1024 * 1024;
/// Longest from a process inside a task: a sub-task's grant. Each connection may buffer a
/// line this long, so an agent cannot make the daemon hold much (times `MAX_TASK_CONNECTIONS`).
const MAX_TASK_LINE: usize = 64 * 1024;
/// Connections the processes of one task may hold open at once: enough for `run` and its
/// sub-tasks, not enough to exhaust the daemon's descriptors or memory.
pub const MAX_TASK_CONNECTIONS: u32 = 16;

/// A task's hold on one of its connection slots, given back when the connection ends.
struct TaskConnection {
    registry: Arc<Mutex<Registry>>,
    task: u32,
}

impl Drop for TaskConnection {
    fn drop(&mut self) {
        let mut reg = self.registry.lock().expect("registry lock is never poisoned");
        if let Some(count) = reg.connections.get_mut(&self.task) {
            *count -= 1;
            if *count == 0 {
                reg.connections.remove(&self.task);
            }
        }
    }
}

/// Serves one API connection; `accepted_ns` is the boot-clock time of its `accept()` (the
/// connecting process started before it: peer.rs).
pub async fn serve_connection(stream: UnixStream, registry: Arc<Mutex<Registry>>, accepted_ns: u64) {
    let (pid, uid) = match stream.peer_cred() {
        Ok(cred) => (cred.pid().and_then(|pid| u32::try_from(pid).ok()).unwrap_or(0), cred.uid()),
        Err(err) => {
            tracing::warn!(%err, "API connection without peer credentials: closed");
            return;
        }
    };
    // Fail closed: a caller the kernel cannot name exactly gets nothing.
    let Some(peer) = Peer::of(&stream, pid, uid, accepted_ns) else {
        tracing::warn!(pid, "API connection whose process cannot be named (exited, or its pid was reused): closed");
        return;
    };
    // A task's processes share a few connections, with short lines (sub-task requests).
    let task = {
        let mut reg = registry.lock().expect("registry lock is never poisoned");
        let task = reg.kernel.task_of(pid);
        if let Some(task) = task {
            let count = reg.connections.entry(task).or_insert(0);
            if *count >= MAX_TASK_CONNECTIONS {
                tracing::warn!(task, pid, "API connection refused: the task holds {MAX_TASK_CONNECTIONS} already");
                return;
            }
            *count += 1;
        }
        task
    };
    let _slot = task.map(|task| TaskConnection { registry: registry.clone(), task });
    let max_line = if task.is_some() { MAX_TASK_LINE } else { MAX_LINE };
    let mut lines = Framed::new(stream, LinesCodec::new_with_max_length(max_line));
    while let Some(line) = lines.next().await {
        let body = match (line, peer.pid()) {
            (Ok(line), Some(pid)) => handle_line(&line, &peer, pid, &registry),
            (Ok(_), None) => ResponseBody::Error {
                code: ErrorCode::Forbidden,
                message: "the process that opened this connection has exited: requests on its socket are refused"
                    .into(),
            },
            (Err(err), _) => ResponseBody::Error { code: ErrorCode::BadRequest, message: err.to_string() },
        };
        let reply = serde_json::to_string(&Response { version: API_VERSION, body }).expect("responses serialize");
        if lines.send(reply).await.is_err() {
            return;
        }
    }
}

/// `SuperviseTask`: takes the caller's seccomp listener and starts the task's supervisor.
fn supervise(
    reg: &mut Registry,
    registry: &Arc<Mutex<Registry>>,
    peer: &Peer,
    pid: u32,
    listener_fd: i32,
) -> ResponseBody {
    use super::tasks::supervise;
    let id = match reg.listener_expected(pid) {
        Ok(id) => id,
        Err(refusal) => return error(refusal),
    };
    let refused = |message: String| ResponseBody::Error { code: ErrorCode::BadRequest, message };
    let listener = match peer.take_fd(listener_fd) {
        Ok(fd) if supervise::is_listener(&fd) => fd,
        Ok(_) => return refused(format!("descriptor {listener_fd} of process {pid} is not a seccomp listener")),
        Err(err) => return refused(format!("descriptor {listener_fd} of process {pid}: {err}")),
    };
    if let Err(err) = supervise::start(listener, id, registry.clone()) {
        return ResponseBody::Error { code: ErrorCode::Kernel, message: format!("task {id}'s supervisor: {err}") };
    }
    reg.mark_supervised(id);
    tracing::info!(task = id, "holding the task's ask actions in its seccomp supervisor");
    match reg.tasks.get(&id) {
        Some(task) => ResponseBody::Task { task: task.info.clone() },
        None => refused(format!("no task {id}")),
    }
}

fn error(refusal: Refusal) -> ResponseBody {
    ResponseBody::Error { code: refusal.code, message: refusal.message }
}

/// Where an `open_task` request's grant comes from: a grant file's text or a profile (and its
/// template and variables); the reason for refusing the request otherwise.
fn grant_request(
    caller_task: Option<u32>,
    grant_yaml: Option<String>,
    grant_source: Option<String>,
    profile: Option<String>,
    template: Option<String>,
    vars: std::collections::BTreeMap<String, String>,
) -> Result<GrantRequest, String> {
    match (grant_yaml, profile) {
        (Some(yaml), None) => {
            if template.is_some() || !vars.is_empty() {
                return Err("a template and variables need a profile".into());
            }
            // Where the grant came from is the caller's word: an agent's is not recorded.
            let source = match (caller_task, grant_source) {
                (Some(task), _) => format!("a request from inside task {task}"),
                (None, Some(source)) if source.len() <= 4096 && !source.chars().any(crate::text::is_deceptive) => {
                    source
                }
                (None, Some(_)) => return Err("grant_source must be at most 4096 bytes of printable text".into()),
                (None, None) => "(request)".into(),
            };
            Ok(GrantRequest::File { yaml, source })
        }
        (None, Some(profile)) => Ok(GrantRequest::Profile { profile, template, vars }),
        _ => Err("give either a grant file or a profile".into()),
    }
}

fn handle_line(line: &str, peer: &Peer, pid: u32, registry: &Arc<Mutex<Registry>>) -> ResponseBody {
    let uid = peer.uid;
    // Check the version before the body, so an old client gets a clear answer.
    let version = serde_json::from_str::<serde_json::Value>(line).ok().and_then(|v| v.get("version")?.as_u64());
    if version != Some(u64::from(API_VERSION)) {
        return ResponseBody::Error {
            code: ErrorCode::UnsupportedVersion,
            message: format!("this daemon speaks API version {API_VERSION}; the request has version {version:?}"),
        };
    }
    let request: Request = match serde_json::from_str(line) {
        Ok(request) => request,
        Err(err) => return ResponseBody::Error { code: ErrorCode::BadRequest, message: err.to_string() },
    };
    let actor = Actor::new(pid, uid);
    let mut reg = registry.lock().expect("registry lock is never poisoned");
    // A tagged process may only open a sub-task (a subset of its own grant, checked by the
    // registry) and declare its step: anything else would let an agent stop, extend, approve
    // or revoke.
    let caller_task = reg.kernel.task_of(pid);
    // Untagged, or tagged no longer because it is exiting (a zombie child holding the socket
    // of a tagged parent has lost its tag): only a process that still runs, checked after the
    // lookup, is taken as untagged (peer.rs, is_running).
    if caller_task.is_none() && !peer.is_running(pid) {
        return ResponseBody::Error {
            code: ErrorCode::Forbidden,
            message:
                "the process that opened this connection is exiting or has exited: requests on its socket are refused"
                    .into(),
        };
    }
    if let Some(task) = caller_task
        && !matches!(
            request.body,
            RequestBody::OpenTask { .. }
                | RequestBody::DeclareIntent { .. }
                | RequestBody::SuperviseTask { .. }
                | RequestBody::RequestAccess { .. }
                | RequestBody::GetGrant
                | RequestBody::ListApprovals
        )
    {
        return ResponseBody::Error {
            code: ErrorCode::Forbidden,
            message: format!(
                "process {pid} belongs to task {task}: inside a task only `agent-guard run` (a sub-task), `intent`, `request`, `grant show` and `approvals` are allowed"
            ),
        };
    }
    let changes = !matches!(
        request.body,
        RequestBody::ListTasks | RequestBody::Status | RequestBody::ListApprovals | RequestBody::GetGrant
    );
    let body = match request.body {
        RequestBody::OpenTask {
            agent,
            intent,
            grant_yaml,
            grant_source,
            profile,
            template,
            vars,
            ttl_secs,
            landlock_abi,
        } => {
            let grant = match grant_request(caller_task, grant_yaml, grant_source, profile, template, vars) {
                Ok(grant) => grant,
                Err(message) => return ResponseBody::Error { code: ErrorCode::BadRequest, message },
            };
            let ttl = ttl_secs.map(Duration::from_secs);
            reg.open_task(OpenRequest { agent, intent, grant, ttl, actor, landlock_abi })
                .map_or_else(error, |(task, landlock)| ResponseBody::TaskOpened { task, landlock })
        }
        RequestBody::SuperviseTask { listener_fd } => supervise(&mut reg, registry, peer, pid, listener_fd),
        RequestBody::ListTasks => ResponseBody::Tasks { tasks: reg.list() },
        RequestBody::StopTask { id } => reg
            .stop_task(id, Some(&actor), "stopped through the API")
            .map_or_else(error, |task| ResponseBody::TaskStopped { task }),
        RequestBody::Status => ResponseBody::Status { status: reg.status() },
        RequestBody::RevokeGrant { id } => {
            reg.revoke(id, &actor).map_or_else(error, |task| ResponseBody::Task { task })
        }
        RequestBody::ExtendGrant { id, secs } => {
            reg.extend(id, Duration::from_secs(secs), &actor).map_or_else(error, |task| ResponseBody::Task { task })
        }
        RequestBody::Approve { id, for_secs } => reg
            .decide(id, true, for_secs.map(Duration::from_secs), Some(&Decider::local(&actor)))
            .map_or_else(error, |approval| ResponseBody::Approval { approval }),
        RequestBody::Deny { id } => reg
            .decide(id, false, None, Some(&Decider::local(&actor)))
            .map_or_else(error, |approval| ResponseBody::Approval { approval }),
        // A task sees its own questions only.
        RequestBody::ListApprovals => ResponseBody::Approvals {
            approvals: reg.approvals().into_iter().filter(|a| caller_task.is_none_or(|t| a.task == t)).collect(),
        },
        RequestBody::RequestAccess { rules, duration_secs, reason } => reg
            .request_access(&actor, &rules, Duration::from_secs(duration_secs), &reason)
            .map_or_else(error, |approval| ResponseBody::Approval { approval }),
        RequestBody::GetGrant => reg.grant_view(pid).map_or_else(error, |grant| ResponseBody::Grant { grant }),
        RequestBody::DeclareIntent { intent } => {
            reg.declare_intent(pid, intent).map_or_else(error, |task| ResponseBody::Task { task })
        }
    };
    let saving = if changes { reg.persist() } else { Saving::none() };
    drop(reg);
    // Saved before the caller hears of it (a task it was told about survives a crash), and
    // waited for outside the registry lock, which the ring readers take for every record.
    saving.wait();
    body
}
