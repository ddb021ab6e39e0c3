//! Records the kernel programs put on the `EVENTS` ring buffer.
//!
//! Every record starts with an [`EventHeader`]; `kind` says which struct follows.
//! The kernel only reports what is out of scope (or what it could not decide); in-scope
//! actions cost a lookup and nothing else.

use crate::path::PATH_MAX_MATCH;

/// A connect or send out of scope, or first used (`NetEvent`).
pub const KIND_NET: u32 = 1;
/// A file open or file-tree change out of scope, undecided, held or first used (`FileEvent`).
pub const KIND_FILE: u32 = 2;
/// An exec out of scope, undecided, held or first used (`ExecEvent`).
pub const KIND_EXEC: u32 = 3;
/// The last process of a task exited.
pub const KIND_TASK_EMPTY: u32 = 4;
/// A tagged process forked a child the kernel could not tag (`PROC_TAGS` full): the daemon
/// kills the child, so that no process ever escapes its task untagged.
pub const KIND_TAG_LOST: u32 = 5;
/// A tagged process tried to signal or trace the daemon, or to use bpf(2) (`TaskEvent`:
/// `child_tgid` is the target, `detail` the TAMPER_* attempt).
pub const KIND_TAMPER: u32 = 6;
/// A tagged process forked (`TaskEvent`: the header names the parent, `child_tgid` the child,
/// whose exec id starts at the header's `boot_ns`). Lineage only: no event of its own.
pub const KIND_FORK: u32 = 7;
/// A tagged process exec'd (`TaskEvent`: the header names the new image). Lineage only.
pub const KIND_EXEC_START: u32 = 8;

/// A tagged process tried to step outside its task by a route no grant field opens
/// (`EscapeEvent`): a privilege, a mount, a namespace, another process, a socket family, a
/// device, or access after its grant ended. Refused whatever the grant's mode.
pub const KIND_ESCAPE: u32 = 9;

/// `TaskEvent::detail` of `KIND_TAMPER`: what was attempted against the daemon.
pub const TAMPER_SIGNAL: u32 = 1;
/// Tracing the daemon or reading its memory.
pub const TAMPER_PTRACE: u32 = 2;
/// A bpf(2) call.
pub const TAMPER_BPF: u32 = 3;
/// A signal routed to the daemon through a file owner (`F_SETOWN` + SIGIO/SIGURG).
pub const TAMPER_SIGIO: u32 = 4;
/// Its resource limits, priority, scheduling or memory placement.
pub const TAMPER_LIMITS: u32 = 5;
/// A change on a BPF filesystem (the guard's pinned programs and maps: an unlink would detach).
pub const TAMPER_BPFFS: u32 = 6;
/// A change on a cgroup filesystem (moving processes out of the task's cgroup, freezing or
/// killing the daemon's cgroup, limits).
pub const TAMPER_CGROUPFS: u32 = 7;
/// An open or change of the daemon's own files (state, policies, audit store, socket, config,
/// executable), whatever the grant names.
pub const TAMPER_FILES: u32 = 8;

/// `EscapeEvent::what`. `arg` and `target` as noted.
/// A capability (`arg`: CAP_* number) the task may not use.
pub const ESCAPE_CAPABILITY: u32 = 1;
/// mount, umount, `move_mount`, `pivot_root` (`arg`: `MOUNT_OP_*`).
pub const ESCAPE_MOUNT: u32 = 2;
/// `chroot`.
pub const ESCAPE_CHROOT: u32 = 3;
/// A new user namespace.
pub const ESCAPE_USERNS: u32 = 4;
/// A socket of a family, type or protocol no grant can open (`arg`: family | type << 16 |
/// protocol << 32).
pub const ESCAPE_SOCKET: u32 = 5;
/// `listen()` or `accept()` on a port `network.listen` does not allow (`arg`: the local port).
pub const ESCAPE_LISTEN: u32 = 6;
/// ptrace, /proc/PID/mem, `process_vm_*`, `pidfd_getfd` of a process outside the task
/// (`target`: its tgid, `arg`: `PTRACE_MODE_*` bits).
pub const ESCAPE_PTRACE: u32 = 7;
/// A signal to a process outside the task (`target`, `arg`: signal number).
pub const ESCAPE_SIGNAL: u32 = 8;
/// Limits, priority, scheduling or memory placement of a process outside the task
/// (`target`, `arg`: `SCHED_OP_*`).
pub const ESCAPE_SCHED: u32 = 9;
/// A device node: mknod of a block or character device, or an open of a block device
/// (`arg`: the inode mode).
pub const ESCAPE_DEVICE: u32 = 10;
/// A file owner (`F_SETOWN`, `F_SETOWN_EX`) naming a process outside the task (`target`).
pub const ESCAPE_FOWNER: u32 = 11;
/// Loading or requesting a kernel module.
pub const ESCAPE_MODULE: u32 = 12;
/// `perf_event_open`.
pub const ESCAPE_PERF: u32 = 13;
/// A read, write, send, receive or mapping on a descriptor opened before the task's grant
/// ended (`arg`: `IO_OP_*`). Reported once per process.
pub const ESCAPE_ENDED_IO: u32 = 14;
/// A fork refused because the child could not be tagged (`PROC_TAGS` nearly full).
pub const ESCAPE_FORK: u32 = 15;
/// A connect or send to a Unix socket in the abstract namespace (no path a grant can name).
pub const ESCAPE_UNIX_ABSTRACT: u32 = 16;
/// A fork into another cgroup (clone3 `CLONE_INTO_CGROUP`), out of reach of the task's cgroup.
pub const ESCAPE_CGROUP: u32 = 17;
/// A kernel key of another type than a keyring (`add_key`, `request_key`): `request_key`'s upcall
/// runs /sbin/request-key as root, untagged, with the caller's description and callout
/// (the `dns_resolver` type resolves names, a channel no network grant sees).
pub const ESCAPE_KEY: u32 = 18;

