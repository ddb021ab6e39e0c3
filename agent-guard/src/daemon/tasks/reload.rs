//! Policy reloads: on SIGHUP, and when a file of the policy directory changes (inotify, via
//! the notify crate). Changes are debounced (an editor writes a file in several steps) and
//! applied whole or not at all (`Registry::reload_policies`). Enforcement never pauses: the
//! grants of running tasks live in kernel maps a reload does not touch.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use notify::{RecursiveMode, Watcher};
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::mpsc::UnboundedReceiver,
};

use super::registry::Registry;

/// Quiet time after the last change before reading the directory.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Installs the watcher and the SIGHUP handler now — before the daemon serves, so that no
/// change made once it answers is missed and an early SIGHUP does not kill it (the default
/// action) — and returns the task that reloads on them.
pub fn start(dir: &std::path::Path, registry: Arc<Mutex<Registry>>) -> tokio::task::JoinHandle<()> {
    let (tx, changes) = tokio::sync::mpsc::unbounded_channel::<()>();
    let watcher = match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    }) {
        Ok(mut watcher) => match watcher.watch(dir, RecursiveMode::NonRecursive) {
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
    let hangup = signal(SignalKind::hangup()).map_err(|err| tracing::error!(%err, "cannot handle SIGHUP")).ok();
    tokio::spawn(async move {
        // Kept alive for as long as this task runs.
        let _watcher = watcher;
        watch(changes, hangup, registry).await;
    })
}

async fn watch(mut changes: UnboundedReceiver<()>, mut hangup: Option<Signal>, registry: Arc<Mutex<Registry>>) {
    loop {
        let signalled = async {
            match hangup.as_mut() {
                Some(hangup) => hangup.recv().await,
                None => std::future::pending().await,
            }
        };
        let why = tokio::select! {
            _ = signalled => "SIGHUP",
            Some(()) = changes.recv() => {
                // Let a burst of writes settle, and fold it into one reload.
                while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, changes.recv()).await {}
                "policy files changed"
            }
        };
        registry.lock().expect("registry lock is never poisoned").reload_policies(why);
    }
}
