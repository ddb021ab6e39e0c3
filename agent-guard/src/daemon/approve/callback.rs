//! The callback listener: the channels' answers, verified before anything is read from them.
//! `POST /slack/actions` (a Block Kit button), `POST /teams/messages` (an Outgoing Webhook
//! mention: `approve 12`, `deny 12`), `POST /webhook/decision` (`{"approval": 12, "decision":
//! "approve", "user": "oncall"}`). Each verified answer goes to `Registry::decide` with the
//! channel's identity of the approver, where the profile's allowlist and the no-self-approval
//! rule apply as for the CLI.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use axum::{
    body::Bytes,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use super::{Secrets, sign};
use crate::{
    api::ErrorCode,
    daemon::{
        events::schema::{Approver, Body, Channel, Event, Note},
        tasks::{Decider, registry::Registry},
    },
};

struct State {
    secrets: Arc<Secrets>,
    registry: Arc<Mutex<Registry>>,
    refused: Arc<AtomicU64>,
    /// Signatures of verified callbacks, until they are too old to verify anyway: the same
    /// signed request twice is a replay.
    seen: Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// How long a signature is remembered: past the timestamp window, it no longer verifies.
const SEEN_FOR: std::time::Duration = std::time::Duration::from_secs(2 * sign::MAX_SKEW_SECS + 60);

/// The refusal of a callback whose signature did not verify (`checked`) or was seen already;
/// None when it is authentic and new (its `signature` is then remembered).
fn unauthentic(
    state: &State,
    channel: Channel,
    checked: Result<(), sign::Refused>,
    signature: Option<&str>,
) -> Option<Response> {
    if let Err(why) = checked {
        return Some(refuse(state, channel, StatusCode::UNAUTHORIZED, &why.to_string()));
    }
    if replayed(state, signature) {
        return Some(refuse(
            state,
            channel,
            StatusCode::CONFLICT,
            "replayed: this signed callback was received already",
        ));
    }
    None
}

/// Whether `signature` was seen already (and remembers it).
fn replayed(state: &State, signature: Option<&str>) -> bool {
    let Some(signature) = signature else { return false };
    let now = std::time::Instant::now();
    let mut seen = state.seen.lock().expect("seen lock is never poisoned");
    seen.retain(|_, at| now.duration_since(*at) < SEEN_FOR);
    seen.insert(signature.to_string(), now).is_some()
}

/// Serves callbacks on `listener` until `shutdown`.
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    secrets: Arc<Secrets>,
    registry: Arc<Mutex<Registry>>,
    refused: Arc<AtomicU64>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let state = Arc::new(State { secrets, registry, refused, seen: Mutex::default() });
    let route = |handler: fn(&State, &HeaderMap, &[u8]) -> Response| {
        let state = state.clone();
        axum::routing::post(move |headers: HeaderMap, body: Bytes| async move { handler(&state, &headers, &body) })
    };
    let app = axum::Router::new()
        .route("/slack/actions", route(slack))
        .route("/teams/messages", route(teams))
        .route("/webhook/decision", route(webhook));
    if let Err(err) = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
    {
        tracing::error!(%err, "approval callback listener stopped");
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Refuses a callback: logged, reported and counted; nothing else happens.
fn refuse(state: &State, channel: Channel, status: StatusCode, why: &str) -> Response {
    state.refused.fetch_add(1, Ordering::Relaxed);
    let channel_name = crate::api::wire_name(&channel);
    tracing::warn!(channel = %channel_name, %why, "approval callback refused");
    let reg = state.registry.lock().expect("registry lock is never poisoned");
    let reason = format!("{channel_name} callback refused: {}", crate::text::printable(why));
    reg.sink.send(Event::new(Body::CallbackRefused(Note { reason }), &reg.host, SystemTime::now()));
    (status, format!("refused: {why}\n")).into_response()
}

/// Decides approval `id` for `approver`: the channel's answer made by `answer` from the
/// outcome, or the refusal.
fn decide(state: &State, approver: Approver, id: u32, approve: bool, answer: fn(&str) -> Response) -> Response {
    let channel = approver.channel;
    let by = Decider { approver, actor: None };
    let mut reg = state.registry.lock().expect("registry lock is never poisoned");
    let result = reg.decide(id, approve, None, Some(&by));
    let saving = reg.persist();
    drop(reg);
    saving.wait();
    match result {
        Ok(info) => answer(&format!("approval {id}: {}", info.state.words())),
        Err(refusal) => {
            let status = match refusal.code {
                ErrorCode::NotFound => StatusCode::NOT_FOUND,
                ErrorCode::Forbidden => StatusCode::FORBIDDEN,
                ErrorCode::BadRequest => StatusCode::CONFLICT,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            refuse(state, channel, status, &refusal.message)
        }
    }
}

/// The part of a Slack `block_actions` payload read here.
#[derive(Deserialize)]
struct SlackPayload {
    #[serde(rename = "type")]
    kind: String,
    user: SlackUser,
    #[serde(default)]
    actions: Vec<SlackAction>,
}

#[derive(Deserialize)]
struct SlackUser {
    id: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct SlackAction {
    action_id: String,
    #[serde(default)]
    value: String,
}

fn slack(state: &State, headers: &HeaderMap, body: &[u8]) -> Response {
    let Some(secret) = &state.secrets.slack_signing else {
        return refuse(state, Channel::Slack, StatusCode::NOT_FOUND, "Slack is not configured");
    };
    let checked = sign::slack(
        secret,
        header(headers, "x-slack-request-timestamp"),
        header(headers, "x-slack-signature"),
        body,
        sign::now_secs(),
    );
    if let Some(refused) = unauthentic(state, Channel::Slack, checked, header(headers, "x-slack-signature")) {
        return refused;
    }
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let payload =
        form.iter().find(|(k, _)| k == "payload").and_then(|(_, v)| serde_json::from_str::<SlackPayload>(v).ok());
    let Some(payload) = payload.filter(|p| p.kind == "block_actions") else {
        return refuse(state, Channel::Slack, StatusCode::BAD_REQUEST, "not a block_actions payload");
    };
    let Some(action) = payload.actions.first() else {
        return refuse(state, Channel::Slack, StatusCode::BAD_REQUEST, "no action");
    };
    let (Ok(id), approve) = (action.value.parse::<u32>(), action.action_id == "approve") else {
        return refuse(state, Channel::Slack, StatusCode::BAD_REQUEST, "the action names no approval");
    };
    if !approve && action.action_id != "deny" {
        return refuse(state, Channel::Slack, StatusCode::BAD_REQUEST, "unknown action");
    }
    let name = payload.user.username.or(payload.user.name);
    let approver = Approver { channel: Channel::Slack, id: payload.user.id, name };
    // Slack wants a quick 200; the message itself is updated with the outcome (chat.update).
    decide(state, approver, id, approve, |_| StatusCode::OK.into_response())
}

/// The part of a Teams activity read here.
#[derive(Deserialize)]
struct TeamsActivity {
    #[serde(default)]
    text: String,
    #[serde(default)]
    timestamp: Option<String>,
    from: TeamsFrom,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TeamsFrom {
    #[serde(default)]
    aad_object_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

fn teams(state: &State, headers: &HeaderMap, body: &[u8]) -> Response {
    let Some(token) = &state.secrets.teams_token else {
        return refuse(state, Channel::Teams, StatusCode::NOT_FOUND, "Teams is not configured");
    };
    let authorization = header(headers, "authorization");
    let checked = sign::teams(token, authorization, body);
    if let Some(refused) = unauthentic(state, Channel::Teams, checked, authorization) {
        return refused;
    }
    let Ok(activity) = serde_json::from_slice::<TeamsActivity>(body) else {
        return refuse(state, Channel::Teams, StatusCode::BAD_REQUEST, "not a Teams activity");
    };
    // The signature covers the body, so its timestamp is the sender's: replays are refused.
    if let Err(why) = sign::fresh_rfc3339(activity.timestamp.as_deref(), sign::now_secs()) {
        return refuse(state, Channel::Teams, StatusCode::UNAUTHORIZED, &why.to_string());
    }
    let Some(id) = activity.from.aad_object_id.filter(|id| !id.is_empty()) else {
        return refuse(state, Channel::Teams, StatusCode::BAD_REQUEST, "the activity names no Entra user");
    };
    // "<at>agent-guard</at> approve 12": the words after the mention.
    let text = activity.text.rsplit("</at>").next().unwrap_or_default();
    let words: Vec<&str> = text.split_whitespace().collect();
    let (approve, approval) = match words.as_slice() {
        ["approve", n] => (true, n.parse::<u32>()),
        ["deny", n] => (false, n.parse::<u32>()),
        _ => return teams_reply("Write `approve ID` or `deny ID`."),
    };
    let Ok(approval) = approval else { return teams_reply("Write `approve ID` or `deny ID`.") };
    let approver = Approver { channel: Channel::Teams, id, name: activity.from.name };
    decide(state, approver, approval, approve, teams_reply)
}

/// An Outgoing Webhook's reply, shown in the channel.
fn teams_reply(text: &str) -> Response {
    let body = serde_json::json!({"type": "message", "text": text}).to_string();
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A generic webhook's decision.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookDecision {
    approval: u32,
    decision: String,
    user: String,
    #[serde(default)]
    name: Option<String>,
}

fn webhook(state: &State, headers: &HeaderMap, body: &[u8]) -> Response {
    let Some(secret) = &state.secrets.webhook else {
        return refuse(state, Channel::Webhook, StatusCode::NOT_FOUND, "the webhook is not configured");
    };
    let checked = sign::webhook(
        secret,
        header(headers, "x-agent-guard-timestamp"),
        header(headers, "x-agent-guard-signature"),
        body,
        sign::now_secs(),
    );
    if let Some(refused) = unauthentic(state, Channel::Webhook, checked, header(headers, "x-agent-guard-signature")) {
        return refused;
    }
    let Ok(decision) = serde_json::from_slice::<WebhookDecision>(body) else {
        return refuse(state, Channel::Webhook, StatusCode::BAD_REQUEST, "not a decision");
    };
    let approve = match decision.decision.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return refuse(state, Channel::Webhook, StatusCode::BAD_REQUEST, "decision is approve or deny"),
    };
    let approver = Approver { channel: Channel::Webhook, id: decision.user, name: decision.name };
    decide(state, approver, decision.approval, approve, |text| (StatusCode::OK, format!("{text}\n")).into_response())
}
