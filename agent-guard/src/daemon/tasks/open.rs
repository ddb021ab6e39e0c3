//! Opening a task: resolving its grant (a file, or a profile and template), the sub-task
//! checks, and writing it to the kernel (rules, task, cgroup, tag), all or nothing.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use agent_guard_common::task::{
    CONFINE_ASKS_HELD, CONFINE_FILES_EXACT, CONFINE_LANDLOCK, CONFINE_NONE, CONFINE_OPENS_CACHED, MODE_AUDIT,
    MODE_ENFORCE, STATE_ACTIVE, TaskEntry,
};

use crate::daemon::{
    clock::{self, boot_ns_now},
    events::schema::{Actor, Body, Event, TaskOpened, Usage},
    kernel::{Kernel, cgroup},
};
use crate::{
    api::{ErrorCode, LandlockRuleset, Level, TaskInfo, TaskState},
    grant::{CompiledGrant, Grant, Mode},
};

use super::registry::{Refusal, Registry, Task, refuse};

/// Where a task's grant comes from.
pub enum GrantRequest {
    /// A grant file's text.
    File { yaml: String, source: String },
    /// A profile of the daemon's policies, with an optional template and its variables.
    Profile { profile: String, template: Option<String>, vars: BTreeMap<String, String> },
}

/// A request to open a task for a process.
pub struct OpenRequest {
    pub agent: Option<String>,
    pub intent: String,
    pub grant: GrantRequest,
    pub ttl: Option<Duration>,
    /// The caller, as the kernel names it (`SO_PEERPIDFD`, `SO_PEERCRED`).
    pub actor: Actor,
    /// The Landlock ABI the caller will confine itself with, if answered with a ruleset.
    pub landlock_abi: Option<u32>,
}

/// Limits on delegation, so that an agent cannot exhaust the task and rule maps other agents
/// need, nor make the registry walk an unbounded tree.
const MAX_SUB_TASK_DEPTH: usize = 8;
const MAX_SUB_TASKS: usize = 64;

pub(super) fn check_label(what: &str, value: &str, max: usize) -> Result<(), Refusal> {
    if value.trim().is_empty() || value.len() > max || value.chars().any(crate::text::is_deceptive) {
        return Err(refuse(ErrorCode::BadRequest, format!("{what} must be 1-{max} bytes of printable text")));
    }
    Ok(())
}

/// Whether a Landlock ruleset compiled from `spec` holds exactly its file rules: only `allow`
/// and `flag` rules, none of them `DIR/*` (which Landlock can only widen to the subtree).
fn files_exact(spec: &crate::grant::GrantSpec) -> bool {
    spec.files.read.iter().chain(&spec.files.write).all(|rule| {
        matches!(rule.action, crate::grant::RuleAction::Allow | crate::grant::RuleAction::Flag)
            && !matches!(rule.target, crate::grant::PathPattern::Children(_))
    })
}

/// Whether every file rule allows (no `flag` rule to report on each open): with
/// `files_exact`, an open Landlock lets through needs no judging beyond its first use
/// (`CONFINE_OPENS_CACHED`).
fn files_all_allow(spec: &crate::grant::GrantSpec) -> bool {
    spec.files.read.iter().chain(&spec.files.write).all(|rule| rule.action == crate::grant::RuleAction::Allow)
}

impl Registry {
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

