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

/// The cgroup v2 mount that shows the whole hierarchy, and where in it this process's cgroup
/// namespace is rooted.
///
/// On a host the namespace's root is the hierarchy's. In a container with a cgroup namespace of
/// its own (a `DaemonSet` pod: the host's PID namespace, not its cgroup namespace), the host's
/// hierarchy mounted in shows its root as `/../..` (mountinfo's fourth field,
/// kernel/cgroup/cgroup.c `cgroup_show_path`), and /proc/PID/cgroup gives another pod's process
/// a path relative to this namespace's root, up to the common ancestor and down again
/// (`/../../kubepods-burstable.slice/...`, fs/kernfs/dir.c `kernfs_path_from_node`). Such a path is read against
/// the namespace root's directory, found once.
#[derive(Clone, Debug)]
pub struct Cgroup2Mount {
    pub dir: PathBuf,
    /// The namespace root's directory, relative to `dir` (empty on a host); None when it could
    /// not be found: then only paths below the namespace's root are read.
    ns_root: Option<PathBuf>,
}

/// The cgroup v2 mount that shows the most of the hierarchy (a container's own cgroup mount
/// shows only its subtree; a `DaemonSet` mounts the host's too). Read once: the daemon never
/// changes namespaces, and finding the namespace's root walks the hierarchy.
pub fn cgroup2_mount() -> Result<Cgroup2Mount, CgroupError> {
    static MOUNT: std::sync::OnceLock<Cgroup2Mount> = std::sync::OnceLock::new();
    if let Some(mount) = MOUNT.get() {
        return Ok(mount.clone());
    }
    let mount = find_cgroup2_mount()?;
    Ok(MOUNT.get_or_init(|| mount).clone())
}

fn find_cgroup2_mount() -> Result<Cgroup2Mount, CgroupError> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|source| CgroupError::Io { path: "/proc/self/mountinfo".into(), source })?;
    let ups = |p: &Path| p.components().filter(|c| matches!(c, std::path::Component::ParentDir)).count();
    let (dir, shows) = mounts
        .lines()
        .filter_map(|line| {
            // ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            (fields.get(dash + 1) == Some(&"cgroup2")).then_some(())?;
            let shows = PathBuf::from(unescape_octal(fields.get(3)?));
            Some((PathBuf::from(unescape_octal(fields.get(4)?)), shows))
        })
        .max_by_key(|(_, shows)| (ups(shows), std::cmp::Reverse(shows.components().count())))
        .ok_or(CgroupError::NoCgroup2)?;
    let ns_root = if shows == Path::new("/") {
        Some(PathBuf::new())
    } else if shows.components().skip(1).all(|c| matches!(c, std::path::Component::ParentDir)) {
        namespace_root(&dir, ups(&shows))
    } else {
        // The mount shows a cgroup beside or below this namespace's root, not the whole
        // hierarchy: no path can be placed in it.
        None
    };
    if ns_root.is_none() {
        tracing::warn!(
            mount = %dir.display(),
            shows = %shows.display(),
            "the cgroup namespace's root was not found in the cgroup v2 mount: tasks' cgroups go under the daemon's own directory"
        );
    }
    Ok(Cgroup2Mount { dir, ns_root })
}

/// Where this cgroup namespace's root lies below the hierarchy's root (`depth` levels down): the
/// cgroup of this process, found by its pid in `cgroup.procs`, less its own path below the root.
fn namespace_root(dir: &Path, depth: usize) -> Option<PathBuf> {
    let own = PathBuf::from(path_of(std::process::id())?);
    let below: Vec<_> = own.components().skip(1).collect();
    if below.iter().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return None;
    }
    let pid = std::process::id().to_string();
    // Breadth first, level by level, to the depth of this process's cgroup.
    let mut level = vec![dir.to_path_buf()];
    for _ in 0..depth + below.len() {
        level = level
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
    }
    let found = level
        .into_iter()
        .find(|d| std::fs::read_to_string(d.join("cgroup.procs")).is_ok_and(|procs| procs.lines().any(|p| p == pid)))?;
    let root = found.ancestors().nth(below.len())?;
    root.strip_prefix(dir).ok().map(Path::to_path_buf)
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

/// The cgroup v2 directory under `mount` of a process whose /proc/PID/cgroup path is `path`
/// (`path_of`: relative to this cgroup namespace's root). None when it leads out of the
/// hierarchy, or is no directory.
pub fn dir_of(mount: &Cgroup2Mount, path: &str) -> Option<PathBuf> {
    let relative = absolute_in(mount.ns_root.as_deref()?, Path::new(path))?;
    let dir = mount.dir.join(relative);
    dir.is_dir().then_some(dir)
}

/// `path` (from a namespace rooted at `ns_root`, both relative to the hierarchy's root) as a
/// path from the hierarchy's root, its `..`s taken lexically (cgroupfs has no symlinks).
fn absolute_in(ns_root: &Path, path: &Path) -> Option<PathBuf> {
    let mut out = ns_root.to_path_buf();
    for component in path.components() {
        match component {
            std::path::Component::RootDir | std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            std::path::Component::Normal(name) => out.push(name),
            std::path::Component::Prefix(_) => return None,
        }
    }
    Some(out)
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
    fn paths_from_a_namespace_are_read_against_its_root() {
        use std::path::Path;
        let at = |root: &str, path: &str| super::absolute_in(Path::new(root), Path::new(path));
        // A host: the namespace is the hierarchy.
        assert_eq!(at("", "/system.slice/x.service"), Some("system.slice/x.service".into()));
        // A pod four levels down reading another pod's process: up to the common ancestor.
        let daemon = "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podD.slice/cri-containerd-D.scope";
        assert_eq!(
            at(daemon, "/../../../kubepods-burstable.slice/kubepods-burstable-podA.slice/cri-containerd-A.scope"),
            Some("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podA.slice/cri-containerd-A.scope".into())
        );
        assert_eq!(at(daemon, "/"), Some(daemon.into()));
        // Nothing leads above the hierarchy's root.
        assert_eq!(at("a/b", "/../../../etc"), None);
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(super::unescape_octal(r"/sys/fs/cgroup\040x\134y\"), "/sys/fs/cgroup x\\y\\");
    }
}
