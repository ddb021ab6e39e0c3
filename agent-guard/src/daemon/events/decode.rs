//! Kernel records -> events: decode, then enrich with the task (agent, intent, grant), the
//! process (/proc) and the rule or reason that decided.
//!
//! The enrichment state (the /proc cache, the lineage of tagged processes) belongs to the
//! [`Decoder`], which the ring-buffer readers own; tasks are seen read-only, through
//! [`TaskView`], so nothing here reaches back into the task registry.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv6Addr},
    path::PathBuf,
};

use agent_guard_common::{
    event::{
        ACTION_BLOCKED, ACTION_HELD, ACTION_KILLED, ACTION_LANDLOCK, EventHeader, ExecEvent, FILE_OP_CHMOD,
        FILE_OP_CHOWN, FILE_OP_CREATE, FILE_OP_LINK, FILE_OP_MKDIR, FILE_OP_RENAME_FROM, FILE_OP_RENAME_TO,
        FILE_OP_RMDIR, FILE_OP_SETATTR, FILE_OP_SYMLINK, FILE_OP_TRUNCATE, FILE_OP_UNIX_CONNECT, FILE_OP_UNLINK,
        FILE_OP_XATTR, FileEvent, HOOK_CONNECT4, HOOK_CONNECT6, HOOK_LSM_CONNECT4, HOOK_LSM_CONNECT6, HOOK_SENDMSG4,
        HOOK_SENDMSG6, KernelEvent, NetEvent, PATH_FD_LINK, PATH_RELATIVE, PATH_RESOLVED_ELSEWHERE, PATH_TRUNCATED,
        PATH_UNNORMALIZED, REASON_EXPIRED, REASON_REVOKED, VERDICT_ASK, VERDICT_FLAGGED, VERDICT_IN_SCOPE,
        VERDICT_RULE_DENY, VERDICT_UNRESOLVED,
    },
    path::{ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE, Decision as PathDecision},
};

use super::{
    lineage::Lineage,
    schema::{
        Access, Action, Body, Decision, EscapeObject, Event, ExecObject, FileObject, FileOperation, Held, HeldObject,
        NetworkObject, PolicyDecision, Process, TaskRef, Verdict,
    },
};
use crate::{
    api::{Enforcement, Level},
    daemon::clock,
    grant::{Grant, Mode, normalize_path},
};

/// An address a task's DNS answers gave (`dns/`): the name it came from (for connect events)
/// and until when it is allowed (boot-clock ns; the latest of its rules).
#[derive(Clone, Debug)]
pub struct Learned {
    pub name: String,
    pub expires_ns: u64,
}

/// What decoding reads of a task.
pub struct TaskFacts<'a> {
    pub task: std::sync::Arc<TaskRef>,
    pub grant: &'a Grant,
    /// RFC 3339 expiry, for the reason of an access after it.
    pub expires: &'a str,
    /// Addresses the task's DNS answers gave, and their names.
    pub learned: &'a std::collections::HashMap<[u8; 16], Learned>,
}

/// The tasks as decoding sees them: read-only.
pub trait TaskView {
    /// A task as it was at `at_ns` (`CLOCK_BOOTTIME`, the record's kernel time) where that
    /// differs from now (its declared step).
    fn facts(&self, task_id: u32, at_ns: u64) -> Option<TaskFacts<'_>>;
}

/// Decoding and its enrichment state, owned by the ring-buffer readers.
pub struct Decoder {
    host: String,
    /// The levels the kernel enforces (fixed at load), for each event's `enforcement`.
    enforcement: Enforcement,
    proc_cache: ProcCache,
    /// Exec ids and ancestry of tagged processes.
    lineage: Lineage,
    /// The directory a relative path of the record being decoded is relative to: (tgid, dfd)
    /// and the link's target, as `prepare` read it (set for one `decode` call).
    base: Option<((u32, i32), Option<PathBuf>)>,
}

