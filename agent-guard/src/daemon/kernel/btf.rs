//! Kernel struct member offsets from the running kernel's BTF (/sys/kernel/btf/vmlinux), for
//! the BPF LSM programs: Rust eBPF has no CO-RE relocations, so the daemon resolves the few
//! offsets the hooks need and passes them as load-time constants.

use btfparse::{Offset, Readable, TypeInformation, TypeVariant};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The offsets lsm.rs uses.
#[derive(Clone, Debug)]
pub struct LsmOffsets {
    /// The path walk (`dentry_path.rs`), which the `landlock` level uses too.
    pub walk: WalkOffsets,
    pub file_mode: u32,
    pub file_flags: u32,
    pub bprm_file: u32,
    pub socket_type: u32,
    pub task_tgid: u32,
    pub task_cred: u32,
    pub socket_sk: u32,
    pub sock_family: u32,
    pub sock_num: u32,
    pub file_inode: u32,
    pub inode_mode: u32,
    pub dentry_sb: u32,
    pub sb_mounts: u32,
    pub sb_magic: u32,
    pub unix_path: u32,
    pub dentry_inode: u32,
    pub key_type: u32,
    pub inode_ino: u32,
    pub sb_dev: u32,
    pub unix_addr: u32,
    pub mount_instance: u32,
    /// `inode_setattr`'s dentry argument (1 from Linux 6.3, after the idmap; 0 before).
    pub setattr_dentry_arg: u32,
    /// Optional hooks this kernel does not have (`inode_set_acl` before 6.2).
    pub missing_hooks: Vec<&'static str>,
}

/// What the tag programs read on every kernel (tag.rs: group death before 6.16).
#[derive(Clone, Copy, Debug)]
pub struct TaskOffsets {
    pub task_signal: u32,
    pub signal_live: u32,
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

/// The running kernel's BTF, parsed once per start: a parse of the whole of vmlinux's types is
/// most of a start's own work besides the verifier's (perf: a second natively in a debug build,
/// about twenty under emulation), and every offset set below comes from the same parse.
pub struct KernelBtf(TypeInformation);

impl KernelBtf {
    pub fn read() -> Result<Self, String> {
        let data = std::fs::read(VMLINUX_BTF).map_err(|e| format!("{VMLINUX_BTF}: {e}"))?;
        TypeInformation::new(&Bytes(data)).map(Self).map_err(|e| format!("{VMLINUX_BTF}: {e:?}"))
    }
}

/// Parameters of the kernel function `name` (for a BPF LSM hook: `bpf_lsm_<hook>`), or None
/// when the kernel has no such function.
fn parameter_count(types: &TypeInformation, name: &str) -> Option<usize> {
    let TypeVariant::Func(func) = types.from_id(types.id_of(name)?)? else { return None };
    let TypeVariant::FuncProto(proto) = types.from_id(*func.prototype_tid())? else { return None };
    Some(proto.parameter_list().len())
}

/// BPF LSM hooks loaded only where the kernel has them.
pub const OPTIONAL_HOOKS: &[&str] = &["inode_set_acl", "inode_remove_acl"];

/// How `super_block.s_mounts` reaches a mount: on 6.12 and earlier it is a `list_head` threaded
/// through `mount.mnt_instance` (the entry is that member's address); newer kernels (6.18 here;
/// fs/mount.h, `mount.mnt_next_for_sb`) make it a pointer to the first struct mount itself, so
/// the link sits at offset 0.
fn first_mount_link(types: &TypeInformation) -> Result<u32, String> {
    offset(types, "mount", "mnt_instance").or_else(|list_err| {
        offset(types, "mount", "mnt_next_for_sb")
            .map(|_| 0)
            .map_err(|_| format!("{list_err}, and no mount.mnt_next_for_sb either"))
    })
}

/// The path walk's members (`dentry_path.rs`): the BPF LSM hooks and the `landlock` level's
/// exit programs both build paths with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkOffsets {
    pub file_path: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub dentry_name: u32,
    pub dentry_parent: u32,
    pub vfsmnt_root: u32,
    pub mount_mnt: u32,
    pub mount_parent: u32,
    pub mount_point: u32,
}

fn walk_offsets(types: &TypeInformation) -> Result<WalkOffsets, String> {
    Ok(WalkOffsets {
        file_path: offset(types, "file", "f_path")?,
        path_mnt: offset(types, "path", "mnt")?,
        path_dentry: offset(types, "path", "dentry")?,
        dentry_name: offset(types, "dentry", "d_name.name")?,
        dentry_parent: offset(types, "dentry", "d_parent")?,
        vfsmnt_root: offset(types, "vfsmount", "mnt_root")?,
        mount_mnt: offset(types, "mount", "mnt")?,
        mount_parent: offset(types, "mount", "mnt_parent")?,
        mount_point: offset(types, "mount", "mnt_mountpoint")?,
    })
}

