//! Event outputs: JSON lines to stdout and to a file, written by one task of their own so a
//! slow output never delays the API.
//!
//! Two queues feed the writer. Kernel events go through a bounded one: when it is full the
//! ring-buffer reader waits for room instead of decoding more, so a flood fills the kernel's
//! ring buffer, whose overflow the kernel counts (EVENT_DROPS, reported as
//! guard.events_dropped) — memory stays bounded and no loss is silent. Control events (task
//! lifecycle, approvals, policy) are few, caused by operators and API calls, and never dropped:
//! they go through an unbounded queue the writer serves first.

use std::{
    fs::OpenOptions,
    io::{BufWriter, Write},
    path::PathBuf,
};

use tokio::sync::mpsc;

use super::event::Event;

/// Kernel events waiting for the writer, at most.
pub const KERNEL_QUEUE: usize = 16_384;

/// Where control events go.
#[derive(Clone)]
pub struct EventSink(mpsc::UnboundedSender<Event>);

impl EventSink {
    pub fn send(&self, event: Event) {
        // The writer only stops after every sender is gone: a send cannot fail before that.
        let _ = self.0.send(event);
    }
}

/// Where kernel events go: wait for a permit (`reserve`) before decoding the next record.
pub type KernelSink = mpsc::Sender<Event>;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("events file {path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
}

pub struct Outputs {
    pub stdout: bool,
    pub file: Option<PathBuf>,
}

/// Appends `line`, flushing when the writer is about to wait.
fn write_line(out: &mut impl Write, line: &str, flush: bool) -> std::io::Result<()> {
    out.write_all(line.as_bytes())?;
    if flush { out.flush() } else { Ok(()) }
}

/// Opens the outputs (so a bad path fails the start) and returns the control and kernel
/// sinks and the writer task, which ends once both are dropped.
pub fn start(outputs: Outputs) -> Result<(EventSink, KernelSink, tokio::task::JoinHandle<()>), OutputError> {
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
    let (control_tx, mut control_rx) = mpsc::unbounded_channel::<Event>();
    let (kernel_tx, mut kernel_rx) = mpsc::channel::<Event>(KERNEL_QUEUE);
    let stdout = outputs.stdout;
    let writer = tokio::spawn(async move {
        let mut out = BufWriter::new(std::io::stdout());
        loop {
            let event = tokio::select! {
                biased;
                Some(event) = control_rx.recv() => event,
                Some(event) = kernel_rx.recv() => event,
                else => break,
            };
            let mut line = serde_json::to_string(&event).expect("events serialize");
            line.push('\n');
            // Lines are buffered and flushed whenever the queues are empty: one write per burst,
            // not per event, and nothing left unwritten while the daemon waits.
            let idle = control_rx.is_empty() && kernel_rx.is_empty();
            // The writes block; block_in_place lets the runtime move its other tasks away.
            tokio::task::block_in_place(|| {
                if stdout && write_line(&mut out, &line, idle).is_err() {
                    tracing::warn!("cannot write event {} to stdout", event.event_id);
                }
                if let Some((path, writer)) = file.as_mut()
                    && let Err(err) = write_line(writer, &line, idle)
                {
                    tracing::error!(path = %path.display(), %err, "cannot write event {}", event.event_id);
                }
            });
        }
    });
    Ok((EventSink(control_tx), kernel_tx, writer))
}
