//! The daemon's state directory: each open task saved when it changes, so that a daemon that
//! is killed, crashes or is upgraded is followed by one that adopts them (same ids, grants,
//! expiries), and a lock that keeps two daemons from adopting the same guard.
//!
//! The kernel side survives in bpffs (kernel.rs); this is the userspace half. A task the
//! kernel holds but this file does not know (a write lost to a crash) is not trusted: the
//! adopting daemon revokes it (registry.rs `adopt`).

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use serde::{Deserialize, Serialize};

use crate::{api::TaskInfo, grant::Grant};

use crate::daemon::events::schema::Usage;

/// The state directory cannot be locked, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("state directory {path} is in use by another agent-guard daemon (pid in {path}/lock)")]
    Locked { path: PathBuf },
    #[error("state file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("state file {path} is not a saved agent-guard state: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
}

/// What a restarted daemon needs to carry on: every open task, and the id counter.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Saved {
    /// The next task id: ids are never reused, across restarts too.
    pub next_id: u32,
    /// The next approval id, never reused either: a channel's answer names an approval by
    /// id, and one given to an earlier daemon must not decide a new question.
    pub next_approval: u32,
    /// Kernel records lost so far (`EVENT_DROPS` is pinned and keeps counting).
    pub dropped_total: u64,
    pub tasks: Vec<SavedTask>,
    /// `approve --for` allowances in force.
    pub temporary: Vec<SavedAllow>,
}

/// An open task as saved in the state directory.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SavedTask {
    pub info: TaskInfo,
    pub grant: Grant,
    pub expires_ns: u64,
    pub latest_ns: Option<u64>,
    pub moved_out: u64,
    pub cgroup: PathBuf,
    pub usage: Usage,
    pub drops_at_open: u64,
    /// Absent in states saved before access requests: a task opened from a grant file.
    #[serde(default)]
    pub access: Option<super::requests::TaskAccess>,
}

/// A temporary allowance (`approve --for`) as saved.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SavedAllow {
    pub task_id: u32,
    pub hash: u64,
    /// The path rule to put back when the allowance ends: (exact, children, subtree, below),
    /// or none when there was no rule.
    pub previous: Option<[u32; 4]>,
    /// `CLOCK_BOOTTIME` of the end.
    pub until_ns: u64,
    /// The approved bits it added (absent in states of older daemons).
    #[serde(default)]
    pub bits: u32,
}

/// The counters and allowances, saved whole (small) in `meta.json`.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub next_id: u32,
    /// Absent in states of older daemons.
    #[serde(default)]
    pub next_approval: u32,
    pub dropped_total: u64,
    pub temporary: Vec<SavedAllow>,
}

/// The state directory, locked for this daemon's lifetime: `meta.json`, and one file per open
/// task under `tasks/` (written when that task changes: saving never costs more than the
/// tasks that changed).
pub struct StateDir {
    dir: PathBuf,
    /// Holds the lock (flock, released by the kernel when the daemon dies however it dies).
    _lock: nix::fcntl::Flock<std::fs::File>,
    /// What `meta.json` last held, so that an unchanged one is not written again.
    last_meta: Vec<u8>,
}

