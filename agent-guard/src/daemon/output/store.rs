//! The local audit store as an output: every event, in batches of one transaction each, and
//! the retention applied hourly (crate::audit holds the store itself).
//!
//! A failed batch (the database busy past its 5 s timeout, a full disk) is retried with
//! backoff, since this output is waited for: the backlog stays in the kernel's ring buffer
//! meanwhile, where overflow is counted. An event the store cannot index is skipped alone
//! (and counted), never its batch.

use std::time::{Duration, Instant, SystemTime};

use super::{LocalWriter, Lost};
use crate::audit::Store;

const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Attempts per batch before it is given up (counted as dropped).
const ATTEMPTS: u32 = 5;

pub fn writer(mut store: Store) -> LocalWriter {
    let mut pruned = Instant::now() - PRUNE_EVERY;
    Box::new(move |batch| {
        if pruned.elapsed() >= PRUNE_EVERY {
            match store.prune(SystemTime::now()) {
                Ok(0) => {}
                Ok(n) => tracing::info!("audit store: {n} events past retention removed"),
                Err(err) => tracing::error!(%err, "audit store: pruning failed"),
            }
            pruned = Instant::now();
        }
        let mut events = Vec::with_capacity(batch.len());
        let mut skipped = Vec::new();
        for rendered in batch {
            match serde_json::from_str::<serde_json::Value>(&rendered.line) {
                Ok(event) if crate::audit::indexable(&event) => events.push(event),
                _ => skipped.push(rendered.id.clone()),
            }
        }
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            match store.insert_batch(&events) {
                Ok(_) => break,
                Err(err) if attempt < ATTEMPTS => {
                    tracing::warn!(%err, "audit store: batch of {} failed (attempt {attempt}); retrying", events.len());
                    std::thread::sleep(backoff);
                    backoff *= 4;
                    attempt += 1;
                }
                Err(err) => return Err(Lost { count: batch.len() as u64, why: err.to_string() }),
            }
        }
        if skipped.is_empty() {
            Ok(())
        } else {
            Err(Lost {
                count: skipped.len() as u64,
                why: format!("events {} could not be indexed and were skipped", skipped.join(", ")),
            })
        }
    })
}
