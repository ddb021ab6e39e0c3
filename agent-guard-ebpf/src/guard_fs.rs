//! What no grant can open to a tagged process: the guard's own objects.
//!
//! - **Its filesystems**, by the superblock's magic (any mount point, any path spelling):
//!   bpffs, where the links and maps are pinned (an unlink detaches a program; a read dumps
//!   the maps), so no access at all; cgroupfs, where moving a process out of its task's
//!   cgroup escapes `cgroup.kill` and the daemon's cgroup could be frozen or killed, so no
//!   change (reads stay: language runtimes read their limits there).
//! - **Its files**, by inode (`config::GUARD_INO)`: the state directory (saved tasks), the
//!   policy directory, the audit store, the API socket, the config file and the daemon's
//!   executable (changes only: it is also the CLI tasks run), and everything below those
//!   directories. Checked on the object and up to
//!   `GUARD_DEPTH` of its ancestors, so a hard link or a rename cannot hide one (a file's inode
//!   is the same under any name).
//!
//! Refusals are reported as `KIND_TAMPER`. Fail-open: a dentry or superblock that cannot be read
//! is not one of these (the grant decides).

use agent_guard_common::event::{TAMPER_BPFFS, TAMPER_CGROUPFS, TAMPER_FILES};
use aya_ebpf::helpers::bpf_probe_read_kernel;

use crate::{
    config::{self, GUARD_FILES},
    dentry_path::read_ptr,
    escape::tamper,
    task::CurrentTask,
};

/// include/uapi/linux/magic.h
const BPF_FS_MAGIC: u64 = 0xcafe_4a11;
const CGROUP_SUPER_MAGIC: u64 = 0x0027_e0eb;
const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
/// Ancestors checked above an object (the guard's directories are at most this far up).
const GUARD_DEPTH: usize = 8;

/// `sb`'s `dev_t` (0 when unreadable).
#[inline(always)]
fn sb_dev(sb: u64) -> u32 {
    // SAFETY: s_dev (dev_t, u32) at its BTF offset.
    unsafe { bpf_probe_read_kernel((sb + config::sb_dev_off() as u64) as *const u32) }.unwrap_or(0)
}

/// `dentry`'s inode number, 0 for a negative dentry (a name being created).
#[inline(always)]
fn ino_of(dentry: u64) -> u64 {
    let inode = read_ptr(dentry + config::dentry_inode_off() as u64);
    if inode == 0 { 0 } else { read_ptr(inode + config::inode_ino_off() as u64) }
}

/// Whether `dentry` is the object known as (`ino`, `dev`) (a config entry; `ino` 0 is none).
#[inline(always)]
pub fn is_object(dentry: u64, ino: u64, dev: u32) -> bool {
    ino != 0 && ino_of(dentry) == ino && sb_dev(read_ptr(dentry + config::dentry_sb_off() as u64)) == dev
}

/// What kind of guard object `dentry` is or lies below; `write`: the access changes it.
#[inline(always)]
fn guarded(dentry: u64, write: bool) -> u32 {
    let sb = read_ptr(dentry + config::dentry_sb_off() as u64);
    if sb == 0 {
        return 0;
    }
    match read_ptr(sb + config::sb_magic_off() as u64) {
        BPF_FS_MAGIC => return TAMPER_BPFFS,
        CGROUP_SUPER_MAGIC | CGROUP2_SUPER_MAGIC if write => return TAMPER_CGROUPFS,
        _ => {}
    }
    if is_guard_file(dentry, sb_dev(sb), write) { TAMPER_FILES } else { 0 }
}

/// The walk up from `dentry`: it or an ancestor is one of the guard's files (for a read, one
/// not open to reading).
#[inline(never)]
fn is_guard_file(mut dentry: u64, dev: u32, write: bool) -> bool {
    let read_ok = if write { 0 } else { config::guard_read_ok() };
    if config::guard_file(0).0 == 0 {
        return false;
    }
    for _ in 0..GUARD_DEPTH {
        if dentry == 0 {
            return false;
        }
        let ino = ino_of(dentry);
        // A negative dentry (a name being created) has no inode: its parent decides.
        if ino != 0 {
            for i in 0..GUARD_FILES {
                let (guard_ino, guard_dev) = config::guard_file(i);
                if guard_ino != 0 && guard_ino == ino && guard_dev == dev && read_ok & (1 << i) == 0 {
                    return true;
                }
            }
        }
        let parent = read_ptr(dentry + config::dentry_parent_off() as u64);
        if parent == dentry {
            return false;
        }
        dentry = parent;
    }
    false
}

/// Some(false) (refused and reported) when `dentry` is one of the guard's objects.
#[inline(always)]
pub fn refuse_dentry(task: &CurrentTask, dentry: *const u8) -> Option<bool> {
    refuse(task, dentry as u64, true)
}

/// As `refuse_dentry`, for a `struct path`; `write`: the access changes the object.
#[inline(always)]
pub fn refuse_path(task: &CurrentTask, path: *const u8, write: bool) -> Option<bool> {
    let dentry = read_ptr(path as u64 + config::path_dentry_off() as u64);
    refuse(task, dentry, write)
}

#[inline(always)]
fn refuse(task: &CurrentTask, dentry: u64, write: bool) -> Option<bool> {
    if dentry == 0 {
        return None;
    }
    match guarded(dentry, write) {
        0 => None,
        what => Some(tamper(task.task_id, what, 0)),
    }
}
