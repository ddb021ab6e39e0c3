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

    // A delegated subtree below a cgroup root controls (a user's session under their slice):
    // the task goes into that cgroup, whose limits still cover it.
    let slice = Cgroup(root.join(format!("ag-caller-slice-{}", std::process::id())));
    let session = Cgroup(slice.0.join("session"));
    std::fs::create_dir_all(&session.0).unwrap();
    for file in ["cgroup.procs", "cgroup.subtree_control", "cgroup.threads"] {
        chown(session.0.join(file), Some(65534), Some(65534)).unwrap();
    }
    let placed = task_cgroup_from(&daemon, &g, &session);
    let slice_name = slice.0.file_name().unwrap().to_string_lossy().into_owned();
    assert!(placed.starts_with(&format!("/{slice_name}/{}-task-", daemon.cgroup)), "{placed}");

    // Directories of the next tasks' names made in advance in the caller's cgroup: the task
    // still goes there, under another name.
    for id in 1..=20 {
        let dir = owned.0.join(format!("{}-task-{id}", daemon.cgroup));
        if !dir.exists() {
            std::fs::create_dir(dir).unwrap();
        }
    }
    let renamed = task_cgroup_from(&daemon, &g, &owned);
    assert!(renamed.starts_with(&format!("/{name}/{}-task-", daemon.cgroup)), "{renamed}");
    let id_part = renamed.rsplit("-task-").next().unwrap();
    assert!(id_part.contains('-'), "{renamed} is one of the names made in advance");
    for id in 1..=20 {
        let _ = std::fs::remove_dir(owned.0.join(format!("{}-task-{id}", daemon.cgroup)));
    }
}

/// In a `DaemonSet` the daemon runs in its container's own cgroup namespace (with the host's PID
/// namespace), some levels down the hierarchy. From there another pod's process has a path up
/// to their common ancestor and down again (`/../../other/...`), and the host's hierarchy
/// mounted in shows as `/../../..`: the daemon finds its namespace's root in the hierarchy, so a
/// task's cgroup is still made inside its caller's, whose limits then apply.
#[test]
fn a_daemon_in_its_own_cgroup_namespace_still_places_tasks_in_their_callers_cgroup() {
    let root = cgroup2_root();
    let base = Cgroup(root.join(format!("ag-ns-{}", std::process::id())));
    let inner = Cgroup(base.0.join("pods/daemon"));
    let caller = Cgroup(base.0.join("agent"));
    for dir in [&inner.0, &caller.0] {
        std::fs::create_dir_all(dir).unwrap();
    }
    // The daemon moves into its cgroup, then into a new cgroup namespace rooted there.
    let enter = format!("echo $$ > {} && exec unshare --cgroup \"$@\"", inner.0.join("cgroup.procs").display());
    let daemon = Daemon::start_wrapped(&["/bin/sh", "-c", &enter, "sh"], None, &[]);
    let base_name = base.0.file_name().unwrap().to_string_lossy().into_owned();
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", daemon.pid())).unwrap();
    assert!(own.contains(&format!("0::/{base_name}/pods/daemon")), "the daemon is not in its cgroup: {own}");

    let g = grant(daemon.dir.path(), "placed", "enforce", &[], "");
    let placed = task_cgroup_from(&daemon, &g, &caller);
    assert!(
        placed.starts_with(&format!("/{base_name}/agent/")),
        "the task's cgroup {placed} is not under the caller's"
    );
    drop(daemon);
    let _ = std::fs::remove_dir(base.0.join("pods"));
}
