//! `ask` at the `landlock` level: the daemon's end of the seccomp listener `agent-guard run`
//! installs (confine/notify.rs) for a task whose grant has `ask` rules. Every open and exec of
//! the task's processes (and of its sub-tasks') waits here until the daemon answers:
//! - a call no `ask` rule matches goes on (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`): Landlock and
//!   the eBPF programs decide it as for any confined task;
//! - a call an `ask` rule matches is held: an `approval.request` event, then `approve` lets it
//!   go on (after filing the approval in the kernel's `APPROVALS`), `deny` or the deadline
//!   fails it with EPERM.
//!
//! TOCTOU (`seccomp_unotify(2)`): the path is read from the process's memory, which another of
//! its threads can rewrite after the read and before the kernel's own. So the answer is never
//! what enforces: Landlock still bounds the call to the ruleset (the grant's `allow`, `flag`
//! and `ask` paths), and the eBPF exit programs judge the file the call really reached: one
//! that reached an `ask` path without the approval filed for this thread and path is killed
//! before it returns (hold.rs `approved_once`). A rewrite can at worst swap one approved
//! `ask` action for a call Landlock and the grant allow anyway.
//!
//! Without the daemon the listener is closed and every such call fails with ENOSYS (the kernel
//! answers for a supervisor that is gone): the task is stuck, never widened.

use std::{
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::fs::FileExt,
    },
    path::{Path, PathBuf},
    sync::{Arc, Mutex, mpsc},
};

use agent_guard_common::{
    event::KernelEvent,
    event::{
        ACTION_HELD, ACTION_LANDLOCK, EXEC_ARG_LEN, EXEC_ARGS, EventHeader, ExecEvent, FILE_OP_OPEN, FileEvent,
        KIND_EXEC, KIND_FILE, REASON_NO_RULE, REASON_NONE, VERDICT_ASK, VERDICT_OUT_OF_SCOPE,
    },
    path::{
        ACCESS_EXEC, ACCESS_MASK, APPROVED_SHIFT, Decision, O_CREAT, O_TRUNC, O_WRONLY, PATH_MAX_MATCH, fnv1a_seeded,
        open_access,
    },
};

use super::registry::{Refusal, Registry, refuse};
use crate::api::ErrorCode;
use crate::daemon::{clock::boot_ns_now, events::decode};

nix::ioctl_readwrite!(notif_recv, b'!', 0, libc::seccomp_notif);
nix::ioctl_readwrite!(notif_send, b'!', 1, libc::seccomp_notif_resp);
nix::ioctl_write_ptr!(notif_id_valid, b'!', 2, u64);

const AT_FDCWD: i64 = -100;
const O_PATH: u32 = 0o10_000_000;

/// What the daemon answers a held call.
pub enum Answer {
    /// Let the kernel carry it out.
    Continue,
    /// Fail it with this errno.
    Refuse(i32),
    /// A human decides: true lets it go on.
    Held(mpsc::Receiver<bool>),
}

/// A call as the supervisor read it from the process.
pub struct HeldCall {
    pub tid: u32,
    pub tgid: u32,
    /// Real uid and gid (`/proc/TID/status`).
    pub uid: u32,
    pub gid: u32,
    pub exec: bool,
    /// ACCESS_* bits it needs.
    pub access: u32,
    pub open_flags: u32,
    pub dfd: i32,
    /// The file it names, resolved in the process's root and directories.
    pub path: String,
}

/// Starts the supervisor of `listener` (a task's, `task_id`) on its own thread.
pub fn start(listener: OwnedFd, task_id: u32, registry: Arc<Mutex<Registry>>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("supervise-{task_id}"))
        .spawn(move || serve(&Arc::new(listener), &registry))?;
    Ok(())
}

