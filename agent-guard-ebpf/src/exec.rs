//! Execs, observed at syscall entry (tracepoints syscalls/sys_enter_execve{,at}).
//!
//! As with files, this host's kernel refuses BPF LSM, so an exec outside the grant is reported
//! with the decision it would get, not denied; `bprm_check_security` decides on the resolved
//! binary in the LSM stage. Record offsets: kernel/trace/trace_syscalls.c (args from 16).
//!
//! Fail-open/closed: observation only; a failed read skips the event and never affects exec.

use agent_guard_common::{
    event::{ACTION_ALLOWED, EXEC_ARGS, KIND_EXEC, VERDICT_OUT_OF_SCOPE, VERDICT_UNRESOLVED},
    path::ACCESS_EXEC,
};
use aya_ebpf::{
    helpers::{bpf_probe_read_user, bpf_probe_read_user_str_bytes},
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::{emit, maps::EXEC_SCRATCH, path_match::match_path, task::current_task};

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
    let len = match unsafe { bpf_probe_read_user_str_bytes(filename as *const u8, &mut event.path) }
    {
        Ok(path) => path.len(),
        Err(_) => 0,
    };
    let ended = task.grant_ended();
    let matched = match_path(task.entry.grant_id, &event.path, len);
    let verdict = if ended.is_some() {
        VERDICT_OUT_OF_SCOPE
    } else if matched.flags != 0 {
        VERDICT_UNRESOLVED
    } else if matched.allowed & ACCESS_EXEC != 0 {
        return;
    } else {
        VERDICT_OUT_OF_SCOPE
    };
    for i in 0..event.path.len() {
        if i > len {
            event.path[i] = 0;
        }
    }
    event.argc = 0;
    for i in 0..EXEC_ARGS {
        event.argv[i][0] = 0;
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
    event.header =
        emit::header(KIND_EXEC, verdict, task.out_of_scope_reason(), ACTION_ALLOWED, task.task_id);
    event.path_flags = matched.flags;
    emit::send(event);
}
