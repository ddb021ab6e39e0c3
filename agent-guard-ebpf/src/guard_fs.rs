//! The guard's own kernel objects live on two filesystems no agent has business changing:
//! bpffs (the pinned links and maps: unlinking a link pin detaches its program once no
//! process holds it) and cgroupfs (moving a process out of its task's cgroup escapes
//! `cgroup.kill`; the daemon's own cgroup can be frozen or killed). Writes there are refused
//! to tagged processes whatever their grant, told apart by the superblock's magic rather than
//! by path, so no mount point or path spelling gets around it. Reported as KIND_TAMPER.
//!
//! Fail-closed: a superblock that cannot be read is not one of these (the grant decides).

use agent_guard_common::event::{TAMPER_BPFFS, TAMPER_CGROUPFS};
use aya_ebpf::helpers::bpf_probe_read_kernel;

use crate::{config, escape::tamper, task::CurrentTask};

/// include/uapi/linux/magic.h
const BPF_FS_MAGIC: u64 = 0xcafe_4a11;
const CGROUP_SUPER_MAGIC: u64 = 0x0027_e0eb;
const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;

/// TAMPER_* for a superblock of the guard's filesystems, 0 for any other.
#[inline(always)]
fn guard_fs(sb: u64) -> u32 {
    if sb == 0 {
        return 0;
    }
    // SAFETY: s_magic at its BTF offset in a superblock the caller read from the kernel.
    let magic =
        unsafe { bpf_probe_read_kernel((sb as *const u8).add(config::sb_magic_off()) as *const u64) }.unwrap_or(0);
    match magic {
        BPF_FS_MAGIC => TAMPER_BPFFS,
        CGROUP_SUPER_MAGIC | CGROUP2_SUPER_MAGIC => TAMPER_CGROUPFS,
        _ => 0,
    }
}

/// Some(false) (refused and reported) when `dentry` is on one of the guard's filesystems.
#[inline(always)]
pub fn refuse_dentry(task: &CurrentTask, dentry: *const u8) -> Option<bool> {
    // SAFETY: d_sb at its BTF offset.
    let sb = unsafe { bpf_probe_read_kernel(dentry.add(config::dentry_sb_off()) as *const u64) }.unwrap_or(0);
    match guard_fs(sb) {
        0 => None,
        what => Some(tamper(task.task_id, what, 0)),
    }
}

/// As `refuse_dentry`, for a `struct path`.
#[inline(always)]
pub fn refuse_path(task: &CurrentTask, path: *const u8) -> Option<bool> {
    // SAFETY: path.dentry at its BTF offset.
    let dentry = unsafe { bpf_probe_read_kernel(path.add(config::path_dentry_off()) as *const u64) }.unwrap_or(0);
    if dentry == 0 {
        return None;
    }
    refuse_dentry(task, dentry as *const u8)
}
