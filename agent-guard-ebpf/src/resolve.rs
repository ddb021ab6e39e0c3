//! The `landlock` level's view of what an open or an exec reached: the absolute path of the file
//! behind a descriptor the open returned, or of the executable an exec started, walked from its
//! dentry (`dentry_path.rs`). A syscall-exit tracepoint has no `struct file` argument and may not
//! call `bpf_d_path`, so the file is found the way `fget` would: `current->files->fdt->fd[fd]`
//! (include/linux/fdtable.h; the descriptor was just installed by this thread, so it is there),
//! and the executable as `current->mm->exe_file` (kernel/fork.c: `get_mm_exe_file`).
//!
//! Fail-open/closed: `NoPath::Pathless` for a file with no place in the tree (a pipe or socket
//! reopened through `/dev/fd`, a memfd: its dentry is its own root, the walk gives "/");
//! `NoPath::Unknown` when an offset is missing (no BTF), a read faults, or the path is deeper
//! than 16 components. The callers decide what each means.

use agent_guard_common::path::{Decision, PATH_MAX_MATCH, decide};
use aya_ebpf::helpers::bpf_get_current_task;

use crate::{config, dentry_path, dentry_path::read_ptr, path_match::match_path};

/// Why a file's path was not found.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum NoPath {
    /// The file has no place in the tree (pipefs, sockfs, anon inodes, a memfd's internal mount).
    Pathless,
    /// No BTF, a failed read, or deeper than the walk: nothing is known of the path.
    Unknown,
}

/// The path of the file behind descriptor `fd` of the current process, into `out`.
#[inline(always)]
pub fn fd_path(fd: u64, out: &mut [u8; PATH_MAX_MATCH]) -> Result<usize, NoPath> {
    file_path(fd_file(fd), out)
}

/// The `struct file` behind descriptor `fd` of the current process; 0 when it cannot be read.
#[inline(always)]
pub fn fd_file(fd: u64) -> u64 {
    if config::task_files_off() == 0 {
        return 0;
    }
    // SAFETY: helper without arguments; the pointer is only read through probe reads.
    let task = unsafe { bpf_get_current_task() };
    let files = read_ptr(task + config::task_files_off() as u64);
    let fdt = read_ptr(files + config::files_fdt_off() as u64);
    let fds = read_ptr(fdt + config::fdt_fd_off() as u64);
    if fds == 0 {
        return 0;
    }
    read_ptr(fds + fd * 8)
}

/// The path of the current process's executable, into `out`.
#[inline(always)]
pub fn exe_path(out: &mut [u8; PATH_MAX_MATCH]) -> Result<usize, NoPath> {
    if config::task_mm_off() == 0 {
        return Err(NoPath::Unknown);
    }
    // SAFETY: as in `fd_path`.
    let task = unsafe { bpf_get_current_task() };
    let mm = read_ptr(task + config::task_mm_off() as u64);
    if mm == 0 {
        return Err(NoPath::Unknown);
    }
    file_path(read_ptr(mm + config::mm_exe_file_off() as u64), out)
}

/// What grant `grant_id` says about an action needing `need` on the resolved path `path[..len]`;
/// an `ask` this thread was approved for by the daemon's supervisor (hold.rs `approved_once`,
/// used up here) allows. `NoPath::Unknown` when the path cannot be matched whole.
#[inline(always)]
pub fn decide_on(grant_id: u32, path: &[u8; PATH_MAX_MATCH], len: usize, need: u32) -> Result<Decision, NoPath> {
    let matched = match_path(grant_id, path, len, true);
    if matched.flags != 0 {
        return Err(NoPath::Unknown);
    }
    Ok(match decide(matched.allowed, need) {
        Decision::Ask if crate::hold::approved_once(need, matched.hash) => Decision::Allow,
        decision => decision,
    })
}

/// The path of `file` into `out`, at most 16 components (`dentry_path::build`).
#[inline(always)]
pub fn file_path(file: u64, out: &mut [u8; PATH_MAX_MATCH]) -> Result<usize, NoPath> {
    if file == 0 {
        return Err(NoPath::Unknown);
    }
    let path = file + config::file_path_off() as u64;
    let len = dentry_path::build(
        read_ptr(path + config::path_mnt_off() as u64),
        read_ptr(path + config::path_dentry_off() as u64),
        out,
    )
    .ok_or(NoPath::Unknown)?;
    // "/" alone: a file with no place in the tree, not the root.
    if len <= 1 { Err(NoPath::Pathless) } else { Ok(len) }
}
