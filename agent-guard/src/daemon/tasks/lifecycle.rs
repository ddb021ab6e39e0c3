//! A task's life after it opened: its steps, stop, revoke, extend, and its close.

use std::time::{Duration, SystemTime};

use crate::api::{ErrorCode, TaskInfo, TaskState};
use crate::daemon::{
    clock::{self, boot_ns_now},
    events::{
        decode::Touched,
        schema::{Actor, Body, Control, Decision, Event, TaskEnded},
    },
    kernel::cgroup,
};

use super::{
    open::check_label,
    registry::{MAX_USAGE_ENTRIES, Refusal, Registry, live_of, refuse},
};

impl Registry {
    /// The task's last process exited: free its kernel entries and cgroup. Idempotent (the
    /// kernel may report an empty task more than once).
    pub fn close_task(&mut self, id: u32) {
        self.dirty.insert(id);
        let Some(task) = self.tasks.get_mut(&id) else { return };
        if task.info.ended.is_some() {
            return;
        }
        // A fork may have raced the report: only close when the kernel agrees it is empty. A
        // task with open sub-tasks stays open too, so that stopping or revoking it still
        // reaches them (the 1 s sweep closes it once they are gone).
        let has_open_children = self.tasks.values().any(|t| t.info.parent == Some(id) && t.info.ended.is_none());
        self.dirty.insert(id);
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
        task.learned.clear();
        let reason = match task.info.state {
            TaskState::Stopped => "stopped by an operator; its processes have exited".into(),
            _ => "its last process exited".into(),
        };
        let ended = TaskEnded { actor: None, usage: Some(task.usage(self.dropped_total)), reason };
        let mut event = Event::new(Body::TaskClose(ended), &self.host, now);
        event.task = Some(task.task_ref());
        self.sink.send(event);
        self.stop_dns(id);
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
        self.dirty.insert(id);
        let task = self.tasks.get_mut(&id).ok_or_else(|| refuse(ErrorCode::NotFound, format!("no task {id}")))?;
        if task.info.ended.is_some() {
            return Err(refuse(ErrorCode::BadRequest, format!("task {id} has ended")));
        }
        let declared = Control { actor: None, reason: format!("process {pid} declared: {intent}") };
        if task.steps.len() >= super::registry::STEP_HISTORY {
            task.steps.remove(0);
        }
        let named = super::registry::task_ref_of(&task.info, Some(intent.clone()));
        task.steps.push((crate::daemon::clock::boot_ns_now(), named));
        task.info.step_intent = Some(intent);
        let mut event = Event::new(Body::TaskIntent(declared), &self.host, SystemTime::now());
        event.task = Some(task.task_ref());
        self.sink.send(event);
        Ok(self.info(id).expect("task exists"))
    }

    /// How many ancestors `id` has, and the top one (itself when it has none).
    pub(super) fn ancestry(&self, id: u32) -> (usize, u32) {
        let (mut depth, mut top) = (0, id);
        while let Some(parent) = self.tasks.get(&top).and_then(|t| t.info.parent) {
            depth += 1;
            top = parent;
        }
        (depth, top)
    }

