//! The least-privilege suggestion: the grant as issued, less the allow rules the task never
//! used. Restrictive rules (deny, ask, flag) are kept whether they fired or not: removing
//! them would widen or quieten the grant, not narrow it.

use std::collections::HashSet;

use serde_json::Value;

use crate::grant::{ApiVersion, FileRule, Grant, GrantKind, GrantSpec, Metadata, RuleAction};

/// A narrower grant and the rules it drops.
pub struct Narrowed {
    pub removed: Vec<String>,
    pub yaml: String,
}

/// `unused` holds rule names as usage reports them (`files.read /srv/**`,
/// `network.connect[1] 127.0.0.1/32:8080`), with or without an ` (action)` suffix. Err says,
/// for the report, why there is no suggestion.
pub fn narrow(grant_name: &str, issued: &Value, unused: &[String]) -> Result<Narrowed, String> {
    let mut issued = issued.clone();
    // The spec serializes an absent ttl as null, which its own parser refuses.
    if let Some(map) = issued.as_object_mut()
        && map.get("ttl").is_some_and(Value::is_null)
    {
        map.remove("ttl");
    }
    let mut spec: GrantSpec =
        serde_json::from_value(issued).map_err(|err| format!("the grant as issued could not be read: {err}"))?;
    let unused: HashSet<&str> = unused.iter().map(|name| without_action(name)).collect();
    let mut removed = Vec::new();
    retain_files("files.read", &mut spec.files.read, &unused, &mut removed);
    // Write rules stay: changes to the file tree (mkdir, rename, unlink...) use them without
    // being counted as use, so "unused" is not proof for them.
    retain_files("exec", &mut spec.exec, &unused, &mut removed);
    let mut index = 0;
    spec.network.connect.retain(|rule| {
        let indexed = format!("network.connect[{index}] {}", rule.target);
        let plain = format!("network.connect {}", rule.target);
        index += 1;
        let drop =
            rule.action == RuleAction::Allow && (unused.contains(indexed.as_str()) || unused.contains(plain.as_str()));
        if drop {
            removed.push(indexed);
        }
        !drop
    });
    if removed.is_empty() {
        return Err("every allow rule of the grant was used: nothing to narrow".into());
    }
    let grant = Grant {
        api_version: ApiVersion::V1,
        kind: GrantKind::Grant,
        metadata: Metadata { name: narrowed_name(grant_name) },
        spec,
    };
    let mut doc =
        serde_yaml_ng::to_value(&grant).map_err(|err| format!("the narrowed grant could not be written: {err}"))?;
    // Likewise here: no ttl is written as no key, not as null.
    if let Some(spec) = doc.get_mut("spec").and_then(serde_yaml_ng::Value::as_mapping_mut)
        && spec.get("ttl").is_some_and(serde_yaml_ng::Value::is_null)
    {
        spec.remove("ttl");
    }
    let yaml =
        serde_yaml_ng::to_string(&doc).map_err(|err| format!("the narrowed grant could not be written: {err}"))?;
    Ok(Narrowed { removed, yaml })
}

fn retain_files(list: &str, rules: &mut Vec<FileRule>, unused: &HashSet<&str>, removed: &mut Vec<String>) {
    rules.retain(|rule| {
        let name = format!("{list} {}", rule.target);
        let drop = rule.action == RuleAction::Allow && unused.contains(name.as_str());
        if drop {
            removed.push(name);
        }
        !drop
    });
}

/// "files.read /srv/** (allow)" → "files.read /srv/**".
fn without_action(name: &str) -> &str {
    let name = name.trim();
    match name.rsplit_once(" (") {
        Some((rule, action)) if action.ends_with(')') && !action.contains(' ') => rule,
        _ => name,
    }
}

/// "<grant>-narrowed", within the 63 characters a grant name may have.
fn narrowed_name(grant: &str) -> String {
    const SUFFIX: &str = "-narrowed";
    let base: String = grant.chars().take(63 - SUFFIX.len()).collect();
    format!("{base}{SUFFIX}")
}
