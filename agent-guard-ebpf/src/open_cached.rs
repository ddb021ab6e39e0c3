//! Opens of a task whose Landlock ruleset is its grant, every file rule an `allow`
//! (`CONFINE_OPENS_CACHED`): Landlock alone decides them, so nothing runs at syscall entry
//! while the grant is in force (file.rs returns at once) and the exit program reports.
//! - `-EACCES`: Landlock refused; the syscall's arguments are read back from the registers the
//!   task entered the kernel with (`bpf_task_pt_regs`: the user registers saved at syscall
//!   entry, which the exit leaves alone but for the return value) and the open is judged and
//!   reported on its spelling, as file.rs does for the other confined tasks. The agent's own
//!   seccomp filter can fail an open with `EACCES` before the kernel runs it (its exit is traced,
//!   not its entry): that is reported as a refusal too, of an open the agent did ask for.
//! - success: the file's first use is reported. The file is found by its identity (mount,
//!   inode number and generation, `OpenSeenKey`) in `OPEN_SEEN`: a file seen before costs one
//!   lookup; a new one is walked to its path, matched against the grant and reported once per
//!   path and access (usage.rs). A new file the grant does not name, which Landlock let through
//!   all the same (a process outside the ruleset), kills the process at exit.
//! - the grant ended: an open entered after the end is killed at its entry (file.rs calls
//!   `ended_at_entry`), before a descriptor exists that a sibling could be handed; one that was
//!   inside the kernel when the grant ended is killed at its exit.
//!
//! The cache decides nothing: Landlock has already let the open through, and a file enters it
//! only once the grant allowed its path. What a stale entry (a file renamed or hard-linked to
//! another path) can cost is the report of the second name, never an access the first did not
//! have.
//!
//! Fail-open/closed: reporting only, as file.rs. Registers that cannot be read lose the report
//! (counted as a drop); a task whose grant ended is killed all the same.

use agent_guard_common::{
    event::{
        ACTION_ALLOWED, ACTION_KILLED, FILE_OP_OPEN, KIND_FILE, REASON_NO_RULE, REASON_NONE, VERDICT_IN_SCOPE,
        VERDICT_OUT_OF_SCOPE,
    },
    path::{Decision, O_CREAT, O_RDWR, O_TRUNC, O_WRONLY, PATH_MAX_MATCH, decide, open_access},
    task::OpenSeenKey,
};
use aya_ebpf::helpers::{
    bpf_probe_read_kernel, bpf_probe_read_user,
    generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
};

use crate::{
    config,
    dentry_path::read_ptr,
    emit,
    file::{AT_FDCWD, EACCES, O_PATH, judge_spelled, report_refused},
    maps::{FILE_PENDING, OPEN_SEEN, SCRATCH},
    path_match::match_path,
    resolve,
    task::{CurrentTask, current_tgid, current_tid, kill_current},
    usage,
};

/// The open syscalls whose exits are traced, which place their arguments differently.
#[derive(Clone, Copy)]
pub enum OpenCall {
    Open,
    OpenAt,
    OpenAt2,
    Creat,
}

/// What the open asked for, read back at its exit.
struct OpenArgs {
    dfd: i64,
    filename: u64,
    flags: u32,
}

/// Offsets in `struct pt_regs` of the first three syscall arguments.
/// x86-64 (arch/x86/include/asm/ptrace.h): di, si, dx.
#[cfg(bpf_target_arch = "x86_64")]
const ARG_OFF: [u64; 3] = [14 * 8, 13 * 8, 12 * 8];
/// arm64 (arch/arm64/include/asm/ptrace.h): x0 holds the return value by now, so the first
/// argument is `orig_x0` (after regs[31], sp, pc, pstate); then x1, x2.
#[cfg(bpf_target_arch = "aarch64")]
const ARG_OFF: [u64; 3] = [34 * 8, 8, 16];

