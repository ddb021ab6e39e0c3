//! The event schema (v1, docs/events.md): one JSON object per line.

use serde::Serialize;

pub const SCHEMA: &str = "agent-guard.event/v1";

#[derive(Clone, Debug, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Event {
    pub schema: &'static str,
    /// RFC 3339, UTC.
    pub time: String,
    pub host: String,
    /// UUIDv7, unique per event: receivers use it to de-duplicate.
    pub event_id: String,
    pub kind: Kind,
    /// What happened to the action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// What the grant says should happen (differs from `decision` where the kernel can only observe).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_decision: Option<PolicyDecision>,
    /// How the decision was carried out: `cgroup` (cgroup sock_addr program), `observe`
    /// (seen at syscall entry, not blocked), `none` (task lifecycle).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<Object>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// The approval a held action waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<u32>,
    /// Who asked for a control action (task open, stop, revoke, extend, approval), as the
    /// kernel names the API caller (SO_PEERPIDFD, SO_PEERCRED).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    /// On `task.open`: the grant as issued (after templates and profiles are applied).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_spec: Option<crate::grant::GrantSpec>,
    /// On `task.stop` and `task.close`: the grant's rules by use, and what was touched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The event stands for `count` identical ones of one process (flood control).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub aggregated: bool,
}

/// What a task did within its grant, from the kernel's first-use records: which allow rules
/// were used, which were not (a narrower grant would do), and what was touched.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Usage {
    /// False when kernel records were lost (guard.events_dropped) while the task ran: a rule
    /// listed unused may have been used.
    pub complete: bool,
    pub used: Vec<String>,
    pub unused: Vec<String>,
    /// Directories and destinations beyond the first 1,024 of each, counted but not listed.
    pub truncated: u64,
    /// Directory -> distinct files opened or executed in it, allowed.
    pub touched: std::collections::BTreeMap<String, u64>,
    /// `address:port/protocol` -> 1 per destination reached, allowed.
    pub destinations: std::collections::BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Actor {
    pub pid: u32,
    pub uid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl Actor {
    pub fn new(pid: u32, uid: u32) -> Actor {
        let user = nix::unistd::User::from_uid(uid.into()).ok().flatten().map(|u| u.name);
        Actor { pid, uid, user }
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.user {
            Some(user) => write!(f, "process {} (uid {} {user})", self.pid, self.uid),
            None => write!(f, "process {} (uid {})", self.pid, self.uid),
        }
    }
}

#[derive(Clone, Copy, Debug, Hash, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub enum Kind {
    #[serde(rename = "task.open")]
    TaskOpen,
    #[serde(rename = "task.close")]
    TaskClose,
    #[serde(rename = "task.stop")]
    TaskStop,
    /// The agent declared a step (`task.step` and `reason` hold it).
    #[serde(rename = "task.intent")]
    TaskIntent,
    #[serde(rename = "grant.revoke")]
    GrantRevoke,
    #[serde(rename = "grant.extend")]
    GrantExtend,
    #[serde(rename = "network.connect")]
    NetworkConnect,
    #[serde(rename = "network.send")]
    NetworkSend,
    #[serde(rename = "file.open")]
    FileOpen,
    /// A change to the file tree: create, unlink, mkdir, rmdir, rename, link, symlink,
    /// truncate, chmod, chown (`object.operation`).
    #[serde(rename = "file.change")]
    FileChange,
    #[serde(rename = "process.exec")]
    ProcessExec,
    #[serde(rename = "guard.events_dropped")]
    EventsDropped,
    /// An output could not take `count` events (queue or spool full, or refused by the
    /// receiver); `reason` names the output.
    #[serde(rename = "guard.output_dropped")]
    OutputDropped,
    /// `count` delivery attempts of an output failed (they are retried, or counted as dropped).
    #[serde(rename = "guard.output_failed")]
    OutputFailed,
    #[serde(rename = "guard.tag_lost")]
    TagLost,
    /// A tagged process tried to signal or trace the daemon, or to use bpf(2): refused.
    #[serde(rename = "guard.tamper")]
    Tamper,
    /// A tagged process tried to leave its task's boundary by a route no grant opens (a
    /// privilege, a mount, a namespace, another process, a socket family, a device, a listen
    /// the grant does not allow, or access after its grant ended): refused (`object.route`).
    #[serde(rename = "task.escape")]
    TaskEscape,
    /// An action held in the kernel by an `ask` rule; `approval` names it for
    /// `agent-guard approve|deny`.
    #[serde(rename = "approval.request")]
    ApprovalRequest,
    #[serde(rename = "approval.granted")]
    ApprovalGranted,
    #[serde(rename = "approval.denied")]
    ApprovalDenied,
    #[serde(rename = "guard.start")]
    GuardStart,
    #[serde(rename = "guard.stop")]
    GuardStop,
    /// A daemon started over the kernel state a previous one left pinned (it was killed,
    /// crashed or was upgraded): `reason` says how long no daemon ran and which tasks were
    /// adopted. The kernel enforced every task throughout; events it recorded meanwhile follow.
    #[serde(rename = "guard.adopt")]
    GuardAdopt,
    /// The policy directory was (re)loaded; `reason` lists what it holds.
    #[serde(rename = "policy.load")]
    PolicyLoad,
    /// A reload did not validate: the previous policies stay in force; `reason` says why.
    #[serde(rename = "policy.rejected")]
    PolicyRejected,
}

