//! Who is calling: the exact process at the other end of an API connection.
//!
//! `SO_PEERCRED` gives a pid as of `connect()`, which is not enough to judge a request that comes
//! later: a tagged agent could fork, let the child connect and exit, and speak on the inherited
//! socket as a pid that no longer has a tag (or was reused by an untagged process). The daemon
//! therefore takes the peer's pidfd (`SO_PEERPIDFD`, Linux 6.5+, net/core/sock.c), which names
//! that very process forever, and before each request asks the kernel whether it still runs and
//! under which pid (the `Pid:` line of the pidfd's fdinfo, fs/pidfs.c; -1 once it exited).
//!
//! Before Linux 6.5 there is no `SO_PEERPIDFD`. The daemon then opens a pidfd itself
//! (`pidfd_open`, 5.3+) for the `SO_PEERCRED` pid and keeps it only if that process started before
//! the connection was accepted (`/proc/PID/stat` start time, boot clock, in clock ticks): a pid
//! reused after the accept belongs to a process that started later. What this cannot tell
//! apart: the connecting process exiting and its pid being reused *between its `connect()` and
//! the daemon's `accept()`*, or within the same clock tick (10 ms) — a window an agent can only
//! use by exhausting the pid space, and which `SO_PEERPIDFD` closes (docs/design.md).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// include/uapi/asm-generic/socket.h
const SO_PEERPIDFD: libc::c_int = 77;

/// The process at the other end of an API connection, named by a pidfd.
pub struct Peer {
    pidfd: OwnedFd,
    pub uid: u32,
}

impl Peer {
    /// The connecting process of `socket`, or None when the kernel cannot name it: by
    /// `SO_PEERPIDFD`, else by the `SO_PEERCRED` `pid` checked against `accepted_ns` (the boot-clock
    /// time the connection was accepted).
    pub fn of(socket: &impl AsRawFd, pid: u32, uid: u32, accepted_ns: u64) -> Option<Peer> {
        match Peer::by_peer_pidfd(socket, uid) {
            Ok(peer) => Some(peer),
            // Only a kernel without the option falls back: on one that has it, a failure means
            // the connecting process is gone (its pid may already name another process).
            Err(errno) if errno == libc::ENOPROTOOPT => Peer::by_pid(pid, uid, accepted_ns),
            Err(_) => None,
        }
    }

