//! The event schema (v1, docs/events.md): one JSON object per line.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::api::{Enforcement, Level};

pub const SCHEMA: &str = "agent-guard.event/v1";

/// One event: the envelope every kind shares (when, where, which process of which task), and
/// the kind with its own payload (`body`, flattened: `kind` is a field of the line).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Event {
    pub schema: Cow<'static, str>,
    /// RFC 3339, UTC.
    pub time: String,
    pub host: String,
    /// `UUIDv7`, unique per event: receivers use it to de-duplicate.
    #[expect(clippy::struct_field_names, reason = "the wire name of the field (docs/events.md)")]
    pub event_id: String,
    #[serde(flatten)]
    pub body: Body,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    // Shared with the task's other events: built once per declared step (tasks/registry.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<std::sync::Arc<TaskRef>>,
    /// The event stands for `count` identical ones of one process (flood control).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub aggregated: bool,
    /// On an aggregated event: how many identical events it stands for.
    #[serde(rename = "count", default, skip_serializing_if = "Option::is_none")]
    pub repeats: Option<u64>,
}

/// What happened, by kind, with what that kind carries.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(tag = "kind")]
pub enum Body {
    /// A task was opened: `grant_spec` is the grant as issued (after templates and profiles).
    #[serde(rename = "task.open")]
    TaskOpen(TaskOpened),
    /// The task's last process exited.
    #[serde(rename = "task.close")]
    TaskClose(TaskEnded),
    /// An operator (or the daemon) stopped the task: grant revoked, processes killed.
    #[serde(rename = "task.stop")]
    TaskStop(TaskEnded),
    /// The agent declared a step (`task.step` and `reason` hold it).
    #[serde(rename = "task.intent")]
    TaskIntent(Control),
    #[serde(rename = "grant.revoke")]
    GrantRevoke(Control),
    #[serde(rename = "grant.extend")]
    GrantExtend(Control),
    /// An approved access request's rules left the grant: their time was up, or the task
    /// ended (`reason` names the request).
    #[serde(rename = "grant.narrow")]
    GrantNarrow(Narrowed),
    #[serde(rename = "network.connect")]
    NetworkConnect(Action<NetworkObject>),
    #[serde(rename = "network.send")]
    NetworkSend(Action<NetworkObject>),
    /// A DNS question of a task, answered by its resolver in the daemon: forwarded (a name rule
    /// allows it; `object.answers` are then allowed for that rule's ports) or refused.
    #[serde(rename = "network.dns")]
    NetworkDns(Action<DnsObject>),
    #[serde(rename = "file.open")]
    FileOpen(Action<FileObject>),
    /// A change to the file tree: create, unlink, mkdir, rmdir, rename, link, symlink,
    /// truncate, chmod, chown (`object.operation`).
    #[serde(rename = "file.change")]
    FileChange(Action<FileObject>),
    #[serde(rename = "process.exec")]
    ProcessExec(Action<ExecObject>),
    /// A tagged process tried to leave its task's boundary by a route no grant opens (a
    /// privilege, a mount, a namespace, another process, a socket family, a device, a listen
    /// the grant does not allow, or access after its grant ended): refused (`object.route`).
    #[serde(rename = "task.escape")]
    TaskEscape(Action<EscapeObject>),
    /// An action held in the kernel by an `ask` rule, or a task's request for more access
    /// (`object.requested`); `approval` names it for `agent-guard approve|deny` and the
    /// approval channels.
    #[serde(rename = "approval.request")]
    ApprovalRequest(Held),
    #[serde(rename = "approval.granted")]
    ApprovalGranted(Answer),
    #[serde(rename = "approval.denied")]
    ApprovalDenied(Answer),
    /// An approval channel's callback was refused (bad or missing signature, stale timestamp,
    /// unknown approval, not an approver, self-approval): nothing was decided.
    #[serde(rename = "approval.callback_refused")]
    CallbackRefused(Note),
    /// A tagged process tried to signal or trace the daemon, or to use bpf(2): refused.
    #[serde(rename = "guard.tamper")]
    Tamper(Verdict),
    /// A child of a tagged process could not be tagged (the tag map is full): killed.
    #[serde(rename = "guard.tag_lost")]
    TagLost(Verdict),
    /// The kernel's ring buffer was full: `lost` records were dropped.
    #[serde(rename = "guard.events_dropped")]
    EventsDropped(Loss),
    /// An output could not take `lost` events (queue or spool full, or refused by the
    /// receiver); `reason` names the output.
    #[serde(rename = "guard.output_dropped")]
    OutputDropped(Loss),
    /// `lost` delivery attempts of an output failed (they are retried, or counted as dropped).
    #[serde(rename = "guard.output_failed")]
    OutputFailed(Loss),
    /// The daemon started; `levels` says how each capability is enforced on this kernel.
    #[serde(rename = "guard.start")]
    GuardStart(Started),
    #[serde(rename = "guard.stop")]
    GuardStop(Note),
    /// A daemon started over the kernel state a previous one left pinned (it was killed,
    /// crashed or was upgraded): `reason` says how long no daemon ran and which tasks were
    /// adopted. The kernel enforced every task throughout; events it recorded meanwhile follow.
    #[serde(rename = "guard.adopt")]
    GuardAdopt(Adopted),
    /// The policy directory was (re)loaded; `reason` lists what it holds.
    #[serde(rename = "policy.load")]
    PolicyLoad(Note),
    /// A reload did not validate: the previous policies stay in force; `reason` says why.
    #[serde(rename = "policy.rejected")]
    PolicyRejected(Note),
    /// A kind this version does not know (written by a newer daemon): read from a store, never
    /// written.
    #[serde(other)]
    Unknown,
}

