//! Policy reloads: on SIGHUP, and when a file of the policy directory changes (inotify, via
//! the notify crate). Changes are debounced (an editor writes a file in several steps) and
//! applied whole or not at all (Registry::reload_policies). Enforcement never pauses: the
//! grants of running tasks live in kernel maps a reload does not touch.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use notify::{RecursiveMode, Watcher};
use tokio::signal::unix::{SignalKind, signal};

use super::registry::Registry;

/// Quiet time after the last change before reading the directory.
const DEBOUNCE: Duration = Duration::from_millis(250);

pub async fn watch(dir: PathBuf, registry: Arc<Mutex<Registry>>) {
    let (tx, mut changes) = tokio::sync::mpsc::unbounded_channel::<()>();
    // Kept alive for as long as this task runs.
    let _watcher = match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    }) {
        Ok(mut watcher) => match watcher.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => Some(watcher),
            Err(err) => {
                tracing::warn!(dir = %dir.display(), %err, "policy directory not watched; reload with SIGHUP");
                None
            }
        },
        Err(err) => {
            tracing::warn!(%err, "no file watcher; reload policies with SIGHUP");
            None
        }
    };
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => hangup,
        Err(err) => {
            tracing::error!(%err, "cannot handle SIGHUP");
            return;
        }
    };
    loop {
        let why = tokio::select! {
            _ = hangup.recv() => "SIGHUP",
            Some(()) = changes.recv() => {
                // Let a burst of writes settle, and fold it into one reload.
                while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, changes.recv()).await {}
                "policy files changed"
            }
        };
        registry.lock().expect("registry lock is never poisoned").reload_policies(why);
    }
}
