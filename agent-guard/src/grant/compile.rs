//! Grant -> kernel map entries (see `agent_guard_common::{path`, net} for the representation).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use agent_guard_common::{
    net::{MAX_PORT_RULES, NET_ALLOW, NET_ASK, NET_DENY, NET_FLAG, NetPorts, PortRule},
    path::{ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE, ASK_SHIFT, DENY_SHIFT, FLAG_SHIFT, PathRule, fnv1a_seeded},
};

use super::{Grant, PathPattern, RuleAction};

/// A grant's map entries, without the grant id (added when they are written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledGrant {
    /// (FNV-1a of the key path, rule).
    pub paths: Vec<(u64, PathRule)>,
    /// (prefix length in the 128-bit address space, address, port rules).
    pub nets: Vec<(u8, [u8; 16], NetPorts)>,
    /// `network.listen`, kept in `NET_RULES` under the grant id with `LISTEN_GRANT_BIT`.
    pub listen: Option<NetPorts>,
}

/// A grant that cannot be put in the kernel maps.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompileError {
    #[error(
        "destination {prefix} is covered by {count} port rules (its own and those of wider prefixes); \
         at most {MAX_PORT_RULES} fit in one kernel entry: merge port ranges"
    )]
    TooManyPortRules { prefix: String, count: usize },
}

/// Where a path rule's access bits go in the kernel's word for its action.
pub fn action_shift(action: RuleAction) -> u32 {
    match action {
        RuleAction::Allow => 0,
        RuleAction::Ask => ASK_SHIFT,
        RuleAction::Flag => FLAG_SHIFT,
        RuleAction::Deny => DENY_SHIFT,
    }
}

pub fn net_action(action: RuleAction) -> u8 {
    match action {
        RuleAction::Allow => NET_ALLOW,
        // Held by BPF LSM's socket_connect; refused where nothing can hold it.
        RuleAction::Ask => NET_ASK,
        RuleAction::Flag => NET_FLAG,
        RuleAction::Deny => NET_DENY,
    }
}

fn mask(addr: &[u8; 16], len: u8) -> [u8; 16] {
    let m = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
    (u128::from_be_bytes(*addr) & m).to_be_bytes()
}

/// The directory keys ("/", "/a/", "/a/b/") above a rule's key path ("/a/b/c" or "/a/b/c/").
fn ancestor_dirs(key: &str) -> impl Iterator<Item = &str> {
    let own = key.strip_suffix('/').unwrap_or(key);
    own.match_indices('/').map(move |(i, _)| &own[..=i])
}

impl CompiledGrant {
    /// The rules with the plain hash (checks and tools; the daemon uses its own seed).
    pub fn compile(grant: &Grant) -> Result<Self, CompileError> {
        Self::compile_seeded(grant, 0)
    }

