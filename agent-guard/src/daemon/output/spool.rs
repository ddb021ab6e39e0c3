//! A disk spool between an output's intake and its sender: events are appended to numbered
//! segment files (`{seq:020}.seg`, one record per line) and a segment is removed only after the
//! receiver took every record in it. The intake seals the segment it writes every flush
//! interval or 1 MiB; the sender only reads sealed ones. What was spooled survives a receiver
//! outage and a daemon restart (at-least-once: a record can be sent twice, never lost; receivers
//! de-duplicate by event id).
//!
//! A record line is `{event_id}\t{epoch_ms}\t{rendered event}`: rendered JSON has no raw tab
//! or newline (JSON escapes control characters).

use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, BufWriter, Write},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

/// A segment is sealed at this size even before the flush interval.
const SEGMENT_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {dir}: {source}")]
    Io { dir: PathBuf, source: std::io::Error },
    #[error("spool {dir} holds {bytes} bytes, its limit")]
    Full { dir: PathBuf, bytes: u64 },
}

/// What the intake and the sender share.
pub struct SpoolState {
    pub dir: PathBuf,
    /// Segments below this number are sealed.
    sealed_below: AtomicU64,
    /// Bytes in the spool now.
    pub bytes: AtomicU64,
    pub sealed: tokio::sync::Notify,
}

pub struct Record {
    pub id: String,
    pub epoch_ms: u64,
    pub body: String,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.seg"))
}

/// Sealed segments, oldest first.
pub fn sealed_segments(state: &SpoolState) -> std::io::Result<Vec<PathBuf>> {
    let below = state.sealed_below.load(Ordering::Acquire);
    let mut segments: Vec<(u64, PathBuf)> = std::fs::read_dir(&state.dir)?
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let seq = path.file_name()?.to_str()?.strip_suffix(".seg")?.parse::<u64>().ok()?;
            (seq < below).then_some((seq, path))
        })
        .collect();
    segments.sort();
    Ok(segments.into_iter().map(|(_, path)| path).collect())
}

/// The records of a sealed segment. A torn last line (the daemon died mid-write) is skipped.
pub fn read_segment(path: &Path) -> std::io::Result<Vec<Record>> {
    let mut records = Vec::new();
    for line in BufReader::new(File::open(path)?).lines() {
        let line = line?;
        let mut fields = line.splitn(3, '\t');
        if let (Some(id), Some(ms), Some(body)) = (fields.next(), fields.next(), fields.next())
            && let Ok(epoch_ms) = ms.parse()
        {
            records.push(Record { id: id.to_string(), epoch_ms, body: body.to_string() });
        }
    }
    Ok(records)
}

/// Removes a segment the receiver took whole.
pub fn remove_segment(state: &SpoolState, path: &Path) -> std::io::Result<()> {
    let size = std::fs::metadata(path)?.len();
    std::fs::remove_file(path)?;
    state.bytes.fetch_sub(size.min(state.bytes.load(Ordering::Relaxed)), Ordering::Relaxed);
    Ok(())
}

pub struct SpoolWriter {
    state: Arc<SpoolState>,
    max_bytes: u64,
    seq: u64,
    current: Option<(BufWriter<File>, u64)>,
}

impl SpoolWriter {
    /// Opens (creates) the spool; segments left by an earlier run are sealed and will be sent.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<SpoolWriter, SpoolError> {
        let io = |source| SpoolError::Io { dir: dir.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut next = 0;
        let mut bytes = 0;
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            if let Some(seq) = name.to_str().and_then(|n| n.strip_suffix(".seg")).and_then(|n| n.parse::<u64>().ok()) {
                next = next.max(seq + 1);
                bytes += entry.metadata().map_err(io)?.len();
            }
        }
        let state = Arc::new(SpoolState {
            dir: dir.to_path_buf(),
            sealed_below: AtomicU64::new(next),
            bytes: AtomicU64::new(bytes),
            sealed: tokio::sync::Notify::new(),
        });
        Ok(SpoolWriter { state, max_bytes, seq: next, current: None })
    }

    pub fn state(&self) -> Arc<SpoolState> {
        self.state.clone()
    }

    pub fn append(&mut self, record: &Record) -> Result<(), SpoolError> {
        let line = format!("{}\t{}\t{}\n", record.id, record.epoch_ms, record.body);
        let len = line.len() as u64;
        let bytes = self.state.bytes.load(Ordering::Relaxed);
        if bytes + len > self.max_bytes {
            return Err(SpoolError::Full { dir: self.state.dir.clone(), bytes });
        }
        let io = |source| SpoolError::Io { dir: self.state.dir.clone(), source };
        if self.current.is_none() {
            let file = OpenOptions::new().create(true).append(true).open(segment_path(&self.state.dir, self.seq));
            self.current = Some((BufWriter::new(file.map_err(io)?), 0));
        }
        let (out, size) = self.current.as_mut().expect("opened above");
        out.write_all(line.as_bytes()).map_err(io)?;
        *size += len;
        self.state.bytes.fetch_add(len, Ordering::Relaxed);
        if *size >= SEGMENT_BYTES {
            self.seal()?;
        }
        Ok(())
    }

    /// Makes what was appended so far durable and visible to the sender.
    pub fn seal(&mut self) -> Result<(), SpoolError> {
        let Some((out, _)) = self.current.take() else { return Ok(()) };
        let io = |source| SpoolError::Io { dir: self.state.dir.clone(), source };
        let file = out.into_inner().map_err(|err| io(err.into_error()))?;
        file.sync_data().map_err(io)?;
        self.seq += 1;
        self.state.sealed_below.store(self.seq, Ordering::Release);
        self.state.sealed.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u32) -> Record {
        Record { id: format!("id-{i}"), epoch_ms: 1000 + u64::from(i), body: format!("{{\"n\":{i}}}") }
    }

    #[test]
    fn records_survive_a_restart_and_leave_once_taken() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = SpoolWriter::open(dir.path(), 1 << 30).unwrap();
        writer.append(&record(1)).unwrap();
        assert!(sealed_segments(&writer.state()).unwrap().is_empty(), "not sealed yet");
        writer.seal().unwrap();
        writer.append(&record(2)).unwrap();
        writer.seal().unwrap();
        drop(writer);
        // A new run sees both segments and continues numbering after them.
        let mut writer = SpoolWriter::open(dir.path(), 1 << 30).unwrap();
        writer.append(&record(3)).unwrap();
        writer.seal().unwrap();
        let state = writer.state();
        let segments = sealed_segments(&state).unwrap();
        assert_eq!(segments.len(), 3);
        let ids: Vec<String> =
            segments.iter().flat_map(|s| read_segment(s).unwrap()).map(|r| format!("{} {}", r.id, r.body)).collect();
        assert_eq!(ids, ["id-1 {\"n\":1}", "id-2 {\"n\":2}", "id-3 {\"n\":3}"]);
        for segment in &segments {
            remove_segment(&state, segment).unwrap();
        }
        assert_eq!(state.bytes.load(Ordering::Relaxed), 0);
        assert!(sealed_segments(&state).unwrap().is_empty());
    }

    #[test]
    fn a_full_spool_refuses_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = SpoolWriter::open(dir.path(), 30).unwrap();
        writer.append(&record(1)).unwrap();
        assert!(matches!(writer.append(&record(2)), Err(SpoolError::Full { .. })));
    }
}
