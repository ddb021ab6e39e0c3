//! The local control API: newline-delimited JSON over a Unix socket, documented in
//! docs/api.md. Every request and response carries `version`; a daemon refuses versions it
//! does not speak. The caller's process is identified by the kernel (`SO_PEERCRED`), never by a
//! pid in the request, so a client can only put *itself* into a task.

use serde::{Deserialize, Serialize};

pub const API_VERSION: u32 = 1;

/// The name a unit variant has on the wire (its serde name: `"denied"`, `"file.open"`).
pub fn wire_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}
pub const DEFAULT_SOCKET: &str = "/run/agent-guard/agent-guard.sock";

// No deny_unknown_fields here: serde cannot combine it with `flatten`; the flattened body
// enum carries it instead, so unknown fields are still refused.
/// One request line: the API version and what is asked.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub version: u32,
    #[serde(flatten)]
    pub body: RequestBody,
}

/// What a request asks (`op`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum RequestBody {
    /// Open a task for the calling process and tag it. The grant is either a grant file's text
    /// (`grant_yaml`) or a profile of the daemon's policies, with an optional template filled
    /// in with `vars`. From a process already inside a task this opens a sub-task, whose grant
    /// must be a subset of the caller's.
    OpenTask {
        /// Agent identity; with a profile, the profile's name.
        agent: Option<String>,
        intent: String,
        /// The grant file's text, and where it came from (for errors and events).
        #[serde(default)]
        grant_yaml: Option<String>,
        #[serde(default)]
        grant_source: Option<String>,
        #[serde(default)]
        profile: Option<String>,
        #[serde(default)]
        template: Option<String>,
        #[serde(default)]
        vars: std::collections::BTreeMap<String, String>,
        /// Seconds; at most the grant's own ttl (and the profile's maximum).
        ttl_secs: Option<u64>,
        /// The Landlock ABI the caller will confine itself with, before it runs the agent, if
        /// the daemon answers with a ruleset (`agent-guard run` on a kernel without BPF LSM).
        #[serde(default)]
        landlock_abi: Option<u32>,
    },
    ListTasks,
    StopTask {
        id: u32,
    },
    /// Revoke a task's grant in the kernel (its processes live on, allowed nothing).
    RevokeGrant {
        id: u32,
    },
    /// Push a task's expiry back by `secs`; the time left never exceeds the grant's ttl.
    ExtendGrant {
        id: u32,
        secs: u64,
    },
    Status,
    /// Let a held action continue (and, with `for_secs`, allow the same path and access to
    /// the task for that long without asking again).
    Approve {
        id: u32,
        for_secs: Option<u64>,
    },
    /// Refuse a held action: the syscall fails with EPERM.
    Deny {
        id: u32,
    },
    ListApprovals,
    /// From inside a task: the step the agent is taking now. Never changes the grant.
    DeclareIntent {
        intent: String,
    },
    /// From the first process of a task opened with `hold_asks`, once, before it runs the
    /// agent: take its seccomp listener (descriptor `listener_fd` of the caller, through
    /// `pidfd_getfd`) and hold the opens and execs `ask` rules match until a human decides.
    SuperviseTask {
        listener_fd: i32,
    },
    /// From inside a task opened from a profile with `requestable` rules: ask for more access
    /// for `duration_secs`, giving a reason. Answered with the approval (state `pending`), or
    /// refused at once when the rules are not requestable. Nothing widens until approvers
    /// allowed by the profile approve it.
    RequestAccess {
        rules: AccessRules,
        duration_secs: u64,
        reason: String,
    },
    /// From inside a task: its grant as in force now, what it may request, and the approved
    /// requests widening it.
    GetGrant,
}

/// Rules an access request asks for, in the grant's syntax (allow rules only).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccessRules {
    #[serde(default)]
    pub files: crate::grant::FileRules,
    #[serde(default)]
    pub exec: Vec<crate::grant::FileRule>,
    #[serde(default)]
    pub connect: Vec<crate::grant::NetRule>,
}

