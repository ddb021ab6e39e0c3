//! The `landlock` level: where the kernel has no BPF LSM, `agent-guard run` confines itself,
//! before it runs the agent, with a Landlock ruleset the daemon compiled from the grant, and
//! drops the capabilities the grant does not name. Landlock then refuses (EACCES), on the
//! object the kernel resolved, what the ruleset does not cover; the eBPF programs report it at
//! syscall exit and narrow the ruleset to the grant (docs/design.md, "The landlock level").
//!
//! - `ruleset`: grant -> ruleset (the daemon).
//! - `apply`: ruleset -> this process (`agent-guard run`).
//! - `seccomp`: the system calls that would go around Landlock and the eBPF programs.
//! - `notify`: `ask` at this level, the opens and execs the daemon holds for a human.

pub mod apply;
pub mod notify;
pub mod ruleset;
pub mod seccomp;

/// The newest Landlock ABI this code was written and tested for: ABI 6 added signal and
/// abstract-socket scoping, 7 only audit logging. A newer kernel is used at this ABI, so that
/// an access right added later (ABI 9 handles connecting to pathname Unix sockets, which the
/// API needs) never refuses something no grant can name.
pub const MAX_ABI: u32 = 7;

/// The Landlock ABI the running kernel offers (capped at [`MAX_ABI`]), or None where Landlock
/// is not built in or not in the active LSM list.
///
/// The `landlock` crate keeps its own probe private, so this asks the kernel directly:
/// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)` returns the ABI
/// (security/landlock/syscalls.c).
pub fn landlock_abi() -> Option<u32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_ulong = 1;
    // SAFETY: with a null attribute pointer, size 0 and the VERSION flag the syscall reads and
    // writes no memory.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0 as libc::size_t,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(abi).ok().filter(|&abi| abi >= 1).map(|abi| abi.min(MAX_ABI))
}
