//! Filling event headers and putting records on the ring buffer.

use agent_guard_common::{
    event::{ACTION_KILLED, EventHeader},
    task::ProcTag,
};
use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_boot_ns},
};

use crate::maps::{ALERTS, EVENT_DROPS, EVENTS, PROC_TAGS};

#[inline(always)]
pub fn header(kind: u32, verdict: u32, reason: u32, action: u32, task_id: u32) -> EventHeader {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    // The current image's exec id and its parent's (zeros if untagged): one more lookup, paid
    // only when something is reported.
    // SAFETY: value copied out at once.
    let tag = unsafe { PROC_TAGS.get(&((pid_tgid >> 32) as u32)) }.copied().unwrap_or(ProcTag {
        task_id: 0,
        parent_tgid: 0,
        exec_ns: 0,
        parent_exec_ns: 0,
    });
    EventHeader {
        kind,
        verdict,
        reason,
        action,
        task_id,
        tgid: (pid_tgid >> 32) as u32,
        pid: pid_tgid as u32,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        ptgid: tag.parent_tgid,
        // SAFETY: helper without arguments.
        boot_ns: unsafe { bpf_ktime_get_boot_ns() },
        exec_ns: tag.exec_ns,
        parent_exec_ns: tag.parent_exec_ns,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    }
}

/// Puts `record` on the ring buffer without waking the daemon: its reader collects what is
/// there every few milliseconds (`READ_TICK` in the daemon) and whenever a `send_now` record
/// wakes it. A wake-up is an `irq_work` the kernel raises when the reader has caught up
/// (kernel/bpf/ringbuf.c `bpf_ringbuf_commit`): a self-interrupt, which under virtualisation
/// exits to the hypervisor and cost about 10 µs of each tagged fork on this project's hosts
/// (perf: `native_write_msr` under `task_newtask`). When the buffer is full the loss is counted
/// in `EVENT_DROPS`, which the daemon reports, so nothing is lost silently. Whether it was put
/// there.
#[inline(always)]
pub fn send<T>(record: &T) -> bool {
    put(record, u64::from(BPF_RB_NO_WAKEUP))
}

/// `send`, waking the daemon at once whatever is queued before it: for records the daemon has
/// to act on (a held action waiting for its question, a task's last process gone, a process
/// the kernel killed). Without
/// the force, a record behind unread ones wakes nobody (the kernel wakes only a reader that has
/// caught up), and would wait for the reader's next tick.
#[inline(always)]
pub fn send_now<T>(record: &T) -> bool {
    put(record, u64::from(BPF_RB_FORCE_WAKEUP))
}

/// `send`, or `send_now` for the record of a process the kernel killed: the daemon ends a
/// confined task at its first kill (one strike), which must not wait for the reader's tick.
#[inline(always)]
pub fn send_action<T>(record: &T, action: u32) -> bool {
    if action == ACTION_KILLED { send_now(record) } else { send(record) }
}

#[inline(always)]
fn put<T>(record: &T, flags: u64) -> bool {
    let sent = EVENTS.output(record, flags).is_ok();
    if !sent {
        count_drop();
    }
    sent
}

/// Puts a record of a refused attempt on the guard or on the task's boundary (tampering, an
/// escape, an untaggable child) on its own ring buffer, so that a flood of ordinary events
/// filling EVENTS cannot crowd it out; a loss there is counted too.
#[inline(always)]
pub fn send_alert<T>(record: &T) {
    if ALERTS.output(record, 0).is_err() {
        count_drop();
    }
}

#[inline(always)]
pub fn count_drop() {
    if let Some(drops) = EVENT_DROPS.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, only this CPU writes it while this program runs.
        unsafe { *drops += 1 };
    }
}
