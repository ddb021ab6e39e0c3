//! The maps, named as in `agent_guard_common::maps` (the static's identifier is the map name;
//! the daemon takes each by that constant and fails to start if one is missing).
//! Sizes here are placeholders: the daemon sets every size at load time.

use agent_guard_common::{
    event::{ExecEvent, FileEvent},
    net::{DnsOrig, LearnedKey, LearnedPorts, NetKey, NetPorts},
    path::{PathKey, PathRule},
    task::{Approval, OpenSeenKey, ProcTag, TaskEntry, UsageKey},
};
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};

#[map]
pub static PROC_TAGS: HashMap<u32, ProcTag> = HashMap::with_max_entries(1, 0);

#[map]
pub static TASKS: HashMap<u32, TaskEntry> = HashMap::with_max_entries(1, 0);

#[map]
pub static TASK_LIVE: HashMap<u32, u64> = HashMap::with_max_entries(1, 0);

/// `BPF_F_NO_PREALLOC` is mandatory for LPM tries.
#[map]
pub static NET_RULES: LpmTrie<NetKey, NetPorts> = LpmTrie::with_max_entries(1, 1);

#[map]
pub static NET_LEARNED: HashMap<LearnedKey, LearnedPorts> = HashMap::with_max_entries(1, 0);

#[map]
pub static DNS_ORIG: LruHashMap<u64, DnsOrig> = LruHashMap::with_max_entries(1, 0);

#[map]
pub static PATH_RULES: HashMap<PathKey, PathRule> = HashMap::with_max_entries(1, 0);

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4096, 0);

#[map]
pub static ALERTS: RingBuf = RingBuf::with_byte_size(4096, 0);

/// [0]: tagged processes added by forks less those removed at exit (atomic, kernel only);
/// [1]: task roots the daemon tagged (daemon only). Their wrapping sum is `PROC_TAGS`' count.
#[map]
pub static TAG_COUNT: Array<u64> = Array::with_max_entries(2, 0);

#[map]
pub static EVENT_DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static SCRATCH: PerCpuArray<FileEvent> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static EXEC_SCRATCH: PerCpuArray<ExecEvent> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static EXEC_PENDING: LruHashMap<u32, ExecEvent> = LruHashMap::with_max_entries(1, 0);

#[map]
pub static FILE_PENDING: HashMap<u32, FileEvent> = HashMap::with_max_entries(1, 0);

#[map]
pub static APPROVALS: HashMap<u32, Approval> = HashMap::with_max_entries(1, 0);

#[map]
pub static PATH_JOIN: PerCpuArray<[u8; 512]> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static TASK_GONE: PerCpuArray<TaskEntry> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static PATH_WALK: PerCpuArray<crate::path_match::WalkState> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static DENTRY_WALK: PerCpuArray<crate::dentry_path::DentryWalk> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static USAGE_SEEN: LruHashMap<UsageKey, u32> = LruHashMap::with_max_entries(1, 0);

#[map]
pub static OPEN_SEEN: LruHashMap<OpenSeenKey, u32> = LruHashMap::with_max_entries(1, 0);
