//! The task registry: open tasks and their grants, kept in step with the kernel maps.
//! Every change to the maps goes through here, under one lock, and either completes or is
//! rolled back (nothing half-applied).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use agent_guard_common::maps;

use super::approvals::{Held, TemporaryAllow};
use crate::daemon::{
    events::{
        decode::{TaskFacts, TaskView},
        schema::{Body, Event, Note, TaskRef, Usage},
    },
    kernel::{Kernel, KernelError},
    output::EventSink,
};
use crate::{
    api::{ApprovalState, ErrorCode, MapUse, StatusInfo, TaskInfo, TaskState},
    grant::{CompiledGrant, Grant},
    policy::PolicySet,
};

/// An open task: its grant, kernel entries, cgroup and usage.
pub struct Task {
    pub info: TaskInfo,
    /// The grant in force in the kernel (for a sub-task: with its parent's restrictions).
    pub grant: Grant,
    /// `CLOCK_BOOTTIME` of the expiry, as in the kernel's task entry.
    pub(super) expires_ns: u64,
    /// `CLOCK_BOOTTIME` past which no extension may go (the profile's maxTtl, or for a sub-task
    /// its parent's), if any.
    pub(super) latest_ns: Option<u64>,
    /// Processes moved from this task into sub-tasks: still counted by the kernel's
    /// per-task counter (which only the kernel changes), subtracted here.
    pub(super) moved_out: u64,
    pub(super) compiled: CompiledGrant,
    pub(super) cgroup: PathBuf,
    /// Allow rules used so far and what was touched (the kernel's first-use records).
    pub(super) usage: Usage,
    /// Kernel records lost before the task opened (to tell whether its usage is complete).
    pub(super) drops_at_open: u64,
    /// The task whose seccomp supervisor holds this one's `ask` actions (the `landlock` level,
    /// supervise.rs): itself, or the enclosing task that has one; None: nothing is held.
    pub(super) asks_holder: Option<u32>,
    /// Its own supervisor runs (the listener was handed over).
    pub(super) supervised: bool,
    /// Addresses its DNS answers gave, the name each came from (for connect events) and until
    /// when; at most `dns.maxAddresses`.
    pub(super) learned: std::collections::HashMap<[u8; 16], crate::daemon::dns::Learned>,
    /// Its profile, opener, grant as opened and approved requests (requests.rs).
    pub(super) access: super::requests::TaskAccess,
    /// The task as its events name it before any step was declared.
    pub(super) unstepped: Arc<TaskRef>,
    /// The steps declared so far, with the `CLOCK_BOOTTIME` of each declaration, newest last
    /// and at most `STEP_HISTORY`: a kernel record is decoded after the step that followed it
    /// may have been declared (records wait for the reader's tick), so each record takes the
    /// step in force at its own kernel time. Each as its events name the task, built once:
    /// events share it, rather than copy the task's names into every one.
    pub(super) steps: Vec<(u64, Arc<TaskRef>)>,
}

/// How events name the task `info` describes, at step `step`.
pub(super) fn task_ref_of(info: &TaskInfo, step: Option<String>) -> Arc<TaskRef> {
    Arc::new(TaskRef {
        id: info.id,
        agent: info.agent.clone(),
        intent: info.intent.clone(),
        grant: info.grant.clone(),
        parent: info.parent,
        step,
        container: info.container.clone(),
    })
}

/// Declared steps kept per task for records still in the ring buffer.
pub(super) const STEP_HISTORY: usize = 16;

impl Task {
    /// The usage summary: used rules, the allow rules never used, what was touched;
    /// `dropped_total` is the daemon's count of lost kernel records now.
    pub(super) fn usage(&self, dropped_total: u64) -> Usage {
        let mut usage = self.usage.clone();
        usage.complete = dropped_total == self.drops_at_open;
        usage.used.sort();
        usage.unused = self.grant.allow_rule_names().into_iter().filter(|r| !usage.used.contains(r)).collect();
        usage
    }

    /// `task_ref` as of `at_ns` (`CLOCK_BOOTTIME`): with the step declared last before then.
    pub fn task_ref_at(&self, at_ns: u64) -> Arc<TaskRef> {
        if let Some(i) = self.steps.iter().rposition(|(since, _)| *since <= at_ns) {
            self.steps[i].1.clone()
        } else if self.steps.len() < STEP_HISTORY {
            // Before the first step this task declared (the history is whole).
            self.unstepped.clone()
        } else {
            // Older than the history kept: its oldest step is the best known.
            self.steps.first().map_or_else(|| self.unstepped.clone(), |(_, oldest)| oldest.clone())
        }
    }

