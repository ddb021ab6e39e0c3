//! The reference evaluator: what a grant decides, computed in userspace from the parsed rules.
//! The kernel decides from compiled map entries; tests check that both agree. The daemon uses
//! this evaluator for paths the kernel could not decide at its hook (relative, `..`, too long)
//! and to name the rule behind a kernel decision.

use agent_guard_common::path::{ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE, Decision, decide};

use super::{FileRule, Grant, GrantSpec, NetRule, RuleAction, compile::action_shift};

impl GrantSpec {
    /// The access lists with the bit each grants and its name in grant files.
    fn path_lists(&self) -> [(&[FileRule], u32, &'static str); 3] {
        [
            (&self.files.read, ACCESS_READ, "files.read"),
            (&self.files.write, ACCESS_WRITE, "files.write"),
            (&self.exec, ACCESS_EXEC, "exec"),
        ]
    }

    /// The bits every rule matching `path` contributes, each shifted by its action (the
    /// kernel's representation, see `agent_guard_common::path`).
    pub fn path_access(&self, path: &str) -> u32 {
        let mut bits = 0;
        for (rules, bit, _) in self.path_lists() {
            for rule in rules.iter().filter(|r| r.target.matches(path)) {
                bits |= bit << action_shift(rule.action);
            }
        }
        bits
    }

    /// The grant's decision on an action needing `need` at `path`, and the rule that made it
    /// ("files.read /srv/secret/** (deny)"); None for a default deny.
    pub fn path_decision(&self, path: &str, need: u32) -> (Decision, Option<String>) {
        let decision = decide(self.path_access(path), need);
        let action = match decision {
            Decision::Allow => RuleAction::Allow,
            Decision::Flag => RuleAction::Flag,
            Decision::Ask => RuleAction::Ask,
            Decision::Deny => RuleAction::Deny,
            Decision::OutOfScope => return (decision, None),
        };
        let rule = self.path_lists().into_iter().filter(|(_, bit, _)| need & bit != 0).find_map(|(rules, _, list)| {
            let rule = rules.iter().find(|r| r.action == action && r.target.matches(path))?;
            Some(format!("{list} {} ({})", rule.target, action.name()))
        });
        (decision, rule)
    }
}

impl Grant {
    fn path_lists(&self) -> [(&[FileRule], u32, &'static str); 3] {
        self.spec.path_lists()
    }

    /// `GrantSpec::path_decision` of the grant's rules.
    pub fn path_decision(&self, path: &str, need: u32) -> (Decision, Option<String>) {
        self.spec.path_decision(path, need)
    }

    /// The rule deciding a connect/send to `dest` (IPv6 or IPv4-mapped): the most restrictive
    /// matching one, the first of equals, as the kernel picks it; None when no rule matches.
    pub fn connect_rule(&self, dest: &[u8; 16], port: u16, protocol: u8) -> Option<(usize, &NetRule)> {
        let matching =
            self.spec.network.connect.iter().enumerate().filter(|(_, r)| r.target.matches(dest, port, protocol));
        // max_by_key keeps the last of equals: reverse so the first wins.
        matching.rev().max_by_key(|(_, r)| r.action)
    }

    /// Every allow rule, named as in events: what a usage summary accounts for.
    pub fn allow_rule_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for (rules, _, list) in self.path_lists() {
            for rule in rules.iter().filter(|r| r.action == RuleAction::Allow) {
                names.push(format!("{list} {} ({})", rule.target, rule.action.name()));
            }
        }
        for (index, rule) in self.spec.network.connect.iter().enumerate() {
            if rule.action == RuleAction::Allow {
                names.push(format!("network.connect[{index}] {} ({})", rule.target, rule.action.name()));
            }
        }
        names
    }

    /// The allow rules that grant `need` at `path` (all of them: each was used).
    pub fn allowing_rules(&self, path: &str, need: u32) -> Vec<String> {
        self.path_lists()
            .into_iter()
            .filter(|(_, bit, _)| need & bit != 0)
            .flat_map(|(rules, _, list)| {
                rules
                    .iter()
                    .filter(|r| r.action == RuleAction::Allow && r.target.matches(path))
                    .map(move |r| format!("{list} {} ({})", r.target, r.action.name()))
            })
            .collect()
    }

    /// "network.connect[3] 10.0.0.0/8:443 (deny)", for events.
    pub fn net_rule_name(&self, index: usize) -> Option<String> {
        let rule = self.spec.network.connect.get(index)?;
        Some(format!("network.connect[{index}] {} ({})", rule.target, rule.action.name()))
    }
}

/// Lexically normalises `path`, resolved against `base` when relative: removes empty and `.`
/// components and applies `..` (never above `/`). Symlinks are not resolved.
pub fn normalize_path(base: &str, path: &str) -> String {
    let joined = if path.starts_with('/') { path.to_string() } else { format!("{base}/{path}") };
    let mut parts: Vec<&str> = Vec::new();
    for component in joined.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}
