//! Unix sockets: a connect (stream, seqpacket) or a send (datagram) to another process's
//! socket reaches whatever serves it (a container runtime's socket, a privileged daemon), so
//! it needs `write` on the socket's path in the grant, as the kernel's own DAC check does
//! (`net/unix/af_unix.c` `unix_find_bsd`: `MAY_WRITE` on the inode).
//!
//! Both hooks run after the kernel found the peer (`unix_stream_connect`, `unix_may_send`), so
//! the path judged is the peer's bound path (`unix_sock.path`), absolute and resolved: relative
//! names, symlinks, a chroot or /proc/self/cwd spellings cannot get around it.
//! The daemon's API socket is always allowed (steps, sub-tasks), known by its inode: the grant
//! gives no write on its path, so it cannot be unlinked and rebound by a task.
//! Abstract-namespace sockets have no path a grant can name: refused (`ESCAPE_UNIX_ABSTRACT`).
//! Unbound peers (socketpair) stay within the process tree that made them: allowed.
//!
//! Fail-closed: a peer whose address cannot be read is treated as abstract (refused).

use agent_guard_common::event::{ESCAPE_UNIX_ABSTRACT, FILE_OP_UNIX_CONNECT};
use aya_ebpf::{bindings::path, helpers::bpf_probe_read_kernel, macros::lsm, programs::LsmContext};

use crate::{
    config,
    escape::refuse,
    guard_fs,
    lsm::verdict,
    lsm_tree::change_at,
    task::{CurrentTask, current_task},
};

/// `unix_stream_connect(struct` sock *sock, struct sock *other, struct sock *newsk)
#[lsm(hook = "unix_stream_connect")]
pub fn unix_stream_connect(ctx: LsmContext) -> i32 {
    let Some(task) = current_task() else { return 0 };
    verdict(try_peer(&task, ctx.arg::<*const u8>(1)))
}

/// `unix_may_send(struct` socket *sock, struct socket *other): datagrams, connected or not.
#[lsm(hook = "unix_may_send")]
pub fn unix_may_send(ctx: LsmContext) -> i32 {
    let Some(task) = current_task() else { return 0 };
    let other: *const u8 = ctx.arg(1);
    // SAFETY: socket.sk at its BTF offset.
    let sk = unsafe { bpf_probe_read_kernel(other.add(config::socket_sk_off()).cast::<u64>()) }.unwrap_or(0);
    verdict(try_peer(&task, sk as *const u8))
}

/// The daemon's API socket, known by inode (so a file bound at its path by anyone else is not).
#[inline(always)]
fn is_api_socket(dentry: u64) -> bool {
    let (api_ino, api_dev) = config::api_socket();
    guard_fs::is_object(dentry, api_ino, api_dev)
}

/// `other` is the peer's struct sock, the first member of its struct `unix_sock`.
#[inline(always)]
fn try_peer(task: &CurrentTask, other: *const u8) -> bool {
    if other.is_null() {
        return refuse(task, ESCAPE_UNIX_ABSTRACT, 0, 0);
    }
    // SAFETY: unix_sock.path (a struct path) and unix_sock.addr at their BTF offsets.
    let bound = unsafe { other.add(config::unix_path_off()) };
    let dentry = unsafe { bpf_probe_read_kernel(bound.add(config::path_dentry_off()).cast::<u64>()) }.unwrap_or(0);
    if dentry != 0 {
        if is_api_socket(dentry) {
            return true;
        }
        return change_at(task, bound.cast::<path>(), FILE_OP_UNIX_CONNECT);
    }
    let addr = unsafe { bpf_probe_read_kernel(other.add(config::unix_addr_off()).cast::<u64>()) };
    match addr {
        // Never bound: a socketpair's other end.
        Ok(0) => true,
        _ => refuse(task, ESCAPE_UNIX_ABSTRACT, 0, 0),
    }
}
