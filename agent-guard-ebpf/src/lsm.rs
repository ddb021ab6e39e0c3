//! BPF LSM hooks: in-kernel denial on the object the kernel resolved, where the kernel allows
//! BPF LSM (`CONFIG_BPF_LSM=y` and `bpf` in the active LSM list). The daemon loads these only
//! after probing that they load; otherwise file and exec fall back to observation (file.rs,
//! exec.rs) and say so.
//!
//! - `file_open` (`security_file_open`, fs/open.c `do_dentry_open)`: the opened file, after path
//!   resolution and symlinks, with its access from `f_mode`: no time-of-check/time-of-use gap.
//! - `bprm_check_security` (`security_bprm_check`, fs/exec.c `search_binary_handler)`: the binary
//!   about to run. For a `#!` script it runs for the script and again for its interpreter
//!   (`load_script` re-enters `search_binary_handler`), so both need `exec` in the grant.
//! - `socket_connect` (`security_socket_connect`, net/socket.c __`sys_connect_file)`: TCP and UDP
//!   connects, in addition to the cgroup programs; it holds a connect an `ask` rule names,
//!   before the protocol's connect has changed anything, so the restarted syscall is the same.
//!
//! Paths come from `bpf_d_path` (allowed in these hooks: `kernel/trace/bpf_trace.c`
//! `bpf_d_path_allowed`); they are absolute and normalised.
//!
//! Fail-open/closed: untagged processes are never affected. For a tagged process, a path that
//! cannot be resolved into the 256-byte buffer, a missing scratch buffer, or an ended grant is
//! refused in enforce mode. The verifier needs constant return values in [-4095, 0]: each hook
//! returns the literal 0 or -1 (-EPERM).

use agent_guard_common::{
    event::{
        ACTION_ALLOWED, ACTION_BLOCKED, ACTION_HELD, ESCAPE_DEVICE, FILE_OP_OPEN, HOOK_LSM_CONNECT4, HOOK_LSM_CONNECT6,
        KIND_EXEC, KIND_FILE, KIND_NET, NetEvent, PATH_TRUNCATED, REASON_NONE, VERDICT_ASK, VERDICT_FLAGGED,
        VERDICT_IN_SCOPE, VERDICT_OUT_OF_SCOPE, VERDICT_RULE_DENY,
    },
    net::{APPROVAL_CONNECT, NET_ASK, NET_FLAG, destination_hash},
    path::{ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE, Decision, PATH_MAX_MATCH, decide},
    task::MODE_AUDIT,
};
use aya_ebpf::{
    bindings::path,
    helpers::{bpf_probe_read_kernel, generated::bpf_d_path},
    macros::lsm,
    programs::LsmContext,
};

use crate::{
    config, emit,
    escape::refuse,
    guard_fs,
    hold::{Asked, Verdict, ask, hold, ret},
    maps::{EXEC_PENDING, EXEC_SCRATCH, SCRATCH},
    net::{connect_verdict, net_decision},
    path_match::match_path,
    task::{CurrentTask, current_task, current_tid, reason_for},
    usage,
};

/// include/linux/fs.h
const FMODE_READ: u32 = 0x1;
const FMODE_WRITE: u32 = 0x2;
/// The open flag `open_exec()` passes (fs/exec.c `do_open_execat`); it reaches `f_flags`, not `f_mode`.
const FMODE_EXEC_FLAG: u32 = 0x20;
const AT_FDCWD: i32 = -100;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const SOCK_STREAM: u16 = 1;
const SOCK_DGRAM: u16 = 2;

/// Never attached: `agent-guard preflight` loads it to learn whether this kernel takes BPF LSM
/// programs at all (some refuse them with EPERM although `bpf` is an active LSM).
#[lsm(hook = "file_open")]
pub fn lsm_probe(_ctx: LsmContext) -> i32 {
    0
}

#[lsm(hook = "file_open")]
pub fn file_open(ctx: LsmContext) -> i32 {
    ret(try_file_open(&ctx))
}

#[lsm(hook = "bprm_check_security")]
pub fn bprm_check_security(ctx: LsmContext) -> i32 {
    ret(try_bprm_check(&ctx))
}

#[lsm(hook = "socket_connect")]
pub fn socket_connect(ctx: LsmContext) -> i32 {
    ret(try_socket_connect(&ctx))
}

