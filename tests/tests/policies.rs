//! Profiles and templates from the daemon's policy directory: a task opened with one
//! command, the template filled in, limits of the profile applied, and reloads that either
//! apply whole or leave the policies in force untouched.

use std::{path::Path, time::Duration};

use agent_guard_e2e::{Daemon, agent_guard_bin, listener, stdout};

const PROBE: &str = env!("CARGO_BIN_EXE_ag-probe");

fn profile(name: &str, templates: &str) -> String {
    let bins = agent_guard_bin().parent().unwrap().display().to_string();
    format!(
        "apiVersion: agent-guard.dev/v1\nkind: AgentProfile\nmetadata: {{name: {name}}}\nspec:\n  maxTtl: 20m\n  templates: [{templates}]\n  baseGrant:\n    files: {{read: [\"/usr/**\", \"/lib/**\", \"/lib64/**\", \"/etc/**\", \"/proc/**\", \"/sys/**\", \"/dev/**\", \"{bins}/**\"], write: [\"/dev/**\"]}}\n    exec: [\"{bins}/*\"]\n"
    )
}

fn template(name: &str, port: u16) -> String {
    format!(
        "apiVersion: agent-guard.dev/v1\nkind: GrantTemplate\nmetadata: {{name: {name}}}\nspec:\n  variables: {{workspace: path}}\n  grant:\n    ttl: 5m\n    files: {{read: [{{workspace}}/**], write: [\"{{workspace}}/out-{{task_id}}/**\"]}}\n    network: {{connect: [\"127.0.0.1/32:{port}\"]}}\n"
    )
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

fn run_profile(daemon: &Daemon, args: &[&str], cmd: &[&str]) -> std::process::Output {
    std::process::Command::new(agent_guard_bin())
        .arg("--socket")
        .arg(&daemon.socket)
        .args(["run", "--intent", "policy test"])
        .args(args)
        .arg("--")
        .args(cmd)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap()
}

fn policy_daemon(port: u16) -> (Daemon, tempfile::TempDir) {
    let policies = tempfile::Builder::new().prefix("agent-guard-e2e-policies-").tempdir().unwrap();
    write(policies.path(), "bot.yaml", &profile("bot", "triage"));
    write(policies.path(), "triage.yaml", &template("triage", port));
    let daemon = Daemon::start_with(&["--policy-dir", policies.path().to_str().unwrap()]);
    (daemon, policies)
}

#[test]
fn a_task_opens_from_a_profile_and_template_with_one_command() {
    let allowed = listener("127.0.0.1:0");
    let other = listener("127.0.0.1:0");
    let (daemon, _policies) = policy_daemon(allowed);
    let workspace = daemon.dir.path().display().to_string();
    let out = run_profile(
        &daemon,
        &["--profile", "bot", "--template", "triage", "--var", &format!("workspace={workspace}")],
        &[PROBE, "connect-each", &format!("127.0.0.1:{allowed}"), &format!("127.0.0.1:{other}")],
    );
    assert_eq!(stdout(&out), "ok\nEPERM", "{out:?}");
    let open = daemon.wait_event("task.open", |e| e["kind"] == "task.open");
    assert_eq!(open["task"]["agent"], "bot");
    assert_eq!(open["task"]["grant"], "triage");
    assert!(open["reason"].as_str().unwrap().contains("profile bot + template triage"), "{open}");
    let denied = daemon.wait_event("denied connect", |e| e["kind"] == "network.connect");
    assert_eq!(denied["task"]["agent"], "bot");
    assert_eq!(denied["rule"], "default-deny");

    // The profile bounds the task: no ttl beyond maxTtl, no template it does not list, and
    // every declared variable must be given.
    let long = run_profile(
        &daemon,
        &["--profile", "bot", "--template", "triage", "--var", "workspace=/srv", "--ttl", "1h"],
        &["true"],
    );
    assert!(String::from_utf8_lossy(&long.stderr).contains("exceeds profile bot's maxTtl 20m"), "{long:?}");
    let missing = run_profile(&daemon, &["--profile", "bot", "--template", "triage"], &["true"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("needs --var workspace=VALUE"), "{missing:?}");
    let bad_var = run_profile(
        &daemon,
        &["--profile", "bot", "--template", "triage", "--var", "workspace=/srv/../etc"],
        &["true"],
    );
    assert!(String::from_utf8_lossy(&bad_var.stderr).contains("absolute, normalised path"), "{bad_var:?}");
    let unknown = run_profile(&daemon, &["--profile", "nobody"], &["true"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no AgentProfile \"nobody\""), "{unknown:?}");
    for refused in [long, missing, bad_var, unknown] {
        assert!(!refused.status.success());
    }
}

#[test]
fn extend_never_goes_beyond_the_profiles_max_ttl() {
    let (daemon, _policies) = policy_daemon(1);
    let child = std::process::Command::new(agent_guard_bin())
        .arg("--socket")
        .arg(&daemon.socket)
        .args(["run", "--intent", "wait", "--profile", "bot", "--ttl", "1m", "--", PROBE, "sleep", "3"])
        .env_remove("LD_LIBRARY_PATH")
        .spawn()
        .unwrap();
    let id = daemon.wait_event("task.open", |e| e["kind"] == "task.open")["task"]["id"].to_string();
    let ok = daemon.cli(&["grant", "extend", &id, "--for", "10m"]);
    assert!(ok.status.success(), "{ok:?}");
    let too_far = daemon.cli(&["grant", "extend", &id, "--for", "15m"]);
    assert!(String::from_utf8_lossy(&too_far.stderr).contains("beyond the profile's maxTtl"), "{too_far:?}");
    let _ = { child }.wait();
}

#[test]
fn a_reload_applies_whole_or_keeps_the_policies_in_force() {
    let port = listener("127.0.0.1:0");
    let (daemon, policies) = policy_daemon(port);
    let dir = policies.path();

    // A broken file (a profile naming a template that does not exist): rejected, said, and
    // the previous policies still open tasks.
    write(dir, "broken.yaml", &profile("broken", "missing"));
    let rejected = daemon.wait_event("policy.rejected", |e| e["kind"] == "policy.rejected");
    assert!(rejected["reason"].as_str().unwrap().contains("which no GrantTemplate defines"), "{rejected}");
    let still = run_profile(&daemon, &["--profile", "bot"], &[PROBE, "exit", "0"]);
    assert!(still.status.success(), "{still:?}");
    let refused = run_profile(&daemon, &["--profile", "broken"], &["true"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no AgentProfile \"broken\""), "{refused:?}");

    // Mended: the whole directory applies, on the file change alone.
    write(dir, "broken.yaml", &profile("mended", "triage"));
    daemon.wait_event("policy.load", |e| {
        e["kind"] == "policy.load" && e["reason"].as_str().is_some_and(|r| r.contains("mended"))
    });
    let mended = run_profile(&daemon, &["--profile", "mended"], &[PROBE, "exit", "0"]);
    assert!(mended.status.success(), "{mended:?}");

    // SIGHUP reloads too.
    unsafe { libc::kill(daemon.pid() as i32, libc::SIGHUP) };
    daemon.wait_event("policy.load on SIGHUP", |e| {
        e["kind"] == "policy.load" && e["reason"].as_str().is_some_and(|r| r.starts_with("SIGHUP"))
    });
    let status = daemon.cli(&["status", "--json"]);
    assert!(stdout(&status).contains("broken.yaml"), "{status:?}");
    std::thread::sleep(Duration::from_millis(10));
}

#[test]
fn a_daemon_refuses_to_start_on_policies_that_do_not_validate() {
    agent_guard_e2e::require_root();
    let policies = tempfile::Builder::new().prefix("agent-guard-e2e-policies-").tempdir().unwrap();
    write(
        policies.path(),
        "bad.yaml",
        "apiVersion: agent-guard.dev/v1\nkind: AgentProfile\nmetadata: {name: x}\nspec: {maxTtl: soon}\n",
    );
    let out = std::process::Command::new(agent_guard_bin())
        .args(["--socket", policies.path().join("s.sock").to_str().unwrap(), "daemon", "--no-stdout"])
        .args([
            "--policy-dir",
            policies.path().to_str().unwrap(),
            "--events-file",
            policies.path().join("e").to_str().unwrap(),
            "--audit-store",
            "none",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not validate") && stderr.contains("line 4") && stderr.contains("invalid duration"),
        "{stderr}"
    );
}
