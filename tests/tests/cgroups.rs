//! Where a task's cgroup is made: inside its caller's cgroup (so the caller's limits apply:
//! tests/vm/limits.rs checks a memory limit), unless a user other than root controls that
//! cgroup, who could then move the task's processes out of reach of `cgroup.kill`.

use std::{os::unix::fs::chown, path::PathBuf, process::Command};

use agent_guard_e2e::{Daemon, agent_guard_bin, grant};

const PROBE: &str = env!("CARGO_BIN_EXE_ag-probe");

/// The cgroup v2 mount point.
fn cgroup2_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .expect("a cgroup2 mount")
}

/// A cgroup directory under the root, removed when dropped.
struct Cgroup(PathBuf);

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Opens a task from a shell moved into `caller`; the task's cgroup path as its process sees it.
fn task_cgroup_from(daemon: &Daemon, g: &std::path::Path, caller: &Cgroup) -> String {
    let script = format!(
        "echo $$ > {procs} && exec {bin} --socket {socket} run --agent placed --intent 'where am I' --grant {g} -- {PROBE} alloc 1",
        procs = caller.0.join("cgroup.procs").display(),
        bin = agent_guard_bin().display(),
        socket = daemon.socket.display(),
        g = g.display(),
    );
    let out = Command::new("/bin/sh").args(["-c", &script]).output().unwrap();
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    line.strip_prefix("ok 1 ").unwrap_or_else(|| panic!("{out:?}")).to_string()
}

#[test]
fn a_task_cgroup_is_made_in_its_callers_unless_a_user_controls_that_cgroup() {
    let daemon = Daemon::start();
    let g = grant(daemon.dir.path(), "placed", "enforce", &[], "");
    let root = cgroup2_root();
    let owned = Cgroup(root.join(format!("ag-caller-root-{}", std::process::id())));
    std::fs::create_dir(&owned.0).unwrap();
    let inside = task_cgroup_from(&daemon, &g, &owned);
    let name = owned.0.file_name().unwrap().to_string_lossy().into_owned();
    assert!(inside.starts_with(&format!("/{name}/")) && inside.contains("-task-"), "{inside} is not under /{name}");

    // Delegated to a user (as systemd's user@.service does): they could move the task's
    // processes out, so the task goes under the daemon's own directory instead.
    let delegated = Cgroup(root.join(format!("ag-caller-user-{}", std::process::id())));
    std::fs::create_dir(&delegated.0).unwrap();
    for file in ["cgroup.procs", "cgroup.subtree_control", "cgroup.threads"] {
        chown(delegated.0.join(file), Some(65534), Some(65534)).unwrap();
    }
    chown(&delegated.0, Some(65534), Some(65534)).unwrap();
    let placed = task_cgroup_from(&daemon, &g, &delegated);
    let user = delegated.0.file_name().unwrap().to_string_lossy().into_owned();
    assert!(!placed.starts_with(&format!("/{user}/")), "the task's cgroup {placed} is in the user's subtree");
    assert!(placed.starts_with(&format!("/{}/task-", daemon.cgroup)), "{placed}");
}

/// In a `DaemonSet` the daemon runs in its container's own cgroup namespace (with the host's PID
/// namespace), where other pods' cgroups read as `/../..`, as does the host hierarchy mounted
/// in: it reads one against the other, so a task's cgroup is still made inside its caller's.
#[test]
fn a_daemon_in_its_own_cgroup_namespace_still_places_tasks_in_their_callers_cgroup() {
    let root = cgroup2_root();
    let boxed = Cgroup(root.join(format!("ag-daemon-ns-{}", std::process::id())));
    std::fs::create_dir(&boxed.0).unwrap();
    // The daemon moves into its own cgroup, then into a new cgroup namespace rooted there.
    let enter = format!("echo $$ > {} && exec unshare --cgroup \"$@\"", boxed.0.join("cgroup.procs").display());
    let daemon = Daemon::start_wrapped(&["/bin/sh", "-c", &enter, "sh"], None, &[]);
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", daemon.pid())).unwrap();
    let name = boxed.0.file_name().unwrap().to_string_lossy().into_owned();
    assert!(own.contains(&format!("0::/{name}")), "the daemon is not in /{name}: {own}");

    let g = grant(daemon.dir.path(), "placed", "enforce", &[], "");
    let caller = Cgroup(root.join(format!("ag-caller-ns-{}", std::process::id())));
    std::fs::create_dir(&caller.0).unwrap();
    let placed = task_cgroup_from(&daemon, &g, &caller);
    let caller_name = caller.0.file_name().unwrap().to_string_lossy().into_owned();
    assert!(placed.starts_with(&format!("/{caller_name}/")), "the task's cgroup {placed} is not under /{caller_name}");
}
