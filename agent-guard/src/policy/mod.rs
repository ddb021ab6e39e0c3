//! Policy files: YAML documents of `apiVersion: agent-guard.dev/v1`, one per file, of kind
//! `Grant` (what one task may touch), `GrantTemplate` (a grant with variables, filled in when
//! a task opens) or `AgentProfile` (an agent identity: its base grant, the templates it may
//! receive and its longest task). The daemon loads them from its policy directory
//! (set.rs); `agent-guard policy check` validates them exactly as the daemon does.

mod placeholder;
mod profile;
mod requestable;
mod set;
mod template;

use serde::Deserialize;

pub use profile::AgentProfile;
pub use requestable::not_allow;
pub use requestable::{ApproverId, RequestableRules};
pub use set::{PolicySet, policy_files};
pub use template::GrantTemplate;

use crate::grant::{Grant, GrantError};

/// One parsed, validated policy document.
#[derive(Clone, Debug)]
pub enum PolicyDocument {
    Grant(Grant),
    Profile(AgentProfile),
    Template(GrantTemplate),
}

impl PolicyDocument {
    pub fn kind(&self) -> &'static str {
        match self {
            PolicyDocument::Grant(_) => "Grant",
            PolicyDocument::Profile(_) => "AgentProfile",
            PolicyDocument::Template(_) => "GrantTemplate",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            PolicyDocument::Grant(g) => &g.metadata.name,
            PolicyDocument::Profile(p) => &p.metadata.name,
            PolicyDocument::Template(t) => &t.metadata.name,
        }
    }
}

/// Only `kind`, read first to choose the type the whole document is parsed as.
#[derive(Deserialize)]
struct Head {
    kind: Option<String>,
}

/// Parses and validates one policy file; every error names `file` and, where the YAML parser
/// knows it, the line and column.
pub fn parse(file: &str, text: &str) -> Result<PolicyDocument, GrantError> {
    // Placeholders are replaced by same-length paths first, so that `{workspace}/**` is not
    // read as a YAML flow mapping and positions in errors stay those of the file.
    let scan = placeholder::scan(text);
    let head: Option<Head> = serde_yaml_ng::from_str(&scan.checkable).ok();
    match head.and_then(|h| h.kind).as_deref() {
        Some("GrantTemplate") => GrantTemplate::parse(file, text, &scan).map(PolicyDocument::Template),
        kind => {
            if let Some(first) = scan.found.first() {
                return Err(GrantError::Invalid {
                    file: file.to_string(),
                    line: first.line,
                    column: first.column,
                    message: format!(
                        "variable {{{}}}: variables are only allowed in a GrantTemplate (quote a literal brace)",
                        first.name
                    ),
                });
            }
            if kind == Some("AgentProfile") {
                return AgentProfile::parse(file, text).map(PolicyDocument::Profile);
            }
            // Grant, and anything else: the Grant parser names the accepted kinds. A grant is
            // compiled here too, as the daemon will (ports per prefix, actions).
            let grant = Grant::parse(file, text)?;
            crate::grant::CompiledGrant::compile(&grant)
                .map_err(|err| GrantError::InvalidNoLocation { file: file.to_string(), message: err.to_string() })?;
            Ok(PolicyDocument::Grant(grant))
        }
    }
}

/// Any policy document, for the JSON Schema only (parsing goes through `parse`).
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[expect(dead_code, reason = "only its schema is used")]
enum AnyDocument {
    Grant(Grant),
    AgentProfile(AgentProfile),
    GrantTemplate(GrantTemplate),
}

/// The JSON Schema of policy files, generated from these types (committed as
/// policies/policy.schema.json for editors; a test keeps the file current).
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(AnyDocument);
    serde_json::to_string_pretty(&schema).expect("schemas serialize") + "\n"
}

#[cfg(test)]
mod tests;