/// The current syscall's arguments `ARG_OFF`; `None` when the registers cannot be read.
#[inline(always)]
fn syscall_args(call: OpenCall) -> Option<OpenArgs> {
    // SAFETY: helpers on the current task; the registers are only read through probe reads.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as u64;
    if regs == 0 {
        return None;
    }
    let arg = |n: usize| unsafe { bpf_probe_read_kernel((regs + ARG_OFF[n]) as *const u64) }.ok();
    Some(match call {
        OpenCall::Open => OpenArgs { dfd: AT_FDCWD, filename: arg(0)?, flags: arg(1)? as u32 },
        OpenCall::OpenAt => OpenArgs { dfd: arg(0)? as i64, filename: arg(1)?, flags: arg(2)? as u32 },
        OpenCall::OpenAt2 => {
            // `how` points to a user `struct open_how` whose first member is the u64 flags
            // (include/uapi/linux/openat2.h); unreadable, it is judged as the widest open.
            let how = arg(2)?;
            let flags = unsafe { bpf_probe_read_user(how as *const u64) };
            OpenArgs {
                dfd: arg(0)? as i64,
                filename: arg(1)?,
                flags: flags.map_or(O_RDWR | O_CREAT | O_TRUNC, |f| f as u32),
            }
        }
        OpenCall::Creat => OpenArgs { dfd: AT_FDCWD, filename: arg(0)?, flags: O_CREAT | O_WRONLY | O_TRUNC },
    })
}

/// The exit of an open of `task`, which returned `ret` (see the module comment).
#[inline(always)]
pub fn exit(task: &CurrentTask, ret: i64, call: OpenCall) {
    if task.grant_ended().is_some() {
        if !judged_at_entry() {
            ended_between(task, call);
        }
    } else if ret == -EACCES {
        // Reported whatever the flags in the agent's memory say now (openat2's `open_how` may
        // have been rewritten to `O_PATH` since): a refusal is never dropped on their word.
        let Some(args) = syscall_args(call) else {
            emit::count_drop();
            return;
        };
        if let Some((event, _)) = judge_spelled(task, args.dfd, args.filename, args.flags, true, false) {
            report_refused(event);
        }
    } else if ret >= 0 {
        first_use(task, ret as u64, call);
    }
}

/// An open entered after the grant ended: judged as at the `kill` level (file.rs), killed, and
/// kept in `FILE_PENDING` so that its exit knows (`judged_at_entry`).
#[inline(always)]
pub fn ended_at_entry(task: &CurrentTask, dfd: i64, filename: u64, flags: u32) {
    if let Some(event) = kill_for_ended(task, dfd, filename, flags) {
        let _ = FILE_PENDING.insert(&current_tid(), event, 0);
    }
}

/// Whether this thread's open was judged at its entry (`ended_at_entry`); the mark is used up.
#[inline(always)]
fn judged_at_entry() -> bool {
    let tid = current_tid();
    // SAFETY: the value is read at once.
    let ours = unsafe { FILE_PENDING.get(&tid) }.is_some_and(|event| event.header.tgid == current_tgid());
    let _ = FILE_PENDING.remove(&tid);
    ours
}

/// An open entered while the grant was in force that ended before it returned: killed, and
/// judged on the arguments read back from the registers.
#[inline(always)]
fn ended_between(task: &CurrentTask, call: OpenCall) {
    let Some(args) = syscall_args(call) else {
        kill_current();
        emit::count_drop();
        return;
    };
    let _ = kill_for_ended(task, args.dfd, args.filename, args.flags);
}

/// Kills the current process for an open after its grant ended and reports the open, judged on
/// its spelling; the event sent. A spelling that cannot be read is killed all the same: nothing
/// is allowed any more.
#[inline(always)]
fn kill_for_ended(
    task: &CurrentTask,
    dfd: i64,
    filename: u64,
    flags: u32,
) -> Option<&'static mut agent_guard_common::event::FileEvent> {
    kill_current();
    let (event, _) = judge_spelled(task, dfd, filename, flags, false, false)?;
    event.header.verdict = VERDICT_OUT_OF_SCOPE;
    event.header.reason = task.out_of_scope_reason();
    event.header.action = ACTION_KILLED;
    emit::send_now(event);
    Some(event)
}

