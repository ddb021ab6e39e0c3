//! The task registry: open tasks and their grants, kept in step with the kernel maps.
//! Every change to the maps goes through here, under one lock, and either completes or is
//! rolled back (nothing half-applied).

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use agent_guard_common::{
    path::{APPROVED_SHIFT, PathRule, fnv1a},
    task::{APPROVAL_GRANTED, APPROVAL_REFUSED, MODE_AUDIT, MODE_ENFORCE, STATE_ACTIVE, TaskEntry},
};

use super::{
    KernelError, cgroup,
    clock::{self, boot_ns_now},
    decode::{HeldAction, access_names},
    event::{Decision, Event, Kind, TaskRef},
    kernel::Kernel,
    output::EventSink,
};
use crate::{
    api::{ApprovalInfo, ErrorCode, StatusInfo, TaskInfo, TaskState},
    grant::{CompiledGrant, Grant, Mode},
};

pub struct Task {
    pub info: TaskInfo,
    pub grant: Grant,
    /// CLOCK_BOOTTIME of the expiry, as in the kernel's task entry.
    expires_ns: u64,
    compiled: CompiledGrant,
    cgroup: PathBuf,
}

impl Task {
    pub fn task_ref(&self) -> TaskRef {
        TaskRef {
            id: self.info.id,
            agent: self.info.agent.clone(),
            intent: self.info.intent.clone(),
            grant: self.info.grant.clone(),
        }
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
    until: Instant,
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

pub struct OpenRequest {
    pub agent: String,
    pub intent: String,
    pub grant_yaml: String,
    pub grant_source: String,
    pub ttl: Option<Duration>,
    /// The caller, from SO_PEERCRED.
    pub pid: u32,
}

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
        }
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
        by: &str,
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
            self.temporary.push(TemporaryAllow { task_id, hash, previous, until: Instant::now() + duration });
        }
        let held = self.approvals.get_mut(&id).expect("checked above");
        held.info.state = if approve {
            "approved"
        } else if by.is_empty() {
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
        event.decision = Some(if approve { Decision::Allowed } else { Decision::Denied });
        event.enforcement = Some("lsm".into());
        event.rule = Some("ask".into());
        event.reason = Some(match (approve, by.is_empty(), allow_for) {
            (true, _, Some(d)) => {
                format!("approved by {by} for {}: {} {}", humantime::format_duration(d), info.object, info.path)
            }
            (true, _, None) => format!("approved by {by}: {} {}", info.object, info.path),
            (false, true, _) => {
                format!("no answer within {}: refused", humantime::format_duration(self.approval_timeout))
            }
            (false, false, _) => format!("denied by {by}: {} {}", info.object, info.path),
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
            let _ = self.decide(id, false, None, "");
        }
        let (ended, kept): (Vec<_>, Vec<_>) = self.temporary.drain(..).partition(|t| t.until <= now);
        self.temporary = kept;
        for t in ended {
            self.kernel.restore_path_rule(t.task_id, t.hash, t.previous);
        }
    }

    pub fn approvals(&self) -> Vec<ApprovalInfo> {
        self.approvals.values().map(|h| h.info.clone()).collect()
    }

    pub fn open_task(&mut self, req: OpenRequest) -> Result<TaskInfo, Refusal> {
        check_label("agent", &req.agent, 128)?;
        check_label("intent", &req.intent, 4096)?;
        let grant = Grant::parse(&req.grant_source, &req.grant_yaml)
            .map_err(|err| refuse(ErrorCode::InvalidGrant, err.to_string()))?;
        let ttl = grant
            .effective_ttl(req.ttl)
            .map_err(|msg| refuse(ErrorCode::InvalidGrant, format!("grant {}: {msg}", req.grant_source)))?;
        let compiled = CompiledGrant::compile(&grant)
            .map_err(|err| refuse(ErrorCode::InvalidGrant, format!("grant {}: {err}", req.grant_source)))?;

        let id = self.next_id;
        let started = SystemTime::now();
        let expires_ns = boot_ns_now().saturating_add(ttl.as_nanos() as u64);
        let entry = TaskEntry {
            grant_id: id,
            mode: if grant.spec.mode == Mode::Audit { MODE_AUDIT } else { MODE_ENFORCE },
            state: STATE_ACTIVE,
            _pad: 0,
            expires_ns,
            live_procs: 1,
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
        if let Err(err) = cgroup::create_with(&cgroup, req.pid) {
            rollback(&mut self.kernel, 2);
            return Err(refuse(ErrorCode::Kernel, err.to_string()));
        }
        if let Err(err) = self.kernel.tag(req.pid, id) {
            rollback(&mut self.kernel, 2);
            return Err(err.into());
        }
        self.next_id += 1;

        let info = TaskInfo {
            id,
            agent: req.agent,
            intent: req.intent,
            grant: grant.metadata.name.clone(),
            grant_source: req.grant_source,
            mode: if grant.spec.mode == Mode::Audit { "audit" } else { "enforce" }.into(),
            state: TaskState::Open,
            root_pid: req.pid,
            started: clock::rfc3339(started),
            expires: clock::rfc3339(started + ttl),
            ended: None,
            live_processes: 1,
            remaining_secs: ttl.as_secs(),
            revoked: false,
            counts: Default::default(),
        };
        let task = Task { info: info.clone(), grant, expires_ns, compiled, cgroup };
        let mut event = Event::new(Kind::TaskOpen, &self.host, started);
        event.task = Some(task.task_ref());
        event.decision = Some(Decision::Allowed);
        event.enforcement = Some("none".into());
        event.reason = Some(format!(
            "ttl {}, mode {}, grant file {}",
            humantime::format_duration(ttl),
            info.mode,
            info.grant_source
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
        // A fork may have raced the report: only close when the kernel agrees it is empty.
        if task.info.state == TaskState::Open && self.kernel.live_processes(id) != 0 {
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
        event.enforcement = Some("none".into());
        event.reason = Some(match task.info.state {
            TaskState::Stopped => "stopped by an operator; its processes have exited".into(),
            _ => "its last process exited".into(),
        });
        self.sink.send(event);
    }

    /// Revokes the grant in the kernel (before anything else), then kills the task's processes.
    pub fn stop_task(&mut self, id: u32, why: &str) -> Result<TaskInfo, Refusal> {
        let task = self.tasks.get(&id).ok_or_else(|| refuse(ErrorCode::NotFound, format!("no task {id}")))?;
        if task.info.state != TaskState::Open {
            return Ok(self.info(id).expect("task exists"));
        }
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
        event.enforcement = Some("none".into());
        event.reason = Some(why.to_string());
        self.sink.send(event);
        if self.kernel.live_processes(id) == 0 {
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
            .filter(|t| t.info.ended.is_none() && self.kernel.live_processes(t.info.id) == 0)
            .map(|t| t.info.id)
            .collect();
        for id in empty {
            self.close_task(id);
        }
    }

    pub fn info(&self, id: u32) -> Option<TaskInfo> {
        let task = self.tasks.get(&id)?;
        let mut info = task.info.clone();
        if info.ended.is_none() {
            info.live_processes = self.kernel.live_processes(id);
        }
        info.remaining_secs = if info.revoked || info.ended.is_some() {
            0
        } else {
            task.expires_ns.saturating_sub(boot_ns_now()) / 1_000_000_000
        };
        Some(info)
    }

    /// Counts a reported action against its task ("decision rule").
    pub fn count(&mut self, event: &Event) {
        let (Some(task), Some(decision)) = (&event.task, event.decision) else { return };
        let Some(task) = self.tasks.get_mut(&task.id) else { return };
        let decision =
            serde_json::to_value(decision).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let key = format!("{decision} {}", event.rule.as_deref().unwrap_or("-"));
        *task.info.counts.entry(key).or_default() += 1;
    }

    /// Revokes a task's grant in the kernel; in force when this returns.
    pub fn revoke(&mut self, id: u32, by: &str) -> Result<TaskInfo, Refusal> {
        let task = self.tasks.get(&id).ok_or_else(|| refuse(ErrorCode::NotFound, format!("no task {id}")))?;
        if task.info.ended.is_some() {
            return Err(refuse(ErrorCode::BadRequest, format!("task {id} has ended")));
        }
        self.kernel.revoke_task(id)?;
        let task = self.tasks.get_mut(&id).expect("checked above");
        task.info.revoked = true;
        let mut event = Event::new(Kind::GrantRevoke, &self.host, SystemTime::now());
        event.task = Some(task.task_ref());
        event.enforcement = Some("none".into());
        event.reason = Some(format!("revoked by {by}: the task's processes are allowed nothing from now on"));
        self.sink.send(event);
        Ok(self.info(id).expect("task exists"))
    }

    /// Pushes a task's expiry back by `by`: the time left never exceeds the grant's ttl.
    pub fn extend(&mut self, id: u32, by: Duration, who: &str) -> Result<TaskInfo, Refusal> {
        let task = self.tasks.get(&id).ok_or_else(|| refuse(ErrorCode::NotFound, format!("no task {id}")))?;
        if task.info.ended.is_some() || task.info.revoked {
            return Err(refuse(ErrorCode::BadRequest, format!("task {id} has ended or its grant was revoked")));
        }
        let now = boot_ns_now();
        let max_left = task.grant.effective_ttl(None).map_err(|m| refuse(ErrorCode::BadRequest, m))?;
        let wanted = task.expires_ns.max(now).saturating_add(by.as_nanos() as u64);
        let expires_ns = wanted.min(now.saturating_add(max_left.as_nanos() as u64));
        if expires_ns < wanted {
            return Err(refuse(
                ErrorCode::BadRequest,
                format!(
                    "extending task {id} by {} would leave more than the grant's ttl {}",
                    humantime::format_duration(by),
                    humantime::format_duration(max_left)
                ),
            ));
        }
        self.kernel.set_expiry(id, expires_ns)?;
        let wall = clock::wall_of_boot_ns(expires_ns);
        let task = self.tasks.get_mut(&id).expect("checked above");
        task.expires_ns = expires_ns;
        task.info.expires = clock::rfc3339(wall);
        let mut event = Event::new(Kind::GrantExtend, &self.host, SystemTime::now());
        event.task = Some(task.task_ref());
        event.enforcement = Some("none".into());
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
        }
    }
}
