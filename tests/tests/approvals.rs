//! Just-in-time access and approval channels, end to end on this host (the `landlock` level):
//! a task asks for more, approvers answer through Slack, Teams or a webhook with signed
//! callbacks (sent here the way each service signs them), and the kernel grant widens for
//! exactly that long. Each fake service checks what the daemon sent it the way the service
//! would: Slack's bearer token and Block Kit, Teams' Adaptive Card, the webhook's signature.
//! Forged, stale, unknown and self-approving answers are refused and change nothing.

use std::{
    fmt::Write as _,
    net::TcpListener,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use agent_guard_e2e::{Daemon, agent_guard_bin, stdout};
use base64::Engine;
use serde_json::Value;

const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const SLACK_TOKEN: &str = "xoxb-test-token";
const WEBHOOK_SECRET: &str = "webhook-shared-secret";
/// A Teams Outgoing Webhook security token: base64 of the HMAC key.
const TEAMS_TOKEN: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// What a fake service was sent: (path, headers, body).
type Received = Arc<Mutex<Vec<(String, Vec<(String, String)>, Value)>>>;

/// A fake service on `listener`: records each request and answers with `reply(path, body)`.
fn service(listener: TcpListener, reply: fn(&str, &Value) -> String) -> Received {
    let received: Received = Arc::default();
    let server = tiny_http::Server::from_listener(listener, None).expect("serve");
    let log = received.clone();
    std::thread::spawn(move || {
        for mut request in server.incoming_requests() {
            let mut body = String::new();
            request.as_reader().read_to_string(&mut body).unwrap();
            let headers =
                request.headers().iter().map(|h| (h.field.to_string().to_lowercase(), h.value.to_string())).collect();
            let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let answer = reply(request.url(), &json);
            log.lock().unwrap().push((request.url().to_string(), headers, json));
            let header = tiny_http::Header::from_bytes("content-type", "application/json").unwrap();
            request.respond(tiny_http::Response::from_string(answer).with_header(header)).unwrap();
        }
    });
    received
}

/// Slack's Web API as far as the daemon uses it.
fn slack_reply(path: &str, _: &Value) -> String {
    match path {
        "/chat.postMessage" | "/chat.update" => {
            r#"{"ok": true, "channel": "C0APPROVALS", "ts": "1764500000.000100"}"#.into()
        }
        _ => r#"{"ok": false, "error": "unknown_method"}"#.into(),
    }
}

fn ok_reply(_: &str, _: &Value) -> String {
    "{}".into()
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
}

/// Waits (up to `secs`) for a request to a fake service that matches `pred`.
fn wait_request(received: &Received, secs: u64, pred: impl Fn(&str, &Value) -> bool) -> (Vec<(String, String)>, Value) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some((_, headers, body)) = received.lock().unwrap().iter().find(|(p, _, b)| pred(p, b)) {
            return (headers.clone(), body.clone());
        }
        assert!(Instant::now() < deadline, "no such request within {secs} s: {:#?}", received.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hmac_hex(secret: &[u8], message: &[u8]) -> String {
    hex::encode(ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret), message).as_ref())
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// POSTs `body` to the daemon's callback listener; the status and body.
fn post(port: u16, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, String) {
    let mut request = ureq::post(&format!("http://127.0.0.1:{port}{path}"));
    for (name, value) in headers {
        request = request.set(name, value);
    }
    match request.send_bytes(body) {
        Ok(reply) => (reply.status(), reply.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, reply)) => (code, reply.into_string().unwrap_or_default()),
        Err(err) => panic!("callback {path}: {err}"),
    }
}

