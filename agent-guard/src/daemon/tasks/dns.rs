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
        let Some(task) = self.tasks.get_mut(&task_id) else {
            return Ok(());
        };
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
        let now = boot_ns_now();
        let fresh = |learned: &std::collections::HashMap<[u8; 16], Learned>| {
            addrs.iter().filter(|a| !learned.contains_key(*a)).count()
        };
        if task.learned.len() + fresh(&task.learned) > max as usize {
            // Expired addresses make room (the kernel allows nothing at them already).
            let expired: Vec<[u8; 16]> =
                task.learned.iter().filter(|(_, l)| l.expires_ns <= now).map(|(a, _)| *a).collect();
            for addr in &expired {
                task.learned.remove(addr);
                self.kernel.forget_learned_at(task_id, *addr);
            }
        }
        if task.learned.len() + fresh(&task.learned) > max as usize {
            return Err(format!(
                "task {task_id} has {} addresses learned, and the answer for {name} would take it past dns.maxAddresses ({max})",
                task.learned.len()
            ));
        }
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