impl StateDir {
    /// Creates (0700) and locks `dir`.
    pub fn open(dir: &Path) -> Result<StateDir, StateError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let dir_err = |source| StateError::Dir { path: dir.to_path_buf(), source };
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir.join("tasks")).map_err(dir_err)?;
        let lock_path = dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| StateError::Io { path: lock_path.clone(), source })?;
        let mut lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|_| StateError::Locked { path: dir.to_path_buf() })?;
        let _ = lock.set_len(0);
        let _ = writeln!(*lock, "{}", std::process::id());
        Ok(StateDir { dir: dir.to_path_buf(), _lock: lock, last_meta: Vec::new() })
    }

    fn meta_path(&self) -> PathBuf {
        self.dir.join("meta.json")
    }

    fn task_path(&self, id: u32) -> PathBuf {
        self.dir.join("tasks").join(format!("{id}.json"))
    }

    /// The saved state, if there is one.
    pub fn load(&mut self) -> Result<Option<Saved>, StateError> {
        let meta_path = self.meta_path();
        let meta: Meta = match std::fs::read(&meta_path) {
            Ok(bytes) => {
                let meta =
                    serde_json::from_slice(&bytes).map_err(|source| StateError::Parse { path: meta_path, source })?;
                self.last_meta = bytes;
                meta
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Meta::default(),
            Err(source) => return Err(StateError::Io { path: meta_path, source }),
        };
        let tasks_dir = self.dir.join("tasks");
        let entries = std::fs::read_dir(&tasks_dir).map_err(|source| StateError::Io { path: tasks_dir, source })?;
        let mut tasks = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|source| StateError::Io { path: path.clone(), source })?;
            tasks.push(serde_json::from_slice(&bytes).map_err(|source| StateError::Parse { path, source })?);
        }
        if self.last_meta.is_empty() && tasks.is_empty() {
            return Ok(None);
        }
        Ok(Some(Saved {
            next_id: meta.next_id,
            next_approval: meta.next_approval,
            dropped_total: meta.dropped_total,
            tasks,
            temporary: meta.temporary,
        }))
    }

    /// The path hash's secret seed: read from `seed` (it must outlive the daemon with the
    /// pinned rules hashed with it), or drawn from the kernel's random source and saved.
    pub fn path_seed(&self) -> Result<u64, StateError> {
        use std::io::Read;
        let path = self.dir.join("seed");
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(seed) = u64::from_str_radix(text.trim(), 16)
        {
            return Ok(seed);
        }
        let mut bytes = [0u8; 8];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(|source| StateError::Io { path: PathBuf::from("/dev/urandom"), source })?;
        let seed = u64::from_le_bytes(bytes);
        write_atomically(&path, format!("{seed:016x}\n").as_bytes())?;
        Ok(seed)
    }

    /// Writes `meta` if it changed.
    fn save_meta(&mut self, meta: Vec<u8>) -> Result<(), StateError> {
        if meta != self.last_meta {
            write_atomically(&self.meta_path(), &meta)?;
            self.last_meta = meta;
        }
        Ok(())
    }

    /// Marks the daemon alive now (meta.json's mtime): the next daemon measures the gap from it.
    fn heartbeat(&self) {
        if let Ok(file) = std::fs::File::options().append(true).open(self.meta_path()) {
            let _ = file.set_modified(SystemTime::now());
        }
    }

    /// When the previous daemon was last alive.
    pub fn last_alive(&self) -> Option<SystemTime> {
        std::fs::metadata(self.meta_path()).and_then(|m| m.modified()).ok()
    }

    /// The first approval id this daemon may give: `next-approval`, which the previous daemon
    /// raised ahead of the ids it gave (`StateWriter::reserve_approvals`) and a deliberate stop
    /// keeps (`clear`), when meta.json is gone.
    pub fn approval_floor(&self) -> u32 {
        std::fs::read_to_string(self.dir.join("next-approval")).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0)
    }

    /// Removes the saved state (a deliberate stop, after the tasks were stopped), keeping the
    /// next approval id: a channel's answer to an approval of this daemon must find it decided
    /// or gone, never a new question of the next daemon under the same id.
    fn clear(&mut self, next_approval: u32) {
        // meta.json holds the next approval id too: kept if the file meant for it failed.
        if self.keep_next_approval(next_approval) {
            let _ = std::fs::remove_file(self.meta_path());
        }
        if let Ok(entries) = std::fs::read_dir(self.dir.join("tasks")) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        self.last_meta.clear();
    }

    /// Writes the first approval id the next daemon may give (`approval_floor`); whether it
    /// was written.
    fn keep_next_approval(&self, next_approval: u32) -> bool {
        let written = write_atomically(&self.dir.join("next-approval"), format!("{next_approval}\n").as_bytes());
        if let Err(err) = &written {
            tracing::error!(%err, "saving the next approval id for the next daemon");
        }
        written.is_ok()
    }
}

/// One change to the state directory.
pub enum Change {
    /// A task's file: its saved form, or None to remove it (the task ended).
    Task { id: u32, saved: Option<Vec<u8>> },
    /// `meta.json`, written if it changed.
    Meta(Vec<u8>),
    /// meta.json's mtime set to now.
    Heartbeat,
}

/// The changes not written yet, each file in its last form.
#[derive(Default)]
struct Pending {
    tasks: std::collections::BTreeMap<u32, Option<Vec<u8>>>,
    meta: Option<Vec<u8>>,
    heartbeat: bool,
}

/// The directory, and the next approval id a deliberate stop kept once it cleared the state.
struct Files {
    dir: StateDir,
    cleared: Option<u32>,
}

struct Shared {
    pending: Mutex<Pending>,
    files: Mutex<Files>,
}

/// Writes the state directory without file I/O under the registry lock, which the ring readers
/// take for every record. The registry queues its changes under that lock (`queue`: merged
/// into what is pending, each file in its last form, so a burst of changes costs one write per
/// file); whoever needs them on disk writes what is pending after releasing it
/// ([`Saving::wait`]). Writers take the files' lock before they take what is pending, so the
/// files always end in the state of the last change queued.
#[derive(Clone)]
pub struct StateWriter {
    shared: Arc<Shared>,
}

