//! `ask` at the `landlock` level: a seccomp filter that sends the task's opens and execs to
//! the daemon (`SECCOMP_RET_USER_NOTIF`), which lets them go on, or holds one an `ask` rule
//! matches until a human decides (daemon/tasks/supervise.rs). `agent-guard run` installs it
//! last, hands the listener to the daemon, and closes its own copy before it execs the agent:
//! no process of the task ever holds it.
//!
//! seccompiler has no user-notification action, so this small filter is written out in classic
//! BPF: check the architecture, then compare the syscall number with each notified one.

use std::os::fd::{FromRawFd, OwnedFd};

use super::seccomp::SeccompError;

/// include/uapi/linux/audit.h: the architecture whose syscalls the filter names; any other
/// (i386 through `int 0x80`) kills the process, as seccompiler's filters do.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;
/// arch/x86/include/uapi/asm/unistd.h: x32 syscalls carry this bit under the native
/// architecture; they are killed (their numbers name other calls).
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The calls an `ask` rule can match (network rules have no `ask`).
fn notified() -> Vec<i64> {
    let mut nrs = vec![libc::SYS_openat, libc::SYS_openat2, libc::SYS_execve, libc::SYS_execveat];
    #[cfg(target_arch = "x86_64")]
    nrs.extend([libc::SYS_open, libc::SYS_creat]);
    nrs
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter { code: code as u16, jt: 0, jf: 0, k }
}

fn jeq(k: u32, jt: u8) -> libc::sock_filter {
    libc::sock_filter { code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16, jt, jf: 0, k }
}

/// Foreign architecture or x32 → kill; falls through otherwise, with the syscall number loaded.
fn prologue() -> Vec<libc::sock_filter> {
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    // struct seccomp_data: nr at 0, arch at 4.
    vec![
        stmt(load, 4),
        jeq(AUDIT_ARCH, 1),
        stmt(ret, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(load, 0),
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        stmt(ret, libc::SECCOMP_RET_KILL_PROCESS),
    ]
}

/// The program: foreign architecture or x32 → kill; a notified call → the listener; else allow.
fn program(nrs: &[i64]) -> Vec<libc::sock_filter> {
    let ret = libc::BPF_RET | libc::BPF_K;
    let mut prog = prologue();
    let n = nrs.len();
    for (i, nr) in nrs.iter().enumerate() {
        // Past the comparisons left and the `allow` return, to the `notify` return.
        let skip = u8::try_from(n - i).expect("a handful of syscalls");
        prog.push(jeq(u32::try_from(*nr).expect("syscall numbers are small"), skip));
    }
    prog.push(stmt(ret, libc::SECCOMP_RET_ALLOW));
    prog.push(stmt(ret, libc::SECCOMP_RET_USER_NOTIF));
    prog
}

/// Installs, on this process, a filter that kills calls of a foreign architecture or of the x32
/// ABI, for every confined task: seccompiler's filters check the architecture only, and an x32
/// call, which reports the native one, would reach what they refuse under another number (x32
/// `bpf`, `linkat`, `kill`) and the syscall tracepoints, which do not see x32 calls at all.
pub fn install_arch_guard() -> Result<(), SeccompError> {
    let mut prog = prologue();
    prog.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW));
    install(&prog, 0).map(drop)
}

/// Installs `prog` on this process with `flags`; what the call returns (a listener for
/// `SECCOMP_FILTER_FLAG_NEW_LISTENER`).
fn install(prog: &[libc::sock_filter], flags: libc::c_ulong) -> Result<i64, SeccompError> {
    let fprog =
        libc::sock_fprog { len: u16::try_from(prog.len()).expect("short program"), filter: prog.as_ptr().cast_mut() };
    // SAFETY: `fprog` points to `prog`, alive for the call; the kernel copies the program.
    let ret = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, flags, &raw const fprog) };
    if ret < 0 {
        return Err(SeccompError::new(format!("filter: {}", std::io::Error::last_os_error())));
    }
    Ok(ret)
}

/// Installs the filter on this process (single-threaded, `no_new_privs` already set) and
/// returns its listener.
pub fn install_listener() -> Result<OwnedFd, SeccompError> {
    let fd = install(&program(&notified()), libc::SECCOMP_FILTER_FLAG_NEW_LISTENER)?;
    // SAFETY: a new descriptor the kernel just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).expect("descriptors fit in i32")) })
}

#[cfg(test)]
mod tests {
    use super::program;

    #[test]
    fn every_notified_call_jumps_to_the_notify_return_and_others_to_allow() {
        let nrs = [10, 20, 30];
        let prog = program(&nrs);
        let notify = prog.len() - 1;
        let allow = prog.len() - 2;
        assert_eq!(prog[notify].k, libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(prog[allow].k, libc::SECCOMP_RET_ALLOW);
        for (i, nr) in nrs.iter().enumerate() {
            let at = 6 + i;
            assert_eq!(prog[at].k, *nr as u32);
            // A classic BPF jump counts from the next instruction.
            assert_eq!(at + 1 + usize::from(prog[at].jt), notify);
            assert_eq!(at + 1 + usize::from(prog[at].jf), at + 1);
        }
    }
}
