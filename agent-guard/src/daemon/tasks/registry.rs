//! The task registry: open tasks and their grants, kept in step with the kernel maps.
//! Every change to the maps goes through here, under one lock, and either completes or is
//! rolled back (nothing half-applied).

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use agent_guard_common::{
    maps,
    path::{APPROVED_SHIFT, PathRule, fnv1a},
    task::{APPROVAL_GRANTED, APPROVAL_REFUSED, MODE_AUDIT, MODE_ENFORCE, STATE_ACTIVE, TaskEntry},
};

use super::state::{Saved, SavedAllow, SavedTask};
use crate::daemon::{
    clock::{self, boot_ns_now},
    events::{
        decode::{HeldAction, TaskFacts, TaskView, Touched, access_names},
        schema::{Actor, Decision, Event, Kind, TaskRef, Usage},
    },
    kernel::{Kernel, KernelError, cgroup},
    output::EventSink,
};
use crate::{
    api::{ApprovalInfo, ErrorCode, MapUse, StatusInfo, TaskInfo, TaskState},
    grant::{CompiledGrant, Grant, Mode},
    policy::PolicySet,
};

pub struct Task {
    pub info: TaskInfo,
    /// The grant in force in the kernel (for a sub-task: with its parent's restrictions).
    pub grant: Grant,
    /// CLOCK_BOOTTIME of the expiry, as in the kernel's task entry.
    expires_ns: u64,
    /// CLOCK_BOOTTIME past which no extension may go (the profile's maxTtl, or for a sub-task
    /// its parent's), if any.
    latest_ns: Option<u64>,
    /// Processes moved from this task into sub-tasks: still counted by the kernel's
    /// per-task counter (which only the kernel changes), subtracted here.
    moved_out: u64,
    compiled: CompiledGrant,
    cgroup: PathBuf,
    /// Allow rules used so far and what was touched (the kernel's first-use records).
    usage: Usage,
    /// Kernel records lost before the task opened (to tell whether its usage is complete).
    drops_at_open: u64,
}

impl Task {
    /// The usage summary: used rules, the allow rules never used, what was touched;
    /// `dropped_total` is the daemon's count of lost kernel records now.
    fn usage(&self, dropped_total: u64) -> Usage {
        let mut usage = self.usage.clone();
        usage.complete = dropped_total == self.drops_at_open;
        usage.used.sort();
        usage.unused = self.grant.allow_rule_names().into_iter().filter(|r| !usage.used.contains(r)).collect();
        usage
    }

    pub fn task_ref(&self) -> TaskRef {
        TaskRef {
            id: self.info.id,
            agent: self.info.agent.clone(),
            intent: self.info.intent.clone(),
            grant: self.info.grant.clone(),
            parent: self.info.parent,
            step: self.info.step_intent.clone(),
        }
    }
}

impl TaskView for Registry {
    fn facts(&self, task_id: u32) -> Option<TaskFacts<'_>> {
        let task = self.tasks.get(&task_id)?;
        Some(TaskFacts { task: task.task_ref(), grant: &task.grant, expires: &task.info.expires })
    }
}

/// An action held in the kernel, waiting for a human.
pub struct Held {
    info: ApprovalInfo,
    tid: u32,
    tgid: u32,
    access: u32,
    hash: u64,
    deadline: Instant,
}

/// A path allowed for a while by `approve --for`, and what to restore when it ends.
struct TemporaryAllow {
    task_id: u32,
    hash: u64,
    previous: Option<PathRule>,
    /// CLOCK_BOOTTIME of the end (saved across daemon restarts, state.rs).
    until_ns: u64,
}

pub struct Registry {
    pub kernel: Kernel,
    pub tasks: BTreeMap<u32, Task>,
    next_id: u32,
    approvals: BTreeMap<u32, Held>,
    next_approval: u32,
    approval_timeout: Duration,
    temporary: Vec<TemporaryAllow>,
    cgroup_base: PathBuf,
    pub host: String,
    pub sink: EventSink,
    pub dropped_total: u64,
    /// Profiles and templates tasks are opened from; replaced whole by a valid reload.
    pub policies: PolicySet,
    pub policy_dir: PathBuf,
    /// Where the open tasks are saved for the next daemon (None until adoption is done).
    pub state: Option<super::state::StateDir>,
}

/// A refused request: what the API sends back.
#[derive(Debug)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal { code, message: message.into() }
}

impl From<KernelError> for Refusal {
    fn from(err: KernelError) -> Self {
        refuse(ErrorCode::Kernel, err.to_string())
    }
}

/// Where a task's grant comes from.
pub enum GrantRequest {
    /// A grant file's text.
    File { yaml: String, source: String },
    /// A profile of the daemon's policies, with an optional template and its variables.
    Profile { profile: String, template: Option<String>, vars: BTreeMap<String, String> },
}

pub struct OpenRequest {
    pub agent: Option<String>,
    pub intent: String,
    pub grant: GrantRequest,
    pub ttl: Option<Duration>,
    /// The caller, as the kernel names it (SO_PEERPIDFD, SO_PEERCRED).
    pub actor: Actor,
}