impl StateWriter {
    /// Takes over `dir` (and its lock).
    pub fn new(dir: StateDir) -> StateWriter {
        let files = Mutex::new(Files { dir, cleared: None });
        StateWriter { shared: Arc::new(Shared { pending: Mutex::new(Pending::default()), files }) }
    }

    /// Adds `changes` to what is pending; the returned [`Saving`] writes them.
    pub fn queue(&self, changes: Vec<Change>) -> Saving {
        let mut pending = self.shared.pending.lock().expect("state lock is never poisoned");
        for change in changes {
            match change {
                Change::Task { id, saved } => {
                    pending.tasks.insert(id, saved);
                }
                Change::Meta(bytes) => pending.meta = Some(bytes),
                Change::Heartbeat => pending.heartbeat = true,
            }
        }
        Saving { shared: Some(self.shared.clone()) }
    }

    /// Removes the saved state (a deliberate stop), after writing what is pending, keeping the
    /// next approval id. Later changes are not written, but for a higher next approval id (a
    /// question filed meanwhile), which is kept too.
    /// Saves approval ids below `next_approval` as used (the next daemon starts there: see
    /// `approval_floor`); whether it was written. One small file, not what is pending.
    pub fn reserve_approvals(&self, next_approval: u32) -> bool {
        let files = self.shared.files.lock().expect("state lock is never poisoned");
        files.cleared.is_none() && files.dir.keep_next_approval(next_approval)
    }

    pub fn clear(&self, next_approval: u32) {
        let mut files = self.shared.files.lock().expect("state lock is never poisoned");
        self.shared.write(&mut files);
        files.dir.clear(next_approval);
        files.cleared = Some(next_approval);
    }
}

impl Shared {
    /// Writes what is pending; the caller holds the files' lock. A task file that could not be
    /// written stays pending, unless a newer form of it was queued meanwhile.
    fn write(&self, files: &mut Files) {
        let pending = std::mem::take(&mut *self.pending.lock().expect("state lock is never poisoned"));
        let failed = files.write(pending);
        if !failed.is_empty() {
            let mut pending = self.pending.lock().expect("state lock is never poisoned");
            for (id, saved) in failed {
                pending.tasks.entry(id).or_insert(saved);
            }
        }
    }
}

impl Drop for Shared {
    /// What is still pending is written before the daemon goes.
    fn drop(&mut self) {
        let pending = std::mem::take(self.pending.get_mut().expect("state lock is never poisoned"));
        let _ = self.files.get_mut().expect("state lock is never poisoned").write(pending);
    }
}

impl Files {
    /// Writes `pending`: meta.json first (its next task id covers every task file written
    /// after it), then the task files; returns the task changes that failed.
    fn write(&mut self, pending: Pending) -> Vec<(u32, Option<Vec<u8>>)> {
        if let Some(kept) = self.cleared {
            // Cleared: only a question filed since may still matter (its id is never reused).
            if let Some(meta) = pending.meta.and_then(|bytes| serde_json::from_slice::<Meta>(&bytes).ok())
                && meta.next_approval > kept
                && self.dir.keep_next_approval(meta.next_approval)
            {
                self.cleared = Some(meta.next_approval);
            }
            return Vec::new();
        }
        if let Some(meta) = pending.meta
            && let Err(err) = self.dir.save_meta(meta)
        {
            tracing::error!(%err, "saving the counters for the next daemon");
        }
        let mut failed = Vec::new();
        for (id, saved) in pending.tasks {
            let result = if let Some(bytes) = &saved {
                write_atomically(&self.dir.task_path(id), bytes)
            } else {
                let _ = std::fs::remove_file(self.dir.task_path(id));
                Ok(())
            };
            if let Err(err) = result {
                tracing::error!(task = id, %err, "saving a task for the next daemon (kept to retry)");
                failed.push((id, saved));
            }
        }
        if pending.heartbeat {
            self.dir.heartbeat();
        }
        failed
    }
}

/// Changes queued for the state directory; [`Saving::wait`] writes them (with whatever else is
/// pending) and returns once they are on disk (not synced: see `write_atomically`). Dropped
/// unwritten, they are written by the next `wait`, at the latest by the 1 s sweep's.
#[must_use = "write the changes with `wait` after the registry lock is released"]
pub struct Saving {
    shared: Option<Arc<Shared>>,
}

impl Saving {
    /// Nothing to write (no state directory).
    pub fn none() -> Saving {
        Saving { shared: None }
    }

    /// Writes what is pending, this call's changes among them. If another caller is writing,
    /// waits for it and then writes what it left.
    pub fn wait(self) {
        if let Some(shared) = self.shared {
            let mut files = shared.files.lock().expect("state lock is never poisoned");
            shared.write(&mut files);
        }
    }
}

