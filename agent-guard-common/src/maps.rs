//! Map names, defined once. Names are at most 15 characters (`BPF_OBJ_NAME_LEN` - 1).
//! Sizes are defaults: the daemon overrides them at load time (`EbpfLoader::map_max_entries`).

/// tgid -> [`crate::task::ProcTag`]: which task a process works for.
pub const PROC_TAGS: &str = "PROC_TAGS";
/// task id -> [`crate::task::TaskEntry`]: grant, mode, expiry and live process count.
pub const TASKS: &str = "TASKS";
/// task id -> u64: processes (thread groups) of the task still alive. Only the kernel changes
/// it (atomically, at fork and exit); the daemon creates it with 1 and deletes it at close.
pub const TASK_LIVE: &str = "TASK_LIVE";
/// LPM trie [`crate::net::NetKey`] -> [`crate::net::NetPorts`].
pub const NET_RULES: &str = "NET_RULES";
/// [`crate::path::PathKey`] -> [`crate::path::PathRule`].
pub const PATH_RULES: &str = "PATH_RULES";
/// Ring buffer of [`crate::event`] records.
pub const EVENTS: &str = "EVENTS";
/// Ring buffer of refused attempts on the guard or the task boundary (`KIND_TAMPER`,
/// `KIND_ESCAPE`, `KIND_TAG_LOST`), apart from EVENTS so that a flood cannot crowd them out.
pub const ALERTS: &str = "ALERTS";
/// Default size of `ALERTS`, bytes.
pub const DEFAULT_ALERTS_BYTES: u32 = 1024 * 1024;
/// Per-CPU counter of events the kernel could not put on the ring buffer.
pub const EVENT_DROPS: &str = "EVENT_DROPS";
/// Per-CPU scratch [`crate::event::FileEvent`] built by the file hooks (too big for the 512-byte stack).
pub const SCRATCH: &str = "SCRATCH";

/// Default entries of `PROC_TAGS` (tagged processes).
pub const DEFAULT_PROC_TAGS: u32 = 131_072;
/// Default entries of `TASKS` (open tasks).
pub const DEFAULT_TASKS: u32 = 4_096;
/// Default entries of `NET_RULES` (prefixes of all grants).
pub const DEFAULT_NET_RULES: u32 = 65_536;
/// Default entries of `PATH_RULES` (path keys of all grants).
pub const DEFAULT_PATH_RULES: u32 = 65_536;
/// Bytes; must be a power of two and a multiple of the page size.
pub const DEFAULT_EVENTS_BYTES: u32 = 16 * 1024 * 1024;
/// Per-CPU scratch [`crate::event::ExecEvent`] built by the exec hooks.
pub const EXEC_SCRATCH: &str = "EXEC_SCRATCH";
/// LRU tid -> [`crate::event::ExecEvent`]: an out-of-scope execve seen at syscall entry,
/// reported only if the exec then succeeds (failed PATH lookups are not execs).
pub const EXEC_PENDING: &str = "EXEC_PENDING";
/// Default entries of `EXEC_PENDING`.
pub const DEFAULT_EXEC_PENDING: u32 = 4_096;
/// tid -> [`crate::event::FileEvent`]: an open of a Landlock-confined task (or one whose path
/// could not be read), seen at syscall entry and judged at syscall exit. Not LRU: an entry is
/// never evicted; an open that finds the map full is killed.
pub const FILE_PENDING: &str = "FILE_PENDING";
/// Default entries of `FILE_PENDING` (threads inside an open at once).
pub const DEFAULT_FILE_PENDING: u32 = 16_384;
/// tid -> [`crate::task::Approval`]: actions held for a human's decision.
pub const APPROVALS: &str = "APPROVALS";
/// Default entries of `APPROVALS` (held actions).
pub const DEFAULT_APPROVALS: u32 = 4_096;
/// Per-CPU 512-byte buffer where the file-tree hooks join a directory's path and a name.
pub const PATH_JOIN: &str = "PATH_JOIN";
/// Per-CPU scratch of the dentry walk (`dentry_path::DentryWalk` in the eBPF crate: the names
/// found and their count, kept out of the verifier's sight; see there).
pub const DENTRY_WALK: &str = "DENTRY_WALK";
/// [`crate::net::LearnedKey`] -> [`crate::net::LearnedPorts`]: addresses a task's DNS answers
/// gave for its grant's name rules, until their TTL runs out.
pub const NET_LEARNED: &str = "NET_LEARNED";
/// Default entries of `NET_LEARNED`.
pub const DEFAULT_NET_LEARNED: u32 = 65_536;
/// LRU socket cookie -> [`crate::net::DnsOrig`]: the DNS server a redirected socket meant.
pub const DNS_ORIG: &str = "DNS_ORIG";
/// Default entries of `DNS_ORIG`.
pub const DEFAULT_DNS_ORIG: u32 = 16_384;
/// Per-CPU scratch of the path matcher's byte walk (`path_match::WalkState` in the eBPF crate,
/// which says why it is not on the stack).
pub const PATH_WALK: &str = "PATH_WALK";
/// Per-CPU [`crate::task::TaskEntry`]: the revoked entry a process whose task is gone is
/// judged by (`task::current_task` in the eBPF crate says why it is in a map).
pub const TASK_GONE: &str = "TASK_GONE";
/// LRU [`crate::task::UsageKey`] -> u32: allowed accesses of a task already reported once
/// (`VERDICT_IN_SCOPE`), so an allowed action is reported at its first use only.
pub const USAGE_SEEN: &str = "USAGE_SEEN";
/// Default entries of `USAGE_SEEN`.
pub const DEFAULT_USAGE_SEEN: u32 = 65_536;
/// LRU [`crate::task::OpenSeenKey`] -> u32: files a task whose opens are Landlock's alone
/// (`CONFINE_OPENS_CACHED`) has opened and had reported; a later open of one costs a lookup.
pub const OPEN_SEEN: &str = "OPEN_SEEN";
/// Default entries of `OPEN_SEEN`.
pub const DEFAULT_OPEN_SEEN: u32 = 65_536;
/// One u64: tagged processes in `PROC_TAGS`, kept by the fork and exit programs, so that a fork
/// whose child could not be tagged is refused before it happens (BPF LSM `task_alloc`).
pub const TAG_COUNT: &str = "TAG_COUNT";
/// Entries kept free in `PROC_TAGS` for forks already past `task_alloc` (racing on other CPUs).
pub const PROC_TAGS_HEADROOM: u32 = 256;

/// How many of the daemon's files and directories the kernel protects by inode (the state
/// and policy directories, the audit store, the API socket, the config file, the daemon's
/// executable, event files and spool directories; `config::GUARD_INO` in the eBPF crate).
pub const GUARD_FILES: usize = 16;

/// The maps that hold a guard's state, pinned in bpffs under the daemon's pin directory so
/// that they, and the programs that use them, outlive the daemon: a restarted daemon adopts
/// them (tags, tasks, grants, pending approvals, unread events). The scratch maps are not.
pub const PINNED: &[&str] = &[
    PROC_TAGS,
    TASKS,
    TASK_LIVE,
    NET_RULES,
    PATH_RULES,
    EVENTS,
    ALERTS,
    EVENT_DROPS,
    EXEC_PENDING,
    FILE_PENDING,
    APPROVALS,
    USAGE_SEEN,
    TAG_COUNT,
    NET_LEARNED,
    DNS_ORIG,
];
