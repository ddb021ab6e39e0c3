//! Held actions: filed when the kernel holds one, decided by a human or by the deadline;
//! `approve --for` allowances and their end.

use std::time::{Duration, Instant, SystemTime};

use agent_guard_common::{
    path::{APPROVED_SHIFT, PathRule, fnv1a_seeded},
    task::{APPROVAL_GRANTED, APPROVAL_REFUSED},
};

use crate::api::{ApprovalInfo, ApprovalState, ErrorCode, Level};
use crate::daemon::{
    clock::{self, boot_ns_now},
    events::{
        decode::{HeldAction, access_names},
        schema::{Answer, Body, Decision, Event, Verdict},
    },
};

use super::{
    registry::{Refusal, Registry, Task, refuse},
    requests::{Decider, PendingAccess},
};

/// Held actions one task may have waiting at once. Past it, a further one is refused at once
/// (`held_full`): every held call of the `landlock` level keeps a daemon thread, and a human
/// cannot read a flood of questions anyway.
pub const MAX_PENDING_PER_TASK: usize = 32;
/// Decided approvals kept for `approvals` (the newest); older ones are dropped, their answers
/// being in the event stream and the audit store.
const DECIDED_KEPT: usize = 1_000;

/// An action held in the kernel, waiting for a human.
pub(super) struct Held {
    pub(super) info: ApprovalInfo,
    pub(super) tid: u32,
    pub(super) tgid: u32,
    pub(super) access: u32,
    pub(super) hash: u64,
    pub(super) deadline: Instant,
    /// Held by the seccomp supervisor (the `landlock` level, supervise.rs), which answers the
    /// call with what is sent here; None: held in the kernel by BPF LSM (SIGSTOP).
    pub(super) reply: Option<std::sync::mpsc::Sender<bool>>,
    /// Refused on arrival: its task had `MAX_PENDING_PER_TASK` waiting already.
    pub(super) overflow: bool,
    /// Not an action but a task's request for more access (requests.rs).
    pub(super) request: Option<PendingAccess>,
}

/// A path allowed for a while by `approve --for`, and what to restore when it ends.
pub(super) struct TemporaryAllow {
    pub(super) task_id: u32,
    pub(super) hash: u64,
    pub(super) previous: Option<PathRule>,
    /// The approved bits it added (0 in states saved by older daemons: `previous` is then put
    /// back whole).
    pub(super) bits: u32,
    /// `CLOCK_BOOTTIME` of the end (saved across daemon restarts, state.rs).
    pub(super) until_ns: u64,
}

/// Approval ids saved as used at a time, ahead of being given (`take_approval_id`).
const APPROVAL_ID_BLOCK: u32 = 64;

impl Registry {
    /// Files an action the kernel holds and reports it (`approval.request`).
    pub fn hold(&mut self, held: HeldAction) {
        self.file_held(held, None);
    }

    /// Files a call the seccomp supervisor holds; its answer goes to `reply`.
    pub(super) fn hold_call(&mut self, held: HeldAction, reply: std::sync::mpsc::Sender<bool>) {
        self.file_held(held, Some(reply));
    }

    /// The next approval id. Ids are saved as used in blocks of `APPROVAL_ID_BLOCK`, ahead of
    /// being given, so that a question can go out to the channels at once and still no later
    /// daemon gives its id to another question (whose answer the old one's would decide), even
    /// if this daemon dies before its next save. Crossing a block writes one small file
    /// (`next-approval`) under the registry lock: once per 64 questions.
    pub(super) fn take_approval_id(&mut self) -> u32 {
        let id = self.next_approval;
        self.next_approval += 1;
        if self.next_approval > self.approvals_saved {
            let block = self.next_approval.saturating_add(APPROVAL_ID_BLOCK);
            // On failure (logged) the next question tries again.
            if self.state.as_ref().is_none_or(|state| state.reserve_approvals(block)) {
                self.approvals_saved = block;
            }
        }
        id
    }

