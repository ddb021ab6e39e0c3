//! BPF LSM hooks that protect the guard itself from the agents it bounds: a tagged process may
//! not signal the daemon (security_task_kill, kernel/signal.c check_kill_permission), attach to
//! it with ptrace or read its memory through /proc (security_ptrace_access_check,
//! kernel/ptrace.c __ptrace_may_access), or use bpf(2) at all (security_bpf,
//! kernel/bpf/syscall.c), which could detach programs or rewrite the grant maps.
//!
//! Fail-open/closed: untagged processes are never affected; for tagged ones these refusals do
//! not depend on the grant or its mode (audit mode does not let an agent blind the guard).

use agent_guard_common::event::{
    ACTION_BLOCKED, KIND_TAMPER, REASON_NONE, TAMPER_BPF, TAMPER_PTRACE, TAMPER_SIGNAL, TaskEvent, VERDICT_OUT_OF_SCOPE,
};
use aya_ebpf::{helpers::bpf_probe_read_kernel, macros::lsm, programs::LsmContext};

use crate::{config, emit, lsm::verdict, task::current_task};

/// task_kill(struct task_struct *p, struct kernel_siginfo *info, int sig, const struct cred *cred)
#[lsm(hook = "task_kill")]
pub fn task_kill(ctx: LsmContext) -> i32 {
    let sig: i32 = ctx.arg(2);
    // Signal 0 only checks that the process exists.
    verdict(sig == 0 || !targets_daemon(ctx.arg(0), TAMPER_SIGNAL))
}

/// ptrace_access_check(struct task_struct *child, unsigned int mode)
#[lsm(hook = "ptrace_access_check")]
pub fn ptrace_access_check(ctx: LsmContext) -> i32 {
    verdict(!targets_daemon(ctx.arg(0), TAMPER_PTRACE))
}

/// bpf(int cmd, union bpf_attr *attr, unsigned int size)
#[lsm(hook = "bpf")]
pub fn bpf(_ctx: LsmContext) -> i32 {
    verdict(!refuse_tampering(0, TAMPER_BPF))
}

/// Whether a tagged process is acting on the daemon (and so is refused and reported).
#[inline(always)]
fn targets_daemon(target: *const u8, what: u32) -> bool {
    // SAFETY: tgid of the hook's task_struct, at its BTF offset.
    let tgid = unsafe { bpf_probe_read_kernel(target.add(config::task_tgid_off()) as *const i32) }.unwrap_or(0);
    tgid as u32 == config::daemon_tgid() && refuse_tampering(tgid as u32, what)
}

/// Refuses `what` for tagged processes and reports it; untagged ones are left alone.
#[inline(always)]
fn refuse_tampering(target: u32, what: u32) -> bool {
    let Some(task) = current_task() else {
        return false;
    };
    let event = TaskEvent {
        header: emit::header(KIND_TAMPER, VERDICT_OUT_OF_SCOPE, REASON_NONE, ACTION_BLOCKED, task.task_id),
        child_tgid: target,
        detail: what,
    };
    emit::send(&event);
    true
}