/// To a temporary file, then renamed over the old one: a daemon that dies at any point leaves
/// either file whole. Not synced to disk: what this state is for (adopting pinned kernel
/// state) does not survive a power loss either, and a sync per change would sit in every API
/// reply (the audit store keeps task ids unique across reboots).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let staged = path.with_extension("json.new");
    let io = |source| StateError::Io { path: staged.clone(), source };
    let mut file = std::fs::File::create(&staged).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    std::fs::rename(&staged, path).map_err(|source| StateError::Io { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_daemon_cannot_lock_the_same_directory_and_the_state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = StateDir::open(dir.path()).unwrap();
        assert!(matches!(StateDir::open(dir.path()), Err(StateError::Locked { .. })));
        assert_eq!(state.load().unwrap(), None);
        let meta = Meta { next_id: 42, next_approval: 7, dropped_total: 3, temporary: Vec::new() };
        let writer = StateWriter::new(state);
        writer.queue(vec![Change::Meta(serde_json::to_vec(&meta).unwrap())]).wait();
        drop(writer);
        let mut again = StateDir::open(dir.path()).unwrap();
        let saved = Saved { next_id: 42, next_approval: 7, dropped_total: 3, tasks: Vec::new(), temporary: Vec::new() };
        assert_eq!(again.load().unwrap(), Some(saved));
    }

    #[test]
    fn each_file_ends_in_its_last_queued_form_and_nothing_is_written_after_a_clear() {
        let dir = tempfile::tempdir().unwrap();
        let writer = StateWriter::new(StateDir::open(dir.path()).unwrap());
        let read = |id: u32| std::fs::read_to_string(dir.path().join("tasks").join(format!("{id}.json"))).ok();
        // Queued without waiting (as under the registry lock), then written by one wait: each
        // file once, in its last form; a removal queued after a save wins.
        for n in 0..100u32 {
            drop(writer.queue(vec![Change::Task { id: n % 3, saved: Some(n.to_string().into_bytes()) }]));
        }
        assert_eq!(read(0), None, "nothing is written before a wait");
        writer.queue(vec![Change::Task { id: 2, saved: None }]).wait();
        assert_eq!((read(0), read(1), read(2)), (Some("99".into()), Some("97".into()), None));
        // Pending at the clear: written first, then cleared with the rest.
        drop(writer.queue(vec![Change::Task { id: 4, saved: Some(b"{}".to_vec()) }]));
        writer.clear(9);
        assert_eq!((read(0), read(1), read(4)), (None, None, None), "cleared");
        // Changes queued by requests that raced the deliberate stop: not written, but for a
        // question filed meanwhile, whose id stays used.
        let meta = |next_approval| {
            let meta = Meta { next_id: 5, next_approval, dropped_total: 0, temporary: Vec::new() };
            Change::Meta(serde_json::to_vec(&meta).unwrap())
        };
        writer.queue(vec![Change::Task { id: 3, saved: Some(b"{}".to_vec()) }, meta(12)]).wait();
        // Left pending when the last handle goes: written then (here: ignored, as cleared).
        drop(writer.queue(vec![meta(11)]));
        drop(writer);
        assert_eq!(read(3), None, "nothing is saved after the state was cleared");
        assert!(!dir.path().join("meta.json").exists());
        let again = StateDir::open(dir.path()).unwrap();
        assert_eq!(again.approval_floor(), 12, "the next approval id is kept, raised by the question filed since");
    }

    #[test]
    fn approval_ids_reserved_ahead_are_the_next_daemons_floor() {
        let dir = tempfile::tempdir().unwrap();
        let writer = StateWriter::new(StateDir::open(dir.path()).unwrap());
        assert!(writer.reserve_approvals(65));
        // A crash now: the next daemon starts above every id this one could have given.
        drop(writer);
        assert_eq!(StateDir::open(dir.path()).unwrap().approval_floor(), 65);
    }

    #[test]
    fn what_is_pending_when_the_writer_goes_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let writer = StateWriter::new(StateDir::open(dir.path()).unwrap());
        drop(writer.queue(vec![Change::Task { id: 7, saved: Some(b"{}".to_vec()) }]));
        drop(writer);
        assert!(dir.path().join("tasks/7.json").exists());
    }

    #[test]
    fn the_path_seed_is_drawn_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateDir::open(dir.path()).unwrap().path_seed().unwrap();
        let again = StateDir::open(dir.path()).unwrap().path_seed().unwrap();
        assert_eq!(first, again, "the pinned rules were hashed with it");
        let other = tempfile::tempdir().unwrap();
        assert_ne!(StateDir::open(other.path()).unwrap().path_seed().unwrap(), first, "drawn at random");
        let key = |seed| agent_guard_common::path::fnv1a_seeded(seed, b"/srv/work/");
        assert_ne!(key(first), key(0), "keys differ from the plain hash");
    }
}
