//! The policies a daemon serves: every document of its policy directory, validated together
//! (names unique, every template a profile names present). A directory that does not
//! validate is refused as a whole, so a reload either applies completely or not at all.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use super::{AgentProfile, GrantTemplate, PolicyDocument};
use crate::grant::{CompiledGrant, Grant, GrantSpec};

/// The policy directory, loaded and validated whole.
#[derive(Clone, Debug, Default)]
pub struct PolicySet {
    pub profiles: BTreeMap<String, AgentProfile>,
    pub templates: BTreeMap<String, GrantTemplate>,
    pub grants: BTreeMap<String, Grant>,
    /// The files it was read from.
    pub files: Vec<PathBuf>,
}

/// The grant a task opens with, resolved from a profile (and template).
#[derive(Clone, Debug)]
pub struct TaskGrant {
    pub grant: Grant,
    /// Where it came from, for events: "profile ticket-bot + template triage (/etc/...)".
    pub source: String,
    /// The profile's limit on the task's whole life, extensions included.
    pub max_ttl: Duration,
}

impl PolicySet {
    /// Reads every `*.yaml`/`*.yml` file of `dir` (not recursive, in name order). A missing
    /// directory is an empty set; every problem found is returned, not just the first.
    pub fn load_dir(dir: &Path) -> Result<PolicySet, Vec<String>> {
        match policy_files(dir) {
            Ok(files) => Self::load_files(&files),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(PolicySet::default()),
            Err(err) => Err(vec![format!("policy directory {}: {err}", dir.display())]),
        }
    }

    pub fn load_files(files: &[PathBuf]) -> Result<PolicySet, Vec<String>> {
        let mut errors = Vec::new();
        let mut docs = Vec::new();
        for path in files {
            let file = path.display().to_string();
            match std::fs::read_to_string(path) {
                Ok(text) => match super::parse(&file, &text) {
                    Ok(doc) => docs.push((path.clone(), doc)),
                    Err(err) => errors.push(err.to_string()),
                },
                Err(err) => errors.push(format!("policy {file}: cannot read: {err}")),
            }
        }
        match Self::from_documents(docs) {
            Ok(set) if errors.is_empty() => Ok(set),
            Ok(_) => Err(errors),
            Err(more) => {
                errors.extend(more);
                Err(errors)
            }
        }
    }

    pub fn from_documents(docs: Vec<(PathBuf, PolicyDocument)>) -> Result<PolicySet, Vec<String>> {
        let mut set = PolicySet::default();
        let mut errors = Vec::new();
        let mut seen: BTreeMap<(&'static str, String), PathBuf> = BTreeMap::new();
        let mut profile_files: BTreeMap<String, PathBuf> = BTreeMap::new();
        for (path, doc) in docs {
            if let Some(first) = seen.insert((doc.kind(), doc.name().to_string()), path.clone()) {
                errors.push(format!(
                    "policy {}: {} {:?} is already defined in {}",
                    path.display(),
                    doc.kind(),
                    doc.name(),
                    first.display()
                ));
                continue;
            }
            set.files.push(path);
            match doc {
                PolicyDocument::Grant(g) => {
                    set.grants.insert(g.metadata.name.clone(), g);
                }
                PolicyDocument::Profile(p) => {
                    profile_files.insert(p.metadata.name.clone(), set.files.last().cloned().unwrap_or_default());
                    set.profiles.insert(p.metadata.name.clone(), p);
                }
                PolicyDocument::Template(t) => {
                    set.templates.insert(t.metadata.name.clone(), t);
                }
            }
        }
        for profile in set.profiles.values() {
            let file = profile_files.get(&profile.metadata.name).map(|p| p.display().to_string()).unwrap_or_default();
            for name in &profile.spec.templates {
                match set.templates.get(name) {
                    None => errors.push(format!(
                        "policy {file}: AgentProfile {}: spec.templates names {name:?}, which no GrantTemplate defines",
                        profile.metadata.name
                    )),
                    // The base grant and the template must make one valid grant together.
                    Some(template) => {
                        if let Err(err) = merge(profile, &template.spec.grant).and_then(|spec| compile(profile, spec)) {
                            errors.push(format!(
                                "policy {file}: AgentProfile {} with template {name}: {err}",
                                profile.metadata.name
                            ));
                        }
                    }
                }
            }
        }
        if errors.is_empty() { Ok(set) } else { Err(errors) }
    }

    /// The grant for a task of `profile`, from `template` (filled with `vars`) or, without
    /// one, the profile's base grant alone.
    pub fn task_grant(
        &self,
        profile: &str,
        template: Option<&str>,
        vars: &BTreeMap<String, String>,
        builtins: &[(&str, String)],
    ) -> Result<TaskGrant, String> {
        let p = self.profiles.get(profile).ok_or_else(|| {
            let known: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
            format!("no AgentProfile {profile:?} in the daemon's policies (known: {})", list(&known))
        })?;
        let (spec, source) = if let Some(name) = template {
            if !p.spec.templates.iter().any(|t| t == name) {
                return Err(format!(
                    "AgentProfile {profile} may not use template {name:?} (its templates: {})",
                    list(&p.spec.templates.iter().map(String::as_str).collect::<Vec<_>>())
                ));
            }
            let t = self.templates.get(name).ok_or_else(|| format!("no GrantTemplate {name:?}"))?;
            let filled = t.fill(vars, builtins)?;
            (merge(p, &filled.spec)?, format!("profile {profile} + template {name}"))
        } else {
            if !vars.is_empty() {
                return Err("--var needs --template".into());
            }
            (p.base_spec(), format!("profile {profile} (base grant)"))
        };
        let name = template.unwrap_or(profile).to_string();
        let grant = Grant {
            api_version: crate::grant::ApiVersion::V1,
            kind: crate::grant::GrantKind::Grant,
            metadata: crate::grant::Metadata { name },
            spec,
        };
        Ok(TaskGrant { grant, source, max_ttl: p.spec.max_ttl })
    }
}

/// The `*.yaml` / `*.yml` files of `dir` (not recursive), in name order.
pub fn policy_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    Ok(files)
}

fn list(names: &[&str]) -> String {
    if names.is_empty() { "none".into() } else { names.join(", ") }
}

/// A template's grant with the profile's base rules added, validated. (Compiled when the
/// policies load, and by the daemon when a task opens: not here.)
fn merge(profile: &AgentProfile, grant: &GrantSpec) -> Result<GrantSpec, String> {
    let base = &profile.spec.base_grant;
    let mut spec = grant.clone();
    spec.files.read.extend(base.files.read.iter().cloned());
    spec.files.write.extend(base.files.write.iter().cloned());
    spec.exec.extend(base.exec.iter().cloned());
    spec.network.connect.extend(base.network.connect.iter().cloned());
    if spec.ttl.is_some_and(|ttl| ttl > profile.spec.max_ttl) {
        spec.ttl = Some(profile.spec.max_ttl);
    }
    spec.validate()?;
    Ok(spec)
}

/// Whether the merged grant compiles (port rules per prefix, actions).
fn compile(profile: &AgentProfile, spec: GrantSpec) -> Result<(), String> {
    let grant = Grant {
        api_version: crate::grant::ApiVersion::V1,
        kind: crate::grant::GrantKind::Grant,
        metadata: profile.metadata.clone(),
        spec,
    };
    CompiledGrant::compile(&grant).map(drop).map_err(|e| e.to_string())
}
