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
    std::fs::write(
        &unknown,
        "apiVersion: agent-guard.dev/v1\nkind: Grant\nmetadata: {name: x}\nspec:\n  network: {conect: []}\n",
    )
    .unwrap();
    let out = daemon.run("a", "b", &unknown, &[PROBE, "exit", "0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("unknown field `conect`") && err.contains("line 5"), "{err}");
}

#[test]
fn a_ttl_longer_than_the_grant_allows_is_refused() {
    let daemon = Daemon::start();
    let g = grant(daemon.dir.path(), "ttl", "enforce", &[], "");
    let out = daemon.run_command("a", "b", &g, &["--ttl", "2h"], &[PROBE, "exit", "0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exceeds the grant's ttl 10m"));
}

#[test]
fn task_stop_revokes_and_kills_and_tagged_processes_cannot_use_the_api() {
    let daemon = Daemon::start();
    let g = grant(daemon.dir.path(), "stop", "enforce", &[], "");
    // From inside a task, the control API is refused (but for sub-tasks, see delegation.rs).
    let inner = daemon.run(
        "a",
        "escalate",
        &g,
        &[
            agent_guard_e2e::agent_guard_bin().to_str().unwrap(),
            "--socket",
            daemon.socket.to_str().unwrap(),
            "task",
            "list",
        ],
    );
    assert!(!inner.status.success());
    assert!(String::from_utf8_lossy(&inner.stderr).contains("inside a task only `agent-guard run`"), "{inner:?}");

    let mut agent =
        daemon.run_command("sleeper", "sleep", &g, &[], &[PROBE, "grandchild", "sleep", "60"]).spawn().unwrap();
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
    let mut agent = daemon.run_command("long", "run long", &g, &[], &[PROBE, "sleep", "60"]).spawn().unwrap();
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
    // No BPF LSM here, but Landlock: `agent-guard run` confines its tasks (landlock.rs).
    assert_eq!(status["enforcement"]["file"], "landlock");
    assert_eq!(status["enforcement"]["exec"], "landlock");
}

#[test]
fn kernel_events_lost_to_a_full_ring_buffer_are_counted_and_reported() {
    // A 4 KiB ring buffer holds about a dozen file events. Freeze the daemon (SIGSTOP) while
    // the agent makes 300 out-of-scope opens: most cannot be delivered. Every one must be
    // either delivered or counted as dropped, and the loss must be reported in an event.
    // Flood control off: every open must be accounted for one by one.
    let config = "outputs: [{type: file, path: \"{events}\"}]\naggregation: {window: 0s}\n";
    let mut daemon = Daemon::start_configured(Some(config), &["--ring-buffer-bytes", "4096"]);
    let flood = daemon.dir.path().join("flood");
    std::fs::create_dir_all(&flood).unwrap();
    let target = flood.join("target");
    std::fs::write(&target, "x").unwrap();
    // Everything the probe touches is granted but the target, so the target's opens are the
    // only events while the daemon is frozen.
    let probe_dir = std::path::Path::new(PROBE).parent().unwrap().display().to_string();
    let extra = format!(
        "  files: {{read: [\"/usr/**\", \"/lib/**\", \"/lib64/**\", \"/etc/**\", \"/proc/**\", \"/sys/**\", \"/dev/**\", \"{probe_dir}/**\"]}}\n  exec: [\"{probe_dir}/*\"]\n"
    );
    // Audit mode: the agent is not killed at its first out-of-scope open (this host has no BPF LSM).
    let g = grant(daemon.dir.path(), "flood", "audit", &[], &extra);
    let mut agent = daemon.run_command(
        "flooder",
        "flood",
        &g,
        &[],
        &[PROBE, "after", "1", "open-many", "300", target.to_str().unwrap(), "3"],
    );
    // cargo test points LD_LIBRARY_PATH at the toolchain: the loader's probing there would
    // add out-of-scope opens of its own.
    let mut agent = agent.env_remove("LD_LIBRARY_PATH").spawn().unwrap();
    daemon.wait_event("task open", |e| e["kind"] == "task.open");
    unsafe { libc::kill(daemon.pid() as i32, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_millis(2500));
    unsafe { libc::kill(daemon.pid() as i32, libc::SIGCONT) };
    assert!(agent.wait().unwrap().success());
    let dropped = daemon.wait_event("events_dropped", |e| e["kind"] == "guard.events_dropped");
    let dropped = dropped["lost"].as_u64().unwrap();
    daemon.wait_event("task close", |e| e["kind"] == "task.close");
    let delivered = daemon
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "file.open" && e["object"]["path"] == target.to_str().unwrap())
        .count() as u64;
    assert!(dropped > 0, "a 4 KiB buffer cannot hold 300 events");
    let others: Vec<_> = daemon
        .events()
        .into_iter()
        .filter(|e| e["process"].is_object() && e["object"]["path"] != target.to_str().unwrap())
        .collect();
    assert_eq!(
        delivered + dropped,
        300,
        "every event is delivered or counted ({delivered} delivered, {dropped} dropped); other events: {others:#?}"
    );
    let status: serde_json::Value = serde_json::from_slice(&daemon.cli(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["events_dropped"], dropped);
    assert!(daemon.stop().success());
}

#[test]
fn an_idle_api_client_does_not_keep_the_daemon_from_stopping() {
    let mut daemon = Daemon::start();
    // A client that connects and says nothing, for as long as it likes.
    let idle = std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
    let started = std::time::Instant::now();
    assert!(daemon.stop().success());
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "stopped in {:?}", started.elapsed());
    let stop = daemon.wait_event("guard.stop", |e| e["kind"] == "guard.stop");
    assert_eq!(stop["reason"], "shutdown signal: open tasks stopped, programs detached");
    assert!(daemon.stderr().contains("all programs detached"), "{}", daemon.stderr());
    let pins = std::path::Path::new("/sys/fs/bpf").join(&daemon.cgroup);
    assert!(!pins.exists(), "a deliberate stop (--on-stop stop-tasks) removes the pins: {}", pins.display());
    drop(idle);
}

#[test]
fn a_daemon_in_another_pid_namespace_refuses_to_start() {
    // Tags are keyed by the host's pids: inside a pid namespace the daemon would tag and signal
    // the wrong processes. `--mount-proc` gives it a /proc of its own, so it cannot tell from
    // its own pids alone.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(agent_guard_e2e::agent_guard_bin())
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .args(["daemon", "--cgroup-name", "agent-guard-pidns-test", "--state-dir"])
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("host's pid namespace"), "{out:?}");
    assert!(!dir.path().join("s.sock").exists(), "no API socket is left behind");
}