/// The hook's return value for a yes/no decision: 0 to allow, -1 (-EPERM) to refuse.
#[inline(always)]
pub fn verdict(allow: bool) -> i32 {
    ret(yes_no(allow))
}

/// `Allow` or `Deny` for the yes/no paths of the hooks that can also hold.
#[inline(always)]
fn yes_no(allow: bool) -> Verdict {
    if allow { Verdict::Allow } else { Verdict::Deny }
}

/// Reports `event` and returns `verdict`; a held action stops its thread until the daemon has
/// asked, so its record wakes the daemon at once.
#[inline(always)]
fn report<T>(event: &T, verdict: Verdict) -> Verdict {
    if verdict == Verdict::Hold {
        emit::send_now(event);
        hold()
    } else {
        emit::send(event);
        verdict
    }
}

/// Resolves `file` into `buf` and matches it: (grant bits, PATH_* flags, path hash). A path
/// that does not fit the buffer matches nothing (`PATH_TRUNCATED`).
#[inline(always)]
fn resolve_and_match(task: &CurrentTask, file: *const u8, buf: &mut [u8; PATH_MAX_MATCH]) -> (u32, u32, u64) {
    match resolve(file, buf) {
        Some(len) => {
            let m = match_path(task.entry.grant_id, buf, len, true);
            (m.allowed, 0, m.hash)
        }
        None => (0, PATH_TRUNCATED, 0),
    }
}

/// What to do with `decision` for an action needing `need` on the path hashed `hash`:
/// Err(verdict) to return at once, without a report (allowed, or a human already decided);
/// else (verdict, `EventHeader::action`, `EventHeader::verdict`) to report and return.
#[inline(always)]
/// `note_use`: an allowed action is a use of the grant, reported at its first time.
fn outcome(
    task: &CurrentTask,
    decision: Decision,
    need: u32,
    hash: u64,
    note_use: bool,
) -> Result<(Verdict, u32, u32), Verdict> {
    let audit = task.entry.mode == MODE_AUDIT;
    let refuse =
        |why| if audit { Ok((Verdict::Allow, ACTION_ALLOWED, why)) } else { Ok((Verdict::Deny, ACTION_BLOCKED, why)) };
    match decision {
        Decision::Allow if note_use && usage::first_use(task.task_id, need, hash) => {
            Ok((Verdict::Allow, ACTION_ALLOWED, VERDICT_IN_SCOPE))
        }
        Decision::Allow => Err(Verdict::Allow),
        Decision::Flag => Ok((Verdict::Allow, ACTION_ALLOWED, VERDICT_FLAGGED)),
        Decision::Deny => refuse(VERDICT_RULE_DENY),
        Decision::Ask => match ask(task, need, hash) {
            Asked::Decided(v) => Err(v),
            Asked::New => Ok((Verdict::Hold, ACTION_HELD, VERDICT_ASK)),
            Asked::No => refuse(VERDICT_OUT_OF_SCOPE),
        },
        Decision::OutOfScope => refuse(VERDICT_OUT_OF_SCOPE),
    }
}

/// The grant's decision on a resolved path, or out of scope when the grant ended or the path
/// could not be resolved.
#[inline(always)]
fn decision_for(task: &CurrentTask, bits: u32, path_flags: u32, need: u32) -> Decision {
    if task.grant_ended().is_some() || path_flags != 0 { Decision::OutOfScope } else { decide(bits, need) }
}

/// Writes the resolved path of `file` into `buf`; its length without the NUL, or None.
#[inline(always)]
fn resolve(file: *const u8, buf: &mut [u8; PATH_MAX_MATCH]) -> Option<usize> {
    *buf = [0; PATH_MAX_MATCH];
    // SAFETY: `file` is the hook's BTF pointer to a struct file and f_path its member at the
    // offset the daemon read from BTF; the verifier checks both.
    let len = unsafe {
        bpf_d_path(file.add(config::file_path_off()) as *mut path, buf.as_mut_ptr().cast(), PATH_MAX_MATCH as u32)
    };
    if len <= 0 { None } else { Some(len as usize - 1) }
}