fn serve(listener: &Arc<OwnedFd>, registry: &Arc<Mutex<Registry>>) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    loop {
        let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(&**listener), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(err) => {
                tracing::error!(%err, "seccomp listener poll failed: the task's opens now fail");
                return;
            }
            Ok(_) => {}
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if !revents.contains(PollFlags::POLLIN) {
            // POLLHUP: no process uses the filter any more (kernel/seccomp.c `seccomp_notify_poll`).
            return;
        }
        // SAFETY: a zeroed plain C struct, which the kernel requires zeroed before RECV.
        let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: `req` is the struct this ioctl fills.
        match unsafe { notif_recv(listener.as_raw_fd(), &raw mut req) } {
            Ok(_) => {}
            // The caller died or was interrupted before it was received.
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::EINTR) => continue,
            Err(err) => {
                tracing::error!(%err, "seccomp listener receive failed: the task's opens now fail");
                return;
            }
        }
        match judge(listener, registry, &req) {
            Answer::Continue => respond(listener, req.id, None),
            Answer::Refuse(errno) => respond(listener, req.id, Some(errno)),
            Answer::Held(decided) => {
                let answering = listener.clone();
                let spawned = std::thread::Builder::new().name("held-call".into()).spawn(move || {
                    // A dropped sender (the approval is gone) refuses.
                    let approved = decided.recv().unwrap_or(false);
                    respond(&answering, req.id, (!approved).then_some(libc::EPERM));
                });
                if spawned.is_err() {
                    respond(listener, req.id, Some(libc::EPERM));
                }
            }
        }
    }
}

/// Answers call `id`: go on (None) or fail with `errno`. A call whose process died meanwhile
/// is answered into the void (ENOENT), which is fine.
fn respond(listener: &OwnedFd, id: u64, errno: Option<i32>) {
    let resp = libc::seccomp_notif_resp {
        id,
        val: 0,
        error: errno.map_or(0, |e| -e),
        flags: if errno.is_none() { libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32 } else { 0 },
    };
    let mut resp = resp;
    // SAFETY: `resp` is the struct this ioctl reads.
    let _ = unsafe { notif_send(listener.as_raw_fd(), &raw mut resp) };
}

/// Reads and resolves the call of `req`, and asks the registry.
fn judge(listener: &OwnedFd, registry: &Mutex<Registry>, req: &libc::seccomp_notif) -> Answer {
    let Some(call) = read_call(req) else {
        // Nothing to judge (an O_PATH open, a path the kernel will fail to read too): the
        // kernel, Landlock and the exit programs decide.
        return Answer::Continue;
    };
    // The memory read above belonged to this very call only if it is still pending
    // (seccomp_unotify(2): the pid could have been reused).
    // SAFETY: reads the id.
    if unsafe { notif_id_valid(listener.as_raw_fd(), &raw const req.id) }.is_err() {
        return Answer::Refuse(libc::EPERM);
    }
    registry.lock().expect("registry lock is never poisoned").judge_call(&call)
}

fn read_call(req: &libc::seccomp_notif) -> Option<HeldCall> {
    let tid = req.pid;
    let args = req.data.args;
    let nr = i64::from(req.data.nr);
    let mem = std::fs::File::open(format!("/proc/{tid}/mem")).ok()?;
    // A directory fd is an `int`: the register's upper half is not part of it, so AT_FDCWD
    // arrives as 0xffffff9c and only its low 32 bits, sign-extended, compare.
    let dirfd = |arg: u64| i64::from(arg as u32 as i32);
    let (dfd, path_at, flags, exec) = match nr {
        libc::SYS_openat => (dirfd(args[0]), args[1], args[2] as u32, false),
        libc::SYS_openat2 => (dirfd(args[0]), args[1], read_u64(&mem, args[2])? as u32, false),
        libc::SYS_execve => (AT_FDCWD, args[0], 0, true),
        libc::SYS_execveat => (dirfd(args[0]), args[1], 0, true),
        #[cfg(target_arch = "x86_64")]
        libc::SYS_open => (AT_FDCWD, args[0], args[1] as u32, false),
        #[cfg(target_arch = "x86_64")]
        libc::SYS_creat => (AT_FDCWD, args[0], O_CREAT | O_WRONLY | O_TRUNC, false),
        _ => return None,
    };
    if !exec && flags & O_PATH != 0 {
        return None;
    }
    let spelled = read_string(&mem, path_at)?;
    let status = procfs::process::Process::new(i32::try_from(tid).ok()?).ok()?.status().ok()?;
    let process = u32::try_from(status.tgid).ok()?;
    let in_root =
        nr == libc::SYS_openat2 && read_u64(&mem, args[2].saturating_add(16)).is_some_and(|r| r & RESOLVE_IN_ROOT != 0);
    let path = resolve(tid, process, dfd, &spelled, in_root)?;
    Some(HeldCall {
        tid,
        tgid: process,
        uid: status.ruid,
        gid: status.rgid,
        exec,
        access: if exec { ACCESS_EXEC } else { open_access(flags) },
        open_flags: flags,
        dfd: i32::try_from(dfd).unwrap_or(-1),
        path,
    })
}

