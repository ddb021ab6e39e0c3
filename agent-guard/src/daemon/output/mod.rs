//! Event outputs. One hub task takes events from two queues, folds floods (aggregate.rs),
//! renders each event once per format and hands it to every output, each with its own queue
//! and its own thread or task, so one slow output never holds up another:
//!
//! - local outputs (stdout, files, the audit store) are waited for: when one falls behind, the
//!   hub waits, the kernel-event queue fills, the ring-buffer reader stops decoding and the
//!   kernel's ring buffer takes the backlog, whose overflow the kernel counts (`EVENT_DROPS`,
//!   `guard.events_dropped`). Memory stays bounded and no loss is silent.
//! - remote outputs (syslog, HTTP) are never waited for: HTTP spools to disk (http.rs), syslog
//!   has a bounded queue; what they cannot take is counted (`agent_guard_output_dropped_events`)
//!   and reported as `guard.output_dropped`; failed deliveries as `guard.output_failed`.
//!
//! Kernel events go through a bounded queue (`KERNEL_QUEUE`): the ring-buffer reader waits for
//! room before decoding more. Control events (task lifecycle, approvals, policy) are few, caused
//! by operators and API calls, and never dropped: an unbounded queue the hub serves first.

pub mod aggregate;
pub mod file;
pub mod http;
pub mod metrics;
pub mod ocsf;
pub mod spool;
pub mod store;
pub mod syslog;

use std::{
    io::Write,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::sync::mpsc;

use self::metrics::{EventLabels, Metrics};
use crate::daemon::{
    config::{Format, OutputConfig},
    events::schema::{Body, Decision, Event, Kind, Loss},
};

/// Kernel events waiting for the hub, at most (in batches of `KERNEL_BATCH`).
pub const KERNEL_QUEUE: usize = 16_384;
/// Kernel events the ring-buffer reader decodes under one lock and hands over in one message:
/// a message per event cost more in wake-ups than the event itself (perf, BENCHMARKS.md).
pub const KERNEL_BATCH: usize = 256;
/// Rendered events waiting for one output, at most.
const OUTPUT_QUEUE: usize = 16_384;
/// Events a local output writes in one go (one flush, one transaction).
const LOCAL_BATCH: usize = 1024;

/// Where control events go.
#[derive(Clone)]
pub struct EventSink(mpsc::UnboundedSender<Event>);

impl EventSink {
    pub fn send(&self, event: Event) {
        // The hub only stops after every sender is gone: a send cannot fail before that.
        let _ = self.0.send(event);
    }
}

/// Where kernel events go, in batches: wait for a permit (`reserve`) before decoding the next.
pub type KernelSink = mpsc::Sender<Vec<Event>>;

/// An output that cannot be set up, naming it.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("output {output}: {message}")]
    Config { output: String, message: String },
    #[error("output {output}: {path}: {source}")]
    File { output: String, path: PathBuf, source: std::io::Error },
}

/// One event in one format: its line, and the event itself (shared by every format's
/// rendering), which outputs route, label and index it by.
pub struct Rendered {
    pub event: Arc<Event>,
    pub epoch_ms: u64,
    /// The event, one line, no newline.
    pub line: String,
}

impl Rendered {
    pub fn id(&self) -> &str {
        &self.event.event_id
    }

    /// RFC 3339, as in the event.
    pub fn time(&self) -> &str {
        &self.event.time
    }

    pub fn kind(&self) -> Kind {
        self.event.kind()
    }

    pub fn decision(&self) -> Option<Decision> {
        self.event.decision()
    }

    pub fn task(&self) -> Option<u32> {
        self.event.task.as_ref().map(|t| t.id)
    }

    pub fn agent(&self) -> Option<&str> {
        self.event.task.as_ref().map(|t| t.agent.as_str())
    }

    pub fn rule(&self) -> Option<&str> {
        self.event.rule()
    }

    /// Occurrences the event stands for (`count` of an aggregate, else 1).
    pub fn weight(&self) -> u64 {
        self.event.weight()
    }
}

/// `event` in `format`.
pub fn render(event: &Arc<Event>, format: Format) -> Rendered {
    let line = match format {
        Format::Json => crate::text::json_safe(serde_json::to_string(&**event).expect("events serialize")),
        Format::Ocsf => crate::text::json_safe(ocsf::to_ocsf(event).to_string()),
    };
    let epoch_ms = crate::audit::parse_ms(&event.time).and_then(|ms| u64::try_from(ms).ok()).unwrap_or(0);
    Rendered { event: event.clone(), epoch_ms, line }
}

/// Events a local output could not write, and why.
pub struct Lost {
    pub count: u64,
    pub why: String,
}

/// Writes a batch of rendered events; the batch is one flush or one transaction.
pub type LocalWriter = Box<dyn FnMut(&[Arc<Rendered>]) -> Result<(), Lost> + Send>;

enum Target {
    /// Waited for (see the module comment); fed in batches.
    Local(mpsc::Sender<Vec<Arc<Rendered>>>),
    /// Never waited for.
    Remote(mpsc::Sender<Arc<Rendered>>),
}

