//! Loading and attaching the kernel programs, and the maps the daemon writes.
//!
//! The guard outlives its daemon: every link and every state map is pinned in bpffs under the
//! pin directory, so a daemon that is killed, crashes or is upgraded leaves the programs
//! attached and the maps (tags, tasks, grants, unread events) in place. The next daemon loads
//! its programs against the pinned maps, then swaps each link in place (pinned under the
//! same name, replacing the old one) so that no hook is ever left unattached. Only a
//! deliberate stop removes the pins ([`Kernel::unpin`]), which detaches everything.

use std::{
    fs::File,
    path::{Path, PathBuf},
    time::Duration,
};

use agent_guard_common::{
    maps,
    net::{LISTEN_GRANT_BIT, NET_KEY_BITS, NetKey, NetPorts},
    path::{PathKey, PathRule},
    task::{Approval, ProcTag, STATE_REVOKED, TaskEntry},
};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, LpmTrie, MapData, MapError, PerCpuArray, RingBuf, lpm_trie::Key},
    programs::{CgroupAttachMode, CgroupSockAddr, Lsm, TracePoint, links::FdLink},
};

mod bpffs;
pub mod btf;
pub mod cgroup;
mod learned;
mod links;
mod securityfs;
mod tracefs;

use self::links::Links;
use crate::{
    api::{Enforcement, Level},
    grant::CompiledGrant,
};

/// Loading, attaching or writing the kernel programs and maps failed, naming the object.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("tracefs {path}: {detail}")]
    Tracefs { path: PathBuf, detail: String },
    #[error("tracepoint {event} has no field {field} on this kernel")]
    TracepointLayout { event: &'static str, field: &'static str },
    #[error("loading the eBPF object: {source}")]
    Object { source: Box<aya::EbpfError> },
    #[error("the eBPF object has no program {name}")]
    MissingProgram { name: &'static str },
    #[error("kernel program {name}: {source}")]
    Program { name: &'static str, source: aya::programs::ProgramError },
    #[error("the eBPF object has no map {name}")]
    MissingMap { name: &'static str },
    #[error("map {name}: {source}")]
    Map { name: &'static str, source: aya::maps::MapError },
    #[error("map {name} is full: this needs {need} entries, {free} of {size} are free (raise the daemon's {option})")]
    MapFull { name: &'static str, need: usize, free: usize, size: u32, option: &'static str },
    #[error("cgroup {path}: {source}")]
    Cgroup { path: PathBuf, source: std::io::Error },
    #[error("BPF LSM is not available: {detail}")]
    LsmUnavailable { detail: String },
    #[error("BPF LSM program {name} does not load or attach on this kernel: {source}")]
    Lsm { name: &'static str, source: aya::programs::ProgramError },
    #[error("pin directory {path}: {source}")]
    Pin { path: PathBuf, source: std::io::Error },
    #[error("program {name}'s link cannot be pinned: {source}")]
    Link { name: &'static str, source: aya::programs::links::LinkError },
    #[error(
        "map {name} pinned in {dir} by a previous daemon has {property} {actual}, this daemon wants {expected}: \
         start it with the previous daemon's map sizes, or stop that guard's tasks and remove {dir}"
    )]
    PinnedIncompatible { dir: PathBuf, name: String, property: &'static str, expected: u64, actual: u64 },
}

/// The eBPF object built by build.rs (aya-build) from the agent-guard-ebpf crate.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/agent-guard"));

/// Hands the pages of the embedded eBPF object (about 2.7 MiB, read once at load) back to the
/// system: they belong to the executable's read-only data, so the kernel can drop them and
/// would read them again from the file if they were ever touched.
pub fn release_object_pages() {
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let start = EBPF_OBJECT.as_ptr() as usize;
    let first = start.next_multiple_of(page);
    let end = (start + EBPF_OBJECT.len()) / page * page;
    if end > first {
        // SAFETY: the range lies inside an immutable static in a private file mapping;
        // MADV_DONTNEED only drops its resident copies, which re-fault from the file.
        unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_DONTNEED) };
    }
}

/// `BPF_EXIST` (include/uapi/linux/bpf.h): update an existing element only.
const BPF_EXIST: u64 = 2;

/// Entries in use in the maps whose size limits what the daemon can accept.
#[derive(Clone, Debug, Default)]
pub struct MapUsage {
    pub tasks: usize,
    pub path_rules: usize,
    pub net_rules: usize,
}

/// Map sizes, set at load time.
#[derive(Clone, Debug)]
pub struct MapSizes {
    pub proc_tags: u32,
    pub tasks: u32,
    pub net_rules: u32,
    pub path_rules: u32,
    pub events_bytes: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        MapSizes {
            proc_tags: maps::DEFAULT_PROC_TAGS,
            tasks: maps::DEFAULT_TASKS,
            net_rules: maps::DEFAULT_NET_RULES,
            path_rules: maps::DEFAULT_PATH_RULES,
            events_bytes: maps::DEFAULT_EVENTS_BYTES,
        }
    }
}

/// The ring buffers the programs write: ordinary events, and alerts (tampering, escapes,
/// untaggable children) apart so that a flood of the first cannot crowd out the second.
pub struct Rings {
    pub events: RingBuf<MapData>,
    pub alerts: RingBuf<MapData>,
}

/// Where and how the programs are loaded.
pub struct LoadOptions<'a> {
    pub sizes: &'a MapSizes,
    /// The cgroup v2 root, where the socket programs attach.
    pub cgroup_root: &'a Path,
    pub require_lsm: bool,
    /// bpffs directory of this guard's pinned maps (`maps/`) and links (`links/`).
    pub pin_dir: &'a Path,
    /// How long a held action waits before the kernel refuses it (hold.rs).
    pub approval_timeout: Duration,
    /// The daemon's files and directories no task may touch: (path, whether tasks may read
    /// it). At most `GUARD_FILES`; paths that do not exist are skipped.
    pub guard_files: &'a [(PathBuf, bool)],
    /// The API socket every task may connect to.
    pub api_socket: Option<&'a Path>,
    /// The secret starting point of the path hash (state.rs keeps it with the saved tasks).
    pub path_seed: u64,
}

/// A file's (inode, `dev_t` as the kernel keeps it: major << 20 | minor, `include/linux/kdev_t.h`).
fn kernel_id(path: &Path) -> Option<(u64, u32)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    Some((meta.ino(), (major << 20) | minor))
}