fn read_u64(mem: &std::fs::File, at: u64) -> Option<u64> {
    let mut buf = [0u8; 8];
    mem.read_exact_at(&mut buf, at).ok()?;
    Some(u64::from_ne_bytes(buf))
}

/// The NUL-terminated string at `at` in `mem`, read page by page (the next page may be unmapped).
fn read_string(mem: &std::fs::File, at: u64) -> Option<Vec<u8>> {
    const PAGE: u64 = 4096;
    let mut out = Vec::new();
    let mut pos = at;
    while out.len() < libc::PATH_MAX as usize {
        let mut chunk = vec![0u8; usize::try_from(PAGE - pos % PAGE).ok()?];
        let n = mem.read_at(&mut chunk, pos).ok().filter(|&n| n > 0)?;
        if let Some(end) = chunk[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&chunk[..end]);
            return Some(out);
        }
        out.extend_from_slice(&chunk[..n]);
        pos += n as u64;
    }
    None
}

/// `RESOLVE_IN_ROOT` of `open_how.resolve` (include/uapi/linux/openat2.h).
const RESOLVE_IN_ROOT: u64 = 0x10;
/// Symlinks followed in one resolution at most (include/linux/namei.h `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// The file `spelled` names for thread `thread` of process `process`, as the kernel's exit programs
/// will see it: resolved component by component from the thread's root, working directory or
/// `dfd` (inside `dfd` with `RESOLVE_IN_ROOT`), following symlinks, with `..` never above the
/// root. `/proc/self` and `/proc/thread-self` are the caller's, not the daemon's (a library
/// call would resolve them in the daemon), and so is every link that leads through them
/// (`/dev/fd`, a symlink to `/proc/self/fd/N`). A name still to be created, or a component that
/// does not exist, is kept as spelled.
fn resolve(thread: u32, process: u32, dfd: i64, spelled: &[u8], in_root: bool) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let link = |path: String| std::fs::read_link(path).ok();
    let root = link(format!("/proc/{thread}/root"))?;
    let spelled = Path::new(std::ffi::OsStr::from_bytes(spelled));
    let dir =
        || if dfd == AT_FDCWD { link(format!("/proc/{thread}/cwd")) } else { link(format!("/proc/{thread}/fd/{dfd}")) };
    let top = if in_root { dir()? } else { root.clone() };
    let mut current = if spelled.is_absolute() { top.clone() } else { dir()? };
    if !current.is_absolute() || !top.is_absolute() {
        // A descriptor that is not a directory of the file tree (a pipe, a socket).
        return None;
    }
    let proc = root.join("proc");
    let mut queue: std::collections::VecDeque<std::ffi::OsString> =
        spelled.components().filter_map(component).collect();
    let mut links = 0;
    while let Some(name) = queue.pop_front() {
        match name.to_str() {
            Some(".") => continue,
            Some("..") => {
                if current != top {
                    current.pop();
                }
                continue;
            }
            Some("self") if current == proc => {
                queue.push_front(process.to_string().into());
                continue;
            }
            Some("thread-self") if current == proc => {
                for part in [thread.to_string(), "task".into(), process.to_string()] {
                    queue.push_front(part.into());
                }
                continue;
            }
            _ => {}
        }
        let next = current.join(&name);
        match std::fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return None;
                }
                let target = std::fs::read_link(&next).ok()?;
                if target.is_absolute() {
                    // A magic link (/proc/PID/fd/N, cwd) reads as the path the daemon sees; an
                    // ordinary absolute link starts again from the caller's root.
                    current = if next.starts_with(&proc) { PathBuf::from("/") } else { top.clone() };
                }
                for part in target.components().filter_map(component).collect::<Vec<_>>().into_iter().rev() {
                    queue.push_front(part);
                }
            }
            _ => current = next,
        }
    }
    let path = current.to_string_lossy().into_owned();
    (path.len() < PATH_MAX_MATCH).then_some(path)
}

/// A path component as a name (`.` and `..` included; the root itself is not one).
fn component(c: std::path::Component<'_>) -> Option<std::ffi::OsString> {
    match c {
        std::path::Component::Normal(name) => Some(name.to_owned()),
        std::path::Component::CurDir => Some(".".into()),
        std::path::Component::ParentDir => Some("..".into()),
        std::path::Component::RootDir | std::path::Component::Prefix(_) => None,
    }
}

