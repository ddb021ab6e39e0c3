//! First use of an allowed access: reported once per task, object and access, so the daemon
//! knows which of a grant's rules were used and what was touched, at the cost of one LRU
//! lookup for every later use (`USAGE_SEEN`).
//!
//! Fail-open/closed: bookkeeping only, never affects a decision. An entry evicted from the LRU
//! means a second report of the same use (harmless); a record lost to a full ring buffer is
//! counted like any other.

use agent_guard_common::task::UsageKey;

pub use agent_guard_common::net::destination_hash;

use crate::maps::USAGE_SEEN;

/// Whether this is the first use of `access` on the object hashed `hash` by `task_id`
/// (and remembers it).
#[inline(always)]
pub fn first_use(task_id: u32, access: u32, hash: u64) -> bool {
    let key = UsageKey { task_id, access, hash };
    if USAGE_SEEN.get_ptr(&key).is_some() {
        return false;
    }
    let _ = USAGE_SEEN.insert(&key, &1, 0);
    true
}

/// Forgets a first use whose report was lost (a full ring buffer): the next use reports it.
#[inline(always)]
pub fn forget(task_id: u32, access: u32, hash: u64) {
    let _ = USAGE_SEEN.remove(&UsageKey { task_id, access, hash });
}
