//! OCSF output (docs/ocsf.md): one agent-guard event, as serialized (schema v1), to one OCSF event.
//!
//! The input is the event's JSON rather than the struct so that fields added to the event later
//! (`actor`, `grant_spec`, exec ids, ...) are carried over without touching this mapping, and so
//! that an unknown kind or a missing field degrades to a less specific OCSF event, never a panic.

use std::time::UNIX_EPOCH;

use serde_json::{Map, Value, json};

use crate::audit::str_at;

/// The OCSF schema version the events claim (`metadata.version`).
pub const OCSF_VERSION: &str = "1.9.0";

/// Name of the vendor extension object under `unmapped` (see `extension`).
const EXTENSION: &str = "agent_guard";

const BASE_EVENT: u64 = 0;
const FILE_ACTIVITY: u64 = 1001;
const PROCESS_ACTIVITY: u64 = 1007;
const NETWORK_ACTIVITY: u64 = 4001;

/// Maps one agent-guard event to one OCSF event.
pub fn to_ocsf(event: &Value) -> Value {
    let kind = str_at(event, "/kind").unwrap_or("");
    let decision = str_at(event, "/decision");
    let (class_uid, activity_id) = classify(kind, event);
    let (class_name, activity_name) = names(class_uid, activity_id);
    let (severity_id, severity) = severity(kind, decision);
    let (status_id, status) = status(kind, decision);

    let mut profiles = vec!["security_control"];
    if class_uid == BASE_EVENT {
        // `device` and `actor` are not attributes of the Base Event: the host profile adds them.
        profiles.push("host");
    }
    let mut out = json!({
        "activity_id": activity_id,
        "activity_name": activity_name,
        "category_uid": class_uid / 1000,
        "category_name": category_name(class_uid / 1000),
        "class_uid": class_uid,
        "class_name": class_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": format!("{class_name}: {activity_name}"),
        "time": epoch_ms(event),
        "severity_id": severity_id,
        "severity": severity,
        "status_id": status_id,
        "status": status,
        "metadata": {
            "uid": event.pointer("/event_id").cloned().unwrap_or(Value::Null),
            "version": OCSF_VERSION,
            "product": {
                "name": "agent-guard",
                "vendor_name": "agent-guard",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "profiles": profiles,
            "log_name": event.pointer("/schema").cloned().unwrap_or(Value::Null),
            "original_time": event.pointer("/time").cloned().unwrap_or(Value::Null),
        },
        "device": {
            "hostname": event.pointer("/host").cloned().unwrap_or(Value::Null),
            // The daemon cannot tell what kind of machine it guards.
            "type_id": 0,
            "type": "Unknown",
        },
        "message": event.pointer("/reason").cloned().unwrap_or(Value::Null),
        "unmapped": { EXTENSION: extension(event) },
    });
    let Some(fields) = out.as_object_mut() else { return out };
    if status_id == 2 {
        // What refused it: the rule (default-deny, grant.ttl, a grant rule ...).
        if let Some(rule) = event.pointer("/rule") {
            fields.insert("status_detail".into(), rule.clone());
        }
    }
    // Only flood-aggregated repeats are counts of this event; a drop count is not (it stays in
    // the extension).
    if event.pointer("/aggregated") == Some(&Value::Bool(true))
        && let Some(count) = event.pointer("/count")
    {
        fields.insert("count".into(), count.clone());
    }
    security_control(fields, kind, decision, event);
    if let Some(actor) = actor(class_uid, event) {
        fields.insert("actor".into(), actor);
    }
    match class_uid {
        FILE_ACTIVITY => {
            fields.insert("file".into(), file(str_at(event, "/object/path").unwrap_or(""), object_operation(event)));
        }
        PROCESS_ACTIVITY => {
            fields.insert("process".into(), launched(event));
        }
        NETWORK_ACTIVITY => {
            let protocol = str_at(event, "/object/protocol").unwrap_or("");
            fields.insert(
                "dst_endpoint".into(),
                json!({
                    "ip": event.pointer("/object/address").cloned().unwrap_or(Value::Null),
                    "port": event.pointer("/object/port").cloned().unwrap_or(Value::Null),
                }),
            );
            fields.insert(
                "connection_info".into(),
                json!({
                    "protocol_name": protocol,
                    "protocol_num": match protocol { "tcp" => json!(6), "udp" => json!(17), _ => Value::Null },
                    // Only the guarded processes' own connections and sends are reported.
                    "direction_id": 2,
                    "direction": "Outbound",
                }),
            );
        }
        _ => {}
    }
    drop_nulls(&mut out);
    out
}

/// The OCSF class and activity of a kind. Actions whose object does not fit the class (a field
/// missing) fall back to the Base Event rather than produce a class without its required object.
fn classify(kind: &str, event: &Value) -> (u64, u64) {
    let object = str_at(event, "/object/type");
    let denied = str_at(event, "/decision") == Some("denied");
    match (kind, object) {
        ("file.open", Some("file")) => (FILE_ACTIVITY, 14), // Open
        ("file.change", Some("file")) => (FILE_ACTIVITY, file_change_activity(object_operation(event))),
        ("process.exec", Some("executable")) => (PROCESS_ACTIVITY, 1), // Launch
        // A connect refused by the guard is the schema's "Refuse" (its firewall-block example).
        ("network.connect" | "network.send", Some("network")) if denied => (NETWORK_ACTIVITY, 5),
        ("network.connect", Some("network")) => (NETWORK_ACTIVITY, 1), // Open
        ("network.send", Some("network")) => (NETWORK_ACTIVITY, 6),    // Traffic
        // A held action is reported in the class of the action it holds.
        ("approval.request", Some("file")) => (FILE_ACTIVITY, 14),
        ("approval.request", Some("executable")) => (PROCESS_ACTIVITY, 1),
        ("approval.request", Some("network")) => (NETWORK_ACTIVITY, 1),
        // Lifecycle, control and guard events are not actions on a file, process or connection:
        // no OCSF class describes a task grant (Entity Management would need a managed entity
        // type the schema does not have), so they are Base Events, "Other".
        (kind, _) if KNOWN_OTHER.contains(&kind) => (BASE_EVENT, 99),
        _ => (BASE_EVENT, 0),
    }
}

const KNOWN_OTHER: &[&str] = &[
    "task.open",
    "task.close",
    "task.stop",
    "task.intent",
    "grant.revoke",
    "grant.extend",
    "approval.request",
    "approval.granted",
    "approval.denied",
    "guard.start",
    "guard.stop",
    "guard.adopt",
    "guard.events_dropped",
    "guard.tag_lost",
    "guard.tamper",
    "task.escape",
    "policy.load",
    "policy.rejected",
];

fn file_change_activity(operation: Option<&str>) -> u64 {
    match operation {
        Some("create" | "mkdir" | "link" | "symlink") => 1, // Create
        Some("truncate") => 3,                              // Update
        Some("unlink" | "rmdir") => 4,                      // Delete
        Some("rename_from" | "rename_to") => 5,             // Rename
        // chmod/chown change who may use the file: the schema's "Set Security", not attributes.
        Some("chmod" | "chown") => 7,
        _ => 99,
    }
}

fn names(class_uid: u64, activity_id: u64) -> (&'static str, &'static str) {
    let class = match class_uid {
        FILE_ACTIVITY => "File System Activity",
        PROCESS_ACTIVITY => "Process Activity",
        NETWORK_ACTIVITY => "Network Activity",
        _ => "Base Event",
    };
    let activity = match (class_uid, activity_id) {
        (_, 0) => "Unknown",
        (_, 99) => "Other",
        (FILE_ACTIVITY, 1) => "Create",
        (FILE_ACTIVITY, 3) => "Update",
        (FILE_ACTIVITY, 4) => "Delete",
        (FILE_ACTIVITY, 5) => "Rename",
        (FILE_ACTIVITY, 7) => "Set Security",
        (FILE_ACTIVITY, 14) => "Open",
        (PROCESS_ACTIVITY, 1) => "Launch",
        (NETWORK_ACTIVITY, 1) => "Open",
        (NETWORK_ACTIVITY, 5) => "Refuse",
        (NETWORK_ACTIVITY, 6) => "Traffic",
        _ => "Other",
    };
    (class, activity)
}

fn category_name(category_uid: u64) -> &'static str {
    match category_uid {
        1 => "System Activity",
        4 => "Network Activity",
        _ => "Uncategorized",
    }
}

