//! What a profile's tasks may ask for while they run, and who may say yes.
//!
//! ```yaml
//! spec:
//!   approvers: ["unix:alice", "slack:U024BE7LH", "teams:6c1f…", "webhook:oncall"]
//!   requestable:
//!     maxDuration: 30m          # the longest one approval widens the grant for
//!     rules:
//!       - files: {read: ["/srv/reports/**"]}
//!       - files: {read: ["/srv/payroll/**"]}
//!         twoPerson: true       # two different approvers must say yes
//! ```
//! A request (`agent-guard request`, or the MCP tool `request_access`) names rules in the
//! grant's own syntax; every one of them must lie inside one entry of `rules` (the same
//! coverage check as a sub-task's grant against its parent's), or the request is refused at
//! once. Only `allow` rules are requested: a task never asks to be restricted.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::grant::{FileRule, FileRules, GrantSpec, NetworkRules, RuleAction};

/// A profile's `requestable` section.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Requestable {
    /// The longest one approved request widens the grant for ("30m"); never past the task's
    /// own expiry either.
    #[serde(with = "crate::grant::duration")]
    #[schemars(with = "String")]
    pub max_duration: Duration,
    /// What may be asked for: each entry a set of rules, optionally needing two approvers.
    pub rules: Vec<RequestableRules>,
}

/// One entry of `requestable.rules`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestableRules {
    #[serde(default)]
    pub files: FileRules,
    #[serde(default)]
    pub exec: Vec<FileRule>,
    /// `connect` rules only: a listen is never widened by a request.
    #[serde(default)]
    pub network: NetworkRules,
    /// A request within this entry (and no entry without it) needs two different approvers.
    #[serde(default)]
    pub two_person: bool,
}

impl RequestableRules {
    /// The entry's rules as a grant spec (for the coverage check).
    pub fn spec(&self) -> GrantSpec {
        GrantSpec {
            files: self.files.clone(),
            exec: self.exec.clone(),
            network: self.network.clone(),
            ..Default::default()
        }
    }
}

/// Who may decide a task's requests and held actions: one entry of a profile's `approvers`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApproverId {
    /// A local user, by name (`unix:alice`), deciding with the CLI.
    Unix(String),
    /// A local user, by uid (`uid:1000`), deciding with the CLI.
    Uid(u32),
    /// A Slack user id (`slack:U024BE7LH`), deciding with the message's buttons.
    Slack(String),
    /// A Microsoft Entra (Azure AD) object id (`teams:…`), deciding in Teams.
    Teams(String),
    /// A user a signed webhook callback names (`webhook:oncall`).
    Webhook(String),
}

impl FromStr for ApproverId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (channel, id) = s.split_once(':').ok_or_else(|| {
            format!("approver {s:?}: write CHANNEL:ID (unix:alice, uid:1000, slack:U…, teams:…, webhook:…)")
        })?;
        if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!("approver {s:?}: the id must be 1-128 printable characters without spaces"));
        }
        Ok(match channel {
            "unix" => ApproverId::Unix(id.into()),
            "uid" => ApproverId::Uid(id.parse().map_err(|_| format!("approver {s:?}: a uid is a number"))?),
            "slack" => ApproverId::Slack(id.into()),
            "teams" => ApproverId::Teams(id.into()),
            "webhook" => ApproverId::Webhook(id.into()),
            other => {
                return Err(format!("approver {s:?}: unknown channel {other:?} (unix, uid, slack, teams or webhook)"));
            }
        })
    }
}

impl fmt::Display for ApproverId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApproverId::Unix(name) => write!(f, "unix:{name}"),
            ApproverId::Uid(uid) => write!(f, "uid:{uid}"),
            ApproverId::Slack(id) => write!(f, "slack:{id}"),
            ApproverId::Teams(id) => write!(f, "teams:{id}"),
            ApproverId::Webhook(id) => write!(f, "webhook:{id}"),
        }
    }
}

impl Serialize for ApproverId {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ApproverId {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for ApproverId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ApproverId".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(unix|uid|slack|teams|webhook):[^\\s]{1,128}$",
            "description": "CHANNEL:ID: unix:NAME or uid:N (the CLI), slack:USER_ID, teams:ENTRA_OBJECT_ID, webhook:USER"
        })
    }
}

impl Requestable {
    /// Checks what the types cannot: a positive duration, at least one entry, allow rules only,
    /// no listen rules.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_duration.is_zero() {
            return Err("maxDuration must be longer than 0s".into());
        }
        if self.rules.is_empty() {
            return Err("rules: list what may be requested".into());
        }
        for (index, entry) in self.rules.iter().enumerate() {
            let spec = entry.spec();
            spec.validate().map_err(|m| format!("rules[{index}]: {m}"))?;
            if !spec.network.listen.is_empty() {
                return Err(format!("rules[{index}]: network.listen cannot be requested"));
            }
            if let Some(target) = not_allow(&spec) {
                return Err(format!("rules[{index}]: {target}: requestable rules are allow rules"));
            }
        }
        Ok(())
    }

    /// How many different approvers `requested` needs (1 or 2), or what lies outside every
    /// entry (the request is then refused). Two when any requested rule reaches into a
    /// `twoPerson` entry: within it, or around it (`/srv/**` holds `/srv/payroll/**`).
    pub fn approvals_needed(&self, requested: &GrantSpec) -> Result<u32, Vec<String>> {
        let mut needed = 1;
        let mut outside = Vec::new();
        let two_person: Vec<GrantSpec> =
            self.rules.iter().filter(|e| e.two_person).flat_map(|e| single_rules(&e.spec())).collect();
        for single in single_rules(requested) {
            let covered = self.rules.iter().any(|entry| crate::grant::excess(&single, &entry.spec()).is_empty());
            let overlaps = two_person.iter().any(|guarded| {
                crate::grant::excess(&single, guarded).is_empty() || crate::grant::excess(guarded, &single).is_empty()
            });
            match (covered, overlaps) {
                (false, _) => outside.extend(
                    crate::grant::excess(&single, &GrantSpec::default())
                        .into_iter()
                        .map(|line| line.replace("the parent's", "the profile's requestable")),
                ),
                (true, true) => needed = 2,
                (true, false) => {}
            }
        }
        if outside.is_empty() { Ok(needed) } else { Err(outside) }
    }
}

/// The first rule of `spec` that is not `allow`, as written.
pub fn not_allow(spec: &GrantSpec) -> Option<String> {
    let files = [&spec.files.read, &spec.files.write, &spec.exec];
    files
        .iter()
        .flat_map(|list| list.iter())
        .find(|r| r.action != RuleAction::Allow)
        .map(|r| r.target.to_string())
        .or_else(|| spec.network.connect.iter().find(|r| r.action != RuleAction::Allow).map(|r| r.target.to_string()))
}

/// Each rule of `spec` as a spec of its own.
fn single_rules(spec: &GrantSpec) -> Vec<GrantSpec> {
    let mut out = Vec::new();
    for rule in &spec.files.read {
        out.push(GrantSpec { files: FileRules { read: vec![rule.clone()], write: vec![] }, ..Default::default() });
    }
    for rule in &spec.files.write {
        out.push(GrantSpec { files: FileRules { read: vec![], write: vec![rule.clone()] }, ..Default::default() });
    }
    for rule in &spec.exec {
        out.push(GrantSpec { exec: vec![rule.clone()], ..Default::default() });
    }
    for rule in &spec.network.connect {
        out.push(GrantSpec {
            network: NetworkRules { connect: vec![rule.clone()], listen: vec![] },
            ..Default::default()
        });
    }
    out
}