// Reading is lenient where it costs nothing (`default` on reasons and usage): the audit store
// keeps events of older daemons, and the report must still read them.

/// How the guard decided an action, and why.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Verdict {
    /// What happened to the action.
    pub decision: Decision,
    /// What the grant says should happen (differs from `decision` where the kernel can only observe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_decision: Option<PolicyDecision>,
    /// How the decision was carried out: `lsm` (BPF LSM hook), `cgroup` (cgroup `sock_addr`
    /// program), `kill` (the process was killed at syscall entry), `observe` (seen, not blocked).
    pub enforcement: Level,
    /// The rule that decided: a grant's rule, `default-deny`, `grant.ttl`, `task.stopped`, `ask`,
    /// `guard.containment`, `guard.self_protection`, `guard.tag_limit`.
    pub rule: String,
    #[serde(default)]
    pub reason: String,
}

/// An action on an object, and its verdict.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Action<O> {
    #[serde(flatten)]
    pub verdict: Verdict,
    pub object: O,
}

/// An action held in the kernel until a human decides.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Held {
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The approval it waits for (`agent-guard approve|deny`).
    pub approval: u32,
    pub object: HeldObject,
}

/// The object an event is about, whatever its kind (`Body::object`).
#[derive(Clone, Copy, Debug)]
pub enum ObjectRef<'a> {
    Network(&'a NetworkObject),
    Dns(&'a DnsObject),
    File(&'a FileObject),
    Executable(&'a ExecObject),
    Escape(&'a EscapeObject),
    Access(&'a AccessObject),
}

/// What a held action would touch.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(untagged)]
pub enum HeldObject {
    /// First: the only one with `requested`, which the others lack.
    Access(AccessObject),
    /// A connect (BPF LSM): `address`, `port`, `protocol`, which the others lack.
    Network(NetworkObject),
    File(FileObject),
    Executable(ExecObject),
}

/// What a task asked for (`agent-guard request`): rules to add to its grant, for how long, why.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct AccessObject {
    /// The rules asked for, in the grant's syntax (allow rules only).
    pub requested: crate::grant::GrantSpec,
    /// For how long, in seconds (at most the profile's `requestable.maxDuration`).
    pub duration_secs: u64,
    /// The agent's reason, as it gave it (untrusted text).
    pub reason: String,
    /// Different approvers needed (2 under a `twoPerson` entry).
    pub approvals_needed: u32,
    /// The task's process that asked, as the kernel names the API caller.
    pub requester: Actor,
}

/// Who decided, on which channel.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Approver {
    pub channel: Channel,
    /// The channel's id of the person: `uid:N` (cli), the Slack user id, the Entra object id
    /// (teams), the user a webhook callback names.
    pub id: String,
    /// The person's name as the channel gives it (untrusted display text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Where an approver answered.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Cli,
    Slack,
    Teams,
    Webhook,
}

impl std::fmt::Display for Approver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let channel = crate::api::wire_name(&self.channel);
        match &self.name {
            Some(name) => write!(f, "{name} ({channel} {})", self.id),
            None => write!(f, "{channel} {}", self.id),
        }
    }
}

/// A human's answer to a held action.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Answer {
    #[serde(flatten)]
    pub verdict: Verdict,
    pub approval: u32,
    /// The local process that answered through the API (absent for the other channels, and
    /// when the daemon refused it: timeout, task ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    /// Who decided, whatever the channel; two under the two-person rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<Approver>,
}

