//! `agent-guard policy check PATH...` and `agent-guard policy schema`: validate grant files
//! without a daemon, exactly as the daemon would (parse, validate, compile).

use std::{path::PathBuf, process::ExitCode};

use crate::grant::{CompiledGrant, Grant, json_schema};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Check grant files: every error names the file, line and column; exits 1 if any fails.
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print the JSON Schema of grant files (for editors).
    Schema,
}

/// Parses, validates and compiles one grant file.
fn check(path: &PathBuf) -> Result<String, String> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("grant {file}: cannot read: {e}"))?;
    let grant = Grant::parse(&file, &text).map_err(|e| e.to_string())?;
    let compiled = CompiledGrant::compile(&grant).map_err(|e| format!("grant {file}: {e}"))?;
    Ok(format!(
        "{file}: ok (grant {}, {} path entries, {} network prefixes)",
        grant.metadata.name,
        compiled.paths.len(),
        compiled.nets.len()
    ))
}

pub fn main(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check { paths } => {
            let mut failed = 0;
            for path in &paths {
                match check(path) {
                    Ok(line) => println!("{line}"),
                    Err(err) => {
                        failed += 1;
                        eprintln!("{err}");
                    }
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
