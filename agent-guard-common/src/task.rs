//! Process tags and task entries.

/// Value of `PROC_TAGS`, keyed by tgid. Set by the daemon for a task's first process and by
/// the `task_newtask` program for every process forked from a tagged one.
///
/// It also names the process image: (tgid, `exec_ns`) is its exec id — unique across pid reuse,
/// since a reused tgid starts at a later time — and (`parent_tgid`, `parent_exec_ns`) the image
/// that forked it. `exec_ns` is the fork's time, moved to the exec's time by every exec
/// (`sched_process_exec`); the parent link stays. The task's first process has parent 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcTag {
    /// The task the process belongs to.
    pub task_id: u32,
    /// The process that forked this image; 0 for the task's first process.
    pub parent_tgid: u32,
    /// `CLOCK_BOOTTIME` of the fork or of the latest exec.
    pub exec_ns: u64,
    /// The parent image's `exec_ns`.
    pub parent_exec_ns: u64,
}

/// `TaskEntry::mode`: out-of-scope actions are refused with EPERM.
pub const MODE_ENFORCE: u32 = 0;
/// `TaskEntry::mode`: out-of-scope actions proceed and are flagged.
pub const MODE_AUDIT: u32 = 1;

/// `TaskEntry::state`: the grant is in force until `expires_ns`.
pub const STATE_ACTIVE: u32 = 0;
/// `TaskEntry::state`: the task was stopped; every action is out of scope.
pub const STATE_REVOKED: u32 = 1;

/// Value of `TASKS`, keyed by task id. Written only by the daemon; the live-process count
/// the kernel updates is kept apart, in `TASK_LIVE`, so that the daemon rewriting an entry
/// (revoke, extend) can never lose a concurrent kernel update.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskEntry {
    /// Key prefix of this task's rules in `NET_RULES` and `PATH_RULES`.
    pub grant_id: u32,
    /// MODE_*.
    pub mode: u32,
    /// STATE_*.
    pub state: u32,
    /// The task this one is a sub-task of (0: none). A task may act on its sub-tasks'
    /// processes (signal, trace, limits); never on processes outside its own tree.
    pub parent_task: u32,
    /// `CLOCK_BOOTTIME` (`bpf_ktime_get_boot_ns`) after which the grant no longer allows anything.
    pub expires_ns: u64,
    /// CONFINE_*: what else confines the task's processes.
    pub confine: u32,
    /// Loopback port of the task's own DNS resolver in the daemon (low 16 bits), and
    /// `DNS_ON_IP6_LOOPBACK`: the cgroup programs send the task's DNS queries (TCP and UDP port
    /// 53, to any server) there. 0: no resolver (queries are judged by the grant's address rules
    /// like any other destination).
    pub dns_port: u32,
}

/// `TaskEntry::dns_port` bit: the resolver listens on `[::1]` too, where IPv6 sockets' DNS goes
/// (an IPv6-only socket cannot reach `::ffff:127.0.0.1`, the fallback).
pub const DNS_ON_IP6_LOOPBACK: u32 = 1 << 16;

/// `TaskEntry::confine`: nothing but the eBPF programs.
pub const CONFINE_NONE: u32 = 0;
/// `TaskEntry::confine`: `agent-guard run` applied a Landlock ruleset compiled from the grant
/// to the task's first process before it ran the agent (it stacks over every descendant). While
/// the grant is in force, the kernel lets Landlock refuse what is outside the ruleset and reports
/// the result at syscall exit, instead of killing at syscall entry.
pub const CONFINE_LANDLOCK: u32 = 1;
/// `TaskEntry::confine` bit, with `CONFINE_LANDLOCK`: the ruleset's file rules are the grant's
/// (no `DIR/*`, `deny` or `ask` among `files.read` and `files.write`, a sub-task's inherited
/// restrictions included), so an open Landlock lets through is in the grant and its exit need
/// not look the file up.
pub const CONFINE_FILES_EXACT: u32 = 2;
/// `TaskEntry::confine` bit, with `CONFINE_LANDLOCK`: the ruleset lets the `ask` paths through
/// for the daemon's supervisor to hold (`LandlockRuleset::hold_asks`). An open or exec whose file
/// the kernel cannot find (deeper or longer than its walk) is then refused (killed), not judged
/// on its spelling: the spelling may have led the supervisor elsewhere (`/proc/self` names the
/// daemon when the daemon resolves it), and only the kernel's own lookup would catch that.
pub const CONFINE_ASKS_HELD: u32 = 4;