impl Registry {
    /// The answer to `call` of a supervised task's process: go on unless an `ask` rule of its
    /// task's grant matches and no `approve --for` covers it; then held for a human.
    pub fn judge_call(&mut self, call: &HeldCall) -> Answer {
        let Some(task_id) = self.kernel.task_of(call.tgid) else {
            // Untagged under a task's filter: it can only have left a task that ended.
            return Answer::Refuse(libc::EPERM);
        };
        let Some(task) = self.tasks.get(&task_id) else {
            return Answer::Refuse(libc::EPERM);
        };
        if task.info.ended.is_some() || task.info.revoked {
            return Answer::Refuse(libc::EPERM);
        }
        if self.requestable_not_granted(task_id, &call.path, call.access) {
            // Landlock lets it through (its ruleset holds what may be requested): refused here,
            // and reported as the kernel would report a refusal.
            let record = call_record(task_id, call, self.kernel.proc_tag(call.tgid), Verdict::Refused);
            if let Some(decoder) = self.decoder.clone() {
                let outcome = decode::decode(
                    &mut decoder.lock().expect("decoder lock is never poisoned"),
                    &*self,
                    record,
                    decode::Prepared::default(),
                );
                if let decode::Decoded::Event(mut event) = outcome {
                    if let Some(verdict) = event.body.verdict_mut() {
                        verdict.reason = "requestable, and no approved request grants it: refused with EPERM by the \
                                          task's supervisor (agent-guard request asks for it)"
                            .into();
                    }
                    self.sink.send(*event);
                }
            }
            return Answer::Refuse(libc::EPERM);
        }
        if task.info.mode == crate::grant::Mode::Audit
            || task.grant.path_decision(&call.path, call.access).0 != Decision::Ask
        {
            return Answer::Continue;
        }
        let hash = fnv1a_seeded(self.kernel.path_seed, call.path.as_bytes());
        let approved = self.kernel.path_rule(task_id, hash).map_or(0, |r| (r.exact >> APPROVED_SHIFT) & ACCESS_MASK);
        if approved & call.access == call.access {
            return Answer::Continue;
        }
        let record = call_record(task_id, call, self.kernel.proc_tag(call.tgid), Verdict::Held);
        let Some(decoder) = self.decoder.clone() else {
            return Answer::Refuse(libc::EPERM);
        };
        let outcome = decode::decode(
            &mut decoder.lock().expect("decoder lock is never poisoned"),
            &*self,
            record,
            decode::Prepared::default(),
        );
        let decode::Decoded::Held(mut held) = outcome else {
            return Answer::Refuse(libc::EPERM);
        };
        // The exit program looks the approval up by the thread that reaches the file: for an
        // exec, the process's (fs/exec.c `de_thread` gives the execing thread the tgid).
        held.tid = if call.exec { call.tgid } else { call.tid };
        let (reply, decided) = mpsc::channel();
        self.hold_call(held, reply);
        Answer::Held(decided)
    }
}

/// What the supervisor did with a call, as a hook would record it.
#[derive(Clone, Copy)]
enum Verdict {
    /// Held for a human (decode.rs makes it the `approval.request` event).
    Held,
    /// Refused: a requestable path no approved request grants.
    Refused,
}