impl AccessRules {
    /// As a grant spec (the form the coverage check and the compiler take).
    pub fn spec(&self) -> crate::grant::GrantSpec {
        crate::grant::GrantSpec {
            files: self.files.clone(),
            exec: self.exec.clone(),
            network: crate::grant::NetworkRules { connect: self.connect.clone(), listen: Vec::new() },
            ..Default::default()
        }
    }
}

/// A task's grant as the task itself sees it (`GetGrant`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GrantView {
    pub task: TaskInfo,
    /// The rules in force now, approved requests included.
    pub rules: Vec<String>,
    /// What the task may request (empty: nothing), and for how long at most.
    #[serde(default)]
    pub requestable: Vec<String>,
    #[serde(default)]
    pub max_request_secs: u64,
    /// Approved requests widening the grant now.
    #[serde(default)]
    pub widenings: Vec<WideningInfo>,
}

/// An approved request in force.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WideningInfo {
    pub approval: u32,
    pub rules: Vec<String>,
    /// RFC 3339: when the rules leave the grant.
    pub until: String,
}

/// One response line: the API version and the answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    pub version: u32,
    #[serde(flatten)]
    pub body: ResponseBody,
}

/// The answer to a request (`result`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case", deny_unknown_fields)]
pub enum ResponseBody {
    TaskOpened {
        task: TaskInfo,
        /// The ruleset to apply before running the agent: the task is at the `landlock` level.
        #[serde(default)]
        landlock: Option<LandlockRuleset>,
    },
    Tasks {
        tasks: Vec<TaskInfo>,
    },
    TaskStopped {
        task: TaskInfo,
    },
    /// A task after a change to its grant.
    Task {
        task: TaskInfo,
    },
    Status {
        status: StatusInfo,
    },
    Approval {
        approval: ApprovalInfo,
    },
    Approvals {
        approvals: Vec<ApprovalInfo>,
    },
    Grant {
        grant: GrantView,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// Why a request was refused (`code` of an `error` result).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    UnsupportedVersion,
    InvalidGrant,
    NotFound,
    Forbidden,
    Kernel,
}

/// A task as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
// Not deny_unknown_fields: a newer daemon may add fields within API version 1, and an older
// client (one baked into an agent's image) must still read the answer (docs/api.md).
pub struct TaskInfo {
    pub id: u32,
    /// The task this one was opened from (a delegated sub-task), if any.
    pub parent: Option<u32>,
    pub agent: String,
    pub intent: String,
    /// The step the agent declared last (`agent-guard intent`), if any.
    pub step_intent: Option<String>,
    pub grant: String,
    pub grant_source: String,
    pub mode: crate::grant::Mode,
    pub state: TaskState,
    pub root_pid: u32,
    /// RFC 3339.
    pub started: String,
    pub expires: String,
    pub ended: Option<String>,
    pub live_processes: u64,
    /// Seconds until the grant expires (0 once expired or revoked).
    pub remaining_secs: u64,
    /// Whether the grant was revoked (`agent-guard grant revoke`, or the task stopped).
    pub revoked: bool,
    /// Reported actions so far, by "decision rule" (e.g. "denied default-deny").
    pub counts: std::collections::BTreeMap<String, u64>,
    /// The Landlock ABI the task's first process confined itself with (the `landlock` level
    /// for its files and execs); none when the task is at the `lsm` or `kill` level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landlock_abi: Option<u32>,
    /// The container the task runs in, from its opener's cgroup (daemon/container.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<crate::daemon::container::Container>,
}

/// A Landlock ruleset compiled from a task's grant, which `agent-guard run` applies to itself
/// before it runs the agent. It covers the grant's `allow` and `flag` rules; the eBPF programs
/// narrow it to the grant (see docs/design.md, "The landlock level").
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LandlockRuleset {
    /// The ABI the ruleset is built for (the one the caller asked for).
    pub abi: u32,
    /// What the task may do beneath each path.
    pub paths: Vec<LandlockPath>,
    /// The capabilities the task keeps (the grant's `capabilities`); every other one is dropped
    /// from all of the process's sets, its bounding set included.
    pub capabilities: Vec<String>,
    /// The guard's process, which the task may not signal (confine/seccomp.rs).
    pub guard_pid: u32,
    /// The grant has `ask` rules and no enclosing task's supervisor holds its calls: install
    /// the listener filter (confine/notify.rs) and hand it over with `SuperviseTask`.
    #[serde(default)]
    pub hold_asks: bool,
}

/// One path of a [`LandlockRuleset`]: a file, or a directory and everything beneath it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
#[expect(clippy::struct_excessive_bools, reason = "the wire form: one independent yes/no per right and for the tree")]
pub struct LandlockPath {
    pub path: String,
    /// Whether the grant names what lies beneath a directory at `path` (`DIR/**`, `DIR/*`);
    /// false for an exact path, which, where it is a directory, gives only its listing.
    pub beneath: bool,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Open,
    /// Its last process exited.
    Closed,
    /// Stopped by an operator: processes killed, grant revoked.
    Stopped,
}

/// An action held in the kernel until a human decides.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
// Not deny_unknown_fields: a newer daemon may add fields within API version 1, and an older
// client (one baked into an agent's image) must still read the answer (docs/api.md).
pub struct ApprovalInfo {
    pub id: u32,
    pub task: u32,
    pub agent: String,
    pub intent: String,
    pub pid: u32,
    /// `file` or `exec`.
    pub object: String,
    pub path: String,
    pub access: Vec<String>,
    /// RFC 3339.
    pub requested: String,
    /// When it is refused if nobody answers.
    pub deadline: String,
    pub state: ApprovalState,
    /// For an access request (`object: access`): what was asked, why, and who approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestInfo>,
}

/// Where a held action or an access request is in its life.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// Waiting for a human (or, under the two-person rule, for another one).
    Pending,
    Approved,
    Denied,
    /// Nobody answered within the approval timeout: refused.
    TimedOut,
    /// Refused by the daemon: too many actions of the task were waiting, or an approved
    /// request's rules could not be added to the grant.
    Refused,
    /// An approved request's time was up: its rules left the grant.
    Ended,
}

