//! `NET_LEARNED`: the addresses a task's DNS answers gave for its grant's name rules, which the
//! connect programs allow until each rule's TTL runs out (`net_decision` in the eBPF crate
//! compares the expiry itself, so an entry the daemon has not swept yet allows nothing).

use agent_guard_common::net::{LearnedKey, LearnedPorts, LearnedRule, MAX_LEARNED_RULES};

use super::{Kernel, KernelError};
use crate::daemon::clock::boot_ns_now;

impl Kernel {
    /// Allows `rules` (name rules of grant `grant_id`, each with its expiry) at `addr`. A rule
    /// already there keeps the later of its two expiries (a shorter answer for another name must
    /// not cut short what an earlier one allowed); expired ones make room; when the entry is
    /// full the rule that ends first gives way.
    pub fn learn(&mut self, grant_id: u32, addr: [u8; 16], rules: &[LearnedRule]) -> Result<(), KernelError> {
        let key = LearnedKey { grant_id, addr };
        let now = boot_ns_now();
        let old: Vec<LearnedRule> = match self.net_learned.get(&key, 0) {
            Ok(old) => old.rules[..(old.count as usize).min(MAX_LEARNED_RULES)]
                .iter()
                .filter(|r| r.expires_ns > now)
                .copied()
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut kept: Vec<LearnedRule> =
            old.iter().filter(|r| !rules.iter().any(|n| n.rule_index == r.rule_index)).copied().collect();
        for rule in rules {
            let earlier = old.iter().find(|r| r.rule_index == rule.rule_index).map_or(0, |r| r.expires_ns);
            kept.push(LearnedRule { expires_ns: rule.expires_ns.max(earlier), ..*rule });
        }
        kept.sort_by_key(|r| std::cmp::Reverse(r.expires_ns));
        kept.truncate(MAX_LEARNED_RULES);
        let mut value =
            LearnedPorts { count: kept.len() as u32, pad: 0, rules: [LearnedRule::default(); MAX_LEARNED_RULES] };
        value.rules[..kept.len()].copy_from_slice(&kept);
        self.net_learned.insert(&key, &value, 0).map_err(|source| KernelError::Map { name: "NET_LEARNED", source })
    }

    /// Forgets every address learned for grant `grant_id` (its task ended).
    pub fn forget_learned(&mut self, grant_id: u32) {
        let keys: Vec<LearnedKey> =
            self.net_learned.keys().filter_map(Result::ok).filter(|k| k.grant_id == grant_id).collect();
        for key in keys {
            let _ = self.net_learned.remove(&key);
        }
    }

    /// Forgets address `addr` learned for grant `grant_id` (its rules expired).
    pub fn forget_learned_at(&mut self, grant_id: u32, addr: [u8; 16]) {
        let _ = self.net_learned.remove(&LearnedKey { grant_id, addr });
    }

    /// Removes the entries whose every rule has expired; how many.
    pub fn sweep_learned(&mut self) -> usize {
        let now = boot_ns_now();
        let stale: Vec<LearnedKey> = self
            .net_learned
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| v.rules[..(v.count as usize).min(MAX_LEARNED_RULES)].iter().all(|r| r.expires_ns <= now))
            .map(|(k, _)| k)
            .collect();
        for key in &stale {
            let _ = self.net_learned.remove(key);
        }
        stale.len()
    }
}
