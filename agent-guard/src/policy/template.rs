//! `GrantTemplate`: a grant written once with variables, filled in when a task opens.
//!
//! ```yaml
//! apiVersion: agent-guard.dev/v1
//! kind: GrantTemplate
//! metadata: {name: triage}
//! spec:
//!   variables: {workspace: path, ticket: name}
//!   grant:
//!     ttl: 30m
//!     files:
//!       read: ["{workspace}/**"]
//!       write: ["{workspace}/out/{ticket}/**"]
//! ```
//! Built-in variables, always available: `task_id` and `agent` (both of type name).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::placeholder::{self, Scan, VarType};
use crate::grant::{ApiVersion, CompiledGrant, Grant, GrantError, GrantKind, GrantSpec, Metadata};

/// Variables every template may use, filled in by the daemon.
pub const BUILTIN_VARIABLES: [&str; 2] = ["task_id", "agent"];

/// A grant template (`kind: GrantTemplate`): a grant with `{variables}`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrantTemplate {
    pub api_version: ApiVersion,
    pub kind: TemplateKind,
    pub metadata: Metadata,
    pub spec: TemplateSpec,
    /// The file's text, from which each task's grant is filled in.
    #[serde(skip)]
    #[schemars(skip)]
    source: String,
    #[serde(skip)]
    #[schemars(skip)]
    file: String,
}

/// The document kind (`kind: GrantTemplate`).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub enum TemplateKind {
    GrantTemplate,
}

/// A template's variables and grant.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    #[serde(default)]
    pub description: Option<String>,
    /// Variables the operator supplies (`--var NAME=VALUE`) and what they hold.
    #[serde(default)]
    pub variables: BTreeMap<String, VarType>,
    /// The grant, with `{variable}` placeholders in its paths.
    pub grant: GrantSpec,
}

impl GrantTemplate {
    pub(super) fn parse(file: &str, text: &str, scan: &Scan) -> Result<Self, GrantError> {
        let mut template = Self::parse_filled(file, &scan.checkable)?;
        for found in &scan.found {
            if !template.spec.variables.contains_key(&found.name) && !BUILTIN_VARIABLES.contains(&found.name.as_str()) {
                return Err(GrantError::Invalid {
                    file: file.to_string(),
                    line: found.line,
                    column: found.column,
                    message: format!(
                        "variable {{{}}} is not declared: add it to spec.variables (built-in: {})",
                        found.name,
                        BUILTIN_VARIABLES.join(", ")
                    ),
                });
            }
        }
        for name in template.spec.variables.keys() {
            if BUILTIN_VARIABLES.contains(&name.as_str()) {
                return Err(GrantError::InvalidNoLocation {
                    file: file.to_string(),
                    message: format!("spec.variables.{name} is built in: remove it"),
                });
            }
        }
        // The checkable text stands for every filling: compile it as the daemon will.
        CompiledGrant::compile(&template.grant_of(template.spec.grant.clone()))
            .map_err(|err| GrantError::InvalidNoLocation { file: file.to_string(), message: err.to_string() })?;
        template.source = text.to_string();
        template.file = file.to_string();
        Ok(template)
    }

    fn parse_filled(file: &str, text: &str) -> Result<Self, GrantError> {
        let template: GrantTemplate = crate::grant::from_yaml(file, text)?;
        template
            .spec
            .grant
            .validate()
            .map_err(|message| GrantError::InvalidNoLocation { file: file.to_string(), message })?;
        crate::grant::check_name(&template.metadata.name)
            .map_err(|message| GrantError::InvalidNoLocation { file: file.to_string(), message })?;
        Ok(template)
    }

    fn grant_of(&self, spec: GrantSpec) -> Grant {
        Grant { api_version: ApiVersion::V1, kind: GrantKind::Grant, metadata: self.metadata.clone(), spec }
    }

    /// The grant for one task: `vars` from the operator, `builtins` from the daemon. Every
    /// declared variable must be given, with a value of its type, and nothing else.
    pub fn fill(&self, vars: &BTreeMap<String, String>, builtins: &[(&str, String)]) -> Result<Grant, String> {
        for name in vars.keys() {
            if !self.spec.variables.contains_key(name) {
                let declared: Vec<&str> = self.spec.variables.keys().map(String::as_str).collect();
                return Err(format!(
                    "template {} has no variable {name:?} (it declares: {})",
                    self.metadata.name,
                    if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
                ));
            }
        }
        let mut values: BTreeMap<&str, String> = BTreeMap::new();
        for (name, kind) in &self.spec.variables {
            let value = vars
                .get(name)
                .ok_or_else(|| format!("template {} needs --var {name}=VALUE ({kind:?})", self.metadata.name))?;
            kind.check(name, value)?;
            values.insert(name, value.clone());
        }
        for (name, value) in builtins {
            VarType::Name.check(name, value)?;
            values.insert(name, value.clone());
        }
        let scan = placeholder::scan(&self.source);
        let text = placeholder::fill(&self.source, &scan, |name| values.get(name).cloned().unwrap_or_default());
        let filled = Self::parse_filled(&self.file, &text).map_err(|err| err.to_string())?;
        Ok(self.grant_of(filled.spec.grant))
    }
}
