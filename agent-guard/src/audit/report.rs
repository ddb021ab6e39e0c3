//! A task's evidence report: what it was allowed, what it did that the kernel reported, what
//! was refused or flagged, which permissions went unused, and how its access ended. Built from
//! the task's events alone; rendered as Markdown, HTML or JSON (the struct as serialized).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::SystemTime,
};

use serde::Serialize;
use serde_json::Value;

use super::{
    AuditError,
    event::{self, Actor, Indexed, Target},
    lifecycle::{self, Ending},
    narrow,
};
use crate::daemon::events::schema::{Body, Event, TaskOpened};

pub const REPORT_SCHEMA: &str = "agent-guard.report/v1";

/// A task's evidence report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub task: u32,
    /// The `task.open` event's id (None when it is no longer in the store).
    pub open_event_id: Option<String>,
    pub parent: Option<u32>,
    pub host: Option<String>,
    pub agent: String,
    /// Declared when the task opened.
    pub intent: String,
    /// Steps the agent declared (`agent-guard intent`), in order.
    pub steps: Vec<Step>,
    pub grant: GrantIssued,
    pub extensions: Vec<Change>,
    pub approvals: Vec<Approval>,
    /// Reported actions by directory (files and executables) and by destination (network).
    /// Out-of-scope actions from their events; in-scope ones from the usage summary (first
    /// uses: distinct objects).
    pub touched: Touched,
    /// Denied or flagged actions, grouped by what, decision and rule.
    pub findings: Vec<Finding>,
    pub usage: Usage,
    pub least_privilege: LeastPrivilege,
    /// None while the task is open (or when its end is not in the store).
    pub ended: Option<Ending>,
    /// When its last process exited.
    pub closed: Option<String>,
    /// Events of the task the report was built from (aggregated ones counted once).
    pub events: usize,
}

/// A step the agent declared, and when.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Step {
    pub time: String,
    pub step: String,
}

/// The grant as issued to the task.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GrantIssued {
    pub name: String,
    pub mode: Option<String>,
    /// The task's ttl (the grant's, or the shorter one requested).
    pub ttl: Option<String>,
    pub expires: Option<String>,
    pub issued_at: Option<String>,
    pub issued_by: Option<Actor>,
    /// The grant as issued (its serialized spec), when the open event carries it.
    pub spec: Option<Value>,
    pub reason: Option<String>,
}

/// A change an operator made to the running grant (an extension).
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    pub time: String,
    pub actor: Option<Actor>,
    pub reason: Option<String>,
}

/// A held action and its answer.
#[derive(Clone, Debug, Serialize)]
pub struct Approval {
    pub id: Option<u32>,
    pub requested: Option<String>,
    /// What was held, e.g. "file /`etc/ssh/sshd_config` (read)".
    pub object: String,
    /// "granted", "denied", or "pending" (no decision in the store).
    pub outcome: String,
    pub decided: Option<String>,
    pub by: Option<Actor>,
    pub reason: Option<String>,
    /// For an access request: who asked (the agent and its process), the agent's own reason,
    /// the duration asked for, who approved (every approver, on any channel), and when the
    /// added rules left the grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asked_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub narrowed: Option<String>,
}

impl Approval {
    /// Who decided: the approvers a channel named, else the local process that answered.
    pub fn approver_line(&self) -> String {
        if self.approvers.is_empty() {
            self.by.as_ref().map_or("-".into(), ToString::to_string)
        } else {
            self.approvers.join(" and ")
        }
    }
}

/// What the task reached, by directory and destination.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Touched {
    pub directories: Vec<Touch>,
    pub destinations: Vec<Touch>,
}

/// Reported actions on one directory or destination.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Touch {
    pub target: String,
    pub count: u64,
    /// By decision: "denied" → 3.
    pub decisions: BTreeMap<String, u64>,
    pub kinds: BTreeSet<String>,
}