    /// The peer's pidfd from the kernel, or the errno.
    fn by_peer_pidfd(socket: &impl AsRawFd, uid: u32) -> Result<Peer, i32> {
        let mut fd: libc::c_int = -1;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt with a correctly sized out-buffer for an int.
        let rc = unsafe {
            libc::getsockopt(socket.as_raw_fd(), libc::SOL_SOCKET, SO_PEERPIDFD, (&raw mut fd).cast(), &raw mut len)
        };
        if rc != 0 || fd < 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL));
        }
        // SAFETY: the kernel just gave us this descriptor; we own it from here.
        Ok(Peer { pidfd: unsafe { OwnedFd::from_raw_fd(fd) }, uid })
    }

    /// A duplicate of the peer's descriptor `fd` (`pidfd_getfd`, Linux 5.6+: the daemon's
    /// `CAP_SYS_PTRACE` lets it take any process's).
    pub fn take_fd(&self, fd: i32) -> std::io::Result<OwnedFd> {
        // SAFETY: pidfd_getfd takes a pidfd, a descriptor number and flags, and returns a new
        // descriptor or -1.
        let got = unsafe { libc::syscall(libc::SYS_pidfd_getfd, self.pidfd.as_raw_fd(), fd, 0) };
        let got = libc::c_int::try_from(got).ok().filter(|fd| *fd >= 0).ok_or_else(std::io::Error::last_os_error)?;
        // SAFETY: the kernel just gave us this descriptor; we own it from here.
        Ok(unsafe { OwnedFd::from_raw_fd(got) })
    }

    /// A pidfd for `pid`, kept only if that process started no later than `accepted_ns`.
    fn by_pid(pid: u32, uid: u32, accepted_ns: u64) -> Option<Peer> {
        let pid_t = libc::pid_t::try_from(pid).ok().filter(|p| *p > 0)?;
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid_t, 0) };
        let fd = libc::c_int::try_from(fd).ok().filter(|fd| *fd >= 0)?;
        // SAFETY: the kernel just gave us this descriptor; we own it from here.
        let peer = Peer { pidfd: unsafe { OwnedFd::from_raw_fd(fd) }, uid };
        let started_ticks = procfs::process::Process::new(pid_t).ok()?.stat().ok()?.starttime;
        // The stat read above was about the pidfd's process only if it still runs as `pid`.
        if peer.pid() != Some(pid) {
            return None;
        }
        // SAFETY: sysconf has no preconditions.
        let ticks_per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok().filter(|t| *t > 0)?;
        let accepted_ticks = accepted_ns / (1_000_000_000 / ticks_per_second);
        (started_ticks <= accepted_ticks).then_some(peer)
    }

    /// Whether the peer runs and has not begun to exit; to be called *after* its tag
    /// was looked up. A process loses its tag in `do_exit()` once its thread group is dead
    /// (tag.rs), while its pidfd still names it (a zombie keeps its pid until reaped). An exiting
    /// process is flagged `PF_EXITING` before that (kernel/exit.c: `exit_signals()` comes first),
    /// so if the leader is neither exiting nor a zombie after the lookup, the group was alive
    /// at the lookup and an absent tag means the process never had one. A leader that exits
    /// before its other threads reads as exiting: refused, which fails closed.
    /// `pid` is the peer's pid as read before the lookup.
    pub fn is_running(&self, pid: u32) -> bool {
        /// include/linux/sched.h
        const PF_EXITING: u32 = 0x0000_0004;
        let Some(stat) = i32::try_from(pid).ok().and_then(|p| procfs::process::Process::new(p).ok()?.stat().ok())
        else {
            return false;
        };
        let exiting = stat.flags & PF_EXITING != 0 || matches!(stat.state, 'Z' | 'X' | 'x');
        // The stat read was about the pidfd's process only if that still runs as `pid`.
        !exiting && self.pid() == Some(pid)
    }

    /// The peer's pid now, or None once it has exited.
    pub fn pid(&self) -> Option<u32> {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", self.pidfd.as_raw_fd())).ok()?;
        let pid: i64 = info.lines().find_map(|l| l.strip_prefix("Pid:"))?.trim().parse().ok()?;
        u32::try_from(pid).ok().filter(|pid| *pid > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::Peer;
    use crate::daemon::clock::boot_ns_now;

    #[test]
    fn without_a_peer_pidfd_a_process_started_before_the_accept_is_named() {
        let me = std::process::id();
        let peer = Peer::by_pid(me, 0, boot_ns_now()).expect("this process started before now");
        assert_eq!(peer.pid(), Some(me));
    }

    #[test]
    fn without_a_peer_pidfd_a_process_started_after_the_accept_is_refused() {
        // As if the connection had been accepted at boot: this process (the pid's holder now)
        // started later, so it cannot be the one that connected.
        assert!(Peer::by_pid(std::process::id(), 0, 0).is_none());
        assert!(Peer::by_pid(0, 0, boot_ns_now()).is_none());
    }

    #[test]
    fn without_a_peer_pidfd_an_exited_process_is_not_named() {
        let mut child = std::process::Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        child.wait().expect("reap true");
        // Reaped: its pid names nothing (or, reused, a process that started after now-ish).
        let peer = Peer::by_pid(pid, 0, boot_ns_now());
        assert!(peer.is_none_or(|p| p.pid() == Some(pid)), "a reused pid is named only while it runs");
    }
}
