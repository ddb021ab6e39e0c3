//! Who is calling: the exact process at the other end of an API connection.
//!
//! SO_PEERCRED gives a pid as of connect(), which is not enough to judge a request that comes
//! later: a tagged agent could fork, let the child connect and exit, and speak on the inherited
//! socket as a pid that no longer has a tag (or was reused by an untagged process). The daemon
//! therefore takes the peer's pidfd (SO_PEERPIDFD, Linux 6.5+, net/core/sock.c), which names
//! that very process forever, and before each request asks the kernel whether it still runs and
//! under which pid (the `Pid:` line of the pidfd's fdinfo, fs/pidfs.c; -1 once it exited).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// include/uapi/asm-generic/socket.h
const SO_PEERPIDFD: libc::c_int = 77;

pub struct Peer {
    pidfd: OwnedFd,
    pub uid: u32,
}

impl Peer {
    /// The connecting process of `socket`, or None when the kernel cannot name it.
    pub fn of(socket: &impl AsRawFd, uid: u32) -> Option<Peer> {
        let mut fd: libc::c_int = -1;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt with a correctly sized out-buffer for an int.
        let rc = unsafe {
            libc::getsockopt(socket.as_raw_fd(), libc::SOL_SOCKET, SO_PEERPIDFD, (&raw mut fd).cast(), &mut len)
        };
        if rc != 0 || fd < 0 {
            return None;
        }
        // SAFETY: the kernel just gave us this descriptor; we own it from here.
        Some(Peer { pidfd: unsafe { OwnedFd::from_raw_fd(fd) }, uid })
    }

    /// The peer's pid now, or None once it has exited.
    pub fn pid(&self) -> Option<u32> {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", self.pidfd.as_raw_fd())).ok()?;
        let pid: i64 = info.lines().find_map(|l| l.strip_prefix("Pid:"))?.trim().parse().ok()?;
        u32::try_from(pid).ok().filter(|pid| *pid > 0)
    }
}