/// What the `landlock` level reads to judge the file an open or exec reached (file.rs, exec.rs):
/// the descriptor table (include/linux/fdtable.h), the executable (`mm_struct.exe_file`), and
/// the path walk.
#[derive(Clone, Copy, Debug)]
pub struct ResolveOffsets {
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdt_fd: u32,
    pub task_mm: u32,
    pub mm_exe_file: u32,
    /// An opened file's mode and identity (`OpenSeenKey`): `file.f_flags`, `file.f_inode`,
    /// `inode.i_ino` and `inode.i_generation` (include/linux/fs.h).
    pub file_flags: u32,
    pub file_inode: u32,
    pub inode_ino: u32,
    pub inode_generation: u32,
    pub walk: WalkOffsets,
}

impl KernelBtf {
    pub fn resolve_offsets(&self) -> Result<ResolveOffsets, String> {
        let types = &self.0;
        Ok(ResolveOffsets {
            task_files: offset(types, "task_struct", "files")?,
            files_fdt: offset(types, "files_struct", "fdt")?,
            fdt_fd: offset(types, "fdtable", "fd")?,
            task_mm: offset(types, "task_struct", "mm")?,
            mm_exe_file: offset(types, "mm_struct", "exe_file")?,
            file_flags: offset(types, "file", "f_flags")?,
            file_inode: offset(types, "file", "f_inode")?,
            inode_ino: offset(types, "inode", "i_ino")?,
            inode_generation: offset(types, "inode", "i_generation")?,
            walk: walk_offsets(types)?,
        })
    }

    pub fn task_offsets(&self) -> Result<TaskOffsets, String> {
        let types = &self.0;
        Ok(TaskOffsets {
            task_signal: offset(types, "task_struct", "signal")?,
            signal_live: offset(types, "signal_struct", "live")?,
        })
    }

    pub fn lsm_offsets(&self) -> Result<LsmOffsets, String> {
        let types = &self.0;
        let setattr_dentry_arg = match parameter_count(types, "bpf_lsm_inode_setattr") {
            Some(3) => 1,
            Some(2) => 0,
            other => return Err(format!("bpf_lsm_inode_setattr has {other:?} parameters, expected 2 or 3")),
        };
        Ok(LsmOffsets {
            task_cred: offset(types, "task_struct", "cred")?,
            socket_sk: offset(types, "socket", "sk")?,
            sock_family: offset(types, "sock_common", "skc_family")?,
            sock_num: offset(types, "sock_common", "skc_num")?,
            file_inode: offset(types, "file", "f_inode")?,
            inode_mode: offset(types, "inode", "i_mode")?,
            dentry_sb: offset(types, "dentry", "d_sb")?,
            sb_mounts: offset(types, "super_block", "s_mounts")?,
            sb_magic: offset(types, "super_block", "s_magic")?,
            unix_path: offset(types, "unix_sock", "path")?,
            dentry_inode: offset(types, "dentry", "d_inode")?,
            key_type: offset(types, "key", "type")?,
            inode_ino: offset(types, "inode", "i_ino")?,
            sb_dev: offset(types, "super_block", "s_dev")?,
            unix_addr: offset(types, "unix_sock", "addr")?,
            mount_instance: first_mount_link(types)?,
            setattr_dentry_arg,
            missing_hooks: OPTIONAL_HOOKS
                .iter()
                .copied()
                .filter(|hook| parameter_count(types, &format!("bpf_lsm_{hook}")).is_none())
                .collect(),
            file_mode: offset(types, "file", "f_mode")?,
            file_flags: offset(types, "file", "f_flags")?,
            bprm_file: offset(types, "linux_binprm", "file")?,
            socket_type: offset(types, "socket", "type")?,
            task_tgid: offset(types, "task_struct", "tgid")?,
            walk: walk_offsets(types)?,
        })
    }
}

/// The BPF LSM offsets alone (`preflight`).
pub fn lsm_offsets() -> Result<LsmOffsets, String> {
    KernelBtf::read()?.lsm_offsets()
}

#[cfg(test)]
mod tests {
    /// Reads this host's BTF: the offsets exist and are distinct and plausible.
    #[test]
    fn resolves_the_lsm_offsets_from_this_kernel() {
        let offsets = super::lsm_offsets().expect("this host has /sys/kernel/btf/vmlinux");
        assert_ne!(offsets.walk.file_path, offsets.file_mode);
        let btf = super::KernelBtf::read().unwrap();
        let resolve = btf.resolve_offsets().expect("this host's BTF has the resolve offsets");
        assert_eq!(resolve.walk, offsets.walk);
        assert!(resolve.mm_exe_file > 0 && resolve.fdt_fd > 0 && resolve.task_files > 0);
        assert!(offsets.walk.file_path < 512 && offsets.file_mode < 512);
        assert!(offsets.bprm_file < 1024);
        assert_eq!(offsets.socket_type, 4, "struct socket starts with socket_state state; short type");
        assert_eq!(offsets.setattr_dentry_arg, 1, "6.18's inode_setattr takes the idmap first");
        assert!(offsets.missing_hooks.is_empty(), "6.18 has inode_set_acl: {:?}", offsets.missing_hooks);
        assert_ne!(offsets.sock_num, offsets.sock_family);
        let task = btf.task_offsets().unwrap();
        assert!(task.task_signal > 0 && task.signal_live < 64);
    }
}
