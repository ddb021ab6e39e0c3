//! BPF LSM hooks for changes to the file tree (`CONFIG_SECURITY_PATH` hooks, called from
//! fs/namei.c and fs/open.c with the parent directory's `struct path` and the new or victim
//! dentry). Every change needs `write` on the path it touches:
//! creating a file (`path_mknod`, also for `O_CREAT`: `may_o_create`), mkdir, rmdir, unlink,
//! symlink, rename (both the old and the new name), truncate, chmod, chown.
//!
//! Attribute changes the path hooks do not see need `write` too: extended attributes and POSIX
//! ACLs (`inode_setxattr`, `inode_removexattr`, and `inode_set_acl` / `inode_remove_acl` from 6.2),
//! and `inode_setattr` (times; mode, owner and size pass the path hooks first). These hooks get
//! a bare dentry: its path is built on the first mount of its superblock (`super_block.s_mounts`),
//! which is the path unless the filesystem is also bind-mounted elsewhere.
//!
//! The guard's filesystems (bpffs, cgroupfs) take no change from a tagged process whatever
//! the grant (`guard_fs.rs`).
//!
//! Device nodes: `path_mknod` of a block or character device is refused (`ESCAPE_DEVICE`) whatever
//! the grant, so a write grant never becomes raw access to a disk or to memory.
//!
//! A rename's source must not be, or hold, anything a deny, ask or flag rule names (`PathRule::below`
//! marks the directories above such rules): moving `/repo/.git` away from a deny on
//! `/repo/.git/hooks/**`, or a denied file out of its name, would leave the rule naming
//! nothing. Refused as out of scope.
//!
//! Hard links are refused for tagged processes in enforce mode: `path_link` gives the source as a
//! bare dentry, which `bpf_d_path` cannot resolve, so a link could otherwise give a denied file a
//! name inside the granted tree.
//!
//! Paths are built by walking the dentry and mount tree (`dentry_path.rs)`: `bpf_d_path` is not
//! allowed in these hooks.
//!
//! Fail-open/closed: as in lsm.rs; a path that cannot be built (too long, too deep, unreadable)
//! is refused in enforce mode. An `ask` rule on `write` is not held here (the rule is for
//! opens): a tree change it covers is refused as out of scope. A `flag` rule lets the change
//! through and reports it.

use agent_guard_common::{
    event::{
        ACTION_ALLOWED, ACTION_BLOCKED, ESCAPE_DEVICE, FILE_OP_CHMOD, FILE_OP_CHOWN, FILE_OP_CREATE, FILE_OP_LINK,
        FILE_OP_MKDIR, FILE_OP_RENAME_FROM, FILE_OP_RENAME_TO, FILE_OP_RMDIR, FILE_OP_SETATTR, FILE_OP_SYMLINK,
        FILE_OP_TRUNCATE, FILE_OP_UNLINK, FILE_OP_XATTR, KIND_FILE, PATH_TRUNCATED, REASON_NONE, VERDICT_FLAGGED,
        VERDICT_OUT_OF_SCOPE, VERDICT_RULE_DENY,
    },
    path::{ACCESS_WRITE, Decision, RESTRICTED_BITS, decide as decide_bits},
    task::MODE_AUDIT,
};
use aya_ebpf::{bindings::path, macros::lsm, programs::LsmContext};

use crate::{
    dentry_path, emit,
    escape::refuse,
    guard_fs,
    lsm::{fail_closed, verdict},
    maps::SCRATCH,
    path_match::match_path,
    task::{CurrentTask, current_task},
};

const AT_FDCWD: i32 = -100;

macro_rules! dir_entry_hook {
    ($name:ident, $hook:literal, $op:expr) => {
        #[lsm(hook = $hook)]
        pub fn $name(ctx: LsmContext) -> i32 {
            let Some(task) = current_task() else { return 0 };
            verdict(change_in(&task, ctx.arg(0), ctx.arg(1), $op))
        }
    };
}

macro_rules! whole_path_hook {
    ($name:ident, $hook:literal, $op:expr) => {
        #[lsm(hook = $hook)]
        pub fn $name(ctx: LsmContext) -> i32 {
            let Some(task) = current_task() else { return 0 };
            verdict(change_at(&task, ctx.arg(0), $op))
        }
    };
}

/// include/uapi/linux/stat.h
const S_IFMT: u32 = 0o170_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFBLK: u32 = 0o060_000;

