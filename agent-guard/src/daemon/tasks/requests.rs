//! Access requests: a task asks for more (`agent-guard request`, the MCP tool
//! `request_access`), approvers its profile names say yes on any channel, and the task's grant
//! widens in the kernel for the approved time, never past the task's own expiry, then narrows
//! again by itself (`expire`, once a second).
//!
//! The widened grant is the task's grant as opened plus the rules of every approved request in
//! force (`grant::widened`); it is compiled and written over the old one entry by entry
//! (`Kernel::replace_grant`), so the kernel never holds less than either grant during a change
//! nor anything half-written after a failure.
//!
//! Who may decide (`check_decider`): only approvers the task's profile lists (`approvers`),
//! never the requester itself: its tasks cannot reach a decision (the API refuses tagged
//! callers), and a local approver may not share a uid with the task's opener or requester.

use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::api::{AccessRules, ApprovalInfo, ApprovalState, ErrorCode, GrantView, RequestInfo, WideningInfo};
use crate::daemon::{
    clock::{self, boot_ns_now},
    events::schema::{
        AccessObject, Actor, Approver, Body, Channel, Decision, Event, Held as HeldEvent, HeldObject, Narrowed, Verdict,
    },
};
use crate::grant::{CompiledGrant, GrantSpec, rule_lines, widened};
use crate::policy::ApproverId;

use super::{
    approvals::{Held, MAX_PENDING_PER_TASK},
    registry::{Refusal, Registry, refuse},
};

/// A reason is at most this long (it is shown to approvers and kept in the audit store).
const MAX_REASON: usize = 1024;

/// What a task may request and who decides, and the approved requests widening it; saved with
/// the task (state.rs).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TaskAccess {
    /// The profile the task was opened from (its `approvers` and `requestable` are read at
    /// each request and decision: a policy reload applies at once).
    pub profile: Option<String>,
    /// The uid of the process that opened the task: never an approver of its requests.
    pub opener_uid: u32,
    /// The grant as opened, before any request widened it.
    pub base: GrantSpec,
    /// Approved requests in force.
    pub widenings: Vec<Widening>,
    /// The requestable rules the task's Landlock ruleset holds (the `landlock` level): its
    /// supervisor refuses them until a request is approved (`requestable_not_granted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_ruleset: Option<GrantSpec>,
}

/// An approved request's rules, in the grant until `until_ns`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Widening {
    pub approval: u32,
    pub spec: GrantSpec,
    /// `CLOCK_BOOTTIME` of the end.
    pub until_ns: u64,
    /// RFC 3339 of the end, for display.
    pub until: String,
}

/// A request waiting for its approvers.
pub(super) struct PendingAccess {
    pub(super) spec: GrantSpec,
    pub(super) duration: Duration,
    pub(super) needed: u32,
    pub(super) votes: Vec<Approver>,
    pub(super) requester_uid: u32,
}

/// Who decides: the identity a channel vouches for, and the local process when it came
/// through the API.
#[derive(Clone, Debug)]
pub struct Decider {
    pub approver: Approver,
    pub actor: Option<Actor>,
}

impl Decider {
    /// A local user deciding through the API (the CLI).
    pub fn local(actor: &Actor) -> Decider {
        Decider {
            approver: Approver { channel: Channel::Cli, id: format!("uid:{}", actor.uid), name: actor.user.clone() },
            actor: Some(actor.clone()),
        }
    }

    /// Whether `allowed` names this decider.
    fn is(&self, allowed: &ApproverId) -> bool {
        let local = self.actor.as_ref().filter(|_| self.approver.channel == Channel::Cli);
        match allowed {
            ApproverId::Unix(name) => local.is_some_and(|a| a.user.as_deref() == Some(name.as_str())),
            ApproverId::Uid(uid) => local.is_some_and(|a| a.uid == *uid),
            ApproverId::Slack(id) => self.approver.channel == Channel::Slack && self.approver.id == *id,
            ApproverId::Teams(id) => self.approver.channel == Channel::Teams && self.approver.id == *id,
            ApproverId::Webhook(id) => self.approver.channel == Channel::Webhook && self.approver.id == *id,
        }
    }
}