/// `TaskEntry::confine` bit, with `CONFINE_FILES_EXACT`: every file rule allows (no `flag`), and
/// the task enforces. An open is then Landlock's alone: while the grant is in force the entry
/// program does nothing (after it, it kills at entry), and the exit program reports a refusal
/// (reading the syscall's arguments back from its registers) or the first use of a file, found
/// by its identity in `OPEN_SEEN` (`OpenSeenKey`).
pub const CONFINE_OPENS_CACHED: u32 = 8;

/// `Approval::state`
pub const APPROVAL_PENDING: u32 = 0;
/// A human approved: the held syscall runs when continued.
pub const APPROVAL_GRANTED: u32 = 1;
/// Denied, timed out or the task ended: the held syscall fails with EPERM.
pub const APPROVAL_REFUSED: u32 = 2;
/// A held connect the human approved, let through by the LSM hook and left for the cgroup
/// connect program the kernel runs after it to consume (net.rs `passed_once`): a connect that
/// reaches that program without it (TCP Fast Open's `sendto`, which skips `socket_connect`)
/// was never asked about.
pub const APPROVAL_PASSED: u32 = 3;

/// Value of `APPROVALS`, keyed by the held thread's tid: the decision on the held action
/// identified by (`access`, `hash` of its path).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Approval {
    /// APPROVAL_*.
    pub state: u32,
    /// ACCESS_* bits the action needs.
    pub access: u32,
    /// Seeded FNV-1a of the path (or of the destination, for `USE_CONNECT`).
    pub hash: u64,
    /// `CLOCK_BOOTTIME` past which a still pending question is refused by the kernel itself,
    /// whether or not a daemon is there to answer it.
    pub deadline_ns: u64,
}

/// Key of `USAGE_SEEN`: an allowed access (ACCESS_* bits, or `USE_CONNECT`) of a task to the
/// object hashed `hash` (FNV-1a of a path, or of a destination).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageKey {
    /// The task the process belongs to.
    pub task_id: u32,
    /// ACCESS_* bits the action needs.
    pub access: u32,
    /// Seeded FNV-1a of the path (or of the destination, for `USE_CONNECT`).
    pub hash: u64,
}

/// Key of `OPEN_SEEN`: a file a task opened with `access` and whose first use was reported. A
/// file is its mount, inode number and generation (`include/linux/fs.h` `struct inode`
/// `i_ino`, `i_generation`): a new file that reuses a deleted one's inode number gets another
/// generation from the filesystems that recycle numbers (ext4, xfs, btrfs, tmpfs).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenSeenKey {
    /// The task the process belongs to.
    pub task_id: u32,
    /// ACCESS_* bits the open needed.
    pub access: u32,
    /// `struct vfsmount` the file was opened through (a bind mount is another key).
    pub mnt: u64,
    /// `inode.i_ino`.
    pub ino: u64,
    /// `inode.i_generation`.
    pub generation: u32,
    /// Zero.
    pub pad: u32,
}

/// `UsageKey::access` of a connect or send.
pub const USE_CONNECT: u32 = 1 << 31;

const _: () = assert!(core::mem::size_of::<Approval>() == 24);
const _: () = assert!(core::mem::size_of::<UsageKey>() == 16);
const _: () = assert!(core::mem::size_of::<OpenSeenKey>() == 32);
const _: () = assert!(core::mem::size_of::<ProcTag>() == 24);
const _: () = assert!(core::mem::size_of::<TaskEntry>() == 32);