/// Directories and destinations listed per task in its usage summary, at most each.
const MAX_USAGE_ENTRIES: usize = 1024;

/// Live processes of `task`: the kernel's count less those moved into sub-tasks.
fn live_of(kernel: &Kernel, task: &Task) -> u64 {
    kernel.live_processes(task.info.id).saturating_sub(task.moved_out)
}

/// Limits on delegation, so that an agent cannot exhaust the task and rule maps other agents
/// need, nor make the registry walk an unbounded tree.
const MAX_SUB_TASK_DEPTH: usize = 8;
const MAX_SUB_TASKS: usize = 64;

fn check_label(what: &str, value: &str, max: usize) -> Result<(), Refusal> {
    if value.trim().is_empty() || value.len() > max || value.chars().any(char::is_control) {
        return Err(refuse(ErrorCode::BadRequest, format!("{what} must be 1-{max} bytes of printable text")));
    }
    Ok(())
}

impl Registry {
    pub fn new(
        kernel: Kernel,
        cgroup_base: PathBuf,
        host: String,
        sink: EventSink,
        approval_timeout: Duration,
    ) -> Registry {
        Registry {
            kernel,
            tasks: BTreeMap::new(),
            next_id: 1,
            approvals: BTreeMap::new(),
            next_approval: 1,
            approval_timeout,
            temporary: Vec::new(),
            cgroup_base,
            host,
            sink,
            dropped_total: 0,
            policies: PolicySet::default(),
            policy_dir: PathBuf::new(),
            state: None,
        }
    }

    /// Saves the open tasks if they changed. A failure is logged, not fatal: the kernel keeps
    /// enforcing; only a restart's adoption would be incomplete (and fail closed).
    pub fn persist(&mut self) {
        let snapshot = self.snapshot();
        if let Some(state) = self.state.as_mut()
            && let Err(err) = state.save(&snapshot)
        {
            tracing::error!(%err, "saving the open tasks for the next daemon");
        }
    }

    /// Reads the policy directory again. A directory that does not validate changes nothing:
    /// the policies in force stay, and a `policy.rejected` event says why. Running tasks keep
    /// the grants they were opened with either way.
    pub fn reload_policies(&mut self, why: &str) -> bool {
        match PolicySet::load_dir(&self.policy_dir) {
            Ok(set) => {
                self.apply_policies(set, why);
                true
            }
            Err(errors) => {
                let mut event = Event::new(Kind::PolicyRejected, &self.host, SystemTime::now());
                event.enforcement = Some("none".into());
                event.decision = Some(Decision::Denied);
                event.reason = Some(format!(
                    "{why}: {} does not validate; the previous policies stay in force: {}",
                    self.policy_dir.display(),
                    errors.join("; ")
                ));
                tracing::error!(dir = %self.policy_dir.display(), errors = %errors.join("; "), "policy reload rejected");
                self.sink.send(event);
                false
            }
        }
    }

