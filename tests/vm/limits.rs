//! The caller's cgroup limits keep applying to its agents: a task's cgroup is made inside the
//! cgroup of the process that opened it (a pod's container, a service, a session). Here, with
//! cgroup v2's memory controller (this host runs cgroup v1 for memory, so this runs in the VM).

use std::{path::Path, process::Command};

use agent_guard_e2e::{agent_guard_bin, grant};

use super::{PROBE, base_files, files, start};

#[test]
fn a_tasks_memory_is_limited_by_its_callers_cgroup() {
    let daemon = start();
    let f = files(daemon);
    let g = grant(f.path(), "limited", "enforce", &[], &base_files(&[], &[], &[]));
    let root = Path::new("/sys/fs/cgroup");
    std::fs::write(root.join("cgroup.subtree_control"), "+memory").expect("enable the memory controller");
    let parent = root.join(format!("caller-{}", std::process::id()));
    std::fs::create_dir_all(&parent).unwrap();
    std::fs::write(parent.join("memory.max"), "64M").unwrap();
    if parent.join("memory.swap.max").exists() {
        std::fs::write(parent.join("memory.swap.max"), "0").unwrap();
    }
    let run = |mib: &str| {
        // The caller moves itself into the limited cgroup, then opens the task.
        let script = format!(
            "echo $$ > {procs} && exec {bin} --socket {socket} run --agent limited --intent 'use memory' --grant {g} -- {PROBE} alloc {mib}",
            procs = parent.join("cgroup.procs").display(),
            bin = agent_guard_bin().display(),
            socket = daemon.socket.display(),
            g = g.display(),
        );
        Command::new("/bin/sh").args(["-c", &script]).output().unwrap()
    };
    // Within the limit: it runs, in a cgroup inside its caller's.
    let out = run("16");
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let cgroup = line.strip_prefix("ok 16 ").unwrap_or_else(|| panic!("{out:?}"));
    let caller = format!("/{}/", parent.file_name().unwrap().to_string_lossy());
    assert!(
        cgroup.starts_with(&caller) && cgroup.contains("-task-"),
        "the task's cgroup {cgroup} is not under {caller}"
    );
    // Past it: the kernel's OOM killer ends the agent, in its caller's cgroup.
    let out = run("256");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ok"), "256 MiB fit under a 64 MiB limit: {out:?}");
    let events = std::fs::read_to_string(parent.join("memory.events")).unwrap();
    let oom_kills: u64 =
        events.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
    assert!(oom_kills >= 1, "no OOM kill counted in the caller's cgroup: {events}");
}