/// An action that happened out of scope matters more than one that was refused; losing events or
/// a process going after the guard matter most.
fn severity(kind: &str, decision: Option<&str>) -> (u64, &'static str) {
    match (kind, decision) {
        ("guard.tamper" | "task.escape" | "guard.events_dropped", _) => (4, "High"),
        ("guard.tag_lost" | "guard.adopt" | "policy.rejected", _) | (_, Some("flagged")) => (3, "Medium"),
        (_, Some("denied" | "held")) => (2, "Low"),
        _ => (1, "Informational"),
    }
}

fn status(kind: &str, decision: Option<&str>) -> (u64, &'static str) {
    match (kind, decision) {
        (_, Some("denied")) | ("policy.rejected", _) => (2, "Failure"),
        // Held: neither done nor refused yet.
        (_, Some("held")) => (0, "Unknown"),
        _ => (1, "Success"),
    }
}

/// The security_control profile: action, disposition and the policy (the task's grant).
fn security_control(fields: &mut Map<String, Value>, kind: &str, decision: Option<&str>, event: &Value) {
    // disposition_id values of the schema's dictionary.
    let outcome = match (kind, decision) {
        ("approval.granted", _) => Some((1, "Allowed", 8, "Approved")),
        ("approval.denied", _) => Some((2, "Denied", 25, "Rejected")),
        // Held until a human decides: the action is not known yet, the disposition is "Delayed".
        (_, Some("held")) => Some((0, "Unknown", 14, "Delayed")),
        (_, Some("denied")) => Some((2, "Denied", 2, "Blocked")),
        // Flagged: it happened (action Allowed) but is out of scope, i.e. a policy violation the
        // guard detected and reported without stopping it: "Detected" rather than "Logged",
        // which also fits in-scope activity that is merely recorded.
        (_, Some("flagged")) => Some((1, "Allowed", 15, "Detected")),
        (_, Some("allowed")) => Some((1, "Allowed", 1, "Allowed")),
        _ => None,
    };
    if let Some((action_id, action, disposition_id, disposition)) = outcome {
        fields.insert("action_id".into(), action_id.into());
        fields.insert("action".into(), action.into());
        fields.insert("disposition_id".into(), disposition_id.into());
        fields.insert("disposition".into(), disposition.into());
        fields.insert(
            "is_alert".into(),
            (disposition_id == 15 || kind == "guard.tamper" || kind == "task.escape").into(),
        );
    }
    // The grant is the policy; its instance is the task (a grant is issued per task), and the
    // rule that decided is its description.
    let grant = event.pointer("/task/grant").cloned();
    let task = event.pointer("/task/id").map(|id| Value::String(id_string(id)));
    let rule = event.pointer("/rule").cloned();
    if grant.is_some() || task.is_some() || rule.is_some() {
        let mut policy = Map::new();
        policy.insert("name".into(), grant.unwrap_or_else(|| "agent-guard".into()));
        if let Some(task) = task {
            policy.insert("uid".into(), task);
        }
        if let Some(rule) = rule {
            policy.insert("desc".into(), rule);
        }
        fields.insert("policy".into(), Value::Object(policy));
    }
}

