//! The senders, one task per channel so that a slow or failing one delays no other: each posts
//! every question, and its outcome after. A failure is logged and skipped; the question can
//! still be answered on the other channels and with the CLI, and the deadline refuses it if
//! nobody does.

use std::{collections::HashMap, sync::Arc};

use serde_json::Value;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::{Secrets, message, sign};
use crate::daemon::tasks::channels::Notice;
use crate::{api::ApprovalState, daemon::config::ApprovalsConfig};

/// Starts a sender per configured channel; returns their queues and tasks.
pub(super) fn start(
    config: &ApprovalsConfig,
    secrets: &Arc<Secrets>,
    client: &reqwest::Client,
) -> (Vec<UnboundedSender<Notice>>, Vec<tokio::task::JoinHandle<()>>) {
    let mut queues = Vec::new();
    let mut tasks = Vec::new();
    if let (Some(slack), Some(token)) = (&config.slack, &secrets.slack_token) {
        let (tx, rx) = unbounded_channel();
        queues.push(tx);
        tasks.push(tokio::spawn(slack_sender(slack.clone(), token.clone(), client.clone(), rx)));
    }
    if let Some(teams) = &config.teams {
        let (tx, rx) = unbounded_channel();
        queues.push(tx);
        tasks.push(tokio::spawn(teams_sender(teams.webhook_url.clone(), client.clone(), rx)));
    }
    if let (Some(webhook), Some(secret)) = (&config.webhook, &secrets.webhook) {
        let (tx, rx) = unbounded_channel();
        queues.push(tx);
        tasks.push(tokio::spawn(webhook_sender(webhook.url.clone(), secret.clone(), client.clone(), rx)));
    }
    (queues, tasks)
}

fn unpack(notice: &Notice) -> (&crate::api::ApprovalInfo, bool) {
    match notice {
        Notice::Ask(info) => (info, false),
        Notice::Decided(info) => (info, true),
    }
}

/// Posts each question (`chat.postMessage`) and updates that message with the outcome
/// (`chat.update`).
async fn slack_sender(
    slack: crate::daemon::config::SlackConfig,
    token: String,
    client: reqwest::Client,
    mut inbox: UnboundedReceiver<Notice>,
) {
    // Messages by approval id: their channel and `ts`.
    let mut posted: HashMap<u32, (String, String)> = HashMap::new();
    while let Some(notice) = inbox.recv().await {
        let (info, decided) = unpack(&notice);
        let result = match (decided, posted.get(&info.id)) {
            (true, Some((channel, ts))) => {
                let mut body = message::slack(channel, info, true);
                body["ts"] = Value::String(ts.clone());
                slack_call(&client, &slack.api_url, "chat.update", &token, &body).await.map(drop)
            }
            (true, None) => Ok(()),
            (false, _) => {
                let body = message::slack(&slack.channel, info, false);
                slack_call(&client, &slack.api_url, "chat.postMessage", &token, &body).await.map(|reply| {
                    if let (Some(channel), Some(ts)) = (reply["channel"].as_str(), reply["ts"].as_str()) {
                        posted.insert(info.id, (channel.to_string(), ts.to_string()));
                    }
                })
            }
        };
        if let Err(err) = result {
            tracing::warn!(approval = info.id, %err, "Slack: question or outcome not posted");
        }
        if decided && info.state != ApprovalState::Pending {
            posted.remove(&info.id);
        }
    }
}

/// Posts each question, and each outcome, as an Adaptive Card.
async fn teams_sender(url: String, client: reqwest::Client, mut inbox: UnboundedReceiver<Notice>) {
    while let Some(notice) = inbox.recv().await {
        let (info, _) = unpack(&notice);
        let body = serde_json::to_vec(&message::teams(info)).unwrap_or_default();
        if let Err(err) = post(&client, &url, body, &[]).await {
            tracing::warn!(approval = info.id, %err, "Teams: card not posted");
        }
    }
}

/// Posts each question and outcome, signed with the shared secret.
async fn webhook_sender(url: String, secret: Vec<u8>, client: reqwest::Client, mut inbox: UnboundedReceiver<Notice>) {
    while let Some(notice) = inbox.recv().await {
        let (info, decided) = unpack(&notice);
        let body = serde_json::to_vec(&message::webhook(info, decided)).unwrap_or_default();
        let (ts, signature) = sign::sign_webhook(&secret, &body, sign::now_secs());
        let headers = [("x-agent-guard-timestamp", ts), ("x-agent-guard-signature", signature)];
        if let Err(err) = post(&client, &url, body, &headers).await {
            tracing::warn!(approval = info.id, %err, "webhook: question or outcome not posted");
        }
    }
}

/// Calls Slack's Web API `method`; Slack answers 200 with `ok: false` on errors.
async fn slack_call(
    client: &reqwest::Client,
    api: &str,
    method: &str,
    token: &str,
    body: &Value,
) -> Result<Value, String> {
    let url = format!("{}/{method}", api.trim_end_matches('/'));
    let reply = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json; charset=utf-8")
        .body(serde_json::to_vec(body).unwrap_or_default())
        .send()
        .await
        .map_err(|err| err.to_string())?;
    let status = reply.status();
    let value: Value = reply.json().await.map_err(|err| format!("{method}: HTTP {status}: {err}"))?;
    if value["ok"] != Value::Bool(true) {
        return Err(format!("{method}: {}", value["error"].as_str().unwrap_or("not ok")));
    }
    Ok(value)
}

async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>, headers: &[(&str, String)]) -> Result<(), String> {
    let mut request = client.post(url).header("content-type", "application/json").body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let reply = request.send().await.map_err(|err| err.to_string())?;
    let status = reply.status();
    // Read to the end, so the connection goes back to the pool.
    let _ = reply.bytes().await;
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    Ok(())
}
