//! Tasks as their events tell them. A task id is only unique within one daemon run (ids
//! restart at 1), so a task here is an instance: the events of that id from its `task.open`
//! up to the next `task.open` of the same id. Events whose `task.open` is not in the store
//! (pruned by age) form an instance of their own, without an open event.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use super::event::{self, Actor, Indexed, str_at};
use crate::daemon::events::schema::{Body, Event};

/// How a task's access ended.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EndKind {
    /// Its last process exited.
    Closed,
    /// An operator (or the daemon's shutdown) stopped it: grant revoked, processes killed.
    Stopped,
    /// Its grant was revoked (`agent-guard grant revoke`); processes may have run on, allowed nothing.
    Revoked,
    /// Its ttl ran out.
    Expired,
}

impl EndKind {
    pub fn name(self) -> &'static str {
        match self {
            EndKind::Closed => "closed",
            EndKind::Stopped => "stopped",
            EndKind::Revoked => "revoked",
            EndKind::Expired => "expired",
        }
    }
}

/// When and how a task's access ended: the first of revocation, stop, expiry and close.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Ending {
    pub how: EndKind,
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One task instance, as `agent-guard audit --tasks` lists it.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct TaskRow {
    pub id: u32,
    /// The `task.open` event's id: tells apart tasks whose id was reused after a daemon
    /// restart. None when that event is no longer in the store.
    pub open_event_id: Option<String>,
    pub parent: Option<u32>,
    pub agent: String,
    pub intent: String,
    pub grant: String,
    pub opened: Option<String>,
    /// The latest expiry known (after extensions).
    pub expires: Option<String>,
    /// When its last process exited.
    pub closed: Option<String>,
    pub ended: Option<Ending>,
    pub denied: u64,
    pub flagged: u64,
}

/// A task instance being folded, with the times its end is decided from.
#[derive(Default)]
struct Building {
    row: TaskRow,
    expires_ms: Option<i64>,
    revoke: Option<(i64, Ending)>,
    stop: Option<(i64, Ending)>,
    close: Option<(i64, Ending)>,
    /// The first action refused because the grant expired.
    ttl_hit: Option<(i64, String)>,
}

/// Folds events, in time order, into task instances.
#[derive(Default)]
pub struct Fold {
    current: HashMap<u32, usize>,
    instances: Vec<Building>,
}

impl Fold {
    /// `event` is needed for `task.*` and `grant.*` events only (the others count by their
    /// indexed columns).
    pub fn add(&mut self, ix: &Indexed, event: Option<&Event>) {
        let Some(id) = ix.task_id else { return };
        let index = match self.current.get(&id) {
            Some(&index) if ix.kind != "task.open" => index,
            _ => {
                self.instances.push(Building { row: TaskRow { id, ..TaskRow::default() }, ..Building::default() });
                self.current.insert(id, self.instances.len() - 1);
                self.instances.len() - 1
            }
        };
        let building = &mut self.instances[index];
        building.count(ix);
        if let Some(event) = event {
            building.describe(ix, event);
        }
    }

    /// The instances in order of their first event; `now_ms` decides whether a task that
    /// has not closed has expired.
    pub fn finish(self, now_ms: i64) -> Vec<TaskRow> {
        self.instances.into_iter().map(|b| b.finish(now_ms)).collect()
    }
}

impl Building {
    fn count(&mut self, ix: &Indexed) {
        let weight = u64::try_from(ix.weight).unwrap_or(1);
        match ix.decision.as_deref() {
            Some("denied") => self.row.denied += weight,
            Some("flagged") => self.row.flagged += weight,
            _ => {}
        }
        if ix.rule.as_deref() == Some("grant.ttl") && self.ttl_hit.is_none() {
            self.ttl_hit = Some((ix.time_ms, ix.time.clone()));
        }
    }

