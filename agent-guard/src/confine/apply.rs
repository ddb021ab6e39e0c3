//! Applies a task's ruleset to this process (`agent-guard run`, after the daemon tagged it and
//! before it execs the agent): Landlock, `no_new_privs`, the capabilities the grant does not
//! name dropped, and the seccomp filter of `seccomp.rs`. Any failure stops `run` before the agent starts: a task the daemon counts as
//! confined is never left running unconfined.
//!
//! The paths are opened with `O_PATH`, which the eBPF programs do not judge for a confined task
//! (file.rs): `run` is already tagged here and may not hold read access to a write-only path.

use std::{fs::File, os::unix::fs::OpenOptionsExt};

use landlock::{
    ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, Scope,
};

use crate::api::{LandlockPath, LandlockRuleset};

/// Confinement that could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("Landlock ruleset: {0}")]
    Ruleset(#[from] landlock::RulesetError),
    #[error("Landlock rule for {path}: {source}")]
    Path { path: String, source: std::io::Error },
    #[error("Landlock ruleset was not fully enforced ({status}): the kernel's ABI is older than the one asked for")]
    NotEnforced { status: String },
    #[error("capability {cap}: {source}")]
    Capability { cap: String, source: caps::errors::CapsError },
    #[error("capability name {name:?} in the ruleset is not one this build knows")]
    UnknownCapability { name: String },
    #[error(transparent)]
    Seccomp(#[from] super::seccomp::SeccompError),
}

/// The ELF interpreters of the usual ABIs. The kernel opens a dynamic program's interpreter
/// for exec itself (`fs/binfmt_elf.c`: `open_exec` of `PT_INTERP`), which Landlock checks as an
/// exec of the loader: without it no dynamically linked program a grant names could start. A
/// direct exec of the loader (`ld.so PROG`, which runs PROG without exec) is not in the grant,
/// so the eBPF side kills it (exec.rs).
const DYNAMIC_LOADERS: &[&str] = &[
    "/lib64/ld-linux-x86-64.so.2",
    "/lib/ld-linux-aarch64.so.1",
    "/lib/ld-linux-armhf.so.3",
    "/lib/ld-linux.so.2",
    "/lib/ld-musl-x86_64.so.1",
    "/lib/ld-musl-aarch64.so.1",
];

/// Confines this process (and so everything it execs and starts) with `ruleset`.
pub fn apply(ruleset: &LandlockRuleset) -> Result<(), ConfineError> {
    let abi = ABI::from(i32::try_from(ruleset.abi).unwrap_or(0));
    let handled = AccessFs::from_all(abi);
    let mut attr = Ruleset::default().set_compatibility(CompatLevel::HardRequirement).handle_access(handled)?;
    if ruleset.abi >= 6 {
        // The agent may not signal the guard (or anything outside its task), nor reach an
        // abstract Unix socket created outside it.
        attr = attr.scope(Scope::from_all(abi))?;
    }
    let mut created = attr.create()?;
    let loaders = DYNAMIC_LOADERS.iter().map(|path| LandlockPath {
        path: (*path).into(),
        beneath: false,
        read: true,
        write: false,
        exec: true,
    });
    let loaders: Vec<LandlockPath> = loaders.collect();
    for rule in ruleset.paths.iter().chain(&loaders) {
        let Some((file, is_dir)) = open_rule_path(rule, ruleset)? else { continue };
        let mut access = access_of(rule, abi) & handled;
        if !is_dir {
            access &= AccessFs::from_file(abi);
        } else if !rule.beneath {
            // A right on a directory reaches everything beneath it: an exact path that is a
            // directory may only be listed (Landlock's ReadDir still lists its subdirectories;
            // the eBPF side judges what is opened there against the grant).
            access &= AccessFs::ReadDir;
        }
        if !access.is_empty() {
            created = created.add_rule(PathBeneath::new(file, access))?;
        }
    }
    let status = created.restrict_self()?;
    if status.ruleset != RulesetStatus::FullyEnforced || !status.no_new_privs {
        return Err(ConfineError::NotEnforced { status: format!("{:?}", status.ruleset) });
    }
    drop_capabilities(&ruleset.capabilities)?;
    super::seccomp::install_for(ruleset.guard_pid, ruleset.abi)?;
    super::notify::install_arch_guard()?;
    Ok(())
}

/// Landlock access rights for a rule's read, write and exec.
fn access_of(rule: &LandlockPath, abi: ABI) -> BitFlags<AccessFs> {
    let mut access = BitFlags::empty();
    if rule.read {
        access |= AccessFs::ReadFile | AccessFs::ReadDir;
    }
    if rule.write {
        // Everything that changes a file or the tree beneath the path, except device nodes.
        access |= AccessFs::from_write(abi) & !(AccessFs::MakeChar | AccessFs::MakeBlock | AccessFs::Execute);
        access |= AccessFs::WriteFile;
    }
    if rule.exec {
        access |= AccessFs::Execute;
    }
    access
}

/// The rule's path, opened with `O_PATH`, and whether it is a directory; None when it does not
/// exist (a rule on an ancestor would cover far more than the grant: a file still to be created
/// needs a `DIR/**` rule on its directory) or when it resolves, through a symlink someone
/// planted, to a place no rule of the ruleset covers with the same access.
fn open_rule_path(rule: &LandlockPath, ruleset: &LandlockRuleset) -> Result<Option<(File, bool)>, ConfineError> {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(&rule.path)
        .and_then(|file| file.metadata().map(|meta| (file, meta.is_dir())));
    let (file, is_dir) = match opened {
        Ok(found) => found,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ConfineError::Path { path: rule.path.clone(), source }),
    };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let resolved = std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map_err(|source| ConfineError::Path { path: rule.path.clone(), source })?;
    if DYNAMIC_LOADERS.contains(&rule.path.as_str()) || covered(&resolved.to_string_lossy(), rule, ruleset) {
        Ok(Some((file, is_dir)))
    } else {
        eprintln!(
            "agent-guard: Landlock rule for {} left out: it resolves to {}, which no rule covers",
            crate::text::printable(&rule.path),
            crate::text::printable(&resolved.to_string_lossy())
        );
        Ok(None)
    }
}

