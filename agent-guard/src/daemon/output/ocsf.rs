//! OCSF output (docs/ocsf.md): one agent-guard event to one OCSF event. The mapping matches on
//! the event's kind exhaustively: a new kind does not compile until it is given a class here.

use std::time::UNIX_EPOCH;

use serde_json::{Map, Value, json};

use crate::daemon::events::schema::{
    Access, Actor, Body, Decision, DnsObject, Event, ExecObject, FileObject, FileOperation, HeldObject, NetworkObject,
    Process,
};

/// The OCSF schema version the events claim (`metadata.version`).
pub const OCSF_VERSION: &str = "1.9.0";

/// Name of the vendor extension object under `unmapped` (see `extension`).
const EXTENSION: &str = "agent_guard";

const BASE_EVENT: u64 = 0;
const FILE_ACTIVITY: u64 = 1001;
const PROCESS_ACTIVITY: u64 = 1007;
const NETWORK_ACTIVITY: u64 = 4001;
/// OCSF DNS Activity.
const DNS_ACTIVITY: u64 = 4003;

/// What an event is about, in OCSF's terms: the object of its class.
enum Subject<'a> {
    File(&'a FileObject),
    Launch(&'a ExecObject),
    Network(&'a NetworkObject),
    Dns(&'a DnsObject),
    /// Lifecycle, control and guard events: no OCSF class describes a task grant (Entity
    /// Management would need a managed entity type the schema does not have), so they are
    /// Base Events, "Other".
    Other,
    /// A kind written by a newer daemon: Base Event, "Unknown".
    Unknown,
}

/// The OCSF class and activity of an event, and the object it is about.
fn classify(body: &Body) -> (u64, u64, Subject<'_>) {
    match body {
        Body::FileOpen(a) => (FILE_ACTIVITY, 14, Subject::File(&a.object)), // Open
        Body::FileChange(a) => (FILE_ACTIVITY, file_change_activity(a.object.operation), Subject::File(&a.object)),
        Body::ProcessExec(a) => (PROCESS_ACTIVITY, 1, Subject::Launch(&a.object)), // Launch
        // A connect refused by the guard is the schema's "Refuse" (its firewall-block example).
        Body::NetworkConnect(a) | Body::NetworkSend(a) if a.verdict.decision == Decision::Denied => {
            (NETWORK_ACTIVITY, 5, Subject::Network(&a.object))
        }
        Body::NetworkConnect(a) => (NETWORK_ACTIVITY, 1, Subject::Network(&a.object)), // Open
        Body::NetworkSend(a) => (NETWORK_ACTIVITY, 6, Subject::Network(&a.object)),    // Traffic
        // The question with its answer (or refusal): the schema's "Response".
        Body::NetworkDns(a) => (DNS_ACTIVITY, 2, Subject::Dns(&a.object)),
        // A held action is reported in the class of the action it holds.
        Body::ApprovalRequest(h) => match &h.object {
            HeldObject::File(file) => (FILE_ACTIVITY, 14, Subject::File(file)),
            HeldObject::Executable(exe) => (PROCESS_ACTIVITY, 1, Subject::Launch(exe)),
            HeldObject::Network(net) => (NETWORK_ACTIVITY, 1, Subject::Network(net)),
            // No OCSF class describes a request to widen a policy: the base event, with the
            // request in `unmapped.agent_guard`.
            HeldObject::Access(_) => (BASE_EVENT, 99, Subject::Other),
        },
        Body::TaskOpen(_)
        | Body::TaskClose(_)
        | Body::TaskStop(_)
        | Body::TaskIntent(_)
        | Body::GrantRevoke(_)
        | Body::GrantExtend(_)
        | Body::GrantNarrow(_)
        | Body::TaskEscape(_)
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
        | Body::PolicyRejected(_) => (BASE_EVENT, 99, Subject::Other),
        Body::Unknown => (BASE_EVENT, 0, Subject::Unknown),
    }
}

/// The profiles an event claims: always `security_control`; `host` for Base Events (`device`
/// and `actor` are not attributes of the Base Event: the host profile adds them); container
/// for a containerised task's.
fn profiles(class_uid: u64, in_container: bool) -> Vec<&'static str> {
    let mut profiles = vec!["security_control"];
    if class_uid == BASE_EVENT {
        profiles.push("host");
    }
    if in_container {
        profiles.push("container");
    }
    profiles
}

/// The OCSF `container` object of a task's container (the container profile).
fn container_object(container: &crate::daemon::container::Container) -> Value {
    let mut object = json!({"uid": container.id, "runtime": container.runtime});
    if let Some(pod) = &container.pod_uid {
        object["pod_uuid"] = pod.as_str().into();
        object["orchestrator"] = "kubernetes".into();
    }
    if let Some(name) = &container.name {
        object["name"] = name.as_str().into();
    }
    // The container object has no pod name or namespace: tags (key_value_pair objects) named
    // as OpenTelemetry's resource conventions name them.
    let tags: Vec<Value> = [("k8s.pod.name", &container.pod_name), ("k8s.namespace.name", &container.pod_namespace)]
        .into_iter()
        .filter_map(|(key, value)| value.as_ref().map(|v| json!({"name": key, "value": v})))
        .collect();
    if !tags.is_empty() {
        object["tags"] = tags.into();
    }
    object
}

/// Maps one agent-guard event to one OCSF event.
pub fn to_ocsf(event: &Event) -> Value {
    let (class_uid, activity_id, subject) = classify(&event.body);
    let (class_name, activity_name) = names(class_uid, activity_id);
    let (severity_id, severity) = severity(&event.body);
    let (status_id, status) = status(&event.body);

    let container = event.task.as_ref().and_then(|t| t.container.as_ref());
    let profiles = profiles(class_uid, container.is_some());
    let mut out = json!({
        "activity_id": activity_id,
        "activity_name": activity_name,
        "category_uid": class_uid / 1000,
        "category_name": category_name(class_uid / 1000),
        "class_uid": class_uid,
        "class_name": class_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": format!("{class_name}: {activity_name}"),
        "time": epoch_ms(&event.time),
        "severity_id": severity_id,
        "severity": severity,
        "status_id": status_id,
        "status": status,
        "metadata": {
            "uid": event.event_id,
            "version": OCSF_VERSION,
            "product": {
                "name": "agent-guard",
                "vendor_name": "agent-guard",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "profiles": profiles,
            "log_name": event.schema,
            "original_time": event.time,
        },
        "device": {
            "hostname": event.host,
            // The daemon cannot tell what kind of machine it guards.
            "type_id": 0,
            "type": "Unknown",
        },
        "message": event.body.reason(),
        "unmapped": { EXTENSION: extension(event) },
    });
    let Some(fields) = out.as_object_mut() else { return out };
    if status_id == 2
        && let Some(rule) = event.rule()
    {
        // What refused it: the rule (default-deny, grant.ttl, a grant rule ...).
        fields.insert("status_detail".into(), rule.into());
    }
    // Only flood-aggregated repeats are counts of this event.
    if event.aggregated
        && let Some(count) = event.repeats
    {
        fields.insert("count".into(), count.into());
    }
    security_control(fields, event);
    if let Some(container) = container {
        fields.insert("container".into(), container_object(container));
    }
    if let Some(actor) = actor(class_uid, event) {
        fields.insert("actor".into(), actor);
    }
    match subject {
        Subject::File(file_object) => {
            fields.insert("file".into(), file(&file_object.path, file_object.operation));
        }
        Subject::Launch(exe) => {
            fields.insert("process".into(), launched(event.process.as_ref(), &exe.path));
        }
        Subject::Network(net) => {
            fields.insert("dst_endpoint".into(), json!({ "ip": net.address, "port": net.port }));
            fields.insert(
                "connection_info".into(),
                json!({
                    "protocol_name": net.protocol,
                    "protocol_num": match net.protocol.as_str() { "tcp" => json!(6), "udp" => json!(17), _ => Value::Null },
                    // Only the guarded processes' own connections and sends are reported.
                    "direction_id": 2,
                    "direction": "Outbound",
                }),
            );
        }
        Subject::Dns(dns) => {
            fields.insert("query".into(), json!({ "hostname": dns.question, "type": dns.qtype, "class": "IN" }));
            let answers: Vec<Value> =
                dns.answers.iter().map(|a| json!({ "rdata": a, "ttl": dns.ttl, "class": "IN" })).collect();
            fields.insert("answers".into(), json!(answers));
            fields.insert("rcode".into(), json!(dns.rcode));
            fields.insert("rcode_id".into(), json!(rcode_id(&dns.rcode)));
            fields.insert(
                "connection_info".into(),
                json!({ "protocol_name": dns.transport, "direction_id": 2, "direction": "Outbound" }),
            );
            if let Some(server) = &dns.server {
                fields.insert("dst_endpoint".into(), json!({ "ip": server }));
            }
        }
        Subject::Other | Subject::Unknown => {}
    }
    drop_nulls(&mut out);
    out
}

/// OCSF `rcode_id` of a DNS response code (RFC 1035 numbering; 99: other).
fn rcode_id(rcode: &str) -> u64 {
    match rcode {
        "NOERROR" => 0,
        "FORMERR" => 1,
        "SERVFAIL" => 2,
        "NXDOMAIN" => 3,
        "NOTIMP" => 4,
        "REFUSED" => 5,
        _ => 99,
    }
}

fn file_change_activity(operation: Option<FileOperation>) -> u64 {
    match operation {
        Some(FileOperation::Create | FileOperation::Mkdir | FileOperation::Link | FileOperation::Symlink) => 1, // Create
        Some(FileOperation::Truncate) => 3,                             // Update
        Some(FileOperation::Unlink | FileOperation::Rmdir) => 4,        // Delete
        Some(FileOperation::RenameFrom | FileOperation::RenameTo) => 5, // Rename
        // chmod/chown change who may use the file: the schema's "Set Security", not attributes.
        Some(FileOperation::Chmod | FileOperation::Chown) => 7,
        Some(FileOperation::Xattr | FileOperation::Setattr | FileOperation::UnixConnect) | None => 99,
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
        (FILE_ACTIVITY, 1) => "Create",
        (FILE_ACTIVITY, 3) => "Update",
        (FILE_ACTIVITY, 4) => "Delete",
        (FILE_ACTIVITY, 5) => "Rename",
        (FILE_ACTIVITY, 7) => "Set Security",
        (FILE_ACTIVITY, 14) | (NETWORK_ACTIVITY, 1) => "Open",
        (PROCESS_ACTIVITY, 1) => "Launch",
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
fn severity(body: &Body) -> (u64, &'static str) {
    const HIGH: (u64, &str) = (4, "High");
    const MEDIUM: (u64, &str) = (3, "Medium");
    const LOW: (u64, &str) = (2, "Low");
    const INFORMATIONAL: (u64, &str) = (1, "Informational");
    match body {
        Body::Tamper(_) | Body::TaskEscape(_) | Body::EventsDropped(_) => HIGH,
        Body::TagLost(_) | Body::GuardAdopt(_) | Body::PolicyRejected(_) => MEDIUM,
        _ => match body.verdict().map(|v| v.decision) {
            Some(Decision::Flagged) => MEDIUM,
            Some(Decision::Denied | Decision::Held) => LOW,
            Some(Decision::Allowed) | None => INFORMATIONAL,
        },
    }
}

fn status(body: &Body) -> (u64, &'static str) {
    match (body, body.verdict().map(|v| v.decision)) {
        (_, Some(Decision::Denied)) | (Body::PolicyRejected(_), _) => (2, "Failure"),
        // Held: neither done nor refused yet.
        (_, Some(Decision::Held)) => (0, "Unknown"),
        _ => (1, "Success"),
    }
}

/// The `security_control` profile: action, disposition and the policy (the task's grant).
fn security_control(fields: &mut Map<String, Value>, event: &Event) {
    // disposition_id values of the schema's dictionary.
    let outcome = match (&event.body, event.decision()) {
        (Body::ApprovalGranted(_), _) => Some((1, "Allowed", 8, "Approved")),
        (Body::ApprovalDenied(_), _) => Some((2, "Denied", 25, "Rejected")),
        // Held until a human decides: the action is not known yet, the disposition is "Delayed".
        (_, Some(Decision::Held)) => Some((0, "Unknown", 14, "Delayed")),
        (_, Some(Decision::Denied)) => Some((2, "Denied", 2, "Blocked")),
        // Flagged: it happened (action Allowed) but is out of scope, i.e. a policy violation the
        // guard detected and reported without stopping it: "Detected" rather than "Logged",
        // which also fits in-scope activity that is merely recorded.
        (_, Some(Decision::Flagged)) => Some((1, "Allowed", 15, "Detected")),
        // Allowed actions, and a task's grant issued.
        (Body::TaskOpen(_), _) | (_, Some(Decision::Allowed)) => Some((1, "Allowed", 1, "Allowed")),
        (_, None) => None,
    };
    if let Some((action_id, action, disposition_id, disposition)) = outcome {
        let alert = disposition_id == 15 || matches!(event.body, Body::Tamper(_) | Body::TaskEscape(_));
        fields.insert("action_id".into(), action_id.into());
        fields.insert("action".into(), action.into());
        fields.insert("disposition_id".into(), disposition_id.into());
        fields.insert("disposition".into(), disposition.into());
        fields.insert("is_alert".into(), alert.into());
    }
    // The grant is the policy; its instance is the task (a grant is issued per task), and the
    // rule that decided is its description.
    let task = event.task.as_ref();
    let rule = event.rule();
    if task.is_some() || rule.is_some() {
        let mut policy = Map::new();
        policy.insert("name".into(), task.map_or("agent-guard", |t| t.grant.as_str()).into());
        if let Some(task) = task {
            policy.insert("uid".into(), task.id.to_string().into());
        }
        if let Some(rule) = rule {
            policy.insert("desc".into(), rule.into());
        }
        fields.insert("policy".into(), Value::Object(policy));
    }
}

/// Who asked for a control action, where the kind has one.
fn requester(body: &Body) -> Option<&Actor> {
    match body {
        Body::TaskOpen(b) => b.actor.as_ref(),
        Body::TaskClose(b) | Body::TaskStop(b) => b.actor.as_ref(),
        Body::TaskIntent(b) | Body::GrantRevoke(b) | Body::GrantExtend(b) => b.actor.as_ref(),
        Body::ApprovalGranted(b) | Body::ApprovalDenied(b) => b.actor.as_ref(),
        _ => None,
    }
}

/// Who acted: the process of an action, or the user who made a control request (`actor`).
fn actor(class_uid: u64, event: &Event) -> Option<Value> {
    if let Some(process) = &event.process {
        let process = acting_process(process);
        let user = process["user"].clone();
        return Some(json!({ "process": process, "user": user }));
    }
    if let Some(requester) = requester(&event.body) {
        let mut user = json!({ "uid": requester.uid.to_string() });
        if let Some(name) = &requester.user {
            user["name"] = name.as_str().into();
        }
        return Some(json!({ "process": { "pid": requester.pid }, "user": user }));
    }
    // The system classes require an actor; the guard itself is the one acting then.
    (class_uid != BASE_EVENT).then(|| json!({ "app_name": "agent-guard" }))
}

/// The process as agent-guard saw it (for an exec: the process that called execve).
fn acting_process(process: &Process) -> Value {
    let mut out = json!({
        "pid": process.pid,
        "tid": process.tid,
        "uid": process.exec_id,
        "name": process.comm,
        "user": { "uid": process.uid.to_string() },
    });
    if let Some(executable) = &process.executable {
        out["file"] = file(executable, None);
    }
    if process.ppid.is_some() || process.parent_exec_id.is_some() {
        out["parent_process"] = json!({ "pid": process.ppid, "uid": process.parent_exec_id });
    }
    out
}

/// The process image an exec starts: same pid, the new executable and its command line.
fn launched(process: Option<&Process>, path: &str) -> Value {
    let mut out = json!({
        "pid": process.map(|p| p.pid),
        "uid": process.and_then(|p| p.exec_id.as_deref()),
        "file": file(path, None),
        "user": { "uid": process.map(|p| p.uid.to_string()) },
    });
    if let Some(argv) = process.and_then(|p| p.argv.as_ref()) {
        out["cmd_line"] = argv.join(" ").into();
    }
    if let Some(name) = path.rsplit('/').next() {
        out["name"] = name.into();
    }
    out
}

/// An OCSF file object: `name` and `type_id` are required.
fn file(path: &str, operation: Option<FileOperation>) -> Value {
    let (type_id, kind) = match operation {
        Some(FileOperation::Mkdir | FileOperation::Rmdir) => (2, "Folder"),
        Some(FileOperation::Symlink) => (7, "Symbolic Link"),
        _ => (1, "Regular File"),
    };
    let name = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or(path);
    json!({ "name": name, "path": path, "type_id": type_id, "type": kind })
}

/// The vendor extension: everything agent-guard knows that OCSF has no attribute for, under
/// `unmapped.agent_guard`. `unmapped` is a Base Event attribute of type object, so a strict
/// validator accepts the event as is; a registered OCSF extension (`metadata.extensions`) would
/// need its own schema published and loaded by every consumer before the events validated.
fn extension(event: &Event) -> Value {
    let mut out = Map::new();
    out.insert("kind".into(), event.kind().as_str().into());
    if let Some(verdict) = event.body.verdict() {
        out.insert("decision".into(), verdict.decision.as_str().into());
        if let Some(policy) = verdict.policy_decision {
            out.insert("policy_decision".into(), json!(policy));
        }
        out.insert("enforcement".into(), verdict.enforcement.as_str().into());
        out.insert("rule".into(), verdict.rule.as_str().into());
    }
    match &event.body {
        Body::ApprovalRequest(h) => {
            out.insert("approval".into(), h.approval.into());
            match &h.object {
                HeldObject::File(file) => {
                    out.insert("access".into(), access_list(&file.access));
                }
                HeldObject::Access(access) => {
                    out.insert("requested".into(), json!(access.requested));
                    out.insert("duration_secs".into(), access.duration_secs.into());
                    out.insert("justification".into(), access.reason.as_str().into());
                    out.insert("approvals_needed".into(), access.approvals_needed.into());
                }
                HeldObject::Executable(_) | HeldObject::Network(_) => {}
            }
        }
        Body::ApprovalGranted(a) | Body::ApprovalDenied(a) => {
            out.insert("approval".into(), a.approval.into());
            if !a.approvers.is_empty() {
                out.insert("approvers".into(), json!(a.approvers));
            }
        }
        Body::GrantNarrow(narrowed) => {
            out.insert("approval".into(), narrowed.approval.into());
        }
        Body::TaskOpen(b) => {
            out.insert("grant_spec".into(), json!(b.grant_spec));
        }
        Body::FileOpen(a) | Body::FileChange(a) => {
            out.insert("access".into(), access_list(&a.object.access));
        }
        Body::TaskEscape(a) => {
            out.insert("escape".into(), json!(a.object));
        }
        Body::TaskClose(b) | Body::TaskStop(b) => {
            if let Some(usage) = &b.usage {
                out.insert("usage".into(), json!(usage));
            }
        }
        Body::EventsDropped(loss) | Body::OutputDropped(loss) | Body::OutputFailed(loss) => {
            out.insert("lost".into(), loss.lost.into());
        }
        Body::GuardStart(started) => {
            out.insert("levels".into(), json!(started.levels));
        }
        Body::GuardAdopt(adopted) => {
            out.insert("adopted".into(), adopted.adopted.into());
        }
        Body::NetworkConnect(_)
        | Body::NetworkSend(_)
        | Body::NetworkDns(_)
        | Body::ProcessExec(_)
        | Body::TaskIntent(_)
        | Body::GrantRevoke(_)
        | Body::GrantExtend(_)
        | Body::Tamper(_)
        | Body::TagLost(_)
        | Body::GuardStop(_)
        | Body::PolicyLoad(_)
        | Body::CallbackRefused(_)
        | Body::PolicyRejected(_)
        | Body::Unknown => {}
    }
    if let Some(actor) = requester(&event.body) {
        out.insert("actor".into(), json!(actor));
    }
    if let Some(task) = &event.task {
        out.insert("task".into(), json!(task));
    }
    if let Some(process) = &event.process {
        let mut extra = Map::new();
        extra.insert("gid".into(), process.gid.into());
        if let Some(exec_id) = &process.exec_id {
            extra.insert("exec_id".into(), exec_id.as_str().into());
        }
        if let Some(parent) = &process.parent_exec_id {
            extra.insert("parent_exec_id".into(), parent.as_str().into());
        }
        if !process.ancestry.is_empty() {
            extra.insert("ancestry".into(), json!(process.ancestry));
        }
        out.insert("process".into(), Value::Object(extra));
    }
    Value::Object(out)
}

fn access_list(access: &[Access]) -> Value {
    access.iter().map(|a| Value::from(a.as_str())).collect()
}

/// Epoch milliseconds of the event's RFC 3339 time; 0 when it is unreadable (the raw value
/// stays in `metadata.original_time`).
fn epoch_ms(time: &str) -> u64 {
    humantime::parse_rfc3339_weak(time)
        .ok()
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

    use crate::daemon::events::schema::Event;

    /// The OCSF form of an event given as its JSON line (which must be a valid event).
    fn to_ocsf(event: &Value) -> Value {
        let typed: Event = serde_json::from_value(event.clone()).unwrap_or_else(|e| panic!("{event}: {e}"));
        super::to_ocsf(&typed)
    }

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
            "container" => "container",
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

    /// Errors of `value` against a chain of definitions: required attributes, `at_least_one`
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
        if event["metadata"]["profiles"].as_array().is_some_and(|p| p.contains(&json!("container"))) {
            with_profile.push(load("profiles/container.json"));
        }
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
        if let (Some(fields), Value::Object(extra)) = (event.as_object_mut(), extra) {
            fields.extend(extra);
        }
        event
    }

    fn task() -> Value {
        json!({"id": 7, "agent": "claude", "intent": "fix the build", "grant": "repo-rw", "parent": 3,
               "step": "run the tests",
               "container": {"id": "4f1a8e9c2b7d6e5f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f",
                             "runtime": "containerd", "pod_uid": "0b5c8f52-7a1e-4c2d-9f3b-6e8a1d2c4b5f",
                             "name": "planner", "pod_name": "agent-7f9c", "pod_namespace": "agents"}})
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
    #[expect(clippy::needless_pass_by_value, reason = "called with json! literals")]
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
        let usage = json!({"complete": true, "used": [], "unused": [], "truncated": 0, "touched": {},
                           "destinations": {}});
        events.push(with(
            base("task.open"),
            json!({"task": task(), "actor": requester, "reason": "ttl 30m",
                   "grant_spec": {"mode": "enforce", "ttl": "30m", "files": {"read": ["/work/**"], "write": []},
                                  "exec": ["/usr/bin/*"], "network": {"connect": ["10.0.0.0/8:443"]}}}),
        ));
        events.push(with(base("task.close"), json!({"task": task(), "usage": usage, "reason": "exited"})));
        events.push(with(
            base("task.stop"),
            json!({"task": task(), "actor": requester, "usage": usage, "reason": "revoked"}),
        ));
        events.push(with(base("task.intent"), json!({"task": task(), "process": process(false), "reason": "x"})));
        events.push(with(base("grant.revoke"), json!({"task": task(), "actor": requester, "reason": "revoked"})));
        events.push(with(base("grant.extend"), json!({"task": task(), "actor": requester, "reason": "+10m"})));
        events.push(with(
            base("approval.granted"),
            json!({"task": task(), "actor": requester, "approval": 12, "decision": "allowed", "rule": "ask",
                   "enforcement": "lsm", "reason": "approved"}),
        ));
        events.push(with(
            base("approval.denied"),
            json!({"task": task(), "actor": requester, "approval": 13, "decision": "denied", "rule": "ask",
                   "enforcement": "lsm", "reason": "denied"}),
        ));
        events.push(with(
            base("guard.start"),
            json!({"levels": {"network": "cgroup", "file": "lsm", "exec": "lsm"}, "reason": "started"}),
        ));
        events.push(with(base("guard.stop"), json!({"reason": "shutdown signal"})));
        events.push(with(base("guard.events_dropped"), json!({"lost": 17, "reason": "ring buffer full"})));
        events.push(with(base("guard.adopt"), json!({"adopted": 2, "reason": "no daemon for 3s"})));
        events.push(with(
            base("guard.tag_lost"),
            json!({"task": task(), "process": process(false), "enforcement": "kill", "decision": "denied",
                   "rule": "guard.tag_limit", "reason": "killed"}),
        ));
        events.push(with(
            base("guard.tamper"),
            json!({"task": task(), "process": process(false), "decision": "denied", "enforcement": "lsm",
                   "rule": "guard.self_protection", "reason": "signal to the daemon"}),
        ));
        events.push(with(
            base("task.escape"),
            json!({"task": task(), "process": process(false), "decision": "denied", "enforcement": "lsm",
                   "rule": "guard.containment", "reason": "capability",
                   "object": {"type": "escape", "route": "capability", "detail": "CAP_SYS_ADMIN"}}),
        ));
        // Access requests, a held connect, their answers and the narrowing.
        let asked_for = json!({"requested": {"mode": "enforce", "files": {"read": ["/srv/reports/**"], "write": []},
                                             "exec": [], "network": {"connect": []}},
                               "duration_secs": 600, "reason": "reconcile Q3", "approvals_needed": 2,
                               "requester": requester});
        events
            .push(with(action("approval.request", "held", asked_for), json!({"approval": 14, "rule": "requestable"})));
        events.push(with(action("approval.request", "held", net), json!({"approval": 15})));
        events.push(with(
            base("approval.granted"),
            json!({"task": task(), "approval": 14, "decision": "allowed", "rule": "requestable",
                   "enforcement": "landlock", "reason": "approved by alice and bob for 10m",
                   "approvers": [{"channel": "slack", "id": "U0ALICE", "name": "alice"},
                                 {"channel": "webhook", "id": "oncall"}]}),
        ));
        events.push(with(base("grant.narrow"), json!({"task": task(), "approval": 14, "reason": "time is up"})));
        events
            .push(with(base("approval.callback_refused"), json!({"reason": "slack callback refused: bad signature"})));
        events.push(with(base("policy.load"), json!({"reason": "profiles: dev; grants: repo-rw"})));
        events.push(with(base("policy.rejected"), json!({"reason": "grants/x.yaml: unknown field"})));
        events
    }

    #[test]
    fn every_kind_names_itself_as_on_the_wire() {
        for event in samples() {
            let typed: Event = serde_json::from_value(event.clone()).unwrap();
            assert_eq!(typed.kind().as_str(), event["kind"], "{event}");
        }
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
        let ocsf =
            to_ocsf(&action("file.open", "denied", json!({"type": "file", "path": "/etc/shadow", "access": ["read"]})));
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
        assert_eq!(denied["type_uid"], 400_105);
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
        // The task's container, with the container profile.
        assert_eq!(denied["container"]["uid"], "4f1a8e9c2b7d6e5f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f");
        assert_eq!(denied["container"]["runtime"], "containerd");
        assert_eq!(denied["container"]["pod_uuid"], "0b5c8f52-7a1e-4c2d-9f3b-6e8a1d2c4b5f");
        assert_eq!(denied["container"]["name"], "planner");
        assert_eq!(
            denied["container"]["tags"],
            json!([{"name": "k8s.pod.name", "value": "agent-7f9c"}, {"name": "k8s.namespace.name", "value": "agents"}])
        );
        assert!(denied["metadata"]["profiles"].as_array().unwrap().contains(&json!("container")));

        let exec = to_ocsf(&action("process.exec", "flagged", json!({"type": "executable", "path": "/usr/bin/curl"})));
        assert_eq!(exec["type_uid"], 100_701);
        assert_eq!(exec["disposition"], "Detected");
        assert_eq!(exec["process"]["cmd_line"], "curl -s https://example.com");
        assert_eq!(exec["process"]["file"]["name"], "curl");
    }

    #[test]
    fn ocsf_of_a_kind_from_a_newer_daemon_is_a_base_event() {
        let ocsf = to_ocsf(&with(base("task.teleport"), json!({"somewhere": 1})));
        assert_eq!(ocsf["class_uid"], 0);
        assert_eq!(ocsf["activity_id"], 0);
        assert!(validate(&ocsf).is_empty(), "{ocsf:#}");
    }
}
