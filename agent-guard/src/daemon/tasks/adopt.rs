//! Saving the open tasks for the next daemon and adopting what a previous one left
//! (state.rs, kernel/ pinning).

use std::time::SystemTime;

use agent_guard_common::path::PathRule;

use super::{
    approvals::TemporaryAllow,
    registry::{Registry, Task},
    state::{Change, Meta, Saved, SavedAllow, SavedTask, Saving, StateDir, StateWriter},
};
use crate::daemon::{
    clock,
    events::schema::{Body, Event, TaskEnded, TaskRef},
    kernel::cgroup,
};
use crate::grant::CompiledGrant;

fn saved_task(t: &Task) -> SavedTask {
    SavedTask {
        info: t.info.clone(),
        grant: t.grant.clone(),
        expires_ns: t.expires_ns,
        latest_ns: t.latest_ns,
        moved_out: t.moved_out,
        cgroup: t.cgroup.clone(),
        usage: t.usage.clone(),
        drops_at_open: t.drops_at_open,
        access: Some(t.access.clone()),
    }
}

impl Registry {
    /// Queues what changed since the last call: the tasks marked dirty (an ended one is
    /// removed) and the counters. The caller writes them with the returned [`Saving`] after
    /// releasing the registry lock (an API reply waits for it; the 1 s sweep writes what is
    /// left pending). A failed write is logged, not fatal: the kernel keeps enforcing; only a
    /// restart's adoption would be incomplete (and fail closed).
    pub fn persist(&mut self) -> Saving {
        let Some(state) = self.state.as_ref() else { return Saving::none() };
        let mut changes = Vec::with_capacity(self.dirty.len() + 1);
        for id in std::mem::take(&mut self.dirty) {
            let saved = self
                .tasks
                .get(&id)
                .filter(|t| t.info.ended.is_none())
                .map(|t| serde_json::to_vec(&saved_task(t)).expect("the state serialises"));
            changes.push(Change::Task { id, saved });
        }
        let meta = Meta {
            next_id: self.next_id,
            // The ids saved as used ahead of being given, not only those given.
            next_approval: self.next_approval.max(self.approvals_saved),
            dropped_total: self.dropped_total,
            temporary: self
                .temporary
                .iter()
                .map(|t| SavedAllow {
                    task_id: t.task_id,
                    hash: t.hash,
                    previous: t.previous.map(|r| [r.exact, r.children, r.subtree, r.below]),
                    until_ns: t.until_ns,
                    bits: t.bits,
                })
                .collect(),
        };
        changes.push(Change::Meta(serde_json::to_vec(&meta).expect("the state serialises")));
        state.queue(changes)
    }

    /// Marks the daemon alive now, for the next daemon's measure of the gap (not waited for).
    pub fn heartbeat(&self) {
        if let Some(state) = self.state.as_ref() {
            drop(state.queue(vec![Change::Heartbeat]));
        }
    }

    /// Gives the saved state to the registry, with the approval ids a previous daemon used.
    pub fn keep_state(&mut self, state: StateDir) {
        self.next_approval = self.next_approval.max(state.approval_floor());
        self.state = Some(StateWriter::new(state));
    }