/// A Slack interaction: a click on `action` of approval `id` by `user`, signed with `secret`
/// at `ts`, as Slack sends it (form-encoded `payload`).
fn slack_click(port: u16, secret: &str, ts: u64, user: &str, action: &str, id: &str) -> (u16, String) {
    let payload = serde_json::json!({
        "type": "block_actions",
        "user": {"id": user, "username": format!("{user}-name"), "team_id": "T0TEAM"},
        "actions": [{"action_id": action, "block_id": format!("agent-guard-{id}"), "value": id, "type": "button"}],
        "response_url": "https://hooks.slack.com/actions/T0TEAM/1/x"
    });
    let body = format!("payload={}", urlencode(&payload.to_string()));
    let signature = format!("v0={}", hmac_hex(secret.as_bytes(), format!("v0:{ts}:{body}").as_bytes()));
    let headers = [
        ("x-slack-request-timestamp", ts.to_string()),
        ("x-slack-signature", signature),
        ("content-type", "application/x-www-form-urlencoded".into()),
    ];
    post(port, "/slack/actions", &headers, body.as_bytes())
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Teams Outgoing Webhook activity from Entra user `aad`, signed with `token`.
fn teams_message(port: u16, token: &str, aad: &str, text: &str, timestamp: &str) -> (u16, String) {
    let body = serde_json::json!({
        "type": "message", "id": "1764500000000", "timestamp": timestamp,
        "serviceUrl": "https://smba.trafficmanager.net/emea/", "channelId": "msteams",
        "from": {"id": "29:1abc", "name": "Bob Approver", "aadObjectId": aad},
        "text": format!("<at>agent-guard</at> {text}"),
        "textFormat": "plain"
    })
    .to_string();
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine.decode(token).unwrap();
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key), body.as_bytes());
    post(
        port,
        "/teams/messages",
        &[("authorization", format!("HMAC {}", engine.encode(tag.as_ref())))],
        body.as_bytes(),
    )
}

/// A signed webhook decision.
fn webhook_decision(port: u16, secret: &str, ts: u64, body: &str) -> (u16, String) {
    let signature = format!("v1={}", hmac_hex(secret.as_bytes(), format!("v1:{ts}:{body}").as_bytes()));
    post(
        port,
        "/webhook/decision",
        &[("x-agent-guard-timestamp", ts.to_string()), ("x-agent-guard-signature", signature)],
        body.as_bytes(),
    )
}

fn rfc3339(at: std::time::SystemTime) -> String {
    humantime_rfc3339(at)
}