impl ApprovalState {
    /// The wire name (`timed_out`).
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::TimedOut => "timed_out",
            ApprovalState::Refused => "refused",
            ApprovalState::Ended => "ended",
        }
    }

    /// In words, for a message to a human (`timed out`).
    pub fn words(self) -> &'static str {
        match self {
            ApprovalState::TimedOut => "timed out",
            other => other.as_str(),
        }
    }
}

impl std::fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`: tables align it with `{:<10}`.
        f.pad(self.as_str())
    }
}

/// What an access request asks, and how far its approval has come.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequestInfo {
    pub rules: Vec<String>,
    pub duration_secs: u64,
    /// The agent's reason (untrusted text).
    pub reason: String,
    /// Different approvers needed: 2 under the two-person rule.
    pub approvals_needed: u32,
    /// Who approved so far ("slack U024BE7LH (alice)").
    #[serde(default)]
    pub approved_by: Vec<String>,
    /// RFC 3339: when the added rules leave the grant (once approved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// The daemon's state (`agent-guard status`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
// Not deny_unknown_fields: a newer daemon may add fields within API version 1, and an older
// client (one baked into an agent's image) must still read the answer (docs/api.md).
pub struct StatusInfo {
    pub version: String,
    pub kernel: String,
    pub enforcement: Enforcement,
    pub open_tasks: usize,
    pub pending_approvals: usize,
    pub events_dropped: u64,
    /// Policy files in force, from the daemon's policy directory.
    pub policy_dir: String,
    pub policies: Vec<String>,
    /// Kernel maps that bound how much the daemon accepts.
    pub maps: Vec<MapUse>,
    /// Whether the programs outlive the daemon (their links are pinned in bpffs): if not, a
    /// daemon that dies leaves its tasks unconfined until the next one stops them.
    pub survives_daemon: bool,
    /// Approval-channel callbacks refused since start (forged, stale, unknown, not allowed).
    #[serde(default)]
    pub refused_callbacks: u64,
}

/// How full a kernel map is.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
// Not deny_unknown_fields: a newer daemon may add fields within API version 1, and an older
// client (one baked into an agent's image) must still read the answer (docs/api.md).
pub struct MapUse {
    pub name: String,
    pub used: u64,
    pub size: u32,
}

/// How each capability is enforced on this kernel (never more than what is loaded).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
// Not deny_unknown_fields: a newer daemon may add fields within API version 1, and an older
// client (one baked into an agent's image) must still read the answer (docs/api.md).
pub struct Enforcement {
    pub network: Level,
    pub file: Level,
    pub exec: Level,
}

/// Enforcement levels, strongest last.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Reported only.
    Observe,
    /// The process is killed at syscall entry (the syscall's effects may happen).
    Kill,
    /// Refused by Landlock (EACCES) on the object the kernel resolved, in a ruleset the task
    /// applied to itself; what the ruleset allows beyond the grant is killed.
    Landlock,
    /// Refused by a cgroup program.
    Cgroup,
    /// Refused by a BPF LSM hook on the object the kernel resolved.
    Lsm,
}

impl Level {
    /// The name on the wire and in the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Observe => "observe",
            Level::Kill => "kill",
            Level::Landlock => "landlock",
            Level::Cgroup => "cgroup",
            Level::Lsm => "lsm",
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(task_extra: &str, landlock_extra: &str) -> serde_json::Result<Response> {
        serde_json::from_str(&format!(
            r#"{{"version": 1, "result": "task_opened",
                "task": {{"id": 3, "parent": null, "agent": "a", "intent": "i", "step_intent": null,
                         "grant": "g", "grant_source": "s", "mode": "enforce", "state": "open",
                         "root_pid": 9, "started": "t", "expires": "t", "ended": null,
                         "live_processes": 1, "remaining_secs": 60, "revoked": false, "counts": {{}},
                         "container": {{"id": "c", "runtime": "containerd"{task_extra}}}{task_extra}}},
                "landlock": {{"abi": 6, "paths": [], "capabilities": [], "guard_pid": 1{landlock_extra}}}}}"#
        ))
    }

    #[test]
    fn an_older_client_reads_new_task_fields_but_not_new_landlock_ones() {
        assert!(opened("", "").is_ok());
        // A field a newer daemon added to the task (and its container): read, ignored.
        assert!(opened(r#", "added_later": 1"#, "").is_ok());
        // One added to the ruleset could be a restriction this client would not apply: refused.
        let err = opened("", r#", "added_later": 1"#).unwrap_err();
        assert!(err.to_string().contains("added_later"), "{err}");
    }

    #[test]
    fn approval_states_keep_the_names_clients_know_and_pad_in_tables() {
        use ApprovalState::{Approved, Denied, Ended, Pending, Refused, TimedOut};
        let names = ["pending", "approved", "denied", "timed_out", "refused", "ended"];
        for (state, name) in [Pending, Approved, Denied, TimedOut, Refused, Ended].into_iter().zip(names) {
            assert_eq!(serde_json::to_value(state).unwrap(), serde_json::json!(name));
            assert_eq!(serde_json::from_value::<ApprovalState>(serde_json::json!(name)).unwrap(), state);
            assert_eq!(state.as_str(), name);
        }
        assert_eq!(TimedOut.words(), "timed out");
        assert_eq!(format!("[{Pending:<9}]"), "[pending  ]");
        assert_eq!(format!("[{:<8}]", crate::grant::Mode::Audit), "[audit   ]");
        assert_eq!(serde_json::to_value(crate::grant::Mode::Enforce).unwrap(), serde_json::json!("enforce"));
    }
}