#[derive(Clone, Copy, Debug, Hash, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allowed,
    Denied,
    Flagged,
    /// Stopped inside the kernel until a human decides.
    Held,
}

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicyDecision {
    Deny,
    Flag,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Process {
    pub pid: u32,
    pub tid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ppid: Option<u32>,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// This process image (`BOOT-TGID-NS`): unique, stable across pid reuse; a new one at
    /// every exec. Absent for untagged processes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec_id: Option<String>,
    /// The image that forked this process (absent for a task's first process).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_exec_id: Option<String>,
    /// Exec ids of the ancestors, nearest first, up to the task's root process.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ancestry: Vec<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct TaskRef {
    pub id: u32,
    pub agent: String,
    pub intent: String,
    pub grant: String,
    /// The task that opened this one (delegation), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<u32>,
    /// The step the agent declared last (`agent-guard intent`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Object {
    Network {
        address: String,
        port: u16,
        protocol: String,
    },
    File {
        path: String,
        access: Vec<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        operation: Option<&'static str>,
    },
    Executable {
        path: String,
    },
    /// The route of a `task.escape`: capability, mount, chroot, namespace, socket, listen,
    /// ptrace, signal, scheduling, device, file_owner, module, perf_event, after_grant_end,
    /// fork, unix_abstract, cgroup, key; `detail` says what it aimed at, `target_pid` the
    /// process acted on.
    Escape {
        route: &'static str,
        detail: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        target_pid: Option<u32>,
    },
}

impl Event {
    pub fn new(kind: Kind, host: &str, time: std::time::SystemTime) -> Event {
        Event {
            schema: SCHEMA,
            time: crate::daemon::clock::rfc3339(time),
            host: host.to_string(),
            event_id: uuid::Uuid::now_v7().to_string(),
            kind,
            decision: None,
            policy_decision: None,
            enforcement: None,
            process: None,
            task: None,
            object: None,
            rule: None,
            reason: None,
            count: None,
            approval: None,
            actor: None,
            usage: None,
            grant_spec: None,
            aggregated: false,
        }
    }
}

/// The JSON Schema of an event line (docs/event.schema.json).
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Event);
    serde_json::to_string_pretty(&schema).expect("schemas serialize") + "\n"
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_committed_event_schema_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/event.schema.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == super::json_schema(),
            "{} is stale: regenerate it with `cargo xtask codegen`",
            path.display()
        );
    }
}