/// Refused or flagged actions of one kind on one object, counted.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Finding {
    pub kind: String,
    pub decision: String,
    pub object: String,
    pub rule: String,
    pub count: u64,
    pub first: String,
    pub last: String,
    pub reason: Option<String>,
}

/// Which allow rules the task used.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Usage {
    /// False when the daemon did not record usage (older kernels): then nothing is claimed.
    pub recorded: bool,
    /// False when kernel records were lost while the task ran: a rule listed unused may have
    /// been used, so nothing is suggested.
    pub complete: bool,
    pub used: Vec<String>,
    pub unused: Vec<String>,
}

/// A narrower grant, when the usage supports one.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LeastPrivilege {
    /// Why there is or is no suggestion.
    pub note: String,
    pub removed: Vec<String>,
    /// A narrower Grant, in YAML.
    pub grant_yaml: Option<String>,
}

impl Report {
    /// The report of the newest instance of task `task` among `events` (any order, other
    /// tasks' events ignored).
    pub fn build(task: u32, events: &[Value]) -> Result<Report, AuditError> {
        Report::build_at(task, events, SystemTime::now())
    }

    /// As `build`, deciding at `now` whether a task without a close has expired.
    pub fn build_at(task: u32, events: &[Value], now: SystemTime) -> Result<Report, AuditError> {
        let mut indexed = events
            .iter()
            .filter(|e| event::task_id(e) == Some(task))
            .map(|e| Ok((Indexed::of(e)?, e)))
            .collect::<Result<Vec<_>, AuditError>>()?;
        indexed.sort_by_key(|(ix, _)| ix.time_ms);
        let ordered: Vec<Value> = indexed.iter().map(|(_, e)| (*e).clone()).collect();
        let mine = lifecycle::instance_events(ordered, task, None);
        if mine.is_empty() {
            return Err(AuditError::UnknownTask { task });
        }
        let mut fold = lifecycle::Fold::default();
        let mut builder = Builder::default();
        let mut host = None;
        for value in &mine {
            let ix = Indexed::of(value)?;
            let Some(event) = event::typed(value) else {
                fold.add(&ix, None);
                continue;
            };
            host.get_or_insert_with(|| event.host.clone());
            fold.add(&ix, Some(&event));
            builder.add(&ix, &event);
        }
        let row = fold.finish(event::ms_of(now)).pop().ok_or(AuditError::UnknownTask { task })?;
        let mut grant = builder.grant;
        grant.name.clone_from(&row.grant);
        grant.expires.clone_from(&row.expires);
        let least_privilege = least_privilege(&grant, &builder.usage);
        Ok(Report {
            schema: REPORT_SCHEMA,
            task,
            open_event_id: row.open_event_id,
            parent: row.parent,
            host,
            agent: row.agent,
            intent: row.intent,
            steps: builder.steps,
            grant,
            extensions: builder.extensions,
            approvals: builder.approvals,
            touched: Touched {
                directories: builder.directories.into_values().collect(),
                destinations: builder.destinations.into_values().collect(),
            },
            findings: builder.findings.into_values().collect(),
            usage: builder.usage,
            least_privilege,
            ended: row.ended,
            closed: row.closed,
            events: mine.len(),
        })
    }
}

#[derive(Default)]
struct Builder {
    steps: Vec<Step>,
    grant: GrantIssued,
    extensions: Vec<Change>,
    approvals: Vec<Approval>,
    approval_index: HashMap<u32, usize>,
    directories: BTreeMap<String, Touch>,
    destinations: BTreeMap<String, Touch>,
    findings: BTreeMap<(String, String, String, String), Finding>,
    usage: Usage,
}

