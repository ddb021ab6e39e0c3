//! Path decisions shared by every hook that sees a path (file opens and execs now; the BPF LSM
//! hooks of the next stage feed resolved paths through the same function).
//! Representation: see `agent_guard_common::path`.
//!
//! The walk over the path's bytes runs under `bpf_loop` (Linux 5.17+): its callback is verified
//! once, where an open-coded 256-step loop with a map lookup per '/' made the verifier explore
//! every iteration separately and exceed its 1M-instruction budget.

use core::ffi::c_void;

use agent_guard_common::{
    event::{PATH_RELATIVE, PATH_TRUNCATED, PATH_UNNORMALIZED},
    path::{FNV_OFFSET, PATH_MAX_MATCH, PathKey, PathRule, fnv1a_step},
};
use aya_ebpf::helpers::generated::bpf_loop;

use crate::{
    config,
    maps::{PATH_RULES, PATH_WALK},
};

pub struct PathMatch {
    /// ACCESS_* bits the grant gives this path.
    pub allowed: u32,
    /// PATH_* flags: when non-zero the kernel did not decide and `allowed` is 0.
    pub flags: u32,
    /// FNV-1a of the whole path (identifies a held action, see lsm.rs).
    pub hash: u64,
    /// Non-zero when a rule below this path (as a directory) restricts (`PathRule::below`).
    pub below: u32,
}

#[inline(always)]
fn rule(grant_id: u32, hash: u64) -> Option<PathRule> {
    // SAFETY: the value is copied out at once.
    unsafe { PATH_RULES.get(&PathKey { grant_id, pad: 0, hash }) }.copied()
}

/// What the walk has found so far, per CPU (`PATH_WALK`), and what it needs to know.
///
/// In map memory, not on the caller's stack, on purpose. The verifier of kernels before 6.7
/// checks a `bpf_loop` callback once, as if it ran a single time ("bpf: verify callbacks as if
/// they are called unknown number of times", 6.7), and then hard-wires the branches it never
/// took (`opt_hard_wire_dead_code_branches`). With `prev` on the stack, known to be 0 in that one
/// run, 6.1 compiled the '/' + '.' test away: `/granted/../etc/shadow` matched `/granted/**`.
/// Fields in map memory are unknown to every verifier, so every branch is kept.
#[repr(C)]
pub struct WalkState {
    hash: u64,
    grant_id: u32,
    allowed: u32,
    children: u32,
    prev: u32,
    unnormalized: u32,
    pad: u32,
}

/// The callback's context, on the caller's stack (`bpf_loop` requires it there): where the
/// path and the state are.
#[repr(C)]
struct Walk {
    path: *const [u8; PATH_MAX_MATCH],
    state: *mut WalkState,
}

/// One byte of the walk; returns 1 to stop at the terminating NUL.
#[inline(never)]
extern "C" fn walk_byte(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `Walk` match_path passed to bpf_loop, alive for the whole loop, and
    // its state this CPU's `PATH_WALK` entry; the index is masked into the array
    // (PATH_MAX_MATCH is a power of two).
    let walk = unsafe { &*ctx.cast::<Walk>() };
    let state = unsafe { &mut *walk.state };
    let c = unsafe { (*walk.path)[(index as usize) & (PATH_MAX_MATCH - 1)] };
    if c == 0 {
        return 1;
    }
    // "//", "/." and "/.." (and, conservatively, hidden names "/.x") go to the daemon.
    if state.prev == u32::from(b'/') && (c == b'/' || c == b'.') {
        state.unnormalized = 1;
    }
    state.hash = fnv1a_step(state.hash, c);
    if c == b'/' {
        match rule(state.grant_id, state.hash) {
            Some(r) => {
                state.allowed |= r.subtree;
                state.children = r.children;
            }
            None => state.children = 0,
        }
    }
    state.prev = u32::from(c);
    0
}

/// Matches `path` (NUL-terminated at `len`, as the str-read helpers leave it) against the grant.
///
/// Only absolute, normalised paths are decided here: a path with `.`/`..` components, `//`
/// or a trailing '/' could otherwise slip past a prefix rule (`/srv/a/../../etc/shadow`), and
/// a relative one needs the cwd. Those (and, to keep the check cheap, any component starting
/// with '.') are returned undecided, flagged, for the daemon to resolve.
/// `resolved` paths come from the kernel (`d_path)`: absolute and normalised by construction,
/// so names starting with '.' are matched instead of being handed to the daemon.
#[inline(always)]
pub fn match_path(grant_id: u32, path: &[u8; PATH_MAX_MATCH], len: usize, resolved: bool) -> PathMatch {
    if len == 0 || path[0] != b'/' {
        return PathMatch { allowed: 0, flags: PATH_RELATIVE, hash: 0, below: 0 };
    }
    if len >= PATH_MAX_MATCH - 1 {
        return PathMatch { allowed: 0, flags: PATH_TRUNCATED, hash: 0, below: 0 };
    }
    let Some(state) = PATH_WALK.get_ptr_mut(0) else {
        return PathMatch { allowed: 0, flags: PATH_TRUNCATED, hash: 0, below: 0 };
    };
    // SAFETY: this CPU's entry, used by this program only until it returns.
    let state = unsafe { &mut *state };
    *state = WalkState {
        hash: FNV_OFFSET ^ config::path_seed(),
        grant_id,
        allowed: 0,
        children: 0,
        prev: 0,
        unnormalized: 0,
        pad: 0,
    };
    let mut walk = Walk { path: core::ptr::from_ref(path), state: core::ptr::from_mut(state) };
    // SAFETY: callback and context as bpf_loop documents them; the walk outlives the call.
    let steps = unsafe { bpf_loop(PATH_MAX_MATCH as u32, walk_byte as *mut c_void, (&raw mut walk).cast(), 0) };
    if steps < 0 {
        // The helper failed: decide nothing in the kernel.
        return PathMatch { allowed: 0, flags: PATH_TRUNCATED, hash: 0, below: 0 };
    }
    // SAFETY: as above; the callback is done with it.
    let walk = unsafe { &*walk.state };
    if len == 1 {
        // "/" itself: only a subtree rule on "/" covers it, looked up in the walk.
        return PathMatch { allowed: walk.allowed, flags: 0, hash: walk.hash, below: 1 };
    }
    if !resolved && (walk.unnormalized != 0 || walk.prev == u32::from(b'/')) {
        return PathMatch { allowed: 0, flags: PATH_UNNORMALIZED, hash: 0, below: 0 };
    }
    let mut allowed = walk.allowed | walk.children;
    if let Some(r) = rule(grant_id, walk.hash) {
        allowed |= r.exact;
    }
    // `/a/b/**` covers the directory `/a/b` itself.
    let mut below = 0;
    if let Some(r) = rule(grant_id, fnv1a_step(walk.hash, b'/')) {
        allowed |= r.subtree;
        below = r.below;
    }
    PathMatch { allowed, flags: 0, hash: walk.hash, below }
}
