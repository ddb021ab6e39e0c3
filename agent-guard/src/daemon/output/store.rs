//! The local audit store as an output: every event, in batches of one transaction each, and
//! the retention applied hourly (crate::audit holds the store itself).

use std::time::{Duration, Instant, SystemTime};

use super::LocalWriter;
use crate::audit::Store;

const PRUNE_EVERY: Duration = Duration::from_secs(3600);

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
        let events: Vec<serde_json::Value> = batch.iter().filter_map(|r| serde_json::from_str(&r.line).ok()).collect();
        if events.len() != batch.len() {
            return Err(format!("{} of {} events are not JSON", batch.len() - events.len(), batch.len()));
        }
        store.insert_batch(&events).map(|_| ()).map_err(|err| err.to_string())
    })
}
