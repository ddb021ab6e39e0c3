//! Execs, observed (tracepoints `syscalls/sys_enter_execve{,at`} and `sched/sched_process_exec`).
//!
//! As with files, this host's kernel refuses BPF LSM, so an exec outside the grant is reported
//! with the decision it would get, not denied; `bprm_check_security` decides on the resolved
//! binary in the LSM stage. The path and argv are read at syscall entry (offsets:
//! `kernel/trace/trace_syscalls.c`, args from 16) and kept per thread in `EXEC_PENDING`; the event
//! is sent from `sched_process_exec`, which fires only once an exec has succeeded
//! (fs/exec.c: `exec_binprm`), so the failed attempts of a PATH search are not reported (or killed).
//! `sched_process_exec` also gives every tagged image its exec id (`ProcTag::exec_ns`), with BPF
//! LSM too.
//!
//! The `landlock` level (file.rs): an exec the grant does not allow is not killed if Landlock
//! refuses it. `sys_exit_execve{,at}` sees the failed exec: `-EACCES` from a Landlock-confined
//! task is reported as refused; any failure forgets the thread's pending entry (a failed PATH
//! lookup is not an exec). An exec that succeeds is answered at `sched_process_exec`, as before.
//!
//! Fail-open/closed: observation only; a failed read skips the event and never affects exec.

use agent_guard_common::{
    event::{
        ACTION_ALLOWED, ACTION_LANDLOCK, EXEC_ARG_LEN, EXEC_ARGS, ExecEvent, KIND_EXEC, KIND_EXEC_START, REASON_NONE,
        TaskEvent, VERDICT_FLAGGED, VERDICT_IN_SCOPE, VERDICT_NONE, VERDICT_OUT_OF_SCOPE, VERDICT_RULE_DENY,
        VERDICT_UNRESOLVED,
    },
    path::{ACCESS_EXEC, Decision, PATH_MAX_MATCH, decide},
};
use aya_ebpf::{
    helpers::{bpf_ktime_get_boot_ns, bpf_probe_read_user, bpf_probe_read_user_str_bytes},
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::{
    config, emit,
    maps::{EXEC_PENDING, EXEC_SCRATCH, PROC_TAGS},
    path_match::match_path,
    task::{current_task, current_tgid, current_tid, kill_if_enforced, reason_for},
    usage,
};

#[tracepoint]
pub fn sys_enter_execve(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets of sys_enter_execve(filename, argv, envp).
    let args = unsafe { (ctx.read_at::<u64>(16), ctx.read_at::<u64>(24)) };
    if let (Ok(filename), Ok(argv)) = args {
        try_exec(filename, argv);
    }
    0
}

#[tracepoint]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets of sys_enter_execveat(fd, filename, argv, envp, flags). A path relative
    // to `fd` (or empty, for fexecve) is reported unresolved.
    let args = unsafe { (ctx.read_at::<u64>(24), ctx.read_at::<u64>(32)) };
    if let (Ok(filename), Ok(argv)) = args {
        try_exec(filename, argv);
    }
    0
}

#[tracepoint]
pub fn sys_exit_execve(ctx: TracePointContext) -> u32 {
    exec_exit(&ctx)
}

#[tracepoint]
pub fn sys_exit_execveat(ctx: TracePointContext) -> u32 {
    exec_exit(&ctx)
}

#[inline(always)]
fn exec_exit(ctx: &TracePointContext) -> u32 {
    // SAFETY: offset of `ret` in every sys_exit record (kernel/trace/trace_syscalls.c).
    if let Ok(ret) = unsafe { ctx.read_at::<i64>(16) } {
        try_exec_exit(ret);
    }
    0
}

/// include/uapi/asm-generic/errno-base.h
const EACCES: i64 = 13;

/// A failed exec: reported if Landlock refused it, forgotten otherwise.
#[inline(always)]
fn try_exec_exit(ret: i64) {
    if ret >= 0 {
        return;
    }
    let tid = current_tid();
    let Some(event) = EXEC_PENDING.get_ptr_mut(&tid) else {
        return;
    };
    // SAFETY: this thread's own entry, sent and removed before it execs again.
    let event = unsafe { &mut *event };
    let refused = ret == -EACCES
        && event.header.tgid == current_tgid()
        && (event.header.verdict == VERDICT_OUT_OF_SCOPE || event.header.verdict == VERDICT_UNRESOLVED)
        && current_task().is_some_and(|task| task.landlock_decides());
    if refused && !config::exec_capture() {
        event.header.action = ACTION_LANDLOCK;
        emit::send(event);
    }
    let _ = EXEC_PENDING.remove(&tid);
}

