//! A dentry's absolute path, built by walking `d_parent` and the mount tree the way
//! `fs/d_path.c` `prepend_path()` does. The file-tree LSM hooks need this: `bpf_d_path` is only
//! allowed in the hooks listed by `bpf_lsm_is_sleepable_hook()` (`kernel/bpf/bpf_lsm.c`), and the
//! `security_path`_* hooks are not among them (the 6.12 verifier: "helper call is not allowed").
//!
//! The walk ends at the root of the initial mount namespace, so inside a container the path is
//! the host's view. At most `MAX_DEPTH` components; deeper paths are not built (the caller refuses).

use agent_guard_common::path::PATH_MAX_MATCH;
use core::ffi::c_void;

use aya_ebpf::helpers::{bpf_probe_read_kernel_str_bytes, generated::bpf_probe_read_kernel};

use crate::{
    config,
    maps::{DENTRY_WALK, PATH_JOIN},
};

const MAX_DEPTH: usize = 16;

/// A pointer-sized field of a kernel object; 0 when the read faults, which ends a walk.
///
/// The helper's result is not tested: it zeroes the destination itself on a fault
/// (`kernel/trace/bpf_trace.c`, `bpf_probe_read_kernel_common`). A test would give the verifier
/// a known 0 beside an unknown value for every field read, two states where one will do.
#[inline(always)]
pub fn read_ptr(addr: u64) -> u64 {
    let mut value = 0u64;
    // SAFETY: writes 8 bytes into `value`, which lives across the call.
    unsafe { bpf_probe_read_kernel((&raw mut value).cast::<c_void>(), 8, addr as *const c_void) };
    value
}

/// The walk's names, leaf first, and how many there are; per CPU (`DENTRY_WALK`).
///
/// In map memory, not on the stack, on purpose: the verifier tracks the value of every stack
/// slot and register but not of map memory. With the count and the names on the stack, each
/// mix of mount crossings and names in the first `i` steps was a state of its own (2^i of them,
/// none pruned), and 6.1's verifier ran out of its 1M-instruction budget on `sched_process_exec`;
/// read back from here the count is just "some number", masked before use, so the states at
/// each step are one.
#[repr(C)]
pub struct DentryWalk {
    names: [u64; MAX_DEPTH],
    count: u64,
}

/// The absolute path of `dentry` on the mount `vfsmount`, into `out`; its length, or None when
/// it is deeper than `MAX_DEPTH` components (mount crossings included), longer than
/// `PATH_MAX_MATCH` - 2 bytes, or unreadable.
///
/// Both loops have constant bounds (a `bpf_loop` walk cost the verifier 8 s per hook under
/// emulation and E2BIG for two walks).
#[inline(always)]
pub fn build(vfsmount: u64, dentry: u64, out: &mut [u8; PATH_MAX_MATCH]) -> Option<usize> {
    // SAFETY: per-CPU scratch, used by this program only until it returns.
    let walk = unsafe { &mut *DENTRY_WALK.get_ptr_mut(0)? };
    walk.count = 0;
    let mut dentry = dentry;
    let mut vfsmount = vfsmount;
    let mut mount = vfsmount.wrapping_sub(config::mount_mnt_off() as u64);
    let mut done = false;
    for _ in 0..MAX_DEPTH + 4 {
        if dentry == 0 || mount == 0 {
            return None;
        }
        let root = read_ptr(vfsmount + config::vfsmnt_root_off() as u64);
        let parent = read_ptr(dentry + config::dentry_parent_off() as u64);
        if dentry == root || dentry == parent {
            let parent_mount = read_ptr(mount + config::mount_parent_off() as u64);
            if parent_mount == mount || parent_mount == 0 {
                done = true;
                break;
            }
            // Continue from the mount point, in the parent mount.
            dentry = read_ptr(mount + config::mount_point_off() as u64);
            mount = parent_mount;
            vfsmount = parent_mount + config::mount_mnt_off() as u64;
            continue;
        }
        let count = walk.count as usize;
        if count >= MAX_DEPTH {
            return None;
        }
        walk.names[count & (MAX_DEPTH - 1)] = read_ptr(dentry + config::dentry_name_off() as u64);
        walk.count = count as u64 + 1;
        dentry = parent;
    }
    if !done {
        return None;
    }
    let count = walk.count as usize;
    // SAFETY: per-CPU buffer, used by this program only until it returns.
    let buf = unsafe { &mut *PATH_JOIN.get_ptr_mut(0)? };
    // Not zeroed: a 512-byte clear compiles to a byte loop. Each name is NUL-terminated by the
    // read helper, and everything past the NUL is ignored by the matcher and the decoder.
    buf[0] = b'/';
    buf[1] = 0;
    let mut at = 0usize;
    for i in 0..MAX_DEPTH {
        if i >= count {
            break;
        }
        if at >= PATH_MAX_MATCH - 1 {
            return None;
        }
        let name = walk.names[(count - 1 - i) & (MAX_DEPTH - 1)];
        let at_masked = at & (PATH_MAX_MATCH - 1);
        buf[at_masked] = b'/';
        // SAFETY: `at_masked` < 256, so the 256-byte window after the '/' stays inside the buffer.
        let window = unsafe { &mut *buf.as_mut_ptr().add(at_masked + 1).cast::<[u8; PATH_MAX_MATCH]>() };
        let len = unsafe { bpf_probe_read_kernel_str_bytes(name as *const u8, window) }.ok()?.len();
        if len == 0 {
            return None;
        }
        at = at_masked + 1 + len;
    }
    let len = if count == 0 { 1 } else { at };
    if len >= PATH_MAX_MATCH - 1 {
        return None;
    }
    // SAFETY: the first 256 bytes of the 512-byte buffer, copied as a fixed-size array.
    *out = unsafe { *buf.as_ptr().cast::<[u8; PATH_MAX_MATCH]>() };
    Some(len)
}

/// The path of the object a `struct path` points to.
#[inline(always)]
pub fn of_path(path: *const u8, out: &mut [u8; PATH_MAX_MATCH]) -> Option<usize> {
    let vfsmount = read_ptr(path as u64 + config::path_mnt_off() as u64);
    let dentry = read_ptr(path as u64 + config::path_dentry_off() as u64);
    build(vfsmount, dentry, out)
}

/// The path of `dentry`, an entry of the directory `dir` (a `struct path`).
#[inline(always)]
pub fn of_entry(dir: *const u8, dentry: *const u8, out: &mut [u8; PATH_MAX_MATCH]) -> Option<usize> {
    let vfsmount = read_ptr(dir as u64 + config::path_mnt_off() as u64);
    build(vfsmount, dentry as u64, out)
}

/// The path of a bare `dentry`, on the first mount of its superblock (the `s_mounts` list;
/// include/linux/fs.h, fs/mount.h `mnt_instance`); None when the superblock has no mount.
#[inline(always)]
pub fn of_dentry(dentry: *const u8, out: &mut [u8; PATH_MAX_MATCH]) -> Option<usize> {
    let sb = read_ptr(dentry as u64 + config::dentry_sb_off() as u64);
    if sb == 0 {
        return None;
    }
    let head = sb + config::sb_mounts_off() as u64;
    let first = read_ptr(head);
    if first == 0 || first == head {
        return None;
    }
    let mount = first - config::mount_instance_off() as u64;
    build(mount + config::mount_mnt_off() as u64, dentry as u64, out)
}
