//! The system calls a confined agent may not make, refused by a seccomp filter `agent-guard
//! run` installs with the Landlock ruleset (after `no_new_privs`; it stacks on every descendant
//! and cannot be removed). Each closes a way around Landlock and the eBPF programs:
//! - `bpf`: `BPF_OBJ_GET` needs only file permission on a pinned map or link, which a root agent
//!   has on the guard's pins without any capability; with them it could untag itself or detach
//!   the programs (kernel/bpf/inode.c: `bpf_obj_get_user`).
//! - `io_uring_*`: an `IORING_OP_OPENAT` never enters the open tracepoints, so nothing would
//!   report or narrow it.
//! - `clone` sharing the descriptor table with another process (`CLONE_FILES` without
//!   `CLONE_THREAD`): a process killed for an open would leave the descriptor to its sibling.
//!   `clone3`, whose flags a filter cannot read, fails with ENOSYS, so the C library falls back
//!   to `clone`.
//! - `pidfd_getfd`: a sibling could take the descriptor of a process being killed for an open
//!   before the kill lands.
//! - hard links (`link`, `linkat`), refused inside a task at every level: a new name for a file a
//!   `deny` rule names would be judged as the new name.
//! - signals to the guard by pid, by its process group and by broadcast (`kill(-1)`), and
//!   `pidfd_open` of it: Landlock scopes signals only from ABI 6 (Linux 6.12).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition as Cond, SeccompFilter,
    SeccompRule, TargetArch,
};

/// include/uapi/linux/sched.h
const CLONE_FILES: u64 = 0x400;
const CLONE_THREAD: u64 = 0x1_0000;

/// A filter that could not be built or installed.
#[derive(Debug, thiserror::Error)]
#[error("seccomp filter: {0}")]
pub struct SeccompError(String);

impl SeccompError {
    pub fn new(why: String) -> SeccompError {
        SeccompError(why)
    }
}

fn fail(err: impl std::fmt::Display) -> SeccompError {
    SeccompError(err.to_string())
}

/// A rule matching when argument `index` (an int) equals `value`.
fn arg_is(index: u8, value: i32) -> Result<SeccompRule, SeccompError> {
    SeccompRule::new(vec![Cond::new(index, Len::Dword, Op::Eq, u64::from(value.cast_unsigned())).map_err(fail)?])
        .map_err(fail)
}

/// The refusals (EPERM) for a guard whose process is `guard_pid`.
fn refused(guard_pid: i32) -> Result<BTreeMap<i64, Vec<SeccompRule>>, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in [
        libc::SYS_bpf,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_pidfd_getfd,
        libc::SYS_link,
        libc::SYS_linkat,
    ] {
        rules.insert(nr, Vec::new());
    }
    let shares_files = Cond::new(0, Len::Qword, Op::MaskedEq(CLONE_FILES | CLONE_THREAD), CLONE_FILES).map_err(fail)?;
    rules.insert(libc::SYS_clone, vec![SeccompRule::new(vec![shares_files]).map_err(fail)?]);
    // kill(pid), kill(-pgid), kill(-1); tkill and the queued forms by thread or process id.
    rules.insert(libc::SYS_kill, vec![arg_is(0, guard_pid)?, arg_is(0, -guard_pid)?, arg_is(0, -1)?]);
    for nr in [
        libc::SYS_tkill,
        libc::SYS_tgkill,
        libc::SYS_rt_sigqueueinfo,
        libc::SYS_rt_tgsigqueueinfo,
        libc::SYS_pidfd_open,
    ] {
        rules.insert(nr, vec![arg_is(0, guard_pid)?]);
    }
    Ok(rules)
}

fn install(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32) -> Result<(), SeccompError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(fail)?;
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(errno.cast_unsigned()), arch)
        .map_err(fail)?;
    let program: BpfProgram = filter.try_into().map_err(fail)?;
    seccompiler::apply_filter(&program).map_err(fail)
}

/// Installs the filters on this process (single-threaded: `agent-guard run` before its exec).
pub fn install_for(guard_pid: u32) -> Result<(), SeccompError> {
    let guard_pid = i32::try_from(guard_pid).map_err(fail)?;
    install(refused(guard_pid)?, libc::EPERM)?;
    install(BTreeMap::from([(libc::SYS_clone3, Vec::new())]), libc::ENOSYS)
}