/// What `Decoder::prepare` read from /proc for one record, for its `decode`.
#[derive(Default)]
pub struct Prepared {
    base: Option<((u32, i32), Option<PathBuf>)>,
}

impl Decoder {
    pub fn new(host: String, enforcement: Enforcement) -> Decoder {
        Decoder { host, enforcement, proc_cache: ProcCache::default(), lineage: Lineage::default(), base: None }
    }

    /// Reads from /proc what `record` needs, before the caller takes the registry lock (which
    /// the API waits on): the process's parent and executable (cached for `decode`), and the
    /// directory a relative path the kernel could not decide is relative to.
    pub fn prepare(&mut self, record: &KernelEvent) -> Prepared {
        let header = record.header();
        let (dfd, path) = match record {
            KernelEvent::TaskEmpty(_) | KernelEvent::Fork(_) | KernelEvent::ExecStart(_) => {
                return Prepared::default();
            }
            KernelEvent::File(e) => (e.dfd, &e.path[..]),
            KernelEvent::Exec(e) => (AT_FDCWD, &e.path[..]),
            _ => (AT_FDCWD, &b"/"[..]),
        };
        self.proc_cache.lookup(header);
        let relative = header.verdict == VERDICT_UNRESOLVED && path.first() != Some(&b'/');
        Prepared { base: relative.then(|| ((header.tgid, dfd), base_of(header.tgid, dfd))) }
    }

    /// A task ended: its processes' lineage is no longer needed.
    pub fn forget_task(&mut self, task_id: u32) {
        self.lineage.forget_task(task_id);
    }
}

const AT_FDCWD: i32 = -100;

/// What to do with a kernel record.
pub enum Decoded {
    Event(Box<Event>),
    /// The last process of a task exited.
    TaskEmpty(u32),
    /// A child could not be tagged: kill it (fail closed) and report.
    TagLost {
        task_id: u32,
        child: u32,
        event: Box<Event>,
    },
    /// In scope after all (a path the kernel could not decide, resolved here).
    Nothing,
    /// An action held by an `ask` rule: the registry files it and reports it.
    Held(HeldAction),
    /// The first use of an allowed access: the rules that allowed it, and what was touched.
    Used {
        task_id: u32,
        rules: Vec<String>,
        touched: Touched,
    },
}

/// What an allowed action touched.
pub enum Touched {
    /// The directory of a file opened or executed.
    Directory(String),
    /// `address:port/protocol`.
    Destination(String),
}

/// An action the kernel holds for a human, as the registry files it.
pub struct HeldAction {
    pub task_id: u32,
    pub tid: u32,
    pub tgid: u32,
    /// `file`, `exec` or `connect`.
    pub object: &'static str,
    pub path: String,
    /// ACCESS_* bits the held syscall needs (`APPROVAL_CONNECT` for a connect).
    pub access: u32,
    /// The kernel's hash of what is held, where it is not the path's (a connect's destination:
    /// `destination_hash`).
    pub hash: Option<u64>,
    pub event: Box<Event>,
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

pub fn access_names(access: u32) -> Vec<Access> {
    [(ACCESS_READ, Access::Read), (ACCESS_WRITE, Access::Write), (ACCESS_EXEC, Access::Exec)]
        .into_iter()
        .filter(|(bit, _)| access & bit != 0)
        .map(|(_, name)| name)
        .collect()
}

/// What /proc says of a process (parent, executable), kept briefly: a process producing many
/// events in a row (a loop, a flood) is read once, not twice per event.
#[derive(Default)]
pub struct ProcCache {
    /// Keyed by (tgid, comm): the comm changes at exec, so an exec'd or reused pid with another
    /// name is read again.
    entries: std::collections::HashMap<(u32, [u8; 16]), ProcInfo>,
}

/// When it was read, the parent pid and the executable.
type ProcInfo = (std::time::Instant, Option<u32>, Option<String>);

impl ProcCache {
    const TTL: std::time::Duration = std::time::Duration::from_secs(1);
    const MAX: usize = 8192;

