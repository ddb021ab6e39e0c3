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
//! - `ioctl` `TIOCSTI` and `TIOCLINUX` on any descriptor: pushing input into the terminal the
//!   agent shares with the operator would have the operator's shell run it, untagged, after the
//!   agent exits (`drivers/tty/tty_io.c` `tiocsti`; off by default only from 6.2,
//!   `CONFIG_LEGACY_TIOCSTI`).
//! - Before Landlock ABI 3 (Linux 6.2; 6.1 has ABI 2), which added the truncate right: `truncate`
//!   by path, an open for reading with `O_TRUNC` (which truncates a file the agent may only
//!   read), and `openat2`, whose flags a filter cannot read (ENOSYS: the C library falls back to
//!   `openat`). `ftruncate` needs a descriptor open for writing, which Landlock checked.

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

/// include/uapi/asm-generic/ioctls.h
const TIOCSTI: i32 = 0x5412;
const TIOCLINUX: i32 = 0x541C;
/// The Landlock ABI that handles truncation.
const ABI_TRUNCATE: u32 = 3;

/// A rule matching an open (`flags` argument `index`) for reading only, with `O_TRUNC`.
fn read_only_trunc(index: u8) -> Result<SeccompRule, SeccompError> {
    let mask = (libc::O_ACCMODE | libc::O_TRUNC).cast_unsigned();
    let cond = Cond::new(index, Len::Dword, Op::MaskedEq(u64::from(mask)), u64::from(libc::O_TRUNC.cast_unsigned()))
        .map_err(fail)?;
    SeccompRule::new(vec![cond]).map_err(fail)
}

/// The refusals (EPERM) for a guard whose process is `guard_pid`, under Landlock ABI `abi`.
fn refused(guard_pid: i32, abi: u32) -> Result<BTreeMap<i64, Vec<SeccompRule>>, SeccompError> {
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
    rules.insert(libc::SYS_ioctl, vec![arg_is(1, TIOCSTI)?, arg_is(1, TIOCLINUX)?]);
    if abi < ABI_TRUNCATE {
        rules.insert(libc::SYS_truncate, Vec::new());
        rules.insert(libc::SYS_openat, vec![read_only_trunc(2)?]);
        #[cfg(target_arch = "x86_64")]
        rules.insert(libc::SYS_open, vec![read_only_trunc(1)?]);
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

/// Installs the filters on this process (single-threaded: `agent-guard run` before its exec),
/// confined by Landlock ABI `abi`.
pub fn install_for(guard_pid: u32, abi: u32) -> Result<(), SeccompError> {
    let guard_pid = i32::try_from(guard_pid).map_err(fail)?;
    install(refused(guard_pid, abi)?, libc::EPERM)?;
    let mut unsupported = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    if abi < ABI_TRUNCATE {
        unsupported.insert(libc::SYS_openat2, Vec::new());
    }
    install(unsupported, libc::ENOSYS)
}
