//! BPF LSM hooks that keep a task inside the system it was given: no privilege that reaches
//! past files, programs and sockets, no change to what paths mean, no new kernel code, and no
//! fork whose child could not be tagged.
//!
//! - `capable` (kernel/capability.c `ns_capable_common`, via `security_capable)`: the
//!   capabilities in `DENIED_CAPS` are refused to tagged processes in every user namespace. One
//!   hook closes whole classes: mounts and namespaces (`CAP_SYS_ADMIN`, also what setns and
//!   unshare of a mount namespace ask for), chroot (`CAP_SYS_CHROOT`), device nodes
//!   (`CAP_MKNOD`), raw and packet sockets (`CAP_NET_RAW`), network configuration (`CAP_NET_ADMIN`),
//!   kernel modules, raw I/O and /dev/mem (`CAP_SYS_MODULE`, `CAP_SYS_RAWIO`), bpf and perf
//!   (`CAP_BPF`, `CAP_PERFMON`), immutable flags, file capabilities, `SysV` IPC of others
//!   (`CAP_IPC_OWNER`), tracing (`CAP_SYS_PTRACE`). Only checks of the current process's own
//!   credentials are judged: the kernel also asks about other processes (OOM scoring).
//! - `sb_mount`, `sb_umount`, `move_mount` (the new mount API's attach), `sb_pivotroot`,
//!   `path_chroot`: refused outright, whatever the capabilities, so the event names them.
//! - `userns_create` (`kernel/user_namespace.c` `create_user_ns`, Linux 6.1+): a new user
//!   namespace would give the process every capability inside it.
//! - `kernel_module_request` (kernel/module/kmod.c __`request_module)`: a socket of an unusual
//!   family can make the kernel load its module on the caller's behalf.
//! - `perf_event_open` (kernel/events/core.c).
//! - `key_alloc` (security/keys/key.c `key_alloc)`: a tagged process may make keyrings, no other
//!   kind of key; `request_key`'s upcall would run /sbin/request-key as root, untagged.
//! - `task_alloc` (kernel/fork.c `copy_process`, before the child exists): a tagged process may
//!   not fork when `PROC_TAGS` has less than `PROC_TAGS_HEADROOM` entries free, so the
//!   `task_newtask` tracepoint can always tag the child; an untagged child never runs.
//!
//! Fail-open/closed: untagged processes are never affected; for tagged ones every refusal
//! here holds whatever the grant and its mode.

use agent_guard_common::{
    event::{
        ESCAPE_CAPABILITY, ESCAPE_CGROUP, ESCAPE_CHROOT, ESCAPE_FORK, ESCAPE_KEY, ESCAPE_MODULE, ESCAPE_MOUNT,
        ESCAPE_PERF, ESCAPE_USERNS, MOUNT_OP_MOUNT, MOUNT_OP_MOVE, MOUNT_OP_PIVOT_ROOT, MOUNT_OP_UMOUNT,
    },
    maps::PROC_TAGS_HEADROOM,
};
use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_probe_read_kernel},
    macros::lsm,
    programs::LsmContext,
};

use crate::{config, escape::refuse, lsm::verdict, maps::TAG_COUNT, task::current_task};

/// include/uapi/linux/capability.h
const CAP_LINUX_IMMUTABLE: u32 = 9;
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_IPC_OWNER: u32 = 15;
const CAP_SYS_MODULE: u32 = 16;
const CAP_SYS_RAWIO: u32 = 17;
const CAP_SYS_CHROOT: u32 = 18;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_PACCT: u32 = 20;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_BOOT: u32 = 22;
const CAP_SYS_TIME: u32 = 25;
const CAP_MKNOD: u32 = 27;
const CAP_AUDIT_CONTROL: u32 = 30;
const CAP_SETFCAP: u32 = 31;
const CAP_MAC_OVERRIDE: u32 = 32;
const CAP_MAC_ADMIN: u32 = 33;
const CAP_SYSLOG: u32 = 34;
const CAP_AUDIT_READ: u32 = 37;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;
const CAP_CHECKPOINT_RESTORE: u32 = 40;

/// Capabilities a tagged process may never use (docs/design.md, the mediation table). The
/// others (file ownership and permission overrides, setuid, kill, nice, resources, binding
/// low ports) only widen what the other hooks then judge.
pub const DENIED_CAPS: u64 = 1 << CAP_LINUX_IMMUTABLE
    | 1 << CAP_NET_ADMIN
    | 1 << CAP_NET_RAW
    | 1 << CAP_IPC_OWNER
    | 1 << CAP_SYS_MODULE
    | 1 << CAP_SYS_RAWIO
    | 1 << CAP_SYS_CHROOT
    | 1 << CAP_SYS_PTRACE
    | 1 << CAP_SYS_PACCT
    | 1 << CAP_SYS_ADMIN
    | 1 << CAP_SYS_BOOT
    | 1 << CAP_SYS_TIME
    | 1 << CAP_MKNOD
    | 1 << CAP_AUDIT_CONTROL
    | 1 << CAP_SETFCAP
    | 1 << CAP_MAC_OVERRIDE
    | 1 << CAP_MAC_ADMIN
    | 1 << CAP_SYSLOG
    | 1 << CAP_AUDIT_READ
    | 1 << CAP_PERFMON
    | 1 << CAP_BPF
    | 1 << CAP_CHECKPOINT_RESTORE;