/// The loaded programs and the maps the daemon writes.
pub struct Kernel {
    /// Owns the programs (their links are pinned: dropping this detaches nothing).
    _ebpf: Ebpf,
    pin_dir: PathBuf,
    /// True when the maps were already pinned: a previous daemon's state was adopted.
    pub adopted: bool,
    /// True when the links are pinned (the programs outlive this daemon).
    pub links_pinned: bool,
    /// The path hash's seed the programs were given (grants are compiled with it).
    pub path_seed: u64,
    /// Links this process holds because the kernel would not pin them.
    _held_links: Vec<FdLink>,
    proc_tags: HashMap<MapData, u32, ProcTag>,
    tasks: HashMap<MapData, u32, TaskEntry>,
    task_live: HashMap<MapData, u32, u64>,
    net_rules: LpmTrie<MapData, NetKey, NetPorts>,
    /// Addresses the tasks' DNS answers gave (learned.rs).
    net_learned: HashMap<MapData, agent_guard_common::net::LearnedKey, agent_guard_common::net::LearnedPorts>,
    path_rules: HashMap<MapData, PathKey, PathRule>,
    drops: PerCpuArray<MapData, u64>,
    approvals: HashMap<MapData, u32, Approval>,
    /// [1] is the daemon's share of `PROC_TAGS`' count: the roots it tagged (`lsm_system.rs`).
    tag_count: Array<MapData, u64>,
    roots_tagged: u64,
    pub enforcement: Enforcement,
    /// Whether the open exits judge the opens of tasks Landlock alone confines
    /// (`CONFINE_OPENS_CACHED`): no BPF LSM, and the kernel's BTF.
    pub opens_cached: bool,
    pub sizes: MapSizes,
    /// Entries the daemon has written, per map (it is the only writer of these three).
    pub used: MapUsage,
    /// Said at start when the kernel lacks something the daemon would use.
    pub warnings: Vec<String>,
}

/// The program `name` of the object, as its type.
fn program<'e, T>(ebpf: &'e mut Ebpf, name: &'static str) -> Result<&'e mut T, KernelError>
where
    &'e mut T: TryFrom<&'e mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let program = ebpf.program_mut(name).ok_or(KernelError::MissingProgram { name })?;
    program.try_into().map_err(|source| KernelError::Program { name, source })
}

fn take<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T, KernelError> {
    let map = ebpf.take_map(name).ok_or(KernelError::MissingMap { name })?;
    T::try_from(map).map_err(|source| KernelError::Map { name, source })
}

/// Tracepoint programs: (program name, category, event).
/// Tagging, exec ids, and execve argv capture (for the exec events of either mode).
const TRACEPOINTS: &[(&str, &str, &str)] = &[
    ("task_newtask", "task", "task_newtask"),
    ("sched_process_exit", "sched", "sched_process_exit"),
    ("sys_enter_execve", "syscalls", "sys_enter_execve"),
    ("sys_enter_execveat", "syscalls", "sys_enter_execveat"),
    // Exec ids (and, without BPF LSM, the exec events).
    ("sched_process_exec", "sched", "sched_process_exec"),
];
/// Observation of file opens and execs, where BPF LSM is not available.
const OBSERVE_TRACEPOINTS: &[(&str, &str, &str)] = &[
    ("sys_enter_openat", "syscalls", "sys_enter_openat"),
    ("sys_enter_open", "syscalls", "sys_enter_open"),
    ("sys_enter_openat2", "syscalls", "sys_enter_openat2"),
    ("sys_enter_creat", "syscalls", "sys_enter_creat"),
    // What Landlock did with an open or exec of a confined task (the `landlock` level, file.rs,
    // exec.rs). Not attached with BPF LSM: enabling the first sys_exit tracepoint live-patches
    // the syscall exit path, which qemu's TCG (the VM stage) does not always survive, and the
    // LSM hooks report what they refuse themselves.
    ("sys_exit_execve", "syscalls", "sys_exit_execve"),
    ("sys_exit_execveat", "syscalls", "sys_exit_execveat"),
];
/// The open exits of the `landlock` level (file.rs): (program, program with BTF, event). With
/// the kernel's BTF the second, which also judges the opens Landlock alone decides
/// (`open_cached.rs`); it reads the syscall's registers through `bpf_task_pt_regs`, which a kernel
/// without BTF refuses to load.
const OPEN_EXITS: &[(&str, &str, &str)] = &[
    ("sys_exit_openat", "sys_exit_openat_btf", "sys_exit_openat"),
    ("sys_exit_open", "sys_exit_open_btf", "sys_exit_open"),
    ("sys_exit_openat2", "sys_exit_openat2_btf", "sys_exit_openat2"),
    ("sys_exit_creat", "sys_exit_creat_btf", "sys_exit_creat"),
];
/// Whether `CONFINE_OPENS_CACHED` works on this architecture (`open_cached.rs` `ARG_OFF`).
const OPENS_CACHED_ARCH: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));
/// BPF LSM programs: (program name, LSM hook).
const LSM_PROGRAMS: &[(&str, &str)] = &[
    ("file_open", "file_open"),
    ("bprm_check_security", "bprm_check_security"),
    ("socket_connect", "socket_connect"),
    // Self-protection: tagged processes may not signal or trace the daemon, nor use bpf(2).
    ("task_kill", "task_kill"),
    ("ptrace_access_check", "ptrace_access_check"),
    ("bpf", "bpf"),
    // Changes to the file tree (lsm_tree.rs).
    ("path_mknod", "path_mknod"),
    ("path_mkdir", "path_mkdir"),
    ("path_rmdir", "path_rmdir"),
    ("path_unlink", "path_unlink"),
    ("path_symlink", "path_symlink"),
    ("path_link", "path_link"),
    ("path_rename", "path_rename"),
    ("path_truncate", "path_truncate"),
    ("path_chmod", "path_chmod"),
    ("path_chown", "path_chown"),
    // Attribute changes the path hooks do not see, and device nodes (lsm_tree.rs).
    ("inode_setxattr", "inode_setxattr"),
    ("inode_removexattr", "inode_removexattr"),
    ("inode_set_acl", "inode_set_acl"),
    ("inode_remove_acl", "inode_remove_acl"),
    ("inode_setattr", "inode_setattr"),
    // Other processes and the guard (lsm_guard.rs).
    ("task_setrlimit", "task_setrlimit"),
    ("task_setnice", "task_setnice"),
    ("task_setioprio", "task_setioprio"),
    ("task_setscheduler", "task_setscheduler"),
    ("task_movememory", "task_movememory"),
    ("file_send_sigiotask", "file_send_sigiotask"),
    ("file_fcntl", "file_fcntl"),
    // Privileges, mounts, namespaces, modules, perf, untaggable forks (lsm_system.rs).
    ("capable", "capable"),
    ("sb_mount", "sb_mount"),
    ("sb_umount", "sb_umount"),
    ("move_mount", "move_mount"),
    ("sb_pivotroot", "sb_pivotroot"),
    ("path_chroot", "path_chroot"),
    ("userns_create", "userns_create"),
    ("kernel_module_request", "kernel_module_request"),
    ("perf_event_open", "perf_event_open"),
    ("task_alloc", "task_alloc"),
    ("key_alloc", "key_alloc"),
    // Unix sockets of other processes, by their bound path (lsm_unix.rs).
    ("unix_stream_connect", "unix_stream_connect"),
    ("unix_may_send", "unix_may_send"),
    // Socket families and inbound connections (lsm_socket.rs).
    ("socket_create", "socket_create"),
    ("socket_listen", "socket_listen"),
    ("socket_accept", "socket_accept"),
    // Access that outlives the grant (lsm_ended.rs).
    ("file_permission", "file_permission"),
    ("socket_sendmsg", "socket_sendmsg"),
    ("socket_recvmsg", "socket_recvmsg"),
    ("mmap_file", "mmap_file"),
];

