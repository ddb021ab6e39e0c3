//! Checkpoints of the store's write-ahead log on a thread of their own. SQLite's automatic
//! checkpoint runs inside the writer's commit: it copies the log back into the database and
//! syncs it there, and the writer waits. Measured on this project's 2-CPU host, that was half
//! of the store's cost per event (BENCHMARKS.md). A second connection checkpoints instead,
//! every `EVERY`, passively (it never waits for the writer nor stops it); the writer keeps an
//! automatic checkpoint only as a backstop, should this thread fall far behind or fail.

use std::{
    path::{Path, PathBuf},
    sync::mpsc,
    thread::JoinHandle,
    time::Duration,
};

use rusqlite::{Connection, OpenFlags};

use super::AuditError;

/// How often the log is copied back.
const EVERY: Duration = Duration::from_millis(250);
/// The writer's own checkpoint threshold, in pages (4 KiB: 64 MiB of log) while this runs.
/// Under steady writes a passive checkpoint never quite catches up with the end of the log, so
/// the log only starts over after the writer's own checkpoint: little is left for it to copy
/// then, and this bounds the log on disk.
pub(super) const BACKSTOP_PAGES: i64 = 16_384;
/// The log file is cut back to this size when it restarts from its beginning.
pub(super) const LOG_LIMIT_BYTES: i64 = 64 << 20;

/// The checkpointing thread: stopped (after a last checkpoint) when dropped.
pub struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(super) fn start(path: &Path) -> Result<Checkpointer, AuditError> {
        let sql = |source| AuditError::Sql { path: path.to_path_buf(), source };
        // Never creates: a store gone since the writer opened it is not made anew with the umask.
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(sql)?;
        // A full sync before the log restarts (SQLite's default, stated: the restart relies on it).
        conn.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("audit-checkpoint".into())
            .spawn(move || run(&conn, &path, &stopped))
            .map_err(|source| AuditError::Io { path: PathBuf::from("audit-checkpoint thread"), source })?;
        Ok(Checkpointer { stop: Some(stop), thread: Some(thread) })
    }
}

fn run(conn: &Connection, path: &Path, stopped: &mpsc::Receiver<()>) {
    let mut failing = false;
    loop {
        let last = !matches!(stopped.recv_timeout(EVERY), Err(mpsc::RecvTimeoutError::Timeout));
        match (conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())), failing) {
            (Ok(()), true) => {
                tracing::info!(path = %path.display(), "audit store: checkpoints work again");
                failing = false;
            }
            (Err(err), false) => {
                // The writer's backstop checkpoint still bounds the log meanwhile.
                tracing::warn!(path = %path.display(), %err, "audit store: checkpoint failed");
                failing = true;
            }
            // Working as before, or failing as already reported.
            (Ok(()), false) | (Err(_), true) => {}
        }
        if last {
            return;
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
