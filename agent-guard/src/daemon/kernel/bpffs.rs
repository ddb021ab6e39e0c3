//! The BPF filesystem, where the programs' links and the maps are pinned so that they
//! outlive the daemon (kernel.rs). Mounted at /sys/fs/bpf when nothing is there yet.

use std::path::Path;

use super::KernelError;

pub const BPFFS: &str = "/sys/fs/bpf";
/// include/uapi/linux/magic.h
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn is_bpffs(path: &Path) -> bool {
    // `f_type` is signed in glibc's struct statfs and unsigned in musl's.
    #[allow(clippy::useless_conversion, reason = "i64 on glibc, u64 on musl")]
    nix::sys::statfs::statfs(path).is_ok_and(|fs| i64::try_from(fs.filesystem_type().0) == Ok(BPF_FS_MAGIC))
}

/// Makes sure `pin_dir` can be created on a BPF filesystem: mounts one at /sys/fs/bpf when
/// the pin directory is below it and it is not mounted. Anywhere else it must already be one.
pub fn ensure(pin_dir: &Path) -> Result<(), KernelError> {
    let err = |detail: String| KernelError::Pin { path: pin_dir.to_path_buf(), source: std::io::Error::other(detail) };
    let existing = pin_dir.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
    if is_bpffs(existing) {
        return Ok(());
    }
    if !pin_dir.starts_with(BPFFS) {
        return Err(err(format!("{} is not on a BPF filesystem (mount -t bpf bpf DIR)", existing.display())));
    }
    // Two daemons starting at once must not stack two mounts (the second would hide the
    // first's pins): the check and the mount happen under a lock on the mount point.
    let dir = std::fs::File::open(BPFFS).map_err(|e| err(format!("{BPFFS}: {e}")))?;
    let _lock = nix::fcntl::Flock::lock(dir, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| err(format!("locking {BPFFS}: {e}")))?;
    if is_bpffs(Path::new(BPFFS)) {
        return Ok(());
    }
    nix::mount::mount(Some("bpf"), BPFFS, Some("bpf"), nix::mount::MsFlags::empty(), None::<&str>)
        .map_err(|e| err(format!("mounting bpffs at {BPFFS}: {e}")))?;
    tracing::info!(path = BPFFS, "mounted the BPF filesystem");
    Ok(())
}
