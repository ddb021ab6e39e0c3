//! Filling event headers and putting records on the ring buffer.

use agent_guard_common::{event::EventHeader, task::ProcTag};
use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_boot_ns,
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

/// Puts `record` on the ring buffer; when it is full the loss is counted in `EVENT_DROPS`,
/// which the daemon reports, so nothing is lost silently. Whether it was put there.
#[inline(always)]
pub fn send<T>(record: &T) -> bool {
    let sent = EVENTS.output(record, 0).is_ok();
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