/// `EscapeEvent::arg` of `ESCAPE_MOUNT`.
pub const MOUNT_OP_MOUNT: u64 = 1;
/// `umount`.
pub const MOUNT_OP_UMOUNT: u64 = 2;
/// `move_mount`.
pub const MOUNT_OP_MOVE: u64 = 3;
/// `pivot_root`.
pub const MOUNT_OP_PIVOT_ROOT: u64 = 4;

/// `EscapeEvent::arg` of `ESCAPE_SCHED`.
pub const SCHED_OP_RLIMIT: u64 = 1;
/// Priority (`setpriority`).
pub const SCHED_OP_NICE: u64 = 2;
/// I/O priority.
pub const SCHED_OP_IOPRIO: u64 = 3;
/// Scheduling policy or affinity.
pub const SCHED_OP_SCHEDULER: u64 = 4;
/// Memory placement (`move_pages`, `migrate_pages`).
pub const SCHED_OP_MOVE_MEMORY: u64 = 5;

/// `EscapeEvent::arg` of `ESCAPE_ENDED_IO`.
pub const IO_OP_READ: u64 = 1;
/// A write.
pub const IO_OP_WRITE: u64 = 2;
/// A socket send.
pub const IO_OP_SEND: u64 = 3;
/// A socket receive.
pub const IO_OP_RECEIVE: u64 = 4;
/// A memory mapping.
pub const IO_OP_MMAP: u64 = 5;

/// `EventHeader::verdict`: no rule of the grant allows the action.
pub const VERDICT_OUT_OF_SCOPE: u32 = 1;
/// `EventHeader::verdict`: the kernel could not match the path as seen at this hook
/// (relative, not normalised, or longer than `PATH_MAX_MATCH`); the daemon decides.
pub const VERDICT_UNRESOLVED: u32 = 2;
/// `EventHeader::verdict`: an `ask` rule matched: the process is held until a human decides.
pub const VERDICT_ASK: u32 = 3;
/// `NetEvent::rule_index` when no rule matched.
pub const NO_RULE: u32 = u32::MAX;

/// `EventHeader::verdict`: a `deny` rule matched.
pub const VERDICT_RULE_DENY: u32 = 4;
/// `EventHeader::verdict`: a `flag` rule matched: allowed and reported.
pub const VERDICT_FLAGGED: u32 = 5;
/// `EventHeader::verdict`: an allowed action, reported at its first use by the task (once per
/// object and access; see `USAGE_SEEN)`: the daemon records which rules were used and what was
/// touched, for the task's usage summary. Not an event of its own.
pub const VERDICT_IN_SCOPE: u32 = 6;
/// `EventHeader::verdict`: informational record (task empty).
pub const VERDICT_NONE: u32 = 0;

/// `EventHeader::reason`.
pub const REASON_NONE: u32 = 0;
/// No rule of the grant allows it (default deny).
pub const REASON_NO_RULE: u32 = 1;
/// The grant expired.
pub const REASON_EXPIRED: u32 = 2;
/// The grant was revoked (task stopped).
pub const REASON_REVOKED: u32 = 3;

