//! Load-time constants. The daemon reads tracepoint field offsets from
//! /sys/kernel/tracing/events/<cat>/<name>/format and overrides these globals
//! (`EbpfLoader::override_global`): Rust eBPF has no CO-RE for tracepoint records, and the
//! sched records changed layout across kernels (6.18 moved comm to __`data_loc`).

/// `task/task_newtask`: `pid` (the child) and `clone_flags`.
#[unsafe(no_mangle)]
static NEWTASK_PID_OFF: u32 = 8;
#[unsafe(no_mangle)]
static NEWTASK_FLAGS_OFF: u32 = 32;
/// `sched/sched_process_exit`: `pid` (the exiting thread) and `group_dead`
/// (0 when the kernel's record has no such field: before Linux 6.16).
#[unsafe(no_mangle)]
static EXIT_PID_OFF: u32 = 24;
#[unsafe(no_mangle)]
static EXIT_GDEAD_OFF: u32 = 32;

/// `sched/sched_process_exec`: `old_pid` (the thread that called execve).
#[unsafe(no_mangle)]
static EXEC_OLDPID_OFF: u32 = 16;

/// BTF offsets for the LSM hooks (include/linux/fs.h, include/linux/binfmts.h,
/// include/linux/net.h), read from /sys/kernel/btf/vmlinux by the daemon.
#[unsafe(no_mangle)]
static FILE_PATH_OFF: u32 = 0;
#[unsafe(no_mangle)]
static FILE_MODE_OFF: u32 = 0;
#[unsafe(no_mangle)]
static FILE_FLAGS_OFF: u32 = 0;
#[unsafe(no_mangle)]
static BPRM_FILE_OFF: u32 = 0;
#[unsafe(no_mangle)]
static SOCKET_TYPE_OFF: u32 = 0;
/// struct `task_struct`: tgid (include/linux/sched.h).
#[unsafe(no_mangle)]
static TASK_TGID_OFF: u32 = 0;
/// The daemon's own tgid, which tagged processes may not signal or trace.
#[unsafe(no_mangle)]
static DAEMON_TGID: u32 = 0;
/// struct dentry: `d_name.name` and `d_parent` (include/linux/dcache.h); struct path: mnt and
/// dentry (include/linux/path.h); struct vfsmount: `mnt_root`; struct mount (fs/mount.h): the
/// embedded vfsmount, `mnt_parent` and `mnt_mountpoint`.
#[unsafe(no_mangle)]
static DENTRY_NAME_OFF: u32 = 0;
#[unsafe(no_mangle)]
static DENTRY_PARENT_OFF: u32 = 0;
#[unsafe(no_mangle)]
static PATH_MNT_OFF: u32 = 0;
#[unsafe(no_mangle)]
static PATH_DENTRY_OFF: u32 = 0;
#[unsafe(no_mangle)]
static VFSMNT_ROOT_OFF: u32 = 0;
#[unsafe(no_mangle)]
static MOUNT_MNT_OFF: u32 = 0;
#[unsafe(no_mangle)]
static MOUNT_PARENT_OFF: u32 = 0;
#[unsafe(no_mangle)]
static MOUNT_POINT_OFF: u32 = 0;
/// More BTF offsets: `task_struct.cred` and .signal, `signal_struct.live`; socket.sk and
/// `sock_common`'s `skc_family` and `skc_num`; `file.f_inode`, `inode.i_mode`; `dentry.d_sb`,
/// `super_block.s_mounts`, `mount.mnt_instance`. `TASK_SIGNAL_OFF` is 0 when the kernel has no BTF.
#[unsafe(no_mangle)]
static TASK_CRED_OFF: u32 = 0;
#[unsafe(no_mangle)]
static TASK_SIGNAL_OFF: u32 = 0;
#[unsafe(no_mangle)]
static SIGNAL_LIVE_OFF: u32 = 0;
#[unsafe(no_mangle)]
static SOCKET_SK_OFF: u32 = 0;
#[unsafe(no_mangle)]
static SOCK_FAMILY_OFF: u32 = 0;
#[unsafe(no_mangle)]
static SOCK_NUM_OFF: u32 = 0;
#[unsafe(no_mangle)]
static FILE_INODE_OFF: u32 = 0;
#[unsafe(no_mangle)]
static INODE_MODE_OFF: u32 = 0;
#[unsafe(no_mangle)]
static DENTRY_SB_OFF: u32 = 0;
/// key.type (include/linux/key.h), for `lsm_system.rs` `key_alloc`.
#[unsafe(no_mangle)]
static KEY_TYPE_OFF: u32 = 0;
/// `unix_sock.path` and `unix_sock.addr` (`include/net/af_unix.h`), for `lsm_unix.rs`.
#[unsafe(no_mangle)]
static UNIX_PATH_OFF: u32 = 0;
#[unsafe(no_mangle)]
static UNIX_ADDR_OFF: u32 = 0;
/// `dentry.d_inode`, `inode.i_ino` and `super_block.s_dev`, to know the guard's files by inode.
#[unsafe(no_mangle)]
static DENTRY_INODE_OFF: u32 = 0;
#[unsafe(no_mangle)]
static INODE_INO_OFF: u32 = 0;
#[unsafe(no_mangle)]
static SB_DEV_OFF: u32 = 0;
/// `inode.i_generation` (include/linux/fs.h), for `OpenSeenKey`.
#[unsafe(no_mangle)]
static INODE_GEN_OFF: u32 = 0;
/// The daemon's files and directories (state, policies, audit store, socket, config, its own
/// executable), by (inode, kernel `dev_t)`: no tagged process may open or change them or
/// anything below them (`guard_fs.rs`). Unused entries are 0.
#[unsafe(no_mangle)]
static GUARD_INO: [u64; GUARD_FILES] = [0; GUARD_FILES];
#[unsafe(no_mangle)]
static GUARD_DEV: [u32; GUARD_FILES] = [0; GUARD_FILES];
/// Bit i: entry i is only protected from changes (the daemon's executable, which is also the
/// CLI that tasks run to declare steps and open sub-tasks).
#[unsafe(no_mangle)]
static GUARD_RO_OK: u32 = 0;
/// The API socket's (inode, dev): every task may connect to it (`lsm_unix.rs`).
#[unsafe(no_mangle)]
static API_SOCK_INO: u64 = 0;
#[unsafe(no_mangle)]
static API_SOCK_DEV: u32 = 0;
/// `super_block.s_magic` (include/linux/fs.h), for the guard's own filesystems (`guard_fs.rs`).
#[unsafe(no_mangle)]
static SB_MAGIC_OFF: u32 = 0;
#[unsafe(no_mangle)]
static SB_MOUNTS_OFF: u32 = 0;
#[unsafe(no_mangle)]
static MOUNT_INST_OFF: u32 = 0;
/// `PROC_TAGS`' size, for the fork refusal (`lsm_system.rs` `task_alloc`).
#[unsafe(no_mangle)]
static PROC_TAGS_SIZE: u32 = 0;
/// The secret starting point of the path hash (`agent_guard_common::path::fnv1a_seeded`).
#[unsafe(no_mangle)]
static PATH_SEED: u64 = 0;
/// How long a held action waits for a human before the kernel refuses it (hold.rs), in ns.
#[unsafe(no_mangle)]
static APPROVAL_TTL_NS: u64 = 0;
/// 1 when BPF LSM is not available and out-of-scope opens and execs of tasks in enforce mode
/// are answered by killing the process (the `kill` level).
#[unsafe(no_mangle)]
static KILL_MODE: u32 = 0;
/// 1 when the LSM hooks decide execs: the execve tracepoints then only capture argv for them.
#[unsafe(no_mangle)]
static EXEC_CAPTURE: u32 = 0;
/// 1 when `socket_connect` (BPF LSM) holds connects an `ask` rule names: the cgroup connect
/// programs, which the kernel runs after it, then let such a connect through (net.rs).
#[unsafe(no_mangle)]
static CONNECT_HELD: u32 = 0;