impl Builder {
    fn add(&mut self, ix: &Indexed, event: &Event) {
        match &event.body {
            Body::TaskOpen(opened) => self.opened(ix, opened),
            Body::TaskIntent(declared) => {
                let step = event.task.as_ref().and_then(|t| t.step.clone()).unwrap_or_else(|| declared.reason.clone());
                self.steps.push(Step { time: ix.time.clone(), step });
            }
            Body::GrantExtend(change) => self.extensions.push(Change {
                time: ix.time.clone(),
                actor: change.actor.as_ref().map(Actor::from),
                reason: Some(change.reason.clone()),
            }),
            // The last report of usage wins: a stop's is superseded by the close after it.
            Body::TaskClose(ended) | Body::TaskStop(ended) => {
                if let Some(usage) = &ended.usage {
                    self.used(usage);
                }
            }
            Body::ApprovalRequest(held) => {
                let approval = self.approval(held.approval);
                approval.requested = Some(ix.time.clone());
                approval.object = event::object_of(&event.body).map(|(_, line)| line).unwrap_or_default();
                if approval.reason.is_none() {
                    approval.reason = Some(held.verdict.reason.clone());
                }
                if let crate::daemon::events::schema::HeldObject::Access(access) = &held.object {
                    let agent = event.task.as_ref().map(|t| t.agent.clone()).unwrap_or_default();
                    approval.asked_by = Some(format!("{agent}, {}", access.requester));
                    approval.justification = Some(access.reason.clone());
                    approval.duration = Some(
                        humantime::format_duration(std::time::Duration::from_secs(access.duration_secs)).to_string(),
                    );
                }
            }
            Body::GrantNarrow(narrowed) => {
                let approval = self.approval(narrowed.approval);
                approval.narrowed = Some(ix.time.clone());
            }
            Body::ApprovalGranted(answer) | Body::ApprovalDenied(answer) => {
                let granted = matches!(event.body, Body::ApprovalGranted(_));
                let approval = self.approval(answer.approval);
                approval.outcome = if granted { "granted" } else { "denied" }.into();
                approval.decided = Some(ix.time.clone());
                approval.by = answer.actor.as_ref().map(Actor::from);
                approval.approvers = answer.approvers.iter().map(ToString::to_string).collect();
                approval.reason = Some(answer.verdict.reason.clone());
            }
            Body::NetworkConnect(_)
            | Body::NetworkSend(_)
            | Body::NetworkDns(_)
            | Body::FileOpen(_)
            | Body::FileChange(_)
            | Body::ProcessExec(_)
            | Body::TaskEscape(_)
            | Body::GrantRevoke(_)
            | Body::Tamper(_)
            | Body::TagLost(_)
            | Body::EventsDropped(_)
            | Body::OutputDropped(_)
            | Body::OutputFailed(_)
            | Body::GuardStart(_)
            | Body::GuardStop(_)
            | Body::GuardAdopt(_)
            | Body::PolicyLoad(_)
            | Body::CallbackRefused(_)
            | Body::PolicyRejected(_)
            | Body::Unknown => {}
        }
        if let Some((target, object)) = event::object_of(&event.body) {
            self.touched(ix, event, target, object);
        }
    }

    /// The usage a stop or close reports: rules used and unused, and what was touched within
    /// the grant (distinct objects per directory and destination, from the kernel's first-use
    /// records).
    fn used(&mut self, usage: &crate::daemon::events::schema::Usage) {
        self.usage =
            Usage { recorded: true, complete: usage.complete, used: usage.used.clone(), unused: usage.unused.clone() };
        for (touched, groups) in
            [(&usage.touched, &mut self.directories), (&usage.destinations, &mut self.destinations)]
        {
            for (target, &count) in touched {
                let touch = groups.entry(target.clone()).or_insert_with(|| Touch {
                    target: target.clone(),
                    count: 0,
                    decisions: BTreeMap::new(),
                    kinds: BTreeSet::new(),
                });
                let allowed = touch.decisions.entry("allowed".into()).or_default();
                // The close repeats the stop's totals: keep the larger.
                touch.count += count.saturating_sub(*allowed);
                *allowed = (*allowed).max(count);
                touch.kinds.insert("first use".into());
            }
        }
    }