/// `EventHeader::action`: what the kernel did.
pub const ACTION_ALLOWED: u32 = 0;
/// The kernel refused the operation (EPERM).
pub const ACTION_BLOCKED: u32 = 1;
/// The process is stopped inside the syscall, which restarts when it is continued.
pub const ACTION_HELD: u32 = 2;
/// The process was killed (SIGKILL) because of the action: where the kernel cannot refuse it
/// (no BPF LSM), the strongest remaining response. For an open, the syscall still ran.
pub const ACTION_KILLED: u32 = 3;
/// Landlock refused the operation (EACCES) on the resolved object; the eBPF programs saw it
/// at syscall exit (`TaskEntry::confine` is `CONFINE_LANDLOCK`).
pub const ACTION_LANDLOCK: u32 = 4;

/// Hooks, in `NetEvent::hook`.
pub const HOOK_CONNECT4: u32 = 1;
/// `cgroup/connect6`.
pub const HOOK_CONNECT6: u32 = 2;
/// `cgroup/sendmsg4`.
pub const HOOK_SENDMSG4: u32 = 3;
/// `cgroup/sendmsg6`.
pub const HOOK_SENDMSG6: u32 = 4;
/// The BPF LSM `socket_connect` hook (IPv4, IPv6).
pub const HOOK_LSM_CONNECT4: u32 = 5;
/// The BPF LSM `socket_connect` hook, IPv6.
pub const HOOK_LSM_CONNECT6: u32 = 6;

/// `FileEvent::path_flags` / `ExecEvent::path_flags`.
pub const PATH_RELATIVE: u32 = 1;
/// The path holds `.`, `..` or `//`: matched by the daemon after resolving it.
pub const PATH_UNNORMALIZED: u32 = 2;
/// The path is longer than `PATH_MAX_MATCH`.
pub const PATH_TRUNCATED: u32 = 4;
/// The path as spelled is in the grant, but Landlock refused the file it leads to (through a
/// symlink, a hard link or a mount): set at syscall exit, at the `landlock` level.
pub const PATH_RESOLVED_ELSEWHERE: u32 = 8;
/// The path is a descriptor's magic link (`/proc/self/fd/N`, `/dev/fd/N`, `/dev/stdin`): the
/// kernel resolves it to a file the process already holds, which Landlock judges again; at the
/// `landlock` level it is left to Landlock (a pipe or socket reopened this way has no path).
pub const PATH_FD_LINK: u32 = 16;
/// The path could not be read from the process's memory at syscall entry (a page not faulted
/// in yet): the open or exec is judged at exit on the file it reached, or refused.
pub const PATH_UNREADABLE: u32 = 32;

