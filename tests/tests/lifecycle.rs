//! Task lifecycle, bad input, the control API's guard rails, and clean shutdown.

use std::time::{Duration, Instant};

use agent_guard_e2e::{Daemon, grant, listener, stdout};

const PROBE: &str = env!("CARGO_BIN_EXE_ag-probe");

#[test]
fn a_malformed_grant_is_refused_with_file_line_and_nothing_applied() {
    let daemon = Daemon::start();
    let bad = daemon.dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: agent-guard.dev/v1\nkind: Grant\nmetadata: {name: bad}\nspec:\n  network: {connect: [\"10.0.0.1/8:443\"]}\n").unwrap();
    let out = daemon.run("a", "b", &bad, &[PROBE, "exit", "0"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml"), "{err}");
    assert!(err.contains("line 5"), "{err}");
    assert!(err.contains("host bits are set"), "{err}");
    assert!(stdout(&out).is_empty(), "the command must not have run");
    let list = daemon.cli(&["task", "list", "--json"]);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&list.stdout).unwrap(), serde_json::json!([]));

    let unknown = daemon.dir.path().join("unknown.yaml");
    std::fs::write(&unknown, "apiVersion: agent-guard.dev/v1\nkind: Grant\nmetadata: {name: x}\nspec:\n  network: {conect: []}\n").unwrap();
    let out = daemon.run("a", "b", &unknown, &[PROBE, "exit", "0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("unknown field `conect`") && err.contains("line 5"), "{err}");
}

#[test]
fn a_ttl_longer_than_the_grant_allows_is_refused() {
    let daemon = Daemon::start();
    let g = grant(daemon.dir.path(), "ttl", "enforce", &[], "");
    let out = daemon.cli(&["run", "--agent", "a", "--intent", "b", "--grant", g.to_str().unwrap(), "--ttl", "2h", "--", PROBE, "exit", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exceeds the grant's ttl 10m"));
}

#[test]
fn task_stop_revokes_and_kills_and_tagged_processes_cannot_use_the_api() {
    let daemon = Daemon::start();
    let g = grant(daemon.dir.path(), "stop", "enforce", &[], "");
    // From inside a task, the control API is refused.
    let inner = daemon.run("a", "escalate", &g, &[agent_guard_e2e::agent_guard_bin().to_str().unwrap(), "--socket", daemon.socket.to_str().unwrap(), "task", "list"]);
    assert!(!inner.status.success());
    assert!(String::from_utf8_lossy(&inner.stderr).contains("tagged processes cannot use the control API"), "{inner:?}");

    let mut agent = std::process::Command::new(agent_guard_e2e::agent_guard_bin())
        .arg("--socket")
        .arg(&daemon.socket)
        .args(["run", "--agent", "sleeper", "--intent", "sleep", "--grant", g.to_str().unwrap(), "--", PROBE, "grandchild", "sleep", "60"])
        .spawn()
        .unwrap();
    let open = daemon.wait_event("task open", |e| e["kind"] == "task.open" && e["task"]["agent"] == "sleeper");
    let id = open["task"]["id"].to_string();
    std::thread::sleep(Duration::from_millis(300));
    let stop = daemon.cli(&["task", "stop", &id]);
    assert!(stop.status.success(), "{stop:?}");
    let started = Instant::now();
    let status = agent.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!status.success(), "the agent was killed");
    daemon.wait_event("task.stop", |e| e["kind"] == "task.stop");
    daemon.wait_event("task.close after stop", |e| e["kind"] == "task.close" && e["task"]["agent"] == "sleeper");
    let missing = daemon.cli(&["task", "stop", "9999"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no task 9999"));
}

#[test]
fn sigterm_stops_open_tasks_detaches_and_exits_cleanly() {
    let mut daemon = Daemon::start();
    let other = listener("127.0.0.1:0");
    let g = grant(daemon.dir.path(), "term", "enforce", &[], "");
    let mut agent = std::process::Command::new(agent_guard_e2e::agent_guard_bin())
        .arg("--socket")
        .arg(&daemon.socket)
        .args(["run", "--agent", "long", "--intent", "run long", "--grant", g.to_str().unwrap(), "--", PROBE, "sleep", "60"])
        .spawn()
        .unwrap();
    daemon.wait_event("task open", |e| e["kind"] == "task.open");
    let events = daemon.events.clone();
    let socket = daemon.socket.clone();
    let status = daemon.stop();
    assert!(status.success(), "daemon exit status {status}");
    assert!(!agent.wait().unwrap().success(), "an open task's process is stopped with the daemon");
    let text = std::fs::read_to_string(events).unwrap();
    assert!(text.contains("\"guard.stop\""));
    assert!(!socket.exists(), "the socket is removed");
    // Nothing of ours is attached any more: an untagged connect works (and so would a former agent's).
    let direct = std::process::Command::new(PROBE).args(["connect", &format!("127.0.0.1:{other}")]).output().unwrap();
    assert_eq!(stdout(&direct), "ok");
}

#[test]
fn status_reports_the_true_enforcement_levels() {
    let daemon = Daemon::start();
    let out = daemon.cli(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["enforcement"]["network"], "cgroup");
    assert_eq!(status["enforcement"]["file"], "observe");
    assert_eq!(status["enforcement"]["exec"], "observe");
}
