//! Naming refused attempts to leave a task's boundary (kernel `KIND_ESCAPE` records) and
//! attempts on the guard itself (`KIND_TAMPER`), for events: which route, on what, and why.

use agent_guard_common::event::{
    ESCAPE_CAPABILITY, ESCAPE_CGROUP, ESCAPE_CHROOT, ESCAPE_DEVICE, ESCAPE_ENDED_IO, ESCAPE_FORK, ESCAPE_FOWNER,
    ESCAPE_KEY, ESCAPE_LISTEN, ESCAPE_MODULE, ESCAPE_MOUNT, ESCAPE_PERF, ESCAPE_PTRACE, ESCAPE_SCHED, ESCAPE_SIGNAL,
    ESCAPE_SOCKET, ESCAPE_UNIX_ABSTRACT, ESCAPE_USERNS, EscapeEvent, IO_OP_MMAP, IO_OP_READ, IO_OP_RECEIVE, IO_OP_SEND,
    IO_OP_WRITE, MOUNT_OP_MOVE, MOUNT_OP_PIVOT_ROOT, MOUNT_OP_UMOUNT, SCHED_OP_IOPRIO, SCHED_OP_MOVE_MEMORY,
    SCHED_OP_NICE, SCHED_OP_RLIMIT, SCHED_OP_SCHEDULER, TAMPER_BPF, TAMPER_BPFFS, TAMPER_CGROUPFS, TAMPER_FILES,
    TAMPER_LIMITS, TAMPER_PTRACE, TAMPER_SIGIO, TAMPER_SIGNAL,
};

/// include/uapi/linux/capability.h, by number.
const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// A refused route out of the task: its name (`object.route`), what it aimed at
/// (`object.detail`), and a sentence for `reason`.
pub struct Route {
    pub name: &'static str,
    pub detail: String,
    pub reason: String,
}

fn socket_family(family: u64) -> &'static str {
    match family {
        1 => "unix",
        2 => "inet",
        10 => "inet6",
        16 => "netlink",
        17 => "packet",
        40 => "vsock",
        31 => "bluetooth",
        38 => "alg",
        44 => "xdp",
        _ => "other",
    }
}

