//! Event outputs: JSON lines to stdout and to a file. Writing happens on its own task, fed by
//! an unbounded channel, so a slow output never delays the API or the ring-buffer reader.

use std::{
    fs::OpenOptions,
    io::{BufWriter, Write},
    path::PathBuf,
};

use tokio::sync::mpsc;

use super::event::Event;

#[derive(Clone)]
pub struct EventSink(mpsc::UnboundedSender<Event>);

impl EventSink {
    pub fn send(&self, event: Event) {
        // The writer only stops after every sender is gone: a send cannot fail before that.
        let _ = self.0.send(event);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("events file {path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
}

pub struct Outputs {
    pub stdout: bool,
    pub file: Option<PathBuf>,
}

/// Opens the outputs (so a bad path fails the start) and returns the sink and the writer task.
pub fn start(outputs: Outputs) -> Result<(EventSink, tokio::task::JoinHandle<()>), OutputError> {
    let mut file = match &outputs.file {
        Some(path) => {
            let io = |source| OutputError::File { path: path.clone(), source };
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            Some((path.clone(), BufWriter::new(OpenOptions::new().create(true).append(true).open(path).map_err(io)?)))
        }
        None => None,
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let stdout = outputs.stdout;
    let writer = tokio::task::spawn_blocking(move || {
        let mut out = std::io::stdout().lock();
        while let Some(event) = rx.blocking_recv() {
            let mut line = serde_json::to_string(&event).expect("events serialize");
            line.push('\n');
            if stdout && out.write_all(line.as_bytes()).and_then(|_| out.flush()).is_err() {
                tracing::warn!("cannot write event {} to stdout", event.event_id);
            }
            if let Some((path, writer)) = file.as_mut()
                && let Err(err) = writer.write_all(line.as_bytes()).and_then(|_| writer.flush())
            {
                tracing::error!(path = %path.display(), %err, "cannot write event {}", event.event_id);
            }
        }
    });
    Ok((EventSink(tx), writer))
}
