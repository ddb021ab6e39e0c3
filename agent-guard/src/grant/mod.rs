//! Grants: what a task may touch, in YAML. Default deny: what a grant does not name is out of
//! scope. Parsed strictly (unknown fields refused), validated as it is parsed so that every
//! error carries the file, line and column, and compiled to kernel map entries only once the
//! whole file is valid (nothing is ever half-applied).

mod capability;
mod compile;
mod eval;
mod net_rule;
mod path_pattern;
mod rule;
mod subset;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use capability::CapabilityName;
pub use compile::{CompiledGrant, net_action};
pub use eval::normalize_path;
pub use net_rule::{Destination, ListenPorts, mapped};
pub use rule::{Rule, RuleAction};
pub use subset::{excess, with_restrictions};

/// A file or exec rule.
pub type FileRule = Rule<PathPattern>;
/// A network rule.
pub type NetRule = Rule<Destination>;
/// A `network.listen` rule.
pub type ListenRule = Rule<ListenPorts>;
pub use path_pattern::PathPattern;

/// Used when neither the grant nor the command line names a TTL.
pub const DEFAULT_TTL: Duration = Duration::from_mins(15);

/// A grant document (`kind: Grant`): what a task may read, write, execute and reach.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Grant {
    pub api_version: ApiVersion,
    pub kind: GrantKind,
    pub metadata: Metadata,
    pub spec: GrantSpec,
}

/// The policy API version (`apiVersion`).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub enum ApiVersion {
    #[serde(rename = "agent-guard.dev/v1")]
    V1,
}

/// The document kind (`kind: Grant`).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub enum GrantKind {
    Grant,
}

/// A policy document's name.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
}

/// A grant's rules, mode and time limit.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec {
    #[serde(default)]
    pub mode: Mode,
    /// Longest life of a task opened with this grant ("15m", "1h30m").
    #[serde(default, with = "opt_duration", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub ttl: Option<Duration>,
    #[serde(default)]
    pub files: FileRules,
    #[serde(default)]
    pub exec: Vec<FileRule>,
    #[serde(default)]
    pub network: NetworkRules,
    /// Linux capabilities the task keeps at the `landlock` level; every other is dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<CapabilityName>,
}