    /// Whether task `task_id` already has `MAX_PENDING_PER_TASK` actions waiting.
    pub(super) fn held_full(&self, task_id: u32) -> bool {
        self.approvals.values().filter(|h| h.info.task == task_id && h.info.state == ApprovalState::Pending).count()
            >= MAX_PENDING_PER_TASK
    }

    fn file_held(&mut self, held: HeldAction, reply: Option<std::sync::mpsc::Sender<bool>>) {
        let full = self.held_full(held.task_id);
        let id = self.take_approval_id();
        let now = SystemTime::now();
        let task = self.tasks.get(&held.task_id);
        let info = ApprovalInfo {
            id,
            task: held.task_id,
            agent: task.map(|t| t.info.agent.clone()).unwrap_or_default(),
            intent: task.map(|t| t.info.intent.clone()).unwrap_or_default(),
            pid: held.tgid,
            object: held.object.to_string(),
            path: held.path.clone(),
            access: access_names(held.access).iter().map(|a| a.as_str().to_string()).collect(),
            requested: clock::rfc3339(now),
            deadline: clock::rfc3339(now + self.approval_timeout),
            state: ApprovalState::Pending,
            request: None,
        };
        let hash = held.hash.unwrap_or_else(|| fnv1a_seeded(self.kernel.path_seed, held.path.as_bytes()));
        let mut event = *held.event;
        if let Body::ApprovalRequest(request) = &mut event.body {
            request.approval = id;
        }
        self.sink.send(event);
        self.channels_ask(&info);
        self.approvals.insert(
            id,
            Held {
                info,
                tid: held.tid,
                tgid: held.tgid,
                access: held.access,
                hash,
                deadline: Instant::now() + self.approval_timeout,
                reply,
                overflow: full,
                request: None,
            },
        );
        if full {
            // Reported like any other, then refused without waiting for anyone.
            tracing::warn!(task = held.task_id, approval = id, "too many held actions waiting: refused");
            let _ = self.decide(id, false, None, None);
        }
    }

