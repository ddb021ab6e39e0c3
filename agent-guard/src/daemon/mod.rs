//! The daemon: owns the kernel programs and maps, serves the API, turns kernel records into
//! events. `run` takes its listener and shutdown signal as arguments so tests can drive it.

pub mod approve;
mod clock;
pub mod config;
pub mod container;
pub mod dns;
pub mod events;
mod kernel;
mod output;
mod peer;
mod server;
mod tasks;

use std::{
    future::Future,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use agent_guard_common::event::KernelEvent;

use crate::{api::Level, policy};
use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, net::UnixListener};

pub use kernel::{
    KernelError, MIN_LSM_KERNEL, MapSizes,
    btf::{VMLINUX_BTF, lsm_offsets},
    cgroup::cgroup2_root,
    kernel_version, probe_lsm,
};
pub use output::check as check_outputs;

use self::{
    events::{
        decode::{self, Decoded},
        schema::{Adopted, Body, Event, Loss, Note, Started},
    },
    kernel::cgroup,
    output::metrics,
    tasks::{registry::Registry, reload, state},
};

/// The inode of the initial pid namespace (`include/linux/proc_ns.h`).
const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;

/// Why the daemon could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("the daemon must run as root (it loads eBPF programs); running as uid {uid}")]
    NotRoot { uid: u32 },
    /// The kernel keys tags by the host's pids: a daemon in another pid namespace would look
    /// up, tag and signal the wrong processes.
    #[error(
        "the daemon must run in the host's pid namespace (it is in pid namespace {inode}); in Kubernetes set hostPID: true"
    )]
    PidNamespace { inode: u64 },
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error(transparent)]
    Output(#[from] output::OutputError),
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    #[error(transparent)]
    Approvals(#[from] approve::ApproveError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("ring buffer {0}")]
    RingBuffer(std::io::Error),
    #[error("policy directory {dir} does not validate: {}", errors.join("; "))]
    Policy { dir: PathBuf, errors: Vec<String> },
    #[error("--require {want}: {capability} enforcement on this kernel is only `{have}`{why}")]
    Required { want: Level, capability: &'static str, have: Level, why: String },
}

/// What a deliberate stop (SIGTERM, SIGINT) does with the open tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnStop {
    /// Stop every open task (kill its processes), then detach the programs and remove the
    /// pinned state: nothing is left unguarded because nothing is left.
    StopTasks,
    /// Leave the tasks running, confined by the pinned programs and maps exactly as before;
    /// the next daemon adopts them (for upgrades and restarts).
    KeepConfined,
}

/// The daemon's settings, from the command line and the config file.
pub struct DaemonConfig {
    /// Outputs, audit store, metrics and flood control (the config file, or its defaults).
    pub file: config::ConfigFile,
    pub map_sizes: MapSizes,
    /// Name of the cgroup directory (under the cgroup v2 root) that holds the task cgroups.
    pub cgroup_name: String,
    /// Refuse to start unless every capability is enforced at least at this level.
    pub require: Option<Level>,
    /// How long an action held by an `ask` rule waits for a human before it is refused.
    pub approval_timeout: Duration,
    /// Directory of policy files (profiles, templates, grants); reloaded on SIGHUP and on change.
    pub policy_dir: PathBuf,
    /// The saved open tasks and the lock that makes this daemon the only one (state.rs).
    pub state_dir: PathBuf,
    /// bpffs directory where the programs' links and the maps are pinned (kernel.rs).
    pub pin_dir: PathBuf,
    /// The config file, if one was given (kept from every task: it can hold output tokens).
    pub config_path: Option<PathBuf>,
    pub on_stop: OnStop,
}

/// Runs until `shutdown` completes. The programs and maps are pinned: if this daemon dies,
/// every task stays confined and the next daemon adopts it. At a deliberate stop, `on_stop`
/// says whether the open tasks are stopped (and everything detached) or left confined.
#[expect(clippy::too_many_lines, reason = "the daemon's start and stop sequence, in order")]
pub async fn run(
    config: DaemonConfig,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let uid = nix::unistd::geteuid().as_raw();
    if uid != 0 {
        return Err(DaemonError::NotRoot { uid });
    }
    // The initial pid namespace has a fixed inode, whatever /proc is mounted: a /proc of a
    // nested namespace would show one pid only.
    let pid_ns = std::os::unix::fs::MetadataExt::ino(
        &std::fs::metadata("/proc/self/ns/pid").map_err(|_| DaemonError::PidNamespace { inode: 0 })?,
    );
    if pid_ns != PROC_PID_INIT_INO {
        return Err(DaemonError::PidNamespace { inode: pid_ns });
    }
    // Policies first: a daemon that would start without the policies it was given is refused.
    let policies = policy::PolicySet::load_dir(&config.policy_dir)
        .map_err(|errors| DaemonError::Policy { dir: config.policy_dir.clone(), errors })?;
    // The lock first: two daemons must never adopt (and rewrite) one guard's state.
    let mut state = state::StateDir::open(&config.state_dir)?;
    let saved = state.load()?;
    let last_alive = state.last_alive();
    let cgroup_root = cgroup::cgroup2_root()?;
    // The audit store exists before the kernel learns which files are the guard's.
    let store = match &config.file.audit_store.path {
        Some(path) => Some(crate::audit::Store::open(path, config.file.audit_store.retention)?),
        None => None,
    };
    let api_socket = listener.local_addr().ok().and_then(|a| a.as_pathname().map(std::path::Path::to_path_buf));
    let guard_files = guard_files(&config, api_socket.as_deref());
    let (kernel, rings) = kernel::Kernel::load(&kernel::LoadOptions {
        sizes: &config.map_sizes,
        cgroup_root: &cgroup_root,
        require_lsm: config.require == Some(Level::Lsm),
        pin_dir: &config.pin_dir,
        approval_timeout: config.approval_timeout,
        guard_files: &guard_files,
        api_socket: api_socket.as_deref(),
        path_seed: state.path_seed()?,
    })?;
    // Loading parses the kernel's BTF and the eBPF object (twice where the LSM attempt falls
    // back): tens of MiB freed again. Hand them back to the system rather than keep them resident.
    // SAFETY: malloc_trim only releases free heap memory. (glibc's; musl's allocator returns
    // freed pages on its own.)
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0)
    };
    kernel::release_object_pages();
    if let Some(want) = config.require {
        let e = &kernel.enforcement;
        for (capability, have) in [("network", &e.network), ("file", &e.file), ("exec", &e.exec)] {
            if *have < want {
                let why = kernel.warnings.first().map(|w| format!(" ({w})")).unwrap_or_default();
                return Err(DaemonError::Required { want, capability, have: *have, why });
            }
        }
    }
    for warning in &kernel.warnings {
        tracing::warn!("{warning}");
    }
    let host = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    let metrics = metrics::Metrics::default();
    let mut extra = Vec::new();
    let mut highest_stored_id = 0;
    if let Some(store) = store {
        highest_stored_id = store.max_task_id()?;
        extra.push(output::Extra { name: config::AUDIT_STORE_OUTPUT.into(), writer: output::store::writer(store) });
    }
    let hub =
        output::start(&config.file.outputs, extra, config.file.aggregation.window, host.clone(), metrics.clone())?;
    let (sink, kernel_sink, writer) = (hub.sink, hub.kernel, hub.task);
    let enforcement = kernel.enforcement.clone();
    let adopting = kernel.adopted;
    let registry = Arc::new(Mutex::new(Registry::new(
        kernel,
        cgroup_root.join(&config.cgroup_name),
        host.clone(),
        sink.clone(),
        config.approval_timeout,
    )));
    let saving = {
        let mut reg = registry.lock().expect("registry lock is never poisoned");
        // Before adoption: an adopted task gets a new resolver (the old one died with its daemon).
        let tasks: Arc<Mutex<dyn dns::TaskDns + Send>> = registry.clone();
        reg.dns = dns::Resolvers::new(&config.file.dns, Arc::downgrade(&tasks));
        reg.containers = crate::daemon::container::Runtimes::new(&config.file.containers);
        reg.policy_dir.clone_from(&config.policy_dir);
        reg.apply_policies(policies, "start");
        let (adopted, revoked, closed) = reg.adopt(saved);
        reg.raise_next_id(highest_stored_id);
        if adopting {
            report_adoption(&reg, last_alive, adopted, revoked, closed);
        }
        reg.keep_state(state);
        reg.persist()
    };
    saving.wait();

    let reason = format!(
        "agent-guard {} enforcing network={} file={} exec={}",
        env!("CARGO_PKG_VERSION"),
        enforcement.network,
        enforcement.file,
        enforcement.exec
    );
    let start = Started { levels: enforcement.clone(), reason };
    sink.send(Event::new(Body::GuardStart(start), &host, SystemTime::now()));
    tracing::info!(network = %enforcement.network, file = %enforcement.file, exec = %enforcement.exec, "agent-guard started");

    // SAFETY: each ring buffer owns its fd for as long as its AsyncFd lives.
    let ring = unsafe { AsyncFd::register_with_interest(rings.events, tokio::io::Interest::READABLE) }
        .map_err(|err| DaemonError::RingBuffer(err.into()))?;
    let alerts = unsafe { AsyncFd::register_with_interest(rings.alerts, tokio::io::Interest::READABLE) }
        .map_err(|err| DaemonError::RingBuffer(err.into()))?;
    // The enrichment state is the readers', shared by both (lineage spans both rings).
    let decoder = Arc::new(Mutex::new(decode::Decoder::new(host.clone(), enforcement.clone())));
    registry.lock().expect("registry lock is never poisoned").decoder = Some(decoder.clone());
    let stop_reading = tokio_util::sync::CancellationToken::new();
    let reader =
        tokio::spawn(read_events(ring, decoder.clone(), registry.clone(), kernel_sink.clone(), stop_reading.clone()));
    let alert_reader = tokio::spawn(read_events(alerts, decoder, registry.clone(), kernel_sink, stop_reading.clone()));
    let drops = tokio::spawn(watch_drops(registry.clone()));
    let reloads = reload::start(&config.policy_dir, registry.clone());
    let metrics_stop = tokio_util::sync::CancellationToken::new();
    let metrics_server = match &config.file.metrics {
        Some(m) => {
            let stop = metrics_stop.clone();
            let registry = registry.clone();
            let status: metrics::StatusSource =
                Arc::new(move || registry.lock().expect("registry lock is never poisoned").status());
            Some(metrics::serve(m.listen, metrics, status, async move { stop.cancelled().await }).await?)
        }
        None => None,
    };
    let channels = approve::start(&config.file.approvals, registry.clone(), metrics_stop.clone()).await?;

    tokio::pin!(shutdown);
    // Connections are tracked so that shutdown can close them: an idle client must not keep
    // the registry (and with it the programs and the event writer) alive.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Taken at the accept, before any queueing behind other connections (peer.rs).
                    let accepted_ns = clock::boot_ns_now();
                    connections.spawn(server::serve_connection(stream, registry.clone(), accepted_ns));
                }
                Err(err) => tracing::warn!(%err, "accept failed"),
            },
            // Reap finished connections as they end.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }

    connections.shutdown().await;
    // The readers drain their rings a last time (what was sent without a wake-up since their
    // last tick), then stop; if the hub cannot take it soon, they are aborted.
    stop_reading.cancel();
    for mut task in [reader, alert_reader] {
        if tokio::time::timeout(Duration::from_secs(2), &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
        }
    }
    for task in [drops, reloads].into_iter().chain(channels) {
        task.abort();
        let _ = task.await;
    }
    {
        let mut reg = registry.lock().expect("registry lock is never poisoned");
        report_drops(&mut reg);
        let open: Vec<u32> = reg.list().iter().filter(|t| t.ended.is_none()).map(|t| t.id).collect();
        let reason = match config.on_stop {
            OnStop::StopTasks => {
                for &id in &open {
                    let _ = reg.stop_task(id, None, "agent-guard is shutting down: its tasks cannot stay unguarded");
                }
                "shutdown signal: open tasks stopped, programs detached".to_string()
            }
            OnStop::KeepConfined => {
                // Waited for under the lock: the readers have stopped, and the next daemon
                // adopts from what is written.
                reg.persist().wait();
                format!(
                    "shutdown signal: {} open task(s) left confined by the pinned programs, for the next daemon to adopt",
                    open.len()
                )
            }
        };
        reg.sink.send(Event::new(Body::GuardStop(Note { reason }), &reg.host, SystemTime::now()));
    }
    // After the tasks are stopped, never before: a scraper holding a connection open must not
    // delay that. The server holds the registry too; it is aborted if it does not stop soon.
    metrics_stop.cancel();
    if let Some(mut server) = metrics_server
        && tokio::time::timeout(Duration::from_secs(2), &mut server).await.is_err()
    {
        server.abort();
        let _ = server.await;
    }
    let (cgroup_base, state) = {
        let mut reg = registry.lock().expect("registry lock is never poisoned");
        if config.on_stop == OnStop::StopTasks {
            // Without the pins, dropping the registry (and the kernel object in it) below
            // detaches every program and frees the maps.
            reg.kernel.unpin();
            reg.clear_state();
        }
        // A clone: a supervisor thread that outlives this still saves what it changes.
        ((reg.cgroup_base().to_path_buf(), reg.task_cgroups()), reg.state.clone())
    };
    // What is still pending is written now, even where something else still holds the registry.
    if let Some(state) = state {
        state.queue(Vec::new()).wait();
    }
    drop(Arc::try_unwrap(registry).ok());
    if config.on_stop == OnStop::StopTasks {
        remove_cgroups(&cgroup_base.0, &cgroup_base.1).await;
    }
    drop(sink);
    let _ = writer.await;
    match config.on_stop {
        OnStop::StopTasks => tracing::info!("agent-guard stopped; all programs detached"),
        OnStop::KeepConfined => tracing::info!("agent-guard stopped; its programs stay attached, pinned"),
    }
    Ok(())
}