    /// Puts `set` in force and reports it (`policy.load`).
    pub fn apply_policies(&mut self, set: PolicySet, why: &str) {
        let mut event = Event::new(Kind::PolicyLoad, &self.host, SystemTime::now());
        event.enforcement = Some("none".into());
        event.decision = Some(Decision::Allowed);
        event.reason = Some(format!(
            "{why}: {} ({} files: profiles [{}], templates [{}], grants [{}])",
            self.policy_dir.display(),
            set.files.len(),
            set.profiles.keys().cloned().collect::<Vec<_>>().join(", "),
            set.templates.keys().cloned().collect::<Vec<_>>().join(", "),
            set.grants.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
        tracing::info!(dir = %self.policy_dir.display(), files = set.files.len(), "policies loaded");
        self.policies = set;
        self.sink.send(event);
    }

    /// Files an action the kernel holds and reports it (`approval.request`).
    pub fn hold(&mut self, held: HeldAction) {
        let id = self.next_approval;
        self.next_approval += 1;
        let now = SystemTime::now();
        let task = self.tasks.get(&held.task_id);
        let info = ApprovalInfo {
            id,
            task: held.task_id,
            agent: task.map(|t| t.info.agent.clone()).unwrap_or_default(),
            intent: task.map(|t| t.info.intent.clone()).unwrap_or_default(),
            pid: held.tgid,
            object: held.object.to_string(),
            path: held.path.clone(),
            access: access_names(held.access).iter().map(|s| s.to_string()).collect(),
            requested: clock::rfc3339(now),
            deadline: clock::rfc3339(now + self.approval_timeout),
            state: "pending".into(),
        };
        let hash = fnv1a(held.path.as_bytes());
        let mut event = *held.event;
        event.approval = Some(id);
        self.sink.send(event);
        self.approvals.insert(
            id,
            Held {
                info,
                tid: held.tid,
                tgid: held.tgid,
                access: held.access,
                hash,
                deadline: Instant::now() + self.approval_timeout,
            },
        );
    }

    /// Approves or refuses held action `id`, then continues its process.
    pub fn decide(
        &mut self,
        id: u32,
        approve: bool,
        allow_for: Option<Duration>,
        by: Option<&Actor>,
    ) -> Result<ApprovalInfo, Refusal> {
        let held = self.approvals.get(&id).ok_or_else(|| refuse(ErrorCode::NotFound, format!("no approval {id}")))?;
        if held.info.state != "pending" {
            return Err(refuse(ErrorCode::BadRequest, format!("approval {id} is already {}", held.info.state)));
        }
        let state = if approve { APPROVAL_GRANTED } else { APPROVAL_REFUSED };
        self.kernel.decide_held(held.tid, state, held.access, held.hash)?;
        if approve && let Some(duration) = allow_for {
            let (task_id, hash, access) = (held.info.task, held.hash, held.access);
            let grant_id = task_id;
            let previous = self.kernel.add_path_bits(grant_id, hash, access << APPROVED_SHIFT)?;
            let until_ns = boot_ns_now().saturating_add(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX));
            self.temporary.push(TemporaryAllow { task_id, hash, previous, until_ns });
        }
        let held = self.approvals.get_mut(&id).expect("checked above");
        held.info.state = if approve {
            "approved"
        } else if by.is_none() {
            "timed_out"
        } else {
            "denied"
        }
        .into();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(held.tgid as i32), nix::sys::signal::Signal::SIGCONT);
        let info = held.info.clone();
        let mut event = Event::new(
            if approve { Kind::ApprovalGranted } else { Kind::ApprovalDenied },
            &self.host,
            SystemTime::now(),
        );
        event.task = self.tasks.get(&info.task).map(Task::task_ref);
        event.approval = Some(id);
        event.actor = by.cloned();
        event.decision = Some(if approve { Decision::Allowed } else { Decision::Denied });
        event.enforcement = Some("lsm".into());
        event.rule = Some("ask".into());
        event.reason = Some(match (approve, by, allow_for) {
            (true, Some(by), Some(d)) => {
                format!("approved by {by} for {}: {} {}", humantime::format_duration(d), info.object, info.path)
            }
            (true, Some(by), None) => format!("approved by {by}: {} {}", info.object, info.path),
            (_, None, _) => {
                format!("no answer within {}: refused", humantime::format_duration(self.approval_timeout))
            }
            (false, Some(by), _) => format!("denied by {by}: {} {}", info.object, info.path),
        });
        self.sink.send(event);
        Ok(info)
    }

    /// Refuses held actions nobody answered in time, and ends `approve --for` allowances.
    pub fn expire(&mut self) {
        let now = Instant::now();
        let late: Vec<u32> = self
            .approvals
            .iter()
            .filter(|(_, h)| h.info.state == "pending" && h.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            let _ = self.decide(id, false, None, None);
        }
        let now_ns = boot_ns_now();
        let (ended, kept): (Vec<_>, Vec<_>) = self.temporary.drain(..).partition(|t| t.until_ns <= now_ns);
        self.temporary = kept;
        for t in ended {
            self.kernel.restore_path_rule(t.task_id, t.hash, t.previous);
        }
    }

    pub fn approvals(&self) -> Vec<ApprovalInfo> {
        self.approvals.values().map(|h| h.info.clone()).collect()
    }

    /// The grant a request names, its source, the agent, and the latest expiry allowed.
    fn resolve_grant(
        &self,
        req: &OpenRequest,
        id: u32,
    ) -> Result<(Grant, String, String, Duration, Option<Duration>), Refusal> {
        let invalid = |msg: String| refuse(ErrorCode::InvalidGrant, msg);
        match &req.grant {
            GrantRequest::File { yaml, source } => {
                let agent = req.agent.clone().ok_or_else(|| {
                    refuse(ErrorCode::BadRequest, "a task opened from a grant file needs an agent name")
                })?;
                let grant = Grant::parse(source, yaml).map_err(|err| invalid(err.to_string()))?;
                let ttl = grant.effective_ttl(req.ttl).map_err(|msg| invalid(format!("grant {source}: {msg}")))?;
                Ok((grant, source.clone(), agent, ttl, None))
            }
            GrantRequest::Profile { profile, template, vars } => {
                if let Some(agent) = &req.agent
                    && agent != profile
                {
                    return Err(refuse(
                        ErrorCode::BadRequest,
                        format!("agent {agent:?} is not profile {profile:?}: a profile's tasks carry its name"),
                    ));
                }
                let builtins = [("task_id", id.to_string()), ("agent", profile.clone())];
                let resolved =
                    self.policies.task_grant(profile, template.as_deref(), vars, &builtins).map_err(invalid)?;
                let max = resolved.max_ttl;
                if let Some(ttl) = req.ttl
                    && ttl > max
                {
                    return Err(invalid(format!(
                        "requested ttl {} exceeds profile {profile}'s maxTtl {}",
                        humantime::format_duration(ttl),
                        humantime::format_duration(max)
                    )));
                }
                let ttl = resolved
                    .grant
                    .effective_ttl(req.ttl)
                    .map_err(|msg| invalid(format!("{}: {msg}", resolved.source)))?
                    .min(max);
                Ok((resolved.grant, resolved.source, profile.clone(), ttl, Some(max)))
            }
        }
    }

