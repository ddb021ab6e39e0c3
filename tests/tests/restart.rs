//! The guard outlives its daemon (this host's kernel: tagging, cgroup socket programs, the
//! ring buffer): a `SIGKILLed` daemon leaves its task confined, and the next one adopts it.

use std::{
    net::TcpListener,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use agent_guard_e2e::{Daemon, grant, stdout};

const PROBE: &str = env!("CARGO_BIN_EXE_ag-probe");

/// A loopback listener that counts the connections it accepts: the effect a refused connect
/// must not have.
fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for _ in listener.incoming() {
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, accepted)
}

fn open_tasks(daemon: &Daemon) -> Vec<serde_json::Value> {
    let list = daemon.cli(&["task", "list", "--json"]);
    serde_json::from_slice::<Vec<serde_json::Value>>(&list.stdout).expect("task list --json")
}

fn survives_daemon(daemon: &Daemon) -> bool {
    let status = daemon.cli(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status --json");
    status["survives_daemon"].as_bool().expect("status says whether the programs survive the daemon")
}

/// On this host's kernel (no BPF LSM: tagging tracepoints, cgroup socket programs) the
/// programs outlive the daemon too; tests/vm proves the same with the BPF LSM hooks.
#[test]
fn a_killed_daemon_leaves_its_task_confined_and_the_next_daemon_adopts_it() {
    let mut daemon = Daemon::start();
    assert!(survives_daemon(&daemon), "links pin on this kernel");
    let (looped, looped_accepted) = counting_listener();
    let (late, late_accepted) = counting_listener();
    let g = grant(daemon.dir.path(), "no-network", "enforce", &[], "");
    // Two processes of one task: one keeps connecting for 9 s; the other connects once,
    // elsewhere, 3 s in, while no daemon runs.
    let script = format!(
        "{PROBE} after 3 connect 127.0.0.1:{late} > {dir}/late.out & {PROBE} loop 9 connect 127.0.0.1:{looped}; wait",
        dir = daemon.dir.path().display()
    );
    let agent = daemon
        .run_command("loop-bot", "keep trying to get out", &g, &[], &["/usr/bin/sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the agent");
    let first = daemon.wait_event("a refused connect", |e| {
        e["kind"] == "network.connect" && e["object"]["port"] == looped && e["decision"] == "denied"
    });
    let task_id = first["task"]["id"].as_u64().expect("task id");

    daemon.kill();
    std::thread::sleep(Duration::from_secs(4));
    let late_outcome = std::fs::read_to_string(daemon.dir.path().join("late.out")).expect("the late connect ran");

    daemon.spawn();
    let adopt = daemon.wait_event("guard.adopt", |e| e["kind"] == "guard.adopt");
    let reason = adopt["reason"].as_str().expect("reason");
    assert!(reason.contains("no daemon ran for about"), "{reason}");
    let out = agent.wait_with_output().expect("the agent ends");

    assert_eq!(late_outcome.trim(), "EPERM", "a connect while no daemon runs is refused by the kernel");
    assert!(reason.contains("Adopted 1 open task") && reason.contains("enforced every task meanwhile"), "{reason}");
    // The record the kernel wrote while no daemon ran reaches the outputs, with its task.
    let gap_event = daemon.wait_event("the connect refused while no daemon ran", |e| {
        e["kind"] == "network.connect" && e["object"]["port"] == late
    });
    assert_eq!(gap_event["decision"], "denied");
    assert_eq!(gap_event["task"]["id"].as_u64(), Some(task_id));
    assert_eq!(gap_event["task"]["intent"], "keep trying to get out");
    assert!(gap_event["time"].as_str() < adopt["time"].as_str(), "it happened before the restart: {gap_event}");
    let tasks = open_tasks(&daemon);
    assert!(tasks.iter().any(|t| t["id"].as_u64() == Some(task_id)), "the adopted task keeps its id: {tasks:?}");
    let line = stdout(&out);
    assert!(line.starts_with("ok=0 EPERM="), "every connect of the loop was refused: {line}");
    assert_eq!(looped_accepted.load(Ordering::SeqCst), 0, "nothing reached the loop's listener");
    assert_eq!(late_accepted.load(Ordering::SeqCst), 0, "nothing reached the late listener");

    // Ids are never reused: the next task gets a higher one.
    let next = daemon.run("next-bot", "after the restart", &g, &[PROBE, "exit", "0"]);
    assert!(next.status.success(), "{next:?}");
    let opened = daemon.wait_event("the next task", |e| e["kind"] == "task.open" && e["task"]["agent"] == "next-bot");
    assert!(opened["task"]["id"].as_u64() > Some(task_id), "{opened}");
    assert!(daemon.stop().success());
}

#[test]
fn task_ids_are_not_reused_after_a_clean_restart() {
    let mut daemon = Daemon::start();
    let g = grant(daemon.dir.path(), "ids", "enforce", &[], "");
    let first = daemon.run("id-bot", "first", &g, &[PROBE, "exit", "0"]);
    assert!(first.status.success(), "{first:?}");
    let opened = daemon.wait_event("first task", |e| e["kind"] == "task.open");
    let first_id = opened["task"]["id"].as_u64().unwrap();
    assert!(daemon.stop().success());
    // The state directory is cleared at a deliberate stop: the audit store still knows the id.
    std::fs::remove_dir_all(daemon.dir.path().join("state")).unwrap();
    daemon.spawn();
    let second = daemon.run("id-bot", "second", &g, &[PROBE, "exit", "0"]);
    assert!(second.status.success(), "{second:?}");
    let reopened = daemon.wait_event("second task", |e| e["kind"] == "task.open" && e["task"]["intent"] == "second");
    assert!(reopened["task"]["id"].as_u64().unwrap() > first_id, "{reopened}");
}

#[test]
fn a_second_daemon_on_the_same_state_directory_is_refused() {
    let daemon = Daemon::start();
    let state = daemon.dir.path().join("state");
    let other = daemon.dir.path().join("other.sock");
    let out = std::process::Command::new(agent_guard_e2e::agent_guard_bin())
        .arg("--socket")
        .arg(&other)
        .args(["daemon", "--cgroup-name", "agent-guard-e2e-second", "--audit-store", "none", "--no-stdout"])
        .arg("--state-dir")
        .arg(&state)
        .output()
        .expect("run a second daemon");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another agent-guard daemon"), "{err}");
    // The first one still serves.
    assert!(daemon.cli(&["status"]).status.success());
}

#[test]
fn a_deliberate_stop_can_leave_the_tasks_confined_for_the_next_daemon() {
    let mut daemon = Daemon::start_with(&["--on-stop", "keep-confined"]);
    let (port, accepted) = counting_listener();
    let g = grant(daemon.dir.path(), "kept", "enforce", &[], "");
    let agent = daemon
        .run_command(
            "kept-bot",
            "outlive a restart",
            &g,
            &[],
            &[PROBE, "loop", "6", "connect", &format!("127.0.0.1:{port}")],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let first = daemon.wait_event("a refused connect", |e| e["kind"] == "network.connect");
    assert!(daemon.stop().success());
    let stop = daemon.wait_event("guard.stop", |e| e["kind"] == "guard.stop");
    assert!(stop["reason"].as_str().unwrap().contains("1 open task(s) left confined"), "{stop}");
    let pins = std::path::Path::new("/sys/fs/bpf").join(&daemon.cgroup);
    assert!(pins.join("links").read_dir().unwrap().count() > 0, "the links stay pinned");
    std::thread::sleep(Duration::from_secs(1));
    daemon.spawn();
    let adopt = daemon.wait_event("guard.adopt", |e| e["kind"] == "guard.adopt");
    assert!(adopt["reason"].as_str().unwrap().contains("Adopted 1 open task"), "{adopt}");
    let line = stdout(&agent.wait_with_output().unwrap());
    assert!(line.starts_with("ok=0 EPERM="), "refused before, during and after the restart: {line}");
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    let id = first["task"]["id"].as_u64().unwrap().to_string();
    assert!(daemon.cli(&["task", "stop", &id]).status.success());
    assert!(daemon.stop().success());
    // This daemon kept its (now empty) state too: remove the pins, which detaches everything.
    std::fs::remove_dir_all(&pins).unwrap();
}
