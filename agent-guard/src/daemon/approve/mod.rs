//! Approval channels besides the CLI: where held actions and access requests are asked, and
//! where signed answers come back from (Slack, Microsoft Teams, a generic webhook). Each
//! channel is configured in the daemon's config (`approvals`); none is on by default.

use crate::api::ApprovalInfo;

/// The configured channels: each question and outcome is handed to them in order, off the
/// registry lock (a channel's sender runs on its own task).
#[derive(Default)]
pub struct Channels {
    outbox: Option<tokio::sync::mpsc::UnboundedSender<Notice>>,
}

/// What the senders are told.
#[derive(Clone, Debug)]
pub enum Notice {
    /// A new question.
    Ask(ApprovalInfo),
    /// A question's outcome (or, under the two-person rule, a first vote).
    Decided(ApprovalInfo),
}

impl Channels {
    /// Channels that hand their notices to `outbox`.
    pub fn new(outbox: tokio::sync::mpsc::UnboundedSender<Notice>) -> Channels {
        Channels { outbox: Some(outbox) }
    }

    pub fn send(&self, notice: Notice) {
        if let Some(outbox) = &self.outbox {
            let _ = outbox.send(notice);
        }
    }
}

impl crate::daemon::tasks::registry::Registry {
    /// Asks every channel about `info`.
    pub fn channels_ask(&self, info: &ApprovalInfo) {
        self.channels.send(Notice::Ask(info.clone()));
    }

    /// Tells every channel how `info` was decided.
    pub fn channels_decided(&self, info: &ApprovalInfo) {
        self.channels.send(Notice::Decided(info.clone()));
    }
}