const SOCK_ADDR_PROGRAMS: &[&str] = &[
    "connect4",
    "connect6",
    "sendmsg4",
    "sendmsg6",
    // DNS answers and peers of redirected sockets (dns.rs in the eBPF crate).
    "recvmsg4",
    "recvmsg6",
    "getpeername4",
    "getpeername6",
];

/// The oldest kernel whose verifier takes all of the BPF LSM programs: 6.1's refuses the
/// file-tree hooks' calls (`path_mknod`: "reg type unsupported for arg#0"), so there the daemon
/// uses the `landlock` level (tested in the VM matrix).
pub const MIN_LSM_KERNEL: (u32, u32) = (6, 12);

/// The running kernel's (major, minor).
pub fn kernel_version() -> (u32, u32) {
    let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Whether this kernel loads a BPF LSM program (a trivial one, never attached): some refuse
/// them with EPERM although `bpf` is an active LSM. Loads nothing else and attaches nothing.
pub fn probe_lsm() -> Result<(), String> {
    let mut ebpf = EbpfLoader::new().load(EBPF_OBJECT).map_err(|e| e.to_string())?;
    let btf = aya::Btf::from_sys_fs().map_err(|e| e.to_string())?;
    let program: &mut Lsm = program(&mut ebpf, "lsm_probe").map_err(|e| e.to_string())?;
    program.load("file_open", &btf).map_err(|e| e.to_string())
}

impl Kernel {
    /// Loads every program and attaches it, with BPF LSM for file, exec and connect where the
    /// kernel takes it; otherwise (unless `require_lsm`) file and exec are observed and the
    /// reason is kept in `warnings`. Any other failure is fatal and names the program: the
    /// daemon never runs with less enforcement than it reports.
    pub fn load(options: &LoadOptions) -> Result<(Kernel, Rings), KernelError> {
        tracefs::ensure_mounted()?;
        bpffs::ensure(options.pin_dir)?;
        let adopted = options.pin_dir.join("maps").join(maps::TASKS).exists();
        for dir in ["maps", "links"] {
            let path = options.pin_dir.join(dir);
            std::fs::create_dir_all(&path).map_err(|source| KernelError::Pin { path, source })?;
        }
        let version = kernel_version();
        let btf = btf::KernelBtf::read();
        let lsm = securityfs::bpf_lsm_active()
            .and_then(|()| {
                if version < MIN_LSM_KERNEL {
                    return Err(format!(
                        "the BPF LSM programs need Linux {}.{} or later; this kernel is {}.{}",
                        MIN_LSM_KERNEL.0, MIN_LSM_KERNEL.1, version.0, version.1
                    ));
                }
                Ok(())
            })
            .and_then(|()| btf.as_ref().map_err(Clone::clone)?.lsm_offsets())
            .map_err(|detail| KernelError::LsmUnavailable { detail });
        let loaded = match lsm.and_then(|offsets| Self::load_mode(options, Some(&offsets), &btf)) {
            Ok(loaded) => Ok(loaded),
            Err(err @ (KernelError::LsmUnavailable { .. } | KernelError::Lsm { .. })) if !options.require_lsm => {
                let (mut kernel, rings) = Self::load_mode(options, None, &btf)?;
                kernel.warnings.push(format!("file and exec are observed, not refused: {err}"));
                Ok((kernel, rings))
            }
            Err(err) => Err(err),
        };
        let (mut kernel, rings) = loaded?;
        kernel.adopted = adopted;
        Ok((kernel, rings))
    }

    #[expect(
        clippy::too_many_lines,
        reason = "the load sequence in kernel order (maps, programs, verify, attach, pin): splitting it would hide the order"
    )]
    fn load_mode(
        options: &LoadOptions,
        lsm: Option<&btf::LsmOffsets>,
        btf: &Result<btf::KernelBtf, String>,
    ) -> Result<(Kernel, Rings), KernelError> {
        let (sizes, cgroup_root) = (options.sizes, options.cgroup_root);
        let mut warnings = Vec::new();
        let offset = |cat, event, field| -> Result<u32, KernelError> {
            tracefs::field_offset(cat, event, field)?.ok_or(KernelError::TracepointLayout { event, field })
        };
        // The landlock level's resolution (file.rs, exec.rs): wherever there is BTF.
        let resolve = btf.as_ref().ok().and_then(|btf| btf.resolve_offsets().ok());
        let walk = lsm.map(|o| o.walk).or(resolve.map(|r| r.walk));
        let walk_off = |field: fn(&btf::WalkOffsets) -> u32| walk.as_ref().map_or(0, field);
        // The LSM hooks and the `landlock` level's open cache (open_cached.rs) read the same members.
        let file_inode = lsm.map(|o| o.file_inode).or(resolve.map(|r| r.file_inode)).unwrap_or(0);
        let inode_ino = lsm.map(|o| o.inode_ino).or(resolve.map(|r| r.inode_ino)).unwrap_or(0);
        let file_flags = lsm.map(|o| o.file_flags).or(resolve.map(|r| r.file_flags)).unwrap_or(0);
        let newtask_pid = offset("task", "task_newtask", "pid")?;
        let newtask_flags = offset("task", "task_newtask", "clone_flags")?;
        let exit_pid = offset("sched", "sched_process_exit", "pid")?;
        let exec_old_pid = offset("sched", "sched_process_exec", "old_pid")?;
        let exit_group_dead = tracefs::field_offset("sched", "sched_process_exit", "group_dead")?.unwrap_or(0);
        // Before 6.16 the exit program reads signal->live instead (tag.rs); without BTF it can
        // only use the leader's exit.
        let task_offsets = match btf.as_ref().map_err(Clone::clone).and_then(btf::KernelBtf::task_offsets) {
            Ok(offsets) => Some(offsets),
            Err(err) if exit_group_dead == 0 => {
                warnings.push(format!(
                    "sched_process_exit has no group_dead field (kernel < 6.16) and the kernel's BTF is unreadable \
                     ({err}): a task's tag is removed when a thread-group leader exits, even if its other threads \
                     live on"
                ));
                None
            }
            Err(_) => None,
        };

        let approval_ttl_ns = u64::try_from(options.approval_timeout.as_nanos()).unwrap_or(u64::MAX);
        let map_pins: Vec<(&str, PathBuf)> =
            maps::PINNED.iter().map(|&name| (name, options.pin_dir.join("maps").join(name))).collect();
        let (mut guard_ino, mut guard_dev, mut read_ok) = ([0u64; maps::GUARD_FILES], [0u32; maps::GUARD_FILES], 0u32);
        let known = options.guard_files.iter().filter_map(|(path, readable)| Some((kernel_id(path)?, *readable)));
        for (i, ((ino, dev), readable)) in known.take(maps::GUARD_FILES).enumerate() {
            (guard_ino[i], guard_dev[i]) = (ino, dev);
            if readable {
                read_ok |= 1 << i;
            }
        }
        let (api_ino, api_dev) = options.api_socket.and_then(kernel_id).unwrap_or((0, 0));
        let mut loader = EbpfLoader::new();
        for (name, path) in &map_pins {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader
            .map_max_entries(maps::PROC_TAGS, sizes.proc_tags)
            .map_max_entries(maps::TASKS, sizes.tasks)
            .map_max_entries(maps::TASK_LIVE, sizes.tasks)
            .map_max_entries(maps::NET_RULES, sizes.net_rules)
            .map_max_entries(maps::PATH_RULES, sizes.path_rules)
            .map_max_entries(maps::EVENTS, sizes.events_bytes)
            .map_max_entries(maps::ALERTS, maps::DEFAULT_ALERTS_BYTES)
            .map_max_entries(maps::EXEC_PENDING, maps::DEFAULT_EXEC_PENDING)
            .map_max_entries(maps::FILE_PENDING, maps::DEFAULT_FILE_PENDING)
            .map_max_entries(maps::APPROVALS, maps::DEFAULT_APPROVALS)
            .map_max_entries(maps::USAGE_SEEN, maps::DEFAULT_USAGE_SEEN)
            .map_max_entries(maps::OPEN_SEEN, maps::DEFAULT_OPEN_SEEN)
            .map_max_entries(maps::NET_LEARNED, maps::DEFAULT_NET_LEARNED)
            .map_max_entries(maps::DNS_ORIG, maps::DEFAULT_DNS_ORIG)
            .override_global("NEWTASK_PID_OFF", &newtask_pid, true)
            .override_global("NEWTASK_FLAGS_OFF", &newtask_flags, true)
            .override_global("EXIT_PID_OFF", &exit_pid, true)
            .override_global("EXEC_OLDPID_OFF", &exec_old_pid, true)
            .override_global("EXIT_GDEAD_OFF", &exit_group_dead, true)
            .override_global("FILE_PATH_OFF", &walk_off(|w| w.file_path), true)
            .override_global("FILE_MODE_OFF", &lsm.map_or(0, |o| o.file_mode), true)
            .override_global("FILE_FLAGS_OFF", &file_flags, true)
            .override_global("BPRM_FILE_OFF", &lsm.map_or(0, |o| o.bprm_file), true)
            .override_global("SOCKET_TYPE_OFF", &lsm.map_or(0, |o| o.socket_type), true)
            .override_global("TASK_TGID_OFF", &lsm.map_or(0, |o| o.task_tgid), true)
            .override_global("DENTRY_NAME_OFF", &walk_off(|w| w.dentry_name), true)
            .override_global("DENTRY_PARENT_OFF", &walk_off(|w| w.dentry_parent), true)
            .override_global("PATH_MNT_OFF", &walk_off(|w| w.path_mnt), true)
            .override_global("PATH_DENTRY_OFF", &walk_off(|w| w.path_dentry), true)
            .override_global("VFSMNT_ROOT_OFF", &walk_off(|w| w.vfsmnt_root), true)
            .override_global("MOUNT_MNT_OFF", &walk_off(|w| w.mount_mnt), true)
            .override_global("MOUNT_PARENT_OFF", &walk_off(|w| w.mount_parent), true)
            .override_global("MOUNT_POINT_OFF", &walk_off(|w| w.mount_point), true)
            .override_global("TASK_FILES_OFF", &resolve.map_or(0, |r| r.task_files), true)
            .override_global("FILES_FDT_OFF", &resolve.map_or(0, |r| r.files_fdt), true)
            .override_global("FDT_FD_OFF", &resolve.map_or(0, |r| r.fdt_fd), true)
            .override_global("TASK_MM_OFF", &resolve.map_or(0, |r| r.task_mm), true)
            .override_global("MM_EXE_FILE_OFF", &resolve.map_or(0, |r| r.mm_exe_file), true)
            .override_global("TASK_CRED_OFF", &lsm.map_or(0, |o| o.task_cred), true)
            .override_global("SOCKET_SK_OFF", &lsm.map_or(0, |o| o.socket_sk), true)
            .override_global("SOCK_FAMILY_OFF", &lsm.map_or(0, |o| o.sock_family), true)
            .override_global("SOCK_NUM_OFF", &lsm.map_or(0, |o| o.sock_num), true)
            .override_global("FILE_INODE_OFF", &file_inode, true)
            .override_global("INODE_MODE_OFF", &lsm.map_or(0, |o| o.inode_mode), true)
            .override_global("DENTRY_SB_OFF", &lsm.map_or(0, |o| o.dentry_sb), true)
            .override_global("SB_MOUNTS_OFF", &lsm.map_or(0, |o| o.sb_mounts), true)
            .override_global("SB_MAGIC_OFF", &lsm.map_or(0, |o| o.sb_magic), true)
            .override_global("UNIX_PATH_OFF", &lsm.map_or(0, |o| o.unix_path), true)
            .override_global("UNIX_ADDR_OFF", &lsm.map_or(0, |o| o.unix_addr), true)
            .override_global("KEY_TYPE_OFF", &lsm.map_or(0, |o| o.key_type), true)
            .override_global("DENTRY_INODE_OFF", &lsm.map_or(0, |o| o.dentry_inode), true)
            .override_global("INODE_INO_OFF", &inode_ino, true)
            .override_global("INODE_GEN_OFF", &resolve.map_or(0, |r| r.inode_generation), true)
            .override_global("SB_DEV_OFF", &lsm.map_or(0, |o| o.sb_dev), true)
            .override_global("GUARD_INO", &guard_ino, true)
            .override_global("GUARD_DEV", &guard_dev, true)
            .override_global("GUARD_RO_OK", &read_ok, true)
            .override_global("API_SOCK_INO", &api_ino, true)
            .override_global("API_SOCK_DEV", &api_dev, true)
            .override_global("MOUNT_INST_OFF", &lsm.map_or(0, |o| o.mount_instance), true)
            .override_global("TASK_SIGNAL_OFF", &task_offsets.map_or(0, |o| o.task_signal), true)
            .override_global("SIGNAL_LIVE_OFF", &task_offsets.map_or(0, |o| o.signal_live), true)
            .override_global("PROC_TAGS_SIZE", &sizes.proc_tags, true)
            .override_global("APPROVAL_TTL_NS", &approval_ttl_ns, true)
            .override_global("PATH_SEED", &options.path_seed, true)
            .override_global("DAEMON_TGID", &std::process::id(), true)
            .override_global("EXEC_CAPTURE", &u32::from(lsm.is_some()), true)
            .override_global("CONNECT_HELD", &u32::from(lsm.is_some()), true)
            .override_global("KILL_MODE", &u32::from(lsm.is_none()), true)
            .load(EBPF_OBJECT)
            .map_err(|source| match source {
                aya::EbpfError::MapError(MapError::IncompatiblePinnedMap { name, property, expected, actual }) => {
                    KernelError::PinnedIncompatible {
                        dir: options.pin_dir.to_path_buf(),
                        name,
                        property,
                        expected,
                        actual,
                    }
                }
                source => KernelError::Object { source: Box::new(source) },
            })?;
        let mut links = Links::new(options.pin_dir);

        if lsm.is_some() {
            let btf = aya::Btf::from_sys_fs().map_err(|e| KernelError::LsmUnavailable { detail: e.to_string() })?;
            let missing = lsm.map(|o| o.missing_hooks.clone()).unwrap_or_default();
            let setattr_v1 = lsm.is_some_and(|o| o.setattr_dentry_arg == 0);
            for &(name, hook) in LSM_PROGRAMS {
                // inode_setattr's arguments changed in 6.3: load the program written for them.
                let name = if name == "inode_setattr" && setattr_v1 { "inode_setattr_v1" } else { name };
                if missing.contains(&hook) {
                    // Only optional hooks can be missing (btf::OPTIONAL_HOOKS); what they
                    // would see reaches another hook on that kernel (inode_setxattr for ACLs).
                    continue;
                }
                let program: &mut Lsm = program(&mut ebpf, name)?;
                let started = std::time::Instant::now();
                program.load(hook, &btf).map_err(|source| KernelError::Lsm { name, source })?;
                log_loaded(name, started, program.info());
            }
            // Attached only once all are verified (the slow part), each link swapped in for
            // the previous daemon's at once: two copies of a hook run for microseconds at most.
            for &(name, hook) in LSM_PROGRAMS {
                let name = if name == "inode_setattr" && setattr_v1 { "inode_setattr_v1" } else { name };
                if missing.contains(&hook) {
                    continue;
                }
                let program: &mut Lsm = program(&mut ebpf, name)?;
                links.attach(name, || {
                    let id = program.attach().map_err(|source| KernelError::Lsm { name, source })?;
                    let link = program.take_link(id).map_err(|source| KernelError::Lsm { name, source })?;
                    Ok(FdLink::from(link))
                })?;
            }
        }
        let opens_cached = lsm.is_none() && resolve.is_some() && OPENS_CACHED_ARCH;
        let mut tracepoints = TRACEPOINTS.to_vec();
        if lsm.is_none() {
            tracepoints.extend_from_slice(OBSERVE_TRACEPOINTS);
            tracepoints.extend(
                OPEN_EXITS
                    .iter()
                    .map(|&(plain, with_btf, event)| (if opens_cached { with_btf } else { plain }, "syscalls", event)),
            );
        }
        for &(name, category, event) in &tracepoints {
            let program: &mut TracePoint = program(&mut ebpf, name)?;
            let started = std::time::Instant::now();
            program.load().map_err(|source| KernelError::Program { name, source })?;
            log_loaded(name, started, program.info());
            links.attach(name, || {
                let id = program.attach(category, event).map_err(|source| KernelError::Program { name, source })?;
                let link = program.take_link(id).map_err(|source| KernelError::Program { name, source })?;
                FdLink::try_from(link).map_err(|source| KernelError::Link { name, source })
            })?;
        }
        let cgroup = File::open(cgroup_root)
            .map_err(|source| KernelError::Cgroup { path: cgroup_root.to_path_buf(), source })?;
        for &name in SOCK_ADDR_PROGRAMS {
            let program: &mut CgroupSockAddr = program(&mut ebpf, name)?;
            program.load().map_err(|source| KernelError::Program { name, source })?;
            // Attached through a bpf_link, which the kernel always adds as a multi-program
            // attachment (kernel/bpf/cgroup.c: cgroup_bpf_link_attach passes BPF_F_ALLOW_MULTI
            // and link_create refuses any explicit flag): ours coexists with systemd's and other
            // guards' programs and runs for every process below the root.
            links.attach(name, || {
                let id = program
                    .attach(&cgroup, CgroupAttachMode::Single)
                    .map_err(|source| KernelError::Program { name, source })?;
                let link = program.take_link(id).map_err(|source| KernelError::Program { name, source })?;
                FdLink::try_from(link).map_err(|source| KernelError::Link { name, source })
            })?;
        }
        // Hooks the previous daemon had and this one does not (another kernel mode).
        links.remove_others();
        if let Some(why) = &links.unpinnable {
            warnings.push(format!(
                "this kernel does not pin BPF links ({why}): the programs detach if the daemon dies, and the next \
                 daemon stops the tasks that ran unconfined meanwhile"
            ));
        }

        let events = take(&mut ebpf, maps::EVENTS)?;
        let alerts = take(&mut ebpf, maps::ALERTS)?;
        let tag_count: Array<MapData, u64> = take(&mut ebpf, maps::TAG_COUNT)?;
        // The roots a previous daemon tagged are still counted in the pinned map.
        let roots_tagged = tag_count.get(&1, 0).unwrap_or(0);
        let mut kernel = Kernel {
            proc_tags: take(&mut ebpf, maps::PROC_TAGS)?,
            tasks: take(&mut ebpf, maps::TASKS)?,
            task_live: take(&mut ebpf, maps::TASK_LIVE)?,
            net_rules: take(&mut ebpf, maps::NET_RULES)?,
            net_learned: take(&mut ebpf, maps::NET_LEARNED)?,
            path_rules: take(&mut ebpf, maps::PATH_RULES)?,
            drops: take(&mut ebpf, maps::EVENT_DROPS)?,
            approvals: take(&mut ebpf, maps::APPROVALS)?,
            tag_count,
            roots_tagged,
            opens_cached,
            _ebpf: ebpf,
            pin_dir: options.pin_dir.to_path_buf(),
            adopted: false,
            links_pinned: links.unpinnable.is_none(),
            path_seed: options.path_seed,
            _held_links: links.held,
            // What is attached above, and nothing more.
            enforcement: match lsm {
                Some(_) => Enforcement { network: Level::Lsm, file: Level::Lsm, exec: Level::Lsm },
                // Landlock where the kernel has it: applied by `agent-guard run` (confine/).
                None if crate::confine::landlock_abi().is_some() => {
                    Enforcement { network: Level::Cgroup, file: Level::Landlock, exec: Level::Landlock }
                }
                None => Enforcement { network: Level::Cgroup, file: Level::Kill, exec: Level::Kill },
            },
            warnings,
            sizes: sizes.clone(),
            used: MapUsage::default(),
        };
        // Entries a previous daemon wrote are in use too.
        kernel.used = MapUsage {
            tasks: kernel.tasks.keys().count(),
            path_rules: kernel.path_rules.keys().count(),
            net_rules: kernel.net_rules.keys().count(),
        };
        Ok((kernel, Rings { events, alerts }))
    }

    /// Removes every pin: once this daemon lets go of its descriptors, the programs are
    /// detached and the maps freed. Only for a deliberate stop, after the tasks are stopped.
    pub fn unpin(&self) {
        if let Err(err) = std::fs::remove_dir_all(&self.pin_dir) {
            tracing::warn!(dir = %self.pin_dir.display(), %err, "removing the pinned programs and maps");
        }
    }

    /// Task ids in the kernel's task map (open tasks, as the kernel sees them).
    pub fn task_ids(&self) -> Vec<u32> {
        self.tasks.keys().filter_map(Result::ok).collect()
    }

    /// Held threads whose question is still pending (APPROVALS).
    pub fn pending_holds(&self) -> Vec<u32> {
        self.approvals
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, a)| a.state == agent_guard_common::task::APPROVAL_PENDING)
            .map(|(tid, _)| tid)
            .collect()
    }

    /// Writes a grant's rules under `grant_id`, if they fit (a grant is never truncated). On
    /// failure, removes what it wrote.
    pub fn put_grant(&mut self, grant_id: u32, grant: &CompiledGrant) -> Result<(), KernelError> {
        let checks = [
            (maps::PATH_RULES, grant.paths.len(), self.used.path_rules, self.sizes.path_rules, "--max-path-rules"),
            (
                maps::NET_RULES,
                grant.nets.len() + usize::from(grant.listen.is_some()),
                self.used.net_rules,
                self.sizes.net_rules,
                "--max-net-rules",
            ),
        ];
        for (name, need, used, size, option) in checks {
            let free = (size as usize).saturating_sub(used);
            if need > free {
                return Err(KernelError::MapFull { name, need, free, size, option });
            }
        }
        let result = self.try_put_grant(grant_id, grant);
        if result.is_err() {
            self.remove_grant(grant_id, grant);
        }
        result
    }

    fn try_put_grant(&mut self, grant_id: u32, grant: &CompiledGrant) -> Result<(), KernelError> {
        for (hash, rule) in &grant.paths {
            self.path_rules
                .insert(&PathKey { grant_id, pad: 0, hash: *hash }, rule, 0)
                .map_err(|source| KernelError::Map { name: maps::PATH_RULES, source })?;
            // Counted as written, so a rollback after a partial write leaves the count right.
            self.used.path_rules += 1;
        }
        for (len, addr, ports) in &grant.nets {
            self.net_rules
                .insert(&net_key(grant_id, *len, addr), ports, 0)
                .map_err(|source| KernelError::Map { name: maps::NET_RULES, source })?;
            self.used.net_rules += 1;
        }
        if let Some(ports) = &grant.listen {
            self.net_rules
                .insert(&listen_key(grant_id), ports, 0)
                .map_err(|source| KernelError::Map { name: maps::NET_RULES, source })?;
            self.used.net_rules += 1;
        }
        Ok(())
    }

    pub fn remove_grant(&mut self, grant_id: u32, grant: &CompiledGrant) {
        for (hash, _) in &grant.paths {
            if self.path_rules.remove(&PathKey { grant_id, pad: 0, hash: *hash }).is_ok() {
                self.used.path_rules = self.used.path_rules.saturating_sub(1);
            }
        }
        for (len, addr, _) in &grant.nets {
            if self.net_rules.remove(&net_key(grant_id, *len, addr)).is_ok() {
                self.used.net_rules = self.used.net_rules.saturating_sub(1);
            }
        }
        if grant.listen.is_some() && self.net_rules.remove(&listen_key(grant_id)).is_ok() {
            self.used.net_rules = self.used.net_rules.saturating_sub(1);
        }
        self.forget_learned(grant_id);
    }

    /// Replaces grant `grant_id`'s rules `old` by `new` (an access request widening it, or
    /// its end narrowing it), entry by entry: new and changed entries first, then the stale
    /// ones removed, so no lookup in between sees less than the narrower of the two. Approved
    /// bits of `approve --for` allowances in force are kept. All or nothing: on a failure the
    /// old rules are written back.
    pub fn replace_grant(
        &mut self,
        grant_id: u32,
        old: &CompiledGrant,
        new: &CompiledGrant,
    ) -> Result<(), KernelError> {
        let old_paths: PathEntries = old.paths.iter().copied().collect();
        let new_paths: PathEntries = new.paths.iter().copied().collect();
        let old_nets: NetEntries = old.nets.iter().map(|(l, a, p)| ((*l, *a), *p)).collect();
        let new_nets: NetEntries = new.nets.iter().map(|(l, a, p)| ((*l, *a), *p)).collect();
        let added_paths = new_paths.keys().filter(|h| !old_paths.contains_key(h)).count();
        let added_nets = new_nets.keys().filter(|k| !old_nets.contains_key(k)).count()
            + usize::from(new.listen.is_some() && old.listen.is_none());
        let checks = [
            (maps::PATH_RULES, added_paths, self.used.path_rules, self.sizes.path_rules, "--max-path-rules"),
            (maps::NET_RULES, added_nets, self.used.net_rules, self.sizes.net_rules, "--max-net-rules"),
        ];
        for (name, need, used, size, option) in checks {
            let free = (size as usize).saturating_sub(used);
            if need > free {
                return Err(KernelError::MapFull { name, need, free, size, option });
            }
        }
        if let Err(err) = self.write_rules(grant_id, &new_paths, &old_paths, &new_nets, &old_nets, new.listen.as_ref())
        {
            // Back to the old rules: what `new` added goes, what it changed is put back.
            let _ = self.write_rules(grant_id, &old_paths, &new_paths, &old_nets, &new_nets, old.listen.as_ref());
            return Err(err);
        }
        Ok(())
    }

    /// Writes `paths` and `nets` (and the listen ports) under `grant_id`, then removes the
    /// entries of `stale_paths` and `stale_nets` that `paths` and `nets` do not have.
    fn write_rules(
        &mut self,
        grant_id: u32,
        paths: &PathEntries,
        stale_paths: &PathEntries,
        nets: &NetEntries,
        stale_nets: &NetEntries,
        listen: Option<&NetPorts>,
    ) -> Result<(), KernelError> {
        let approved_mask = agent_guard_common::path::ACCESS_MASK << agent_guard_common::path::APPROVED_SHIFT;
        for (hash, rule) in paths {
            let key = PathKey { grant_id, pad: 0, hash: *hash };
            let current = self.path_rules.get(&key, 0).ok();
            let mut rule = *rule;
            rule.exact |= current.map_or(0, |c| c.exact & approved_mask);
            if current == Some(rule) {
                continue;
            }
            self.path_rules
                .insert(&key, &rule, 0)
                .map_err(|source| KernelError::Map { name: maps::PATH_RULES, source })?;
            if current.is_none() {
                self.used.path_rules += 1;
            }
        }
        for ((len, addr), ports) in nets {
            let key = net_key(grant_id, *len, addr);
            let existed = self.net_rules.get(&key, 0).is_ok();
            self.net_rules
                .insert(&key, ports, 0)
                .map_err(|source| KernelError::Map { name: maps::NET_RULES, source })?;
            if !existed {
                self.used.net_rules += 1;
            }
        }
        let listen_existed = self.net_rules.get(&listen_key(grant_id), 0).is_ok();
        match listen {
            Some(ports) => {
                self.net_rules
                    .insert(&listen_key(grant_id), ports, 0)
                    .map_err(|source| KernelError::Map { name: maps::NET_RULES, source })?;
                if !listen_existed {
                    self.used.net_rules += 1;
                }
            }
            None if listen_existed && self.net_rules.remove(&listen_key(grant_id)).is_ok() => {
                self.used.net_rules = self.used.net_rules.saturating_sub(1);
            }
            None => {}
        }
        for hash in stale_paths.keys().filter(|h| !paths.contains_key(h)) {
            let key = PathKey { grant_id, pad: 0, hash: *hash };
            let approved = self.path_rules.get(&key, 0).map_or(0, |c| c.exact & approved_mask);
            if approved != 0 {
                let rule = PathRule { exact: approved, ..PathRule::default() };
                let _ = self.path_rules.insert(&key, &rule, 0);
            } else if self.path_rules.remove(&key).is_ok() {
                self.used.path_rules = self.used.path_rules.saturating_sub(1);
            }
        }
        for (len, addr) in stale_nets.keys().filter(|k| !nets.contains_key(k)) {
            if self.net_rules.remove(&net_key(grant_id, *len, addr)).is_ok() {
                self.used.net_rules = self.used.net_rules.saturating_sub(1);
            }
        }
        Ok(())
    }

    /// Creates a task's entry and its live count (1: the process about to be tagged).
    pub fn put_task(&mut self, task_id: u32, entry: &TaskEntry) -> Result<(), KernelError> {
        if self.tasks.get(&task_id, 0).is_err() && self.used.tasks >= self.sizes.tasks as usize {
            return Err(KernelError::MapFull {
                name: maps::TASKS,
                need: 1,
                free: 0,
                size: self.sizes.tasks,
                option: "--max-tasks",
            });
        }
        self.task_live.insert(&task_id, &1, 0).map_err(|source| KernelError::Map { name: maps::TASK_LIVE, source })?;
        if let Err(source) = self.tasks.insert(&task_id, entry, 0) {
            let _ = self.task_live.remove(&task_id);
            return Err(KernelError::Map { name: maps::TASKS, source });
        }
        self.used.tasks += 1;
        Ok(())
    }

    fn write_task(&mut self, task_id: u32, entry: &TaskEntry) -> Result<(), KernelError> {
        self.tasks.insert(&task_id, entry, BPF_EXIST).map_err(|source| KernelError::Map { name: maps::TASKS, source })
    }

    pub fn remove_task(&mut self, task_id: u32) {
        if self.tasks.remove(&task_id).is_ok() {
            self.used.tasks = self.used.tasks.saturating_sub(1);
        }
        let _ = self.task_live.remove(&task_id);
    }

    /// Marks a task's grant revoked: from now on the kernel allows it nothing.
    pub fn revoke_task(&mut self, task_id: u32) -> Result<(), KernelError> {
        self.update_task(task_id, |entry| entry.state = STATE_REVOKED)
    }

    /// Sets a task's expiry (`CLOCK_BOOTTIME` ns), which the programs check themselves.
    pub fn set_expiry(&mut self, task_id: u32, expires_ns: u64) -> Result<(), KernelError> {
        self.update_task(task_id, |entry| entry.expires_ns = expires_ns)
    }

    /// Sends a task's DNS to its resolver (`TaskEntry::dns_port`; 0: judged like any other
    /// destination).
    pub fn set_dns_port(&mut self, task_id: u32, dns_port: u32) -> Result<(), KernelError> {
        self.update_task(task_id, |entry| entry.dns_port = dns_port)
    }

    /// Stops task `task_id`'s opens being Landlock's alone (`CONFINE_OPENS_CACHED`), for a
    /// daemon whose exit programs cannot judge them that way: its entry programs judge them
    /// again.
    pub fn stop_opens_cached(&mut self, task_id: u32) -> Result<(), KernelError> {
        self.update_task(task_id, |entry| entry.confine &= !agent_guard_common::task::CONFINE_OPENS_CACHED)
    }

    /// Reads a task's entry, changes it and writes it back.
    fn update_task(&mut self, task_id: u32, change: impl FnOnce(&mut TaskEntry)) -> Result<(), KernelError> {
        let mut entry = self.tasks.get(&task_id, 0).map_err(|source| KernelError::Map { name: maps::TASKS, source })?;
        change(&mut entry);
        self.write_task(task_id, &entry)
    }

    pub fn live_processes(&self, task_id: u32) -> u64 {
        self.task_live.get(&task_id, 0).unwrap_or(0)
    }

    /// Tags `tgid` with `task_id`. A process already tagged (moved into a sub-task) keeps its
    /// exec id and lineage; a new one becomes a root: exec id from now, no parent.
    pub fn tag(&mut self, tgid: u32, task_id: u32) -> Result<(), KernelError> {
        let tag = if let Ok(existing) = self.proc_tags.get(&tgid, 0) {
            ProcTag { task_id, ..existing }
        } else {
            // A new entry: the daemon's share of the tag count grows by one (the kernel
            // takes it off again when the process exits), before the entry exists, so
            // the fork check never sees fewer entries than there are.
            self.roots_tagged += 1;
            let _ = self.tag_count.set(1, &self.roots_tagged, 0);
            ProcTag { task_id, parent_tgid: 0, exec_ns: crate::daemon::clock::boot_ns_now(), parent_exec_ns: 0 }
        };
        self.proc_tags.insert(&tgid, &tag, 0).map_err(|source| KernelError::Map { name: maps::PROC_TAGS, source })
    }

    pub fn task_of(&self, tgid: u32) -> Option<u32> {
        self.proc_tags.get(&tgid, 0).ok().map(|tag| tag.task_id)
    }

    /// The tag of process `tgid` (its task, and the exec ids of its image and its parent's).
    pub fn proc_tag(&self, tgid: u32) -> Option<agent_guard_common::task::ProcTag> {
        self.proc_tags.get(&tgid, 0).ok()
    }

    /// The `PATH_RULES` entry of (`grant_id`, `hash`), approvals included.
    pub fn path_rule(&self, grant_id: u32, hash: u64) -> Option<PathRule> {
        self.path_rules.get(&PathKey { grant_id, pad: 0, hash }, 0).ok()
    }

    /// Tagged processes of a task (a scan of `PROC_TAGS`).
    pub fn processes_of(&self, task_id: u32) -> Vec<u32> {
        self.proc_tags
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, tag)| tag.task_id == task_id)
            .map(|(tgid, _)| tgid)
            .collect()
    }

    /// Records a human's decision on the action held for thread `tid`.
    pub fn decide_held(&mut self, tid: u32, state: u32, access: u32, hash: u64) -> Result<(), KernelError> {
        self.approvals
            .insert(&tid, &Approval { state, access, hash, deadline_ns: u64::MAX }, 0)
            .map_err(|source| KernelError::Map { name: maps::APPROVALS, source })
    }

    /// Refuses the pending question of held thread `tid` (keeping what it asked about, which
    /// the kernel matches when the syscall restarts).
    pub fn refuse_held(&mut self, tid: u32) -> Result<(), KernelError> {
        let approval =
            self.approvals.get(&tid, 0).map_err(|source| KernelError::Map { name: maps::APPROVALS, source })?;
        self.decide_held(tid, agent_guard_common::task::APPROVAL_REFUSED, approval.access, approval.hash)
    }

    /// Adds `bits` to the exact-path rule of `hash` in grant `grant_id`; returns the rule it
    /// replaced (None: there was none), for `restore_path_rule`.
    pub fn add_path_bits(&mut self, grant_id: u32, hash: u64, bits: u32) -> Result<Option<PathRule>, KernelError> {
        let key = PathKey { grant_id, pad: 0, hash };
        let previous = self.path_rules.get(&key, 0).ok();
        let mut rule = previous.unwrap_or_default();
        rule.exact |= bits;
        self.path_rules.insert(&key, &rule, 0).map_err(|source| KernelError::Map { name: maps::PATH_RULES, source })?;
        if previous.is_none() {
            self.used.path_rules += 1;
        }
        Ok(previous)
    }

    /// Clears `bits` of the exact-path rule of `hash` in grant `grant_id` (an `approve --for`
    /// allowance ending); an entry left empty is removed.
    pub fn clear_path_bits(&mut self, grant_id: u32, hash: u64, bits: u32) {
        let key = PathKey { grant_id, pad: 0, hash };
        let Ok(mut rule) = self.path_rules.get(&key, 0) else { return };
        rule.exact &= !bits;
        if rule == PathRule::default() {
            if self.path_rules.remove(&key).is_ok() {
                self.used.path_rules = self.used.path_rules.saturating_sub(1);
            }
        } else {
            let _ = self.path_rules.insert(&key, &rule, 0);
        }
    }

    pub fn restore_path_rule(&mut self, grant_id: u32, hash: u64, previous: Option<PathRule>) {
        let key = PathKey { grant_id, pad: 0, hash };
        match previous {
            Some(rule) => {
                let _ = self.path_rules.insert(&key, &rule, 0);
            }
            None => {
                if self.path_rules.remove(&key).is_ok() {
                    self.used.path_rules = self.used.path_rules.saturating_sub(1);
                }
            }
        }
    }

    /// Events the kernel could not put on the ring buffer, summed over CPUs.
    pub fn dropped_events(&self) -> u64 {
        self.drops.get(&0, 0).map_or(0, |values| values.iter().sum())
    }
}

