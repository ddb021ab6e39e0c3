//! Approval channels besides the CLI: where held actions and access requests are asked, and
//! where signed answers come back from (Slack, Microsoft Teams, a generic webhook). Each
//! channel is configured in the daemon's config (`approvals`); none is on by default.
//!
//! The flow is one way each: the registry hands questions and outcomes to `Channels`
//! (`tasks/channels.rs`, never waiting on a network), a sender task posts them (send.rs);
//! callbacks arrive at the listener (callback.rs), are verified (sign.rs), and go to
//! `Registry::decide` like a CLI answer, with the channel's identity of the approver. A callback that does not verify changes nothing,
//! and is logged, reported (`approval.callback_refused`) and counted.

mod callback;
mod message;
mod send;
pub mod sign;

use std::{
    path::Path,
    sync::{Arc, Mutex, atomic::AtomicU64},
};

use crate::daemon::{
    config::ApprovalsConfig,
    tasks::{channels::Channels, registry::Registry},
};

/// A channel that cannot be started.
#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    #[error("approvals.{channel}: {what} {path}: {source}")]
    Secret { channel: &'static str, what: &'static str, path: std::path::PathBuf, source: std::io::Error },
    #[error("approvals.{channel}: {what} {path} is empty")]
    EmptySecret { channel: &'static str, what: &'static str, path: std::path::PathBuf },
    #[error("approvals.listen {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("approvals: HTTP client: {0}")]
    Client(String),
}

/// The secrets of the configured channels, read at start.
struct Secrets {
    slack_token: Option<String>,
    slack_signing: Option<Vec<u8>>,
    teams_token: Option<String>,
    webhook: Option<Vec<u8>>,
}

fn read_secret(channel: &'static str, what: &'static str, path: &Path) -> Result<String, ApproveError> {
    let text = std::fs::read_to_string(path).map_err(|source| ApproveError::Secret {
        channel,
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(ApproveError::EmptySecret { channel, what, path: path.to_path_buf() });
    }
    Ok(text)
}

/// Starts the configured channels: reads their secrets, binds the callback listener (a taken
/// port fails the start), and gives the registry its `Channels`. Nothing when none is set.
pub async fn start(
    config: &ApprovalsConfig,
    registry: Arc<Mutex<Registry>>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<Vec<tokio::task::JoinHandle<()>>, ApproveError> {
    let Some(listen) = config.listen else { return Ok(Vec::new()) };
    let secrets = Secrets {
        slack_token: config
            .slack
            .as_ref()
            .map(|s| read_secret("slack", "botTokenFile", &s.bot_token_file))
            .transpose()?,
        slack_signing: config
            .slack
            .as_ref()
            .map(|s| read_secret("slack", "signingSecretFile", &s.signing_secret_file).map(String::into_bytes))
            .transpose()?,
        teams_token: config
            .teams
            .as_ref()
            .map(|t| read_secret("teams", "securityTokenFile", &t.security_token_file))
            .transpose()?,
        webhook: config
            .webhook
            .as_ref()
            .map(|w| read_secret("webhook", "secretFile", &w.secret_file).map(String::into_bytes))
            .transpose()?,
    };
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|source| ApproveError::Bind { addr: listen, source })?;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|err| ApproveError::Client(err.to_string()))?;
    let refused = Arc::new(AtomicU64::new(0));
    let secrets = Arc::new(secrets);
    let (queues, mut tasks) = send::start(config, &secrets, &client);
    // As the kernel sees them (a symlinked /etc/agent-guard is judged where it leads).
    let secret_paths =
        config.secret_files().iter().map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())).collect();
    registry.lock().expect("registry lock is never poisoned").channels =
        Channels::new(queues, refused.clone(), secret_paths);
    tasks.push(tokio::spawn(callback::serve(listener, secrets, registry, refused, shutdown)));
    tracing::info!(%listen, slack = config.slack.is_some(), teams = config.teams.is_some(), webhook = config.webhook.is_some(), "approval channels started");
    Ok(tasks)
}