/// Who acted: the process of an action, or the user who made a control request (`actor`).
fn actor(class_uid: u64, event: &Value) -> Option<Value> {
    if let Some(process) = event.pointer("/process").filter(|p| p.is_object()) {
        let mut actor = json!({ "process": acting_process(process) });
        if let Some(user) = actor.pointer("/process/user").cloned() {
            actor["user"] = user;
        }
        return Some(actor);
    }
    if let Some(requester) = event.pointer("/actor").filter(|a| a.is_object()) {
        let mut user = json!({ "uid": requester.pointer("/uid").map(id_string) });
        if let Some(name) = requester.pointer("/user") {
            user["name"] = name.clone();
        }
        return Some(json!({
            "process": { "pid": requester.pointer("/pid").cloned() },
            "user": user,
        }));
    }
    // The system classes require an actor; the guard itself is the one acting then.
    (class_uid != BASE_EVENT).then(|| json!({ "app_name": "agent-guard" }))
}

/// The process as agent-guard saw it (for an exec: the process that called execve).
fn acting_process(process: &Value) -> Value {
    let mut out = json!({
        "pid": process.pointer("/pid").cloned(),
        "tid": process.pointer("/tid").cloned(),
        "uid": process.pointer("/exec_id").cloned(),
        "name": process.pointer("/comm").cloned(),
        "user": { "uid": process.pointer("/uid").map(id_string) },
    });
    if let Some(executable) = process.pointer("/executable").and_then(Value::as_str) {
        out["file"] = file(executable, None);
    }
    let ppid = process.pointer("/ppid").cloned();
    let parent_uid = process.pointer("/parent_exec_id").cloned();
    if ppid.is_some() || parent_uid.is_some() {
        out["parent_process"] = json!({ "pid": ppid, "uid": parent_uid });
    }
    out
}

