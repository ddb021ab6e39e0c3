//! `agent-guard config check FILE`: the daemon's config file checked offline, exactly as the
//! daemon checks it at start (parse, validate, and the files its outputs read: tokens, keys,
//! certificates), without starting anything or writing anywhere.

use std::{path::PathBuf, process::ExitCode};

use crate::daemon::config::ConfigFile;

/// `agent-guard config`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Check a config file: every error gives its line and column; exits 1 if it fails.
    Check { file: PathBuf },
}

#[expect(clippy::unnecessary_wraps, reason = "every verb's main has this signature (cli/mod.rs dispatches on it)")]
pub fn main(command: &Command) -> anyhow::Result<ExitCode> {
    let Command::Check { file } = command;
    let checked = ConfigFile::load(file)
        .map_err(|err| err.to_string())
        .and_then(|config| crate::daemon::check_outputs(&config).map(|()| config).map_err(|err| err.to_string()));
    match checked {
        Ok(config) => {
            let outputs: Vec<String> = config.outputs.iter().map(crate::daemon::config::OutputConfig::name).collect();
            println!(
                "{}: ok (outputs: {}; audit store: {}; DNS resolvers: {})",
                crate::text::printable(&file.display().to_string()),
                if outputs.is_empty() {
                    "none".into()
                } else {
                    crate::text::printable(&outputs.join(", ")).into_owned()
                },
                config
                    .audit_store
                    .path
                    .as_ref()
                    .map_or("off".into(), |p| crate::text::printable(&p.display().to_string()).into_owned()),
                if config.dns.enabled { "on" } else { "off" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("{}", crate::text::printable(&err));
            Ok(ExitCode::from(1))
        }
    }
}