impl Registry {
    /// Files a request of the task of the calling process (`actor`), or refuses it at once.
    pub fn request_access(
        &mut self,
        actor: &Actor,
        rules: &AccessRules,
        duration: Duration,
        reason: &str,
    ) -> Result<ApprovalInfo, Refusal> {
        let (task_id, spec, needed) = self.check_request(actor, rules, duration, reason)?;
        let id = self.take_approval_id();
        let task = &self.tasks[&task_id];
        let now = SystemTime::now();
        let lines = rule_lines(&spec);
        let request = RequestInfo {
            rules: lines.clone(),
            duration_secs: duration.as_secs(),
            reason: reason.to_string(),
            approvals_needed: needed,
            approved_by: Vec::new(),
            until: None,
        };
        let info = ApprovalInfo {
            id,
            task: task_id,
            agent: task.info.agent.clone(),
            intent: task.info.intent.clone(),
            pid: actor.pid,
            object: "access".into(),
            path: lines.join(", "),
            access: Vec::new(),
            requested: clock::rfc3339(now),
            deadline: clock::rfc3339(now + self.approval_timeout),
            state: ApprovalState::Pending,
            request: Some(request),
        };
        let verdict = Verdict {
            decision: Decision::Held,
            policy_decision: None,
            enforcement: self.kernel.enforcement.file,
            rule: "requestable".into(),
            reason: format!(
                "task asks for {} for {}{}",
                lines.join(", "),
                humantime::format_duration(duration),
                if needed > 1 { " (two approvers needed)" } else { "" }
            ),
        };
        let object = HeldObject::Access(AccessObject {
            requested: spec.clone(),
            duration_secs: duration.as_secs(),
            reason: reason.to_string(),
            approvals_needed: needed,
            requester: actor.clone(),
        });
        let mut event = Event::new(Body::ApprovalRequest(HeldEvent { verdict, approval: id, object }), &self.host, now);
        event.task = Some(task.task_ref());
        self.sink.send(event);
        self.approvals.insert(
            id,
            Held {
                info: info.clone(),
                tid: 0,
                tgid: actor.pid,
                access: 0,
                hash: 0,
                deadline: Instant::now() + self.approval_timeout,
                reply: None,
                overflow: false,
                request: Some(PendingAccess { spec, duration, needed, votes: Vec::new(), requester_uid: actor.uid }),
            },
        );
        self.channels_ask(&info);
        Ok(info)
    }

    /// The checks of a request, in the order a caller learns most from: its task, the text,
    /// the profile, the rules, the duration. The task, the rules, and the approvers needed.
    fn check_request(
        &self,
        actor: &Actor,
        rules: &AccessRules,
        duration: Duration,
        reason: &str,
    ) -> Result<(u32, GrantSpec, u32), Refusal> {
        let forbidden = |m: String| refuse(ErrorCode::Forbidden, m);
        let task_id =
            self.kernel.task_of(actor.pid).ok_or_else(|| forbidden("only a task's processes request access".into()))?;
        let task = self.tasks.get(&task_id).ok_or_else(|| forbidden(format!("no task {task_id}")))?;
        if task.info.ended.is_some() || task.info.revoked || task.expires_ns <= boot_ns_now() {
            return Err(forbidden(format!("task {task_id} has ended: it cannot request access")));
        }
        if task.info.parent.is_some() {
            return Err(forbidden(format!(
                "task {task_id} is a sub-task: requests are made by the task its profile opened"
            )));
        }
        super::open::check_label("reason", reason, MAX_REASON)?;
        let profile_name = task.access.profile.clone().ok_or_else(|| {
            forbidden(format!("task {task_id} was opened from a grant file: it has nothing it may request"))
        })?;
        let profile = self
            .policies
            .profiles
            .get(&profile_name)
            .ok_or_else(|| forbidden(format!("profile {profile_name} is no longer in the daemon's policies")))?;
        let requestable = profile
            .spec
            .requestable
            .as_ref()
            .ok_or_else(|| forbidden(format!("profile {profile_name} has no requestable rules")))?;
        let spec = rules.spec();
        let invalid = |m: String| refuse(ErrorCode::InvalidGrant, m);
        if rule_lines(&spec).is_empty() {
            return Err(invalid("the request names no rules".into()));
        }
        spec.validate().map_err(invalid)?;
        if let Some(target) = crate::policy::not_allow(&spec) {
            return Err(invalid(format!("{target}: a request asks for allow rules only")));
        }
        if let Some(rule) = spec.network.connect.iter().find(|r| r.target.name().is_some()) {
            return Err(invalid(format!("network.connect {}: name rules cannot be requested yet", rule.target)));
        }
        if duration.is_zero() || duration > requestable.max_duration {
            return Err(forbidden(format!(
                "duration {} is not within 1s..{} (profile {profile_name}'s requestable.maxDuration)",
                humantime::format_duration(duration),
                humantime::format_duration(requestable.max_duration)
            )));
        }
        let needed = requestable.approvals_needed(&spec).map_err(|outside| {
            forbidden(format!("not requestable by profile {profile_name}: {}", outside.join("; ")))
        })?;
        CompiledGrant::compile_seeded(
            &crate::grant::Grant { spec: widened(&task.grant.spec, [&spec]), ..task.grant.clone() },
            self.kernel.path_seed,
        )
        .map_err(|err| invalid(err.to_string()))?;
        if self.held_full(task_id) {
            return Err(forbidden(format!("task {task_id} has {MAX_PENDING_PER_TASK} questions waiting already")));
        }
        Ok((task_id, spec, needed))
    }