    fn describe(&mut self, ix: &Indexed, event: &Event) {
        let row = &mut self.row;
        // Every task event carries the task's description: the first one fills it in when the
        // open event was pruned.
        if row.agent.is_empty()
            && let Some(task) = &event.task
        {
            row.agent.clone_from(&task.agent);
            row.intent.clone_from(&task.intent);
            row.grant.clone_from(&task.grant);
            row.parent = task.parent;
        }
        let ending = |how, actor: Option<&crate::daemon::events::schema::Actor>, reason: &str| Ending {
            how,
            time: ix.time.clone(),
            actor: actor.map(Actor::from),
            reason: Some(reason.to_string()),
        };
        match &event.body {
            Body::TaskOpen(opened) => {
                row.open_event_id = Some(ix.event_id.clone());
                row.opened = Some(ix.time.clone());
                self.set_expiry(expiry_at_open(&opened.reason, ix.time_ms));
            }
            Body::GrantExtend(change) => self.set_expiry(expiry_after_extend(&change.reason)),
            Body::GrantRevoke(revoke) if self.revoke.is_none() => {
                self.revoke = Some((ix.time_ms, ending(EndKind::Revoked, revoke.actor.as_ref(), &revoke.reason)));
            }
            Body::TaskStop(stop) if self.stop.is_none() => {
                self.stop = Some((ix.time_ms, ending(EndKind::Stopped, stop.actor.as_ref(), &stop.reason)));
            }
            Body::TaskClose(close) if self.close.is_none() => {
                self.row.closed = Some(ix.time.clone());
                self.close = Some((ix.time_ms, ending(EndKind::Closed, close.actor.as_ref(), &close.reason)));
            }
            // Later revokes, stops and closes do not move the end; the other kinds count by
            // their indexed columns (`count`).
            Body::GrantRevoke(_)
            | Body::TaskStop(_)
            | Body::TaskClose(_)
            | Body::TaskIntent(_)
            | Body::GrantNarrow(_)
            | Body::NetworkConnect(_)
            | Body::NetworkSend(_)
            | Body::NetworkDns(_)
            | Body::FileOpen(_)
            | Body::FileChange(_)
            | Body::ProcessExec(_)
            | Body::TaskEscape(_)
            | Body::ApprovalRequest(_)
            | Body::ApprovalGranted(_)
            | Body::ApprovalDenied(_)
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
    }

    fn set_expiry(&mut self, expiry: Option<(i64, String)>) {
        if let Some((ms, text)) = expiry {
            self.expires_ms = Some(ms);
            self.row.expires = Some(text);
        }
    }

    fn finish(mut self, now_ms: i64) -> TaskRow {
        let others = [&self.revoke, &self.stop, &self.close].into_iter().flatten().map(|(ms, _)| *ms).min();
        let mut candidates: Vec<(i64, u8, Ending)> = Vec::new();
        if let Some((ms, ending)) = self.revoke.take() {
            candidates.push((ms, 0, ending));
        }
        if let Some((ms, ending)) = self.stop.take() {
            candidates.push((ms, 1, ending));
        }
        let expired =
            |time: String, reason: String| Ending { how: EndKind::Expired, time, actor: None, reason: Some(reason) };
        match (self.expires_ms, &self.row.expires, self.ttl_hit.take()) {
            (Some(ms), Some(text), _) if ms <= others.unwrap_or(now_ms) => {
                candidates.push((ms, 2, expired(text.clone(), format!("the grant's ttl ran out at {text}"))));
            }
            // The expiry is unknown, but the kernel refused an action for it.
            (None, _, Some((ms, time))) => {
                candidates.push((ms, 2, expired(time, "an action was refused because the grant had expired".into())));
            }
            _ => {}
        }
        if let Some((ms, ending)) = self.close.take() {
            candidates.push((ms, 3, ending));
        }
        self.row.ended = candidates.into_iter().min_by_key(|(ms, order, _)| (*ms, *order)).map(|(_, _, e)| e);
        self.row
    }
}

/// The expiry of a task at its open: the open time plus the ttl its reason names
/// ("ttl 15m, mode enforce, ...").
fn expiry_at_open(reason: &str, opened_ms: i64) -> Option<(i64, String)> {
    let ttl = reason.strip_prefix("ttl ")?.split(',').next()?;
    let ttl = humantime::parse_duration(ttl).ok()?;
    let ms = opened_ms.checked_add(i64::try_from(ttl.as_millis()).ok()?)?;
    Some((ms, event::rfc3339_of_ms(ms)))
}

/// The expiry after an extension: the time its reason ends with ("extended by ... by 10m to
/// 2026-...Z").
fn expiry_after_extend(reason: &str) -> Option<(i64, String)> {
    let last = reason.rsplit(' ').next()?;
    Some((event::parse_ms(last)?, last.to_string()))
}

/// The events of one instance of task `id`: the one opened by `open_event_id`, or the newest.
/// `events` are in time order and may hold other tasks' events.
pub fn instance_events(events: Vec<Value>, id: u32, open_event_id: Option<&str>) -> Vec<Value> {
    let mut groups: Vec<Vec<Value>> = Vec::new();
    for event in events.into_iter().filter(|e| event::task_id(e) == Some(id)) {
        match groups.last_mut() {
            Some(group) if str_at(&event, "/kind") != Some("task.open") => group.push(event),
            _ => groups.push(vec![event]),
        }
    }
    match open_event_id {
        Some(wanted) => groups
            .into_iter()
            .find(|g| {
                g.first()
                    .is_some_and(|e| str_at(e, "/kind") == Some("task.open") && str_at(e, "/event_id") == Some(wanted))
            })
            .unwrap_or_default(),
        None => groups.pop().unwrap_or_default(),
    }
}
