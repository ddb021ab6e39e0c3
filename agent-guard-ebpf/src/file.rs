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
//! The `landlock` level (`CurrentTask::landlock_decides`): the task's processes are under a
//! Landlock ruleset compiled from the grant, which refuses, on the resolved file, what the
//! ruleset does not cover. An open the grant does not allow is then not killed at entry: it is
//! kept per thread in `FILE_PENDING` and reported at syscall exit (`sys_exit_open*`, whose
//! return value is at offset 16) with what happened:
//! - `-EACCES`: Landlock (or file permissions) refused it: reported as refused, nothing killed;
//! - any other error (`-ENOENT` above all): nothing was opened, and a missing file is never a
//!   denial, so nothing is reported;
//! - success: the ruleset is wider than the grant here (a `DIR/*` rule, an exact path that did
//!   not exist when the ruleset was built, a sub-task's narrower grant): the `kill` level
//!   answers, at exit. A relative path that succeeds was allowed by the ruleset on the
//!   resolved file and is not reported.
//!
//! `O_PATH` opens are skipped for such tasks: they give no access to the file's data, and what
//! can be done with one (an exec, a reopen through `/proc/self/fd`) goes through Landlock again.
//!
//! Fail-open/closed: observation only; any read failure skips the event (counted as a drop
//! when the ring buffer is full) and never affects the syscall. A `FILE_PENDING` insert that
//! fails leaves the refusal to Landlock, unreported (counted as a drop).

use agent_guard_common::{
    event::{
        ACTION_ALLOWED, ACTION_KILLED, ACTION_LANDLOCK, FILE_OP_OPEN, KIND_FILE, PATH_FD_LINK, PATH_RELATIVE,
        PATH_RESOLVED_ELSEWHERE, REASON_NO_RULE, VERDICT_FLAGGED, VERDICT_IN_SCOPE, VERDICT_OUT_OF_SCOPE,
        VERDICT_RULE_DENY, VERDICT_UNRESOLVED,
    },
    event::{FileEvent, PATH_UNREADABLE, REASON_NONE},
    path::{Decision, O_CREAT, O_RDWR, O_TRUNC, O_WRONLY, PATH_MAX_MATCH, decide, open_access},
    task::MODE_AUDIT,
};
use aya_ebpf::{helpers::bpf_probe_read_user_str_bytes, macros::tracepoint, programs::TracePointContext};

use crate::{
    emit,
    maps::{APPROVALS, FILE_PENDING, SCRATCH},
    open_cached::{self, OpenCall},
    path_match::match_path,
    resolve,
    task::{current_task, current_tgid, current_tid, kill_if_enforced, reason_for},
    usage,
};

pub const AT_FDCWD: i64 = -100;
pub const O_PATH: u32 = 0o10_000_000;
/// include/uapi/asm-generic/errno-base.h
pub const EACCES: i64 = 13;

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
        // `how` on a page not faulted in yet cannot be read here (the kernel's own copy will
        // fault it in): judged as the widest open, for reading and writing, so it is pended
        // and judged at exit like any other, never skipped.
        let flags = unsafe { aya_ebpf::helpers::bpf_probe_read_user(how as *const u64) };
        try_open(dfd, filename, flags.map_or(O_RDWR | O_CREAT | O_TRUNC, |f| f as u32));
    }
    0
}

#[tracepoint]
pub fn sys_exit_open(ctx: TracePointContext) -> u32 {
    open_exit(&ctx, OpenCall::Open, false)
}

/// `sys_exit_open` where the kernel has BTF: opens Landlock alone decides too (`open_cached.rs`).
#[tracepoint]
pub fn sys_exit_open_btf(ctx: TracePointContext) -> u32 {
    open_exit(&ctx, OpenCall::Open, true)
}

#[tracepoint]
pub fn sys_exit_openat(ctx: TracePointContext) -> u32 {
    open_exit(&ctx, OpenCall::OpenAt, false)
}

/// `sys_exit_openat` where the kernel has BTF: opens Landlock alone decides too (`open_cached.rs`).
#[tracepoint]
pub fn sys_exit_openat_btf(ctx: TracePointContext) -> u32 {
    open_exit(&ctx, OpenCall::OpenAt, true)
}

