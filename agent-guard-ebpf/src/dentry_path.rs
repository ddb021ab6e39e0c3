//! A dentry's absolute path, built by walking `d_parent` and the mount tree the way
//! fs/d_path.c prepend_path() does. The file-tree LSM hooks need this: bpf_d_path is only
//! allowed in the hooks listed by bpf_lsm_is_sleepable_hook() (kernel/bpf/bpf_lsm.c), and the
//! security_path_* hooks are not among them (the 6.12 verifier: "helper call is not allowed").
//!
//! The walk ends at the root of the initial mount namespace, so inside a container the path is
//! the host's view. At most MAX_DEPTH components; deeper paths are not built (the caller refuses).

use core::ffi::c_void;

use agent_guard_common::path::PATH_MAX_MATCH;
use aya_ebpf::helpers::{bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes, generated::bpf_loop};

use crate::{config, maps::PATH_JOIN};

const MAX_DEPTH: usize = 32;
const JOIN: usize = 512;

#[inline(always)]
fn read_ptr(addr: u64) -> u64 {
    // SAFETY: reads a pointer-sized field of a kernel object; a fault yields 0, which ends the walk.
    unsafe { bpf_probe_read_kernel(addr as *const u64) }.unwrap_or(0)
}

#[repr(C)]
struct Walk {
    dentry: u64,
    /// struct mount *
    mount: u64,
    /// struct vfsmount * (inside `mount`)
    vfsmount: u64,
    count: u32,
    done: u32,
    names: [u64; MAX_DEPTH],
}

/// One step up; collects the name pointers leaf first. Returns 1 to stop.
#[inline(never)]
extern "C" fn walk_up(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the Walk that build() passed to bpf_loop, alive for the whole loop.
    let walk = unsafe { &mut *ctx.cast::<Walk>() };
    if walk.dentry == 0 || walk.mount == 0 {
        return 1;
    }
    let root = read_ptr(walk.vfsmount + config::vfsmnt_root_off() as u64);
    let parent = read_ptr(walk.dentry + config::dentry_parent_off() as u64);
    if walk.dentry == root || walk.dentry == parent {
        let parent_mount = read_ptr(walk.mount + config::mount_parent_off() as u64);
        if parent_mount == walk.mount || parent_mount == 0 {
            walk.done = 1;
            return 1;
        }
        // Continue from the mount point, in the parent mount.
        walk.dentry = read_ptr(walk.mount + config::mount_point_off() as u64);
        walk.mount = parent_mount;
        walk.vfsmount = parent_mount + config::mount_mnt_off() as u64;
        return 0;
    }
    if walk.count as usize >= MAX_DEPTH {
        return 1;
    }
    walk.names[walk.count as usize & (MAX_DEPTH - 1)] = read_ptr(walk.dentry + config::dentry_name_off() as u64);
    walk.count += 1;
    walk.dentry = parent;
    0
}

#[repr(C)]
struct Build {
    buf: *mut [u8; JOIN],
    names: *const [u64; MAX_DEPTH],
    count: u32,
    at: u32,
    failed: u32,
    _pad: u32,
}

/// Appends "/name" for the next component, root first. Returns 1 to stop.
#[inline(never)]
extern "C" fn append(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the Build that build() passed to bpf_loop, alive for the whole loop.
    let b = unsafe { &mut *ctx.cast::<Build>() };
    if b.at as usize >= PATH_MAX_MATCH - 1 || index >= u64::from(b.count) {
        b.failed = 1;
        return 1;
    }
    let at = b.at as usize & (PATH_MAX_MATCH - 1);
    let name = unsafe { (*b.names)[(b.count as usize - 1 - index as usize) & (MAX_DEPTH - 1)] };
    // SAFETY: `at` < 256, so '/' and the 256-byte window after it stay inside the 512 bytes.
    let n = unsafe {
        (*b.buf)[at] = b'/';
        let window = &mut *((*b.buf).as_mut_ptr().add(at + 1) as *mut [u8; PATH_MAX_MATCH]);
        bpf_probe_read_kernel_str_bytes(name as *const u8, window).map(|name| name.len())
    };
    match n {
        Ok(len) if len > 0 => {
            // The next '/' goes where this name's NUL is.
            b.at = (at + 1 + len) as u32;
            0
        }
        _ => {
            b.failed = 1;
            1
        }
    }
}

/// The absolute path of `dentry` on the mount `vfsmount`, into `out`; its length, or None when
/// it is deeper than MAX_DEPTH, longer than PATH_MAX_MATCH - 2 bytes, or unreadable.
#[inline(always)]
pub fn build(vfsmount: u64, dentry: u64, out: &mut [u8; PATH_MAX_MATCH]) -> Option<usize> {
    let mut walk = Walk {
        dentry,
        mount: vfsmount.wrapping_sub(config::mount_mnt_off() as u64),
        vfsmount,
        count: 0,
        done: 0,
        names: [0; MAX_DEPTH],
    };
    // SAFETY: callback and context as bpf_loop documents them.
    unsafe { bpf_loop((MAX_DEPTH * 2) as u32, walk_up as *mut c_void, (&raw mut walk).cast(), 0) };
    if walk.done == 0 {
        return None;
    }
    // SAFETY: per-CPU buffer, used by this program only until it returns.
    let buf = unsafe { &mut *PATH_JOIN.get_ptr_mut(0)? };
    // Not zeroed: a 512-byte clear compiles to a byte loop the verifier walks per path. Each
    // name is NUL-terminated by the read helper, and everything past the NUL is ignored by the
    // matcher and by the daemon's decoder.
    if walk.count == 0 {
        buf[0] = b'/';
        buf[1] = 0;
    }
    let mut b =
        Build { buf: buf as *mut _, names: &raw const walk.names, count: walk.count, at: 0, failed: 0, _pad: 0 };
    // SAFETY: as above.
    unsafe { bpf_loop(walk.count, append as *mut c_void, (&raw mut b).cast(), 0) };
    let len = if walk.count == 0 { 1 } else { b.at as usize };
    if b.failed != 0 || len >= PATH_MAX_MATCH - 1 {
        return None;
    }
    // SAFETY: the first 256 bytes of the 512-byte buffer, copied as a fixed-size array.
    *out = unsafe { *(buf.as_ptr() as *const [u8; PATH_MAX_MATCH]) };
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
