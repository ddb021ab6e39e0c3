//! `approvals`: where held actions and access requests are asked besides the CLI, and where
//! the signed answers come back (docs/approvals.md).
//!
//! ```yaml
//! approvals:
//!   listen: 127.0.0.1:8095        # signed callbacks (HTTP; TLS is the reverse proxy's)
//!   slack:
//!     channel: C0123456789
//!     botTokenFile: /etc/agent-guard/secrets/slack-bot-token
//!     signingSecretFile: /etc/agent-guard/secrets/slack-signing-secret
//!   teams:
//!     webhookUrl: https://example.webhook.office.com/...   # where the card is posted
//!     securityTokenFile: /etc/agent-guard/secrets/teams-outgoing-token
//!   webhook:
//!     url: https://approvals.example.com/agent-guard
//!     secretFile: /etc/agent-guard/secrets/webhook-secret
//! ```

use std::{net::SocketAddr, path::PathBuf};

use serde::Deserialize;

/// The approval channels; none by default (the CLI only).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApprovalsConfig {
    /// `host:port` where the channels' signed callbacks are received (`POST /slack/actions`,
    /// `/teams/messages`, `/webhook/decision`). Needed by any channel.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    #[serde(default)]
    pub slack: Option<SlackConfig>,
    #[serde(default)]
    pub teams: Option<TeamsConfig>,
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
}

/// A Slack app: its bot posts the question (`chat.postMessage`) and updates it with the
/// outcome (`chat.update`); its interactivity request URL is `<listen>/slack/actions`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SlackConfig {
    /// The channel id the questions go to.
    pub channel: String,
    /// The bot token (`xoxb-…`), read at start.
    pub bot_token_file: PathBuf,
    /// The app's signing secret, read at start: callbacks are verified with it.
    pub signing_secret_file: PathBuf,
    /// Slack's Web API (a test points it at a local receiver).
    #[serde(default = "default_slack_api")]
    pub api_url: String,
}

fn default_slack_api() -> String {
    "https://slack.com/api".into()
}

/// Microsoft Teams: the question as an Adaptive Card posted to an incoming webhook (a Teams
/// Workflow), answered by mentioning an Outgoing Webhook (`approve 12`, `deny 12`) whose
/// callback URL is `<listen>/teams/messages`, signed with its security token.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TeamsConfig {
    pub webhook_url: String,
    /// The Outgoing Webhook's security token (base64, as Teams shows it), read at start.
    pub security_token_file: PathBuf,
}

/// A generic webhook (for `PagerDuty`, Jira or `ServiceNow` style flows): questions and
/// outcomes are sent to `url` (POST), signed; decisions come back to
/// `<listen>/webhook/decision`, signed the same way with the same secret.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookConfig {
    pub url: String,
    pub secret_file: PathBuf,
}

impl ApprovalsConfig {
    /// The secret files the channels read: whoever reads one can forge an approval, so no
    /// task may (the daemon protects them like its own files, daemon/mod.rs `guard_files`).
    pub fn secret_files(&self) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        if let Some(slack) = &self.slack {
            files.extend([slack.bot_token_file.clone(), slack.signing_secret_file.clone()]);
        }
        files.extend(self.teams.as_ref().map(|t| t.security_token_file.clone()));
        files.extend(self.webhook.as_ref().map(|w| w.secret_file.clone()));
        files
    }

    /// What serde cannot check: a channel needs `listen`, URLs parse.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let any = self.slack.is_some() || self.teams.is_some() || self.webhook.is_some();
        if any && self.listen.is_none() {
            return Err(("listen", "a channel needs `listen`: where its signed answers are received".into()));
        }
        let urls = [
            ("slack", self.slack.as_ref().map(|s| s.api_url.as_str())),
            ("teams", self.teams.as_ref().map(|t| t.webhook_url.as_str())),
            ("webhook", self.webhook.as_ref().map(|w| w.url.as_str())),
        ];
        for (key, url) in urls {
            if let Some(url) = url {
                let parsed = reqwest::Url::parse(url).map_err(|err| (key, format!("{url}: {err}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err((key, format!("{url}: only http and https")));
                }
            }
        }
        if let Some(slack) = &self.slack
            && (slack.channel.is_empty() || slack.channel.chars().any(|c| !c.is_ascii_alphanumeric()))
        {
            return Err(("slack", format!("channel {:?}: a Slack channel id (C0123456789)", slack.channel)));
        }
        Ok(())
    }
}