#[tracepoint]
pub fn sys_exit_openat2(ctx: TracePointContext) -> u32 {
    open_exit(&ctx, OpenCall::OpenAt2, false)
}

/// `sys_exit_openat2` where the kernel has BTF: opens Landlock alone decides too (`open_cached.rs`).
#[tracepoint]
pub fn sys_exit_openat2_btf(ctx: TracePointContext) -> u32 {
    open_exit(&ctx, OpenCall::OpenAt2, true)
}

#[tracepoint]
pub fn sys_exit_creat(ctx: TracePointContext) -> u32 {
    open_exit(&ctx, OpenCall::Creat, false)
}

/// `sys_exit_creat` where the kernel has BTF: opens Landlock alone decides too (`open_cached.rs`).
#[tracepoint]
pub fn sys_exit_creat_btf(ctx: TracePointContext) -> u32 {
    open_exit(&ctx, OpenCall::Creat, true)
}

#[inline(always)]
fn open_exit(ctx: &TracePointContext, call: OpenCall, with_btf: bool) -> u32 {
    // SAFETY: offset of `ret` in every sys_exit record (kernel/trace/trace_syscalls.c).
    if let Ok(ret) = unsafe { ctx.read_at::<i64>(16) } {
        match current_task() {
            // A constant in each program: the variant without BTF has no such path.
            Some(task) if with_btf && task.opens_cached() => open_cached::exit(&task, ret, call),
            Some(task) => try_open_exit(ret, &task),
            // Untagged: nothing was kept at entry.
            None => {}
        }
    }
    0
}

/// Whether `path` is a descriptor's magic link: `/dev/fd/`, `/dev/std*` or `/proc/self/fd/`.
/// Compared word by word at fixed offsets (no loop for the verifier).
#[inline(always)]
fn is_fd_link(path: &[u8; PATH_MAX_MATCH]) -> bool {
    let word = |at: usize| {
        u64::from_le_bytes([
            path[at],
            path[at + 1],
            path[at + 2],
            path[at + 3],
            path[at + 4],
            path[at + 5],
            path[at + 6],
            path[at + 7],
        ])
    };
    let first = word(0);
    first == u64::from_le_bytes(*b"/dev/fd/")
        || first == u64::from_le_bytes(*b"/dev/std")
        || (first == u64::from_le_bytes(*b"/proc/se")
            && word(8) & 0xFFFF_FFFF_FFFF == u64::from_le_bytes(*b"lf/fd/\0\0"))
}

/// The outcome of an open Landlock decided (see the module comment).
#[inline(always)]
fn try_open_exit(ret: i64, task: &crate::task::CurrentTask) {
    let tid = current_tid();
    let Some(event) = FILE_PENDING.get_ptr_mut(&tid) else {
        return;
    };
    // SAFETY: this thread's own entry, sent and removed before it opens again.
    let event = unsafe { &mut *event };
    let confined = task.landlock_decides();
    let exact = confined && task.files_exact();
    if event.header.tgid != current_tgid() {
        // Left by an exited thread whose tid was reused: never act on another process.
    } else if ret == -EACCES && confined {
        report_refused(event);
    } else if ret >= 0
        && exact
        && event.path_flags & PATH_UNREADABLE == 0
        && (event.header.verdict == VERDICT_IN_SCOPE || event.header.verdict == VERDICT_FLAGGED)
    {
        // Landlock's file rules are the grant's, and the grant allows the path as spelled:
        // what Landlock let through is in scope. A spelling the grant does not allow that
        // Landlock let through is judged on the file reached, below.
    } else if ret >= 0 {
        // Landlock let it through: judge the file the open reached (the ruleset is wider than
        // the grant for `DIR/*`, `deny` rules and sub-tasks). Where it cannot be found, a path
        // that could not even be read is refused (killed); a pathless file (a pipe or socket
        // reopened through its descriptor link) is Landlock's; anything else is decided on its
        // spelling, as at the `kill` level, and a spelling the kernel cannot decide (relative,
        // deeper than the walk) is reported for the daemon to resolve.
        let verdict = match resolved_verdict(task, ret as u64, event) {
            Ok(verdict) => verdict,
            Err(_) if event.path_flags & PATH_UNREADABLE != 0 => VERDICT_OUT_OF_SCOPE,
            Err(_) => {
                // An absolute spelling the daemon can resolve by itself is reported; a relative one
                // would need the process's directories, which may be gone by then.
                if event.header.verdict == VERDICT_UNRESOLVED && event.path_flags & (PATH_FD_LINK | PATH_RELATIVE) == 0
                {
                    emit::send(event);
                }
                event.header.verdict
            }
        };
        if verdict == VERDICT_OUT_OF_SCOPE || verdict == VERDICT_RULE_DENY {
            crate::task::kill_current();
            event.header.verdict = verdict;
            event.header.reason = if verdict == VERDICT_OUT_OF_SCOPE { REASON_NO_RULE } else { REASON_NONE };
            event.header.action = ACTION_KILLED;
            emit::send_now(event);
        }
    }
    if ret < 0 {
        // An approval the supervisor filed for this open that then failed (hold.rs
        // `approved_once`) must not be left for a later open of the same file.
        let _ = APPROVALS.remove(&tid);
    }
    let _ = FILE_PENDING.remove(&tid);
}