struct Output {
    name: String,
    format: Format,
    target: Target,
    /// Drops and failures already reported as events.
    reported_dropped: u64,
    reported_failures: u64,
}

/// A thread that writes batches for a local output.
fn spawn_local(
    name: &str,
    mut write: LocalWriter,
    metrics: Metrics,
) -> (mpsc::Sender<Vec<Arc<Rendered>>>, std::thread::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Vec<Arc<Rendered>>>(OUTPUT_QUEUE / KERNEL_BATCH);
    let name = name.to_string();
    let thread = std::thread::Builder::new()
        .name(format!("output-{name}"))
        .spawn(move || {
            let labels = Metrics::output(&name);
            while let Some(mut batch) = rx.blocking_recv() {
                while batch.len() < LOCAL_BATCH {
                    match rx.try_recv() {
                        Ok(more) => batch.extend(more),
                        Err(_) => break,
                    }
                }
                let lost = match write(&batch) {
                    Ok(()) => 0,
                    Err(lost) => {
                        metrics.output_failures.get_or_create(&labels).inc();
                        metrics.output_dropped.get_or_create(&labels).inc_by(lost.count);
                        tracing::error!(output = name, "{} events not written: {}", lost.count, lost.why);
                        lost.count
                    }
                };
                metrics.output_sent.get_or_create(&labels).inc_by((batch.len() as u64).saturating_sub(lost));
            }
        })
        .expect("spawning an output thread");
    (tx, thread)
}

fn stdout_writer() -> LocalWriter {
    let mut out = std::io::BufWriter::new(std::io::stdout());
    Box::new(move |batch| {
        let lost = |err: std::io::Error| Lost { count: batch.len() as u64, why: err.to_string() };
        for event in batch {
            out.write_all(event.line.as_bytes()).and_then(|()| out.write_all(b"\n")).map_err(lost)?;
        }
        out.flush().map_err(lost)
    })
}

fn file_writer(mut file: file::RotatingFile) -> LocalWriter {
    Box::new(move |batch| {
        for (i, event) in batch.iter().enumerate() {
            file.write_line(&event.line, i + 1 == batch.len()).map_err(|err| Lost {
                count: (batch.len() - i) as u64,
                why: format!("{}: {err}", file.path().display()),
            })?;
        }
        Ok(())
    })
}

/// A running hub: the sinks feeding it and the task that ends once every output is drained.
pub struct Hub {
    pub sink: EventSink,
    pub kernel: KernelSink,
    pub task: tokio::task::JoinHandle<()>,
}

/// The local writer for the audit store, if there is one (opened by the caller).
pub struct Extra {
    pub name: String,
    pub writer: LocalWriter,
}

/// Opens every output (so a bad path or URL fails the start) and starts the hub.
/// What starting the outputs reads (secrets, keys, certificates), checked without starting
/// them: `agent-guard config check`.
pub fn check(config: &crate::daemon::config::ConfigFile) -> Result<(), OutputError> {
    for output in &config.outputs {
        match output {
            OutputConfig::Http(http) => http::check(&output.name(), http)?,
            OutputConfig::Syslog(syslog) => syslog::check(&output.name(), syslog)?,
            OutputConfig::Stdout(_) | OutputConfig::File(_) => {}
        }
    }
    Ok(())
}

pub fn start(
    configs: &[OutputConfig],
    extra: Vec<Extra>,
    aggregation: Duration,
    host: String,
    metrics: Metrics,
) -> Result<Hub, OutputError> {
    let mut outputs = Vec::new();
    let mut threads = Vec::new();
    let mut tasks = Vec::new();
    for config in configs {
        let name = config.name();
        let format = config.format();
        let target = match config {
            OutputConfig::Stdout(_) => {
                let (tx, thread) = spawn_local(&name, stdout_writer(), metrics.clone());
                threads.push(thread);
                Target::Local(tx)
            }
            OutputConfig::File(file) => {
                let opened = file::RotatingFile::open(file).map_err(|source| OutputError::File {
                    output: name.clone(),
                    path: file.path.clone(),
                    source,
                })?;
                let (tx, thread) = spawn_local(&name, file_writer(opened), metrics.clone());
                threads.push(thread);
                Target::Local(tx)
            }
            OutputConfig::Syslog(syslog) => {
                let (tx, rx) = mpsc::channel(syslog.queue);
                threads.push(syslog::start(&name, syslog.clone(), host.clone(), metrics.clone(), rx)?);
                Target::Remote(tx)
            }
            OutputConfig::Http(http) => {
                let (tx, rx) = mpsc::channel(OUTPUT_QUEUE);
                tasks.push(http::start(&name, http.clone(), &http.spool(&name), metrics.clone(), rx)?);
                Target::Remote(tx)
            }
        };
        outputs.push(Output { name, format, target, reported_dropped: 0, reported_failures: 0 });
    }
    for extra in extra {
        let (tx, thread) = spawn_local(&extra.name, extra.writer, metrics.clone());
        threads.push(thread);
        outputs.push(Output {
            name: extra.name,
            format: Format::Json,
            target: Target::Local(tx),
            reported_dropped: 0,
            reported_failures: 0,
        });
    }
    let (control_tx, control_rx) = mpsc::unbounded_channel::<Event>();
    let (kernel_tx, kernel_rx) = mpsc::channel::<Vec<Event>>(KERNEL_QUEUE / KERNEL_BATCH);
    let hub = HubLoop { outputs, aggregator: aggregate::Aggregator::new(aggregation), host, metrics };
    let task = tokio::spawn(async move {
        hub.run(control_rx, kernel_rx).await;
        for task in tasks {
            let _ = task.await;
        }
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    });
    Ok(Hub { sink: EventSink(control_tx), kernel: kernel_tx, task })
}

