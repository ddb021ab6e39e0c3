//! The guard outlives its daemon, on the BPF LSM kernel: a SIGKILLed daemon leaves its
//! programs attached (links pinned in bpffs), its task confined, and the next daemon adopts
//! the task with its id and delivers what the kernel recorded meanwhile.

use std::{process::Stdio, time::Duration};

use agent_guard_e2e::{Daemon, grant, stdout};

use super::{PROBE, base_files, files};

#[test]
fn a_killed_daemon_leaves_its_task_confined_and_the_next_daemon_adopts_it() {
    // Its own daemon (the suite's shared one must not be killed).
    let mut daemon = Daemon::start_with(&["--require", "lsm"]);
    let status: serde_json::Value = serde_json::from_slice(&daemon.cli(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["survives_daemon"], true, "links pin on this kernel: {status}");
    let f = files(&daemon);
    let work = f.path().join("work");
    let g = grant(
        f.path(),
        "no-secrets",
        "enforce",
        &[],
        &base_files(&[&work.join("**")], &[&work.join("**")], &["/bin/busybox"]),
    );
    let (secret, late_out) = (f.secret.display().to_string(), work.join("late.out").display().to_string());
    // One process keeps trying to read the secret for 30 s; another tries once, 8 s in,
    // while no daemon runs.
    let script = format!("{PROBE} after 8 open {secret} > {late_out} & {PROBE} loop 30 open {secret}; wait");
    let agent = daemon
        .run_command("persistent-bot", "wait out the guard", &g, &[], &["/bin/sh", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the agent");
    let first = daemon.wait_event("a refused read of the secret", |e| {
        e["kind"] == "file.open" && e["task"]["agent"] == "persistent-bot" && e["decision"] == "denied"
    });
    let task_id = first["task"]["id"].as_u64().expect("task id");

    daemon.kill();
    // The late read runs 8 s after the agent started; on a busy emulated CPU it may take longer
    // to report: wait for its line (no daemon runs until then).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let late = loop {
        let said = std::fs::read_to_string(&late_out).unwrap_or_default();
        if said.ends_with('\n') || std::time::Instant::now() > deadline {
            break said;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(late.trim(), "EPERM", "with no daemon running, the kernel still refuses the read");

    daemon.spawn();
    let adopt = daemon.wait_event("guard.adopt", |e| e["kind"] == "guard.adopt");
    let reason = adopt["reason"].as_str().unwrap();
    assert!(reason.contains("Adopted 1 open task") && reason.contains("enforced every task meanwhile"), "{reason}");
    let list: Vec<serde_json::Value> = serde_json::from_slice(&daemon.cli(&["task", "list", "--json"]).stdout).unwrap();
    // Open, or closed if the agent finished while the new daemon verified its programs: either
    // way under its own id.
    assert!(list.iter().any(|t| t["id"].as_u64() == Some(task_id)), "{list:?}");
    // What the kernel refused while no daemon ran is delivered, with its task and intent. The
    // backlog is read from the ring buffer while the new daemon adopts, so it may reach the
    // outputs after guard.adopt (seen in CI): wait for it rather than look once.
    let in_gap = |e: &serde_json::Value| {
        e["kind"] == "file.open"
            && e["task"]["id"].as_u64() == Some(task_id)
            && e["time"].as_str() < adopt["time"].as_str()
            && e["time"].as_str() > first["time"].as_str()
    };
    daemon.wait_event("a refusal recorded while no daemon ran", in_gap);
    let gap_events: Vec<serde_json::Value> = daemon.events().into_iter().filter(in_gap).collect();
    assert!(gap_events.iter().all(|e| e["decision"] == "denied" && e["task"]["intent"] == "wait out the guard"));

    let out = agent.wait_with_output().unwrap();
    let line = stdout(&out);
    assert!(line.starts_with("ok=0 EPERM="), "the secret was never read, before, during or after: {line}");
    assert!(daemon.stop().success());
}

#[test]
fn a_held_action_is_refused_by_the_kernel_once_its_deadline_passes_with_no_daemon() {
    let mut daemon = Daemon::start_with(&["--require", "lsm", "--approval-timeout", "3s"]);
    let f = files(&daemon);
    let g = super::ask_grant(&f, "ask-alone", &f.secret);
    let child = daemon
        .run_command("lonely-asker", "needs a human", &g, &[], &[PROBE, "open", f.secret.to_str().unwrap(), "r"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let request = daemon
        .wait_event("approval request", |e| e["kind"] == "approval.request" && e["task"]["agent"] == "lonely-asker");
    let pid = request["process"]["pid"].as_i64().expect("the held process") as i32;
    daemon.kill();
    std::thread::sleep(Duration::from_secs(4));
    // Anyone may continue it now: past its deadline the kernel refuses the held open itself.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    assert_eq!(stdout(&child.wait_with_output().unwrap()), "EPERM", "the secret was not read");
    daemon.spawn();
    daemon.wait_event("guard.adopt", |e| e["kind"] == "guard.adopt");
    assert!(daemon.stop().success());
}

#[test]
fn a_full_tag_map_refuses_the_fork_instead_of_letting_an_untagged_child_run() {
    // PROC_TAGS of 300 entries: forks are refused once fewer than 256 are free.
    let daemon = Daemon::start_with(&["--require", "lsm", "--max-processes", "300"]);
    let f = files(&daemon);
    let g = grant(f.path(), "fork-bomb", "enforce", &[], &base_files(&[], &[], &[]));
    let mut child = daemon
        .run_command("bomb-bot", "fork as much as it can", &g, &[], &[PROBE, "fork-many", "100", "4"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut first).unwrap();
    let counts: std::collections::HashMap<&str, u64> =
        first.split_whitespace().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k, v.parse().unwrap())).collect();
    assert!(counts["EPERM"] > 0 && counts["ok"] < 100, "forks past the headroom are refused: {first}");
    // Every child that did start is tagged: the task counts them all (the probe itself too).
    let list: Vec<serde_json::Value> = serde_json::from_slice(&daemon.cli(&["task", "list", "--json"]).stdout).unwrap();
    let task = list.iter().find(|t| t["agent"] == "bomb-bot").expect("the task");
    assert_eq!(task["live_processes"].as_u64(), Some(counts["ok"] + 1), "{task}");
    daemon.wait_event("fork refused", |e| {
        e["kind"] == "task.escape" && e["task"]["agent"] == "bomb-bot" && e["object"]["route"] == "fork"
    });
    assert!(!daemon.events().iter().any(|e| e["kind"] == "guard.tag_lost"), "no child ran untagged");
    child.wait().unwrap();
}
