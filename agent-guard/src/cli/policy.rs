//! `agent-guard policy check PATH...` and `agent-guard policy schema`: validate policy files
//! without a daemon, exactly as the daemon would (parse, validate, compile, cross-check).

use std::{path::PathBuf, process::ExitCode};

use crate::{
    grant::CompiledGrant,
    policy::{PolicyDocument, PolicySet, json_schema, policy_files},
};

/// `agent-guard policy`.
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
    /// What a grant file decides about one action, from the reference evaluator (the same
    /// rules the kernel applies): prints `allow`, `flag`, `ask`, `deny` or `out-of-scope`, and
    /// the deciding rule.
    Eval {
        grant: PathBuf,
        /// A destination: ADDR:PORT, [ADDR6]:PORT, optionally /tcp (default) or /udp.
        #[arg(long, conflicts_with = "path")]
        connect: Option<String>,
        /// A path, with --access.
        #[arg(long, requires = "access")]
        path: Option<String>,
        #[arg(long, value_parser = ["read", "write", "exec"])]
        access: Option<String>,
    },
}

fn eval(
    grant: &PathBuf,
    connect: Option<String>,
    path: Option<String>,
    access: Option<String>,
) -> anyhow::Result<String> {
    use agent_guard_common::path::{ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE, Decision};
    let file = grant.display().to_string();
    let grant = crate::grant::Grant::parse(&file, &std::fs::read_to_string(grant)?)?;
    let name = |d: Decision| match d {
        Decision::Allow => "allow",
        Decision::Flag => "flag",
        Decision::Ask => "ask",
        Decision::Deny => "deny",
        Decision::OutOfScope => "out-of-scope",
    };
    if let Some(target) = connect {
        let (dest, proto) = match target.rsplit_once('/') {
            Some((d, "udp")) => (d, agent_guard_common::net::PROTO_UDP),
            Some((d, "tcp")) => (d, agent_guard_common::net::PROTO_TCP),
            _ => (target.as_str(), agent_guard_common::net::PROTO_TCP),
        };
        let addr: std::net::SocketAddr = dest.parse().map_err(|_| anyhow::anyhow!("{dest:?} is not ADDR:PORT"))?;
        let mapped = crate::grant::mapped(addr.ip());
        return Ok(match grant.connect_rule(&mapped, addr.port(), proto) {
            None => "out-of-scope".to_string(),
            Some((index, rule)) => {
                let decision = match rule.action {
                    crate::grant::RuleAction::Deny => Decision::Deny,
                    crate::grant::RuleAction::Flag => Decision::Flag,
                    _ => Decision::Allow,
                };
                format!("{} {}", name(decision), grant.net_rule_name(index).unwrap_or_default())
            }
        });
    }
    let (Some(path), Some(access)) = (path, access) else { anyhow::bail!("give --connect, or --path with --access") };
    let need = match access.as_str() {
        "read" => ACCESS_READ,
        "write" => ACCESS_WRITE,
        _ => ACCESS_EXEC,
    };
    let (decision, rule) = grant.path_decision(&path, need);
    Ok(format!("{} {}", name(decision), rule.unwrap_or_default()).trim_end().to_string())
}

/// The files named, with directories expanded to their *.yaml / *.yml files.
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            files.extend(policy_files(path).map_err(|e| format!("policy directory {}: {e}", path.display()))?);
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
            format!(
                "Grant {} ({} path entries, {} network prefixes)",
                g.metadata.name,
                compiled.paths.len(),
                compiled.nets.len()
            )
        }
        PolicyDocument::Profile(p) => {
            format!(
                "AgentProfile {} (max ttl {}, templates: {})",
                p.metadata.name,
                humantime::format_duration(p.spec.max_ttl),
                p.spec.templates.join(", ")
            )
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
        Command::Eval { grant, connect, path, access } => {
            println!("{}", eval(&grant, connect, path, access)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema => {
            print!("{}", json_schema());
            Ok(ExitCode::SUCCESS)
        }
    }
}