/// include/linux/security.h: a quiet probe ("would it be allowed?"), not a use.
const CAP_OPT_NOAUDIT: u32 = 1 << 1;
/// include/uapi/linux/sched.h
const CLONE_THREAD: u64 = 0x0001_0000;
/// include/uapi/linux/sched.h: clone3 only.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// capable(const struct cred *cred, struct `user_namespace` *ns, int cap, unsigned int opts)
#[lsm(hook = "capable")]
pub fn capable(ctx: LsmContext) -> i32 {
    let cap: u32 = ctx.arg(2);
    if cap >= 64 || DENIED_CAPS & (1 << cap) == 0 {
        return verdict(true);
    }
    let Some(task) = current_task() else {
        return verdict(true);
    };
    let cred: u64 = ctx.arg(0);
    // SAFETY: the current task_struct's `cred` pointer, at its BTF offset.
    let own = unsafe {
        bpf_probe_read_kernel((bpf_get_current_task() as *const u8).add(config::task_cred_off()).cast::<u64>())
    }
    .unwrap_or(0);
    if cred != own {
        return verdict(true);
    }
    let opts: u32 = ctx.arg(3);
    if opts & CAP_OPT_NOAUDIT != 0 {
        return verdict(false);
    }
    verdict(refuse(&task, ESCAPE_CAPABILITY, 0, u64::from(cap)))
}

macro_rules! refused_hook {
    ($name:ident, $hook:literal, $what:expr, $arg:expr) => {
        #[lsm(hook = $hook)]
        pub fn $name(_ctx: LsmContext) -> i32 {
            match current_task() {
                Some(task) => verdict(refuse(&task, $what, 0, $arg)),
                None => verdict(true),
            }
        }
    };
}

refused_hook!(sb_mount, "sb_mount", ESCAPE_MOUNT, MOUNT_OP_MOUNT);
refused_hook!(sb_umount, "sb_umount", ESCAPE_MOUNT, MOUNT_OP_UMOUNT);
refused_hook!(move_mount, "move_mount", ESCAPE_MOUNT, MOUNT_OP_MOVE);
refused_hook!(sb_pivotroot, "sb_pivotroot", ESCAPE_MOUNT, MOUNT_OP_PIVOT_ROOT);
refused_hook!(path_chroot, "path_chroot", ESCAPE_CHROOT, 0);
refused_hook!(userns_create, "userns_create", ESCAPE_USERNS, 0);
refused_hook!(kernel_module_request, "kernel_module_request", ESCAPE_MODULE, 0);
refused_hook!(perf_event_open, "perf_event_open", ESCAPE_PERF, 0);

/// `key_alloc(struct` key *key, const struct cred *cred, unsigned long flags): only keyrings.
/// The type's name is the first member of struct `key_type` (include/linux/key-type.h).
#[lsm(hook = "key_alloc")]
pub fn key_alloc(ctx: LsmContext) -> i32 {
    let Some(task) = current_task() else {
        return verdict(true);
    };
    let key: *const u8 = ctx.arg(0);
    // SAFETY: key->type, then its name pointer and the name's first 8 bytes.
    let key_type = unsafe { bpf_probe_read_kernel(key.add(config::key_type_off()).cast::<u64>()) }.unwrap_or(0);
    let name = unsafe { bpf_probe_read_kernel(key_type as *const u64) }.unwrap_or(0);
    let first = unsafe { bpf_probe_read_kernel(name as *const [u8; 8]) }.unwrap_or([0; 8]);
    verdict(&first == b"keyring\0" || refuse(&task, ESCAPE_KEY, 0, u64::from_le_bytes(first)))
}

/// `task_alloc(struct` `task_struct` *task, unsigned long `clone_flags`)
#[lsm(hook = "task_alloc")]
pub fn task_alloc(ctx: LsmContext) -> i32 {
    let flags: u64 = ctx.arg(1);
    if flags & CLONE_THREAD != 0 {
        // Threads share their process's tag.
        return verdict(true);
    }
    let Some(task) = current_task() else {
        return verdict(true);
    };
    if flags & CLONE_INTO_CGROUP != 0 {
        // A child born in another cgroup is out of reach of the task's cgroup.kill (and
        // could fill the daemon's own cgroup's limits).
        return verdict(refuse(&task, ESCAPE_CGROUP, 0, 0));
    }
    let used = match (TAG_COUNT.get(0), TAG_COUNT.get(1)) {
        (Some(kernel), Some(daemon)) => kernel.wrapping_add(*daemon),
        _ => u64::MAX,
    };
    if used.saturating_add(u64::from(PROC_TAGS_HEADROOM)) < u64::from(config::proc_tags_size()) {
        return verdict(true);
    }
    verdict(refuse(&task, ESCAPE_FORK, 0, used))
}
