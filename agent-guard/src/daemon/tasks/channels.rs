//! The registry's side of the approval channels (`approve/`): the queues it hands questions
//! and outcomes to, never waiting on a network. Here, not in `approve/`, so that the one-way
//! flow holds: `approve/` (its listener decides through the registry) uses `tasks/`, never
//! the reverse.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use agent_guard_common::path::{ACCESS_READ, ACCESS_WRITE, Decision};

use super::registry::Registry;
use crate::api::ApprovalInfo;

/// The configured channels, as the registry sees them: each sender's queue, and the count of
/// refused callbacks.
#[derive(Default)]
pub struct Channels {
    queues: Vec<tokio::sync::mpsc::UnboundedSender<Notice>>,
    refused: Arc<AtomicU64>,
    /// The channels' secret files, resolved: no task may be able to read one.
    secrets: Vec<std::path::PathBuf>,
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
    /// The channels' queues (their senders read them, `approve/send.rs`), the count of refused
    /// callbacks their listener keeps, and their secret files.
    pub fn new(
        queues: Vec<tokio::sync::mpsc::UnboundedSender<Notice>>,
        refused: Arc<AtomicU64>,
        secrets: Vec<std::path::PathBuf>,
    ) -> Channels {
        Channels { queues, refused, secrets }
    }

    fn send(&self, notice: &Notice) {
        for queue in &self.queues {
            let _ = queue.send(notice.clone());
        }
    }

    /// Callbacks refused since start (bad signature, stale, unknown request, not an approver).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The first secret file `spec` would let a task read (where only the grant, not BPF LSM,
    /// stands between the task and the daemon's files).
    pub fn secret_readable_by(&self, spec: &crate::grant::GrantSpec) -> Option<&std::path::Path> {
        self.secrets.iter().map(std::path::PathBuf::as_path).find(|path| {
            // Read or written (replaced by a key of the agent's choosing): allowed, flagged, or
            // asked (the question may be approved).
            [ACCESS_READ, ACCESS_WRITE].into_iter().any(|need| {
                matches!(
                    spec.path_decision(&path.to_string_lossy(), need).0,
                    Decision::Allow | Decision::Flag | Decision::Ask
                )
            })
        })
    }
}

impl Registry {
    /// Asks every channel about `info`.
    pub fn channels_ask(&self, info: &ApprovalInfo) {
        self.channels.send(&Notice::Ask(info.clone()));
    }

    /// Tells every channel how `info` was decided.
    pub fn channels_decided(&self, info: &ApprovalInfo) {
        self.channels.send(&Notice::Decided(info.clone()));
    }
}