    pub fn open_task(&mut self, req: OpenRequest) -> Result<TaskInfo, Refusal> {
        if let Some(agent) = &req.agent {
            check_label("agent", agent, 128)?;
        }
        check_label("intent", &req.intent, 4096)?;
        let id = self.next_id;
        let (mut grant, grant_source, mut agent, mut ttl, max_ttl) = self.resolve_grant(&req, id)?;
        let now_ns = boot_ns_now();
        let mut latest_ns = max_ttl.map(|max| now_ns.saturating_add(max.as_nanos() as u64));

        // Inside a task: a sub-task, never broader than its parent and never outliving it.
        let parent = self.kernel.task_of(req.actor.pid);
        if let Some(parent_id) = parent {
            let parent_task = self.tasks.get(&parent_id).ok_or_else(|| {
                refuse(ErrorCode::Forbidden, format!("process {} belongs to unknown task {parent_id}", req.actor.pid))
            })?;
            let left_ns = parent_task.expires_ns.saturating_sub(now_ns);
            if parent_task.info.ended.is_some() || parent_task.info.revoked || left_ns == 0 {
                return Err(refuse(
                    ErrorCode::Forbidden,
                    format!("task {parent_id} has ended: it cannot open sub-tasks"),
                ));
            }
            let mut problems = crate::grant::excess(&grant.spec, &parent_task.grant.spec);
            let (depth, root) = self.ancestry(parent_id);
            if depth >= MAX_SUB_TASK_DEPTH {
                problems.push(format!("sub-tasks nest at most {MAX_SUB_TASK_DEPTH} deep"));
            }
            let open = self.descendants(root).into_iter().filter(|d| self.tasks[d].info.ended.is_none()).count();
            if open >= MAX_SUB_TASKS {
                problems.push(format!("task {root} already has {open} open sub-tasks (at most {MAX_SUB_TASKS})"));
            }
            let left = Duration::from_nanos(left_ns);
            if req.ttl.is_some_and(|t| t > left) {
                problems.push(format!(
                    "ttl {} is longer than the {} task {parent_id} has left",
                    humantime::format_duration(ttl),
                    humantime::format_duration(Duration::from_secs(left.as_secs()))
                ));
            }
            if !problems.is_empty() {
                return Err(refuse(
                    ErrorCode::Forbidden,
                    format!("a sub-task of task {parent_id} may not be broader than it: {}", problems.join("; ")),
                ));
            }
            ttl = ttl.min(left);
            latest_ns = Some(latest_ns.unwrap_or(u64::MAX).min(parent_task.expires_ns));
            // An agent names its sub-agents, under its own name: it cannot pass for another.
            if agent != parent_task.info.agent {
                agent = format!("{}/{agent}", parent_task.info.agent);
            }
            grant.spec = crate::grant::with_restrictions(&grant.spec, &parent_task.grant.spec);
        }
        let compiled = CompiledGrant::compile(&grant)
            .map_err(|err| refuse(ErrorCode::InvalidGrant, format!("grant {grant_source}: {err}")))?;

        let started = SystemTime::now();
        let expires_ns = now_ns.saturating_add(ttl.as_nanos() as u64);
        let entry = TaskEntry {
            grant_id: id,
            mode: if grant.spec.mode == Mode::Audit { MODE_AUDIT } else { MODE_ENFORCE },
            state: STATE_ACTIVE,
            parent_task: parent.unwrap_or(0),
            expires_ns,
        };
        let cgroup = self.cgroup_base.join(format!("task-{id}"));

        // Rules first, then the task, then the cgroup, and the tag last: the tag is what puts
        // the process under the grant, so it only goes in once everything it points to exists.
        self.kernel.put_grant(id, &compiled)?;
        let rollback = |kernel: &mut Kernel, upto: u8| {
            if upto >= 2 {
                let _ = cgroup::remove(&cgroup);
            }
            if upto >= 1 {
                kernel.remove_task(id);
            }
            kernel.remove_grant(id, &compiled);
        };
        if let Err(err) = self.kernel.put_task(id, &entry) {
            rollback(&mut self.kernel, 0);
            return Err(err.into());
        }
        if let Err(err) = cgroup::create_with(&cgroup, req.actor.pid) {
            rollback(&mut self.kernel, 2);
            return Err(refuse(ErrorCode::Kernel, err.to_string()));
        }
        if let Err(err) = self.kernel.tag(req.actor.pid, id) {
            rollback(&mut self.kernel, 2);
            return Err(err.into());
        }
        self.next_id += 1;
        if let Some(parent) = parent.and_then(|p| self.tasks.get_mut(&p)) {
            parent.moved_out += 1;
        }

        let info = TaskInfo {
            id,
            parent,
            agent,
            intent: req.intent,
            step_intent: None,
            grant: grant.metadata.name.clone(),
            grant_source,
            mode: if grant.spec.mode == Mode::Audit { "audit" } else { "enforce" }.into(),
            state: TaskState::Open,
            root_pid: req.actor.pid,
            started: clock::rfc3339(started),
            expires: clock::rfc3339(started + ttl),
            ended: None,
            live_processes: 1,
            remaining_secs: ttl.as_secs(),
            revoked: false,
            counts: Default::default(),
        };
        let task = Task {
            info: info.clone(),
            grant,
            expires_ns,
            latest_ns,
            moved_out: 0,
            compiled,
            cgroup,
            usage: Usage::default(),
            drops_at_open: self.dropped_total,
        };
        let mut event = Event::new(Kind::TaskOpen, &self.host, started);
        event.task = Some(task.task_ref());
        event.actor = Some(req.actor.clone());
        event.grant_spec = Some(task.grant.spec.clone());
        event.decision = Some(Decision::Allowed);
        event.enforcement = Some("none".into());
        event.reason = Some(format!(
            "ttl {}, mode {}, grant from {}{}",
            humantime::format_duration(ttl),
            info.mode,
            info.grant_source,
            parent.map(|p| format!(", sub-task of task {p}")).unwrap_or_default()
        ));
        self.sink.send(event);
        self.tasks.insert(id, task);
        Ok(info)
    }