    fn lookup(&mut self, header: &EventHeader) -> (Option<u32>, Option<String>) {
        let key = (header.tgid, header.comm);
        if let Some((at, ppid, exe)) = self.entries.get(&key)
            && at.elapsed() < Self::TTL
        {
            return (*ppid, exe.clone());
        }
        let proc = procfs::process::Process::new(header.tgid as i32).ok();
        let ppid = proc.as_ref().and_then(|p| p.stat().ok()).map(|s| s.ppid as u32);
        let exe = proc.as_ref().and_then(|p| p.exe().ok()).map(|p| p.display().to_string());
        if self.entries.len() >= Self::MAX {
            self.entries.clear();
        }
        self.entries.insert(key, (std::time::Instant::now(), ppid, exe.clone()));
        (ppid, exe)
    }
}

fn process(dec: &mut Decoder, header: &EventHeader) -> Process {
    let (ppid, executable) = dec.proc_cache.lookup(header);
    let image = (header.tgid, header.exec_ns);
    let parent = (header.ptgid, header.parent_exec_ns);
    let lineage = &mut dec.lineage;
    if header.exec_ns != 0 {
        lineage.learn(image, parent, header.task_id);
    }
    let tagged = header.exec_ns != 0;
    Process {
        pid: header.tgid,
        tid: header.pid,
        // The kernel's parent (the forking image) when tagged: /proc's may be re-parented.
        ppid: if tagged && header.ptgid != 0 { Some(header.ptgid) } else { ppid },
        uid: header.uid,
        gid: header.gid,
        comm: c_string(&header.comm),
        executable,
        argv: None,
        exec_id: tagged.then(|| lineage.exec_id(image)),
        parent_exec_id: (tagged && header.ptgid != 0).then(|| lineage.exec_id(parent)),
        ancestry: if tagged {
            lineage.ancestry(image).into_iter().map(|i| lineage.exec_id(i)).collect()
        } else {
            Vec::new()
        },
    }
}

/// An event about a record: when and where it happened, the process and its task.
fn record_event(dec: &mut Decoder, body: Body, header: &EventHeader, task: Option<&TaskFacts>) -> Event {
    let mut event = Event::new(body, &dec.host, clock::wall_of_boot_ns(header.boot_ns));
    event.process = Some(process(dec, header));
    event.task = task.map(|t| t.task.clone());
    event
}

/// The verdict every out-of-scope action starts from: what the grant says (deny, or flag in
/// audit mode) and why, from the reason the kernel gave; `decision` and `enforcement` are how
/// it was carried out.
fn out_of_scope(header: &EventHeader, task: Option<&TaskFacts>, decision: Decision, enforcement: Level) -> Verdict {
    let policy_decision = match task.map(|t| t.grant.spec.mode) {
        Some(Mode::Audit) => PolicyDecision::Flag,
        _ => PolicyDecision::Deny,
    };
    let grant = task.map_or("(unknown)".to_string(), |t| t.task.grant.clone());
    let (rule, reason) = match header.reason {
        REASON_EXPIRED => {
            ("grant.ttl".to_string(), format!("grant {grant} expired at {}", task.map_or("?", |t| t.expires)))
        }
        REASON_REVOKED => ("task.stopped".to_string(), "the task was stopped: its grant is revoked".to_string()),
        _ => ("default-deny".to_string(), format!("no rule of grant {grant} allows this")),
    };
    Verdict { decision, policy_decision: Some(policy_decision), enforcement, rule, reason }
}

pub fn decode(dec: &mut Decoder, tasks: &impl TaskView, record: KernelEvent, prepared: Prepared) -> Decoded {
    dec.base = prepared.base;
    let decoded = decode_prepared(dec, tasks, record);
    // What `prepare` read was for this record alone.
    dec.base = None;
    decoded
}

fn decode_prepared(dec: &mut Decoder, tasks: &impl TaskView, record: KernelEvent) -> Decoded {
    let task_id = record.header().task_id;
    let facts = tasks.facts(task_id, record.header().boot_ns);
    let task = facts.as_ref();
    match record {
        KernelEvent::TaskEmpty(_) => Decoded::TaskEmpty(task_id),
        KernelEvent::Fork(e) => {
            let parent = (e.header.tgid, e.header.exec_ns);
            dec.lineage.learn((e.child_tgid, e.header.boot_ns), parent, task_id);
            Decoded::Nothing
        }
        KernelEvent::ExecStart(e) => {
            let parent = (e.header.ptgid, e.header.parent_exec_ns);
            dec.lineage.learn((e.header.tgid, e.header.exec_ns), parent, task_id);
            Decoded::Nothing
        }
        KernelEvent::TagLost(e) => {
            let verdict = Verdict {
                decision: Decision::Denied,
                policy_decision: None,
                enforcement: Level::Kill,
                rule: "guard.tag_limit".into(),
                reason: format!("child {} could not be tagged (PROC_TAGS is full): killed", e.child_tgid),
            };
            let event = record_event(dec, Body::TagLost(verdict), &e.header, task);
            Decoded::TagLost { task_id, child: e.child_tgid, event: Box::new(event) }
        }
        KernelEvent::Tamper(e) => {
            let verdict = Verdict {
                decision: Decision::Denied,
                policy_decision: None,
                enforcement: Level::Lsm,
                rule: "guard.self_protection".into(),
                reason: super::escape::tamper_reason(e.detail, e.child_tgid),
            };
            Decoded::Event(Box::new(record_event(dec, Body::Tamper(verdict), &e.header, task)))
        }
        KernelEvent::Escape(e) => {
            let blocked = e.header.action == ACTION_BLOCKED;
            let route = super::escape::route(&e);
            let verdict = Verdict {
                decision: if blocked { Decision::Denied } else { Decision::Flagged },
                policy_decision: Some(if blocked { PolicyDecision::Deny } else { PolicyDecision::Flag }),
                enforcement: Level::Lsm,
                rule: "guard.containment".into(),
                reason: route.reason,
            };
            let object = EscapeObject {
                route: route.name.to_string(),
                detail: route.detail,
                target_pid: (e.target != 0).then_some(e.target),
            };
            let body = Body::TaskEscape(Action { verdict, object });
            Decoded::Event(Box::new(record_event(dec, body, &e.header, task)))
        }
        KernelEvent::Net(e) if e.header.verdict == VERDICT_IN_SCOPE => {
            let (address, protocol) = (address_of(&e.addr), protocol_name(e.protocol));
            let rules = task.and_then(|t| t.grant.net_rule_name(e.rule_index as usize)).into_iter().collect();
            Decoded::Used { task_id, rules, touched: Touched::Destination(format!("{address}:{}/{protocol}", e.port)) }
        }
        KernelEvent::File(e) if e.header.verdict == VERDICT_IN_SCOPE => {
            used_path(task, task_id, &c_string(&e.path), e.access)
        }
        KernelEvent::Exec(e) if e.header.verdict == VERDICT_IN_SCOPE => {
            used_path(task, task_id, &c_string(&e.path), ACCESS_EXEC)
        }
        KernelEvent::Net(e) if e.header.action == ACTION_HELD => held_connect(dec, &e, task),
        KernelEvent::Net(e) => Decoded::Event(Box::new(net_event(dec, &e, task))),
        KernelEvent::File(e) => file_event(dec, &e, task),
        KernelEvent::Exec(e) => exec_event(dec, &e, task),
    }
}

/// A use of an allowed path: absolute and normalised (decided by the kernel, or resolved here).
fn used_path(task: Option<&TaskFacts>, task_id: u32, path: &str, need: u32) -> Decoded {
    let rules = task.map(|t| t.grant.allowing_rules(path, need)).unwrap_or_default();
    let dir = std::path::Path::new(path).parent().map_or("/".into(), |d| d.display().to_string());
    Decoded::Used { task_id, rules, touched: Touched::Directory(dir) }
}

fn address_of(addr: &[u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(*addr);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

fn protocol_name(protocol: u32) -> String {
    match protocol {
        6 => "tcp".to_string(),
        17 => "udp".to_string(),
        other => format!("ip-proto-{other}"),
    }
}

fn net_event(dec: &mut Decoder, e: &NetEvent, task: Option<&TaskFacts>) -> Event {
    let (address, protocol) = (address_of(&e.addr), protocol_name(e.protocol));
    let blocked = e.header.action == ACTION_BLOCKED;
    let lsm = e.hook == HOOK_LSM_CONNECT4 || e.hook == HOOK_LSM_CONNECT6;
    let mut verdict = out_of_scope(
        &e.header,
        task,
        if blocked { Decision::Denied } else { Decision::Flagged },
        if lsm { Level::Lsm } else { Level::Cgroup },
    );
    if e.header.verdict == VERDICT_ASK {
        // An `ask` rule where nothing can hold the action (net.rs): refused.
        verdict.rule = task.and_then(|t| t.grant.net_rule_name(e.rule_index as usize)).unwrap_or_else(|| "?".into());
        verdict.reason = format!(
            "rule {} asks a human, but a {} to {address}:{} cannot be held here (only connects, with BPF LSM): refused",
            verdict.rule,
            if lsm || matches!(e.hook, HOOK_CONNECT4 | HOOK_CONNECT6) { "connect" } else { "datagram send" },
            e.port
        );
        verdict.policy_decision = Some(PolicyDecision::Deny);
    } else if matches!(e.header.verdict, VERDICT_RULE_DENY | VERDICT_FLAGGED) {
        let what = if e.header.verdict == VERDICT_FLAGGED { "flags" } else { "refuses" };
        verdict.rule = task.and_then(|t| t.grant.net_rule_name(e.rule_index as usize)).unwrap_or_else(|| "?".into());
        verdict.reason = format!("rule {} {what} {protocol} to {address}:{}", verdict.rule, e.port);
        verdict.policy_decision = Some(if blocked { PolicyDecision::Deny } else { PolicyDecision::Flag });
    } else if verdict.rule == "default-deny" {
        verdict.reason = format!(
            "no rule of grant {} allows {protocol} to {address}:{}",
            task.map_or("(unknown)", |t| t.task.grant.as_str()),
            e.port
        );
    }
    let learned_from = task.and_then(|t| t.learned.get(&e.addr)).map(|l| l.name.clone());
    let object = NetworkObject { address: address.to_string(), port: e.port as u16, protocol, learned_from };
    let send = e.hook == HOOK_SENDMSG4 || e.hook == HOOK_SENDMSG6;
    let action = Action { verdict, object };
    let body = if send { Body::NetworkSend(action) } else { Body::NetworkConnect(action) };
    record_event(dec, body, &e.header, task)
}

/// The directory process `tgid`'s relative paths at `dfd` start from: its cwd or the
/// directory fd's target; None when the process is gone.
fn base_of(tgid: u32, dfd: i32) -> Option<PathBuf> {
    let link = if dfd == AT_FDCWD { format!("/proc/{tgid}/cwd") } else { format!("/proc/{tgid}/fd/{dfd}") };
    std::fs::read_link(link).ok()
}

/// Resolves a path the kernel could not decide: against the process's cwd or directory fd
/// (as `Decoder::prepare` read it, or read now). Returns None when it cannot be resolved any
/// more (the process is gone).
fn resolve(dec: &mut Decoder, tgid: u32, dfd: i32, path: &str) -> Option<String> {
    if path.starts_with('/') {
        return Some(normalize_path("/", path));
    }
    let base = match dec.base.take() {
        Some((key, base)) if key == (tgid, dfd) => base,
        _ => base_of(tgid, dfd),
    }?;
    Some(normalize_path(&base.to_string_lossy(), path))
}

/// For a path the kernel left undecided: Some(resolved path) if it is still out of scope,
/// None if the grant allows it after all.
fn undecided_path(
    dec: &mut Decoder,
    e_flags: u32,
    header: &EventHeader,
    dfd: i32,
    raw: &str,
    need: u32,
    task: Option<&TaskFacts>,
) -> Result<(String, String), String> {
    if e_flags & PATH_TRUNCATED != 0 {
        return Ok((raw.to_string(), "path longer than the kernel matches (255 bytes): out of scope".into()));
    }
    let Some(resolved) = resolve(dec, header.tgid, dfd, raw) else {
        return Ok((raw.to_string(), "relative path could not be resolved (process gone): out of scope".into()));
    };
    let decision = task.map_or(PathDecision::OutOfScope, |t| t.grant.path_decision(&resolved, need).0);
    if decision == PathDecision::Allow {
        return Err(resolved);
    }
    let how = if e_flags & PATH_FD_LINK != 0 {
        "descriptor link"
    } else if e_flags & PATH_RELATIVE != 0 {
        "relative"
    } else if e_flags & PATH_UNNORMALIZED != 0 {
        "unnormalised"
    } else {
        ""
    };
    Ok((resolved, format!("{how} path resolved lexically by the daemon")))
}

/// The note on a path the grant allows as spelled whose file Landlock refused.
const ELSEWHERE: &str = "the path as spelled is in the grant, but was refused: it leads out of it (a symlink, a hard link or a mount), or the file's permissions or a seccomp filter of the agent's own refused it";

/// What the kernel saw of a path-bearing action (file open or exec).
struct PathAction<'a> {
    exec: bool,
    header: &'a EventHeader,
    raw_path: &'a [u8],
    path_flags: u32,
    dfd: i32,
    need: u32,
}

/// The verdict on a file or exec action, with the path it concerns; Err(path) when the path,
/// resolved here because the kernel could not decide it, is in scope after all (a use).
fn observed_verdict(
    dec: &mut Decoder,
    action: &PathAction<'_>,
    task: Option<&TaskFacts>,
) -> Result<(Verdict, String), String> {
    let raw = c_string(action.raw_path);
    let (path, note) = if action.header.verdict == VERDICT_UNRESOLVED {
        match undecided_path(dec, action.path_flags, action.header, action.dfd, &raw, action.need, task) {
            Ok((path, note)) => (path, Some(note)),
            // Landlock refused what the spelling allows: the file is elsewhere.
            Err(path) if action.header.action == ACTION_LANDLOCK => (path, Some(ELSEWHERE.to_string())),
            Err(path) => return Err(path),
        }
    } else if action.path_flags & PATH_RESOLVED_ELSEWHERE != 0 {
        (raw, Some(ELSEWHERE.to_string()))
    } else {
        (raw, None)
    };
    // Refused by a BPF LSM hook, answered by killing the process, or let through (audit mode,
    // or a path only the daemon could resolve, which is observed).
    let level = if action.exec { dec.enforcement.exec } else { dec.enforcement.file };
    let (decision, enforcement) = match action.header.action {
        ACTION_BLOCKED => (Decision::Denied, level),
        ACTION_KILLED => (Decision::Denied, Level::Kill),
        ACTION_LANDLOCK => (Decision::Denied, Level::Landlock),
        _ if level == Level::Lsm => (Decision::Flagged, Level::Lsm),
        _ => (Decision::Flagged, Level::Observe),
    };
    let mut verdict = out_of_scope(action.header, task, decision, enforcement);
    name_path_rule(&mut verdict, action.header.verdict, &path, action.need, task);
    if action.header.action == ACTION_KILLED {
        verdict.reason.push_str(" (the process was killed; without BPF LSM the syscall itself may have run)");
    } else if action.header.action == ACTION_LANDLOCK {
        verdict.reason.push_str(" (refused by Landlock with EACCES; the process lives on)");
    }
    if let Some(note) = note {
        let _ = write!(verdict.reason, " ({note})");
    }
    Ok((verdict, path))
}

/// For a path action a rule decided (deny or flag, in the kernel or, for a path only the
/// daemon could resolve, here): names the rule, from the reference evaluator.
fn name_path_rule(verdict: &mut Verdict, kernel_verdict: u32, path: &str, need: u32, task: Option<&TaskFacts>) {
    let Some((decision, Some(rule))) = task.map(|t| t.grant.path_decision(path, need)) else { return };
    let what = match decision {
        PathDecision::Deny => "refuses",
        PathDecision::Flag => "flags",
        _ => return,
    };
    if matches!(kernel_verdict, VERDICT_RULE_DENY | VERDICT_FLAGGED | VERDICT_UNRESOLVED) {
        verdict.reason = format!("rule {rule} {what} {path}");
        verdict.rule = rule;
        if decision == PathDecision::Flag {
            verdict.policy_decision = Some(PolicyDecision::Flag);
        }
    }
}

/// The approval-request event for an action the kernel holds (its approval id is filed by the
/// registry).
fn held(
    dec: &mut Decoder,
    header: &EventHeader,
    task: Option<&TaskFacts>,
    exec: bool,
    raw: &[u8],
    access: u32,
) -> Decoded {
    let path = c_string(raw);
    let what = if exec { "exec" } else { "file" };
    // BPF LSM holds it, or at the `landlock` level the daemon's seccomp supervisor.
    let level = if exec { dec.enforcement.exec } else { dec.enforcement.file };
    let mut verdict = out_of_scope(header, task, Decision::Held, level);
    verdict.rule = "ask".into();
    verdict.reason = format!(
        "an ask rule matched: {what} {path} ({}) waits for a human",
        access_names(access).iter().map(|a| a.as_str()).collect::<Vec<_>>().join("+")
    );
    let object = if exec {
        HeldObject::Executable(ExecObject { path: path.clone() })
    } else {
        HeldObject::File(FileObject { path: path.clone(), access: access_names(access), operation: None })
    };
    let event = record_event(dec, Body::ApprovalRequest(Held { verdict, approval: 0, object }), header, task);
    Decoded::Held(HeldAction {
        task_id: header.task_id,
        tid: header.pid,
        tgid: header.tgid,
        object: what,
        path,
        access,
        hash: None,
        event: Box::new(event),
    })
}

/// The approval-request event for a connect BPF LSM holds (lsm.rs `socket_connect`).
fn held_connect(dec: &mut Decoder, e: &NetEvent, task: Option<&TaskFacts>) -> Decoded {
    let (address, protocol) = (address_of(&e.addr), protocol_name(e.protocol));
    let mut verdict = out_of_scope(&e.header, task, Decision::Held, Level::Lsm);
    verdict.rule = task.and_then(|t| t.grant.net_rule_name(e.rule_index as usize)).unwrap_or_else(|| "ask".into());
    verdict.reason = format!("an ask rule matched: {protocol} connect to {address}:{} waits for a human", e.port);
    let learned_from = task.and_then(|t| t.learned.get(&e.addr)).map(|l| l.name.clone());
    let object = NetworkObject { address: address.to_string(), port: e.port as u16, protocol, learned_from };
    let path = if e.addr[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] {
        format!("{}:{}/{}", object.address, object.port, object.protocol)
    } else {
        format!("[{}]:{}/{}", object.address, object.port, object.protocol)
    };
    let hash = agent_guard_common::net::destination_hash(&e.addr, e.port as u16, e.protocol);
    let event = record_event(
        dec,
        Body::ApprovalRequest(Held { verdict, approval: 0, object: HeldObject::Network(object) }),
        &e.header,
        task,
    );
    Decoded::Held(HeldAction {
        task_id: e.header.task_id,
        tid: e.header.pid,
        tgid: e.header.tgid,
        object: "connect",
        path,
        access: agent_guard_common::net::APPROVAL_CONNECT,
        hash: Some(hash),
        event: Box::new(event),
    })
}

/// `FILE_OP_*` as `object.operation` of file.change events.
fn operation_of(op: u32) -> Option<FileOperation> {
    Some(match op {
        FILE_OP_CREATE => FileOperation::Create,
        FILE_OP_UNLINK => FileOperation::Unlink,
        FILE_OP_MKDIR => FileOperation::Mkdir,
        FILE_OP_RMDIR => FileOperation::Rmdir,
        FILE_OP_RENAME_FROM => FileOperation::RenameFrom,
        FILE_OP_RENAME_TO => FileOperation::RenameTo,
        FILE_OP_LINK => FileOperation::Link,
        FILE_OP_SYMLINK => FileOperation::Symlink,
        FILE_OP_TRUNCATE => FileOperation::Truncate,
        FILE_OP_CHMOD => FileOperation::Chmod,
        FILE_OP_CHOWN => FileOperation::Chown,
        FILE_OP_XATTR => FileOperation::Xattr,
        FILE_OP_SETATTR => FileOperation::Setattr,
        FILE_OP_UNIX_CONNECT => FileOperation::UnixConnect,
        _ => return None,
    })
}

fn file_event(dec: &mut Decoder, e: &FileEvent, task: Option<&TaskFacts>) -> Decoded {
    if e.header.verdict == VERDICT_ASK {
        return held(dec, &e.header, task, false, &e.path, e.access);
    }
    let operation = operation_of(e.op);
    let action = PathAction {
        exec: false,
        header: &e.header,
        raw_path: &e.path,
        path_flags: e.path_flags,
        dfd: e.dfd,
        need: e.access,
    };
    let (mut verdict, path) = match observed_verdict(dec, &action, task) {
        Ok(observed) => observed,
        Err(path) => return used_path(task, e.header.task_id, &path, e.access),
    };
    match e.op {
        FILE_OP_LINK => verdict
            .reason
            .push_str(" (hard links are refused inside a task: their source cannot be resolved to a path)"),
        FILE_OP_RENAME_FROM if e.header.action == ACTION_BLOCKED => verdict.reason.push_str(
            " (a rename also needs its source to hold nothing a deny, ask or flag rule names, itself or below it)",
        ),
        _ => {}
    }
    let action = Action { verdict, object: FileObject { path, access: access_names(e.access), operation } };
    // Connecting to a Unix socket opens its file for writing (kernel DAC: MAY_WRITE): file.open.
    let body = match operation {
        Some(op) if op != FileOperation::UnixConnect => Body::FileChange(action),
        _ => Body::FileOpen(action),
    };
    Decoded::Event(Box::new(record_event(dec, body, &e.header, task)))
}

fn exec_event(dec: &mut Decoder, e: &ExecEvent, task: Option<&TaskFacts>) -> Decoded {
    if e.header.verdict == VERDICT_ASK {
        return held(dec, &e.header, task, true, &e.path, ACCESS_EXEC);
    }
    let action = PathAction {
        exec: true,
        header: &e.header,
        raw_path: &e.path,
        path_flags: e.path_flags,
        dfd: AT_FDCWD,
        need: ACCESS_EXEC,
    };
    let (verdict, path) = match observed_verdict(dec, &action, task) {
        Ok(observed) => observed,
        Err(path) => return used_path(task, e.header.task_id, &path, ACCESS_EXEC),
    };
    let body = Body::ProcessExec(Action { verdict, object: ExecObject { path } });
    let mut event = record_event(dec, body, &e.header, task);
    if let Some(process) = event.process.as_mut() {
        let argc = (e.argc as usize).min(e.argv.len());
        process.argv = Some(e.argv[..argc].iter().map(|a| c_string(a)).collect());
    }
    Decoded::Event(Box::new(event))
}