/// `ExecEvent`: arguments captured and bytes kept of each.
pub const EXEC_ARGS: usize = 8;
/// Bytes kept of each captured argument.
pub const EXEC_ARG_LEN: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// The start of every ring-buffer record: what, who, and what the kernel decided.
pub struct EventHeader {
    /// KIND_*: which struct this header starts.
    pub kind: u32,
    /// VERDICT_*: what the grant says.
    pub verdict: u32,
    /// REASON_*: why it is out of scope.
    pub reason: u32,
    /// ACTION_*: what the kernel did.
    pub action: u32,
    /// The task of the process (0: untagged).
    pub task_id: u32,
    /// Process id.
    pub tgid: u32,
    /// Thread id.
    pub pid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// The process that forked this image (`ProcTag::parent_tgid`); 0 for the task's first.
    pub ptgid: u32,
    /// `CLOCK_BOOTTIME`, ns.
    pub boot_ns: u64,
    /// This image's exec id with `tgid`, and its parent's with `ptgid` (`ProcTag`); 0 when the
    /// process is not tagged.
    pub exec_ns: u64,
    /// The parent image's exec id with `ptgid`.
    pub parent_exec_ns: u64,
    /// The task command name, NUL-padded.
    pub comm: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// `KIND_NET`: a connect or send.
pub struct NetEvent {
    /// What, who, and what the kernel decided.
    pub header: EventHeader,
    /// HOOK_*: the program that saw it.
    pub hook: u32,
    /// `IPPROTO_TCP` (6) or `IPPROTO_UDP` (17).
    pub protocol: u32,
    /// Destination port, host byte order.
    pub port: u32,
    /// Index in the grant's `network.connect` of the rule that flagged or denied it;
    /// `NO_RULE` when none matched.
    pub rule_index: u32,
    /// Destination, IPv6 or IPv4-mapped IPv6, network byte order.
    pub addr: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// `KIND_FILE`: an open, or a change to the file tree.
pub struct FileEvent {
    /// What, who, and what the kernel decided.
    pub header: EventHeader,
    /// ACCESS_* bits requested.
    pub access: u32,
    /// open(2) flags as passed.
    pub open_flags: u32,
    /// Directory fd a relative path is resolved against (`AT_FDCWD` = -100).
    pub dfd: i32,
    /// PATH_*: why the kernel could not decide on the path.
    pub path_flags: u32,
    /// `FILE_OP_*`: what the process does to the path.
    pub op: u32,
    /// Explicit padding, zero.
    pub pad: u32,
    /// The path, as the process passed it or as the hook resolved it, NUL-terminated.
    pub path: [u8; PATH_MAX_MATCH],
}

/// `FileEvent::op`: opening a file, or changing the file tree (all need `write`).
pub const FILE_OP_OPEN: u32 = 0;
/// Creating a file.
pub const FILE_OP_CREATE: u32 = 1;
/// Removing a file.
pub const FILE_OP_UNLINK: u32 = 2;
/// Creating a directory.
pub const FILE_OP_MKDIR: u32 = 3;
/// Removing a directory.
pub const FILE_OP_RMDIR: u32 = 4;
/// The source of a rename.
pub const FILE_OP_RENAME_FROM: u32 = 5;
/// The destination of a rename.
pub const FILE_OP_RENAME_TO: u32 = 6;
/// A hard link (refused inside a task).
pub const FILE_OP_LINK: u32 = 7;
/// Creating a symbolic link.
pub const FILE_OP_SYMLINK: u32 = 8;
/// Truncating a file.
pub const FILE_OP_TRUNCATE: u32 = 9;
/// Changing the mode.
pub const FILE_OP_CHMOD: u32 = 10;
/// Changing the owner.
pub const FILE_OP_CHOWN: u32 = 11;
/// Setting or removing an extended attribute or a POSIX ACL.
pub const FILE_OP_XATTR: u32 = 12;
/// Any other change of attributes (times; mode, owner and size also pass the hooks above).
pub const FILE_OP_SETATTR: u32 = 13;
/// A connect or send to a Unix socket bound at this path: `write` on it (`lsm_unix.rs`).
pub const FILE_OP_UNIX_CONNECT: u32 = 14;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// `KIND_EXEC`: an exec, with its first arguments.
pub struct ExecEvent {
    /// What, who, and what the kernel decided.
    pub header: EventHeader,
    /// PATH_*: why the kernel could not decide on the path.
    pub path_flags: u32,
    /// Arguments captured in `argv` (at most `EXEC_ARGS`).
    pub argc: u32,
    /// The path, as the process passed it or as the hook resolved it, NUL-terminated.
    pub path: [u8; PATH_MAX_MATCH],
    /// The first `argc` arguments, each NUL-terminated and cut at `EXEC_ARG_LEN`.
    pub argv: [[u8; EXEC_ARG_LEN]; EXEC_ARGS],
}

/// Header-only record (`KIND_TASK_EMPTY`, `KIND_TAG_LOST`); for `KIND_TAG_LOST`,
/// `child_tgid` names the untagged child.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskEvent {
    /// What, who, and what the kernel decided.
    pub header: EventHeader,
    /// The child (`KIND_FORK`, `KIND_TAG_LOST`) or the target (`KIND_TAMPER`); 0 otherwise.
    pub child_tgid: u32,
    /// `KIND_TAMPER`: what was attempted (TAMPER_*); 0 otherwise.
    pub detail: u32,
}

/// `KIND_ESCAPE`: a refused attempt to leave the task's boundary.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EscapeEvent {
    /// What, who, and what the kernel decided.
    pub header: EventHeader,
    /// ESCAPE_*.
    pub what: u32,
    /// The process acted on (tgid), where there is one; 0 otherwise.
    pub target: u32,
    /// Detail of `what` (see each ESCAPE_*).
    pub arg: u64,
}

const _: () = assert!(core::mem::size_of::<EventHeader>() == 80);
const _: () = assert!(core::mem::size_of::<EscapeEvent>() == 96);
const _: () = assert!(core::mem::size_of::<NetEvent>() == 80 + 32);
const _: () = assert!(core::mem::size_of::<FileEvent>() == 80 + 24 + PATH_MAX_MATCH);
const _: () = assert!(core::mem::size_of::<ExecEvent>() == 80 + 8 + PATH_MAX_MATCH + EXEC_ARGS * EXEC_ARG_LEN);
const _: () = assert!(core::mem::size_of::<TaskEvent>() == 88);

#[cfg(feature = "user")]
pub use crate::pod::{DecodeError, KernelEvent};
