//! The local audit store and per-task evidence reports. The daemon hands every event it
//! writes to the store (at least once: an event seen twice is stored once); auditors read the
//! store with `agent-guard audit` and `agent-guard report`, with the daemon up or down.
//! Events are handled as JSON values (their serialized form, docs/events.md) so that the
//! store keeps fields this code does not know yet. See docs/audit.md.

mod checkpoint;
mod event;
mod lifecycle;
mod narrow;
mod render_html;
mod render_md;
mod report;
mod store;

#[cfg(test)]
mod report_tests;
#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod test_events;

use std::path::PathBuf;

pub use event::{object_of, parse_ms, typed};
pub use lifecycle::TaskRow;
pub use report::Report;
pub use store::{Query, Row, Store};

/// Where the daemon keeps the store unless told otherwise (its config's default, defined there:
/// the daemon's config may not import the audit store, which imports the event schema).
pub use crate::daemon::config::DEFAULT_AUDIT_STORE as DEFAULT_STORE;

/// The audit store cannot be opened, read or written, or lacks what was asked.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit store {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("audit store {path} does not exist (the daemon creates it; see --store)")]
    Missing { path: PathBuf },
    #[error("audit store {path}: {source}")]
    Sql { path: PathBuf, source: rusqlite::Error },
    #[error("audit store {path}: schema version {found}, this agent-guard knows up to {known}: upgrade agent-guard")]
    SchemaVersion { path: PathBuf, found: i64, known: i64 },
    #[error("audit store {path}: stored event {seq} is not valid JSON: {source}")]
    Corrupt { path: PathBuf, seq: i64, source: serde_json::Error },
    /// An event lacking what the store indexes (`event_id`, `time`, `kind`).
    #[error("event {event}: {message}")]
    BadEvent { event: String, message: String },
    #[error("no events of task {task} (or of that task instance) in the audit store")]
    UnknownTask { task: u32 },
    #[error("report of task {task}: {source}")]
    Json { task: u32, source: serde_json::Error },
}