/// RFC 3339 in UTC, as Teams writes it.
fn humantime_rfc3339(at: std::time::SystemTime) -> String {
    let secs = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%S.0000000Z"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

struct Setup {
    daemon: Daemon,
    callbacks: u16,
    slack: Received,
    teams: Received,
    webhook: Received,
    data: PathBuf,
    /// Where the channels' secret files are.
    secrets: PathBuf,
    _policies: tempfile::TempDir,
}

/// A daemon with all three channels pointed at fake services, and a profile `analyst` that
/// may request reading `data/**` (one approver) and `payroll/**` (two).
fn setup(asks: &[&str]) -> Setup {
    let free = || TcpListener::bind("127.0.0.1:0").unwrap();
    let (slack_l, teams_l, webhook_l) = (free(), free(), free());
    let port = |l: &TcpListener| l.local_addr().unwrap().port();
    let (slack_port, teams_port, webhook_port) = (port(&slack_l), port(&teams_l), port(&webhook_l));
    // Picked free, then bound by the daemon: a parallel test could take it in between, which
    // fails the start loudly (never silently).
    let callbacks = port(&free());
    let policies = tempfile::Builder::new().prefix("agent-guard-e2e-approvals-").tempdir().unwrap();
    let data = policies.path().join("data");
    std::fs::create_dir_all(data.join("reports")).unwrap();
    std::fs::write(data.join("reports/report.txt"), "q3-numbers\n").unwrap();
    let bins = agent_guard_bin().parent().unwrap().display().to_string();
    let py = python();
    let (py_exe, py_prefix, py_base) = (&py.executable, &py.prefix, &py.base_prefix);
    let mcp_dir = mcp_agent().parent().unwrap().display().to_string();
    let d = data.display();
    let asks = asks.iter().fold(String::new(), |mut out, f| {
        let _ = write!(out, ", {{path: \"{d}/{f}\", action: ask}}");
        out
    });
    std::fs::write(
        policies.path().join("analyst.yaml"),
        format!(
            "apiVersion: agent-guard.dev/v1\nkind: AgentProfile\nmetadata: {{name: analyst}}\nspec:\n  maxTtl: 20m\n  approvers: [\"uid:0\", \"slack:U0ALICE\", \"teams:aad-bob\", \"webhook:oncall\", \"webhook:second\"]\n  baseGrant:\n    files: {{read: [\"/usr/**\", \"/lib/**\", \"/lib64/**\", \"/etc/**\", \"/proc/**\", \"/sys/**\", \"/dev/**\", \"{bins}/**\", \"{py_prefix}/**\", \"{py_base}/**\", \"{mcp_dir}/**\"{asks}], write: [\"/dev/**\"]}}\n    exec: [\"{bins}/*\", \"/usr/bin/*\", \"/bin/*\", \"{py_exe}\"]\n  requestable:\n    maxDuration: 1m\n    rules:\n      - files: {{read: [\"{d}/reports/**\", \"{d}/*\"]}}\n      - files: {{read: [\"{d}/payroll/**\"]}}\n        twoPerson: true\n"
        ),
    )
    .unwrap();
    let config = format!(
        "outputs:\n  - {{type: file, path: \"{{events}}\"}}\napprovals:\n  listen: 127.0.0.1:{callbacks}\n  slack: {{channel: C0APPROVALS, botTokenFile: \"{{dir}}/slack-token\", signingSecretFile: \"{{dir}}/slack-secret\", apiUrl: \"http://127.0.0.1:{slack_port}\"}}\n  teams: {{webhookUrl: \"http://127.0.0.1:{teams_port}/incoming\", securityTokenFile: \"{{dir}}/teams-token\"}}\n  webhook: {{url: \"http://127.0.0.1:{webhook_port}/agent-guard\", secretFile: \"{{dir}}/webhook-secret\"}}\n"
    );
    // The secrets are read at start, from the daemon's own directory (made by start_configured):
    // written into a directory made first, passed by path.
    let secrets = tempfile::Builder::new().prefix("agent-guard-e2e-secrets-").tempdir().unwrap();
    for (file, text) in [
        ("slack-token", SLACK_TOKEN),
        ("slack-secret", SLACK_SECRET),
        ("teams-token", TEAMS_TOKEN),
        ("webhook-secret", WEBHOOK_SECRET),
    ] {
        std::fs::write(secrets.path().join(file), text).unwrap();
    }
    let config = config.replace("{dir}", secrets.path().to_str().unwrap());
    let secrets_dir = secrets.path().to_path_buf();
    let slack = service(slack_l, slack_reply);
    let teams = service(teams_l, ok_reply);
    let webhook = service(webhook_l, ok_reply);
    let daemon = Daemon::start_configured(Some(&config), &["--policy-dir", policies.path().to_str().unwrap()]);
    std::mem::forget(secrets);
    Setup { daemon, callbacks, slack, teams, webhook, data, secrets: secrets_dir, _policies: policies }
}

/// The Python that has the MCP SDK (`cargo xtask test` installs it): its real executable and
/// prefixes, which the task's grant must let it read and run.
struct Python {
    executable: String,
    prefix: String,
    base_prefix: String,
}

fn python() -> Python {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import os, sys, mcp; print(os.path.realpath(sys.executable)); print(sys.prefix); print(sys.base_prefix)",
        ])
        .output()
        .expect("python3");
    assert!(out.status.success(), "python3 with the MCP SDK (pip install mcp; cargo xtask test installs it): {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    Python { executable: lines[0].into(), prefix: lines[1].into(), base_prefix: lines[2].into() }
}

fn mcp_agent() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp/agent.py")
}

