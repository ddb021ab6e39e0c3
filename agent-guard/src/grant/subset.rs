//! Delegation without escalation: a sub-task's grant must be a subset of its parent's.
//!
//! Coverage is checked rule by rule: every rule of the child (other than `deny`) must lie
//! inside one rule of the same list of the parent that is not a `deny`. The child then also
//! receives the parent's `deny`, `ask` and `flag` rules: since the most restrictive matching
//! rule decides, the child can never be less restricted than its parent on any path or
//! destination (see `with_restrictions`).

use super::{Destination, FileRule, GrantSpec, Mode, PathPattern, RuleAction};

/// Whether everything `child` matches, `parent` matches too.
fn pattern_covers(parent: &PathPattern, child: &PathPattern) -> bool {
    let under =
        |dir: &str, other: &str| other == dir || other.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'));
    match (parent, child) {
        (_, PathPattern::Exact(path)) => parent.matches(path),
        (PathPattern::Subtree(dir), PathPattern::Children(other) | PathPattern::Subtree(other)) => under(dir, other),
        (PathPattern::Children(dir), PathPattern::Children(other)) => dir == other,
        _ => false,
    }
}

fn destination_covers(parent: &Destination, child: &Destination) -> bool {
    let hosts = match (parent.mapped_prefix(), child.mapped_prefix(), parent.name(), child.name()) {
        (Some((plen, pnet)), Some((clen, cnet)), _, _) => {
            plen <= clen && super::net_rule::prefix_contains(&pnet, plen, &cnet)
        }
        (_, _, Some(pname), Some(cname)) => pname.covers(cname),
        // A name's addresses are unknown until asked: a prefix never covers a name, nor a name
        // a prefix.
        _ => false,
    };
    hosts
        && parent.port_lo <= child.port_lo
        && child.port_hi <= parent.port_hi
        && child.protocols.0 & !parent.protocols.0 == 0
}

fn uncovered_files(list: &str, child: &[FileRule], parent: &[FileRule], out: &mut Vec<String>) {
    for rule in child.iter().filter(|r| r.action != RuleAction::Deny) {
        if !parent.iter().any(|p| p.action != RuleAction::Deny && pattern_covers(&p.target, &rule.target)) {
            out.push(format!("{list} {} is not within the parent's {list}", rule.target));
        }
    }
}

/// What `child` would allow beyond `parent`, one line each; empty when it is a subset.
pub fn excess(child: &GrantSpec, parent: &GrantSpec) -> Vec<String> {
    let mut out = Vec::new();
    if child.mode == Mode::Audit && parent.mode == Mode::Enforce {
        out.push("mode audit (the parent task is enforced)".to_string());
    }
    uncovered_files("files.read", &child.files.read, &parent.files.read, &mut out);
    uncovered_files("files.write", &child.files.write, &parent.files.write, &mut out);
    uncovered_files("exec", &child.exec, &parent.exec, &mut out);
    for rule in child.network.connect.iter().filter(|r| r.action != RuleAction::Deny) {
        let covered = parent
            .network
            .connect
            .iter()
            .any(|p| p.action != RuleAction::Deny && destination_covers(&p.target, &rule.target));
        if !covered {
            out.push(format!("network.connect {} is not within the parent's network.connect", rule.target));
        }
    }
    for rule in child.network.listen.iter().filter(|r| r.action != RuleAction::Deny) {
        let covered = parent.network.listen.iter().any(|p| {
            p.action != RuleAction::Deny
                && p.target.port_lo <= rule.target.port_lo
                && rule.target.port_hi <= p.target.port_hi
        });
        if !covered {
            out.push(format!("network.listen {} is not within the parent's network.listen", rule.target));
        }
    }
    for cap in child.capabilities.iter().filter(|c| !parent.capabilities.contains(c)) {
        out.push(format!("capability {cap} is not among the parent's capabilities"));
    }
    out
}

/// `child` with the parent's restricting rules (deny, ask, flag) added.
pub fn with_restrictions(child: &GrantSpec, parent: &GrantSpec) -> GrantSpec {
    fn add<T: Clone + PartialEq>(to: &mut Vec<super::Rule<T>>, from: &[super::Rule<T>]) {
        for rule in from.iter().filter(|r| r.action != RuleAction::Allow) {
            if !to.contains(rule) {
                to.push(rule.clone());
            }
        }
    }
    let mut spec = child.clone();
    add(&mut spec.files.read, &parent.files.read);
    add(&mut spec.files.write, &parent.files.write);
    add(&mut spec.exec, &parent.exec);
    add::<Destination>(&mut spec.network.connect, &parent.network.connect);
    add(&mut spec.network.listen, &parent.network.listen);
    spec
}
