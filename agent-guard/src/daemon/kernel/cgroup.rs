//! Per-task cgroup v2 directories: they group a task's processes for the operator (and for
//! `cgroup.kill` on stop). Enforcement does not depend on them: the kernel programs are
//! attached at the cgroup v2 root and decide by the process tag, so a process that moves
//! itself to another cgroup stays bound by its task.

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
    let mounts = std::fs::read_to_string("/proc/self/mounts")
        .map_err(|source| CgroupError::Io { path: "/proc/self/mounts".into(), source })?;
    mounts
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, dir, fstype) = (fields.next()?, fields.next()?, fields.next()?);
            (fstype == "cgroup2").then(|| PathBuf::from(dir))
        })
        .ok_or(CgroupError::NoCgroup2)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io { path: path.to_path_buf(), source }
}

/// Creates `dir` and moves `pid` into it.
pub fn create_with(dir: &Path, pid: u32) -> Result<(), CgroupError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
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