    /// The task's last process exited: free its kernel entries and cgroup. Idempotent (the
    /// kernel may report an empty task more than once).
    pub fn close_task(&mut self, id: u32) {
        let Some(task) = self.tasks.get_mut(&id) else { return };
        if task.info.ended.is_some() {
            return;
        }
        // A fork may have raced the report: only close when the kernel agrees it is empty. A
        // task with open sub-tasks stays open too, so that stopping or revoking it still
        // reaches them (the 1 s sweep closes it once they are gone).
        let has_open_children = self.tasks.values().any(|t| t.info.parent == Some(id) && t.info.ended.is_none());
        let task = self.tasks.get_mut(&id).expect("checked above");
        if task.info.state == TaskState::Open && (live_of(&self.kernel, task) != 0 || has_open_children) {
            return;
        }
        let now = SystemTime::now();
        if task.info.state == TaskState::Open {
            task.info.state = TaskState::Closed;
        }
        task.info.ended = Some(clock::rfc3339(now));
        task.info.live_processes = 0;
        self.kernel.remove_task(id);
        self.kernel.remove_grant(id, &task.compiled);
        cgroup::remove_when_empty(task.cgroup.clone());
        let mut event = Event::new(Kind::TaskClose, &self.host, now);
        event.task = Some(task.task_ref());
        event.usage = Some(task.usage(self.dropped_total));
        event.enforcement = Some("none".into());
        event.reason = Some(match task.info.state {
            TaskState::Stopped => "stopped by an operator; its processes have exited".into(),
            _ => "its last process exited".into(),
        });
        self.sink.send(event);
    }

    /// Records the step a task's process declares; the task's later events carry it.
    pub fn declare_intent(&mut self, pid: u32, intent: String) -> Result<TaskInfo, Refusal> {
        check_label("intent", &intent, 4096)?;
        let id = self.kernel.task_of(pid).ok_or_else(|| {
            refuse(
                ErrorCode::BadRequest,
                format!("process {pid} is not in a task: a step intent is declared from inside one"),
            )
        })?;
        let task = self.tasks.get_mut(&id).ok_or_else(|| refuse(ErrorCode::NotFound, format!("no task {id}")))?;
        if task.info.ended.is_some() {
            return Err(refuse(ErrorCode::BadRequest, format!("task {id} has ended")));
        }
        task.info.step_intent = Some(intent.clone());
        let mut event = Event::new(Kind::TaskIntent, &self.host, SystemTime::now());
        event.task = Some(task.task_ref());
        event.enforcement = Some("none".into());
        event.reason = Some(format!("process {pid} declared: {intent}"));
        self.sink.send(event);
        Ok(self.info(id).expect("task exists"))
    }

    /// How many ancestors `id` has, and the top one (itself when it has none).
    fn ancestry(&self, id: u32) -> (usize, u32) {
        let (mut depth, mut top) = (0, id);
        while let Some(parent) = self.tasks.get(&top).and_then(|t| t.info.parent) {
            depth += 1;
            top = parent;
        }
        (depth, top)
    }

    /// Every task below `id`, open or not.
    fn descendants(&self, id: u32) -> Vec<u32> {
        let mut found = Vec::new();
        let mut queue = vec![id];
        while let Some(next) = queue.pop() {
            for t in self.tasks.values().filter(|t| t.info.parent == Some(next)) {
                found.push(t.info.id);
                queue.push(t.info.id);
            }
        }
        found
    }

    /// Open sub-tasks of `id`.
    fn children(&self, id: u32) -> Vec<u32> {
        self.tasks.values().filter(|t| t.info.parent == Some(id) && t.info.ended.is_none()).map(|t| t.info.id).collect()
    }