/// A grant's `PATH_RULES` entries by hash, and its `NET_RULES` entries by prefix.
type PathEntries = std::collections::HashMap<u64, PathRule>;
type NetEntries = std::collections::HashMap<(u8, [u8; 16]), NetPorts>;

fn net_key(grant_id: u32, len: u8, addr: &[u8; 16]) -> Key<NetKey> {
    Key::new(NET_KEY_BITS - 128 + u32::from(len), NetKey { grant_be: grant_id.to_be_bytes(), addr: *addr })
}

/// The `NET_RULES` key of a grant's `network.listen` ports: the grant id with `LISTEN_GRANT_BIT`,
/// any address (`lsm_socket.rs` looks it up with the all-zero address).
fn listen_key(grant_id: u32) -> Key<NetKey> {
    Key::new(NET_KEY_BITS - 128, NetKey { grant_be: (grant_id | LISTEN_GRANT_BIT).to_be_bytes(), addr: [0; 16] })
}

/// How long the verifier took over a program and how many instructions it walked: the figure
/// that approaches the kernel's 1M budget as a hook grows.
fn log_loaded(
    name: &str,
    started: std::time::Instant,
    info: Result<aya::programs::ProgramInfo, aya::programs::ProgramError>,
) {
    let verified = info.ok().and_then(|info| info.verified_instruction_count());
    tracing::info!(program = name, ms = started.elapsed().as_millis() as u64, verified, "BPF program loaded");
}