/// Reports an open Landlock refused (`-EACCES`). A spelled path the grant allows that Landlock
/// refused leads out of the ruleset: reported as out of scope, with the path as spelled
/// (`path_flags` says so).
#[inline(always)]
pub fn report_refused(event: &mut FileEvent) {
    if event.header.verdict == VERDICT_IN_SCOPE || event.header.verdict == VERDICT_FLAGGED {
        event.header.verdict = VERDICT_OUT_OF_SCOPE;
        event.header.reason = REASON_NO_RULE;
        event.path_flags |= PATH_RESOLVED_ELSEWHERE;
    }
    event.header.action = ACTION_LANDLOCK;
    emit::send(event);
}

/// The grant's verdict on the file behind descriptor `fd`, which then replaces the spelled path
/// in `event`; why not, when the file's path cannot be found (resolve.rs).
#[inline(always)]
fn resolved_verdict(task: &crate::task::CurrentTask, fd: u64, event: &mut FileEvent) -> Result<u32, resolve::NoPath> {
    // SAFETY: per-CPU scratch entry, free between the entry program's runs on this CPU.
    let scratch = unsafe { &mut *SCRATCH.get_ptr_mut(0).ok_or(resolve::NoPath::Unknown)? };
    let len = match resolve::fd_path(fd, &mut scratch.path) {
        // Where the supervisor holds `ask` paths, a file only the kernel could place (and
        // cannot) is refused (`CONFINE_ASKS_HELD`).
        Err(resolve::NoPath::Unknown) if task.asks_held() => return Ok(VERDICT_OUT_OF_SCOPE),
        found => found?,
    };
    let decision = resolve::decide_on(task.entry.grant_id, &scratch.path, len, event.access)?;
    event.path = scratch.path;
    event.path_flags = 0;
    if task.grant_ended().is_some() {
        return Ok(VERDICT_OUT_OF_SCOPE);
    }
    Ok(match decision {
        Decision::Allow | Decision::Flag => VERDICT_IN_SCOPE,
        Decision::Deny => VERDICT_RULE_DENY,
        Decision::Ask | Decision::OutOfScope => VERDICT_OUT_OF_SCOPE,
    })
}

#[tracepoint]
pub fn sys_enter_creat(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets of sys_enter_creat(pathname, mode); creat = O_CREAT|O_WRONLY|O_TRUNC.
    if let Ok(filename) = unsafe { ctx.read_at::<u64>(16) } {
        try_open(AT_FDCWD, filename, O_CREAT | O_WRONLY | O_TRUNC);
    }
    0
}