/// `agent-guard run --profile analyst -- sh -c SCRIPT`, started.
fn agent(setup: &Setup, script: &str) -> std::process::Child {
    std::process::Command::new(agent_guard_bin())
        .arg("--socket")
        .arg(&setup.daemon.socket)
        .args(["run", "--profile", "analyst", "--intent", "quarterly close", "--", "sh", "-c", script])
        .env("AG", agent_guard_bin())
        .env("AGENT_GUARD_SOCKET", &setup.daemon.socket)
        .env_remove("LD_LIBRARY_PATH")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn approval_id(body: &Value) -> String {
    let blocks = body["blocks"].as_array().expect("Block Kit blocks");
    let actions = blocks.iter().find(|b| b["type"] == "actions").expect("an actions block with the buttons");
    actions["elements"][0]["value"].as_str().unwrap().to_string()
}

#[test]
fn an_agent_asks_through_mcp_and_a_slack_approval_widens_its_grant_for_exactly_that_long() {
    let s = setup(&[]);
    let report = s.data.join("reports/report.txt");
    let d = s.data.join("reports").display().to_string();
    // The agent asks through the MCP server, driven by the official MCP Python SDK.
    let py = python();
    let child = std::process::Command::new(agent_guard_bin())
        .arg("--socket")
        .arg(&s.daemon.socket)
        .args(["run", "--profile", "analyst", "--intent", "quarterly close", "--", &py.executable])
        .arg(mcp_agent())
        .arg(agent_guard_bin())
        .arg(&s.daemon.socket)
        .args([&report.display().to_string(), &d, "4", "reconcile Q3 before the audit"])
        .env_remove("LD_LIBRARY_PATH")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The question reaches Slack as the API would receive it: bearer token, channel, Block Kit
    // with the request's facts and two buttons.
    let (headers, message) = wait_request(&s.slack, 60, |p, _| p == "/chat.postMessage");
    assert_eq!(header(&headers, "authorization").as_deref(), Some(&*format!("Bearer {SLACK_TOKEN}")));
    assert_eq!(message["channel"], "C0APPROVALS");
    let text = message.to_string();
    assert!(text.contains("reconcile Q3 before the audit") && text.contains(&format!("files.read {d}/**")), "{text}");
    let id = approval_id(&message);

    // Refused, and nothing decided: a bad signature, a stale timestamp, an unknown approval, a
    // Slack user who is not an approver, and root on the CLI (it opened the task: self-approval).
    let now = now_secs();
    assert_eq!(slack_click(s.callbacks, "not-the-secret", now, "U0ALICE", "approve", &id).0, 401);
    assert_eq!(slack_click(s.callbacks, SLACK_SECRET, now - 600, "U0ALICE", "approve", &id).0, 401);
    assert_eq!(slack_click(s.callbacks, SLACK_SECRET, now, "U0ALICE", "approve", "999").0, 404);
    assert_eq!(slack_click(s.callbacks, SLACK_SECRET, now, "U0MALLORY", "approve", &id).0, 403);
    let own = s.daemon.cli(&["approve", &id]);
    assert!(!own.status.success(), "{own:?}");
    assert!(String::from_utf8_lossy(&own.stderr).contains("never approves its own request"), "{own:?}");
    let pending = s.daemon.cli(&["approvals", "--json"]);
    let list: Value = serde_json::from_slice(&pending.stdout).unwrap();
    assert_eq!(list[0]["state"], "pending", "{list}");

    // Alice approves: 200, and the message is updated with the outcome.
    let (status, _) = slack_click(s.callbacks, SLACK_SECRET, now_secs(), "U0ALICE", "approve", &id);
    assert_eq!(status, 200);
    let (_, update) = wait_request(&s.slack, 10, |p, _| p == "/chat.update");
    assert_eq!(update["ts"], "1764500000.000100");
    assert!(update.to_string().contains("approved by U0ALICE-name (slack U0ALICE)"), "{update}");
    assert!(!update.to_string().contains("\"actions\""), "the buttons are gone once decided: {update}");

    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    // Step by step, as the agent saw it. The effect, not only the exit codes: the file's
    // content was read only while approved.
    let expected = [
        "protocol 2026-07-28".to_string(),
        "tools declare_intent,get_grant,list_requests,request_access".into(),
        "requestable yes".into(),
        "before DENIED".into(),
        "intent ok".into(),
        "outside refused".into(),
        format!("request {id} approved"),
        "self-approval refused".into(),
        "during q3-numbers".into(),
        "after DENIED".into(),
        "listed ended".into(),
    ];
    assert_eq!(stdout(&out).lines().collect::<Vec<_>>(), expected, "{out:?}");
    s.daemon.wait_event("task.intent", |e| e["kind"] == "task.intent" && e["task"]["step"] == "reconciling Q3 figures");

    // On the record: the request, the answer with its approver, the narrowing, the refusals.
    let granted = s.daemon.wait_event("approval.granted", |e| e["kind"] == "approval.granted");
    assert_eq!(granted["approvers"][0]["channel"], "slack");
    assert_eq!(granted["approvers"][0]["id"], "U0ALICE");
    s.daemon.wait_event("grant.narrow", |e| e["kind"] == "grant.narrow" && e["approval"] == id.parse::<u64>().unwrap());
    let refused = s.daemon.events().iter().filter(|e| e["kind"] == "approval.callback_refused").count();
    assert_eq!(refused, 4, "bad signature, stale, unknown, not an approver");
    let status: Value = serde_json::from_slice(&s.daemon.cli(&["status", "--json"]).stdout).unwrap();
    assert!(status["refused_callbacks"].as_u64().unwrap() >= 4, "{status}");

    // The evidence report names the requester, the reason, the approver and the duration.
    let task = granted["task"]["id"].to_string();
    let store = s.daemon.dir.path().join("audit.db");
    let report = std::process::Command::new(agent_guard_bin())
        .args(["report", "--store", store.to_str().unwrap(), "--task", &task])
        .output()
        .unwrap();
    let md = stdout(&report);
    let row = md.lines().find(|l| l.starts_with(&format!("| {id} |"))).unwrap_or_else(|| panic!("{md}"));
    for needle in ["analyst, process", "reconcile Q3 before the audit", "4s", "U0ALICE-name (slack U0ALICE)", "granted"]
    {
        assert!(row.contains(needle), "{needle:?} missing from {row}");
    }
}

#[test]
fn a_two_person_request_needs_two_different_approvers_and_a_denial_changes_nothing() {
    let s = setup(&[]);
    let payroll = s.data.join("payroll");
    std::fs::create_dir_all(&payroll).unwrap();
    std::fs::write(payroll.join("salaries.csv"), "alice,1\n").unwrap();
    let p = payroll.display();
    let d = s.data.display();
    let bins = agent_guard_bin().parent().unwrap().display().to_string();
    // A sub-task opened while the approval is in force asks for what the approval added: refused,
    // or it would keep it past the narrowing.
    let sub_grant = format!(
        "apiVersion: agent-guard.dev/v1\nkind: Grant\nmetadata: {{name: sub}}\nspec:\n  files: {{read: [\"/usr/**\", \"{bins}/**\", \"{p}/**\"]}}\n  exec: [\"/usr/bin/*\", \"/bin/*\"]\n"
    );
    let script = format!(
        "(cd {p} && cat salaries.csv) || echo DENIED-RELATIVE\n\
         cat {p}/./salaries.csv || echo DENIED-DOT\n\
         (cd {p} && cat /proc/self/cwd/salaries.csv) || echo DENIED-PROC-SELF\n\
         \"$AG\" request --read '{p}/**' --for 30s --reason 'payroll check' --wait 30s\n\
         cat {p}/salaries.csv || echo DENIED-PAYROLL\n\
         printf '%s' '{sub_grant}' | \"$AG\" run --agent sub --intent keep --grant /dev/stdin -- cat {p}/salaries.csv; echo sub=$?\n\
         \"$AG\" request --read '{d}/reports/**' --for 30s --reason 'second try' --wait 30s\n\
         cat {d}/reports/report.txt || echo DENIED-REPORT\n\
         \"$AG\" request --read /etc/shadow-not-requestable --for 30s --reason x; echo refused=$?\n\
         \"$AG\" request --read '{d}/reports/**' --for 2h --reason 'too long'; echo toolong=$?\n"
    );
    let child = agent(&s, &script);
    let (_, body) = wait_request(&s.webhook, 15, |_, b| b["type"] == "approval.request");
    let id = body["approval"]["id"].as_u64().unwrap();
    assert_eq!(body["approval"]["request"]["approvals_needed"], 2);
    // One approver twice is still one.
    let vote = |user: &str| format!("{{\"approval\": {id}, \"decision\": \"approve\", \"user\": \"{user}\"}}");
    assert_eq!(webhook_decision(s.callbacks, WEBHOOK_SECRET, now_secs(), &vote("oncall")).0, 200);
    assert_eq!(webhook_decision(s.callbacks, WEBHOOK_SECRET, now_secs(), &vote("oncall")).0, 409);
    let list: Value = serde_json::from_slice(&s.daemon.cli(&["approvals", "--json"]).stdout).unwrap();
    assert_eq!(list[0]["state"], "pending", "one of two approvals: {list}");
    assert_eq!(webhook_decision(s.callbacks, WEBHOOK_SECRET, now_secs(), &vote("second")).0, 200);

    // The second request is denied: nothing widens.
    let (_, second) = wait_request(&s.webhook, 15, |_, b| b["type"] == "approval.request" && b["approval"]["id"] != id);
    let second_id = second["approval"]["id"].as_u64().unwrap();
    let deny = format!("{{\"approval\": {second_id}, \"decision\": \"deny\", \"user\": \"oncall\"}}");
    let ts = now_secs();
    assert_eq!(webhook_decision(s.callbacks, WEBHOOK_SECRET, ts, &deny).0, 200);
    // The very same signed decision again is a replay.
    let (status, body) = webhook_decision(s.callbacks, WEBHOOK_SECRET, ts, &deny);
    assert_eq!(status, 409);
    assert!(body.contains("replayed"), "{body}");

    let out = child.wait_with_output().unwrap();
    let text = stdout(&out);
    // Before the approval, however spelled: refused by the supervisor (EPERM), not killed.
    assert!(text.starts_with("DENIED-RELATIVE\nDENIED-DOT\nDENIED-PROC-SELF\n"), "{out:?}");
    assert_eq!(text.matches("alice,1").count(), 1, "read once, by the task, not by the sub-task: {out:?}");
    assert!(text.contains("sub=1"), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not within the parent's files.read"), "{stderr}");
    assert!(text.contains("DENIED-REPORT"), "a denied request widens nothing: {out:?}");
    assert!(text.contains("refused=1") && text.contains("toolong=1"), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not requestable by profile analyst"), "{stderr}");
    assert!(stderr.contains("maxDuration"), "{stderr}");
    // The daemon signs what it sends the webhook.
    let (headers, _) = wait_request(&s.webhook, 5, |_, b| b["type"] == "approval.decided");
    let ts = header(&headers, "x-agent-guard-timestamp").unwrap();
    let sig = header(&headers, "x-agent-guard-signature").unwrap();
    let sent = s
        .webhook
        .lock()
        .unwrap()
        .iter()
        .find(|(_, h, _)| header(h, "x-agent-guard-signature").as_deref() == Some(&sig))
        .map(|(_, _, b)| b.clone())
        .unwrap();
    let expected = format!(
        "v1={}",
        hmac_hex(WEBHOOK_SECRET.as_bytes(), format!("v1:{ts}:{}", serde_json::to_string(&sent).unwrap()).as_bytes())
    );
    assert_eq!(sig, expected, "the webhook body is signed with the shared secret");
}

#[test]
fn a_held_open_is_approved_through_teams() {
    let s = setup(&["held.txt"]);
    let held = s.data.join("held.txt");
    std::fs::write(&held, "held-content\n").unwrap();
    // Spelled relative to the working directory: the supervisor resolves it, and holds it.
    let child = agent(&s, &format!("cd {} && cat held.txt || echo DENIED-HELD\n", s.data.display()));

    // The held open is posted to Teams as an Adaptive Card naming the file.
    let (_, card) = wait_request(&s.teams, 15, |p, b| p == "/incoming" && b.to_string().contains("held.txt"));
    let content = &card["attachments"][0]["content"];
    assert_eq!(card["attachments"][0]["contentType"], "application/vnd.microsoft.card.adaptive");
    assert_eq!(content["type"], "AdaptiveCard");
    let facts = content["body"][1]["facts"].as_array().expect("a FactSet");
    assert!(facts.iter().any(|f| f["title"] == "Held"), "{card}");
    let footer = content["body"][2]["text"].as_str().unwrap();
    let id: String = footer.split("approve ").nth(1).unwrap().split(' ').next().unwrap().to_string();

    // Refused: a bad HMAC, a replayed (stale) activity, a user who is not an approver.
    let now = rfc3339(std::time::SystemTime::now());
    let old = rfc3339(std::time::SystemTime::now() - Duration::from_mins(15));
    let wrong_token = base64::engine::general_purpose::STANDARD.encode(b"another key, not the webhook's");
    assert_eq!(teams_message(s.callbacks, &wrong_token, "aad-bob", &format!("approve {id}"), &now).0, 401);
    assert_eq!(teams_message(s.callbacks, TEAMS_TOKEN, "aad-bob", &format!("approve {id}"), &old).0, 401);
    assert_eq!(teams_message(s.callbacks, TEAMS_TOKEN, "aad-mallory", &format!("approve {id}"), &now).0, 403);
    // Bob approves; Teams shows the daemon's reply in the channel.
    let (status, reply) = teams_message(s.callbacks, TEAMS_TOKEN, "aad-bob", &format!("approve {id}"), &now);
    assert_eq!(status, 200, "{reply}");
    assert!(reply.contains(&format!("approval {id}: approved")), "{reply}");

    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "held-content", "the held open went on and read the file: {out:?}");
    let granted = s.daemon.wait_event("approval.granted", |e| e["kind"] == "approval.granted");
    assert_eq!(granted["approvers"][0]["channel"], "teams");
    assert_eq!(granted["approvers"][0]["id"], "aad-bob");
    assert_eq!(granted["approvers"][0]["name"], "Bob Approver");
    // The outcome is posted to the channel too.
    wait_request(&s.teams, 10, |_, b| b.to_string().contains("approved"));
}

#[test]
fn a_held_open_is_refused_through_the_webhook() {
    let s = setup(&["refused.txt"]);
    let refused = s.data.join("refused.txt");
    std::fs::write(&refused, "refused-content\n").unwrap();
    let child = agent(&s, &format!("cat {} || echo DENIED-REFUSED\n", refused.display()));

    // The held open goes to the webhook, signed with the shared secret.
    let (headers, body) =
        wait_request(&s.webhook, 15, |_, b| b["type"] == "approval.request" && b.to_string().contains("refused.txt"));
    let ts = header(&headers, "x-agent-guard-timestamp").unwrap();
    let expected = format!(
        "v1={}",
        hmac_hex(WEBHOOK_SECRET.as_bytes(), format!("v1:{ts}:{}", serde_json::to_string(&body).unwrap()).as_bytes())
    );
    assert_eq!(header(&headers, "x-agent-guard-signature").unwrap(), expected);
    let id = body["approval"]["id"].as_u64().unwrap();
    // A forged approval (wrong secret) and a stale one are refused; the webhook's user denies it.
    let forged = format!("{{\"approval\": {id}, \"decision\": \"approve\", \"user\": \"oncall\"}}");
    assert_eq!(webhook_decision(s.callbacks, "not-the-secret", now_secs(), &forged).0, 401);
    assert_eq!(webhook_decision(s.callbacks, WEBHOOK_SECRET, now_secs() - 900, &forged).0, 401);
    let deny = format!("{{\"approval\": {id}, \"decision\": \"deny\", \"user\": \"oncall\"}}");
    assert_eq!(webhook_decision(s.callbacks, WEBHOOK_SECRET, now_secs(), &deny).0, 200);

    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "DENIED-REFUSED", "the file was not read: {out:?}");
    let denied = s.daemon.wait_event("approval.denied", |e| e["kind"] == "approval.denied");
    assert_eq!(denied["approvers"][0]["channel"], "webhook");
    assert_eq!(denied["approvers"][0]["id"], "oncall");
    // The outcome is posted back, signed.
    wait_request(&s.webhook, 10, |_, b| b["type"] == "approval.decided" && b["approval"]["state"] == "denied");
}

#[test]
fn agent_controlled_text_is_printed_escaped() {
    let s = setup(&[]);
    // A file name is the agent's to choose: an escape sequence and a carriage return in it.
    let evil = s.data.join("x\u{1b}c\rAPPROVED");
    std::fs::write(&evil, "x").unwrap();
    let name = evil.display().to_string();
    let child =
        agent(&s, &format!("cat '{name}' 2>/dev/null; \"$AG\" request --read '{name}' --for 10s --reason 'fine' "));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let list = s.daemon.cli(&["approvals"]);
    let shown = String::from_utf8_lossy(&list.stdout);
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\r'),
        "raw control characters reached the terminal: {shown:?}"
    );
    assert!(shown.contains("\\u{1b}c\\u{d}APPROVED"), "{shown}");
    let audit = s.daemon.cli(&["audit", "--store", s.daemon.dir.path().join("audit.db").to_str().unwrap()]);
    let shown = String::from_utf8_lossy(&audit.stdout);
    assert!(shown.contains("\\u{1b}c") && !shown.contains('\u{1b}'), "{shown}");
    // An intent or reason with control characters is refused outright at the API.
    let bad = std::process::Command::new(agent_guard_bin())
        .arg("--socket")
        .arg(&s.daemon.socket)
        .args(["run", "--profile", "analyst", "--intent", "fine\u{1b}[31m", "--", "true"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("printable text"), "{bad:?}");
}

#[test]
fn a_task_that_could_read_the_approval_secrets_is_not_opened_without_bpf_lsm() {
    let s = setup(&[]);
    // A grant naming the directory of the secrets: its agent could sign its own approvals.
    let g = agent_guard_e2e::grant(
        s.data.as_path(),
        "too-wide",
        "enforce",
        &[],
        &format!("  files: {{read: [\"/usr/**\", \"{}/**\"]}}\n", s.secrets.display()),
    );
    let out = s.daemon.run("nosy", "read everything", &g, &["/bin/true"]);
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("an approval channel's secret"), "{stderr}");
    // Writing one would do as well: the agent would choose the key.
    let w = agent_guard_e2e::grant(
        s.data.as_path(),
        "rewrites",
        "enforce",
        &[],
        &format!("  files: {{read: [\"/usr/**\"], write: [\"{}/*\"]}}\n", s.secrets.display()),
    );
    let out = s.daemon.run("forger", "replace the key", &w, &["/bin/true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("an approval channel's secret"), "{out:?}");
    assert!(s.daemon.events().iter().all(|e| e["kind"] != "task.open"), "nothing was opened");
    // A deny rule on them keeps them out: that grant opens.
    let narrowed = agent_guard_e2e::grant(
        s.data.as_path(),
        "carved-out",
        "enforce",
        &[],
        &format!(
            "  files: {{read: [\"/usr/**\", \"/lib/**\", \"/lib64/**\", \"/etc/**\", \"/tmp/**\", {{path: \"{d}/**\", action: deny}}]}}\n  exec: [\"/usr/bin/*\", \"/bin/*\"]\n",
            d = s.secrets.display()
        ),
    );
    let out = s.daemon.run("careful", "read the rest", &narrowed, &["/bin/true"]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn approval_ids_are_never_reused_after_the_daemon_stops_and_an_old_answer_decides_nothing() {
    let mut s = setup(&[]);
    let d = s.data.join("reports").display().to_string();
    let ask = |s: &Setup| {
        agent(
            s,
            &format!(
                "\"$AG\" request --read '{d}/**' --for 30s --reason 'numbers' --wait 8s; cat {d}/report.txt || echo DENIED"
            ),
        )
    };
    let first = ask(&s);
    let (_, body) = wait_request(&s.webhook, 15, |_, b| b["type"] == "approval.request");
    let old_id = body["approval"]["id"].as_u64().unwrap();
    // The approver's signed answer, kept by someone who will send it again later.
    let ts = now_secs();
    let answer = format!("{{\"approval\": {old_id}, \"decision\": \"approve\", \"user\": \"oncall\"}}");
    drop(first);
    // A deliberate stop (SIGTERM: tasks stopped, saved state cleared), then a new daemon.
    assert!(s.daemon.stop().success());
    s.webhook.lock().unwrap().clear();
    s.daemon.spawn();
    let second = ask(&s);
    let (_, body) = wait_request(&s.webhook, 15, |_, b| b["type"] == "approval.request");
    let new_id = body["approval"]["id"].as_u64().unwrap();
    assert!(new_id > old_id, "approval {new_id} after {old_id}: an id was reused");
    // The old answer, still within its five minutes: it names no question of this daemon.
    assert_eq!(webhook_decision(s.callbacks, WEBHOOK_SECRET, ts, &answer).0, 404);
    let out = second.wait_with_output().unwrap();
    assert!(stdout(&out).ends_with("DENIED"), "nothing was approved: {out:?}");
}