/// Reports the first use of the file behind descriptor `fd` (see the module comment). The
/// access is the file's open mode (`f_flags`, which keeps `O_ACCMODE` and `O_PATH`; the kernel
/// clears `O_CREAT` and `O_TRUNC` from it, include/linux/fs.h `do_dentry_open`): a read-only
/// `O_TRUNC` open of a file already seen is not reported as a write.
#[inline(always)]
fn first_use(task: &CurrentTask, fd: u64, call: OpenCall) {
    let file = resolve::fd_file(fd);
    if file == 0 {
        return;
    }
    let read_u32 = |addr: u64| unsafe { bpf_probe_read_kernel(addr as *const u32) }.unwrap_or(0);
    let f_flags = read_u32(file + config::file_flags_off() as u64);
    if f_flags & O_PATH != 0 {
        // No access to the file's data: see file.rs.
        return;
    }
    let access = open_access(f_flags);
    let inode = read_ptr(file + config::file_inode_off() as u64);
    if inode == 0 {
        return;
    }
    let key = OpenSeenKey {
        task_id: task.task_id,
        access,
        mnt: read_ptr(file + (config::file_path_off() + config::path_mnt_off()) as u64),
        ino: read_ptr(inode + config::inode_ino_off() as u64),
        generation: read_u32(inode + config::inode_gen_off() as u64),
        pad: 0,
    };
    if OPEN_SEEN.get_ptr(&key).is_some() {
        return;
    }
    // A file not seen yet: what the open asked for (`O_TRUNC` included) is added to what the
    // file was opened for; the flags come from the agent's memory for openat2, so they may add,
    // never take away.
    let (dfd, flags) = syscall_args(call).map_or((AT_FDCWD, f_flags), |args| (args.dfd, args.flags));
    let asked = access | open_access(flags);
    let Some(event) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU scratch entry, used by this program only until it returns.
    let event = unsafe { &mut *event };
    event.path = [0; PATH_MAX_MATCH];
    let Ok(len) = resolve::file_path(file, &mut event.path) else {
        // Pathless (a pipe reopened through its descriptor link) or beyond the walk (deeper
        // than its components, longer than its buffer): nothing to report it by (Landlock
        // decided it); looked up again next time. Judging the spelling here as well made these
        // programs a third larger for the verifier (docs/design.md, "The landlock level").
        return;
    };
    let matched = match_path(task.entry.grant_id, &event.path, len, true);
    // `O_CREAT` on a file that existed asks for a write it did not need: then the use is what
    // the file was opened for.
    let access = if matches!(decide(matched.allowed, asked), Decision::Allow) { asked } else { access };
    let in_grant = matched.flags == 0 && matches!(decide(matched.allowed, access), Decision::Allow);
    if in_grant && !usage::first_use(task.task_id, access, matched.hash) {
        let _ = OPEN_SEEN.insert(&key, &1, 0);
        return;
    }
    event.access = access;
    event.open_flags = flags;
    event.dfd = dfd as i32;
    event.path_flags = 0;
    event.op = FILE_OP_OPEN;
    if !in_grant {
        // Landlock let through what the grant's rules, matched on the file's path, do not name
        // (a process held by a wider ruleset than its task's: see open.rs). Fail closed, as the
        // `kill` level does: the process dies before the open returns to it, and the open is
        // reported (BPF LSM refuses this path).
        crate::task::kill_current();
        event.header = emit::header(KIND_FILE, VERDICT_OUT_OF_SCOPE, REASON_NO_RULE, ACTION_KILLED, task.task_id);
        emit::send_now(event);
        return;
    }
    event.header = emit::header(KIND_FILE, VERDICT_IN_SCOPE, REASON_NONE, ACTION_ALLOWED, task.task_id);
    if emit::send(event) {
        let _ = OPEN_SEEN.insert(&key, &1, 0);
    } else {
        // Lost to a full ring buffer (counted): the file's next open reports it, so that
        // flooding the buffer cannot hide a use.
        usage::forget(task.task_id, access, matched.hash);
    }
}
