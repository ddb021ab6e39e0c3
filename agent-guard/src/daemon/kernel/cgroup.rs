//! Per-task cgroup v2 directories: they group a task's processes for the operator (and for
//! `cgroup.kill` on stop). Enforcement does not depend on them: the kernel programs are
//! attached at the cgroup v2 root and decide by the process tag, so a process that moves
//! itself to another cgroup stays bound by its task.
//!
//! A task's directory is made inside the cgroup its caller runs in (a pod's container, a
//! service, a login session), so that the limits set there (memory, CPU, pids) keep applying
//! to the agent: a cgroup's limits cover all its descendants (Documentation/admin-guide/
//! cgroup-v2.rst, "Top-down Constraint"). The caller's cgroup holds processes, so it enables no
//! controllers for its children ("No Internal Process Constraint"), and none is asked for.

use std::path::{Path, PathBuf};

/// A cgroup operation that failed, with the path.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup v2 hierarchy is mounted (looked in /proc/self/mounts)")]
    NoCgroup2,
    #[error("cgroup {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Mount point of the cgroup v2 hierarchy (/sys/fs/cgroup, or /sys/fs/cgroup/unified in hybrid mode).
pub fn cgroup2_root() -> Result<PathBuf, CgroupError> {
    cgroup2_mount().map(|m| m.dir)
}

/// A cgroup v2 mount, and the cgroup it shows at its mount point as this cgroup namespace names
/// it: mountinfo's fourth field (kernel/cgroup/cgroup.c, `cgroup_show_path`). That is `/` on a
/// host. In a container with its own cgroup namespace (a `DaemonSet` pod: the host's PID
/// namespace, but not its cgroup namespace) the host's hierarchy mounted in shows as `/../..`,
/// and other pods' processes have /proc/PID/cgroup paths such as `/../../kubepods/...`.
pub struct Cgroup2Mount {
    pub dir: PathBuf,
    pub shows: PathBuf,
}

/// The cgroup v2 mount that shows the most of the hierarchy (the container's own cgroup mount
/// shows only its subtree; a `DaemonSet` mounts the host's too).
pub fn cgroup2_mount() -> Result<Cgroup2Mount, CgroupError> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|source| CgroupError::Io { path: "/proc/self/mountinfo".into(), source })?;
    let depth = |p: &Path| {
        p.components().fold(0i64, |d, c| match c {
            std::path::Component::Normal(_) => d + 1,
            std::path::Component::ParentDir => d - 1,
            _ => d,
        })
    };
    mounts
        .lines()
        .filter_map(|line| {
            // ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            (fields.get(dash + 1) == Some(&"cgroup2")).then_some(())?;
            let shows = PathBuf::from(unescape_octal(fields.get(3)?));
            Some(Cgroup2Mount { dir: PathBuf::from(unescape_octal(fields.get(4)?)), shows })
        })
        .min_by_key(|m| depth(&m.shows))
        .ok_or(CgroupError::NoCgroup2)
}

/// A mountinfo path with its `\ooo` escapes (space, tab, newline, backslash) undone.
fn unescape_octal(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        if let Some(byte) = rest.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(o, 8).ok()) {
            out.push(char::from(byte));
            rest = &rest[i + 4..];
        } else {
            out.push('\\');
            rest = &rest[i + 1..];
        }
    }
    out.push_str(rest);
    out
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io { path: path.to_path_buf(), source }
}

/// The cgroup v2 directory `pid` runs in, under `mount`, from /proc/PID/cgroup (its `0::PATH`
/// line, named from this cgroup namespace as the mount's `shows` is). None when it cannot be
/// read, or when it lies outside what the mount shows.
pub fn of_process(mount: &Cgroup2Mount, pid: u32) -> Option<PathBuf> {
    let path = path_of(pid)?;
    let relative = Path::new(&path).strip_prefix(&mount.shows).ok()?;
    if relative.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return None;
    }
    let dir = mount.dir.join(relative);
    dir.is_dir().then_some(dir)
}

/// Whether a user other than root may move processes within `dir` or above it (below `root`):
/// a cgroup delegated to a user (systemd's `user@UID.service`, `Delegate=yes`) has its
/// `cgroup.procs` owned by them, and whoever can write the common ancestor's `cgroup.procs`
/// can move a process between two cgroups (Documentation/admin-guide/cgroup-v2.rst,
/// "Delegation Containment"). A task's cgroup there could be emptied from outside the task,
/// out of reach of `cgroup.kill`.
pub fn delegated(root: &Path, dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    dir.ancestors()
        .take_while(|d| *d != root && d.starts_with(root))
        .any(|d| std::fs::metadata(d.join("cgroup.procs")).map_or(true, |m| m.uid() != 0))
}

/// The cgroup v2 path of `pid` as /proc/PID/cgroup gives it (`0::PATH`, from the cgroup
/// namespace's root).
pub fn path_of(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|line| line.strip_prefix("0::")).map(str::to_string)
}

/// Creates `dir` (which must not exist: a directory someone made in advance is not the
/// daemon's) and moves `pid` into it.
pub fn create_with(dir: &Path, pid: u32) -> Result<(), CgroupError> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    std::fs::create_dir(dir).map_err(io(dir))?;
    let procs = dir.join("cgroup.procs");
    std::fs::write(&procs, pid.to_string()).map_err(io(&procs))
}

/// Kills every process in `dir` (cgroup.kill, Linux 5.14+).
pub fn kill_all(dir: &Path) -> Result<(), CgroupError> {
    let kill = dir.join("cgroup.kill");
    std::fs::write(&kill, "1").map_err(io(&kill))
}

/// Removes an empty task cgroup; a missing one is fine.
pub fn remove(dir: &Path) -> Result<(), CgroupError> {
    match std::fs::remove_dir(dir) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(io(dir)(err)),
        _ => Ok(()),
    }
}

/// Removes a task cgroup once the kernel has let go of its last process. The exit tracepoint
/// that closes a task fires in `do_exit()` before the exiting task leaves its cgroup
/// (`cgroup_exit()` runs later, kernel/exit.c), so rmdir can briefly see EBUSY: retry for a while
/// on a thread of its own instead of holding up the caller.
pub fn remove_when_empty(dir: PathBuf) {
    // On the daemon's runtime, not a thread of its own: an agent that exhausts the system's
    // threads must not be able to make this fail (a failed thread spawn panics).
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        let _ = remove(&dir);
        return;
    };
    runtime.spawn(async move {
        for _ in 0..100 {
            match remove(&dir) {
                Ok(()) => return,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
        if let Err(err) = remove(&dir) {
            tracing::warn!(%err, "task cgroup still busy after 5 s; left in place");
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(super::unescape_octal(r"/sys/fs/cgroup\040x\134y\"), "/sys/fs/cgroup x\\y\\");
    }
}