    #[expect(
        clippy::too_many_lines,
        reason = "the checks, then the kernel writes, in the order that leaves nothing half-applied"
    )]
    pub fn open_task(&mut self, req: OpenRequest) -> Result<(TaskInfo, Option<LandlockRuleset>), Refusal> {
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
        let mut parent_confined = true;
        // What the task's own grant allows: a sub-task also receives its parent's `flag` rules,
        // which must stay restrictions, never become Landlock rules of its own.
        let own_spec = grant.spec.clone();
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
            // Against the parent's grant as opened: what an approved request adds is the parent's
            // for its approved time only, and a sub-task would keep it past the narrowing.
            let mut problems = crate::grant::excess(&grant.spec, &parent_task.access.base);
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
            parent_confined = parent_task.info.landlock_abi.is_some();
            if parent_confined && req.landlock_abi.is_none() {
                // Its processes would be outside every kill a Landlock task's end brings.
                return Err(refuse(
                    ErrorCode::Forbidden,
                    format!(
                        "task {parent_id} is confined by Landlock: its sub-tasks must be too (run without --without-landlock)"
                    ),
                ));
            }
            latest_ns = Some(latest_ns.unwrap_or(u64::MAX).min(parent_task.expires_ns));
            // An agent names its sub-agents, under its own name: it cannot pass for another.
            if agent != parent_task.info.agent {
                agent = format!("{}/{agent}", parent_task.info.agent);
            }
            grant.spec = crate::grant::with_restrictions(&grant.spec, &parent_task.grant.spec);
        }
        let compiled = CompiledGrant::compile_seeded(&grant, self.kernel.path_seed)
            .map_err(|err| refuse(ErrorCode::InvalidGrant, format!("grant {grant_source}: {err}")))?;
        // The `landlock` level: only where BPF LSM is missing, for an enforced grant, and for a
        // sub-task only inside a confined parent (whose ruleset then bounds it whatever its
        // caller does). A caller that does not apply the ruleset gets the `kill` level: what
        // Landlock would have refused succeeds, and is killed at syscall exit.
        // Its `ask` actions are held by the seccomp supervisor of the nearest enclosing task that
        // has one (every call of a process under a filter goes to that listener), else by its own.
        let inherited_holder = parent.and_then(|p| self.tasks.get(&p)).and_then(|t| t.asks_holder);
        let mut asks_holder = None;
        // What the task may request (a task its profile opened, not a sub-task): at the
        // `landlock` level its paths go into the ruleset now (Landlock never widens later),
        // and the supervisor refuses them until a request is approved.
        let profile = match &req.grant {
            GrantRequest::Profile { profile, .. } => Some(profile.clone()),
            GrantRequest::File { .. } => None,
        };
        let requestable = profile
            .as_ref()
            .filter(|_| parent.is_none())
            .and_then(|p| self.policies.profiles.get(p))
            .and_then(|p| p.spec.requestable.as_ref())
            .map(|r| {
                let entries: Vec<crate::grant::GrantSpec> =
                    r.rules.iter().map(crate::policy::RequestableRules::spec).collect();
                crate::grant::widened(&crate::grant::GrantSpec::default(), &entries)
            })
            .filter(|r| !(r.files.read.is_empty() && r.files.write.is_empty() && r.exec.is_empty()));
        let mut in_ruleset = None;
        let landlock = match req.landlock_abi {
            Some(abi)
                if self.kernel.enforcement.file == Level::Landlock
                    && grant.spec.mode == Mode::Enforce
                    && parent_confined =>
            {
                in_ruleset.clone_from(&requestable);
                asks_holder = inherited_holder
                    .or_else(|| (crate::confine::ruleset::has_asks(&grant.spec) || in_ruleset.is_some()).then_some(id));
                let abi = abi.min(crate::confine::MAX_ABI);
                let ruleset_spec = match &requestable {
                    Some(more) => crate::grant::widened(&own_spec, [more]),
                    None => own_spec.clone(),
                };
                let mut ruleset = crate::confine::ruleset::compile(&ruleset_spec, abi, asks_holder.is_some());
                ruleset.hold_asks = asks_holder == Some(id);
                Some(ruleset)
            }
            _ => None,
        };

        // Where the grant, not BPF LSM, keeps a task from the daemon's files, a grant that could
        // read an approval channel's secret would let the agent forge its own approvals.
        if self.kernel.enforcement.file != Level::Lsm {
            let reach = match &requestable {
                Some(more) => crate::grant::widened(&grant.spec, [more]),
                None => grant.spec.clone(),
            };
            if let Some(secret) = self.channels.secret_readable_by(&reach) {
                return Err(refuse(
                    ErrorCode::Forbidden,
                    format!(
                        "the grant (or what it may request) covers {}, an approval channel's secret: its agent could \
                         forge approvals on this kernel (no BPF LSM); keep the secrets outside what grants name \
                         (docs/approvals.md)",
                        secret.display()
                    ),
                ));
            }
        }
        let started = SystemTime::now();
        let expires_ns = now_ns.saturating_add(ttl.as_nanos() as u64);
        // Its resolver before its entry: the kernel sends its DNS to this port from the start.
        let dns_port = self.start_dns(id).map_err(|err| refuse(ErrorCode::Kernel, err.to_string()))?;
        let entry = TaskEntry {
            grant_id: id,
            mode: if grant.spec.mode == Mode::Audit { MODE_AUDIT } else { MODE_ENFORCE },
            state: STATE_ACTIVE,
            parent_task: parent.unwrap_or(0),
            expires_ns,
            confine: match &landlock {
                // Never for a sub-task: it is opened from inside its parent's task, whose
                // processes could claim a Landlock ABI and not apply the ruleset, and would then be
                // held only by the parent's wider one; its opens are judged on the file reached.
                Some(_) if files_exact(&grant.spec) && in_ruleset.is_none() && parent.is_none() => {
                    let cached =
                        self.kernel.opens_cached && grant.spec.mode != Mode::Audit && files_all_allow(&grant.spec);
                    CONFINE_LANDLOCK | CONFINE_FILES_EXACT | if cached { CONFINE_OPENS_CACHED } else { 0 }
                }
                Some(_) if asks_holder.is_some() => CONFINE_LANDLOCK | CONFINE_ASKS_HELD,
                Some(_) => CONFINE_LANDLOCK,
                None => CONFINE_NONE,
            },
            dns_port,
        };
        // The caller's cgroup, read once: where the task's cgroup goes, and which container the
        // task runs in (read before the process moves: a fallback cgroup names no container).
        let caller_cgroup = crate::daemon::cgroup::path_of(req.actor.pid);
        let cgroup = self.task_cgroup(caller_cgroup.as_deref(), req.actor.pid, id);
        let container = caller_cgroup.as_deref().and_then(|path| self.containers.describe(path));

        // Rules first, then the task, then the cgroup, and the tag last: the tag is what puts
        // the process under the grant, so it only goes in once everything it points to exists.
        if let Err(err) = self.kernel.put_grant(id, &compiled) {
            self.stop_dns(id);
            return Err(err.into());
        }
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
            self.stop_dns(id);
            return Err(err.into());
        }
        if let Err(err) = cgroup::create_with(&cgroup, req.actor.pid) {
            rollback(&mut self.kernel, 2);
            self.stop_dns(id);
            return Err(refuse(ErrorCode::Kernel, err.to_string()));
        }
        if let Err(err) = self.kernel.tag(req.actor.pid, id) {
            rollback(&mut self.kernel, 2);
            self.stop_dns(id);
            return Err(err.into());
        }
        self.next_id += 1;
        self.dirty.extend(parent);
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
            mode: grant.spec.mode,
            state: TaskState::Open,
            root_pid: req.actor.pid,
            started: clock::rfc3339(started),
            expires: clock::rfc3339(started + ttl),
            ended: None,
            live_processes: 1,
            remaining_secs: ttl.as_secs(),
            revoked: false,
            counts: BTreeMap::default(),
            landlock_abi: landlock.as_ref().map(|r| r.abi),
            container,
        };
        let grant_spec_at_open = grant.spec.clone();
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
            asks_holder,
            supervised: false,
            learned: std::collections::HashMap::new(),
            unstepped: super::registry::task_ref_of(&info, None),
            steps: Vec::new(),
            access: super::requests::TaskAccess {
                profile,
                opener_uid: req.actor.uid,
                base: grant_spec_at_open,
                widenings: Vec::new(),
                in_ruleset,
            },
        };
        let reason = format!(
            "ttl {}, mode {}, grant from {}{}{}{}",
            humantime::format_duration(ttl),
            info.mode,
            info.grant_source,
            parent.map(|p| format!(", sub-task of task {p}")).unwrap_or_default(),
            landlock.as_ref().map(|r| format!(", confined by Landlock ABI {}", r.abi)).unwrap_or_default(),
            if entry.confine & CONFINE_OPENS_CACHED != 0 {
                " (opens are Landlock's alone: reported at exit)"
            } else {
                ""
            }
        );
        let opened = TaskOpened { actor: Some(req.actor.clone()), grant_spec: task.grant.spec.clone(), reason };
        let mut event = Event::new(Body::TaskOpen(opened), &self.host, started);
        event.task = Some(task.task_ref());
        self.sink.send(event);
        self.tasks.insert(id, task);
        self.dirty.insert(id);
        Ok((info, landlock))
    }
}