    /// Every task below `id`, open or not.
    pub(super) fn descendants(&self, id: u32) -> Vec<u32> {
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
    pub(super) fn children(&self, id: u32) -> Vec<u32> {
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
        self.kernel.revoke_task(id)?;
        self.kill_processes(id);
        self.dirty.insert(id);
        let task = self.tasks.get_mut(&id).expect("task exists");
        task.info.state = TaskState::Stopped;
        task.info.revoked = true;
        let reason = match by {
            Some(by) => format!("{why} by {by}"),
            None => why.to_string(),
        };
        let ended = TaskEnded { actor: by.cloned(), usage: Some(task.usage(self.dropped_total)), reason };
        let mut event = Event::new(Body::TaskStop(ended), &self.host, SystemTime::now());
        event.task = Some(task.task_ref());
        self.sink.send(event);
        if self.live(id) == 0 {
            self.close_task(id);
        }
        Ok(self.info(id).expect("task exists"))
    }

    /// Kills every process of task `id`: its cgroup, then whatever left it but is still tagged.
    fn kill_processes(&self, id: u32) {
        if let Err(err) = cgroup::kill_all(&self.tasks[&id].cgroup) {
            tracing::warn!(task = id, %err, "cgroup.kill failed; killing tagged processes one by one");
        }
        for pid in self.kernel.processes_of(id) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// At the `landlock` level a grant that ends cannot take back what the Landlock ruleset
    /// allows (descriptors already open, changes to the tree beneath granted paths): the kernel
    /// kills at the next open or exec, and the daemon kills the task's processes at once, at
    /// revocation and, within a second, at expiry.
    pub fn kill_ended_confined_tasks(&mut self) {
        let now = crate::daemon::clock::boot_ns_now();
        let ended: Vec<u32> = self
            .tasks
            .values()
            .filter(|t| t.info.state == TaskState::Open && t.info.landlock_abi.is_some())
            .filter(|t| t.info.revoked || t.expires_ns <= now)
            .filter(|t| live_of(&self.kernel, t) > 0)
            .map(|t| t.info.id)
            .collect();
        for id in ended {
            tracing::info!(task = id, "grant ended at the landlock level: killing the task's processes");
            self.kill_processes(id);
        }
    }

    /// One strike at the `landlock` level: a process killed for an open or exec outside its
    /// grant that Landlock let through (the ruleset is wider than the grant there) ends its task.
    /// The kill lands as the syscall returns, and another thread or process of the task could
    /// race it for the new descriptor; a second try is not given.
    pub fn strike(&mut self, event: &Event) {
        let Some(verdict) = event.body.verdict() else { return };
        if verdict.enforcement != crate::api::Level::Kill || verdict.decision != Decision::Denied {
            return;
        }
        let Some(id) = event.task.as_ref().map(|t| t.id) else { return };
        let confined = self.tasks.get(&id).is_some_and(|t| t.info.landlock_abi.is_some());
        if confined {
            let why = "one of its processes was killed for an access outside the grant (landlock level: one strike)";
            if let Err(err) = self.stop_task(id, None, why) {
                tracing::warn!(task = id, reason = %err.message, "stopping a task after a kill");
            }
        }
    }

    /// Closes tasks the kernel counts as empty: covers a `TASK_EMPTY` record lost to a full
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

    pub(super) fn live(&self, id: u32) -> u64 {
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

    /// Records the first use of an allowed access (`decode::Decoded::Used`).
    pub fn record_use(&mut self, task_id: u32, rules: Vec<String>, touched: Touched) {
        self.dirty.insert(task_id);
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
        let (Some(task), Some(decision)) = (&event.task, event.decision()) else { return };
        self.dirty.insert(task.id);
        let Some(task) = self.tasks.get_mut(&task.id) else { return };
        let key = format!("{} {}", decision.as_str(), event.rule().unwrap_or("-"));
        *task.info.counts.entry(key).or_default() += 1;
    }

    /// Revokes a task's grant, and its sub-tasks', in the kernel; in force when this returns.
    pub fn revoke(&mut self, id: u32, by: &Actor) -> Result<TaskInfo, Refusal> {
        self.revoke_from(id, by, None)
    }

    /// `cascade`: the parent task whose revocation reaches this one.
    pub(super) fn revoke_from(&mut self, id: u32, by: &Actor, cascade: Option<u32>) -> Result<TaskInfo, Refusal> {
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
        self.dirty.insert(id);
        let cascade = cascade.map(|parent| format!(" (revoking its parent task {parent})")).unwrap_or_default();
        let confined = self.tasks[&id].info.landlock_abi.is_some();
        if confined {
            // A Landlock ruleset cannot be withdrawn: end the processes themselves.
            self.kill_processes(id);
        }
        let task = self.tasks.get_mut(&id).expect("checked above");
        task.info.revoked = true;
        let reason = if confined {
            format!("revoked by {by}{cascade}: the task's processes were killed (landlock level)")
        } else {
            format!("revoked by {by}{cascade}: the task's processes are allowed nothing from now on")
        };
        let revoked = Control { actor: Some(by.clone()), reason };
        let mut event = Event::new(Body::GrantRevoke(revoked), &self.host, SystemTime::now());
        event.task = Some(task.task_ref());
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
        let (cap, limit) = if let Some(latest) = task.latest_ns {
            (latest, "the profile's maxTtl (or the parent task's end)".to_string())
        } else {
            let max_left = task.grant.effective_ttl(None).map_err(|m| refuse(ErrorCode::BadRequest, m))?;
            (
                now.saturating_add(max_left.as_nanos() as u64),
                format!("the grant's ttl {} from now", humantime::format_duration(max_left)),
            )
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
        self.dirty.insert(id);
        let task = self.tasks.get_mut(&id).expect("checked above");
        task.expires_ns = expires_ns;
        task.info.expires = clock::rfc3339(wall);
        let reason = format!("extended by {who} by {} to {}", humantime::format_duration(by), task.info.expires);
        let extended = Control { actor: Some(who.clone()), reason };
        let mut event = Event::new(Body::GrantExtend(extended), &self.host, SystemTime::now());
        event.task = Some(task.task_ref());
        self.sink.send(event);
        Ok(self.info(id).expect("task exists"))
    }
}