    /// The task as its events name it now (with the step declared last).
    pub fn task_ref(&self) -> Arc<TaskRef> {
        self.steps.last().map_or_else(|| self.unstepped.clone(), |(_, last)| last.clone())
    }
}

impl TaskView for Registry {
    fn facts(&self, task_id: u32, at_ns: u64) -> Option<TaskFacts<'_>> {
        let task = self.tasks.get(&task_id)?;
        Some(TaskFacts {
            task: task.task_ref_at(at_ns),
            grant: &task.grant,
            expires: &task.info.expires,
            learned: &task.learned,
        })
    }
}

/// The open tasks and held actions, and the kernel they are written to.
pub struct Registry {
    pub kernel: Kernel,
    pub tasks: BTreeMap<u32, Task>,
    pub(super) next_id: u32,
    pub(super) approvals: BTreeMap<u32, Held>,
    pub(super) next_approval: u32,
    /// Approval ids below this are saved as used (`take_approval_id`).
    pub(super) approvals_saved: u32,
    pub(super) approval_timeout: Duration,
    pub(super) temporary: Vec<TemporaryAllow>,
    pub(super) cgroup_base: PathBuf,
    pub host: String,
    pub sink: EventSink,
    pub dropped_total: u64,
    /// Profiles and templates tasks are opened from; replaced whole by a valid reload.
    pub policies: PolicySet,
    pub policy_dir: PathBuf,
    /// Tasks changed since they were last saved (adopt.rs `persist`).
    pub(super) dirty: BTreeSet<u32>,
    /// Where the open tasks are saved for the next daemon (None until adoption is done).
    pub state: Option<super::state::StateWriter>,
    /// The ring-buffer readers' decoder, which the seccomp supervisor's held calls go through
    /// too (supervise.rs). Lock order: the registry, then the decoder.
    pub decoder: Option<std::sync::Arc<std::sync::Mutex<crate::daemon::events::decode::Decoder>>>,
    /// The tasks' DNS resolvers (None: DNS is off in the config).
    pub dns: Option<crate::daemon::dns::Resolvers>,
    /// Where the container runtimes keep their records (the names of a task's container).
    pub containers: crate::daemon::container::Runtimes,
    /// API connections open from each task's processes (server.rs caps them).
    pub connections: std::collections::HashMap<u32, u32>,
    /// Where approvals are asked besides the CLI (Slack, Teams, webhooks; none by default).
    pub channels: super::channels::Channels,
}

/// A refused request: what the API sends back.
#[derive(Debug)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

pub(super) fn refuse(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal { code, message: message.into() }
}

impl From<KernelError> for Refusal {
    fn from(err: KernelError) -> Self {
        refuse(ErrorCode::Kernel, err.to_string())
    }
}

/// Directories and destinations listed per task in its usage summary, at most each.
pub(super) const MAX_USAGE_ENTRIES: usize = 1024;