/// The record a hook would have sent for `call`, with the process's exec ids.
fn call_record(
    task_id: u32,
    call: &HeldCall,
    tag: Option<agent_guard_common::task::ProcTag>,
    verdict: Verdict,
) -> KernelEvent {
    let mut comm = [0u8; 16];
    if let Ok(name) = std::fs::read(format!("/proc/{}/comm", call.tid)) {
        let name = name.strip_suffix(b"\n").unwrap_or(&name);
        let n = name.len().min(15);
        comm[..n].copy_from_slice(&name[..n]);
    }
    let header = EventHeader {
        kind: if call.exec { KIND_EXEC } else { KIND_FILE },
        verdict: match verdict {
            Verdict::Held => VERDICT_ASK,
            Verdict::Refused => VERDICT_OUT_OF_SCOPE,
        },
        reason: match verdict {
            Verdict::Held => REASON_NONE,
            Verdict::Refused => REASON_NO_RULE,
        },
        action: match verdict {
            Verdict::Held => ACTION_HELD,
            Verdict::Refused => ACTION_LANDLOCK,
        },
        task_id,
        tgid: call.tgid,
        pid: call.tid,
        uid: call.uid,
        gid: call.gid,
        ptgid: tag.map_or(0, |t| t.parent_tgid),
        boot_ns: boot_ns_now(),
        exec_ns: tag.map_or(0, |t| t.exec_ns),
        parent_exec_ns: tag.map_or(0, |t| t.parent_exec_ns),
        comm,
    };
    let mut path = [0u8; PATH_MAX_MATCH];
    path[..call.path.len()].copy_from_slice(call.path.as_bytes());
    if call.exec {
        KernelEvent::Exec(Box::new(ExecEvent {
            header,
            path_flags: 0,
            argc: 0,
            path,
            argv: [[0; EXEC_ARG_LEN]; EXEC_ARGS],
        }))
    } else {
        KernelEvent::File(Box::new(FileEvent {
            header,
            access: call.access,
            open_flags: call.open_flags,
            dfd: call.dfd,
            path_flags: 0,
            op: FILE_OP_OPEN,
            pad: 0,
            path,
        }))
    }
}

impl Registry {
    /// The task whose listener process `pid` may hand over: its first process, once, for a task
    /// opened with `hold_asks`.
    pub fn listener_expected(&self, pid: u32) -> Result<u32, Refusal> {
        let forbidden = |why: String| refuse(ErrorCode::Forbidden, why);
        let id = self.kernel.task_of(pid).ok_or_else(|| forbidden(format!("process {pid} is in no task")))?;
        let task = self.tasks.get(&id).ok_or_else(|| forbidden(format!("no task {id}")))?;
        if task.asks_holder != Some(id) || task.supervised || task.info.root_pid != pid || task.info.ended.is_some() {
            return Err(forbidden(format!(
                "task {id} takes no seccomp listener from process {pid}: only its first process hands one over, once, when the daemon asked for it"
            )));
        }
        Ok(id)
    }

    /// Task `id`'s supervisor runs.
    pub fn mark_supervised(&mut self, id: u32) {
        if let Some(task) = self.tasks.get_mut(&id) {
            task.supervised = true;
        }
    }
}

/// Whether `fd` is a seccomp listener (`fs/anon_inodes.c` names it).
pub fn is_listener(fd: &OwnedFd) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .is_ok_and(|target| target.as_os_str() == "anon_inode:seccomp notify")
}

#[cfg(test)]
mod tests {
    use super::{AT_FDCWD, resolve};

    /// Resolves for this test process, as the supervisor does for a held one.
    fn here(spelled: &str) -> Option<String> {
        let pid = std::process::id();
        resolve(pid, pid, AT_FDCWD, spelled.as_bytes(), false)
    }

    #[test]
    fn the_callers_proc_self_and_links_through_it_are_resolved_for_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(real.join("secret")).unwrap();
        std::fs::write(real.join("secret/f"), "x").unwrap();
        let cwd = std::env::current_dir().unwrap();
        let expected = real.join("secret/f").display().to_string();
        // Through an open descriptor of the directory, however it is reached.
        let file = std::fs::File::open(real.join("secret")).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        for spelled in
            [format!("/proc/self/fd/{fd}/f"), format!("/dev/fd/{fd}/f"), format!("/proc/thread-self/fd/{fd}/f")]
        {
            assert_eq!(here(&spelled).as_deref(), Some(expected.as_str()), "{spelled}");
        }
        // A symlink elsewhere that leads through /proc/self.
        std::os::unix::fs::symlink(format!("/proc/self/fd/{fd}"), real.join("link")).unwrap();
        assert_eq!(here(&format!("{}/link/f", real.display())).as_deref(), Some(expected.as_str()));
        // `..` never climbs above the root; a name still to be created is kept.
        assert_eq!(here("/../../etc/../etc/hostname").as_deref(), Some("/etc/hostname"));
        assert_eq!(
            here(&format!("{}/secret/new-file", real.display())).as_deref(),
            Some(real.join("secret/new-file").to_str().unwrap())
        );
        // Relative to the working directory, and to /proc/self/cwd.
        let relative = here("some-name").unwrap();
        assert_eq!(relative, cwd.join("some-name").display().to_string());
        assert_eq!(here("/proc/self/cwd/some-name").unwrap(), relative);
        drop(file);
    }
}