    fn opened(&mut self, ix: &Indexed, opened: &TaskOpened) {
        // The reason reads "ttl 15m, mode enforce, grant from ...".
        let from_reason =
            |key: &str| opened.reason.split(", ").find_map(|part| part.strip_prefix(key).map(|v| v.trim().to_string()));
        let spec = serde_json::to_value(&opened.grant_spec).ok();
        self.grant = GrantIssued {
            name: String::new(),
            mode: Some(crate::api::wire_name(&opened.grant_spec.mode)).filter(|m| !m.is_empty()),
            ttl: from_reason("ttl "),
            expires: None,
            issued_at: Some(ix.time.clone()),
            issued_by: opened.actor.as_ref().map(Actor::from),
            spec,
            reason: Some(opened.reason.clone()),
        };
    }

    /// The approval `id`, added as pending when first seen.
    fn approval(&mut self, id: u32) -> &mut Approval {
        let index = *self.approval_index.entry(id).or_insert_with(|| {
            self.approvals.push(Approval {
                id: Some(id),
                requested: None,
                object: String::new(),
                outcome: "pending".into(),
                decided: None,
                by: None,
                reason: None,
                asked_by: None,
                justification: None,
                duration: None,
                approvers: Vec::new(),
                narrowed: None,
            });
            self.approvals.len() - 1
        });
        &mut self.approvals[index]
    }

    fn touched(&mut self, ix: &Indexed, event: &Event, target: Target<'_>, object: String) {
        let weight = u64::try_from(ix.weight).unwrap_or(1);
        let decision = ix.decision.clone().unwrap_or_else(|| "-".into());
        let group = match target {
            Target::Destination(to) => Some(self.destinations.entry(to)),
            Target::Path(path) => Some(self.directories.entry(directory(path))),
            Target::Elsewhere => None,
        };
        if let Some(entry) = group {
            let target = entry.key().clone();
            let touch =
                entry.or_insert_with(|| Touch { target, count: 0, decisions: BTreeMap::new(), kinds: BTreeSet::new() });
            touch.count += weight;
            *touch.decisions.entry(decision.clone()).or_default() += weight;
            touch.kinds.insert(ix.kind.clone());
        }
        // Held actions are the approvals' business, not findings.
        if matches!(decision.as_str(), "denied" | "flagged") && !matches!(event.body, Body::ApprovalRequest(_)) {
            let rule = ix.rule.clone().unwrap_or_else(|| "-".into());
            let key = (object.clone(), ix.kind.clone(), decision.clone(), rule.clone());
            let finding = self.findings.entry(key).or_insert_with(|| Finding {
                kind: ix.kind.clone(),
                decision,
                object,
                rule,
                count: 0,
                first: ix.time.clone(),
                last: ix.time.clone(),
                reason: event.body.reason().map(str::to_string),
            });
            finding.count += weight;
            finding.last.clone_from(&ix.time);
        }
    }
}

/// The directory a path is in ("/" for a top-level entry).
fn directory(path: &str) -> String {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/".into(),
        Some((dir, _)) => dir.to_string(),
    }
}

fn least_privilege(grant: &GrantIssued, usage: &Usage) -> LeastPrivilege {
    let note = |note: &str| LeastPrivilege { note: note.into(), ..LeastPrivilege::default() };
    if !usage.recorded {
        return note("usage was not recorded for this task (kernel without rule usage counters): no suggestion");
    }
    if !usage.complete {
        return note(
            "kernel records were lost while the task ran (guard.events_dropped): usage is incomplete, no suggestion",
        );
    }
    let Some(spec) = &grant.spec else {
        return note("the grant as issued is not in the store: no suggestion");
    };
    match narrow::narrow(&grant.name, spec, &usage.unused) {
        Ok(narrowed) => LeastPrivilege {
            note: format!("{} allow rule(s) were never used; this grant leaves them out", narrowed.removed.len()),
            removed: narrowed.removed,
            grant_yaml: Some(narrowed.yaml),
        },
        Err(why) => note(&why),
    }
}
