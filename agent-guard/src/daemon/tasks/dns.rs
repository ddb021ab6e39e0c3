//! The registry's side of the tasks' resolvers (daemon/dns): what a task's grant says of a
//! question, and the addresses its answers give.

use std::{net::IpAddr, time::Duration};

use agent_guard_common::net::LearnedRule;

use super::registry::Registry;
use crate::daemon::{
    clock::boot_ns_now,
    dns::{DnsAsked, Learned, TaskDns, judge_name},
};
use crate::grant::{Mode, mapped, net_action};

impl TaskDns for Registry {
    fn dns_question(&self, task_id: u32, name: &str) -> Option<DnsAsked> {
        let task = self.tasks.get(&task_id)?;
        let judgement = judge_name(&task.grant.spec, name);
        let ended = if task.info.revoked {
            Some(("task.stopped", "the task was stopped"))
        } else if task.info.ended.is_some() {
            Some(("grant.ttl", "the task ended"))
        } else if boot_ns_now() >= task.expires_ns {
            Some(("grant.ttl", "the grant expired"))
        } else {
            None
        };
        Some(DnsAsked {
            rule_name: judgement.rule.and_then(|i| task.grant.net_rule_name(i)),
            judgement,
            audit: task.grant.spec.mode == Mode::Audit,
            ended,
            grant: task.info.grant.clone(),
            task: task.task_ref(),
            host: self.host.clone(),
            sink: self.sink.clone(),
        })
    }

    fn dns_learn(
        &mut self,
        task_id: u32,
        name: &str,
        addrs: &[IpAddr],
        rules: &[usize],
        ttl: Duration,
        max: u32,
    ) -> Result<(), String> {
        let Some(task) = self.tasks.get(&task_id) else {
            return Err(format!("task {task_id} is gone"));
        };
        // An answer that comes back after the task ended allows nothing: its learned addresses
        // were dropped at the close and nothing would drop these.
        if task.info.revoked || task.info.ended.is_some() {
            return Err(format!("task {task_id} ended while its question was out"));
        }
        let expires_ns = boot_ns_now().saturating_add(u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX));
        let learned: Vec<LearnedRule> = rules
            .iter()
            .filter_map(|&index| {
                let rule = task.grant.spec.network.connect.get(index)?;
                Some(LearnedRule {
                    expires_ns,
                    port_lo: rule.target.port_lo,
                    port_hi: rule.target.port_hi,
                    protocols: rule.target.protocols.0,
                    action: net_action(rule.action),
                    rule_index: u16::try_from(index).unwrap_or(u16::MAX),
                })
            })
            .collect();
        let addrs: Vec<[u8; 16]> = addrs.iter().map(|a| mapped(*a)).collect();
        let fresh = addrs.iter().filter(|a| !task.learned.contains_key(*a)).count();
        // The quota is the task tree's: a task and its sub-tasks share `max`, so an agent cannot
        // multiply it by opening sub-tasks.
        let family = self.family_of(task_id);
        if self.learned_by(&family) + fresh > max as usize {
            self.forget_expired(&family);
        }
        let held = self.learned_by(&family);
        if held + fresh > max as usize {
            return Err(format!(
                "task {task_id} and its task tree hold {held} learned addresses, and the answer for {name} would take them past dns.maxAddresses ({max})"
            ));
        }
        let Some(task) = self.tasks.get_mut(&task_id) else { return Err(format!("task {task_id} is gone")) };
        for addr in addrs {
            // The task's id is its grant's (open.rs).
            self.kernel.learn(task_id, addr, &learned).map_err(|err| err.to_string())?;
            let entry = task.learned.entry(addr).or_insert(Learned { name: String::new(), expires_ns: 0 });
            entry.name = name.to_string();
            entry.expires_ns = entry.expires_ns.max(expires_ns);
        }
        Ok(())
    }
}

impl Registry {
    /// The open tasks of `task_id`'s tree that hold learned addresses (the root and every task
    /// under it; the others count for nothing).
    fn family_of(&self, task_id: u32) -> Vec<u32> {
        let root_of = |mut id: u32| {
            // Bounded: sub-tasks nest at most MAX_SUB_TASKS deep, and a parent id is older.
            for _ in 0..=self.tasks.len() {
                match self.tasks.get(&id).and_then(|t| t.info.parent) {
                    Some(parent) if self.tasks.contains_key(&parent) => id = parent,
                    _ => break,
                }
            }
            id
        };
        let root = root_of(task_id);
        self.tasks
            .values()
            .filter(|t| !t.learned.is_empty() && t.info.ended.is_none() && root_of(t.info.id) == root)
            .map(|t| t.info.id)
            .collect()
    }

    /// Addresses the tasks `family` have learned.
    fn learned_by(&self, family: &[u32]) -> usize {
        family.iter().filter_map(|id| self.tasks.get(id)).map(|t| t.learned.len()).sum()
    }

    /// Drops the expired learned addresses of `family`, here and in the kernel (which allows
    /// nothing at them already).
    fn forget_expired(&mut self, family: &[u32]) {
        let now = boot_ns_now();
        for id in family {
            let Some(task) = self.tasks.get_mut(id) else { continue };
            let expired: Vec<[u8; 16]> =
                task.learned.iter().filter(|(_, l)| l.expires_ns <= now).map(|(a, _)| *a).collect();
            for addr in expired {
                task.learned.remove(&addr);
                self.kernel.forget_learned_at(*id, addr);
            }
        }
    }

    /// Starts task `task_id`'s resolver when DNS is on; its `TaskEntry::dns_port` (0: off).
    pub(super) fn start_dns(&mut self, task_id: u32) -> Result<u32, crate::daemon::dns::DnsError> {
        match &mut self.dns {
            Some(resolvers) => resolvers.start(task_id),
            None => Ok(0),
        }
    }

    /// Stops task `task_id`'s resolver.
    pub(super) fn stop_dns(&mut self, task_id: u32) {
        if let Some(resolvers) = &mut self.dns {
            resolvers.stop(task_id);
        }
    }
}
