//! File and exec grant representation, shared by every hook that decides on a path.
//!
//! A path pattern compiles to one `PATH_RULES` entry keyed by (grant id, FNV-1a hash of a
//! path or of a directory prefix ending in '/'). A hook hashes the path it sees byte by byte
//! and looks up the running hash at every '/' and at the end, so a decision costs one lookup
//! per path component whatever the number of rules:
//! - `subtree` bits of a prefix `/a/b/` apply to everything below it (`/a/b/**`), and to `/a/b`;
//! - `children` bits of a prefix apply to its direct entries only (`/a/b/*`);
//! - `exact` bits of a full path apply to that path only.

/// Access bits.
pub const ACCESS_READ: u32 = 1;
/// Write, or change the file tree.
pub const ACCESS_WRITE: u32 = 2;
/// Execute.
pub const ACCESS_EXEC: u32 = 4;
/// open(2) flags (include/uapi/asm-generic/fcntl.h) that decide what an open needs.
pub const O_ACCMODE: u32 = 0o3;
/// Write only.
pub const O_WRONLY: u32 = 0o1;
/// Read and write.
pub const O_RDWR: u32 = 0o2;
/// Create the file if it does not exist.
pub const O_CREAT: u32 = 0o100;
/// Truncate the file.
pub const O_TRUNC: u32 = 0o1000;

/// ACCESS_* bits an open with `flags` needs. Shared by the open hooks and the daemon's
/// supervisor of held opens (the landlock level), so an approval names the same access both see.
#[expect(
    clippy::inline_always,
    reason = "called from eBPF programs: an outlined call would cost verifier budget and a BPF-to-BPF call"
)]
#[inline(always)]
pub fn open_access(flags: u32) -> u32 {
    let mut access = match flags & O_ACCMODE {
        0 => ACCESS_READ,
        O_WRONLY => ACCESS_WRITE,
        _ => ACCESS_READ | ACCESS_WRITE,
    };
    if flags & O_RDWR != 0 {
        access |= ACCESS_READ;
    }
    if flags & (O_CREAT | O_TRUNC) != 0 {
        access |= ACCESS_WRITE;
    }
    access
}

/// A rule's access bits are stored shifted by its action: `allow` unshifted, `ask` by
/// `ASK_SHIFT` (the kernel holds the action and asks a human), `flag` by `FLAG_SHIFT` (allowed and
/// reported), `deny` by `DENY_SHIFT` (refused whatever else matches). When several match, the
/// most restrictive decides: deny > ask > flag > allow.
pub const ASK_SHIFT: u32 = 4;
/// Shift of `flag` rules (see `ASK_SHIFT`).
pub const FLAG_SHIFT: u32 = 8;
/// Shift of `deny` rules (see `ASK_SHIFT`).
pub const DENY_SHIFT: u32 = 12;
/// Bits a human approved for a while (`approve --for`), set on the path's exact entry: they
/// turn an `ask` on that path into an allow, and never override a `deny`.
pub const APPROVED_SHIFT: u32 = 16;
/// The three access bits.
pub const ACCESS_MASK: u32 = ACCESS_READ | ACCESS_WRITE | ACCESS_EXEC;

/// What a grant says about an action needing `need` (ACCESS_* bits) on a path whose rules
/// gave `bits` (all matching rules OR-ed, each shifted by its action). Shared by the kernel
/// programs and the daemon's reference evaluator, so both apply the same precedence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Every access needed is allowed.
    Allow,
    /// Allowed, and reported.
    Flag,
    /// Held for a human.
    Ask,
    /// A `deny` rule matched.
    Deny,
    /// No rule gives every access needed (default deny).
    OutOfScope,
}

/// The decision on an action needing `need` where matching rules gave `bits` (see `Decision`).
#[expect(
    clippy::inline_always,
    reason = "called from eBPF programs: an outlined call would cost verifier budget and a BPF-to-BPF call"
)]
#[inline(always)]
pub fn decide(bits: u32, need: u32) -> Decision {
    if (bits >> DENY_SHIFT) & need != 0 {
        return Decision::Deny;
    }
    let covered = (bits | (bits >> ASK_SHIFT) | (bits >> FLAG_SHIFT) | (bits >> APPROVED_SHIFT)) & ACCESS_MASK;
    if covered & need != need {
        Decision::OutOfScope
    } else if (bits >> ASK_SHIFT) & !(bits >> APPROVED_SHIFT) & need != 0 {
        Decision::Ask
    } else if (bits >> FLAG_SHIFT) & need != 0 {
        Decision::Flag
    } else {
        Decision::Allow
    }
}

/// Bytes of a path the kernel reads and matches. A longer path is not matched in the kernel:
/// it is reported with `PATH_TRUNCATED` and the daemon decides with the full path.
pub const PATH_MAX_MATCH: usize = 256;

/// FNV-1a 64-bit, the hash both sides use for path keys.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// One byte of FNV-1a.
#[expect(
    clippy::inline_always,
    reason = "the per-byte step of the kernel's path walk: a call per byte would exhaust the verifier's budget"
)]
#[inline(always)]
pub fn fnv1a_step(hash: u64, byte: u8) -> u64 {
    (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
}

/// FNV-1a of `bytes` with the standard offset (no seed).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_seeded(0, bytes)
}

/// FNV-1a from a secret starting point (`FNV_OFFSET` ^ `seed`): the guard's path keys. With
/// the seed unknown, an agent cannot compute offline a name whose hash equals a granted
/// path's (the plain hash falls to a 2^32 meet-in-the-middle search). The kernel starts its
/// walk from the same point (`path_match.rs`, `config::path_seed`).
pub fn fnv1a_seeded(seed: u64, bytes: &[u8]) -> u64 {
    let mut hash = FNV_OFFSET ^ seed;
    for &b in bytes {
        hash = fnv1a_step(hash, b);
    }
    hash
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// Key of `PATH_RULES`: a grant and the hash of a path or directory prefix.
pub struct PathKey {
    /// The grant (`TaskEntry::grant_id`).
    pub grant_id: u32,
    /// Explicit padding, zero.
    pub pad: u32,
    /// Seeded FNV-1a of the path, or of a prefix ending in `/`.
    pub hash: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
/// Value of `PATH_RULES`: access bits, each shifted by its action (see the module doc).
pub struct PathRule {
    /// Bits for this path itself.
    pub exact: u32,
    /// Bits for the prefix's direct entries (`/a/b/*`).
    pub children: u32,
    /// Bits for everything below the prefix (`/a/b/**`).
    pub subtree: u32,
    /// Non-zero on a directory's entry (key ending in '/') when a rule below it denies, asks
    /// or flags: renaming the directory would carry what that rule names out from under it.
    pub below: u32,
}

/// The bits of rules that restrict (deny, ask, flag) rather than allow.
pub const RESTRICTED_BITS: u32 = (ACCESS_MASK << DENY_SHIFT) | (ACCESS_MASK << ASK_SHIFT) | (ACCESS_MASK << FLAG_SHIFT);

const _: () = assert!(core::mem::size_of::<PathKey>() == 16);
const _: () = assert!(core::mem::size_of::<PathRule>() == 16);