/// Live processes of `task`: the kernel's count less those moved into sub-tasks.
pub(super) fn live_of(kernel: &Kernel, task: &Task) -> u64 {
    kernel.live_processes(task.info.id).saturating_sub(task.moved_out)
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
            approvals_saved: 0,
            approval_timeout,
            temporary: Vec::new(),
            cgroup_base,
            host,
            sink,
            dropped_total: 0,
            policies: PolicySet::default(),
            policy_dir: PathBuf::new(),
            dirty: BTreeSet::default(),
            state: None,
            decoder: None,
            dns: None,
            containers: crate::daemon::container::Runtimes::default(),
            connections: std::collections::HashMap::new(),
            channels: super::channels::Channels::default(),
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
                let reason = format!(
                    "{why}: {} does not validate; the previous policies stay in force: {}",
                    self.policy_dir.display(),
                    errors.join("; ")
                );
                let event = Event::new(Body::PolicyRejected(Note { reason }), &self.host, SystemTime::now());
                tracing::error!(dir = %self.policy_dir.display(), errors = %errors.join("; "), "policy reload rejected");
                self.sink.send(event);
                false
            }
        }
    }

    /// Puts `set` in force and reports it (`policy.load`).
    pub fn apply_policies(&mut self, set: PolicySet, why: &str) {
        let reason = format!(
            "{why}: {} ({} files: profiles [{}], templates [{}], grants [{}])",
            self.policy_dir.display(),
            set.files.len(),
            set.profiles.keys().cloned().collect::<Vec<_>>().join(", "),
            set.templates.keys().cloned().collect::<Vec<_>>().join(", "),
            set.grants.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        let event = Event::new(Body::PolicyLoad(Note { reason }), &self.host, SystemTime::now());
        tracing::info!(dir = %self.policy_dir.display(), files = set.files.len(), "policies loaded");
        self.policies = set;
        self.sink.send(event);
    }

    pub fn list(&self) -> Vec<TaskInfo> {
        self.tasks.keys().filter_map(|id| self.info(*id)).collect()
    }

    /// The directory holding the task cgroups (removed at shutdown when empty).
    pub fn cgroup_base(&self) -> &std::path::Path {
        &self.cgroup_base
    }

    /// What the daemon's task cgroup directories are named after: `PREFIX-task-N`.
    pub fn cgroup_prefix(&self) -> String {
        self.cgroup_base.file_name().map_or_else(|| "agent-guard".into(), |n| n.to_string_lossy().into_owned())
    }

    /// Where task `id`, opened by `pid`, gets its cgroup: inside the cgroup `pid` runs in, so
    /// that its limits keep applying (kernel/cgroup.rs). When a user other than root could move
    /// processes there (a delegated subtree: `user@UID.service`, a user-namespaced container),
    /// in the nearest cgroup above it that no user controls, whose limits still cover it.
    /// Under `cgroup_base` only when no such cgroup is found, or the caller's cannot be read.
    /// `caller` is the caller's /proc/PID/cgroup path (`cgroup::path_of`).
    pub(super) fn task_cgroup(&self, caller: Option<&str>, pid: u32, id: u32) -> PathBuf {
        use crate::daemon::cgroup;
        let fallback = self.cgroup_base.join(format!("task-{id}"));
        let placed = cgroup::cgroup2_mount().ok().and_then(|mount| {
            let dir = cgroup::dir_of(&mount, caller?)?;
            let home = dir
                .ancestors()
                .take_while(|d| *d != mount.dir && d.starts_with(&mount.dir))
                .find(|d| !cgroup::delegated(&mount.dir, d))?
                .to_path_buf();
            if home != dir {
                tracing::info!(
                    task = id,
                    pid,
                    "the caller's cgroup {} is delegated to a user, who could move the task's processes out: the task's cgroup is made in {}",
                    dir.display(),
                    home.display()
                );
            }
            Some(home)
        });
        let Some(home) = placed else {
            tracing::warn!(
                task = id,
                pid,
                "the caller's cgroup could not be read, or every cgroup above it is delegated: the task's cgroup is {} and the caller's limits do not apply to it",
                fallback.display()
            );
            return fallback;
        };
        let own = home.join(format!("{}-task-{id}", self.cgroup_prefix()));
        if !own.exists() {
            return own;
        }
        // A directory of that name is someone else's (made in advance to push the task out of
        // reach of the caller's limits): another name, in the same place.
        let random = uuid::Uuid::now_v7().simple().to_string();
        home.join(format!("{}-task-{id}-{}", self.cgroup_prefix(), &random[20..]))
    }

    /// The cgroup directories of the tasks this daemon knows.
    pub fn task_cgroups(&self) -> Vec<PathBuf> {
        self.tasks.values().map(|t| t.cgroup.clone()).collect()
    }

    pub fn status(&self) -> StatusInfo {
        StatusInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            kernel: nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default(),
            enforcement: self.kernel.enforcement.clone(),
            open_tasks: self.tasks.values().filter(|t| t.info.state == TaskState::Open).count(),
            pending_approvals: self.approvals.values().filter(|h| h.info.state == ApprovalState::Pending).count(),
            events_dropped: self.dropped_total,
            policy_dir: self.policy_dir.display().to_string(),
            policies: self.policies.files.iter().map(|p| p.display().to_string()).collect(),
            maps: self.map_usage(),
            survives_daemon: self.kernel.links_pinned,
            refused_callbacks: self.channels.refused(),
        }
    }

    /// Entries in use and size of each map that bounds what the daemon accepts.
    fn map_usage(&self) -> Vec<MapUse> {
        let k = &self.kernel;
        let tagged: u64 = self.tasks.values().filter(|t| t.info.ended.is_none()).map(|t| live_of(k, t)).sum();
        let approvals = self.approvals.values().filter(|h| h.info.state == ApprovalState::Pending).count() as u64;
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
