//! A grant compiled to the paths of a Landlock ruleset.
//!
//! Landlock allows by hierarchy: a rule on a directory covers everything beneath it. So:
//! - `DIR/**` is a rule on DIR (exact);
//! - `DIR/*` is a rule on DIR too (wider: deeper entries are allowed by Landlock and killed by
//!   the eBPF side, which matches the grant's own patterns);
//! - an exact path is a rule on that path, left out while it does not exist (confine/apply.rs);
//!   where it is a directory, the rule gives only its listing (`beneath: false`), since any
//!   other right on a directory reaches everything beneath it.
//!
//! `allow` and `flag` rules go in, and `ask` rules where a supervisor holds the task's opens and
//! execs (confine/notify.rs): the daemon answers each matching call after a human decided, and
//! the eBPF side kills one that reached an `ask` path without that approval. A `deny` inside an
//! allowed tree cannot be expressed (Landlock only adds access); the eBPF side kills on it, at
//! the `kill` level's strength.

use std::collections::BTreeMap;

use crate::{
    api::{LandlockPath, LandlockRuleset},
    grant::{FileRule, GrantSpec, PathPattern, RuleAction},
};

/// The ruleset of `spec` for Landlock ABI `abi`; `asks_held`: a supervisor holds the task's
/// `ask` actions, so their paths go in too.
pub fn compile(spec: &GrantSpec, abi: u32, asks_held: bool) -> LandlockRuleset {
    let mut paths: BTreeMap<(String, bool), LandlockPath> = BTreeMap::new();
    let included = |action: RuleAction| {
        matches!(action, RuleAction::Allow | RuleAction::Flag) || (asks_held && action == RuleAction::Ask)
    };
    let mut add = |rules: &[FileRule], set: fn(&mut LandlockPath)| {
        for rule in rules.iter().filter(|r| included(r.action)) {
            let (path, beneath) = match &rule.target {
                PathPattern::Exact(path) => (path.clone(), false),
                PathPattern::Children(dir) | PathPattern::Subtree(dir) if dir.is_empty() => ("/".to_string(), true),
                PathPattern::Children(dir) | PathPattern::Subtree(dir) => (dir.clone(), true),
            };
            let entry = paths.entry((path.clone(), beneath)).or_insert(LandlockPath {
                path,
                beneath,
                read: false,
                write: false,
                exec: false,
            });
            set(entry);
        }
    };
    add(&spec.files.read, |p| p.read = true);
    add(&spec.files.write, |p| p.write = true);
    add(&spec.exec, |p| p.exec = true);
    let mut capabilities: Vec<String> = spec.capabilities.iter().map(ToString::to_string).collect();
    capabilities.sort();
    capabilities.dedup();
    LandlockRuleset {
        abi,
        paths: paths.into_values().collect(),
        capabilities,
        guard_pid: std::process::id(),
        hold_asks: false,
    }
}

/// Whether `spec` has `ask` rules a supervisor would hold.
pub fn has_asks(spec: &GrantSpec) -> bool {
    [&spec.files.read, &spec.files.write, &spec.exec]
        .iter()
        .any(|rules| rules.iter().any(|r| r.action == RuleAction::Ask))
}

#[cfg(test)]
mod tests {
    use super::compile;
    use crate::grant::Grant;

    #[test]
    fn allow_and_flag_rules_become_paths_and_ask_and_deny_do_not() {
        let grant = Grant::parse(
            "t",
            "apiVersion: agent-guard.dev/v1\nkind: Grant\nmetadata: {name: t}\nspec:\n  files:\n    read: [/usr/**, /etc/hosts, {path: /srv/*, action: flag}, {path: /etc/shadow, action: deny}, {path: /root/**, action: ask}]\n    write: [/tmp/**, /usr/**]\n  exec: [/usr/bin/git]\n  capabilities: [CAP_NET_BIND_SERVICE, CAP_CHOWN]\n",
        )
        .unwrap();
        let ruleset = compile(&grant.spec, 6, false);
        let got: Vec<(String, bool, bool, bool)> =
            ruleset.paths.iter().map(|p| (p.path.clone(), p.read, p.write, p.exec)).collect();
        assert_eq!(
            got,
            vec![
                ("/etc/hosts".into(), true, false, false),
                ("/srv".into(), true, false, false),
                ("/tmp".into(), false, true, false),
                ("/usr".into(), true, true, false),
                ("/usr/bin/git".into(), false, false, true),
            ]
        );
        assert_eq!(ruleset.capabilities, ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]);
        assert_eq!(ruleset.abi, 6);
        let held = compile(&grant.spec, 6, true);
        assert!(held.paths.iter().any(|p| p.path == "/root" && p.read && !p.write));
        assert!(!held.paths.iter().any(|p| p.path == "/etc/shadow"));
    }
}
