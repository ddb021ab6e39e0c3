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
    io::{BufWriter, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

/// A segment is sealed at this size even before the flush interval.
const SEGMENT_BYTES: u64 = 1 << 20;

/// A spool segment that cannot be written or read.
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

/// One spooled event and where it is.
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

/// The records of a sealed segment, and how many lines were damaged and skipped: a line is a
/// record only if it ends in a newline, is UTF-8, has its three fields and a JSON body — so a
/// line torn by a crash (or a bad sector) never spoils the batch it would be sent in.
pub fn read_segment(path: &Path) -> std::io::Result<(Vec<Record>, u64)> {
    let bytes = std::fs::read(path)?;
    let (mut records, mut damaged) = (Vec::new(), 0);
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let record = line.strip_suffix(b"\n").and_then(|l| std::str::from_utf8(l).ok()).and_then(|line| {
            let mut fields = line.splitn(3, '\t');
            let (id, ms, body) = (fields.next()?, fields.next()?, fields.next()?);
            serde_json::from_str::<serde::de::IgnoredAny>(body).ok()?;
            Some(Record { id: id.to_string(), epoch_ms: ms.parse().ok()?, body: body.to_string() })
        });
        match record {
            Some(record) => records.push(record),
            None => damaged += 1,
        }
    }
    Ok((records, damaged))
}

/// Removes a segment the receiver took whole (or that cannot be read), and recounts the
/// spool's bytes from the disk.
pub fn remove_segment(state: &SpoolState, path: &Path) -> std::io::Result<()> {
    std::fs::remove_file(path)?;
    let on_disk = std::fs::read_dir(&state.dir)?
        .flatten()
        .filter(|e| {
            e.file_name().to_str().is_some_and(|n| std::path::Path::new(n).extension().is_some_and(|x| x == "seg"))
        })
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    state.bytes.store(on_disk, Ordering::Relaxed);
    Ok(())
}

/// Appends events to fsynced segments.
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
        // Events name files, users and command lines: the spool is root's alone.
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io)?;
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
            let file =
                OpenOptions::new().create(true).append(true).mode(0o600).open(segment_path(&self.state.dir, self.seq));
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

    /// Makes what was appended so far durable and visible to the sender. On a write error
    /// the segment is sealed all the same (the sender skips a torn last line) and the next
    /// append starts a new one: an error never wedges the spool.
    pub fn seal(&mut self) -> Result<(), SpoolError> {
        let Some((out, _)) = self.current.take() else { return Ok(()) };
        let written = out.into_inner().map_err(std::io::IntoInnerError::into_error).and_then(|file| file.sync_data());
        self.seq += 1;
        self.state.sealed_below.store(self.seq, Ordering::Release);
        self.state.sealed.notify_one();
        written.map_err(|source| SpoolError::Io { dir: self.state.dir.clone(), source })
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
            segments.iter().flat_map(|s| read_segment(s).unwrap().0).map(|r| format!("{} {}", r.id, r.body)).collect();
        assert_eq!(ids, ["id-1 {\"n\":1}", "id-2 {\"n\":2}", "id-3 {\"n\":3}"]);
        for segment in &segments {
            remove_segment(&state, segment).unwrap();
        }
        assert_eq!(state.bytes.load(Ordering::Relaxed), 0);
        assert!(sealed_segments(&state).unwrap().is_empty());
    }

    #[test]
    fn damaged_lines_are_skipped_and_counted_never_sent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.seg");
        // A good record, one without a JSON body, one with invalid UTF-8, and a torn last line.
        let mut bytes = b"a\t1\t{\"n\":1}\nb\t2\t{\"n\":\nc\t3\t\"\xff\"\n".to_vec();
        bytes.extend_from_slice(b"d\t4\t{\"n\":4}");
        std::fs::write(&path, bytes).unwrap();
        let (records, damaged) = read_segment(&path).unwrap();
        assert_eq!(records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["a"]);
        assert_eq!(damaged, 3);
    }

    #[test]
    fn a_full_spool_refuses_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = SpoolWriter::open(dir.path(), 30).unwrap();
        writer.append(&record(1)).unwrap();
        assert!(matches!(writer.append(&record(2)), Err(SpoolError::Full { .. })));
    }
}
