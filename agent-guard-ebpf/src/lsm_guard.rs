//! BPF LSM hooks that keep a task's processes to themselves and away from the guard: a tagged
//! process may signal, trace, read or write the memory of, or change the limits, priority,
//! scheduling or memory placement of its own task's processes (and its sub-tasks') only.
//! Anything aimed at the daemon is reported as tampering; anything else outside the task as
//! an escape.
//!
//! - `task_kill` (kernel/signal.c `check_kill_permission)`: kill, tgkill, tkill, sigqueue,
//!   `rt_sigqueueinfo`, `pidfd_send_signal`. Signal 0 (does it exist?) is allowed.
//! - `file_send_sigiotask` (fs/fcntl.c `sigio_perm)`: a SIGIO or SIGURG routed through a file
//!   owner. It can run in any context (a socket's softirq), so the daemon is protected
//!   whoever is current; and `file_fcntl` refuses a tagged process naming an owner outside
//!   its task (`F_SETOWN`, `F_SETOWN_EX`).
//! - `ptrace_access_check` (kernel/ptrace.c __`ptrace_may_access)`: ptrace attach and every
//!   relative that asks the same question: /proc/PID/mem and environ (`mm_access`),
//!   `process_vm_readv/writev`, `pidfd_getfd`, kcmp, /proc/PID/ns links. The kernel answers for
//!   threads of the same process before calling the hook.
//! - `task_setrlimit` (kernel/sys.c `do_prlimit`), `task_setnice`, `task_setioprio`,
//!   `task_setscheduler` (`sched_setscheduler`, `sched_setaffinity`, `sched_setattr`),
//!   `task_movememory` (`migrate_pages`, `move_pages`).
//! - `bpf` (kernel/bpf/syscall.c): any use of bpf(2), which could detach programs or rewrite
//!   the grant maps.
//!
//! Fail-open/closed: untagged processes are never affected (except that nobody can route a
//! SIGIO to the daemon, which never asks for one); for tagged ones these refusals do not
//! depend on the grant or its mode (audit mode does not let an agent blind the guard).

use agent_guard_common::event::{
    ESCAPE_FOWNER, ESCAPE_PTRACE, ESCAPE_SCHED, ESCAPE_SIGNAL, SCHED_OP_IOPRIO, SCHED_OP_MOVE_MEMORY, SCHED_OP_NICE,
    SCHED_OP_RLIMIT, SCHED_OP_SCHEDULER, TAMPER_BPF, TAMPER_LIMITS, TAMPER_PTRACE, TAMPER_SIGIO, TAMPER_SIGNAL,
};
use aya_ebpf::{
    helpers::{bpf_probe_read_kernel, bpf_probe_read_user},
    macros::lsm,
    programs::LsmContext,
};

use crate::{
    config,
    escape::{refuse, tamper},
    lsm::verdict,
    task::current_task,
};

/// include/uapi/asm-generic/fcntl.h
const F_SETOWN: u32 = 8;
const F_SETOWN_EX: u32 = 15;
const F_OWNER_TID: i32 = 0;
const F_OWNER_PGRP: i32 = 2;
/// include/linux/ptrace.h: the probe modes that ask quietly (stat fields of /proc/PID/stat).
const PTRACE_MODE_NOAUDIT: u32 = 0x04;

/// `task_kill(struct` `task_struct` *p, struct `kernel_siginfo` *info, int sig, const struct cred *cred)
#[lsm(hook = "task_kill")]
pub fn task_kill(ctx: LsmContext) -> i32 {
    let sig: i32 = ctx.arg(2);
    // Signal 0 only checks that the process exists.
    verdict(sig == 0 || may_act_on(ctx.arg(0), TAMPER_SIGNAL, ESCAPE_SIGNAL, sig as u64, true))
}

/// `ptrace_access_check(struct` `task_struct` *child, unsigned int mode)
#[lsm(hook = "ptrace_access_check")]
pub fn ptrace_access_check(ctx: LsmContext) -> i32 {
    let mode: u32 = ctx.arg(1);
    verdict(may_act_on(ctx.arg(0), TAMPER_PTRACE, ESCAPE_PTRACE, u64::from(mode), mode & PTRACE_MODE_NOAUDIT == 0))
}

/// `task_setrlimit(struct` `task_struct` *p, unsigned int resource, struct rlimit *`new_rlim`)
#[lsm(hook = "task_setrlimit")]
pub fn task_setrlimit(ctx: LsmContext) -> i32 {
    verdict(may_act_on(ctx.arg(0), TAMPER_LIMITS, ESCAPE_SCHED, SCHED_OP_RLIMIT, true))
}

/// `task_setnice(struct` `task_struct` *p, int nice)
#[lsm(hook = "task_setnice")]
pub fn task_setnice(ctx: LsmContext) -> i32 {
    verdict(may_act_on(ctx.arg(0), TAMPER_LIMITS, ESCAPE_SCHED, SCHED_OP_NICE, true))
}