    /// The grant of the task of process `pid`, as the task may see it.
    pub fn grant_view(&self, pid: u32) -> Result<GrantView, Refusal> {
        let forbidden = |m: String| refuse(ErrorCode::Forbidden, m);
        let task_id =
            self.kernel.task_of(pid).ok_or_else(|| forbidden("only a task's processes ask for their grant".into()))?;
        let task = self.tasks.get(&task_id).ok_or_else(|| forbidden(format!("no task {task_id}")))?;
        let requestable = task
            .access
            .profile
            .as_ref()
            .and_then(|p| self.policies.profiles.get(p))
            .and_then(|p| p.spec.requestable.as_ref());
        let mut info = task.info.clone();
        info.remaining_secs = Duration::from_nanos(task.expires_ns.saturating_sub(boot_ns_now())).as_secs();
        Ok(GrantView {
            task: info,
            rules: rule_lines(&task.grant.spec),
            requestable: requestable
                .filter(|_| task.info.parent.is_none())
                .map(|r| {
                    r.rules
                        .iter()
                        .flat_map(|entry| {
                            let two = if entry.two_person { " (two approvers)" } else { "" };
                            rule_lines(&entry.spec()).into_iter().map(move |line| format!("{line}{two}"))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            max_request_secs: requestable.map_or(0, |r| r.max_duration.as_secs()),
            widenings: task
                .access
                .widenings
                .iter()
                .map(|w| WideningInfo { approval: w.approval, rules: rule_lines(&w.spec), until: w.until.clone() })
                .collect(),
        })
    }

    /// Refuses `decider` unless the task's profile lists it and it is not the requester.
    pub(super) fn check_decider(&self, held: &Held, decider: &Decider) -> Result<(), Refusal> {
        let forbidden = |m: String| refuse(ErrorCode::Forbidden, m);
        let task = self.tasks.get(&held.info.task);
        let profile_name = task.and_then(|t| t.access.profile.clone());
        let approvers = match &profile_name {
            Some(name) => match self.policies.profiles.get(name) {
                Some(profile) => profile.spec.approvers.clone(),
                None if held.request.is_some() => {
                    return Err(forbidden(format!("profile {name} is no longer in the daemon's policies")));
                }
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        // Held actions of tasks whose profile names nobody go to any operator, as before
        // profiles had approvers; requests always need a listed approver.
        if approvers.is_empty() && held.request.is_none() {
            return Ok(());
        }
        if !approvers.iter().any(|allowed| decider.is(allowed)) {
            return Err(forbidden(format!(
                "{} is not an approver of profile {}",
                decider.approver,
                profile_name.unwrap_or_default()
            )));
        }
        if let Some(actor) = &decider.actor {
            let opener = task.map(|t| t.access.opener_uid);
            let requester = held.request.as_ref().map(|r| r.requester_uid);
            if Some(actor.uid) == opener || Some(actor.uid) == requester {
                return Err(forbidden(format!(
                    "uid {} opened or asked for task {}: a requester never approves its own request",
                    actor.uid, held.info.task
                )));
            }
        }
        Ok(())
    }

    /// Decides access request `id` (checked by `decide`): a denial ends it; an approval counts
    /// a vote, and the last vote needed widens the grant.
    pub(super) fn decide_request(
        &mut self,
        id: u32,
        approve: bool,
        by: Option<&Decider>,
    ) -> Result<ApprovalInfo, Refusal> {
        let held = self.approvals.get_mut(&id).expect("checked by decide");
        let pending = held.request.as_mut().expect("checked by decide");
        let task_id = held.info.task;
        if approve && let Some(by) = by {
            if pending.votes.iter().any(|v| v.channel == by.approver.channel && v.id == by.approver.id) {
                return Err(refuse(ErrorCode::BadRequest, format!("{} approved request {id} already", by.approver)));
            }
            pending.votes.push(by.approver.clone());
            if let Some(request) = held.info.request.as_mut() {
                request.approved_by = pending.votes.iter().map(ToString::to_string).collect();
            }
            if (pending.votes.len() as u32) < pending.needed {
                let info = held.info.clone();
                self.channels_decided(&info);
                return Ok(info);
            }
        }
        let (spec, duration, votes) = (pending.spec.clone(), pending.duration, pending.votes.clone());
        let lines = rule_lines(&spec).join(", ");
        let mut outcome = if approve && by.is_some() {
            ApprovalState::Approved
        } else if by.is_some() {
            ApprovalState::Denied
        } else {
            ApprovalState::TimedOut
        };
        let mut reason = match by {
            Some(_) if approve => format!(
                "approved by {} for {}: {lines}",
                votes.iter().map(ToString::to_string).collect::<Vec<_>>().join(" and "),
                humantime::format_duration(duration)
            ),
            Some(by) => format!("denied by {}: {lines}", by.approver),
            None => format!("no answer within {}: refused", humantime::format_duration(self.approval_timeout)),
        };
        let mut until = None;
        if outcome == ApprovalState::Approved {
            match self.widen(task_id, id, spec, duration) {
                Ok(end) => until = Some(end),
                Err(err) => {
                    outcome = ApprovalState::Refused;
                    reason = format!("approved, but the grant could not be widened: {}", err.message);
                }
            }
        }
        let held = self.approvals.get_mut(&id).expect("checked by decide");
        held.info.state = outcome;
        if let Some(request) = held.info.request.as_mut() {
            request.until.clone_from(&until);
        }
        let info = held.info.clone();
        let verdict = Verdict {
            decision: if outcome == ApprovalState::Approved { Decision::Allowed } else { Decision::Denied },
            policy_decision: None,
            enforcement: self.kernel.enforcement.file,
            rule: "requestable".into(),
            reason,
        };
        let answer = crate::daemon::events::schema::Answer {
            verdict,
            approval: id,
            actor: by.and_then(|b| b.actor.clone()),
            approvers: if approve { votes } else { by.map(|b| vec![b.approver.clone()]).unwrap_or_default() },
        };
        let body = if outcome == ApprovalState::Approved {
            Body::ApprovalGranted(answer)
        } else {
            Body::ApprovalDenied(answer)
        };
        let mut event = Event::new(body, &self.host, SystemTime::now());
        event.task = self.tasks.get(&task_id).map(super::registry::Task::task_ref);
        self.sink.send(event);
        self.channels_decided(&info);
        Ok(info)
    }

    /// Adds an approved request's rules to task `task_id`'s grant until `duration` from now (or
    /// the task's expiry, if sooner); returns the end, RFC 3339.
    fn widen(&mut self, task_id: u32, approval: u32, spec: GrantSpec, duration: Duration) -> Result<String, Refusal> {
        let task = self.tasks.get(&task_id).ok_or_else(|| refuse(ErrorCode::NotFound, format!("no task {task_id}")))?;
        let now_ns = boot_ns_now();
        if task.info.ended.is_some() || task.info.revoked || task.expires_ns <= now_ns {
            return Err(refuse(ErrorCode::Forbidden, format!("task {task_id} has ended")));
        }
        let until_ns = now_ns.saturating_add(duration.as_nanos() as u64).min(task.expires_ns);
        let until = clock::rfc3339(SystemTime::now() + Duration::from_nanos(until_ns - now_ns));
        let mut widenings = task.access.widenings.clone();
        widenings.push(Widening { approval, spec, until_ns, until: until.clone() });
        self.rewrite_grant(task_id, widenings)?;
        Ok(until)
    }

    /// Writes task `task_id`'s grant as opened plus `widenings` to the kernel, and keeps it.
    fn rewrite_grant(&mut self, task_id: u32, widenings: Vec<Widening>) -> Result<(), Refusal> {
        let task = self.tasks.get(&task_id).ok_or_else(|| refuse(ErrorCode::NotFound, format!("no task {task_id}")))?;
        let mut grant = task.grant.clone();
        grant.spec = widened(&task.access.base, widenings.iter().map(|w| &w.spec));
        let compiled = CompiledGrant::compile_seeded(&grant, self.kernel.path_seed)
            .map_err(|err| refuse(ErrorCode::InvalidGrant, err.to_string()))?;
        self.kernel.replace_grant(task_id, &task.compiled, &compiled)?;
        let task = self.tasks.get_mut(&task_id).expect("looked up above");
        task.grant = grant;
        task.compiled = compiled;
        task.access.widenings = widenings;
        self.dirty.insert(task_id);
        Ok(())
    }

    /// Takes the rules of requests whose time is up out of their tasks' grants.
    pub(super) fn narrow_expired(&mut self) {
        let now_ns = boot_ns_now();
        let due: Vec<u32> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.info.ended.is_none() && t.access.widenings.iter().any(|w| w.until_ns <= now_ns))
            .map(|(id, _)| *id)
            .collect();
        for task_id in due {
            let widenings = self.tasks[&task_id].access.widenings.clone();
            let (ended, kept): (Vec<Widening>, Vec<Widening>) =
                widenings.into_iter().partition(|w| w.until_ns <= now_ns);
            if let Err(err) = self.rewrite_grant(task_id, kept) {
                // Fail closed: a grant that cannot be narrowed is revoked.
                tracing::error!(task = task_id, message = %err.message, "an approved request could not end: grant revoked");
                let _ = self.kernel.revoke_task(task_id);
                if let Some(task) = self.tasks.get_mut(&task_id) {
                    task.info.revoked = true;
                }
            }
            for widening in ended {
                if let Some(held) = self.approvals.get_mut(&widening.approval) {
                    held.info.state = ApprovalState::Ended;
                }
                let reason = format!(
                    "request {}'s time is up: {} left the grant",
                    widening.approval,
                    rule_lines(&widening.spec).join(", ")
                );
                let mut event = Event::new(
                    Body::GrantNarrow(Narrowed { approval: widening.approval, reason }),
                    &self.host,
                    SystemTime::now(),
                );
                event.task = self.tasks.get(&task_id).map(super::registry::Task::task_ref);
                self.sink.send(event);
            }
        }
    }

    /// Whether the supervisor should refuse `path` for `need` at once: the task's profile
    /// could grant it on request, no approved request does, and Landlock (whose ruleset holds
    /// the requestable paths) would let it through.
    pub(super) fn requestable_not_granted(&self, task_id: u32, path: &str, need: u32) -> bool {
        use agent_guard_common::path::Decision;
        let Some(task) = self.tasks.get(&task_id) else { return false };
        let Some(requestable) = &task.access.in_ruleset else { return false };
        // Beneath a requestable path (what Landlock lets through), and not granted now.
        requestable.path_access(path) & need != 0
            && matches!(task.grant.path_decision(path, need).0, Decision::OutOfScope | Decision::Deny)
    }
}
