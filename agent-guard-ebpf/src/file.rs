//! File opens, observed at syscall entry (tracepoints `syscalls/sys_enter_open{,at,at2`}).
//!
//! On this host's kernel BPF LSM cannot load, so file access is observed, not denied: the path
//! is the string the process passed, before the kernel resolved it (symlinks are not followed
//! here). The decision it would get is reported; the `file_open` LSM hook of the next stage
//! decides on the resolved file.
//!
//! Syscall tracepoint records are fixed by `kernel/trace/trace_syscalls.c`: `__syscall_nr` at 8,
//! then each argument as 8 bytes from offset 16.
//!
//! Fail-open/closed: observation only; any read failure skips the event (counted as a drop
//! when the ring buffer is full) and never affects the syscall.

use agent_guard_common::{
    event::{
        FILE_OP_OPEN, KIND_FILE, VERDICT_FLAGGED, VERDICT_IN_SCOPE, VERDICT_OUT_OF_SCOPE, VERDICT_RULE_DENY,
        VERDICT_UNRESOLVED,
    },
    path::{ACCESS_READ, ACCESS_WRITE, Decision, PATH_MAX_MATCH, decide},
};
use aya_ebpf::{helpers::bpf_probe_read_user_str_bytes, macros::tracepoint, programs::TracePointContext};

use crate::{
    emit,
    maps::SCRATCH,
    path_match::match_path,
    task::{current_task, kill_if_enforced, reason_for},
    usage,
};

const AT_FDCWD: i64 = -100;
const O_ACCMODE: u32 = 0o3;
const O_WRONLY: u32 = 0o1;
const O_RDWR: u32 = 0o2;
const O_CREAT: u32 = 0o100;
const O_TRUNC: u32 = 0o1000;

#[tracepoint]
pub fn sys_enter_openat(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets of sys_enter_openat(dfd, filename, flags, mode).
    let args = unsafe { (ctx.read_at::<i64>(16), ctx.read_at::<u64>(24), ctx.read_at::<u64>(32)) };
    if let (Ok(dfd), Ok(filename), Ok(flags)) = args {
        try_open(dfd, filename, flags as u32);
    }
    0
}

#[tracepoint]
pub fn sys_enter_open(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets of sys_enter_open(filename, flags, mode).
    let args = unsafe { (ctx.read_at::<u64>(16), ctx.read_at::<u64>(24)) };
    if let (Ok(filename), Ok(flags)) = args {
        try_open(AT_FDCWD, filename, flags as u32);
    }
    0
}

#[tracepoint]
pub fn sys_enter_openat2(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets of sys_enter_openat2(dfd, filename, how, usize); `how` points to a
    // user `struct open_how` whose first member is the u64 flags (include/uapi/linux/openat2.h).
    let args = unsafe { (ctx.read_at::<i64>(16), ctx.read_at::<u64>(24), ctx.read_at::<u64>(32)) };
    if let (Ok(dfd), Ok(filename), Ok(how)) = args {
        let flags = unsafe { aya_ebpf::helpers::bpf_probe_read_user(how as *const u64) };
        if let Ok(flags) = flags {
            try_open(dfd, filename, flags as u32);
        }
    }
    0
}

#[tracepoint]
pub fn sys_enter_creat(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets of sys_enter_creat(pathname, mode); creat = O_CREAT|O_WRONLY|O_TRUNC.
    if let Ok(filename) = unsafe { ctx.read_at::<u64>(16) } {
        try_open(AT_FDCWD, filename, O_CREAT | O_WRONLY | O_TRUNC);
    }
    0
}

/// Access an open asks for, from its flags (include/uapi/asm-generic/fcntl.h).
#[inline(always)]
fn access_of(flags: u32) -> u32 {
    let mut access = match flags & O_ACCMODE {
        0 => ACCESS_READ,
        O_WRONLY => ACCESS_WRITE,
        _ => ACCESS_READ | ACCESS_WRITE,
    };
    if flags & O_RDWR != 0 {
        access |= ACCESS_READ;
    }
    if flags & (O_CREAT | O_TRUNC) != 0 {
        access |= ACCESS_WRITE;
    }
    access
}

#[inline(always)]
fn try_open(dfd: i64, filename: u64, flags: u32) {
    let Some(task) = current_task() else {
        return;
    };
    let Some(event) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU scratch entry, used by this program only until it returns.
    let event = unsafe { &mut *event };
    // Zeroed first (a fixed-size store LLVM unrolls, no loop for the verifier) so that bytes
    // of an earlier path in this per-CPU scratch never reach an event.
    event.path = [0; PATH_MAX_MATCH];
    let Ok(path) = (unsafe { bpf_probe_read_user_str_bytes(filename as *const u8, &mut event.path) }) else {
        return;
    };
    let len = path.len();
    let access = access_of(flags);
    let ended = task.grant_ended();
    let matched = match_path(task.entry.grant_id, &event.path, len, false);
    let verdict = if ended.is_some() {
        VERDICT_OUT_OF_SCOPE
    } else if matched.flags != 0 {
        VERDICT_UNRESOLVED
    } else {
        match decide(matched.allowed, access) {
            Decision::Allow if usage::first_use(task.task_id, access, matched.hash) => VERDICT_IN_SCOPE,
            Decision::Allow => return,
            Decision::Flag => VERDICT_FLAGGED,
            Decision::Deny => VERDICT_RULE_DENY,
            // Without BPF LSM nothing can be held: an `ask` is out of scope.
            Decision::Ask | Decision::OutOfScope => VERDICT_OUT_OF_SCOPE,
        }
    };
    let action = kill_if_enforced(&task, verdict);
    event.header = emit::header(KIND_FILE, verdict, reason_for(&task, verdict), action, task.task_id);
    event.access = access;
    event.open_flags = flags;
    event.dfd = dfd as i32;
    event.path_flags = matched.flags;
    event.op = FILE_OP_OPEN;
    emit::send(event);
}