#[inline(always)]
fn try_exec(filename: u64, argv: u64) {
    let Some(task) = current_task() else {
        return;
    };
    let Some(event) = EXEC_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU scratch entry, used by this program only until it returns.
    let event = unsafe { &mut *event };
    // Zeroed first (fixed-size stores, no loop) so no earlier path or argument leaks into this event.
    event.path = [0; PATH_MAX_MATCH];
    event.argv = [[0; EXEC_ARG_LEN]; EXEC_ARGS];
    let len = match unsafe { bpf_probe_read_user_str_bytes(filename as *const u8, &mut event.path) } {
        Ok(path) => path.len(),
        Err(_) => 0,
    };
    if config::exec_capture() {
        // BPF LSM decides this exec on the resolved binary (lsm.rs); keep path and argv for
        // its event.
        capture_args(event, argv);
        let _ = EXEC_PENDING.insert(&current_tid(), event, 0);
        return;
    }
    let ended = task.grant_ended();
    let matched = match_path(task.entry.grant_id, &event.path, len, false);
    let verdict = if ended.is_some() {
        VERDICT_OUT_OF_SCOPE
    } else if len == 0 && task.landlock_decides() {
        // An exec of a descriptor (fexecve, `execveat(fd, "", AT_EMPTY_PATH)`): Landlock does not
        // check a memfd's, whose file is on an internal mount (security/landlock/fs.c:
        // `is_nouser_or_private`), so at the `landlock` level it is out of scope, killed if it
        // succeeds.
        VERDICT_OUT_OF_SCOPE
    } else if matched.flags != 0 {
        VERDICT_UNRESOLVED
    } else {
        match decide(matched.allowed, ACCESS_EXEC) {
            // Reported (once) if the exec succeeds, like an out-of-scope one.
            Decision::Allow if usage::first_use(task.task_id, ACCESS_EXEC, matched.hash) => VERDICT_IN_SCOPE,
            // Confined: judged again, quietly, on the program that runs (an allowed spelling can
            // lead to an `ask` or `deny` one: a symlink to /proc/self/fd/N).
            Decision::Allow if task.landlock_decides() => VERDICT_NONE,
            Decision::Allow => {
                // In scope: forget an earlier out-of-scope attempt of this thread.
                let _ = EXEC_PENDING.remove(&current_tid());
                return;
            }
            Decision::Flag => VERDICT_FLAGGED,
            Decision::Deny => VERDICT_RULE_DENY,
            // Without BPF LSM nothing can be held: an `ask` is out of scope.
            Decision::Ask | Decision::OutOfScope => VERDICT_OUT_OF_SCOPE,
        }
    };
    capture_args(event, argv);
    event.header = emit::header(KIND_EXEC, verdict, reason_for(&task, verdict), ACTION_ALLOWED, task.task_id);
    event.path_flags = matched.flags;
    if EXEC_PENDING.insert(&current_tid(), event, 0).is_err() {
        emit::count_drop();
    }
}

/// The grant's verdict on the executable now running (resolve.rs), which then replaces the
/// spelled path in `event`; why not, when its path cannot be found.
#[inline(always)]
fn resolved_verdict(task: &crate::task::CurrentTask, event: &mut ExecEvent) -> Result<u32, crate::resolve::NoPath> {
    use crate::resolve::NoPath;
    // SAFETY: per-CPU scratch entry, free between the entry programs' runs on this CPU.
    let scratch = unsafe { &mut *EXEC_SCRATCH.get_ptr_mut(0).ok_or(NoPath::Unknown)? };
    let len = crate::resolve::exe_path(&mut scratch.path)?;
    // An approval is looked up by the thread that execed, whose tid is now the process's
    // (fs/exec.c `de_thread`): the supervisor files exec approvals under the tgid.
    let decision = crate::resolve::decide_on(task.entry.grant_id, &scratch.path, len, ACCESS_EXEC)?;
    event.path = scratch.path;
    event.path_flags = 0;
    Ok(match decision {
        Decision::Allow => VERDICT_IN_SCOPE,
        Decision::Flag => VERDICT_FLAGGED,
        Decision::Deny => VERDICT_RULE_DENY,
        Decision::Ask | Decision::OutOfScope => VERDICT_OUT_OF_SCOPE,
    })
}

