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
pub const ACCESS_WRITE: u32 = 2;
pub const ACCESS_EXEC: u32 = 4;
/// A rule with `action: ask` stores its access bits shifted by ASK_SHIFT: the kernel holds the
/// action and asks the daemon (a human) instead of refusing it.
pub const ASK_SHIFT: u32 = 4;

/// Bytes of a path the kernel reads and matches. A longer path is not matched in the kernel:
/// it is reported with `PATH_TRUNCATED` and the daemon decides with the full path.
pub const PATH_MAX_MATCH: usize = 256;

/// FNV-1a 64-bit, the hash both sides use for path keys.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

#[inline(always)]
pub fn fnv1a_step(hash: u64, byte: u8) -> u64 {
    (hash ^ byte as u64).wrapping_mul(FNV_PRIME)
}

pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = FNV_OFFSET;
    for &b in bytes {
        hash = fnv1a_step(hash, b);
    }
    hash
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathKey {
    pub grant_id: u32,
    pub _pad: u32,
    pub hash: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathRule {
    pub exact: u32,
    pub children: u32,
    pub subtree: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<PathKey>() == 16);
const _: () = assert!(core::mem::size_of::<PathRule>() == 16);
