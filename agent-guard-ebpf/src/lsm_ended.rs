//! BPF LSM hooks that end access already granted when the grant ends: once a task is revoked,
//! stopped or past its expiry, its processes may not read, write, send, receive or map through
//! descriptors and sockets they opened while it was in force (the open and connect hooks only
//! judge new ones).
//!
//! - `file_permission` (`fs/read_write.c` `rw_verify_area`, and the splice, `copy_file_range` and
//!   sendfile paths): every read and write on a file, pipe or device.
//! - `socket_sendmsg`, `socket_recvmsg` (net/socket.c `sock_sendmsg`, `sock_recvmsg)`: every
//!   send and receive, `io_uring`'s included.
//! - `mmap_file` (mm/mmap.c, `security_mmap_file)`: a new mapping of a file. Writes through a
//!   shared mapping made before the end are not stopped (the kernel asks nothing then).
//!
//! Cost: for an untagged process one `PROC_TAGS` lookup per read or write; for a tagged one a
//! TASKS lookup and a clock read as well (measured in BENCHMARKS.md).
//!
//! Fail-open/closed: untagged processes and grants in force are never affected. In `audit`
//! mode nothing is refused. The first refusal of each process is reported (`ESCAPE_ENDED_IO`),
//! the rest only refused, so that a loop over a dead descriptor cannot flood the outputs.

use agent_guard_common::{
    event::{ESCAPE_ENDED_IO, IO_OP_MMAP, IO_OP_READ, IO_OP_RECEIVE, IO_OP_SEND, IO_OP_WRITE},
    task::MODE_AUDIT,
};
use aya_ebpf::{macros::lsm, programs::LsmContext};

use crate::{
    escape::refuse,
    lsm::verdict,
    task::{current_task, current_tgid},
    usage,
};

/// include/linux/fs.h
const MAY_WRITE: i32 = 0x2;
/// `UsageKey::access` marking "ended-grant access reported for this process".
const ENDED_REPORTED: u32 = 1 << 30;

/// `file_permission(struct` file *file, int mask)
#[lsm(hook = "file_permission")]
pub fn file_permission(ctx: LsmContext) -> i32 {
    let mask: i32 = ctx.arg(1);
    verdict(in_force(if mask & MAY_WRITE != 0 { IO_OP_WRITE } else { IO_OP_READ }))
}

/// `socket_sendmsg(struct` socket *sock, struct msghdr *msg, int size)
#[lsm(hook = "socket_sendmsg")]
pub fn socket_sendmsg(_ctx: LsmContext) -> i32 {
    verdict(in_force(IO_OP_SEND))
}

/// `socket_recvmsg(struct` socket *sock, struct msghdr *msg, int size, int flags)
#[lsm(hook = "socket_recvmsg")]
pub fn socket_recvmsg(_ctx: LsmContext) -> i32 {
    verdict(in_force(IO_OP_RECEIVE))
}

/// `mmap_file(struct` file *file, unsigned long reqprot, unsigned long prot, unsigned long flags)
#[lsm(hook = "mmap_file")]
pub fn mmap_file(ctx: LsmContext) -> i32 {
    let file: u64 = ctx.arg(0);
    // Anonymous mappings reach nothing outside the process.
    verdict(file == 0 || in_force(IO_OP_MMAP))
}

/// Whether the current process may still use what it holds: untagged, or its grant in force,
/// or in audit mode.
#[inline(always)]
fn in_force(op: u64) -> bool {
    let Some(task) = current_task() else {
        return true;
    };
    if task.grant_ended().is_none() || task.entry.mode == MODE_AUDIT {
        return true;
    }
    if usage::first_use(task.task_id, ENDED_REPORTED, u64::from(current_tgid())) {
        refuse(&task, ESCAPE_ENDED_IO, 0, op);
    }
    false
}
