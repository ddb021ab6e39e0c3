//! A JSON-lines file that rotates by size and age: `events.jsonl` is the live file,
//! `events.jsonl.1` the newest rotated one, up to `keep` of them. A line is never split
//! across files.

use std::{
    fs::{File, OpenOptions},
    io::{BufWriter, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::daemon::config::FileConfig;

/// An events file, rotated by size and age.
pub struct RotatingFile {
    path: PathBuf,
    max_size: u64,
    max_age: Option<Duration>,
    keep: u32,
    out: BufWriter<File>,
    size: u64,
    opened: Instant,
}

fn open(path: &Path) -> std::io::Result<(BufWriter<File>, u64)> {
    // Events name files, users and command lines: new directories and files are root's alone.
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    let size = file.metadata()?.len();
    // A batch of up to 1,024 events (about 600 KiB) in a few writes rather than one per 8 KiB.
    Ok((BufWriter::with_capacity(256 * 1024, file), size))
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

impl RotatingFile {
    pub fn open(config: &FileConfig) -> std::io::Result<RotatingFile> {
        let (out, size) = open(&config.path)?;
        Ok(RotatingFile {
            path: config.path.clone(),
            max_size: config.max_size.as_u64(),
            max_age: config.max_age,
            keep: config.keep,
            out,
            size,
            opened: Instant::now(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line (ending in '\n'), rotating first if it would not fit or the file is too
    /// old; flushes when `flush`.
    /// Appends `line` and a newline, rotating first if the file is due; flushes with `flush`.
    pub fn write_line(&mut self, line: &str, flush: bool) -> std::io::Result<()> {
        let len = line.len() as u64 + 1;
        let too_big = self.size > 0 && self.size + len > self.max_size;
        let too_old = self.size > 0 && self.max_age.is_some_and(|age| self.opened.elapsed() >= age);
        if too_big || too_old {
            self.rotate()?;
        }
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.size += len;
        if flush { self.out.flush() } else { Ok(()) }
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(numbered(&self.path, self.keep));
            for n in (1..self.keep).rev() {
                let from = numbered(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, numbered(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(&self.path, 1))?;
        }
        let (out, size) = open(&self.path)?;
        self.out = out;
        self.size = size;
        self.opened = Instant::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = FileConfig::at(dir.path().join("e.jsonl"));
        config.max_size = bytesize::ByteSize::b(100);
        config.keep = 2;
        let mut file = RotatingFile::open(&config).unwrap();
        let line = format!("{}\n", "x".repeat(39));
        for _ in 0..7 {
            file.write_line(line.trim_end(), true).unwrap();
        }
        // 40-byte lines, 2 per file: 7 lines = e.jsonl (1) + .1 (2) + .2 (2); the oldest 2 went.
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(config.path.clone()), line);
        assert_eq!(read(numbered(&config.path, 1)), line.repeat(2));
        assert_eq!(read(numbered(&config.path, 2)), line.repeat(2));
        assert!(!numbered(&config.path, 3).exists());
    }

    #[test]
    fn rotates_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = FileConfig::at(dir.path().join("e.jsonl"));
        config.max_age = Some(Duration::ZERO);
        let mut file = RotatingFile::open(&config).unwrap();
        file.write_line("a", true).unwrap();
        file.write_line("b", true).unwrap();
        assert_eq!(std::fs::read_to_string(&config.path).unwrap(), "b\n");
        assert_eq!(std::fs::read_to_string(numbered(&config.path, 1)).unwrap(), "a\n");
    }
}
