//! Events as the daemon writes them, for the store and report tests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// 2026-03-01T10:00:00Z.
pub fn base() -> SystemTime {
    UNIX_EPOCH + Duration::from_hours(492_322)
}

pub fn at(secs: u64) -> String {
    humantime::format_rfc3339_micros(base() + Duration::from_secs(secs)).to_string()
}

/// An event of `kind` at `secs` after `base()`, of task `task` when given.
pub fn event(id: &str, kind: &str, secs: u64, task: Option<u32>) -> Value {
    let mut event = json!({
        "schema": "agent-guard.event/v1",
        "time": at(secs),
        "host": "box1",
        "event_id": id,
        "kind": kind,
    });
    if let Some(task) = task {
        event["task"] = json!({"id": task, "agent": "support-bot", "intent": "triage ticket 4412", "grant": "triage"});
    }
    event
}

pub fn with(mut event: Value, fields: Value) -> Value {
    if let (Some(map), Value::Object(extra)) = (event.as_object_mut(), fields) {
        map.extend(extra);
    }
    event
}

pub fn actor() -> Value {
    json!({"pid": 4242, "uid": 1000, "user": "alice"})
}

pub fn grant_spec() -> Value {
    json!({
        "mode": "enforce",
        "ttl": "15m",
        "files": {
            "read": ["/srv/tickets/4412/**", "/usr/**", {"path": "/etc/shadow", "action": "deny"}],
            "write": ["/tmp/work/4412/**"]
        },
        "exec": ["/usr/bin/python3", "/usr/bin/curl"],
        "network": {"connect": [
            "127.0.0.1/32:8080",
            "[::1]/128:8080",
            {"to": "127.0.0.1/32:8443", "action": "flag"}
        ]}
    })
}

/// One task's life: opened by alice with a grant, two steps, a refused read of /etc/shadow
/// (named in a `<script>` to check escaping), a flagged connect repeated 3 times, an approval
/// granted, and a close with usage.
pub fn task_life() -> Vec<Value> {
    vec![
        with(
            event("e01", "task.open", 0, Some(7)),
            json!({"actor": actor(), "grant_spec": grant_spec(),
                   "reason": "ttl 15m, mode enforce, grant from template triage"}),
        ),
        step(event("e02", "task.intent", 10, Some(7)), "read the ticket"),
        with(
            event("e03", "file.open", 20, Some(7)),
            json!({"decision": "denied", "policy_decision": "deny", "enforcement": "lsm",
                   "process": {"pid": 100, "tid": 100, "uid": 1000, "gid": 1000, "comm": "python3"},
                   "object": {"type": "file", "path": "/etc/shadow", "access": ["read"]},
                   "rule": "files.read /etc/shadow (deny)", "reason": "rule files.read /etc/shadow (deny) refuses /etc/shadow"}),
        ),
        with(
            event("e04", "network.connect", 30, Some(7)),
            json!({"decision": "flagged", "policy_decision": "flag", "enforcement": "cgroup",
                   "object": {"type": "network", "address": "127.0.0.1", "port": 8443, "protocol": "tcp"},
                   "rule": "network.connect[2] 127.0.0.1/32:8443 (flag)", "count": 3, "aggregated": true,
                   "reason": "rule network.connect[2] 127.0.0.1/32:8443 (flag) flags tcp to 127.0.0.1:8443"}),
        ),
        with(
            event("e05", "approval.request", 40, Some(7)),
            json!({"decision": "held", "approval": 5, "rule": "ask", "enforcement": "lsm",
                   "reason": "an ask rule matched",
                   "object": {"type": "file", "path": "/srv/tickets/<script>alert(1)</script>", "access": ["write"]}}),
        ),
        with(
            event("e06", "approval.granted", 45, Some(7)),
            json!({"decision": "allowed", "approval": 5, "rule": "ask", "enforcement": "lsm",
                   "actor": {"pid": 77, "uid": 0, "user": "root"},
                   "reason": "approved by root: file /srv/tickets/x"}),
        ),
        step(event("e07", "task.intent", 50, Some(7)), "draft a reply"),
        with(
            event("e08", "task.close", 60, Some(7)),
            json!({"reason": "its last process exited",
                   "usage": {"complete": true, "used": ["files.read /srv/tickets/4412/**", "network.connect[0] 127.0.0.1/32:8080"],
                             "unused": ["files.read /usr/**", "files.write /tmp/work/4412/**", "exec /usr/bin/curl",
                                        "network.connect[1] [::1]/128:8080", "files.read /etc/shadow (deny)"]}}),
        ),
    ]
}

fn step(mut event: Value, step: &str) -> Value {
    event["task"]["step"] = json!(step);
    event["reason"] = json!(format!("process 100 declared: {step}"));
    event
}