/// An event of `kind` saying how much a counter grew since it was last `reported`, if it did.
fn news(
    body: fn(Loss) -> Body,
    host: &str,
    total: u64,
    reported: &mut u64,
    why: impl FnOnce(u64) -> String,
) -> Option<Event> {
    let lost = total.checked_sub(*reported).filter(|&n| n > 0)?;
    *reported = total;
    Some(Event::new(body(Loss { lost, reason: why(lost) }), host, SystemTime::now()))
}

struct HubLoop {
    outputs: Vec<Output>,
    aggregator: aggregate::Aggregator,
    host: String,
    metrics: Metrics,
}

impl HubLoop {
    async fn run(mut self, mut control: mpsc::UnboundedReceiver<Event>, mut kernel: mpsc::Receiver<Vec<Event>>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let (mut control_open, mut kernel_open) = (true, true);
        while control_open || kernel_open {
            tokio::select! {
                biased;
                event = control.recv(), if control_open => match event {
                    Some(event) => self.admit(vec![event]).await,
                    None => control_open = false,
                },
                events = kernel.recv(), if kernel_open => match events {
                    Some(events) => self.admit(events).await,
                    None => kernel_open = false,
                },
                _ = tick.tick() => self.on_tick(false).await,
            }
        }
        self.on_tick(true).await;
    }

    /// Counts `events`, folds floods, and hands the rest to every output.
    async fn admit(&mut self, events: Vec<Event>) {
        let mut admitted = Vec::with_capacity(events.len());
        for event in events {
            let labels = EventLabels {
                kind: event.kind().as_str(),
                decision: event.decision().map_or("none", Decision::as_str),
            };
            self.metrics.events.get_or_create(&labels).inc();
            if let Body::EventsDropped(loss) = &event.body {
                self.metrics.ring_drops.inc_by(loss.lost);
            }
            if self.aggregator.admit(&event) {
                admitted.push(Arc::new(event));
            } else {
                self.metrics.aggregated.inc();
            }
        }
        self.fan_out(&admitted).await;
    }

    /// Renders `events` once per format in use and sends each output its batch.
    async fn fan_out(&mut self, events: &[Arc<Event>]) {
        if events.is_empty() {
            return;
        }
        let mut json: Option<Vec<Arc<Rendered>>> = None;
        let mut ocsf: Option<Vec<Arc<Rendered>>> = None;
        for output in &self.outputs {
            let slot = match output.format {
                Format::Json => &mut json,
                Format::Ocsf => &mut ocsf,
            };
            let rendered =
                slot.get_or_insert_with(|| events.iter().map(|event| Arc::new(render(event, output.format))).collect());
            match &output.target {
                Target::Local(tx) => {
                    let _ = tx.send(rendered.clone()).await;
                }
                Target::Remote(tx) => {
                    for one in rendered.iter() {
                        if tx.try_send(one.clone()).is_err() {
                            self.metrics.output_dropped.get_or_create(&Metrics::output(&output.name)).inc();
                        }
                    }
                }
            }
        }
    }

    /// Closes aggregation windows and reports outputs' new drops and failures as events.
    async fn on_tick(&mut self, last: bool) {
        // Aggregates stand for events already counted when they were folded: not counted again.
        let mut aggregates = Vec::new();
        self.aggregator.expire(&self.host, last, &mut aggregates);
        self.fan_out(&aggregates.into_iter().map(Arc::new).collect::<Vec<_>>()).await;
        let mut due = Vec::new();
        for output in &mut self.outputs {
            let labels = Metrics::output(&output.name);
            let dropped = self.metrics.output_dropped.get_or_create(&labels).get();
            let failures = self.metrics.output_failures.get_or_create(&labels).get();
            let name = &output.name;
            due.extend(news(Body::OutputDropped, &self.host, dropped, &mut output.reported_dropped, |new| {
                format!("output {name} could not take {new} events ({dropped} in all): its queue or spool was full, or the receiver refused them")
            }));
            due.extend(news(Body::OutputFailed, &self.host, failures, &mut output.reported_failures, |new| {
                format!("output {name}: {new} delivery attempts failed ({failures} in all); events are retried or counted as dropped")
            }));
        }
        for event in &due {
            let labels = EventLabels { kind: event.kind().as_str(), decision: "none" };
            self.metrics.events.get_or_create(&labels).inc();
        }
        self.fan_out(&due.into_iter().map(Arc::new).collect::<Vec<_>>()).await;
    }
}
