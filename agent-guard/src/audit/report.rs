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
    event::{self, Actor, Indexed, str_at},
    lifecycle::{self, Ending},
    narrow,
};

pub const REPORT_SCHEMA: &str = "agent-guard.report/v1";

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

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Step {
    pub time: String,
    pub step: String,
}

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

#[derive(Clone, Debug, Serialize)]
pub struct Approval {
    pub id: Option<u32>,
    pub requested: Option<String>,
    /// What was held, e.g. "file /etc/ssh/sshd_config (read)".
    pub object: String,
    /// "granted", "denied", or "pending" (no decision in the store).
    pub outcome: String,
    pub decided: Option<String>,
    pub by: Option<Actor>,
    pub reason: Option<String>,
}

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
        for event in &mine {
            let ix = Indexed::of(event)?;
            fold.add(&ix, Some(event));
            builder.add(&ix, event);
        }
        let row = fold.finish(event::ms_of(now)).pop().ok_or(AuditError::UnknownTask { task })?;
        let host = mine.iter().find_map(|e| str_at(e, "/host")).map(str::to_string);
        let mut grant = builder.grant;
        grant.name = row.grant.clone();
        grant.expires = row.expires.clone();
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
    fn add(&mut self, ix: &Indexed, event: &Value) {
        let reason = str_at(event, "/reason").map(str::to_string);
        match ix.kind.as_str() {
            "task.open" => self.opened(ix, event),
            "task.intent" => {
                let step = str_at(event, "/task/step").map(str::to_string).or(reason).unwrap_or_default();
                self.steps.push(Step { time: ix.time.clone(), step });
            }
            "grant.extend" => {
                self.extensions.push(Change { time: ix.time.clone(), actor: event::actor(event), reason })
            }
            "task.close" | "task.stop" => {
                // The last report of usage wins: a stop's is superseded by the close after it.
                if let Some(usage) = event.get("usage") {
                    let names = |key: &str| -> Vec<String> {
                        usage.get(key).and_then(Value::as_array).map_or_else(Vec::new, |list| {
                            list.iter().filter_map(Value::as_str).map(str::to_string).collect()
                        })
                    };
                    self.usage = Usage {
                        recorded: true,
                        complete: usage.get("complete").and_then(Value::as_bool).unwrap_or(false),
                        used: names("used"),
                        unused: names("unused"),
                    };
                    // What was touched within the grant: distinct objects per directory and
                    // destination, from the kernel's first-use records (a stop's, then the close's).
                    for (key, groups) in [("touched", &mut self.directories), ("destinations", &mut self.destinations)]
                    {
                        for (target, count) in usage.get(key).and_then(Value::as_object).into_iter().flatten() {
                            let count = count.as_u64().unwrap_or(0);
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
            }
            "approval.request" | "approval.granted" | "approval.denied" => self.approval(ix, event),
            _ => {}
        }
        if event.get("object").is_some() {
            self.touched(ix, event);
        }
    }

    fn opened(&mut self, ix: &Indexed, event: &Value) {
        let reason = str_at(event, "/reason");
        // The reason reads "ttl 15m, mode enforce, grant from ...".
        let from_reason =
            |key: &str| reason?.split(", ").find_map(|part| part.strip_prefix(key).map(|v| v.trim().to_string()));
        let spec = event.get("grant_spec").filter(|s| s.is_object()).cloned();
        let spec_str = |key: &str| spec.as_ref().and_then(|s| s.get(key)).and_then(Value::as_str).map(str::to_string);
        self.grant = GrantIssued {
            name: String::new(),
            mode: spec_str("mode").or_else(|| from_reason("mode ")),
            ttl: from_reason("ttl ").or_else(|| spec_str("ttl")),
            expires: None,
            issued_at: Some(ix.time.clone()),
            issued_by: event::actor(event),
            spec,
            reason: reason.map(str::to_string),
        };
    }

    fn approval(&mut self, ix: &Indexed, event: &Value) {
        let id = event::u32_at(event, "/approval");
        let index = match id.and_then(|id| self.approval_index.get(&id)) {
            Some(&index) => index,
            None => {
                self.approvals.push(Approval {
                    id,
                    requested: None,
                    object: String::new(),
                    outcome: "pending".into(),
                    decided: None,
                    by: None,
                    reason: None,
                });
                if let Some(id) = id {
                    self.approval_index.insert(id, self.approvals.len() - 1);
                }
                self.approvals.len() - 1
            }
        };
        let approval = &mut self.approvals[index];
        let reason = str_at(event, "/reason").map(str::to_string);
        match ix.kind.as_str() {
            "approval.request" => {
                approval.requested = Some(ix.time.clone());
                approval.object = event::object_summary(event);
                if approval.reason.is_none() {
                    approval.reason = reason;
                }
            }
            kind => {
                approval.outcome = if kind == "approval.granted" { "granted" } else { "denied" }.into();
                approval.decided = Some(ix.time.clone());
                approval.by = event::actor(event);
                approval.reason = reason;
            }
        }
    }

    fn touched(&mut self, ix: &Indexed, event: &Value) {
        let weight = u64::try_from(ix.weight).unwrap_or(1);
        let decision = ix.decision.clone().unwrap_or_else(|| "-".into());
        // Approval outcomes repeat the held request's object: counted once, at the request.
        if !ix.kind.starts_with("approval.") || ix.kind == "approval.request" {
            let group = if let Some(dest) = event::destination(event) {
                Some(self.destinations.entry(dest))
            } else {
                event::object_path(event).map(|path| self.directories.entry(directory(path)))
            };
            if let Some(entry) = group {
                let target = entry.key().clone();
                let touch = entry.or_insert_with(|| Touch {
                    target,
                    count: 0,
                    decisions: BTreeMap::new(),
                    kinds: BTreeSet::new(),
                });
                touch.count += weight;
                *touch.decisions.entry(decision.clone()).or_default() += weight;
                touch.kinds.insert(ix.kind.clone());
            }
        }
        if matches!(decision.as_str(), "denied" | "flagged") && !ix.kind.starts_with("approval.") {
            let object = event::object_summary(event);
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
                reason: str_at(event, "/reason").map(str::to_string),
            });
            finding.count += weight;
            finding.last = ix.time.clone();
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
