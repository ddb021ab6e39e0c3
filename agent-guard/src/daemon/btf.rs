//! Kernel struct member offsets from the running kernel's BTF (/sys/kernel/btf/vmlinux), for
//! the BPF LSM programs: Rust eBPF has no CO-RE relocations, so the daemon resolves the few
//! offsets the hooks need and passes them as load-time constants.

use btfparse::{Offset, Readable, TypeInformation};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The offsets lsm.rs uses.
#[derive(Clone, Copy, Debug)]
pub struct LsmOffsets {
    pub file_path: u32,
    pub file_mode: u32,
    pub file_flags: u32,
    pub bprm_file: u32,
    pub socket_type: u32,
    pub task_tgid: u32,
    pub dentry_name: u32,
    pub dentry_parent: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub vfsmnt_root: u32,
    pub mount_mnt: u32,
    pub mount_parent: u32,
    pub mount_point: u32,
}

struct Bytes(Vec<u8>);

impl Readable for Bytes {
    fn read(&self, offset: u64, buffer: &mut [u8]) -> btfparse::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let bytes = start.checked_add(buffer.len()).and_then(|end| self.0.get(start..end)).ok_or_else(|| {
            btfparse::Error::new(btfparse::ErrorKind::InvalidOffset, "read past the end of the BTF data")
        })?;
        buffer.copy_from_slice(bytes);
        Ok(())
    }
}

fn offset(types: &TypeInformation, structure: &str, member: &str) -> Result<u32, String> {
    let id = types.id_of(structure).ok_or_else(|| format!("BTF has no struct {structure}"))?;
    match types.offset_of(id, member) {
        Ok((_, Offset::ByteOffset(off))) => Ok(off),
        Ok((_, Offset::BitOffsetAndSize(..))) => Err(format!("{structure}.{member} is a bitfield")),
        Err(err) => Err(format!("{structure}.{member}: {err:?}")),
    }
}

pub fn lsm_offsets() -> Result<LsmOffsets, String> {
    let data = std::fs::read(VMLINUX_BTF).map_err(|e| format!("{VMLINUX_BTF}: {e}"))?;
    let types = TypeInformation::new(&Bytes(data)).map_err(|e| format!("{VMLINUX_BTF}: {e:?}"))?;
    Ok(LsmOffsets {
        file_path: offset(&types, "file", "f_path")?,
        file_mode: offset(&types, "file", "f_mode")?,
        file_flags: offset(&types, "file", "f_flags")?,
        bprm_file: offset(&types, "linux_binprm", "file")?,
        socket_type: offset(&types, "socket", "type")?,
        task_tgid: offset(&types, "task_struct", "tgid")?,
        dentry_name: offset(&types, "dentry", "d_name.name")?,
        dentry_parent: offset(&types, "dentry", "d_parent")?,
        path_mnt: offset(&types, "path", "mnt")?,
        path_dentry: offset(&types, "path", "dentry")?,
        vfsmnt_root: offset(&types, "vfsmount", "mnt_root")?,
        mount_mnt: offset(&types, "mount", "mnt")?,
        mount_parent: offset(&types, "mount", "mnt_parent")?,
        mount_point: offset(&types, "mount", "mnt_mountpoint")?,
    })
}

#[cfg(test)]
mod tests {
    /// Reads this host's BTF: the offsets exist and are distinct and plausible.
    #[test]
    fn resolves_the_lsm_offsets_from_this_kernel() {
        let offsets = super::lsm_offsets().expect("this host has /sys/kernel/btf/vmlinux");
        assert_ne!(offsets.file_path, offsets.file_mode);
        assert!(offsets.file_path < 512 && offsets.file_mode < 512);
        assert!(offsets.bprm_file < 1024);
        assert_eq!(offsets.socket_type, 4, "struct socket starts with socket_state state; short type");
    }
}
