//! Grant -> kernel map entries (see agent_guard_common::{path, net} for the representation).

use std::collections::BTreeMap;

use agent_guard_common::{
    net::{MAX_PORT_RULES, NetPorts, PortRule},
    path::{ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE, ASK_SHIFT, PathRule, fnv1a},
};

use super::{FileRule, Grant, PathPattern, RuleAction, net_rule::prefix_contains};

/// A grant's map entries, without the grant id (added when they are written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledGrant {
    /// (FNV-1a of the key path, rule).
    pub paths: Vec<(u64, PathRule)>,
    /// (prefix length in the 128-bit address space, address, port rules).
    pub nets: Vec<(u8, [u8; 16], NetPorts)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompileError {
    #[error(
        "destination {prefix} is covered by {count} port rules (its own and those of wider prefixes); \
         at most {MAX_PORT_RULES} fit in one kernel entry: merge port ranges"
    )]
    TooManyPortRules { prefix: String, count: usize },
}

impl CompiledGrant {
    pub fn compile(grant: &Grant) -> Result<Self, CompileError> {
        let mut paths: BTreeMap<u64, PathRule> = BTreeMap::new();
        let spec = &grant.spec;
        let lists = [(&spec.files.read, ACCESS_READ), (&spec.files.write, ACCESS_WRITE), (&spec.exec, ACCESS_EXEC)];
        for (patterns, access) in lists {
            for FileRule { pattern, action } in patterns {
                let access = match action {
                    RuleAction::Allow => access,
                    RuleAction::Ask => access << ASK_SHIFT,
                };
                let rule = paths.entry(fnv1a(pattern.key_path().as_bytes())).or_default();
                match pattern {
                    PathPattern::Exact(_) => rule.exact |= access,
                    PathPattern::Children(_) => rule.children |= access,
                    PathPattern::Subtree(_) => rule.subtree |= access,
                }
            }
        }

        // One trie entry per distinct prefix, holding its own port rules and those of every
        // wider prefix that contains it: the longest-prefix match is then the whole answer.
        let rules = &spec.network.connect;
        let mut prefixes: BTreeMap<(u8, [u8; 16]), ()> = BTreeMap::new();
        for rule in rules {
            prefixes.insert(rule.mapped_prefix(), ());
        }
        let mut nets = Vec::new();
        for &(len, addr) in prefixes.keys() {
            let covering: Vec<(usize, PortRule)> = rules
                .iter()
                .enumerate()
                .filter(|(_, r)| {
                    let (rlen, raddr) = r.mapped_prefix();
                    rlen <= len && prefix_contains(&raddr, rlen, &addr)
                })
                .map(|(i, r)| {
                    let rule_index = u16::try_from(i).unwrap_or(u16::MAX);
                    (
                        i,
                        PortRule {
                            port_lo: r.port_lo,
                            port_hi: r.port_hi,
                            protocols: r.protocols.0,
                            _pad: 0,
                            rule_index,
                        },
                    )
                })
                .collect();
            if covering.len() > MAX_PORT_RULES {
                let prefix = rules
                    .iter()
                    .find(|r| r.mapped_prefix() == (len, addr))
                    .map(|r| r.net.to_string())
                    .unwrap_or_default();
                return Err(CompileError::TooManyPortRules { prefix, count: covering.len() });
            }
            let mut ports =
                NetPorts { count: covering.len() as u32, _pad: 0, rules: [PortRule::default(); MAX_PORT_RULES] };
            for (slot, (_, rule)) in covering.into_iter().enumerate() {
                ports.rules[slot] = rule;
            }
            nets.push((len, addr, ports));
        }
        Ok(CompiledGrant { paths: paths.into_iter().collect(), nets })
    }
}