/// Copies up to `EXEC_ARGS` arguments of the user argv array into the event.
#[inline(always)]
fn capture_args(event: &mut ExecEvent, argv: u64) {
    event.argc = 0;
    for i in 0..EXEC_ARGS {
        // SAFETY: reading the i-th pointer of the user argv array; a fault ends the list.
        let arg = unsafe { bpf_probe_read_user((argv as *const u64).wrapping_add(i)) };
        let Ok(arg) = arg else { break };
        if arg == 0 {
            break;
        }
        if unsafe { bpf_probe_read_user_str_bytes(arg as *const u8, &mut event.argv[i]) }.is_err() {
            break;
        }
        event.argc = i as u32 + 1;
    }
}

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    // SAFETY: offset read from the record's format file at load time.
    if let Ok(old_pid) = unsafe { ctx.read_at::<i32>(config::exec_old_pid_off()) } {
        try_exec_done(old_pid as u32);
    }
    0
}

#[inline(always)]
fn try_exec_done(old_tid: u32) {
    let Some(tag) = PROC_TAGS.get_ptr_mut(&current_tgid()) else {
        // Untagged now: an entry this thread left must not be taken for a later exec's.
        let _ = EXEC_PENDING.remove(&old_tid);
        return;
    };
    // The new image gets its exec id now (its parent stays the image that forked it), and the
    // daemon learns the lineage from the EXEC_START record.
    // SAFETY: plain integer fields of this process's own entry; only its threads write it, and
    // an exec has just killed all of them but this one (fs/exec.c: de_thread).
    let tag = unsafe {
        (*tag).exec_ns = bpf_ktime_get_boot_ns();
        *tag
    };
    let start = emit::header(KIND_EXEC_START, VERDICT_NONE, REASON_NONE, ACTION_ALLOWED, tag.task_id);
    emit::send(&TaskEvent { header: start, child_tgid: 0, detail: 0 });
    if config::exec_capture() {
        // BPF LSM decided (and reported) this exec in bprm_check_security: only the captured
        // arguments are left, of no more use.
        let _ = EXEC_PENDING.remove(&old_tid);
        return;
    }
    // SAFETY: the value is sent and its entry removed before anything else uses this tid.
    let Some(event) = EXEC_PENDING.get_ptr_mut(&old_tid) else {
        return;
    };
    // SAFETY: the entry is this thread's, sent and removed before the tid execs again.
    let event = unsafe { &mut *event };
    // Filled before the exec: the event is about the new image.
    event.header.exec_ns = tag.exec_ns;
    // The exec succeeded: with the `kill` level the new program is killed before it runs a
    // single instruction (the signal is taken on the way back to user space).
    if let Some(task) = current_task() {
        // Confined: the program that now runs decides, not its spelling (a symlink such as
        // /bin/sh, a descriptor, the loader run directly).
        // So is a spelling the kernel could not decide at entry (relative, unreadable), at every
        // level.
        let landlock = task.landlock_decides();
        if landlock || event.header.verdict == VERDICT_UNRESOLVED {
            let spelled = event.header.verdict;
            let verdict = match resolved_verdict(&task, event) {
                Ok(VERDICT_IN_SCOPE) if spelled != VERDICT_IN_SCOPE => {
                    let _ = EXEC_PENDING.remove(&old_tid);
                    return;
                }
                Ok(verdict) => verdict,
                // Confined, and the program has no path a grant can name (a memfd, however it
                // was reached): out of scope.
                Err(crate::resolve::NoPath::Pathless) if landlock => VERDICT_OUT_OF_SCOPE,
                // Its program cannot be found where the supervisor holds `ask` paths
                // (`CONFINE_ASKS_HELD`): refused.
                Err(crate::resolve::NoPath::Unknown) if landlock && task.asks_held() => VERDICT_OUT_OF_SCOPE,
                // An allowed spelling already reported once, whose program cannot be found.
                Err(_) if spelled == VERDICT_NONE => {
                    let _ = EXEC_PENDING.remove(&old_tid);
                    return;
                }
                Err(_) => spelled,
            };
            event.header.verdict = verdict;
            event.header.reason = reason_for(&task, verdict);
        }
        event.header.action = kill_if_enforced(&task, event.header.verdict);
    }
    let action = event.header.action;
    emit::send_action(event, action);
    let _ = EXEC_PENDING.remove(&old_tid);
}