/// Whether `resolved` is one of the ruleset's paths, or beneath one, for each access `rule` gives
/// (not necessarily the same rule for each: `/bin` may resolve to `/usr/bin`, readable through a
/// rule on `/usr` and executable through one on `/usr/bin`).
fn covered(resolved: &str, rule: &LandlockPath, ruleset: &LandlockRuleset) -> bool {
    let beneath = |p: &LandlockPath| {
        resolved == p.path
            || (p.beneath
                && (p.path == "/" || resolved.strip_prefix(p.path.as_str()).is_some_and(|rest| rest.starts_with('/'))))
    };
    let by_some = |access: fn(&LandlockPath) -> bool| ruleset.paths.iter().any(|p| access(p) && beneath(p));
    (!rule.read || by_some(|p| p.read)) && (!rule.write || by_some(|p| p.write)) && (!rule.exec || by_some(|p| p.exec))
}

/// Drops every capability not in `keep` from the bounding, ambient, inheritable, permitted
/// and effective sets. Without `CAP_SETPCAP` (an unprivileged caller) the bounding set cannot be
/// changed; `no_new_privs`, already set, keeps exec from raising anything then.
fn drop_capabilities(keep: &[String]) -> Result<(), ConfineError> {
    use caps::{CapSet, Capability, CapsHashSet};
    let keep = keep
        .iter()
        .map(|name| name.parse::<Capability>().map_err(|_| ConfineError::UnknownCapability { name: name.clone() }))
        .collect::<Result<CapsHashSet, _>>()?;
    let fail = |cap: String| move |source| ConfineError::Capability { cap, source };
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).map_err(fail("CAP_SETPCAP".into()))? {
        for cap in caps::all().into_iter().filter(|cap| !keep.contains(cap)) {
            // A capability this kernel does not know is not in its bounding set either.
            if caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
                caps::drop(None, CapSet::Bounding, cap).map_err(fail(cap.to_string()))?;
            }
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(fail("ambient set".into()))?;
    for set in [CapSet::Inheritable, CapSet::Effective, CapSet::Permitted] {
        let held = caps::read(None, set).map_err(fail(format!("{set:?} set")))?;
        let kept: CapsHashSet = held.intersection(&keep).copied().collect();
        caps::set(None, set, &kept).map_err(fail(format!("{set:?} set")))?;
    }
    Ok(())
}