/// The verdict for a resolved path. Reports what it refuses, flags or holds.
#[inline(always)]
fn try_file_open(ctx: &LsmContext) -> Verdict {
    let Some(task) = current_task() else {
        return Verdict::Allow;
    };
    let file: *const u8 = ctx.arg(0);
    // SAFETY: f_inode and its i_mode at their BTF offsets.
    let inode = unsafe { bpf_probe_read_kernel(file.add(config::file_inode_off()).cast::<u64>()) }.unwrap_or(0);
    let inode_mode = u32::from(
        unsafe { bpf_probe_read_kernel((inode as *const u8).add(config::inode_mode_off()).cast::<u16>()) }.unwrap_or(0),
    );
    if inode_mode & 0o170_000 == 0o060_000 {
        // A block device: a disk read raw bypasses every path rule (lsm_tree.rs, devices).
        return yes_no(refuse(&task, ESCAPE_DEVICE, 0, u64::from(inode_mode)));
    }
    // SAFETY: f_mode at the BTF offset of struct file.
    let mode = unsafe { bpf_probe_read_kernel(file.add(config::file_mode_off()).cast::<u32>()) }.unwrap_or(0);
    let mut need = 0;
    if mode & FMODE_READ != 0 {
        need |= ACCESS_READ;
    }
    if mode & FMODE_WRITE != 0 {
        need |= ACCESS_WRITE;
    }
    if need == 0 {
        // O_PATH and similar opens give no access to the contents.
        return Verdict::Allow;
    }
    // SAFETY: f_path at its BTF offset.
    if let Some(refused) =
        guard_fs::refuse_path(&task, unsafe { file.add(config::file_path_off()) }, need & ACCESS_WRITE != 0)
    {
        return yes_no(refused);
    }
    // The kernel opening a binary to run it (open_exec: the program, a script's interpreter,
    // an ELF's loader) needs read or exec in the grant, and is reported as an exec; whether
    // the program may run at all is also bprm_check_security's decision.
    // SAFETY: f_flags at the BTF offset of struct file.
    let flags = unsafe { bpf_probe_read_kernel(file.add(config::file_flags_off()).cast::<u32>()) }.unwrap_or(0);
    if flags & FMODE_EXEC_FLAG != 0 {
        return decide_exec(&task, file, true);
    }
    let Some(event) = SCRATCH.get_ptr_mut(0) else {
        return yes_no(fail_closed(&task));
    };
    // SAFETY: per-CPU scratch entry, used by this program only until it returns.
    let event = unsafe { &mut *event };
    let (bits, path_flags, hash) = resolve_and_match(&task, file, &mut event.path);
    let decision = decision_for(&task, bits, path_flags, need);
    let (verdict, action, why) = match outcome(&task, decision, need, hash, true) {
        Ok(outcome) => outcome,
        Err(decided) => return decided,
    };
    event.header = emit::header(KIND_FILE, why, reason_for(&task, why), action, task.task_id);
    event.access = need;
    event.open_flags = mode;
    event.dfd = AT_FDCWD;
    event.path_flags = path_flags;
    event.op = FILE_OP_OPEN;
    report(event, verdict)
}

#[inline(always)]
fn try_bprm_check(ctx: &LsmContext) -> Verdict {
    let Some(task) = current_task() else {
        return Verdict::Allow;
    };
    let bprm: *const u8 = ctx.arg(0);
    // SAFETY: a direct load through the hook's BTF pointer (struct linux_binprm), of its
    // `file` member; the verifier types the result as a struct file pointer.
    let file: *const u8 = unsafe { *bprm.add(config::bprm_file_off()).cast::<*const u8>() };
    decide_exec(&task, file, false)
}

/// An exec of `file`: the exec check itself, or (`open`) the kernel opening the binary, which
/// `read` or `exec` in the grant allows (an `ask` or `flag` on exec is settled once, by the
/// exec check). Refused, held or flagged execs are reported with the argv the execve
/// tracepoint captured for this thread.
#[inline(always)]
fn decide_exec(task: &CurrentTask, file: *const u8, open: bool) -> Verdict {
    let Some(event) = EXEC_SCRATCH.get_ptr_mut(0) else {
        return yes_no(fail_closed(task));
    };
    // SAFETY: per-CPU scratch entry, used by this program only until it returns.
    let event = unsafe { &mut *event };
    let (bits, path_flags, hash) = resolve_and_match(task, file, &mut event.path);
    let mut decision = decision_for(task, bits, path_flags, ACCESS_EXEC);
    if open {
        decision = match decision {
            // Read alone lets the kernel open the binary (bprm_check_security still refuses the
            // exec); a read rule that asks is not an exec question: out of scope here.
            Decision::OutOfScope => match decision_for(task, bits, path_flags, ACCESS_READ) {
                Decision::Ask => Decision::OutOfScope,
                d => d,
            },
            Decision::Ask | Decision::Flag => Decision::Allow,
            d => d,
        };
    }
    // The kernel opening the binary is not the exec: only bprm_check_security's allow is a use.
    let (verdict, action, why) = match outcome(task, decision, ACCESS_EXEC, hash, !open) {
        Ok(outcome) => outcome,
        Err(decided) => return decided,
    };
    event.argc = 0;
    // SAFETY: the value is copied at once.
    if let Some(pending) = unsafe { EXEC_PENDING.get(&current_tid()) } {
        event.argc = pending.argc;
        event.argv = pending.argv;
    }
    event.header = emit::header(KIND_EXEC, why, reason_for(task, why), action, task.task_id);
    event.path_flags = path_flags;
    report(event, verdict)
}