/// The process image an exec starts: same pid, the new executable and its command line.
fn launched(event: &Value) -> Value {
    let mut out = json!({
        "pid": event.pointer("/process/pid").cloned(),
        "uid": event.pointer("/process/exec_id").cloned(),
        "file": file(str_at(event, "/object/path").unwrap_or(""), None),
        "user": { "uid": event.pointer("/process/uid").map(id_string) },
    });
    if let Some(argv) = event.pointer("/process/argv").and_then(Value::as_array) {
        let words: Vec<&str> = argv.iter().filter_map(Value::as_str).collect();
        out["cmd_line"] = words.join(" ").into();
    }
    if let Some(name) = str_at(event, "/object/path").and_then(|p| p.rsplit('/').next()) {
        out["name"] = name.into();
    }
    out
}

/// An OCSF file object: `name` and `type_id` are required.
fn file(path: &str, operation: Option<&str>) -> Value {
    let (type_id, kind) = match operation {
        Some("mkdir" | "rmdir") => (2, "Folder"),
        Some("symlink") => (7, "Symbolic Link"),
        _ => (1, "Regular File"),
    };
    let name = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or(path);
    json!({ "name": name, "path": path, "type_id": type_id, "type": kind })
}

/// The vendor extension: everything agent-guard knows that OCSF has no attribute for, under
/// `unmapped.agent_guard`. `unmapped` is a Base Event attribute of type object, so a strict
/// validator accepts the event as is; a registered OCSF extension (`metadata.extensions`) would
/// need its own schema published and loaded by every consumer before the events validated.
fn extension(event: &Value) -> Value {
    let mut out = Map::new();
    for key in ["kind", "decision", "policy_decision", "enforcement", "rule", "approval", "actor", "grant_spec"] {
        if let Some(value) = event.get(key) {
            out.insert(key.into(), value.clone());
        }
    }
    if let Some(task) = event.get("task") {
        out.insert("task".into(), task.clone());
    }
    // A count that is not an aggregation is the number of kernel records lost.
    if event.pointer("/aggregated") != Some(&Value::Bool(true))
        && let Some(count) = event.get("count")
    {
        out.insert("lost".into(), count.clone());
    }
    if let Some(process) = event.get("process") {
        let mut extra = Map::new();
        for key in ["gid", "exec_id", "parent_exec_id", "ancestry"] {
            if let Some(value) = process.get(key) {
                extra.insert(key.into(), value.clone());
            }
        }
        if !extra.is_empty() {
            out.insert("process".into(), Value::Object(extra));
        }
    }
    Value::Object(out)
}

