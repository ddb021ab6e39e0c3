//! `agent-guard policy check PATH...` and `agent-guard policy schema`: validate policy files
//! without a daemon, exactly as the daemon would (parse, validate, compile, cross-check).

use std::{path::PathBuf, process::ExitCode};

use crate::{
    grant::CompiledGrant,
    policy::{PolicyDocument, PolicySet, json_schema},
};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Check policy files (Grant, GrantTemplate, AgentProfile) and directories of them, together:
    /// every error names the file, line and column; exits 1 if any fails.
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print the JSON Schema of policy files (for editors).
    Schema,
}

/// The files named, with directories expanded to their *.yaml / *.yml files.
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| format!("policy directory {}: {e}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn summary(doc: &PolicyDocument) -> String {
    match doc {
        PolicyDocument::Grant(g) => {
            let compiled = CompiledGrant::compile(g).expect("parse compiles grants");
            format!("Grant {} ({} path entries, {} network prefixes)", g.metadata.name, compiled.paths.len(), compiled.nets.len())
        }
        PolicyDocument::Profile(p) => {
            format!("AgentProfile {} (max ttl {}, templates: {})", p.metadata.name, humantime::format_duration(p.spec.max_ttl), p.spec.templates.join(", "))
        }
        PolicyDocument::Template(t) => {
            let vars: Vec<&str> = t.spec.variables.keys().map(String::as_str).collect();
            format!("GrantTemplate {} (variables: {})", t.metadata.name, vars.join(", "))
        }
    }
}

pub fn main(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check { paths } => {
            let files = match expand(&paths) {
                Ok(files) => files,
                Err(err) => {
                    eprintln!("{err}");
                    return Ok(ExitCode::from(1));
                }
            };
            let mut failed = 0;
            let mut docs = Vec::new();
            for path in &files {
                let file = path.display().to_string();
                let parsed = std::fs::read_to_string(path)
                    .map_err(|e| format!("policy {file}: cannot read: {e}"))
                    .and_then(|text| crate::policy::parse(&file, &text).map_err(|e| e.to_string()));
                match parsed {
                    Ok(doc) => {
                        println!("{file}: ok: {}", summary(&doc));
                        docs.push((path.clone(), doc));
                    }
                    Err(err) => {
                        failed += 1;
                        eprintln!("{err}");
                    }
                }
            }
            // Across files: unique names, templates that profiles name.
            if let Err(errors) = PolicySet::from_documents(docs) {
                for err in errors {
                    failed += 1;
                    eprintln!("{err}");
                }
            }
            Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Schema => {
            print!("{}", json_schema());
            Ok(ExitCode::SUCCESS)
        }
    }
}