/// The payload of `task.open`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct TaskOpened {
    /// Who asked for the task, as the kernel names the API caller (always written; absent in
    /// events of early versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    /// The grant as issued (after templates and profiles are applied).
    #[serde(default)]
    pub grant_spec: crate::grant::GrantSpec,
    #[serde(default)]
    pub reason: String,
}

/// The payload of `task.stop` and `task.close`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct TaskEnded {
    /// Who stopped it, if an operator did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    /// The grant's rules by use, and what was touched (always written; absent in events of
    /// early versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default)]
    pub reason: String,
}

/// A control request about a task (revoke, extend, a declared step).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Control {
    /// Who asked, as the kernel names the API caller (`SO_PEERPIDFD`, `SO_PEERCRED`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    #[serde(default)]
    pub reason: String,
}

/// The payload of `grant.narrow`: which approved request's rules left the grant.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Narrowed {
    pub approval: u32,
    #[serde(default)]
    pub reason: String,
}

/// A payload that is only a sentence.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Note {
    #[serde(default)]
    pub reason: String,
}

/// The payload of `guard.events_dropped` and `guard.output_*`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Loss {
    /// Events (or delivery attempts, for `guard.output_failed`) lost since the last report.
    pub lost: u64,
    #[serde(default)]
    pub reason: String,
}

/// The payload of `guard.start`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Started {
    /// How each capability is enforced on this kernel (never more than what is loaded).
    pub levels: Enforcement,
    #[serde(default)]
    pub reason: String,
}

/// The payload of `guard.adopt`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Adopted {
    /// Open tasks taken over from the previous daemon.
    pub adopted: u64,
    #[serde(default)]
    pub reason: String,
}

/// What a task did within its grant, from the kernel's first-use records: which allow rules
/// were used, which were not (a narrower grant would do), and what was touched.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(default)]
pub struct Usage {
    /// False when kernel records were lost (`guard.events_dropped`) while the task ran: a rule
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

/// Who made a control request: the API caller as the kernel names it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Actor {
    pub pid: u32,
    pub uid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

/// An event's kind without its payload: for metric labels, flood-control keys and queries.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Kind {
    TaskOpen,
    TaskClose,
    TaskStop,
    TaskIntent,
    GrantRevoke,
    GrantExtend,
    GrantNarrow,
    NetworkConnect,
    NetworkSend,
    NetworkDns,
    FileOpen,
    FileChange,
    ProcessExec,
    TaskEscape,
    ApprovalRequest,
    ApprovalGranted,
    ApprovalDenied,
    CallbackRefused,
    Tamper,
    TagLost,
    EventsDropped,
    OutputDropped,
    OutputFailed,
    GuardStart,
    GuardStop,
    GuardAdopt,
    PolicyLoad,
    PolicyRejected,
    Unknown,
}

impl Kind {
    /// The name on the wire (`kind` of the line).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::TaskOpen => "task.open",
            Kind::TaskClose => "task.close",
            Kind::TaskStop => "task.stop",
            Kind::TaskIntent => "task.intent",
            Kind::GrantRevoke => "grant.revoke",
            Kind::GrantExtend => "grant.extend",
            Kind::GrantNarrow => "grant.narrow",
            Kind::NetworkConnect => "network.connect",
            Kind::NetworkSend => "network.send",
            Kind::NetworkDns => "network.dns",
            Kind::FileOpen => "file.open",
            Kind::FileChange => "file.change",
            Kind::ProcessExec => "process.exec",
            Kind::TaskEscape => "task.escape",
            Kind::ApprovalRequest => "approval.request",
            Kind::ApprovalGranted => "approval.granted",
            Kind::ApprovalDenied => "approval.denied",
            Kind::CallbackRefused => "approval.callback_refused",
            Kind::Tamper => "guard.tamper",
            Kind::TagLost => "guard.tag_lost",
            Kind::EventsDropped => "guard.events_dropped",
            Kind::OutputDropped => "guard.output_dropped",
            Kind::OutputFailed => "guard.output_failed",
            Kind::GuardStart => "guard.start",
            Kind::GuardStop => "guard.stop",
            Kind::GuardAdopt => "guard.adopt",
            Kind::PolicyLoad => "policy.load",
            Kind::PolicyRejected => "policy.rejected",
            Kind::Unknown => "unknown",
        }
    }
}