/// The daemon's files the kernel keeps from every task, whatever its grant (`guard_fs.rs)`:
/// (path, whether tasks may read it). Its executable is also the CLI tasks run: read only.
fn guard_files(config: &DaemonConfig, api_socket: Option<&std::path::Path>) -> Vec<(PathBuf, bool)> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let mut files = vec![(config.state_dir.clone(), false), (config.policy_dir.clone(), false)];
    files.extend(config.file.audit_store.path.clone().map(|p| (p, false)));
    files.extend(api_socket.map(|p| (p.to_path_buf(), false)));
    files.extend(config.config_path.clone().map(|p| (p, false)));
    // Whoever reads an approval channel's secret can forge an approval.
    files.extend(config.file.approvals.secret_files().into_iter().map(|p| (p, false)));
    files.extend(std::env::current_exe().ok().map(|p| (p, true)));
    // Where events wait or are kept: an agent must not truncate or delete its own trail.
    for output in &config.file.outputs {
        match output {
            config::OutputConfig::File(file) => {
                // The file output opens it for appending; here it only has to exist, so that
                // the kernel learns its inode. A file rotated later is a new inode, which is
                // protected from the next start on (docs/design.md).
                // Modes as the output makes them (0700 directories, 0600 files).
                if let Some(dir) = file.path.parent() {
                    let _ = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir);
                }
                let _ = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&file.path);
                files.push((file.path.clone(), false));
            }
            config::OutputConfig::Http(http) => {
                let spool = http.spool(&output.name());
                let _ = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&spool);
                files.push((spool, false));
            }
            _ => {}
        }
    }
    files
}