    /// Approves or refuses held action or access request `id` (`by`: who, None when the
    /// daemon refuses it), then continues the held process.
    pub fn decide(
        &mut self,
        id: u32,
        approve: bool,
        allow_for: Option<Duration>,
        by: Option<&Decider>,
    ) -> Result<ApprovalInfo, Refusal> {
        let held = self.approvals.get(&id).ok_or_else(|| refuse(ErrorCode::NotFound, format!("no approval {id}")))?;
        if held.info.state != ApprovalState::Pending {
            return Err(refuse(ErrorCode::BadRequest, format!("approval {id} is already {}", held.info.state)));
        }
        if let Some(by) = by {
            self.check_decider(held, by)?;
        }
        if held.request.is_some() {
            if allow_for.is_some() {
                return Err(refuse(
                    ErrorCode::BadRequest,
                    format!("approval {id} is an access request: it is approved for the time it asked, not --for"),
                ));
            }
            return self.decide_request(id, approve, by);
        }
        if allow_for.is_some() && held.info.object == "connect" {
            return Err(refuse(
                ErrorCode::BadRequest,
                format!("approval {id} holds a connect: --for allows paths; approve it without --for"),
            ));
        }
        let state = if approve { APPROVAL_GRANTED } else { APPROVAL_REFUSED };
        // The seccomp supervisor's refusals need no record: the call fails before it reaches
        // the kernel's checks.
        if approve || held.reply.is_none() {
            self.kernel.decide_held(held.tid, state, held.access, held.hash)?;
        }
        if approve && let Some(duration) = allow_for {
            let (task_id, hash, access) = (held.info.task, held.hash, held.access);
            let grant_id = task_id;
            let bits = access << APPROVED_SHIFT;
            let previous = self.kernel.add_path_bits(grant_id, hash, bits)?;
            let until_ns = boot_ns_now().saturating_add(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX));
            self.temporary.push(TemporaryAllow { task_id, hash, previous, bits, until_ns });
        }
        let held = self.approvals.get_mut(&id).expect("checked above");
        let overflow = held.overflow;
        held.info.state = if approve {
            ApprovalState::Approved
        } else if overflow {
            ApprovalState::Refused
        } else if by.is_none() {
            ApprovalState::TimedOut
        } else {
            ApprovalState::Denied
        };
        // The approval is filed (above) before the call goes on, so the exit programs find it.
        let enforcement = if let Some(reply) = held.reply.take() {
            let _ = reply.send(approve);
            Level::Landlock
        } else {
            let pid = nix::unistd::Pid::from_raw(held.tgid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
            Level::Lsm
        };
        let info = held.info.clone();
        let reason = match (approve, by, allow_for) {
            (true, Some(by), Some(d)) => {
                format!(
                    "approved by {} for {}: {} {}",
                    by.approver,
                    humantime::format_duration(d),
                    info.object,
                    info.path
                )
            }
            (true, Some(by), None) => format!("approved by {}: {} {}", by.approver, info.object, info.path),
            (_, None, _) if overflow => {
                format!("{MAX_PENDING_PER_TASK} actions of this task were waiting already: refused at once")
            }
            (_, None, _) => {
                format!("no answer within {}: refused", humantime::format_duration(self.approval_timeout))
            }
            (false, Some(by), _) => format!("denied by {}: {} {}", by.approver, info.object, info.path),
        };
        let verdict = Verdict {
            decision: if approve { Decision::Allowed } else { Decision::Denied },
            policy_decision: None,
            enforcement,
            rule: "ask".into(),
            reason,
        };
        let answer = Answer {
            verdict,
            approval: id,
            actor: by.and_then(|b| b.actor.clone()),
            approvers: by.map(|b| vec![b.approver.clone()]).unwrap_or_default(),
        };
        let body = if approve { Body::ApprovalGranted(answer) } else { Body::ApprovalDenied(answer) };
        let mut event = Event::new(body, &self.host, SystemTime::now());
        event.task = self.tasks.get(&info.task).map(Task::task_ref);
        self.sink.send(event);
        self.channels_decided(&info);
        Ok(info)
    }

    /// Refuses held actions nobody answered in time, and ends `approve --for` allowances.
    pub fn expire(&mut self) {
        let now = Instant::now();
        let late: Vec<u32> = self
            .approvals
            .iter()
            .filter(|(_, h)| h.info.state == ApprovalState::Pending && h.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            let _ = self.decide(id, false, None, None);
        }
        let decided: Vec<u32> =
            self.approvals.iter().filter(|(_, h)| h.info.state != ApprovalState::Pending).map(|(id, _)| *id).collect();
        for id in decided.iter().take(decided.len().saturating_sub(DECIDED_KEPT)) {
            self.approvals.remove(id);
        }
        let now_ns = boot_ns_now();
        let (ended, kept): (Vec<_>, Vec<_>) = self.temporary.drain(..).partition(|t| t.until_ns <= now_ns);
        self.temporary = kept;
        for t in ended {
            // Only the bits no other allowance still in force added for the same path.
            let kept: u32 = self
                .temporary
                .iter()
                .filter(|o| o.task_id == t.task_id && o.hash == t.hash)
                .map(|o| o.bits)
                .fold(0, |a, b| a | b);
            if t.bits == 0 {
                self.kernel.restore_path_rule(t.task_id, t.hash, t.previous);
            } else {
                self.kernel.clear_path_bits(t.task_id, t.hash, t.bits & !kept);
            }
        }
        self.narrow_expired();
    }

    pub fn approvals(&self) -> Vec<ApprovalInfo> {
        self.approvals.values().map(|h| h.info.clone()).collect()
    }
}