/// `path_mknod(const` struct path *dir, struct dentry *dentry, `umode_t` mode, unsigned int dev)
#[lsm(hook = "path_mknod")]
pub fn path_mknod(ctx: LsmContext) -> i32 {
    let Some(task) = current_task() else { return 0 };
    let mode = ctx.arg::<u32>(2) & 0xffff;
    if is_device(mode) {
        return verdict(refuse(&task, ESCAPE_DEVICE, 0, u64::from(mode)));
    }
    verdict(change_in(&task, ctx.arg(0), ctx.arg(1), FILE_OP_CREATE))
}

/// Whether an inode mode is a block or character device.
#[inline(always)]
pub fn is_device(mode: u32) -> bool {
    matches!(mode & S_IFMT, S_IFCHR | S_IFBLK)
}

macro_rules! dentry_hook {
    ($name:ident, $hook:literal) => {
        #[lsm(hook = $hook)]
        pub fn $name(ctx: LsmContext) -> i32 {
            let Some(task) = current_task() else { return 0 };
            verdict(change_of_dentry(&task, ctx.arg(1), FILE_OP_XATTR))
        }
    };
}

// (idmap or mnt_userns, dentry, ...): the dentry is the second argument on every kernel.
dentry_hook!(inode_setxattr, "inode_setxattr");
dentry_hook!(inode_removexattr, "inode_removexattr");
dentry_hook!(inode_set_acl, "inode_set_acl");
dentry_hook!(inode_remove_acl, "inode_remove_acl");

/// `inode_setattr(struct` `mnt_idmap` *idmap, struct dentry *dentry, struct iattr *attr), from
/// Linux 6.3 on.
#[lsm(hook = "inode_setattr")]
pub fn inode_setattr(ctx: LsmContext) -> i32 {
    let Some(task) = current_task() else { return 0 };
    verdict(change_of_dentry(&task, ctx.arg(1), FILE_OP_SETATTR))
}

/// `inode_setattr(struct` dentry *dentry, struct iattr *attr), before Linux 6.3. The daemon
/// loads whichever of the two the kernel's BTF describes (a ctx argument cannot be chosen at
/// run time: the verifier refuses ctx loads at a variable offset).
#[lsm(hook = "inode_setattr")]
pub fn inode_setattr_v1(ctx: LsmContext) -> i32 {
    let Some(task) = current_task() else { return 0 };
    verdict(change_of_dentry(&task, ctx.arg(0), FILE_OP_SETATTR))
}
dir_entry_hook!(path_mkdir, "path_mkdir", FILE_OP_MKDIR);
dir_entry_hook!(path_rmdir, "path_rmdir", FILE_OP_RMDIR);
dir_entry_hook!(path_unlink, "path_unlink", FILE_OP_UNLINK);
dir_entry_hook!(path_symlink, "path_symlink", FILE_OP_SYMLINK);
whole_path_hook!(path_truncate, "path_truncate", FILE_OP_TRUNCATE);
whole_path_hook!(path_chmod, "path_chmod", FILE_OP_CHMOD);
whole_path_hook!(path_chown, "path_chown", FILE_OP_CHOWN);

/// `path_rename(old_dir`, `old_dentry`, `new_dir`, `new_dentry`, flags): both names need `write`.
#[lsm(hook = "path_rename")]
pub fn path_rename(ctx: LsmContext) -> i32 {
    let Some(task) = current_task() else { return 0 };
    // The guard's objects, checked once per name before either path is built (keeps the
    // program within the verifier's budget): moving one out, or anything into one.
    if let Some(refused) = guard_fs::refuse_dentry(&task, ctx.arg(1)) {
        return verdict(refused);
    }
    if let Some(refused) = guard_fs::refuse_dentry(&task, ctx.arg(3)) {
        return verdict(refused);
    }
    // The source also must not carry anything a deny, ask or flag rule names (itself or
    // below it): moved, it would be out from under that rule.
    let from = change_in_checked(&task, ctx.arg(0), ctx.arg(1), FILE_OP_RENAME_FROM);
    let to = change_in_checked(&task, ctx.arg(2), ctx.arg(3), FILE_OP_RENAME_TO);
    verdict(from && to)
}

/// `path_link(old_dentry`, `new_dir`, `new_dentry)`: refused (see the module comment).
#[lsm(hook = "path_link")]
pub fn path_link(ctx: LsmContext) -> i32 {
    let Some(task) = current_task() else { return 0 };
    verdict(refuse_link(&task, ctx.arg(1), ctx.arg(2)))
}