impl Body {
    pub fn kind(&self) -> Kind {
        match self {
            Body::TaskOpen(_) => Kind::TaskOpen,
            Body::TaskClose(_) => Kind::TaskClose,
            Body::TaskStop(_) => Kind::TaskStop,
            Body::TaskIntent(_) => Kind::TaskIntent,
            Body::GrantRevoke(_) => Kind::GrantRevoke,
            Body::GrantExtend(_) => Kind::GrantExtend,
            Body::GrantNarrow(_) => Kind::GrantNarrow,
            Body::NetworkConnect(_) => Kind::NetworkConnect,
            Body::NetworkSend(_) => Kind::NetworkSend,
            Body::NetworkDns(_) => Kind::NetworkDns,
            Body::FileOpen(_) => Kind::FileOpen,
            Body::FileChange(_) => Kind::FileChange,
            Body::ProcessExec(_) => Kind::ProcessExec,
            Body::TaskEscape(_) => Kind::TaskEscape,
            Body::ApprovalRequest(_) => Kind::ApprovalRequest,
            Body::ApprovalGranted(_) => Kind::ApprovalGranted,
            Body::ApprovalDenied(_) => Kind::ApprovalDenied,
            Body::CallbackRefused(_) => Kind::CallbackRefused,
            Body::Tamper(_) => Kind::Tamper,
            Body::TagLost(_) => Kind::TagLost,
            Body::EventsDropped(_) => Kind::EventsDropped,
            Body::OutputDropped(_) => Kind::OutputDropped,
            Body::OutputFailed(_) => Kind::OutputFailed,
            Body::GuardStart(_) => Kind::GuardStart,
            Body::GuardStop(_) => Kind::GuardStop,
            Body::GuardAdopt(_) => Kind::GuardAdopt,
            Body::PolicyLoad(_) => Kind::PolicyLoad,
            Body::PolicyRejected(_) => Kind::PolicyRejected,
            Body::Unknown => Kind::Unknown,
        }
    }

    /// The verdict of an action, a held action or an answer.
    pub fn verdict(&self) -> Option<&Verdict> {
        match self {
            Body::NetworkConnect(a) | Body::NetworkSend(a) => Some(&a.verdict),
            Body::NetworkDns(a) => Some(&a.verdict),
            Body::FileOpen(a) | Body::FileChange(a) => Some(&a.verdict),
            Body::ProcessExec(a) => Some(&a.verdict),
            Body::TaskEscape(a) => Some(&a.verdict),
            Body::ApprovalRequest(h) => Some(&h.verdict),
            Body::ApprovalGranted(a) | Body::ApprovalDenied(a) => Some(&a.verdict),
            Body::Tamper(v) | Body::TagLost(v) => Some(v),
            Body::TaskOpen(_)
            | Body::TaskClose(_)
            | Body::TaskStop(_)
            | Body::TaskIntent(_)
            | Body::GrantRevoke(_)
            | Body::GrantExtend(_)
            | Body::GrantNarrow(_)
            | Body::EventsDropped(_)
            | Body::OutputDropped(_)
            | Body::OutputFailed(_)
            | Body::GuardStart(_)
            | Body::GuardStop(_)
            | Body::GuardAdopt(_)
            | Body::PolicyLoad(_)
            | Body::CallbackRefused(_)
            | Body::PolicyRejected(_)
            | Body::Unknown => None,
        }
    }

