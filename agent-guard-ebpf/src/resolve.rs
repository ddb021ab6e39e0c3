//! The `landlock` level's view of what an open or an exec reached: the absolute path of the file
//! behind a descriptor the open returned, or of the executable an exec started, walked from its
//! dentry (`dentry_path.rs`). A syscall-exit tracepoint has no `struct file` argument and may not
//! call `bpf_d_path`, so the file is found the way `fget` would: `current->files->fdt->fd[fd]`
//! (include/linux/fdtable.h; the descriptor was just installed by this thread, so it is there),
//! and the executable as `current->mm->exe_file` (kernel/fork.c: `get_mm_exe_file`).
//!
//! Fail-open/closed: None when an offset is missing (no BTF), a read faults, the path is deeper
//! than the walk goes, or the file has no place in the tree (a pipe or a socket reopened through
//! `/dev/fd`: its dentry is its own root, the walk gives "/"). The caller then decides on the
//! path as spelled.

use agent_guard_common::path::PATH_MAX_MATCH;
use aya_ebpf::helpers::bpf_get_current_task;

use crate::{config, dentry_path, dentry_path::read_ptr};

/// The path of the file behind descriptor `fd` of the current process, into `out`.
#[inline(always)]
pub fn fd_path(fd: u64, out: &mut [u8; PATH_MAX_MATCH]) -> Option<usize> {
    if config::task_files_off() == 0 {
        return None;
    }
    // SAFETY: helper without arguments; the pointer is only read through probe reads.
    let task = unsafe { bpf_get_current_task() };
    let files = read_ptr(task + config::task_files_off() as u64);
    let fdt = read_ptr(files + config::files_fdt_off() as u64);
    let fds = read_ptr(fdt + config::fdt_fd_off() as u64);
    if fds == 0 {
        return None;
    }
    file_path(read_ptr(fds + fd * 8), out)
}

/// The path of the current process's executable, into `out`.
#[inline(always)]
pub fn exe_path(out: &mut [u8; PATH_MAX_MATCH]) -> Option<usize> {
    if config::task_mm_off() == 0 {
        return None;
    }
    // SAFETY: as in `fd_path`.
    let task = unsafe { bpf_get_current_task() };
    let mm = read_ptr(task + config::task_mm_off() as u64);
    if mm == 0 {
        return None;
    }
    file_path(read_ptr(mm + config::mm_exe_file_off() as u64), out)
}

#[inline(always)]
fn file_path(file: u64, out: &mut [u8; PATH_MAX_MATCH]) -> Option<usize> {
    if file == 0 {
        return None;
    }
    let path = file + config::file_path_off() as u64;
    let len = dentry_path::build(
        read_ptr(path + config::path_mnt_off() as u64),
        read_ptr(path + config::path_dentry_off() as u64),
        out,
    )?;
    // "/" alone: a file with no place in the tree (pipefs, sockfs, anon inodes), not the root.
    if len <= 1 { None } else { Some(len) }
}