/// What out-of-scope actions get: refused, or allowed and flagged.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Out-of-scope actions are refused where the kernel allows it.
    #[default]
    Enforce,
    /// Out-of-scope actions proceed and are flagged.
    Audit,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`: tables align it with `{:<8}`.
        f.pad(match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        })
    }
}

/// Paths a task may read and write.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRules {
    #[serde(default)]
    pub read: Vec<FileRule>,
    #[serde(default)]
    pub write: Vec<FileRule>,
}

/// Destinations a task may connect or send to, and ports it may listen on.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkRules {
    #[serde(default)]
    pub connect: Vec<NetRule>,
    /// TCP ports the task may listen and accept on (BPF LSM kernels; default: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listen: Vec<ListenRule>,
}

/// A policy document that does not parse or validate, with where.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("policy {file}: line {line}, column {column}: {message}")]
    Invalid { file: String, line: usize, column: usize, message: String },
    #[error("policy {file}: {message}")]
    InvalidNoLocation { file: String, message: String },
}

/// Deserializes a policy document strictly, with the location of the first problem.
pub fn from_yaml<T: serde::de::DeserializeOwned>(file: &str, text: &str) -> Result<T, GrantError> {
    serde_yaml_ng::from_str(text).map_err(|err| match err.location() {
        Some(loc) => GrantError::Invalid {
            file: file.to_string(),
            line: loc.line(),
            column: loc.column(),
            message: strip_location(&err.to_string()),
        },
        None => GrantError::InvalidNoLocation { file: file.to_string(), message: err.to_string() },
    })
}

/// Names of grants, templates and profiles.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 63
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(format!("metadata.name {name:?} must be 1-63 characters of letters, digits, '-', '_' or '.'"));
    }
    Ok(())
}

impl GrantSpec {
    /// Checks what the types cannot: a positive ttl, and no target listed twice in one list
    /// with different actions (which one was meant is anybody's guess).
    pub fn validate(&self) -> Result<(), String> {
        fn no_contradiction<T: rule::RuleTarget + Eq + std::hash::Hash>(
            list: &str,
            rules: &[Rule<T>],
        ) -> Result<(), String> {
            let mut seen: std::collections::HashMap<&T, RuleAction> = std::collections::HashMap::new();
            for rule in rules {
                if let Some(other) = seen.insert(&rule.target, rule.action)
                    && other != rule.action
                {
                    return Err(format!(
                        "{list}: {} is listed as both {} and {}: keep one",
                        rule.target,
                        other.name(),
                        rule.action.name()
                    ));
                }
            }
            Ok(())
        }
        if self.ttl.is_some_and(|ttl| ttl.is_zero()) {
            return Err("spec.ttl must be longer than 0s".into());
        }
        no_contradiction("files.read", &self.files.read)?;
        no_contradiction("files.write", &self.files.write)?;
        no_contradiction("exec", &self.exec)?;
        no_contradiction("network.connect", &self.network.connect)?;
        no_contradiction("network.listen", &self.network.listen)?;
        if let Some(rule) = self.network.listen.iter().find(|r| matches!(r.action, RuleAction::Ask | RuleAction::Flag))
        {
            return Err(format!("network.listen {}: a listen rule is allow or deny", rule.target));
        }
        // open_by_handle_at(2) opens a file without a path: the `landlock` level's supervisor
        // cannot hold it, so an `ask` file would be readable unasked.
        let has_asks =
            [&self.files.read, &self.files.write].iter().any(|l| l.iter().any(|r| r.action == RuleAction::Ask));
        if has_asks && self.capabilities.iter().any(|c| c.0 == caps::Capability::CAP_DAC_READ_SEARCH) {
            return Err(
                "capabilities: CAP_DAC_READ_SEARCH opens files by handle, past `ask` rules: keep it only in a \
                        grant without them"
                    .into(),
            );
        }
        Ok(())
    }
}

impl Grant {
    /// Parses and validates `text`; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, GrantError> {
        let grant: Grant = from_yaml(file, text)?;
        grant.validate().map_err(|message| GrantError::InvalidNoLocation { file: file.to_string(), message })?;
        Ok(grant)
    }

    fn validate(&self) -> Result<(), String> {
        check_name(&self.metadata.name)?;
        self.spec.validate()
    }

    /// The TTL a task gets: the requested one, which may not exceed the grant's own.
    pub fn effective_ttl(&self, requested: Option<Duration>) -> Result<Duration, String> {
        match (requested, self.spec.ttl) {
            (Some(req), Some(max)) if req > max => Err(format!(
                "requested ttl {} exceeds the grant's ttl {}",
                humantime::format_duration(req),
                humantime::format_duration(max)
            )),
            (Some(req), _) if req.is_zero() => Err("ttl must be longer than 0s".into()),
            (Some(req), _) => Ok(req),
            (None, Some(max)) => Ok(max),
            (None, None) => Ok(DEFAULT_TTL),
        }
    }
}

/// `serde_yaml_ng` appends " at line L column C" to messages; the location is reported apart.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

/// Durations written as "90s", "15m", "1h30m".
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(de)?;
        humantime::parse_duration(&text)
            .map_err(|err| D::Error::custom(format!("invalid duration {text:?}: {err} (examples: 90s, 15m, 1h30m)")))
    }

    pub fn serialize<S: Serializer>(value: &Duration, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&humantime::format_duration(*value).to_string())
    }
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
        // `null` is none: specs written into events before `ttl` was skipped when absent.
        let Some(text) = Option::<String>::deserialize(de)? else { return Ok(None) };
        humantime::parse_duration(&text)
            .map(Some)
            .map_err(|err| D::Error::custom(format!("invalid duration {text:?}: {err} (examples: 90s, 15m, 1h30m)")))
    }

    #[expect(clippy::ref_option, reason = "the signature serde's `serialize_with` calls")]
    pub fn serialize<S: Serializer>(value: &Option<Duration>, ser: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => ser.serialize_str(&humantime::format_duration(*d).to_string()),
            None => ser.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests;

/// A spec's rules one per line, as written ("files.read /srv/** (allow)" without the action
/// for allow rules): for requests, events and the report.
pub fn rule_lines(spec: &GrantSpec) -> Vec<String> {
    fn line(list: &str, target: &dyn std::fmt::Display, action: RuleAction) -> String {
        match action {
            RuleAction::Allow => format!("{list} {target}"),
            other => format!("{list} {target} ({})", other.name()),
        }
    }
    let mut out = Vec::new();
    for (list, rules) in [("files.read", &spec.files.read), ("files.write", &spec.files.write), ("exec", &spec.exec)] {
        out.extend(rules.iter().map(|r| line(list, &r.target, r.action)));
    }
    out.extend(spec.network.connect.iter().map(|r| line("network.connect", &r.target, r.action)));
    out.extend(spec.network.listen.iter().map(|r| line("network.listen", &r.target, r.action)));
    out
}

/// `base` with the rules of each of `extra` added (each rule once): the grant a task has while
/// approved requests widen it.
pub fn widened<'a>(base: &GrantSpec, extra: impl IntoIterator<Item = &'a GrantSpec>) -> GrantSpec {
    fn add<T: Clone + PartialEq>(to: &mut Vec<Rule<T>>, from: &[Rule<T>]) {
        for rule in from {
            if !to.contains(rule) {
                to.push(rule.clone());
            }
        }
    }
    let mut spec = base.clone();
    for more in extra {
        add(&mut spec.files.read, &more.files.read);
        add(&mut spec.files.write, &more.files.write);
        add(&mut spec.exec, &more.exec);
        add(&mut spec.network.connect, &more.network.connect);
    }
    spec
}