    /// Clears the saved state at a deliberate stop, keeping the next approval id; waits for it.
    pub fn clear_state(&mut self) {
        // Every id given, and those saved as used ahead of being given.
        let next_approval = self.next_approval.max(self.approvals_saved);
        if let Some(state) = self.state.as_ref() {
            state.clear(next_approval);
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
    #[expect(
        clippy::too_many_lines,
        reason = "adoption's four cases in one place (kept, revoked, closed, lost questions)"
    )]
    pub fn adopt(&mut self, saved: Option<Saved>) -> (usize, usize, usize) {
        let saved = saved.unwrap_or_default();
        self.next_id = self.next_id.max(saved.next_id);
        self.next_approval = self.next_approval.max(saved.next_approval);
        self.dropped_total = saved.dropped_total;
        let in_kernel = self.kernel.task_ids();
        let (mut adopted, mut closed) = (0, 0);
        let now = SystemTime::now();
        for t in saved.tasks {
            let id = t.info.id;
            let compiled = match CompiledGrant::compile_seeded(&t.grant, self.kernel.path_seed) {
                Ok(compiled) => compiled,
                Err(err) => {
                    tracing::error!(task = id, %err, "a saved grant no longer compiles; the task is revoked");
                    continue;
                }
            };
            let access = t.access.unwrap_or_else(|| super::requests::TaskAccess {
                opener_uid: u32::MAX,
                base: t.grant.spec.clone(),
                ..Default::default()
            });
            // The step declared before the restart is in force for every record still to come.
            let unstepped = super::registry::task_ref_of(&t.info, None);
            let steps = t
                .info
                .step_intent
                .clone()
                .map(|step| (0, super::registry::task_ref_of(&t.info, Some(step))))
                .into_iter()
                .collect();
            let mut task = Task {
                access,
                unstepped,
                steps,
                info: t.info,
                grant: t.grant,
                expires_ns: t.expires_ns,
                latest_ns: t.latest_ns,
                moved_out: t.moved_out,
                compiled,
                cgroup: t.cgroup,
                usage: t.usage,
                drops_at_open: t.drops_at_open,
                // A listener dies with its daemon: the task's held calls fail with ENOSYS.
                asks_holder: None,
                supervised: false,
                learned: std::collections::HashMap::new(),
            };
            if in_kernel.contains(&id) {
                adopted += 1;
                self.tasks.insert(id, task);
                // Opened by a daemon whose exit programs judged its opens (the kernel's BTF);
                // this one's cannot (open_cached.rs): they are judged at entry again.
                if !self.kernel.opens_cached
                    && let Err(err) = self.kernel.stop_opens_cached(id)
                {
                    tracing::warn!(task = id, %err, "an adopted task's opens could not be judged at entry again");
                }
                // Its resolver died with the previous daemon: a new one, on a new port.
                match self.start_dns(id) {
                    Ok(port) => {
                        if let Err(err) = self.kernel.set_dns_port(id, port) {
                            tracing::warn!(task = id, %err, "the task's DNS could not be sent to its new resolver");
                        }
                    }
                    Err(err) => {
                        // Its old port is no longer the daemon's: whoever binds it next must not
                        // be reached as the resolver. DNS is then judged by address rules.
                        tracing::warn!(task = id, %err, "no DNS resolver for an adopted task: its DNS is judged by address rules");
                        if let Err(err) = self.kernel.set_dns_port(id, 0) {
                            tracing::warn!(task = id, %err, "the task's old resolver port could not be cleared");
                        }
                    }
                }
                continue;
            }
            // The kernel state is gone (the host restarted, or the pins were removed): the
            // task's processes went with it.
            closed += 1;
            task.info.ended = Some(clock::rfc3339(now));
            task.info.live_processes = 0;
            cgroup::remove_when_empty(task.cgroup.clone());
            let ended = TaskEnded {
                actor: None,
                usage: Some(task.usage(self.dropped_total)),
                reason: "the guard's kernel state was gone when the daemon started (host restart?)".into(),
            };
            let mut event = Event::new(Body::TaskClose(ended), &self.host, now);
            event.task = Some(task.task_ref());
            self.sink.send(event);
            self.tasks.insert(id, task);
            self.dirty.insert(id);
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
            let ended = TaskEnded {
                actor: None,
                usage: None,
                reason:
                    "the kernel held this task but the daemon's saved state did not (lost in a crash): revoked and \
                         its processes killed"
                        .into(),
            };
            let mut event = Event::new(Body::TaskStop(ended), &self.host, now);
            event.task = Some(std::sync::Arc::new(TaskRef {
                id,
                agent: String::new(),
                intent: String::new(),
                grant: String::new(),
                parent: None,
                step: None,
                container: None,
            }));
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
                bits: t.bits,
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