/// `task_setioprio(struct` `task_struct` *p, int ioprio)
#[lsm(hook = "task_setioprio")]
pub fn task_setioprio(ctx: LsmContext) -> i32 {
    verdict(may_act_on(ctx.arg(0), TAMPER_LIMITS, ESCAPE_SCHED, SCHED_OP_IOPRIO, true))
}

/// `task_setscheduler(struct` `task_struct` *p)
#[lsm(hook = "task_setscheduler")]
pub fn task_setscheduler(ctx: LsmContext) -> i32 {
    verdict(may_act_on(ctx.arg(0), TAMPER_LIMITS, ESCAPE_SCHED, SCHED_OP_SCHEDULER, true))
}

/// `task_movememory(struct` `task_struct` *p)
#[lsm(hook = "task_movememory")]
pub fn task_movememory(ctx: LsmContext) -> i32 {
    verdict(may_act_on(ctx.arg(0), TAMPER_LIMITS, ESCAPE_SCHED, SCHED_OP_MOVE_MEMORY, true))
}

/// `file_send_sigiotask(struct` `task_struct` *tsk, struct `fown_struct` *fown, int sig)
#[lsm(hook = "file_send_sigiotask")]
pub fn file_send_sigiotask(ctx: LsmContext) -> i32 {
    let target = tgid_of(ctx.arg(0));
    if target != config::daemon_tgid() {
        return verdict(true);
    }
    let task_id = current_task().map_or(0, |task| task.task_id);
    verdict(tamper(task_id, TAMPER_SIGIO, target))
}

/// `file_fcntl(struct` file *file, unsigned int cmd, unsigned long arg)
#[lsm(hook = "file_fcntl")]
pub fn file_fcntl(ctx: LsmContext) -> i32 {
    let cmd: u32 = ctx.arg(1);
    if cmd != F_SETOWN && cmd != F_SETOWN_EX {
        return verdict(true);
    }
    let Some(task) = current_task() else {
        return verdict(true);
    };
    let arg: u64 = ctx.arg(2);
    // F_SETOWN: a pid, or minus a process group. F_SETOWN_EX: a user pointer to
    // struct f_owner_ex { int type; pid_t pid; }.
    let (kind, pid) = if cmd == F_SETOWN {
        let pid = arg as i32;
        if pid < 0 { (F_OWNER_PGRP, -pid) } else { (1, pid) }
    } else {
        // SAFETY: reads 8 bytes of the caller's memory; a fault refuses the call.
        match unsafe { bpf_probe_read_user(arg as *const [i32; 2]) } {
            Ok([kind, pid]) => (kind, pid),
            Err(_) => return verdict(false),
        }
    };
    // Owner 0 clears it. A thread id or a process group may name processes outside the task
    // (only thread-group leaders are tagged by id; a group led by a process of the task can
    // hold untagged members, such as a pipeline's other side): refused unless it names a
    // process of the task.
    let allowed = pid == 0 || (kind != F_OWNER_TID && kind != F_OWNER_PGRP && task.owns_process(pid as u32));
    if allowed {
        return verdict(true);
    }
    if pid as u32 == config::daemon_tgid() {
        return verdict(tamper(task.task_id, TAMPER_SIGIO, pid as u32));
    }
    verdict(refuse(&task, ESCAPE_FOWNER, pid as u32, kind as u64))
}

/// bpf(int cmd, union `bpf_attr` *attr, unsigned int size)
#[lsm(hook = "bpf")]
pub fn bpf(_ctx: LsmContext) -> i32 {
    let Some(task) = current_task() else {
        return verdict(true);
    };
    verdict(tamper(task.task_id, TAMPER_BPF, 0))
}

/// The tgid of a `task_struct`.
#[inline(always)]
fn tgid_of(target: *const u8) -> u32 {
    // SAFETY: tgid of the hook's task_struct, at its BTF offset.
    unsafe { bpf_probe_read_kernel(target.add(config::task_tgid_off()).cast::<i32>()) }.unwrap_or(0) as u32
}

/// Whether the current process may act on `target` (a `task_struct)`: always when untagged;
/// when tagged, only on its own task's processes. A refusal is reported as `tamper` when the
/// target is the daemon, else as the escape `escape` with `arg` (unless `report` is false:
/// the kernel's quiet probes).
#[inline(always)]
fn may_act_on(target: *const u8, tamper_what: u32, escape: u32, arg: u64, report: bool) -> bool {
    let Some(task) = current_task() else {
        return true;
    };
    let tgid = tgid_of(target);
    if task.owns_process(tgid) {
        return true;
    }
    if tgid == config::daemon_tgid() {
        return tamper(task.task_id, tamper_what, tgid);
    }
    if report {
        refuse(&task, escape, tgid, arg);
    }
    false
}