/// The `landlock` level's resolution of an opened descriptor and of the executable (file.rs,
/// exec.rs): `task_struct.files`, `files_struct.fdt`, `fdtable.fd`, `task_struct.mm`,
/// `mm_struct.exe_file` (`include/linux/fdtable.h`, `include/linux/mm_types.h`). 0: no BTF, the
/// spelled path decides.
#[unsafe(no_mangle)]
static TASK_FILES_OFF: u32 = 0;
#[unsafe(no_mangle)]
static FILES_FDT_OFF: u32 = 0;
#[unsafe(no_mangle)]
static FDT_FD_OFF: u32 = 0;
#[unsafe(no_mangle)]
static TASK_MM_OFF: u32 = 0;
#[unsafe(no_mangle)]
static MM_EXE_FILE_OFF: u32 = 0;

#[inline(always)]
fn load(value: &'static u32) -> u32 {
    // SAFETY: reading a global the loader may have rewritten; volatile keeps the compiler
    // from folding the placeholder value in.
    unsafe { core::ptr::read_volatile(value) }
}

pub fn task_files_off() -> usize {
    load(&TASK_FILES_OFF) as usize
}
pub fn files_fdt_off() -> usize {
    load(&FILES_FDT_OFF) as usize
}
pub fn fdt_fd_off() -> usize {
    load(&FDT_FD_OFF) as usize
}
pub fn task_mm_off() -> usize {
    load(&TASK_MM_OFF) as usize
}
pub fn mm_exe_file_off() -> usize {
    load(&MM_EXE_FILE_OFF) as usize
}
pub fn newtask_pid_off() -> usize {
    load(&NEWTASK_PID_OFF) as usize
}
pub fn newtask_flags_off() -> usize {
    load(&NEWTASK_FLAGS_OFF) as usize
}
pub fn exit_pid_off() -> usize {
    load(&EXIT_PID_OFF) as usize
}
pub fn exit_group_dead_off() -> usize {
    load(&EXIT_GDEAD_OFF) as usize
}
pub fn exec_old_pid_off() -> usize {
    load(&EXEC_OLDPID_OFF) as usize
}
pub fn file_path_off() -> usize {
    load(&FILE_PATH_OFF) as usize
}
pub fn file_mode_off() -> usize {
    load(&FILE_MODE_OFF) as usize
}
pub fn bprm_file_off() -> usize {
    load(&BPRM_FILE_OFF) as usize
}
pub fn socket_type_off() -> usize {
    load(&SOCKET_TYPE_OFF) as usize
}
pub fn exec_capture() -> bool {
    load(&EXEC_CAPTURE) != 0
}
pub fn connect_held() -> bool {
    load(&CONNECT_HELD) != 0
}
pub fn file_flags_off() -> usize {
    load(&FILE_FLAGS_OFF) as usize
}
pub fn task_tgid_off() -> usize {
    load(&TASK_TGID_OFF) as usize
}
pub fn daemon_tgid() -> u32 {
    load(&DAEMON_TGID)
}
pub fn dentry_name_off() -> usize {
    load(&DENTRY_NAME_OFF) as usize
}
pub fn dentry_parent_off() -> usize {
    load(&DENTRY_PARENT_OFF) as usize
}
pub fn path_mnt_off() -> usize {
    load(&PATH_MNT_OFF) as usize
}
pub fn path_dentry_off() -> usize {
    load(&PATH_DENTRY_OFF) as usize
}
pub fn vfsmnt_root_off() -> usize {
    load(&VFSMNT_ROOT_OFF) as usize
}
pub fn mount_mnt_off() -> usize {
    load(&MOUNT_MNT_OFF) as usize
}
pub fn mount_parent_off() -> usize {
    load(&MOUNT_PARENT_OFF) as usize
}
pub fn mount_point_off() -> usize {
    load(&MOUNT_POINT_OFF) as usize
}
pub fn kill_mode() -> bool {
    load(&KILL_MODE) != 0
}
pub fn task_cred_off() -> usize {
    load(&TASK_CRED_OFF) as usize
}
pub fn task_signal_off() -> usize {
    load(&TASK_SIGNAL_OFF) as usize
}
pub fn signal_live_off() -> usize {
    load(&SIGNAL_LIVE_OFF) as usize
}
pub fn socket_sk_off() -> usize {
    load(&SOCKET_SK_OFF) as usize
}
pub fn sock_family_off() -> usize {
    load(&SOCK_FAMILY_OFF) as usize
}
pub fn sock_num_off() -> usize {
    load(&SOCK_NUM_OFF) as usize
}
pub fn file_inode_off() -> usize {
    load(&FILE_INODE_OFF) as usize
}
pub fn inode_mode_off() -> usize {
    load(&INODE_MODE_OFF) as usize
}
pub fn dentry_sb_off() -> usize {
    load(&DENTRY_SB_OFF) as usize
}
pub fn key_type_off() -> usize {
    load(&KEY_TYPE_OFF) as usize
}
pub fn unix_path_off() -> usize {
    load(&UNIX_PATH_OFF) as usize
}
pub fn unix_addr_off() -> usize {
    load(&UNIX_ADDR_OFF) as usize
}
pub use agent_guard_common::maps::GUARD_FILES;
pub fn dentry_inode_off() -> usize {
    load(&DENTRY_INODE_OFF) as usize
}
pub fn inode_ino_off() -> usize {
    load(&INODE_INO_OFF) as usize
}
pub fn inode_gen_off() -> usize {
    load(&INODE_GEN_OFF) as usize
}
pub fn sb_dev_off() -> usize {
    load(&SB_DEV_OFF) as usize
}
/// Entry `i` of the guard's files: (inode, dev).
#[inline(always)]
pub fn guard_file(i: usize) -> (u64, u32) {
    // SAFETY: as in load(); `i` is a constant below GUARD_FILES at every call site.
    unsafe { (core::ptr::read_volatile(&raw const GUARD_INO[i]), core::ptr::read_volatile(&raw const GUARD_DEV[i])) }
}
pub fn guard_read_ok() -> u32 {
    load(&GUARD_RO_OK)
}
pub fn api_socket() -> (u64, u32) {
    // SAFETY: as in load().
    unsafe { (core::ptr::read_volatile(&raw const API_SOCK_INO), core::ptr::read_volatile(&raw const API_SOCK_DEV)) }
}
pub fn sb_magic_off() -> usize {
    load(&SB_MAGIC_OFF) as usize
}
pub fn sb_mounts_off() -> usize {
    load(&SB_MOUNTS_OFF) as usize
}
pub fn mount_instance_off() -> usize {
    load(&MOUNT_INST_OFF) as usize
}
pub fn path_seed() -> u64 {
    // SAFETY: as in load().
    unsafe { core::ptr::read_volatile(&raw const PATH_SEED) }
}
pub fn approval_ttl_ns() -> u64 {
    // SAFETY: as in load().
    unsafe { core::ptr::read_volatile(&raw const APPROVAL_TTL_NS) }
}
pub fn proc_tags_size() -> u32 {
    load(&PROC_TAGS_SIZE)
}