#[inline(always)]
fn try_open(dfd: i64, filename: u64, flags: u32) {
    let Some(task) = current_task() else {
        return;
    };
    if task.opens_cached() {
        if task.grant_ended().is_none() {
            // Landlock's alone: the exit program judges and reports (open_cached.rs).
            return;
        }
        // The grant has ended: killed here, before the open can hand a descriptor to a sibling
        // that would keep it.
        open_cached::ended_at_entry(&task, dfd, filename, flags);
        return;
    }
    let landlock = task.landlock_decides();
    if landlock {
        // An entry left by an open whose exit was never seen (the exit program attached later)
        // must not be taken for this open's.
        let _ = FILE_PENDING.remove(&current_tid());
        if flags & O_PATH != 0 {
            return;
        }
    }
    let Some((event, report)) = judge_spelled(&task, dfd, filename, flags, landlock, true) else {
        return;
    };
    if event.path_flags & PATH_UNREADABLE != 0 {
        // The string sits on a page not faulted in yet (the kernel's own read will fault it in):
        // the open cannot be judged here, so it is judged at exit on the file it reached.
        pend(&task, event);
        return;
    }
    if report {
        let action = event.header.action;
        emit::send_action(event, action);
    }
    // Confined: every open Landlock may still refuse waits for its result, also one whose
    // spelled path is in scope (a symlink or a bind mount may lead out of the grant).
    if landlock {
        pend(&task, event);
    }
}

/// The open of `filename` (relative to `dfd`) with `flags`, judged on its spelling into the
/// per-CPU scratch event, and whether it is reported now. `None` when there is nothing to
/// report or keep (in scope and not confined), or no scratch. `landlock`: the task is confined
/// (nothing is killed here; the exit judges). `count_use`: an allowed open is a use (usage.rs).
#[inline(always)]
pub fn judge_spelled(
    task: &crate::task::CurrentTask,
    dfd: i64,
    filename: u64,
    flags: u32,
    landlock: bool,
    count_use: bool,
) -> Option<(&'static mut FileEvent, bool)> {
    // SAFETY: per-CPU scratch entry, used by this program only until it returns.
    let event = unsafe { &mut *SCRATCH.get_ptr_mut(0)? };
    // Zeroed first (a fixed-size store LLVM unrolls, no loop for the verifier) so that bytes
    // of an earlier path in this per-CPU scratch never reach an event.
    event.path = [0; PATH_MAX_MATCH];
    let access = open_access(flags);
    event.access = access;
    event.open_flags = flags;
    event.dfd = dfd as i32;
    event.op = FILE_OP_OPEN;
    let Ok(path) = (unsafe { bpf_probe_read_user_str_bytes(filename as *const u8, &mut event.path) }) else {
        let verdict = VERDICT_UNRESOLVED;
        event.header = emit::header(KIND_FILE, verdict, reason_for(task, verdict), ACTION_ALLOWED, task.task_id);
        event.path_flags = PATH_UNREADABLE;
        return Some((event, false));
    };
    let len = path.len();
    let ended = task.grant_ended();
    let matched = match_path(task.entry.grant_id, &event.path, len, false);
    let fd_link = landlock && is_fd_link(&event.path);
    let (verdict, report) = if ended.is_some() {
        (VERDICT_OUT_OF_SCOPE, true)
    } else if fd_link {
        (VERDICT_UNRESOLVED, false)
    } else if matched.flags != 0 {
        (VERDICT_UNRESOLVED, !landlock)
    } else {
        match decide(matched.allowed, access) {
            Decision::Allow => (VERDICT_IN_SCOPE, count_use && usage::first_use(task.task_id, access, matched.hash)),
            Decision::Flag => (VERDICT_FLAGGED, true),
            Decision::Deny => (VERDICT_RULE_DENY, !landlock),
            // Without BPF LSM nothing can be held: an `ask` is out of scope.
            Decision::Ask | Decision::OutOfScope => (VERDICT_OUT_OF_SCOPE, !landlock),
        }
    };
    if !report && !landlock {
        return None;
    }
    // Confined: nothing is killed at entry; the exit judges what the open reached.
    let action = if landlock { ACTION_ALLOWED } else { kill_if_enforced(task, verdict) };
    event.header = emit::header(KIND_FILE, verdict, reason_for(task, verdict), action, task.task_id);
    event.path_flags = if fd_link { PATH_FD_LINK } else { matched.flags };
    Some((event, report))
}

/// Keeps `event` for the open's exit; an open that cannot be kept cannot be judged, so the
/// process is killed now (fail closed).
#[inline(always)]
fn pend(task: &crate::task::CurrentTask, event: &mut FileEvent) {
    if FILE_PENDING.insert(&current_tid(), event, 0).is_err() && task.entry.mode != MODE_AUDIT {
        crate::task::kill_current();
        event.header.action = ACTION_KILLED;
        emit::send_now(event);
    }
}