    /// The object of an action or a held action; None for the kinds that have none.
    pub fn object(&self) -> Option<ObjectRef<'_>> {
        match self {
            Body::NetworkConnect(a) | Body::NetworkSend(a) => Some(ObjectRef::Network(&a.object)),
            Body::NetworkDns(a) => Some(ObjectRef::Dns(&a.object)),
            Body::FileOpen(a) | Body::FileChange(a) => Some(ObjectRef::File(&a.object)),
            Body::ProcessExec(a) => Some(ObjectRef::Executable(&a.object)),
            Body::TaskEscape(a) => Some(ObjectRef::Escape(&a.object)),
            Body::ApprovalRequest(h) => Some(match &h.object {
                HeldObject::Access(access) => ObjectRef::Access(access),
                HeldObject::Network(net) => ObjectRef::Network(net),
                HeldObject::File(file) => ObjectRef::File(file),
                HeldObject::Executable(exe) => ObjectRef::Executable(exe),
            }),
            Body::TaskOpen(_)
            | Body::TaskClose(_)
            | Body::TaskStop(_)
            | Body::TaskIntent(_)
            | Body::GrantRevoke(_)
            | Body::GrantExtend(_)
            | Body::GrantNarrow(_)
            | Body::ApprovalGranted(_)
            | Body::ApprovalDenied(_)
            | Body::Tamper(_)
            | Body::TagLost(_)
            | Body::EventsDropped(_)
            | Body::OutputDropped(_)
            | Body::OutputFailed(_)
            | Body::GuardStart(_)
            | Body::GuardStop(_)
            | Body::GuardAdopt(_)
            | Body::PolicyLoad(_)
            | Body::CallbackRefused(_)
            | Body::PolicyRejected(_)
            | Body::Unknown => None,
        }
    }

    pub fn verdict_mut(&mut self) -> Option<&mut Verdict> {
        match self {
            Body::NetworkConnect(a) | Body::NetworkSend(a) => Some(&mut a.verdict),
            Body::NetworkDns(a) => Some(&mut a.verdict),
            Body::FileOpen(a) | Body::FileChange(a) => Some(&mut a.verdict),
            Body::ProcessExec(a) => Some(&mut a.verdict),
            Body::TaskEscape(a) => Some(&mut a.verdict),
            Body::ApprovalRequest(h) => Some(&mut h.verdict),
            Body::ApprovalGranted(a) | Body::ApprovalDenied(a) => Some(&mut a.verdict),
            Body::Tamper(v) | Body::TagLost(v) => Some(v),
            _ => None,
        }
    }

    /// Why it happened, as the event says.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Body::TaskOpen(b) => Some(&b.reason),
            Body::TaskClose(b) | Body::TaskStop(b) => Some(&b.reason),
            Body::TaskIntent(b) | Body::GrantRevoke(b) | Body::GrantExtend(b) => Some(&b.reason),
            Body::GrantNarrow(b) => Some(&b.reason),
            Body::EventsDropped(b) | Body::OutputDropped(b) | Body::OutputFailed(b) => Some(&b.reason),
            Body::GuardStart(b) => Some(&b.reason),
            Body::GuardStop(b) | Body::PolicyLoad(b) | Body::PolicyRejected(b) => Some(&b.reason),
            Body::GuardAdopt(b) => Some(&b.reason),
            Body::Unknown => None,
            _ => self.verdict().map(|v| v.reason.as_str()),
        }
    }
}

/// What happened to an action.
#[derive(Clone, Copy, Debug, Hash, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allowed,
    Denied,
    Flagged,
    /// Stopped inside the kernel until a human decides.
    Held,
}

/// What the grant says should happen to an action.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicyDecision {
    Deny,
    Flag,
}

/// The process an event is about.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Process {
    pub pid: u32,
    pub tid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ppid: Option<u32>,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// This process image (`BOOT-TGID-NS`): unique, stable across pid reuse; a new one at
    /// every exec. Absent for untagged processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_id: Option<String>,
    /// The image that forked this process (absent for a task's first process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_exec_id: Option<String>,
    /// Exec ids of the ancestors, nearest first, up to the task's root process.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestry: Vec<String>,
}

/// The task an event belongs to, and what it declared.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct TaskRef {
    pub id: u32,
    pub agent: String,
    pub intent: String,
    pub grant: String,
    /// The task that opened this one (delegation), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u32>,
    /// The step the agent declared last (`agent-guard intent`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The container the task runs in (its id and runtime, and the Kubernetes pod's uid),
    /// where its opener ran in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<crate::daemon::container::Container>,
}

/// A destination of a connect or send.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(tag = "type", rename = "network")]
pub struct NetworkObject {
    pub address: String,
    pub port: u16,
    /// `tcp`, `udp` or `ip-proto-N`.
    pub protocol: String,
    /// The name whose DNS answer gave the task this address, where one did (name rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned_from: Option<String>,
}

