//! Which task the current process works for, and whether its grant is still in force.

use agent_guard_common::{
    event::{REASON_EXPIRED, REASON_NO_RULE, REASON_REVOKED},
    task::{STATE_ACTIVE, TaskEntry},
};
use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns};

use crate::maps::{PROC_TAGS, TASK_GONE, TASKS};

/// The current process's task, copied out of the maps.
pub struct CurrentTask {
    pub task_id: u32,
    pub entry: TaskEntry,
}

#[inline(always)]
pub fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

#[inline(always)]
pub fn current_tid() -> u32 {
    bpf_get_current_pid_tgid() as u32
}

/// `None` for untagged processes: they are never affected.
#[inline(always)]
pub fn current_task() -> Option<CurrentTask> {
    // SAFETY: values are plain integers copied out at once; a concurrent update can at worst
    // give a stale copy of one entry, never a dangling reference.
    let tag = unsafe { PROC_TAGS.get(&current_tgid()) }?;
    let task_id = tag.task_id;
    let entry = unsafe { TASKS.get(&task_id) };
    if let Some(entry) = entry {
        return Some(CurrentTask { task_id, entry: *entry });
    }
    // A tag whose task is gone (stopped while the process lived on) allows nothing: fail
    // closed with an entry that is revoked. Written to per-CPU map memory and read back, not
    // built on the stack: the verifier would know its fields, and every branch they decide
    // (`grant_ended`, `landlock_decides`) would verify the rest of the program once more for it.
    let gone = TASK_GONE.get_ptr_mut(0)?;
    // SAFETY: this CPU's entry, written and copied out before the program returns.
    unsafe {
        *gone = TaskEntry {
            grant_id: 0,
            mode: 0,
            state: agent_guard_common::task::STATE_REVOKED,
            parent_task: 0,
            expires_ns: 0,
            confine: agent_guard_common::task::CONFINE_NONE,
            dns_port: 0,
        };
        Some(CurrentTask { task_id, entry: *gone })
    }
}

const MAX_SUBTASK_DEPTH: usize = 4;

/// The task of process `tgid`, if it is tagged.
#[inline(always)]
pub fn task_of(tgid: u32) -> Option<u32> {
    // SAFETY: value copied out at once.
    unsafe { PROC_TAGS.get(&tgid) }.map(|tag| tag.task_id)
}

impl CurrentTask {
    /// Whether process `tgid` works for this task or for one of its sub-tasks (at most
    /// `MAX_SUBTASK_DEPTH` levels down): the processes a task may signal, trace or tune.
    #[inline(always)]
    pub fn owns_process(&self, tgid: u32) -> bool {
        let Some(mut task) = task_of(tgid) else {
            return false;
        };
        for _ in 0..MAX_SUBTASK_DEPTH {
            if task == self.task_id {
                return true;
            }
            // SAFETY: value copied out at once.
            match unsafe { TASKS.get(&task) } {
                Some(entry) if entry.parent_task != 0 => task = entry.parent_task,
                _ => return false,
            }
        }
        task == self.task_id
    }

    /// `None` while the grant is in force; otherwise why nothing is allowed any more.
    /// Expiry is checked against kernel time here, so it needs nothing from the daemon.
    #[inline(always)]
    pub fn grant_ended(&self) -> Option<u32> {
        if self.entry.state != STATE_ACTIVE {
            return Some(REASON_REVOKED);
        }
        // SAFETY: helper without arguments.
        let now = unsafe { bpf_ktime_get_boot_ns() };
        if now >= self.entry.expires_ns {
            return Some(REASON_EXPIRED);
        }
        None
    }

    /// Whether Landlock, not this program, answers what the grant does not allow: the task's
    /// processes are under a ruleset compiled from the grant (`CONFINE_LANDLOCK`), the grant is
    /// in force, and the task enforces. Once the grant ends the `kill` level takes over: a
    /// Landlock ruleset cannot be withdrawn, so it cannot end access by itself.
    #[inline(always)]
    pub fn landlock_decides(&self) -> bool {
        self.entry.confine & agent_guard_common::task::CONFINE_LANDLOCK != 0
            && self.entry.mode != agent_guard_common::task::MODE_AUDIT
            && self.grant_ended().is_none()
    }

    /// With `landlock_decides`: whether the daemon's supervisor holds the grant's `ask` paths,
    /// which Landlock then lets through.
    #[inline(always)]
    pub fn asks_held(&self) -> bool {
        self.entry.confine & agent_guard_common::task::CONFINE_ASKS_HELD != 0
    }

    /// With `landlock_decides`: whether Landlock's file rules are exactly the grant's.
    #[inline(always)]
    pub fn files_exact(&self) -> bool {
        self.entry.confine & agent_guard_common::task::CONFINE_FILES_EXACT != 0
    }

    /// Whether the task's opens are Landlock's alone (`CONFINE_OPENS_CACHED`), in force or not:
    /// the exit program judges them whole (`open_cached.rs`), also once the grant has ended.
    #[inline(always)]
    pub fn opens_cached(&self) -> bool {
        self.entry.confine & agent_guard_common::task::CONFINE_OPENS_CACHED != 0
            && self.entry.mode != agent_guard_common::task::MODE_AUDIT
    }

    /// Reason for an out-of-scope verdict: the grant ended, or no rule matched.
    #[inline(always)]
    pub fn out_of_scope_reason(&self) -> u32 {
        self.grant_ended().unwrap_or(REASON_NO_RULE)
    }
}

/// `EventHeader::reason` for `verdict`: why it is out of scope, or none (a rule decided).
#[inline(always)]
pub fn reason_for(task: &CurrentTask, verdict: u32) -> u32 {
    if verdict == agent_guard_common::event::VERDICT_OUT_OF_SCOPE
        || verdict == agent_guard_common::event::VERDICT_UNRESOLVED
    {
        task.out_of_scope_reason()
    } else {
        agent_guard_common::event::REASON_NONE
    }
}

/// Sends SIGKILL to the current process (every thread). It is taken on the way back to user
/// space: from a syscall-exit program, before the syscall's result can be used.
#[inline(always)]
pub fn kill_current() {
    // SAFETY: helper with a signal number; SIGKILL (9) goes to the whole process.
    unsafe { aya_ebpf::helpers::generated::bpf_send_signal(9) };
}

/// The `kill` level: where BPF LSM is not available, an out-of-scope action the kernel itself
/// decided (not one left to the daemon) of a task in enforce mode kills the process. Returns
/// the `EventHeader::action` to report.
#[inline(always)]
pub fn kill_if_enforced(task: &CurrentTask, verdict: u32) -> u32 {
    if crate::config::kill_mode()
        && (verdict == agent_guard_common::event::VERDICT_OUT_OF_SCOPE
            || verdict == agent_guard_common::event::VERDICT_RULE_DENY)
        && task.entry.mode != agent_guard_common::task::MODE_AUDIT
    {
        kill_current();
        agent_guard_common::event::ACTION_KILLED
    } else {
        agent_guard_common::event::ACTION_ALLOWED
    }
}
