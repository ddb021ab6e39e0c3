//! A running task's grant: revoked in the kernel at once, extended within the grant's ttl, and
//! shown with its time left and its reported actions.

use std::time::{Duration, Instant};

use agent_guard_e2e::{Daemon, grant, listener, stdout};

const PROBE: &str = env!("CARGO_BIN_EXE_ag-probe");

fn task_id(daemon: &Daemon, agent: &str) -> String {
    daemon.wait_event("task open", |e| e["kind"] == "task.open" && e["task"]["agent"] == agent)["task"]["id"]
        .to_string()
}

#[test]
fn revoke_is_in_force_in_the_kernel_when_the_command_returns() {
    let daemon = Daemon::start();
    let port = listener("127.0.0.1:0");
    let g = grant(daemon.dir.path(), "revocable", "enforce", &[format!("127.0.0.1/32:{port}")], "");
    let agent = daemon
        .run_command(
            "revoked-bot",
            "connect twice",
            &g,
            // The `kill` level: the process lives on with nothing allowed (at the `landlock`
            // level a revoke kills it: landlock.rs).
            &["--without-landlock"],
            &[PROBE, "connect-twice", &format!("127.0.0.1:{port}"), "2"],
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = task_id(&daemon, "revoked-bot");
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let revoke = daemon.cli(&["grant", "revoke", &id]);
    let took = started.elapsed();
    assert!(revoke.status.success(), "{revoke:?}");
    assert_eq!(stdout(&agent.wait_with_output().unwrap()), "ok EPERM", "the second connect comes after the revoke");
    let event =
        daemon.wait_event("revoked connect", |e| e["kind"] == "network.connect" && e["task"]["agent"] == "revoked-bot");
    assert_eq!(event["rule"], "task.stopped");
    daemon.wait_event("grant.revoke", |e| e["kind"] == "grant.revoke");
    eprintln!("revoke command round trip: {took:?}");
}

#[test]
fn extend_pushes_the_expiry_back_but_never_beyond_the_grants_ttl() {
    let daemon = Daemon::start();
    let port = listener("127.0.0.1:0");
    let g = grant(daemon.dir.path(), "extendable", "enforce", &[format!("127.0.0.1/32:{port}")], "");
    let target = format!("127.0.0.1:{port}");
    let agent = daemon
        .run_command("slow-bot", "needs more time", &g, &["--ttl", "2s"], &[PROBE, "after", "3", "connect", &target])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = task_id(&daemon, "slow-bot");
    let extend = daemon.cli(&["grant", "extend", &id, "--for", "30s"]);
    assert!(extend.status.success(), "{extend:?}");
    assert_eq!(stdout(&agent.wait_with_output().unwrap()), "ok", "the connect after the original expiry is allowed");

    let long = daemon.run_command("long-bot", "hold", &g, &[], &[PROBE, "sleep", "2"]).spawn().unwrap();
    let id = task_id(&daemon, "long-bot");
    let too_far = daemon.cli(&["grant", "extend", &id, "--for", "1h"]);
    assert!(!too_far.status.success());
    assert!(String::from_utf8_lossy(&too_far.stderr).contains("beyond the grant's ttl 10m"), "{too_far:?}");
    let _ = { long }.wait();
}

#[test]
fn task_show_gives_time_left_and_counts_by_decision_and_rule() {
    let daemon = Daemon::start();
    let other = listener("127.0.0.1:0");
    let g = grant(daemon.dir.path(), "counted", "enforce", &[], "");
    let out = daemon.run("counted-bot", "count", &g, &[PROBE, "connect", &format!("127.0.0.1:{other}")]);
    assert_eq!(stdout(&out), "EPERM");
    let id = task_id(&daemon, "counted-bot");
    daemon.wait_event("denied connect", |e| e["kind"] == "network.connect" && e["task"]["agent"] == "counted-bot");
    let show = daemon.cli(&["task", "show", &id, "--json"]);
    let task: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(task["counts"]["denied default-deny"], 1, "{task}");
    assert_eq!(task["remaining_secs"], 0, "the task has ended: {task}");
    assert_eq!(task["state"], "closed");
}

#[test]
fn access_ends_at_the_ttl_while_the_daemon_is_frozen() {
    let mut daemon = Daemon::start();
    let port = listener("127.0.0.1:0");
    let g = grant(daemon.dir.path(), "short", "enforce", &[format!("127.0.0.1/32:{port}")], "");
    let target = format!("127.0.0.1:{port}");
    let agent = daemon
        .run_command("frozen-bot", "outlive the guard", &g, &["--ttl", "2s"], &[PROBE, "connect-twice", &target, "3"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    task_id(&daemon, "frozen-bot");
    // SIGSTOP the daemon: nothing in userspace can act until the agent is done.
    let pid = daemon.pid() as i32;
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let result = stdout(&agent.wait_with_output().unwrap());
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert_eq!(result, "ok EPERM", "the kernel ended access at the ttl with the daemon stopped");
    let event =
        daemon.wait_event("expired connect", |e| e["kind"] == "network.connect" && e["task"]["agent"] == "frozen-bot");
    assert_eq!(event["rule"], "grant.ttl");
    assert!(daemon.stop().success());
}