/// A DNS question and what came of it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(tag = "type", rename = "dns")]
pub struct DnsObject {
    /// The name asked (lowercase, without the trailing dot).
    pub question: String,
    /// The record type asked: `A`, `AAAA`, `TXT`...
    pub qtype: String,
    /// `udp` or `tcp`.
    pub transport: String,
    /// The server the process sent it to, as it believes (`address:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The addresses of the answer (A and AAAA records), each allowed for the deciding name
    /// rules' ports for `ttl` seconds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<String>,
    /// Addresses of the answer that allow nothing: local ones (loopback, link-local,
    /// unspecified, multicast, this host's own) outside the daemon's `dns.localAnswers` (DNS rebinding). Passed
    /// on in the answer all the same; a connect to one is judged by the grant's address rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withheld: Vec<String>,
    /// Seconds the answers stay allowed (their TTL within the daemon's floor and ceiling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// The answer's DNS response code (`NOERROR`, `NXDOMAIN`, `REFUSED`, `SERVFAIL`...).
    pub rcode: String,
    /// A refused name whose labels look like data (long, or close to random): the classic
    /// DNS exfiltration channel.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspected_exfiltration: bool,
}

/// A file opened or changed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(tag = "type", rename = "file")]
pub struct FileObject {
    pub path: String,
    pub access: Vec<Access>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<FileOperation>,
}

/// A program executed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(tag = "type", rename = "executable")]
pub struct ExecObject {
    pub path: String,
}

/// The route of a `task.escape`: capability, mount, chroot, namespace, socket, listen,
/// ptrace, signal, scheduling, device, `file_owner`, module, `perf_event`, `after_grant_end`,
/// fork, `unix_abstract`, cgroup, key; `detail` says what it aimed at, `target_pid` the
/// process acted on.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(tag = "type", rename = "escape")]
pub struct EscapeObject {
    pub route: String,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_pid: Option<u32>,
}

/// An access a file action needs.
#[derive(Clone, Copy, Debug, Hash, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Write,
    Exec,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Exec => "exec",
        }
    }
}

/// What a `file.change` did to the file tree (a Unix-socket connect is a `file.open` for write
/// with the operation `unix_connect`).
#[derive(Clone, Copy, Debug, Hash, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileOperation {
    Create,
    Unlink,
    Mkdir,
    Rmdir,
    RenameFrom,
    RenameTo,
    Link,
    Symlink,
    Truncate,
    Chmod,
    Chown,
    Xattr,
    Setattr,
    UnixConnect,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
            Decision::Flagged => "flagged",
            Decision::Held => "held",
        }
    }
}

impl Event {
    pub fn new(body: Body, host: &str, time: std::time::SystemTime) -> Event {
        Event {
            schema: Cow::Borrowed(SCHEMA),
            time: crate::daemon::clock::rfc3339(time),
            host: host.to_string(),
            event_id: uuid::Uuid::now_v7().to_string(),
            body,
            process: None,
            task: None,
            aggregated: false,
            repeats: None,
        }
    }

    pub fn kind(&self) -> Kind {
        self.body.kind()
    }

    /// What happened to the action (actions, held actions and answers only).
    pub fn decision(&self) -> Option<Decision> {
        self.body.verdict().map(|v| v.decision)
    }

    /// The rule that decided (actions, held actions and answers only).
    pub fn rule(&self) -> Option<&str> {
        self.body.verdict().map(|v| v.rule.as_str())
    }

    /// How many occurrences the event stands for (`count` of an aggregate, else 1).
    pub fn weight(&self) -> u64 {
        if self.aggregated { self.repeats.unwrap_or(1) } else { 1 }
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

    #[test]
    fn an_access_request_reads_back_as_written() {
        use super::{AccessObject, Actor, Body, Decision, Event, Held, HeldObject, Level, Verdict};
        let requested: crate::grant::GrantSpec =
            serde_yaml_ng::from_str("files: {read: [\"/srv/reports/**\"]}\nnetwork: {connect: [\"10.0.0.1:443\"]}")
                .unwrap();
        let verdict = Verdict {
            decision: Decision::Held,
            policy_decision: None,
            enforcement: Level::Landlock,
            rule: "requestable".into(),
            reason: String::new(),
        };
        let object = HeldObject::Access(AccessObject {
            requested,
            duration_secs: 60,
            reason: "need the numbers".into(),
            approvals_needed: 2,
            requester: Actor { pid: 7, uid: 1000, user: None },
        });
        let event =
            Event::new(Body::ApprovalRequest(Held { verdict, approval: 3, object }), "h", std::time::SystemTime::now());
        let line = serde_json::to_string(&event).unwrap();
        assert!(!line.contains("\"ttl\""), "{line}");
        let back: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(back, event);
        // A spec written with `ttl: null` (before it was skipped) reads too.
        let old = line.replace("\"mode\":\"enforce\"", "\"mode\":\"enforce\",\"ttl\":null");
        assert_ne!(old, line);
        assert_eq!(serde_json::from_str::<Event>(&old).unwrap(), event);
    }
}
