//! `AgentProfile`: an agent identity, written once.
//!
//! ```yaml
//! apiVersion: agent-guard.dev/v1
//! kind: AgentProfile
//! metadata: {name: ticket-bot}
//! spec:
//!   maxTtl: 2h                  # no task of this agent lives longer, extensions included
//!   templates: [triage]         # the templates its tasks may be opened with
//!   baseGrant:                  # what every task of this agent gets
//!     files: {read: ["/usr/**", "/etc/ssl/**"]}
//!     exec: ["/usr/bin/**"]
//! ```
//! Its processes are recognised by their task tag: `agent-guard run --profile ticket-bot`
//! opens the task, tags the process in the kernel, and every descendant inherits the tag.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::grant::{ApiVersion, FileRules, GrantError, Metadata, NetworkRules};

/// An agent profile (`kind: AgentProfile`): a base grant and the templates an agent may use.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentProfile {
    pub api_version: ApiVersion,
    pub kind: ProfileKind,
    pub metadata: Metadata,
    pub spec: ProfileSpec,
}

/// The document kind (`kind: AgentProfile`).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub enum ProfileKind {
    AgentProfile,
}

/// A profile's base grant and templates.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProfileSpec {
    #[serde(default)]
    pub description: Option<String>,
    /// The longest a task of this agent may live, extensions included ("2h").
    #[serde(with = "crate::grant::duration")]
    #[schemars(with = "String")]
    pub max_ttl: Duration,
    /// `GrantTemplates` this agent's tasks may be opened with.
    #[serde(default)]
    pub templates: Vec<String>,
    /// Rules every task of this agent gets, added to its template's.
    #[serde(default)]
    pub base_grant: BaseGrant,
    /// Who may approve this agent's access requests and held actions (`CHANNEL:ID`). Empty:
    /// held actions go to any operator, and nothing is requestable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<super::requestable::ApproverId>,
    /// What this agent's tasks may ask for while they run (`agent-guard request`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requestable: Option<super::requestable::Requestable>,
}

/// What every task of a profile may do, whatever the template.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BaseGrant {
    #[serde(default)]
    pub files: FileRules,
    #[serde(default)]
    pub exec: Vec<crate::grant::FileRule>,
    #[serde(default)]
    pub network: NetworkRules,
}

impl AgentProfile {
    pub(super) fn parse(file: &str, text: &str) -> Result<Self, GrantError> {
        let profile: AgentProfile = crate::grant::from_yaml(file, text)?;
        let invalid = |message: String| GrantError::InvalidNoLocation { file: file.to_string(), message };
        crate::grant::check_name(&profile.metadata.name).map_err(invalid)?;
        if profile.spec.max_ttl.is_zero() {
            return Err(invalid("spec.maxTtl must be longer than 0s".into()));
        }
        profile.base_spec().validate().map_err(|m| invalid(format!("spec.baseGrant: {m}")))?;
        if let Some(requestable) = &profile.spec.requestable {
            requestable.validate().map_err(|m| invalid(format!("spec.requestable: {m}")))?;
            if profile.spec.approvers.is_empty() {
                return Err(invalid("spec.requestable needs spec.approvers: who may approve the requests".into()));
            }
        }
        Ok(profile)
    }

    /// The base grant as a grant spec (enforce mode, no ttl of its own).
    pub fn base_spec(&self) -> crate::grant::GrantSpec {
        let base = &self.spec.base_grant;
        crate::grant::GrantSpec {
            files: base.files.clone(),
            exec: base.exec.clone(),
            network: base.network.clone(),
            ..Default::default()
        }
    }
}
