//! Task tags follow processes through forks, setsid and re-parenting, and end with them.

use std::time::{Duration, Instant};

use agent_guard_e2e::{Daemon, grant, listener, stdout};

const PROBE: &str = env!("CARGO_BIN_EXE_ag-probe");

#[test]
fn grandchildren_and_daemonized_children_stay_tagged() {
    let daemon = Daemon::start();
    let allowed = listener("127.0.0.1:0");
    let other = listener("127.0.0.1:0");
    let g = grant(daemon.dir.path(), "fork", "enforce", &[format!("127.0.0.1/32:{allowed}")], "");

    let out = daemon.run("forker", "fork", &g, &[PROBE, "grandchild", "connect", &format!("127.0.0.1:{other}")]);
    assert_eq!(stdout(&out), "EPERM", "a grandchild is inside the task");
    let out = daemon.run("forker", "fork", &g, &[PROBE, "grandchild", "connect", &format!("127.0.0.1:{allowed}")]);
    assert_eq!(stdout(&out), "ok", "and keeps the task's grant");

    // Double fork + setsid: the grandchild is re-parented away from the task's root process,
    // which has exited by the time it connects.
    for (port, expect) in [(other, "EPERM"), (allowed, "ok")] {
        let result = daemon.dir.path().join(format!("daemonized-{port}"));
        let out = daemon.run(
            "forker",
            "daemonize",
            &g,
            &[PROBE, "daemonize", result.to_str().unwrap(), "connect", &format!("127.0.0.1:{port}")],
        );
        assert_eq!(stdout(&out), "started");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !result.exists() {
            assert!(Instant::now() < deadline, "daemonized probe did not report");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(50));
        let line = std::fs::read_to_string(&result).unwrap();
        assert!(line.starts_with(expect), "daemonized child got {line:?}, expected {expect}");
        assert!(!line.contains("ppid=0"), "{line}");
    }
}

#[test]
fn exit_status_passes_through_and_the_task_closes_with_its_last_process() {
    let daemon = Daemon::start();
    let g = grant(daemon.dir.path(), "exit", "enforce", &[], "");
    let out = daemon.run("exiter", "exit 3", &g, &[PROBE, "exit", "3"]);
    assert_eq!(out.status.code(), Some(3));
    let open = daemon.wait_event("task.open", |e| e["kind"] == "task.open");
    let id = open["task"]["id"].clone();
    let close = daemon.wait_event("task.close", |e| e["kind"] == "task.close" && e["task"]["id"] == id);
    assert_eq!(close["task"]["intent"], "exit 3");
    let list = daemon.cli(&["task", "list", "--json"]);
    let tasks: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(tasks[0]["state"], "closed");
    assert_eq!(tasks[0]["live_processes"], 0);

    // A command that cannot be started exits 127 like a shell, and its task closes too.
    let missing = daemon.run("exiter", "missing", &g, &["/nonexistent/cmd"]);
    assert_eq!(missing.status.code(), Some(127));
}

#[test]
fn a_reused_pid_does_not_inherit_a_stale_tag() {
    // Force the kernel to hand a dead tagged process's pid to a new, untagged process
    // (ns_last_pid, as root), and check the newcomer is not bound by the old task's grant.
    let daemon = Daemon::start();
    let other = listener("127.0.0.1:0");
    let g = grant(daemon.dir.path(), "reuse", "enforce", &[], "");
    let out = daemon.run("r", "pid", &g, &[PROBE, "pid-then", "connect", &format!("127.0.0.1:{other}")]);
    let line = stdout(&out);
    let (pid, result) = line.split_once(' ').unwrap();
    assert_eq!(result, "EPERM", "the tagged process was denied");
    let pid: u32 = pid.parse().unwrap();
    daemon.wait_event("task.close", |e| e["kind"] == "task.close");
    for _attempt in 0..50 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).expect("write ns_last_pid (root)");
        let direct = std::process::Command::new(PROBE)
            .args(["pid-then", "connect", &format!("127.0.0.1:{other}")])
            .output()
            .unwrap();
        let line = stdout(&direct);
        let (new_pid, result) = line.split_once(' ').unwrap();
        if new_pid.parse::<u32>().unwrap() == pid {
            assert_eq!(result, "ok", "pid {pid} was reused by an untagged process, which must not inherit the tag");
            return;
        }
    }
    panic!("could not get pid {pid} reused in 50 attempts");
}

#[test]
fn events_carry_exec_ids_and_the_ancestry_up_to_the_task_root_even_through_exited_processes() {
    let daemon = Daemon::start();
    let other = listener("127.0.0.1:0");
    let g = grant(daemon.dir.path(), "lineage", "enforce", &[], "");
    // root (the outer sh, in `run`'s process) -> inner sh (exits at once) -> the probe, which
    // connects a second later, its parent gone.
    let script = format!("sh -c '{PROBE} after 1 connect 127.0.0.1:{other} &'; sleep 3");
    let mut run =
        daemon.run_command("lineage-bot", "trace lineage", &g, &[], &["/usr/bin/sh", "-c", &script]).spawn().unwrap();
    let root_pid = run.id();
    assert!(run.wait().unwrap().success());
    let event = daemon.wait_event("the probe's denial", |e| e["kind"] == "network.connect");
    let process = &event["process"];
    let exec_id = process["exec_id"].as_str().expect("exec_id");
    let pid = process["pid"].as_u64().unwrap();
    assert!(exec_id.contains(&format!("-{pid}-")), "{process}");
    let ancestry: Vec<&str> =
        process["ancestry"].as_array().expect("ancestry").iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(ancestry.len(), 2, "inner sh, then the root: {process}");
    assert_eq!(process["parent_exec_id"].as_str(), Some(ancestry[0]));
    assert!(ancestry[1].contains(&format!("-{root_pid}-")), "the root is run's process {root_pid}: {process}");
    assert!(!ancestry.contains(&exec_id));
    // The inner sh had exited before the probe connected: its image is still named.
    let inner_pid: u32 = ancestry[0].split('-').nth(1).unwrap().parse().unwrap();
    assert!(inner_pid != root_pid && u64::from(inner_pid) != pid, "{process}");
}