/// The `guard.adopt` event: how long no daemon ran, and what became of the tasks.
fn report_adoption(reg: &Registry, last_alive: Option<SystemTime>, adopted: usize, revoked: usize, closed: usize) {
    let now = SystemTime::now();
    let gap = match last_alive.and_then(|t| now.duration_since(t).ok()) {
        Some(gap) => format!(
            "no daemon ran for about {} (from {})",
            humantime::format_duration(Duration::from_secs(gap.as_secs())),
            clock::rfc3339(last_alive.expect("some"))
        ),
        None => "no daemon ran for an unknown time (no saved state)".into(),
    };
    let meanwhile = if reg.kernel.links_pinned {
        "the kernel enforced every task meanwhile"
    } else {
        "the programs had detached with it (this kernel does not pin BPF links)"
    };
    let reason = format!(
        "{gap}; {meanwhile}. Adopted {adopted} open task(s); stopped or revoked {revoked}; closed {closed} that \
         ended. Events the kernel recorded meanwhile follow."
    );
    let event = Event::new(Body::GuardAdopt(Adopted { adopted: adopted as u64, reason }), &reg.host, now);
    tracing::warn!(adopted, revoked, closed, "adopted the pinned state of a previous daemon");
    reg.sink.send(event);
}

/// Removes the task cgroups and their parent, waiting briefly for killed processes to leave.
/// Removes the tasks' cgroup directories (in their callers' cgroups; the deepest, a sub-task's,
/// first) and `base`, where tasks whose caller's cgroup could not be read were placed.
async fn remove_cgroups(base: &std::path::Path, tasks: &[PathBuf]) {
    let mut tasks = tasks.to_vec();
    tasks.sort_by_key(|dir| std::cmp::Reverse(dir.components().count()));
    for _ in 0..50 {
        let children: Vec<PathBuf> = std::fs::read_dir(base)
            .map(|dir| dir.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
            .unwrap_or_default();
        for dir in tasks.iter().chain(&children) {
            let _ = cgroup::remove(dir);
        }
        if cgroup::remove(base).is_ok() && tasks.iter().all(|dir| !dir.exists()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::warn!(path = %base.display(), "task cgroups still busy at shutdown; left in place");
}

/// How often the reader collects records the kernel put on a ring buffer without waking it
/// (ebpf `emit::send`): the longest an event waits in the kernel while the daemon is idle. The
/// records the daemon must act on at once wake it (`emit::send_now`).
const READ_TICK: Duration = Duration::from_millis(10);

/// Decodes kernel records into events. A record is only taken off the ring buffer once the
/// kernel-event queue has room for its event (see output.rs): under a flood, the backlog stays
/// in the ring buffer, and what does not fit there is counted by the kernel.
async fn read_events(
    mut ring: AsyncFd<RingBuf<MapData>>,
    decoder: Arc<Mutex<decode::Decoder>>,
    registry: Arc<Mutex<Registry>>,
    kernel_sink: output::KernelSink,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(READ_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = false;
    loop {
        tokio::select! {
            ready = ring.readable_mut() => match ready {
                // Cleared before the ring is read, so a record committed meanwhile wakes it again.
                Ok(mut guard) => guard.clear_ready(),
                Err(err) => {
                    tracing::error!(%err, "ring buffer poll failed");
                    return;
                }
            },
            _ = tick.tick() => {}
            () = stop.cancelled() => last = true,
        }
        loop {
            // Room in the bounded queue first (backpressure: while the hub is behind, records
            // wait in the kernel's ring buffer, whose overflow is counted), then a batch of
            // records decoded under one lock, sent as one message.
            let Ok(permit) = kernel_sink.reserve().await else { return };
            let (events, more) = decode_batch(ring.get_mut(), &decoder, &registry);
            if !events.is_empty() {
                permit.send(events);
            }
            if !more {
                break;
            }
        }
        if last {
            return;
        }
    }
}

/// Decodes up to `output::KERNEL_BATCH` action records from `ring`; records that drive
/// decisions (a held action, an untaggable child, an empty task, tampering) are acted on and
/// their events sent at once. Returns the actions' events, and whether records may remain.
/// The locks are taken per record, not per batch: an API call (a revoke) waits for one record's
/// decoding at most.
fn decode_batch(
    ring: &mut RingBuf<MapData>,
    decoder: &Mutex<decode::Decoder>,
    registry: &Mutex<Registry>,
) -> (Vec<Event>, bool) {
    let mut events = Vec::new();
    while let Some(item) = ring.next() {
        let record = KernelEvent::try_from(&*item);
        drop(item);
        let record = match record {
            Ok(record) => record,
            Err(err) => {
                tracing::error!(%err, "undecodable kernel record");
                continue;
            }
        };
        let action = is_action(&record);
        // /proc first, under the decoder's lock alone: the registry's is the API's too.
        let prepared = decoder.lock().expect("decoder lock is never poisoned").prepare(&record);
        let mut reg = registry.lock().expect("registry lock is never poisoned");
        // Lock order: the registry, then the decoder (only the readers take both).
        let mut dec = decoder.lock().expect("decoder lock is never poisoned");
        match decode::decode(&mut dec, &*reg, record, prepared) {
            Decoded::Event(event) => {
                reg.count(&event);
                if action {
                    reg.strike(&event);
                    events.push(*event);
                } else {
                    reg.sink.send(*event);
                }
            }
            Decoded::TaskEmpty(id) => {
                reg.close_task(id);
                dec.forget_task(id);
            }
            Decoded::Used { task_id, rules, touched } => reg.record_use(task_id, rules, touched),
            Decoded::TagLost { task_id, child, event } => {
                // Fail closed: an untagged child of a task must not run.
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child as i32), nix::sys::signal::Signal::SIGKILL);
                tracing::error!(task = task_id, child, "untaggable child killed");
                reg.sink.send(*event);
            }
            Decoded::Held(held) => reg.hold(held),
            Decoded::Nothing => {}
        }
        drop((dec, reg));
        if events.len() >= output::KERNEL_BATCH {
            return (events, true);
        }
    }
    (events, false)
}

fn is_action(record: &KernelEvent) -> bool {
    use agent_guard_common::event::{VERDICT_ASK, VERDICT_IN_SCOPE};
    matches!(record, KernelEvent::Net(_) | KernelEvent::File(_) | KernelEvent::Exec(_))
        && !matches!(record.header().verdict, VERDICT_ASK | VERDICT_IN_SCOPE)
}

/// Once a second: reports kernel-side event losses, closes tasks whose "empty" record may have
/// been among them, and ends the processes of confined tasks whose grant expired. Once a
/// minute: drops learned DNS addresses whose TTL ran out (the kernel ignores them already).
async fn watch_drops(registry: Arc<Mutex<Registry>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut ticks: u64 = 0;
    loop {
        tick.tick().await;
        ticks += 1;
        let mut reg = registry.lock().expect("registry lock is never poisoned");
        if ticks.is_multiple_of(60) {
            reg.kernel.sweep_learned();
        }
        report_drops(&mut reg);
        reg.close_empty_tasks();
        reg.kill_ended_confined_tasks();
        reg.expire();
        let saving = reg.persist();
        reg.heartbeat();
        drop(reg);
        // Written after the lock is released: the readers take it for every record.
        saving.wait();
    }
}

fn report_drops(reg: &mut Registry) {
    let total = reg.kernel.dropped_events();
    if total > reg.dropped_total {
        let reason = format!("the kernel ring buffer was full: {total} events lost since start");
        let event = Event::new(
            Body::EventsDropped(Loss { lost: total - reg.dropped_total, reason }),
            &reg.host,
            SystemTime::now(),
        );
        reg.dropped_total = total;
        reg.sink.send(event);
        tracing::error!(total, "kernel events dropped");
    }
}
