//! Task tags follow processes: every process forked by a tagged one is tagged before it first
//! runs, and the tag is removed when its whole thread group has exited.
//!
//! - `task/task_newtask` fires in `copy_process()` (kernel/fork.c) after the child's pid is
//!   allocated and before `wake_up_new_task()`, with the clone flags: the child cannot act
//!   untagged. Threads (`CLONE_THREAD`) share the tgid and so the tag; double forks, `setsid()`
//!   and re-parenting do not matter because the tag is keyed by tgid, not by parent.
//! - `sched/sched_process_exit` fires in `do_exit()` after `group_dead` is computed; the tag is
//!   removed only when the group is dead, so a leader that exits first, or that `de_thread()`
//!   kills because another thread exec'd (fs/exec.c: the old leader runs `do_exit` with pid ==
//!   tgid while the process lives on), does not untag the live process; and a reused pid
//!   never inherits a stale tag (a tgid is not reused before the group is dead and reaped).
//!   The record has a `group_dead` field from Linux 6.16; before, the program reads
//!   `current->signal->live`, which `do_exit()` decrements before the tracepoint
//!   (kernel/exit.c: atomic_dec_and_test(&tsk->signal->live) precedes
//!   `trace_sched_process_exit`), so it is 0 exactly when the group is dead.
//!
//! Fail-open/closed: on BPF LSM kernels a fork that could not be tagged is refused before it
//! happens (`lsm_system.rs` `task_alloc`, from `TAG_COUNT`). Should a child still find `PROC_TAGS`
//! full, the kernel reports `KIND_TAG_LOST` and the daemon kills that child.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};

use agent_guard_common::{
    event::REASON_NONE,
    event::{ACTION_ALLOWED, KIND_FORK, KIND_TAG_LOST, KIND_TASK_EMPTY, TaskEvent, VERDICT_NONE},
    task::ProcTag,
};
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

use crate::{
    config, emit,
    maps::{PROC_TAGS, TAG_COUNT, TASK_LIVE},
    task::current_tgid,
};

/// include/uapi/linux/sched.h
const CLONE_THREAD: u64 = 0x0001_0000;

#[tracepoint]
pub fn task_newtask(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets read from the record's format file at load time.
    let fields =
        unsafe { (ctx.read_at::<i32>(config::newtask_pid_off()), ctx.read_at::<u64>(config::newtask_flags_off())) };
    if let (Ok(child), Ok(flags)) = fields {
        try_newtask(child as u32, flags);
    }
    0
}

#[inline(always)]
fn try_newtask(child: u32, clone_flags: u64) {
    if clone_flags & CLONE_THREAD != 0 {
        return;
    }
    // SAFETY: value copied out at once.
    let Some(parent) = (unsafe { PROC_TAGS.get(&current_tgid()) }).copied() else {
        return;
    };
    // The child is a new image: its exec id starts now, and its parent is the current one.
    let fork = emit::header(KIND_FORK, VERDICT_NONE, REASON_NONE, ACTION_ALLOWED, parent.task_id);
    let tag = ProcTag {
        task_id: parent.task_id,
        parent_tgid: current_tgid(),
        exec_ns: fork.boot_ns,
        parent_exec_ns: parent.exec_ns,
    };
    if PROC_TAGS.insert(&child, &tag, 0).is_err() {
        let event = TaskEvent {
            header: emit::header(KIND_TAG_LOST, VERDICT_NONE, REASON_NONE, ACTION_ALLOWED, tag.task_id),
            child_tgid: child,
            detail: 0,
        };
        emit::send_alert(&event);
        return;
    }
    count_tags(1);
    if let Some(live) = TASK_LIVE.get_ptr_mut(&tag.task_id) {
        // SAFETY: an 8-byte aligned map value only ever updated atomically (BPF_ATOMIC; core's
        // atomic types are not available on the bpf target).
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(live, 1) };
    }
    // Lineage for the daemon (exec ids, ancestry); lost only with a full ring buffer, counted.
    emit::send(&TaskEvent { header: fork, child_tgid: child, detail: 0 });
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let group_dead_off = config::exit_group_dead_off();
    // SAFETY: offsets read from the record's format file at load time.
    let group_dead = if group_dead_off != 0 {
        matches!(unsafe { ctx.read_at::<u8>(group_dead_off) }, Ok(v) if v != 0)
    } else if config::task_signal_off() != 0 {
        // Kernels before 6.16: signal->live, already decremented for this thread.
        // SAFETY: current's signal_struct pointer and its `live` counter, at BTF offsets.
        let signal = unsafe {
            bpf_probe_read_kernel((bpf_get_current_task() as *const u8).add(config::task_signal_off()).cast::<u64>())
        }
        .unwrap_or(0);
        let live = unsafe { bpf_probe_read_kernel((signal as *const u8).add(config::signal_live_off()).cast::<i32>()) };
        matches!(live, Ok(0))
    } else {
        // No BTF: the leader's exit (weaker: a leader exiting before its threads, or killed by
        // another thread's exec, untags the process; the daemon says so at start).
        let pid = unsafe { ctx.read_at::<i32>(config::exit_pid_off()) };
        matches!(pid, Ok(pid) if pid as u32 == current_tgid())
    };
    if group_dead {
        try_group_exit(current_tgid());
    }
    0
}

#[inline(always)]
fn try_group_exit(tgid: u32) {
    // SAFETY: value copied out at once.
    let Some(tag) = (unsafe { PROC_TAGS.get(&tgid) }).copied() else {
        return;
    };
    if PROC_TAGS.remove(&tgid).is_ok() {
        count_tags(u64::MAX);
    }
    let Some(live) = TASK_LIVE.get_ptr_mut(&tag.task_id) else {
        return;
    };
    // A fetching atomic needs BPF cpu v3, which the bpfel target does not build for: add
    // without fetch, then read. The last exit always reads 0; two exits racing may both read
    // 0, so TASK_EMPTY can repeat and the daemon treats it as idempotent.
    // SAFETY: as in try_newtask.
    let live = unsafe {
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(live, u64::MAX);
        core::ptr::read_volatile(live)
    };
    if live == 0 {
        let event = TaskEvent {
            header: emit::header(KIND_TASK_EMPTY, VERDICT_NONE, REASON_NONE, ACTION_ALLOWED, tag.task_id),
            child_tgid: 0,
            detail: 0,
        };
        emit::send_now(&event);
    }
}

/// Adds `delta` (`u64::MAX`: minus one) to the kernel's share of `TAG_COUNT`.
#[inline(always)]
fn count_tags(delta: u64) {
    if let Some(count) = TAG_COUNT.get_ptr_mut(0) {
        // SAFETY: as in try_newtask: an aligned u64 map value only ever updated atomically.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(count, delta) };
    }
}