/// Describes an escape record.
pub fn route(e: &EscapeEvent) -> Route {
    let target = e.target;
    let (route, detail, reason) = match e.what {
        ESCAPE_CAPABILITY => {
            let name = CAPABILITIES.get(e.arg as usize).map_or_else(|| format!("capability {}", e.arg), std::string::ToString::to_string);
            let reason = format!("a tagged process may not use {name}");
            ("capability", name, reason)
        }
        ESCAPE_MOUNT => {
            let op = match e.arg {
                MOUNT_OP_UMOUNT => "umount",
                MOUNT_OP_MOVE => "move_mount",
                MOUNT_OP_PIVOT_ROOT => "pivot_root",
                _ => "mount",
            };
            ("mount", op.to_string(), format!("a tagged process may not change mounts ({op})"))
        }
        ESCAPE_CHROOT => ("chroot", String::new(), "a tagged process may not change its root directory".into()),
        ESCAPE_USERNS => ("namespace", "user".into(), "a tagged process may not create a user namespace".into()),
        ESCAPE_SOCKET => {
            let (family, kind, protocol) = (e.arg & 0xffff, (e.arg >> 16) & 0xffff, e.arg >> 32);
            let detail = format!("family {family} ({}) type {kind} protocol {protocol}", socket_family(family));
            let reason = format!("no grant opens a socket of {detail}");
            ("socket", detail, reason)
        }
        ESCAPE_LISTEN => (
            "listen",
            format!("tcp port {}", e.arg),
            format!("network.listen of the grant does not allow tcp port {}", e.arg),
        ),
        ESCAPE_PTRACE => (
            "ptrace",
            format!("mode {:#x}", e.arg),
            format!("a tagged process may not trace or read the memory of process {target}, outside its task"),
        ),
        ESCAPE_SIGNAL => (
            "signal",
            format!("signal {}", e.arg),
            format!("a tagged process may not signal process {target}, outside its task"),
        ),
        ESCAPE_SCHED => {
            let op = match e.arg {
                SCHED_OP_RLIMIT => "rlimit",
                SCHED_OP_NICE => "nice",
                SCHED_OP_IOPRIO => "ioprio",
                SCHED_OP_SCHEDULER => "scheduler",
                SCHED_OP_MOVE_MEMORY => "move_memory",
                _ => "scheduling",
            };
            ("scheduling", op.into(), format!("a tagged process may not change the {op} of process {target}, outside its task"))
        }
        ESCAPE_DEVICE => {
            let kind = if e.arg & 0o170_000 == 0o060_000 { "block" } else { "character" };
            ("device", format!("{kind} device (mode {:o})", e.arg), format!("a tagged process may not make or open a {kind} device"))
        }
        ESCAPE_FOWNER => (
            "file_owner",
            format!("owner type {}", e.arg),
            format!("a tagged process may not route signals to process {target}, outside its task"),
        ),
        ESCAPE_MODULE => ("module", String::new(), "a tagged process may not make the kernel load a module".into()),
        ESCAPE_PERF => ("perf_event", String::new(), "a tagged process may not use perf_event_open".into()),
        ESCAPE_ENDED_IO => {
            let op = match e.arg {
                IO_OP_READ => "read",
                IO_OP_WRITE => "write",
                IO_OP_SEND => "send",
                IO_OP_RECEIVE => "receive",
                IO_OP_MMAP => "mmap",
                _ => "io",
            };
            ("after_grant_end", op.into(), format!("the task's grant has ended: a {op} on a descriptor opened before is refused (reported once per process)"))
        }
        ESCAPE_FORK => (
            "fork",
            format!("{} tagged processes", e.arg),
            "the kernel's tag map is nearly full: a fork whose child could not be tagged is refused (raise --max-processes)".into(),
        ),
        ESCAPE_KEY => {
            let name: String = e.arg.to_le_bytes().iter().take_while(|b| **b != 0).map(|b| char::from(*b)).collect();
            (
                "key",
                format!("key type {}", name.escape_default()),
                "kernel keys other than keyrings are refused: request_key would run /sbin/request-key as root, outside \
                 the task"
                    .into(),
            )
        }
        ESCAPE_CGROUP => (
            "cgroup",
            "clone3 CLONE_INTO_CGROUP".into(),
            "a fork into another cgroup (out of reach of the task's cgroup) is refused".into(),
        ),
        ESCAPE_UNIX_ABSTRACT => (
            "unix_abstract",
            "abstract Unix socket".into(),
            "a connect or send to a Unix socket in the abstract namespace, which no grant can name, is refused".into(),
        ),
        other => ("unknown", format!("{other}"), format!("a tagged process was refused route {other}")),
    };
    Route { name: route, detail, reason }
}

/// A sentence for a tamper record (`detail`: TAMPER_*, `target`: the daemon's pid).
pub fn tamper_reason(detail: u32, target: u32) -> String {
    match detail {
        TAMPER_SIGNAL => format!("a tagged process tried to signal the agent-guard daemon (pid {target})"),
        TAMPER_PTRACE => format!("a tagged process tried to trace the agent-guard daemon (pid {target})"),
        TAMPER_BPF => "a tagged process tried to use bpf(2)".to_string(),
        TAMPER_SIGIO => format!("a signal was routed to the agent-guard daemon (pid {target}) through a file owner"),
        TAMPER_LIMITS => format!(
            "a tagged process tried to change the limits, priority or scheduling of the agent-guard daemon (pid {target})"
        ),
        TAMPER_FILES => {
            "a tagged process tried to open or change the agent-guard daemon's own files (state, policies, \
                          audit store, socket, config, executable)"
                .to_string()
        }
        TAMPER_BPFFS => {
            "a tagged process tried to change a BPF filesystem, where the guard's programs and maps are pinned"
                .to_string()
        }
        TAMPER_CGROUPFS => {
            "a tagged process tried to change a cgroup filesystem (moving processes, freezing, killing, limits)"
                .to_string()
        }
        other => format!("a tagged process tried to act on the agent-guard daemon (attempt {other})"),
    }
}
