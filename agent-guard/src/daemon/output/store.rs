//! The local audit store as an output: every event, in batches of one transaction each, and
//! the retention applied hourly (`crate::audit` holds the store itself). Rows are indexed from
//! what the hub already knows of each event: no JSON is parsed back.
//!
//! A failed batch (the database busy past its 5 s timeout, a full disk) is retried with
//! backoff, since this output is waited for: the backlog stays in the kernel's ring buffer
//! meanwhile, where overflow is counted.

use std::time::{Duration, Instant, SystemTime};

use super::{LocalWriter, Lost};
use crate::audit::{Row, Store};
use crate::daemon::events::schema::Decision;

const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Attempts per batch before it is given up (counted as dropped).
const ATTEMPTS: u32 = 5;

pub fn writer(mut store: Store) -> LocalWriter {
    // Without it the writer checkpoints as SQLite does by default, in its commits: slower, safe.
    let checkpointer = store
        .checkpoint_in_background()
        .inspect_err(|err| tracing::warn!(%err, "audit store: checkpoints stay in the writer"))
        .ok();
    let mut pruned = Instant::now().checked_sub(PRUNE_EVERY).unwrap();
    Box::new(move |batch| {
        // Owned by the writer, so that it stops (after a last checkpoint) when the writer does.
        let _ = &checkpointer;
        if pruned.elapsed() >= PRUNE_EVERY {
            match store.prune(SystemTime::now()) {
                Ok(0) => {}
                Ok(n) => tracing::info!("audit store: {n} events past retention removed"),
                Err(err) => tracing::error!(%err, "audit store: pruning failed"),
            }
            pruned = Instant::now();
        }
        let rows = || {
            batch.iter().map(|r| Row {
                event_id: r.id(),
                time: r.time(),
                time_ms: i64::try_from(r.epoch_ms).unwrap_or(i64::MAX),
                kind: r.kind().as_str(),
                decision: r.decision().map(Decision::as_str),
                task_id: r.task(),
                agent: r.agent(),
                rule: r.rule(),
                weight: i64::try_from(r.weight()).unwrap_or(i64::MAX),
                json: &r.line,
            })
        };
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            match store.insert_rows(rows()) {
                Ok(_) => return Ok(()),
                Err(err) if attempt < ATTEMPTS => {
                    tracing::warn!(%err, "audit store: batch of {} failed (attempt {attempt}); retrying", batch.len());
                    std::thread::sleep(backoff);
                    backoff *= 4;
                    attempt += 1;
                }
                Err(err) => return Err(Lost { count: batch.len() as u64, why: err.to_string() }),
            }
        }
    })
}