/// A change to `name` in directory `dir`.
#[inline(always)]
fn change_in(task: &CurrentTask, dir: *const path, dentry: *const u8, op: u32) -> bool {
    if let Some(refused) = guard_fs::refuse_dentry(task, dentry) {
        return refused;
    }
    change_in_checked(task, dir, dentry, op)
}

/// `change_in`, the guard's filesystems already ruled out.
#[inline(always)]
fn change_in_checked(task: &CurrentTask, dir: *const path, dentry: *const u8, op: u32) -> bool {
    let Some(event) = SCRATCH.get_ptr_mut(0) else { return fail_closed(task) };
    // SAFETY: per-CPU scratch entry, used by this program only until it returns.
    let event = unsafe { &mut *event };
    let len = dentry_path::of_entry(dir.cast(), dentry, &mut event.path);
    decide(task, event, len, op, false)
}

/// A change to the object at `p` itself.
#[inline(always)]
pub fn change_at(task: &CurrentTask, p: *const path, op: u32) -> bool {
    if let Some(refused) = guard_fs::refuse_path(task, p.cast(), true) {
        return refused;
    }
    let Some(event) = SCRATCH.get_ptr_mut(0) else { return fail_closed(task) };
    // SAFETY: per-CPU scratch entry, used by this program only until it returns.
    let event = unsafe { &mut *event };
    let len = dentry_path::of_path(p.cast(), &mut event.path);
    decide(task, event, len, op, false)
}

/// A change to the object of a bare `dentry`, named through its superblock's first mount.
#[inline(always)]
fn change_of_dentry(task: &CurrentTask, dentry: *const u8, op: u32) -> bool {
    if let Some(refused) = guard_fs::refuse_dentry(task, dentry) {
        return refused;
    }
    let Some(event) = SCRATCH.get_ptr_mut(0) else { return fail_closed(task) };
    // SAFETY: per-CPU scratch entry, used by this program only until it returns.
    let event = unsafe { &mut *event };
    let len = dentry_path::of_dentry(dentry, &mut event.path);
    decide(task, event, len, op, false)
}

#[inline(always)]
fn refuse_link(task: &CurrentTask, new_dir: *const path, new_dentry: *const u8) -> bool {
    let Some(event) = SCRATCH.get_ptr_mut(0) else { return fail_closed(task) };
    // SAFETY: per-CPU scratch entry, used by this program only until it returns.
    let event = unsafe { &mut *event };
    let len = dentry_path::of_entry(new_dir.cast(), new_dentry, &mut event.path);
    decide(task, event, len, FILE_OP_LINK, true)
}

/// `write` on the built path decides; reports what it refuses or flags.
#[inline(always)]
fn decide(
    task: &CurrentTask,
    event: &mut agent_guard_common::event::FileEvent,
    len: Option<usize>,
    op: u32,
    always_out: bool,
) -> bool {
    let (bits, below, flags) = match len {
        Some(len) => {
            let m = match_path(task.entry.grant_id, &event.path, len, true);
            (m.allowed, m.below, 0)
        }
        None => (0, 0, PATH_TRUNCATED),
    };
    let moved_away = op == FILE_OP_RENAME_FROM && (bits & RESTRICTED_BITS != 0 || below != 0);
    let decision = if always_out || moved_away || task.grant_ended().is_some() {
        Decision::OutOfScope
    } else {
        decide_bits(bits, ACCESS_WRITE)
    };
    let audit = task.entry.mode == MODE_AUDIT;
    let (verdict, reason, allow) = match decision {
        Decision::Allow => return true,
        Decision::Flag => (VERDICT_FLAGGED, REASON_NONE, true),
        Decision::Deny => (VERDICT_RULE_DENY, REASON_NONE, audit),
        Decision::Ask | Decision::OutOfScope => (VERDICT_OUT_OF_SCOPE, task.out_of_scope_reason(), audit),
    };
    event.header =
        emit::header(KIND_FILE, verdict, reason, if allow { ACTION_ALLOWED } else { ACTION_BLOCKED }, task.task_id);
    event.access = ACCESS_WRITE;
    event.open_flags = 0;
    event.dfd = AT_FDCWD;
    event.path_flags = flags;
    event.op = op;
    emit::send(event);
    allow
}
