//! Reading the fields of a serialized event (docs/events.md). Missing or mistyped optional
//! fields read as absent: the store and reports must survive events from older and newer
//! daemons.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AuditError;
use crate::daemon::events::schema::{self, Body, Event, ObjectRef};

/// Who made a control request (the API peer's credentials).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Actor {
    pub pid: u32,
    pub uid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user {
            Some(user) => write!(f, "{user} (uid {}, pid {})", self.uid, self.pid),
            None => write!(f, "uid {} (pid {})", self.uid, self.pid),
        }
    }
}

impl From<&schema::Actor> for Actor {
    fn from(actor: &schema::Actor) -> Actor {
        Actor { pid: actor.pid, uid: actor.uid, user: actor.user.clone() }
    }
}

/// A stored event, typed. One whose kind or shape this version does not know (a newer
/// daemon's, or an older one's) reads as `Body::Unknown` with its envelope; None when even the
/// envelope is unreadable.
pub fn typed(event: &Value) -> Option<Event> {
    serde_json::from_value(event.clone()).ok().or_else(|| {
        let mut envelope = event.clone();
        envelope.as_object_mut()?.insert("kind".into(), Value::String("unknown".into()));
        serde_json::from_value::<Event>(envelope).ok().filter(|e| matches!(e.body, Body::Unknown))
    })
}

/// What the store indexes of an event, in its columns.
#[derive(Clone, Debug)]
pub struct Indexed {
    pub event_id: String,
    pub time: String,
    pub time_ms: i64,
    pub kind: String,
    pub decision: Option<String>,
    pub task_id: Option<u32>,
    /// The rule that decided an action (`default-deny`, `grant.ttl`, a grant's rule).
    pub rule: Option<String>,
    /// How many occurrences the event stands for: `count` for a flood-aggregated event, else 1.
    pub weight: i64,
}

impl Indexed {
    pub fn of(event: &Value) -> Result<Indexed, AuditError> {
        let event_id = str_at(event, "/event_id")
            .ok_or_else(|| AuditError::BadEvent { event: "(no event_id)".into(), message: "no event_id".into() })?;
        let bad = |message: String| AuditError::BadEvent { event: event_id.to_string(), message };
        let time = str_at(event, "/time").ok_or_else(|| bad("no time".into()))?;
        let time_ms = parse_ms(time).ok_or_else(|| bad(format!("time {time:?} is not RFC 3339 UTC")))?;
        let kind = str_at(event, "/kind").ok_or_else(|| bad("no kind".into()))?;
        Ok(Indexed {
            event_id: event_id.to_string(),
            time: time.to_string(),
            time_ms,
            kind: kind.to_string(),
            decision: str_at(event, "/decision").map(str::to_string),
            task_id: task_id(event),
            rule: str_at(event, "/rule").map(str::to_string),
            weight: weight(event),
        })
    }
}

pub fn str_at<'a>(event: &'a Value, pointer: &str) -> Option<&'a str> {
    event.pointer(pointer).and_then(Value::as_str)
}

pub fn u32_at(event: &Value, pointer: &str) -> Option<u32> {
    event.pointer(pointer).and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok())
}

pub fn task_id(event: &Value) -> Option<u32> {
    u32_at(event, "/task/id")
}

/// `count` only means repeats on an aggregated event (on `guard.events_dropped` it counts
/// lost records, which are not occurrences of that event).
pub fn weight(event: &Value) -> i64 {
    let aggregated = event.get("aggregated").and_then(Value::as_bool).unwrap_or(false);
    match event.get("count").and_then(Value::as_i64) {
        Some(count) if aggregated && count > 0 => count,
        _ => 1,
    }
}

/// Milliseconds since the epoch of an RFC 3339 UTC time, as the daemon writes them.
pub fn parse_ms(time: &str) -> Option<i64> {
    humantime::parse_rfc3339(time).ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_millis() as i64)
}

pub fn ms_of(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

pub fn rfc3339_of_ms(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(time).to_string()
}

/// "address:port" of a network destination, IPv6 in brackets.
pub fn destination(address: &str, port: u16) -> String {
    if address.contains(':') { format!("[{address}]:{port}") } else { format!("{address}:{port}") }
}

/// What an action touched, for grouping: a destination, or the path of a file or executable.
pub enum Target<'a> {
    Destination(String),
    Path(&'a str),
    /// Not a place (an escape route).
    Elsewhere,
}

/// The object of an action or held action, as a grouping target and as one line, e.g.
/// "file /etc/shadow (read)", "network 10.0.0.1:443/tcp". None for kinds without an object.
pub fn object_of(body: &Body) -> Option<(Target<'_>, String)> {
    Some(match body.object()? {
        ObjectRef::Network(net) => {
            let to = destination(&net.address, net.port);
            let line = format!("network {to}/{}", net.protocol);
            (Target::Destination(to), line)
        }
        ObjectRef::File(file) => {
            let access: Vec<&str> = file.access.iter().map(|a| a.as_str()).collect();
            let operation = file.operation.map(|op| format!(" {}", crate::api::wire_name(&op))).unwrap_or_default();
            (Target::Path(&file.path), format!("file {} ({}){operation}", file.path, access.join("+")))
        }
        ObjectRef::Executable(exe) => (Target::Path(&exe.path), format!("exec {}", exe.path)),
        ObjectRef::Escape(escape) => (Target::Elsewhere, format!("escape {} {}", escape.route, escape.detail)),
        ObjectRef::Access(access) => (
            Target::Elsewhere,
            format!(
                "access {} for {}",
                crate::grant::rule_lines(&access.requested).join(", "),
                humantime::format_duration(std::time::Duration::from_secs(access.duration_secs))
            ),
        ),
        ObjectRef::Dns(dns) => {
            (Target::Destination(dns.question.clone()), format!("dns {} {} ({})", dns.question, dns.qtype, dns.rcode))
        }
    })
}
