//! Pinning the programs' links in bpffs, swapping each in for the previous daemon's.

use std::path::{Path, PathBuf};

use aya::programs::links::FdLink;

use super::KernelError;

/// The links pinned under `<pin dir>/links/<program>`: each new link replaces the previous
/// daemon's of the same name by an atomic rename (bpffs: `simple_rename`), which drops the old
/// link and with it the old program's attachment.
///
/// Should a kernel refuse to pin a link, the links are kept in memory instead, so the programs
/// detach when the daemon dies, and the daemon says so (`unpinnable`).
pub struct Links {
    dir: PathBuf,
    pinned: Vec<String>,
    /// Links held by this process only, when the kernel would not pin them.
    pub held: Vec<FdLink>,
    /// Why links are not pinned, if they are not.
    pub unpinnable: Option<String>,
}

impl Links {
    pub fn new(pin_dir: &Path) -> Links {
        Links { dir: pin_dir.join("links"), pinned: Vec::new(), held: Vec::new(), unpinnable: None }
    }

    /// Attaches program `name` with `attach` and pins its link. A failed pin drops the link
    /// (aya's `FdLink::pin` consumes it): the program is then attached again, and held.
    pub fn attach(
        &mut self,
        name: &'static str,
        mut attach: impl FnMut() -> Result<FdLink, KernelError>,
    ) -> Result<(), KernelError> {
        if self.unpinnable.is_some() {
            self.held.push(attach()?);
            return Ok(());
        }
        // No '.' in the name: bpffs refuses to create those (kernel/bpf/inode.c bpf_lookup,
        // the dot is kept for its own .debug files), with EPERM.
        let staged = self.dir.join(format!("new-{name}"));
        let _ = std::fs::remove_file(&staged);
        if let Err(err) = attach()?.pin(&staged) {
            self.unpinnable = Some(format!("pinning the link of {name}: {err}"));
            self.held.push(attach()?);
            return Ok(());
        }
        let path = self.dir.join(name);
        std::fs::rename(&staged, &path).map_err(|source| KernelError::Pin { path, source })?;
        self.pinned.push(name.to_string());
        Ok(())
    }

    /// Unpins (detaches) every link not pinned by this load.
    pub fn remove_others(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !self.pinned.contains(&name) {
                tracing::info!(link = name, "detaching a previous daemon's program this load does not use");
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