fn object_operation(event: &Value) -> Option<&str> {
    str_at(event, "/object/operation")
}

/// OCSF uids are strings; agent-guard's ids are numbers.
fn id_string(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Epoch milliseconds of the event's RFC 3339 time; 0 when it is missing or unreadable (the raw
/// value stays in `metadata.original_time`).
fn epoch_ms(event: &Value) -> u64 {
    str_at(event, "/time")
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// Absent input fields become nulls while building; OCSF wants them left out.
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            fields.retain(|_, v| !v.is_null());
            fields.values_mut().for_each(drop_nulls);
            fields.retain(|_, v| !matches!(v, Value::Object(o) if o.is_empty()));
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    //! Checks produced events against the OCSF schema files vendored under tests/ocsf-schema.

    use std::path::PathBuf;

    use serde_json::{Map, Value, json};

    use super::to_ocsf;

    fn load(rel: &str) -> Value {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ocsf-schema").join(rel);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Attribute definitions of a chain of schema files, later files refining earlier ones and
    /// enums merged (a class's activity enum adds to the base event's Unknown/Other).
    fn merge(files: &[Value]) -> Map<String, Value> {
        let mut merged: Map<String, Value> = Map::new();
        for file in files {
            let Some(attributes) = file["attributes"].as_object() else { continue };
            for (name, def) in attributes.iter().filter(|(name, _)| *name != "$include") {
                let entry = merged.entry(name.clone()).or_insert_with(|| json!({}));
                for (key, value) in def.as_object().into_iter().flatten() {
                    if key == "enum" {
                        let mut values = entry["enum"].as_object().cloned().unwrap_or_default();
                        values.extend(value.as_object().cloned().unwrap_or_default());
                        entry["enum"] = Value::Object(values);
                    } else {
                        entry[key] = value.clone();
                    }
                }
            }
        }
        merged
    }

    /// The file an attribute's object is defined in (the schema's dictionary says so; only the
    /// objects these events use are vendored).
    fn object_file(attribute: &str) -> Option<&'static str> {
        Some(match attribute {
            "metadata" => "metadata",
            "product" => "product",
            "device" => "device",
            "actor" => "actor",
            "process" | "parent_process" => "process",
            "file" => "file",
            "dst_endpoint" | "src_endpoint" => "network_endpoint",
            "policy" => "policy",
            _ => return None,
        })
    }

    /// An object's definition and those it extends, most general first.
    fn object_chain(name: &str) -> Vec<Value> {
        let mut chain = Vec::new();
        let mut next = Some(name.to_string());
        while let Some(name) = next.filter(|n| n != "object") {
            let file = load(&format!("objects/{name}.json"));
            next = file["extends"].as_str().map(str::to_string);
            chain.insert(0, file);
        }
        chain
    }

    /// Errors of `value` against a chain of definitions: required attributes, at_least_one
    /// constraints, enum values; then recursively for the objects it contains.
    fn check(path: &str, value: &Value, chain: &[Value], errors: &mut Vec<String>) {
        let Some(fields) = value.as_object() else {
            errors.push(format!("{path}: not an object"));
            return;
        };
        let attributes = merge(chain);
        for (name, def) in &attributes {
            if def["requirement"] == "required" && !fields.contains_key(name) {
                errors.push(format!("{path}.{name}: required, missing"));
            }
            // The base event's class and category enums name only its own uid (0); the uids of
            // classes are checked against the class files below.
            let own_uid = name == "class_uid" || name == "category_uid";
            if let (Some(values), Some(v), false) = (def["enum"].as_object(), fields.get(name), own_uid) {
                // The dictionary gives every `_id` enum Unknown (0) and Other (99); some object
                // files spell them out, some do not.
                let generic = name.ends_with("_id") && (v == 0 || v == 99);
                if !generic && !values.contains_key(&v.to_string()) {
                    errors.push(format!("{path}.{name}: {v} is not in the schema's enum"));
                }
            }
        }
        // The most specific definition's constraint applies.
        if let Some(any) = chain.iter().rev().find_map(|f| f["constraints"]["at_least_one"].as_array())
            && !any.iter().filter_map(Value::as_str).any(|a| fields.contains_key(a))
        {
            errors.push(format!("{path}: needs at least one of {any:?}"));
        }
        for (name, v) in fields {
            if let Some(object) = object_file(name).filter(|_| v.is_object()) {
                check(&format!("{path}.{name}"), v, &object_chain(object), errors);
            }
        }
    }

    /// Every schema error of an OCSF event.
    fn validate(event: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        let class_uid = event["class_uid"].as_u64().unwrap_or(u64::MAX);
        let (category, class) = match class_uid {
            0 => (None, None),
            1001 => (Some("events/system/system.json"), Some("events/system/file_activity.json")),
            1007 => (Some("events/system/system.json"), Some("events/system/process_activity.json")),
            4001 => (Some("events/network/network.json"), Some("events/network/network_activity.json")),
            other => return vec![format!("class_uid {other} is not one this test knows")],
        };
        let mut chain = vec![load("events/base_event.json")];
        chain.extend(category.map(load));
        chain.extend(class.map(load));
        // The profile adds attributes without overriding the class's own definitions.
        let mut with_profile = vec![load("profiles/security_control.json")];
        with_profile.extend(chain.iter().cloned());
        check("event", event, &with_profile, &mut errors);

        // The category is named by the class or the category class it extends.
        let category = chain.iter().rev().find_map(|c| c["category"].as_str()).unwrap_or("other");
        let category_uid = match category {
            "other" => 0,
            name => load("categories.json")["attributes"][name]["uid"].as_u64().unwrap_or(u64::MAX),
        };
        let class_in_category = chain.last().and_then(|c| c["uid"].as_u64()).unwrap_or(0);
        if event["category_uid"] != category_uid {
            errors.push(format!("category_uid {} is not {category_uid}", event["category_uid"]));
        }
        if class_uid != category_uid * 1000 + class_in_category {
            errors.push(format!("class_uid {class_uid} is not {category_uid}*1000+{class_in_category}"));
        }
        let activity = event["activity_id"].as_u64().unwrap_or(u64::MAX);
        if event["type_uid"] != class_uid * 100 + activity {
            errors.push(format!("type_uid {} is not class_uid*100+activity_id", event["type_uid"]));
        }
        let profiles = &event["metadata"]["profiles"];
        if !profiles.as_array().is_some_and(|p| p.contains(&json!("security_control"))) {
            errors.push(format!("metadata.profiles {profiles} lacks security_control"));
        }
        errors
    }

    fn base(kind: &str) -> Value {
        json!({
            "schema": "agent-guard.event/v1",
            "time": "2026-11-28T20:46:20.123456Z",
            "host": "build-7",
            "event_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
            "kind": kind,
        })
    }

    fn with(mut event: Value, extra: Value) -> Value {
        if let (Some(fields), Some(extra)) = (event.as_object_mut(), extra.as_object()) {
            fields.extend(extra.clone());
        }
        event
    }

    fn task() -> Value {
        json!({"id": 7, "agent": "claude", "intent": "fix the build", "grant": "repo-rw", "parent": 3,
               "step": "run the tests"})
    }

    fn process(argv: bool) -> Value {
        let mut p = json!({"pid": 4242, "tid": 4243, "ppid": 4200, "uid": 1000, "gid": 1000, "comm": "python3",
                           "executable": "/usr/bin/python3.12", "exec_id": "e-4242-1", "parent_exec_id": "e-4200-1",
                           "ancestry": ["e-4242-1", "e-4200-1", "e-4100-1"]});
        if argv {
            p["argv"] = json!(["curl", "-s", "https://example.com"]);
        }
        p
    }

    /// An action event, `decision` and `policy_decision` as the daemon pairs them.
    fn action(kind: &str, decision: &str, object: Value) -> Value {
        let (policy, enforcement, rule) = match decision {
            "denied" => ("deny", "lsm", "default-deny"),
            "held" => ("deny", "lsm", "ask"),
            _ => ("flag", "observe", "files.read /srv/secret/** (flag)"),
        };
        with(
            base(kind),
            json!({"decision": decision, "policy_decision": policy, "enforcement": enforcement,
                   "process": process(kind == "process.exec"), "task": task(), "object": object, "rule": rule,
                   "reason": "out of scope"}),
        )
    }

    /// One realistic event of every kind, actions both denied and flagged.
    fn samples() -> Vec<Value> {
        let file = |access: &str| json!({"type": "file", "path": "/srv/secret/key.pem", "access": [access]});
        let change =
            |op: &str| json!({"type": "file", "path": "/work/repo/build", "access": ["write"], "operation": op});
        let net = json!({"type": "network", "address": "203.0.113.9", "port": 443, "protocol": "tcp"});
        let udp = json!({"type": "network", "address": "198.51.100.1", "port": 53, "protocol": "udp"});
        let exe = json!({"type": "executable", "path": "/usr/bin/curl"});
        let requester = json!({"pid": 900, "uid": 0, "user": "root"});
        let mut events = Vec::new();
        for decision in ["denied", "flagged"] {
            events.push(action("file.open", decision, file("read")));
            for op in ["create", "unlink", "mkdir", "rmdir", "rename_from", "rename_to", "link", "symlink"] {
                events.push(action("file.change", decision, change(op)));
            }
            for op in ["truncate", "chmod", "chown"] {
                events.push(action("file.change", decision, change(op)));
            }
            events.push(action("process.exec", decision, exe.clone()));
            events.push(action("network.connect", decision, net.clone()));
            events.push(action("network.send", decision, udp.clone()));
        }
        events.push(with(action("network.connect", "flagged", net.clone()), json!({"count": 120, "aggregated": true})));
        events.push(with(action("approval.request", "held", file("read")), json!({"approval": 12})));
        events.push(with(action("approval.request", "held", exe), json!({"approval": 13})));
        events.push(with(action("approval.request", "held", net), json!({"approval": 14})));
        events.push(with(
            base("task.open"),
            json!({"task": task(), "actor": requester, "enforcement": "none",
                   "grant_spec": {"mode": "enforce", "ttl": "30m", "files": {"read": ["/work/**"], "write": []},
                                  "exec": ["/usr/bin/*"], "network": {"connect": ["10.0.0.0/8:443"]}}}),
        ));
        events.push(with(base("task.close"), json!({"task": task(), "enforcement": "none"})));
        events.push(with(base("task.stop"), json!({"task": task(), "actor": requester, "reason": "revoked"})));
        events.push(with(base("task.intent"), json!({"task": task(), "process": process(false)})));
        events.push(with(base("grant.revoke"), json!({"task": task(), "actor": requester})));
        events.push(with(base("grant.extend"), json!({"task": task(), "actor": requester, "reason": "+10m"})));
        events.push(with(
            base("approval.granted"),
            json!({"task": task(), "actor": requester, "approval": 12, "decision": "allowed", "rule": "ask"}),
        ));
        events.push(with(
            base("approval.denied"),
            json!({"task": task(), "actor": requester, "approval": 13, "decision": "denied", "rule": "ask"}),
        ));
        events.push(with(base("guard.start"), json!({"enforcement": "network=cgroup file=lsm exec=lsm"})));
        events.push(with(base("guard.stop"), json!({"reason": "shutdown signal"})));
        events.push(with(base("guard.events_dropped"), json!({"count": 17, "reason": "ring buffer full"})));
        events.push(with(
            base("guard.tag_lost"),
            json!({"task": task(), "process": process(false), "enforcement": "kill", "decision": "denied"}),
        ));
        events.push(with(
            base("guard.tamper"),
            json!({"task": task(), "process": process(false), "decision": "denied", "enforcement": "lsm",
                   "rule": "guard.self_protection"}),
        ));
        events.push(with(
            base("task.escape"),
            json!({"task": task(), "process": process(false), "decision": "denied", "enforcement": "lsm",
                   "rule": "guard.containment",
                   "object": {"type": "escape", "route": "capability", "detail": "CAP_SYS_ADMIN"}}),
        ));
        events.push(with(base("policy.load"), json!({"reason": "profiles: dev; grants: repo-rw"})));
        events.push(with(base("policy.rejected"), json!({"reason": "grants/x.yaml: unknown field"})));
        events
    }

    #[test]
    fn ocsf_events_have_what_the_schema_requires() {
        for event in samples() {
            let ocsf = to_ocsf(&event);
            let errors = validate(&ocsf);
            assert!(errors.is_empty(), "{} -> {ocsf:#}\n{errors:#?}", event["kind"]);
        }
    }

    #[test]
    fn ocsf_check_fails_without_a_required_field() {
        let ocsf = to_ocsf(&action("file.open", "denied", json!({"type": "file", "path": "/etc/shadow"})));
        assert!(validate(&ocsf).is_empty());
        for pointer in ["/device", "/file/type_id", "/metadata/product", "/time", "/actor"] {
            let mut broken = ocsf.clone();
            let (parent, key) = pointer.rsplit_once('/').unwrap_or_default();
            if let Some(fields) = broken.pointer_mut(parent).and_then(Value::as_object_mut) {
                fields.remove(key);
            }
            assert!(!validate(&broken).is_empty(), "dropping {pointer} went unnoticed");
        }
        let mut wrong = ocsf.clone();
        wrong["activity_id"] = json!(42);
        assert!(!validate(&wrong).is_empty(), "an activity_id outside the enum went unnoticed");
    }

    #[test]
    fn ocsf_mapping_of_actions() {
        let denied = to_ocsf(&action(
            "network.connect",
            "denied",
            json!({"type": "network", "address": "10.1.2.3",
                                                                          "port": 22, "protocol": "tcp"}),
        ));
        assert_eq!(denied["class_uid"], 4001);
        assert_eq!(denied["activity_id"], 5);
        assert_eq!(denied["type_uid"], 400105);
        assert_eq!(denied["action_id"], 2);
        assert_eq!(denied["disposition_id"], 2);
        assert_eq!(denied["dst_endpoint"], json!({"ip": "10.1.2.3", "port": 22}));
        assert_eq!(denied["time"], 1_795_898_780_123_u64);
        assert_eq!(denied["metadata"]["uid"], "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
        assert_eq!(denied["policy"], json!({"name": "repo-rw", "uid": "7", "desc": "default-deny"}));
        assert_eq!(denied["actor"]["process"]["parent_process"], json!({"pid": 4200, "uid": "e-4200-1"}));
        let ext = &denied["unmapped"]["agent_guard"];
        assert_eq!(ext["task"]["agent"], "claude");
        assert_eq!(ext["task"]["step"], "run the tests");
        assert_eq!(ext["enforcement"], "lsm");
        assert_eq!(ext["process"]["ancestry"][2], "e-4100-1");

        let exec = to_ocsf(&action("process.exec", "flagged", json!({"type": "executable", "path": "/usr/bin/curl"})));
        assert_eq!(exec["type_uid"], 100701);
        assert_eq!(exec["disposition"], "Detected");
        assert_eq!(exec["process"]["cmd_line"], "curl -s https://example.com");
        assert_eq!(exec["process"]["file"]["name"], "curl");
    }

    #[test]
    fn ocsf_never_panics_on_odd_input() {
        for odd in [
            json!(null),
            json!({}),
            json!({"kind": "file.open"}),
            json!({"kind": "task.teleport", "count": 1}),
            json!({"kind": "file.change", "object": {"type": "file"}, "process": 3, "time": "yesterday"}),
        ] {
            let ocsf = to_ocsf(&odd);
            assert!(ocsf["class_uid"].is_u64());
        }
        assert_eq!(to_ocsf(&json!({"kind": "task.teleport"}))["activity_id"], 0);
    }
}
