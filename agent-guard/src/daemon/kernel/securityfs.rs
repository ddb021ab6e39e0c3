//! The active LSM list (`/sys/kernel/security/lsm`). A kernel built with `CONFIG_BPF_LSM` loads
//! and attaches BPF LSM programs even when `bpf` is not among the active LSMs, but never calls
//! them then (security/security.c only runs the hooks of the LSMs it initialised): the daemon
//! must not take a successful attach for enforcement.

use std::path::Path;

const SECURITYFS: &str = "/sys/kernel/security";

/// The active LSMs, mounting securityfs first if it is not.
pub fn active_lsms() -> Result<Vec<String>, String> {
    let list = Path::new(SECURITYFS).join("lsm");
    if !list.exists() {
        let mounted = nix::mount::mount(
            Some("securityfs"),
            SECURITYFS,
            Some("securityfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        );
        if let Err(errno) = mounted
            && !list.exists()
        {
            return Err(format!("cannot read the active LSM list: mounting securityfs on {SECURITYFS}: {errno}"));
        }
    }
    let text = std::fs::read_to_string(&list).map_err(|err| format!("{}: {err}", list.display()))?;
    Ok(text.trim().split(',').map(str::to_string).collect())
}

/// Ok when `bpf` is an active LSM; otherwise why BPF LSM programs would never run.
pub fn bpf_lsm_active() -> Result<(), String> {
    let lsms = active_lsms()?;
    if lsms.iter().any(|lsm| lsm == "bpf") {
        Ok(())
    } else {
        Err(format!("bpf is not among the active LSMs ({}): boot with lsm=...,bpf", lsms.join(",")))
    }
}