    /// Revokes the grant in the kernel (before anything else), then kills the task's processes;
    /// its sub-tasks first.
    pub fn stop_task(&mut self, id: u32, by: Option<&Actor>, why: &str) -> Result<TaskInfo, Refusal> {
        let task = self.tasks.get(&id).ok_or_else(|| refuse(ErrorCode::NotFound, format!("no task {id}")))?;
        if task.info.state != TaskState::Open {
            return Ok(self.info(id).expect("task exists"));
        }
        for child in self.children(id) {
            self.stop_task(child, by, &format!("its parent task {id} was stopped"))?;
        }
        let task = &self.tasks[&id];
        self.kernel.revoke_task(id)?;
        if let Err(err) = cgroup::kill_all(&task.cgroup) {
            tracing::warn!(task = id, %err, "cgroup.kill failed; killing tagged processes one by one");
        }
        // Processes that left the task's cgroup are still tagged: kill them by tag.
        for pid in self.kernel.processes_of(id) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
        let task = self.tasks.get_mut(&id).expect("task exists");
        task.info.state = TaskState::Stopped;
        task.info.revoked = true;
        let mut event = Event::new(Kind::TaskStop, &self.host, SystemTime::now());
        event.task = Some(task.task_ref());
        event.usage = Some(task.usage(self.dropped_total));
        event.enforcement = Some("none".into());
        event.actor = by.cloned();
        event.reason = Some(match by {
            Some(by) => format!("{why} by {by}"),
            None => why.to_string(),
        });
        self.sink.send(event);
        if self.live(id) == 0 {
            self.close_task(id);
        }
        Ok(self.info(id).expect("task exists"))
    }

    /// Closes tasks the kernel counts as empty: covers a TASK_EMPTY record lost to a full
    /// ring buffer (the count itself lives in the TASKS map and is never lost).
    pub fn close_empty_tasks(&mut self) {
        let empty: Vec<u32> = self
            .tasks
            .values()
            .filter(|t| t.info.ended.is_none() && live_of(&self.kernel, t) == 0)
            .map(|t| t.info.id)
            .collect();
        for id in empty {
            self.close_task(id);
        }
    }

    fn live(&self, id: u32) -> u64 {
        self.tasks.get(&id).map_or(0, |t| live_of(&self.kernel, t))
    }

    pub fn info(&self, id: u32) -> Option<TaskInfo> {
        let task = self.tasks.get(&id)?;
        let mut info = task.info.clone();
        if info.ended.is_none() {
            info.live_processes = live_of(&self.kernel, task);
        }
        info.remaining_secs = if info.revoked || info.ended.is_some() {
            0
        } else {
            task.expires_ns.saturating_sub(boot_ns_now()) / 1_000_000_000
        };
        Some(info)
    }

    /// Records the first use of an allowed access (decode::Decoded::Used).
    pub fn record_use(&mut self, task_id: u32, rules: Vec<String>, touched: Touched) {
        let Some(task) = self.tasks.get_mut(&task_id) else { return };
        for rule in rules {
            if !task.usage.used.contains(&rule) {
                task.usage.used.push(rule);
            }
        }
        let (map, key) = match touched {
            Touched::Directory(dir) => (&mut task.usage.touched, dir),
            Touched::Destination(dest) => (&mut task.usage.destinations, dest),
        };
        // Bounded: an agent touching millions of places must not grow the daemon or the event.
        if map.len() < MAX_USAGE_ENTRIES || map.contains_key(&key) {
            *map.entry(key).or_default() += 1;
        } else {
            task.usage.truncated += 1;
        }
    }

    /// Counts a reported action against its task ("decision rule").
    pub fn count(&mut self, event: &Event) {
        let (Some(task), Some(decision)) = (&event.task, event.decision) else { return };
        let Some(task) = self.tasks.get_mut(&task.id) else { return };
        let key = format!("{} {}", crate::api::wire_name(&decision), event.rule.as_deref().unwrap_or("-"));
        *task.info.counts.entry(key).or_default() += 1;
    }

    /// Revokes a task's grant, and its sub-tasks', in the kernel; in force when this returns.
    pub fn revoke(&mut self, id: u32, by: &Actor) -> Result<TaskInfo, Refusal> {
        self.revoke_from(id, by, None)
    }

    /// `cascade`: the parent task whose revocation reaches this one.
    fn revoke_from(&mut self, id: u32, by: &Actor, cascade: Option<u32>) -> Result<TaskInfo, Refusal> {
        let task = self.tasks.get(&id).ok_or_else(|| refuse(ErrorCode::NotFound, format!("no task {id}")))?;
        if task.info.ended.is_some() {
            return Err(refuse(ErrorCode::BadRequest, format!("task {id} has ended")));
        }
        self.kernel.revoke_task(id)?;
        for child in self.children(id) {
            if !self.tasks[&child].info.revoked {
                self.revoke_from(child, by, Some(id))?;
            }
        }
        let task = self.tasks.get_mut(&id).expect("checked above");
        task.info.revoked = true;
        let mut event = Event::new(Kind::GrantRevoke, &self.host, SystemTime::now());
        event.task = Some(task.task_ref());
        event.enforcement = Some("none".into());
        event.actor = Some(by.clone());
        let cascade = cascade.map(|parent| format!(" (revoking its parent task {parent})")).unwrap_or_default();
        event.reason = Some(format!("revoked by {by}{cascade}: the task's processes are allowed nothing from now on"));
        self.sink.send(event);
        Ok(self.info(id).expect("task exists"))
    }