#[inline(always)]
fn try_socket_connect(ctx: &LsmContext) -> Verdict {
    let Some(task) = current_task() else {
        return Verdict::Allow;
    };
    let sock: *const u8 = ctx.arg(0);
    let address: *const u8 = ctx.arg(1);
    // SAFETY: struct sockaddr as copied into the kernel by move_addr_to_kernel; family first,
    // then (for inet) the big-endian port and the address (include/uapi/linux/in.h, in6.h).
    let family = unsafe { bpf_probe_read_kernel(address.cast::<u16>()) }.unwrap_or(0);
    let sock_type = unsafe { bpf_probe_read_kernel(sock.add(config::socket_type_off()).cast::<u16>()) }.unwrap_or(0);
    let protocol = match sock_type {
        SOCK_STREAM => 6,
        SOCK_DGRAM => 17,
        _ => return Verdict::Allow,
    };
    let port = u16::from_be(unsafe { bpf_probe_read_kernel(address.add(2).cast::<u16>()) }.unwrap_or(0));
    let mut addr = [0u8; 16];
    let hook = match family {
        AF_INET => {
            addr[10] = 0xff;
            addr[11] = 0xff;
            let v4 = unsafe { bpf_probe_read_kernel(address.add(4).cast::<[u8; 4]>()) }.unwrap_or([0; 4]);
            addr[12..16].copy_from_slice(&v4);
            HOOK_LSM_CONNECT4
        }
        AF_INET6 => {
            addr = unsafe { bpf_probe_read_kernel(address.add(8).cast::<[u8; 16]>()) }.unwrap_or([0; 16]);
            HOOK_LSM_CONNECT6
        }
        // AF_UNIX, AF_UNSPEC (disconnect) and others are not network destinations.
        _ => return Verdict::Allow,
    };
    // DNS of a task with a resolver: the cgroup program, which runs after this hook, sends it
    // to the daemon (dns.rs).
    if crate::dns::route(&task, protocol, port, &addr) != crate::dns::Route::Judged {
        return Verdict::Allow;
    }
    let (action, rule_index) = if task.grant_ended().is_none() {
        net_decision(task.entry.grant_id, &addr, port, protocol)
    } else {
        (u8::MAX, agent_guard_common::event::NO_RULE)
    };
    // A flagged connect is let through silently here, and so is an `ask` one in audit mode:
    // the cgroup connect program, which the kernel runs after this hook (inet_stream_connect /
    // udp pre_connect), reports it once.
    if action == NET_FLAG || (action == NET_ASK && task.entry.mode == MODE_AUDIT) {
        return Verdict::Allow;
    }
    if action == NET_ASK {
        let hash = destination_hash(&addr, port, protocol);
        match ask(&task, APPROVAL_CONNECT, hash) {
            Asked::Decided(Verdict::Allow) => {
                crate::hold::pass_on(APPROVAL_CONNECT, hash);
                return Verdict::Allow;
            }
            Asked::Decided(verdict) => return verdict,
            Asked::New => {
                let event = NetEvent {
                    header: emit::header(KIND_NET, VERDICT_ASK, REASON_NONE, ACTION_HELD, task.task_id),
                    hook,
                    protocol,
                    port: u32::from(port),
                    rule_index,
                    addr,
                };
                emit::send_now(&event);
                return hold();
            }
            Asked::No => {}
        }
    }
    yes_no(connect_verdict(&task, hook, protocol, port, addr))
}

/// No scratch buffer: refuse in enforce mode without an event (counted as a drop).
#[inline(always)]
pub fn fail_closed(task: &CurrentTask) -> bool {
    emit::count_drop();
    task.entry.mode == MODE_AUDIT
}
