//! What each channel is sent: the question (who asks, for what, why, until when) and its
//! outcome. Everything an agent controls (its name, intent, paths, reason) is untrusted: it
//! is escaped for the channel (`printable` for controls and bidi overrides, then the channel's
//! own markup) and cut to the channel's field limits.

use serde_json::{Value, json};

use crate::{
    api::{ApprovalInfo, ApprovalState},
    text::printable,
};

/// At most `max` characters of `text`, with controls escaped.
fn clip(text: &str, max: usize) -> String {
    let text = printable(text);
    if text.chars().count() <= max {
        return text.into_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// What is asked, as lines of (label, value).
fn facts(info: &ApprovalInfo) -> Vec<(&'static str, String)> {
    let mut out = vec![("Task", format!("{} ({})", info.task, info.agent)), ("Intent", info.intent.clone())];
    if let Some(request) = &info.request {
        out.push(("Asks for", request.rules.join(", ")));
        out.push((
            "For",
            humantime::format_duration(std::time::Duration::from_secs(request.duration_secs)).to_string(),
        ));
        out.push(("Reason", request.reason.clone()));
        if request.approvals_needed > 1 {
            out.push(("Approvers needed", request.approvals_needed.to_string()));
        }
    } else {
        let access = if info.access.is_empty() { String::new() } else { format!(" ({})", info.access.join("+")) };
        out.push(("Held", format!("{} {}{access} by pid {}", info.object, info.path, info.pid)));
    }
    out.push(("Answer by", info.deadline.clone()));
    out
}

fn title(info: &ApprovalInfo) -> String {
    let what = if info.request.is_some() { "Access request" } else { "Held action" };
    format!("agent-guard: {what} {}", info.id)
}

/// The outcome line, once decided.
fn outcome(info: &ApprovalInfo) -> String {
    let by = info.request.as_ref().map(|r| r.approved_by.join(" and ")).filter(|b| !b.is_empty());
    let until = info.request.as_ref().and_then(|r| r.until.clone()).map(|u| format!(" until {u}")).unwrap_or_default();
    match by {
        Some(by) if info.state == ApprovalState::Approved => format!("approved by {by}{until}"),
        Some(by) if info.state == ApprovalState::Pending => format!("approved by {by}; waiting for another approver"),
        _ => info.state.words().to_string(),
    }
}

/// Slack's `chat.postMessage` (and, with `decided`, `chat.update`) body for `info`: values as
/// `plain_text` (Slack parses no markup, mentions or links in it), buttons while pending.
pub fn slack(channel: &str, info: &ApprovalInfo, decided: bool) -> Value {
    let fields: Vec<Value> = facts(info)
        .into_iter()
        .map(|(label, value)| json!({"type": "plain_text", "emoji": false, "text": clip(&format!("{label}: {value}"), 1900)}))
        .collect();
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "emoji": false, "text": clip(&title(info), 150)}}),
    ];
    for chunk in fields.chunks(10) {
        blocks.push(json!({"type": "section", "fields": chunk}));
    }
    if decided || info.state != ApprovalState::Pending {
        blocks.push(json!({"type": "context", "elements": [{"type": "plain_text", "emoji": false, "text": clip(&outcome(info), 1900)}]}));
    }
    if info.state == ApprovalState::Pending {
        let value = info.id.to_string();
        blocks.push(json!({"type": "actions", "block_id": format!("agent-guard-{}", info.id), "elements": [
            {"type": "button", "action_id": "approve", "style": "primary", "value": value, "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": "deny", "style": "danger", "value": value, "text": {"type": "plain_text", "text": "Deny"}},
        ]}));
    }
    json!({"channel": channel, "text": clip(&format!("{}: {}", title(info), outcome(info)), 3000), "blocks": blocks})
}

/// Text for an Adaptive Card `TextBlock`, whose markdown subset is escaped.
fn card_text(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in clip(text, max).chars() {
        if matches!(c, '\\' | '*' | '_' | '[' | ']' | '(' | ')' | '#' | '`' | '<' | '>' | '!' | '-' | '+' | '~' | '|') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The Teams incoming-webhook message for `info`: an Adaptive Card, answered by mentioning
/// the Outgoing Webhook (`approve ID` / `deny ID`).
pub fn teams(info: &ApprovalInfo) -> Value {
    let mut body = vec![
        json!({"type": "TextBlock", "weight": "Bolder", "size": "Medium", "wrap": true, "text": card_text(&title(info), 200)}),
    ];
    let facts: Vec<Value> = facts(info)
        .into_iter()
        .map(|(label, value)| json!({"title": label, "value": card_text(&value, 2000)}))
        .collect();
    body.push(json!({"type": "FactSet", "facts": facts}));
    let footer = if info.state == ApprovalState::Pending {
        format!("Answer by mentioning agent-guard: approve {id} or deny {id}", id = info.id)
    } else {
        outcome(info)
    };
    body.push(json!({"type": "TextBlock", "wrap": true, "text": card_text(&footer, 2000)}));
    json!({"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive",
        "content": {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard", "version": "1.4", "body": body}
    }]})
}

/// The generic webhook's body: the approval as the API shows it.
pub fn webhook(info: &ApprovalInfo, decided: bool) -> Value {
    let kind = if decided { "approval.decided" } else { "approval.request" };
    json!({"type": kind, "approval": info, "answer": {"path": "/webhook/decision", "decisions": ["approve", "deny"]}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ApprovalInfo {
        ApprovalInfo {
            id: 7,
            task: 3,
            agent: "analyst".into(),
            intent: "close the books\u{1b}[2J\r<!channel> *bold*".into(),
            pid: 42,
            object: "access".into(),
            path: "files.read /srv/reports/**".into(),
            access: Vec::new(),
            requested: "t0".into(),
            deadline: "t1".into(),
            state: ApprovalState::Pending,
            request: Some(crate::api::RequestInfo {
                rules: vec!["files.read /srv/reports/**".into()],
                duration_secs: 600,
                reason: "x".repeat(5000),
                approvals_needed: 2,
                approved_by: Vec::new(),
                until: None,
            }),
        }
    }

    #[test]
    fn agent_text_reaches_slack_as_escaped_plain_text_within_limits() {
        let body = slack("C1", &request(), false);
        let text = body.to_string();
        assert!(!text.contains('\u{1b}') && !text.contains("\\r"), "{text}");
        for field in body["blocks"][1]["fields"].as_array().unwrap() {
            assert_eq!(field["type"], "plain_text");
            assert!(field["text"].as_str().unwrap().chars().count() <= 1900);
        }
        let buttons = &body["blocks"].as_array().unwrap().last().unwrap()["elements"];
        assert_eq!(buttons[0]["action_id"], "approve");
        assert_eq!(buttons[1]["value"], "7");
    }

    #[test]
    fn agent_text_reaches_teams_with_markdown_escaped() {
        let text = teams(&request()).to_string();
        assert!(text.contains("\\\\*bold\\\\*"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
    }
}