    /// Pushes a task's expiry back by `by`: the time left never exceeds the grant's ttl.
    pub fn extend(&mut self, id: u32, by: Duration, who: &Actor) -> Result<TaskInfo, Refusal> {
        let task = self.tasks.get(&id).ok_or_else(|| refuse(ErrorCode::NotFound, format!("no task {id}")))?;
        if task.info.ended.is_some() || task.info.revoked {
            return Err(refuse(ErrorCode::BadRequest, format!("task {id} has ended or its grant was revoked")));
        }
        let now = boot_ns_now();
        let wanted = task.expires_ns.max(now).saturating_add(by.as_nanos() as u64);
        // A profile's task (or a sub-task) has a latest end; a task from a grant file may have
        // at most the grant's ttl left.
        let (cap, limit) = match task.latest_ns {
            Some(latest) => (latest, "the profile's maxTtl (or the parent task's end)".to_string()),
            None => {
                let max_left = task.grant.effective_ttl(None).map_err(|m| refuse(ErrorCode::BadRequest, m))?;
                (
                    now.saturating_add(max_left.as_nanos() as u64),
                    format!("the grant's ttl {} from now", humantime::format_duration(max_left)),
                )
            }
        };
        if wanted > cap {
            return Err(refuse(
                ErrorCode::BadRequest,
                format!("extending task {id} by {} would go beyond {limit}", humantime::format_duration(by)),
            ));
        }
        let expires_ns = wanted;
        self.kernel.set_expiry(id, expires_ns)?;
        let wall = clock::wall_of_boot_ns(expires_ns);
        let task = self.tasks.get_mut(&id).expect("checked above");
        task.expires_ns = expires_ns;
        task.info.expires = clock::rfc3339(wall);
        let mut event = Event::new(Kind::GrantExtend, &self.host, SystemTime::now());
        event.task = Some(task.task_ref());
        event.enforcement = Some("none".into());
        event.actor = Some(who.clone());
        event.reason =
            Some(format!("extended by {who} by {} to {}", humantime::format_duration(by), task.info.expires));
        self.sink.send(event);
        Ok(self.info(id).expect("task exists"))
    }

    pub fn list(&self) -> Vec<TaskInfo> {
        self.tasks.keys().filter_map(|id| self.info(*id)).collect()
    }

    /// The directory holding the task cgroups (removed at shutdown when empty).
    pub fn cgroup_base(&self) -> &std::path::Path {
        &self.cgroup_base
    }

    pub fn status(&self) -> StatusInfo {
        StatusInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            kernel: nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default(),
            enforcement: self.kernel.enforcement.clone(),
            open_tasks: self.tasks.values().filter(|t| t.info.state == TaskState::Open).count(),
            pending_approvals: self.approvals.values().filter(|h| h.info.state == "pending").count(),
            events_dropped: self.dropped_total,
            policy_dir: self.policy_dir.display().to_string(),
            policies: self.policies.files.iter().map(|p| p.display().to_string()).collect(),
            maps: self.map_usage(),
            survives_daemon: self.kernel.links_pinned,
        }
    }

    /// Entries in use and size of each map that bounds what the daemon accepts.
    fn map_usage(&self) -> Vec<MapUse> {
        let k = &self.kernel;
        let tagged: u64 = self.tasks.values().filter(|t| t.info.ended.is_none()).map(|t| live_of(k, t)).sum();
        let approvals = self.approvals.values().filter(|h| h.info.state == "pending").count() as u64;
        [
            (maps::PROC_TAGS, tagged, k.sizes.proc_tags),
            (maps::TASKS, k.used.tasks as u64, k.sizes.tasks),
            (maps::PATH_RULES, k.used.path_rules as u64, k.sizes.path_rules),
            (maps::NET_RULES, k.used.net_rules as u64, k.sizes.net_rules),
            (maps::APPROVALS, approvals, maps::DEFAULT_APPROVALS),
        ]
        .into_iter()
        .map(|(name, used, size)| MapUse { name: name.into(), used, size })
        .collect()
    }
}

/// Saving and adopting the open tasks across daemon restarts (state.rs, kernel.rs pinning).
impl Registry {
    /// The open tasks and counters, as state.rs saves them.
    pub fn snapshot(&self) -> Saved {
        Saved {
            next_id: self.next_id,
            dropped_total: self.dropped_total,
            tasks: self
                .tasks
                .values()
                .filter(|t| t.info.ended.is_none())
                .map(|t| SavedTask {
                    info: t.info.clone(),
                    grant: t.grant.clone(),
                    expires_ns: t.expires_ns,
                    latest_ns: t.latest_ns,
                    moved_out: t.moved_out,
                    cgroup: t.cgroup.clone(),
                    usage: t.usage.clone(),
                    drops_at_open: t.drops_at_open,
                })
                .collect(),
            temporary: self
                .temporary
                .iter()
                .map(|t| SavedAllow {
                    task_id: t.task_id,
                    hash: t.hash,
                    previous: t.previous.map(|r| [r.exact, r.children, r.subtree, r.below]),
                    until_ns: t.until_ns,
                })
                .collect(),
        }
    }