    /// The rules keyed by `fnv1a_seeded(seed, ...)`, as the kernel the seed was given to
    /// looks them up.
    pub fn compile_seeded(grant: &Grant, seed: u64) -> Result<Self, CompileError> {
        let fnv1a = |bytes: &[u8]| fnv1a_seeded(seed, bytes);
        let mut paths: BTreeMap<u64, PathRule> = BTreeMap::new();
        let spec = &grant.spec;
        let lists = [(&spec.files.read, ACCESS_READ), (&spec.files.write, ACCESS_WRITE), (&spec.exec, ACCESS_EXEC)];
        for (rules, access) in lists {
            for rule in rules {
                let bits = access << action_shift(rule.action);
                let entry = paths.entry(fnv1a(rule.target.key_path().as_bytes())).or_default();
                match &rule.target {
                    PathPattern::Exact(_) => entry.exact |= bits,
                    PathPattern::Children(_) => entry.children |= bits,
                    PathPattern::Subtree(_) => entry.subtree |= bits,
                }
                if rule.action != RuleAction::Allow {
                    // Every directory above a restricting rule is marked, so that renaming
                    // one (lsm_tree.rs path_rename) cannot move the named paths away.
                    let key = rule.target.key_path();
                    for dir in ancestor_dirs(&key) {
                        paths.entry(fnv1a(dir.as_bytes())).or_default().below = 1;
                    }
                }
            }
        }

        // One trie entry per distinct prefix, holding its own port rules and those of every
        // wider prefix that contains it: the longest-prefix match is then the whole answer.
        // Rules are grouped by prefix, and a prefix finds its covering ones by masking itself
        // to each prefix length in use: O(prefixes x lengths), not O(prefixes x rules).
        let rules = &spec.network.connect;
        let mut by_prefix: HashMap<(u8, [u8; 16]), Vec<usize>> = HashMap::new();
        for (index, rule) in rules.iter().enumerate() {
            // Name rules have no prefix: their addresses are learned per task (daemon/dns).
            if let Some(prefix) = rule.target.mapped_prefix() {
                by_prefix.entry(prefix).or_default().push(index);
            }
        }
        let lengths: BTreeSet<u8> = by_prefix.keys().map(|(len, _)| *len).collect();
        let prefixes: BTreeSet<(u8, [u8; 16])> = by_prefix.keys().copied().collect();
        let mut nets = Vec::with_capacity(prefixes.len());
        for &(len, addr) in &prefixes {
            let mut covering: Vec<usize> =
                lengths.range(..=len).filter_map(|&l| by_prefix.get(&(l, mask(&addr, l)))).flatten().copied().collect();
            if covering.len() > MAX_PORT_RULES {
                let prefix = rules[by_prefix[&(len, addr)][0]].target.to_string();
                return Err(CompileError::TooManyPortRules { prefix, count: covering.len() });
            }
            covering.sort_unstable();
            let mut ports =
                NetPorts { count: covering.len() as u32, pad: 0, rules: [PortRule::default(); MAX_PORT_RULES] };
            for (slot, index) in covering.into_iter().enumerate() {
                let rule = &rules[index];
                ports.rules[slot] = PortRule {
                    port_lo: rule.target.port_lo,
                    port_hi: rule.target.port_hi,
                    protocols: rule.target.protocols.0,
                    action: net_action(rule.action),
                    rule_index: u16::try_from(index).unwrap_or(u16::MAX),
                };
            }
            nets.push((len, addr, ports));
        }
        if spec.network.listen.len() > MAX_PORT_RULES {
            return Err(CompileError::TooManyPortRules {
                prefix: "network.listen".into(),
                count: spec.network.listen.len(),
            });
        }
        let listen = (!spec.network.listen.is_empty()).then(|| {
            let mut ports = NetPorts {
                count: spec.network.listen.len() as u32,
                pad: 0,
                rules: [PortRule::default(); MAX_PORT_RULES],
            };
            for (slot, rule) in spec.network.listen.iter().enumerate() {
                ports.rules[slot] = PortRule {
                    port_lo: rule.target.port_lo,
                    port_hi: rule.target.port_hi,
                    protocols: agent_guard_common::net::PROTO_TCP,
                    action: net_action(rule.action),
                    rule_index: u16::try_from(slot).unwrap_or(u16::MAX),
                };
            }
            ports
        });
        Ok(CompiledGrant { paths: paths.into_iter().collect(), nets, listen })
    }
}

#[cfg(test)]
mod tests {
    use agent_guard_common::path::fnv1a;

    use super::{CompiledGrant, ancestor_dirs};
    use crate::grant::Grant;

    #[test]
    fn directories_above_a_restricting_rule_are_marked_and_others_are_not() {
        assert_eq!(ancestor_dirs("/a/b/c").collect::<Vec<_>>(), ["/", "/a/", "/a/b/"]);
        assert_eq!(ancestor_dirs("/a/b/").collect::<Vec<_>>(), ["/", "/a/"]);
        let yaml = "apiVersion: agent-guard.dev/v1\nkind: Grant\nmetadata: {name: g}\nspec:\n  files:\n    \
                    write: [\"/repo/**\", {path: \"/repo/.git/hooks/**\", action: deny}]\n    \
                    read: [\"/srv/**\"]\n";
        let compiled = CompiledGrant::compile(&Grant::parse("g.yaml", yaml).unwrap()).unwrap();
        let below = |key: &str| compiled.paths.iter().find(|(h, _)| *h == fnv1a(key.as_bytes())).map(|(_, r)| r.below);
        assert_eq!(below("/repo/.git/"), Some(1));
        assert_eq!(below("/repo/"), Some(1));
        assert_eq!(below("/"), Some(1));
        assert_eq!(below("/srv/"), Some(0), "an allow rule restricts nothing below");
        assert_eq!(below("/repo/.git/hooks/").map(|_| ()), Some(()), "the rule's own entry");
    }
}
