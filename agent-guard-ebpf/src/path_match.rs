//! Path decisions shared by every hook that sees a path (file opens and execs now; the BPF LSM
//! hooks of the next stage feed resolved paths through the same function).
//! Representation: see `agent_guard_common::path`.

use agent_guard_common::{
    event::{PATH_RELATIVE, PATH_TRUNCATED, PATH_UNNORMALIZED},
    path::{FNV_OFFSET, PATH_MAX_MATCH, PathKey, PathRule, fnv1a_step},
};

use crate::maps::PATH_RULES;

pub struct PathMatch {
    /// ACCESS_* bits the grant gives this path.
    pub allowed: u32,
    /// PATH_* flags: when non-zero the kernel did not decide and `allowed` is 0.
    pub flags: u32,
}

#[inline(always)]
fn rule(grant_id: u32, hash: u64) -> Option<PathRule> {
    // SAFETY: the value is copied out at once.
    unsafe { PATH_RULES.get(&PathKey { grant_id, _pad: 0, hash }) }.copied()
}

/// Matches the first `len` bytes of `path` against the grant.
///
/// Only absolute, normalised paths are decided here: a path with `.`/`..` components, `//`
/// or a trailing '/' could otherwise slip past a prefix rule (`/srv/a/../../etc/shadow`), and
/// a relative one needs the cwd. Those are returned undecided, flagged, for the daemon.
#[inline(always)]
pub fn match_path(grant_id: u32, path: &[u8; PATH_MAX_MATCH], len: usize) -> PathMatch {
    if len == 0 || path[0] != b'/' {
        return PathMatch { allowed: 0, flags: PATH_RELATIVE };
    }
    if len >= PATH_MAX_MATCH - 1 {
        return PathMatch { allowed: 0, flags: PATH_TRUNCATED };
    }
    let mut hash = FNV_OFFSET;
    let mut allowed = 0u32;
    let mut children = 0u32;
    let mut seg_len = 0u32;
    let mut seg_dots = 0u32;
    let mut unnormalized = false;
    for i in 0..PATH_MAX_MATCH {
        if i >= len {
            break;
        }
        let c = path[i];
        hash = fnv1a_step(hash, c);
        if c == b'/' {
            if i > 0 && (seg_len == 0 || (seg_len == seg_dots && seg_dots <= 2)) {
                unnormalized = true;
            }
            seg_len = 0;
            seg_dots = 0;
            match rule(grant_id, hash) {
                Some(r) => {
                    allowed |= r.subtree;
                    children = r.children;
                }
                None => children = 0,
            }
        } else {
            seg_len += 1;
            if c == b'.' {
                seg_dots += 1;
            }
        }
    }
    if len == 1 {
        // "/" itself: only a subtree rule on "/" covers it, looked up in the loop.
        return PathMatch { allowed, flags: 0 };
    }
    if seg_len == 0 || (seg_len == seg_dots && seg_dots <= 2) {
        unnormalized = true;
    }
    if unnormalized {
        return PathMatch { allowed: 0, flags: PATH_UNNORMALIZED };
    }
    allowed |= children;
    if let Some(r) = rule(grant_id, hash) {
        allowed |= r.exact;
    }
    // `/a/b/**` covers the directory `/a/b` itself.
    if let Some(r) = rule(grant_id, fnv1a_step(hash, b'/')) {
        allowed |= r.subtree;
    }
    PathMatch { allowed, flags: 0 }
}