    /// Never hands out an id at or below `floor` (the audit store's highest).
    pub fn raise_next_id(&mut self, floor: u32) {
        self.next_id = self.next_id.max(floor.saturating_add(1));
    }

    /// Takes over what a previous daemon left: the saved tasks the pinned kernel state still
    /// has are adopted as they were; the kernel's tasks nobody saved are revoked and their
    /// processes killed (fail closed: their grant is unknown); saved tasks the kernel no
    /// longer has are closed. Held actions lost their question with the old daemon: they
    /// are refused and continued. Returns (adopted, revoked, closed) task counts.
    pub fn adopt(&mut self, saved: Option<Saved>) -> (usize, usize, usize) {
        let saved = saved.unwrap_or_default();
        self.next_id = self.next_id.max(saved.next_id);
        self.dropped_total = saved.dropped_total;
        let in_kernel = self.kernel.task_ids();
        let (mut adopted, mut closed) = (0, 0);
        let now = SystemTime::now();
        for t in saved.tasks {
            let id = t.info.id;
            let compiled = match CompiledGrant::compile(&t.grant) {
                Ok(compiled) => compiled,
                Err(err) => {
                    tracing::error!(task = id, %err, "a saved grant no longer compiles; the task is revoked");
                    continue;
                }
            };
            let mut task = Task {
                info: t.info,
                grant: t.grant,
                expires_ns: t.expires_ns,
                latest_ns: t.latest_ns,
                moved_out: t.moved_out,
                compiled,
                cgroup: t.cgroup,
                usage: t.usage,
                drops_at_open: t.drops_at_open,
            };
            if in_kernel.contains(&id) {
                adopted += 1;
                self.tasks.insert(id, task);
                continue;
            }
            // The kernel state is gone (the host restarted, or the pins were removed): the
            // task's processes went with it.
            closed += 1;
            task.info.ended = Some(clock::rfc3339(now));
            task.info.live_processes = 0;
            cgroup::remove_when_empty(task.cgroup.clone());
            let mut event = Event::new(Kind::TaskClose, &self.host, now);
            event.task = Some(task.task_ref());
            event.usage = Some(task.usage(self.dropped_total));
            event.enforcement = Some("none".into());
            event.reason = Some("the guard's kernel state was gone when the daemon started (host restart?)".into());
            self.sink.send(event);
            self.tasks.insert(id, task);
        }
        let mut revoked = 0;
        for id in in_kernel.into_iter().filter(|id| !self.tasks.contains_key(id)) {
            revoked += 1;
            let _ = self.kernel.revoke_task(id);
            for pid in self.kernel.processes_of(id) {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            }
            self.kernel.remove_task(id);
            tracing::error!(
                task = id,
                "task in the kernel but not in the saved state: revoked and its processes killed"
            );
            let mut event = Event::new(Kind::TaskStop, &self.host, now);
            event.task = Some(TaskRef {
                id,
                agent: String::new(),
                intent: String::new(),
                grant: String::new(),
                parent: None,
                step: None,
            });
            event.enforcement = Some("none".into());
            event.reason = Some(
                "the kernel held this task but the daemon's saved state did not (lost in a crash): revoked and its processes killed"
                    .into(),
            );
            self.sink.send(event);
        }
        for t in saved.temporary {
            self.temporary.push(TemporaryAllow {
                task_id: t.task_id,
                hash: t.hash,
                previous: t.previous.map(|[exact, children, subtree, below]| PathRule {
                    exact,
                    children,
                    subtree,
                    below,
                }),
                until_ns: t.until_ns,
            });
        }
        if !self.kernel.links_pinned && self.kernel.adopted {
            // The programs died with the previous daemon: these tasks ran unconfined, and
            // children they forked meanwhile are untagged. Fail closed: stop them (cgroup.kill
            // reaches the untagged children that stayed in the task's cgroup).
            let ids: Vec<u32> = self.tasks.values().filter(|t| t.info.ended.is_none()).map(|t| t.info.id).collect();
            for id in ids {
                adopted -= 1;
                revoked += 1;
                let _ = self.stop_task(
                    id,
                    None,
                    "its programs detached when the previous daemon died (this kernel does not pin BPF links), so it \
                     may have run unconfined: stopped",
                );
            }
        }
        for tid in self.kernel.pending_holds() {
            let _ = self.kernel.refuse_held(tid);
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(tid as i32), nix::sys::signal::Signal::SIGCONT);
            tracing::warn!(tid, "an action held when the previous daemon stopped is refused (its question was lost)");
        }
        (adopted, revoked, closed)
    }
}
