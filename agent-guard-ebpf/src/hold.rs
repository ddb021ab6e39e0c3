//! Hold-and-ask: an action matched by an `ask` rule is held inside the kernel until a human
//! decides. The hook records the action in APPROVALS (keyed by tid), reports it, stops the
//! process (`bpf_send_signal(SIGSTOP)`) and returns -ERESTARTNOINTR: when the daemon continues
//! the process (SIGCONT), the kernel restarts the very same syscall (arch/x86/kernel/signal.c
//! `handle_signal` / `restart_syscall`), the hook runs again and finds the decision. The agent sees
//! a slow call that succeeds, or EPERM; never EINTR (-ERESTARTSYS would leak it to callers
//! with a SIGCONT handler without `SA_RESTART`).

use agent_guard_common::task::{
    APPROVAL_GRANTED, APPROVAL_PASSED, APPROVAL_PENDING, APPROVAL_REFUSED, Approval, MODE_AUDIT,
};
use aya_ebpf::helpers::{bpf_ktime_get_boot_ns, generated::bpf_send_signal};

use crate::{
    config,
    maps::APPROVALS,
    task::{CurrentTask, current_tid},
};

const SIGSTOP: u32 = 19;
/// include/linux/errno.h: restart the syscall whatever the signal disposition.
const ERESTARTNOINTR: i32 = -513;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
    Hold,
}

/// The LSM hook's return value for `v`. The verifier needs a constant it can bound within
/// [-4095, 0] (kernel/bpf/verifier.c `check_return_code`) and loses all bounds through a
/// negation, which is what LLVM makes of a two-way choice when it can see the condition is 0
/// or 1. An empty asm hides the code, leaving LLVM only constant returns.
#[inline(always)]
pub fn ret(v: Verdict) -> i32 {
    let mut code: u64 = match v {
        Verdict::Allow => 0,
        Verdict::Deny => 1,
        Verdict::Hold => 2,
    };
    // SAFETY: an empty instruction sequence; it only makes `code` opaque to the optimiser.
    unsafe { core::arch::asm!("/* {0} */", inout(reg) code) };
    if code == 0 {
        0
    } else if code == 1 {
        -1
    } else {
        ERESTARTNOINTR
    }
}

/// What an `ask` rule says about an action needing `need` on the path hashed `hash`.
pub enum Asked {
    /// No ask rule covers it: the ordinary decision applies.
    No,
    /// A human decided (or is still deciding, and the process is stopped again).
    Decided(Verdict),
    /// A new question: the caller reports it, then holds the process with `hold()`.
    New,
}

#[inline(always)]
pub fn ask(task: &CurrentTask, need: u32, hash: u64) -> Asked {
    // Audit mode never holds: the action goes through and is flagged.
    if task.entry.mode == MODE_AUDIT || task.grant_ended().is_some() {
        return Asked::No;
    }
    let tid = current_tid();
    // SAFETY: the value is copied out at once.
    if let Some(a) = unsafe { APPROVALS.get(&tid) }.copied()
        && a.hash == hash
        && a.access == need
        && a.state != APPROVAL_PASSED
    {
        return match a.state {
            APPROVAL_GRANTED => {
                let _ = APPROVALS.remove(&tid);
                Asked::Decided(Verdict::Allow)
            }
            APPROVAL_REFUSED => {
                let _ = APPROVALS.remove(&tid);
                Asked::Decided(Verdict::Deny)
            }
            // Past its deadline with nobody's answer (the daemon may be gone): refused here,
            // so that no held action ever goes through without a human.
            // SAFETY: helper without arguments.
            _ if unsafe { bpf_ktime_get_boot_ns() } >= a.deadline_ns => {
                let _ = APPROVALS.remove(&tid);
                Asked::Decided(Verdict::Deny)
            }
            // Continued before a decision (someone sent SIGCONT): stop again.
            _ => Asked::Decided(hold()),
        };
    }
    // SAFETY: helper without arguments.
    let deadline_ns = unsafe { bpf_ktime_get_boot_ns() }.saturating_add(config::approval_ttl_ns());
    let pending = Approval { state: APPROVAL_PENDING, access: need, hash, deadline_ns };
    if APPROVALS.insert(&tid, &pending, 0).is_err() {
        // No room to remember the question: refuse rather than let it through.
        return Asked::Decided(Verdict::Deny);
    }
    Asked::New
}

/// At the `landlock` level, where the daemon holds an `ask` action in its seccomp supervisor
/// (daemon/tasks/supervise.rs) and files the human's approval here before it lets the call go
/// on: whether this thread's open or exec that reached the path hashed `hash` was approved.
/// The approval is used up. An action that reached an `ask` path without one got there around
/// the supervisor (another thread rewrote the path after the daemon read it) and is killed.
#[inline(always)]
pub fn approved_once(need: u32, hash: u64) -> bool {
    let tid = current_tid();
    // SAFETY: the value is copied out at once.
    let Some(a) = unsafe { APPROVALS.get(&tid) }.copied() else {
        return false;
    };
    let approved = a.state == APPROVAL_GRANTED && a.hash == hash && a.access & need == need;
    if approved {
        let _ = APPROVALS.remove(&tid);
    }
    approved
}

/// After a human approved this thread's held connect to the destination hashed `hash` (the
/// LSM hook let it through): leaves the approval for the cgroup connect program to use up.
#[inline(always)]
pub fn pass_on(need: u32, hash: u64) {
    let passed = Approval { state: APPROVAL_PASSED, access: need, hash, deadline_ns: 0 };
    // No room: the cgroup program then refuses the connect (fail closed).
    let _ = APPROVALS.insert(&current_tid(), &passed, 0);
}

/// In the cgroup connect program: whether this thread's connect to the destination hashed
/// `hash` was held and approved by the LSM hook a moment ago (used up).
#[inline(always)]
pub fn passed_once(need: u32, hash: u64) -> bool {
    let tid = current_tid();
    // SAFETY: the value is copied out at once.
    let Some(a) = unsafe { APPROVALS.get(&tid) }.copied() else {
        return false;
    };
    let passed = a.state == APPROVAL_PASSED && a.hash == hash && a.access == need;
    if passed {
        let _ = APPROVALS.remove(&tid);
    }
    passed
}

/// Stops the current process; the syscall restarts when it is continued.
#[inline(always)]
pub fn hold() -> Verdict {
    // SAFETY: helper with a signal number.
    unsafe { bpf_send_signal(SIGSTOP) };
    Verdict::Hold
}
