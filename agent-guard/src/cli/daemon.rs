//! `agent-guard daemon`

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, bail};
use tokio::signal::unix::{SignalKind, signal};

use crate::daemon::{
    DaemonConfig, MapSizes,
    config::{ConfigFile, OutputConfig},
};

/// `agent-guard daemon`.
#[derive(clap::Args)]
pub struct Args {
    /// Config file (YAML): outputs, audit store, metrics, flood control (docs/config.md). Without
    /// one, events go to stdout and --events-file, and the audit store to its default path.
    #[arg(long, conflicts_with_all = ["events_file", "no_stdout"])]
    config: Option<PathBuf>,
    /// Append events as JSON lines to this file (without --config).
    #[arg(long)]
    events_file: Option<PathBuf>,
    /// Do not write events to stdout (without --config).
    #[arg(long)]
    no_stdout: bool,
    /// Audit store database (overrides the config file's `auditStore.path`); `none` turns it off.
    #[arg(long)]
    audit_store: Option<PathBuf>,
    /// Group allowed to use the API socket (mode 0660); by default only root (mode 0600).
    #[arg(long)]
    socket_group: Option<String>,
    /// Cgroup directory, under the cgroup v2 root, holding one directory per task.
    #[arg(long, default_value = "agent-guard")]
    cgroup_name: String,
    /// Most processes tagged at once.
    #[arg(long, default_value_t = agent_guard_common::maps::DEFAULT_PROC_TAGS)]
    max_processes: u32,
    /// Most tasks at once.
    #[arg(long, default_value_t = agent_guard_common::maps::DEFAULT_TASKS)]
    max_tasks: u32,
    /// Most path entries over all open grants (one per distinct path or directory pattern).
    #[arg(long, default_value_t = agent_guard_common::maps::DEFAULT_PATH_RULES)]
    max_path_rules: u32,
    /// Most network entries over all open grants (one per distinct prefix).
    #[arg(long, default_value_t = agent_guard_common::maps::DEFAULT_NET_RULES)]
    max_net_rules: u32,
    /// Refuse to start unless network, file and exec are all enforced at least at this level
    /// (lsm > cgroup > kill > observe).
    #[arg(long, value_enum)]
    require: Option<crate::api::Level>,
    /// How long an action held by an `ask` rule waits for `agent-guard approve|deny` before it is
    /// refused.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    approval_timeout: std::time::Duration,
    /// Policy directory: AgentProfile, GrantTemplate and Grant files (*.yaml), reloaded on SIGHUP
    /// and whenever a file in it changes. A missing directory holds no policies.
    #[arg(long, default_value = "/etc/agent-guard/policies")]
    policy_dir: PathBuf,
    /// Directory of the saved open tasks and the daemon's lock: a restarted daemon adopts the
    /// tasks saved here (same ids); a second daemon on the same directory is refused.
    #[arg(long, default_value = "/var/lib/agent-guard")]
    state_dir: PathBuf,
    /// bpffs directory where the programs' links and the maps are pinned, so that they
    /// outlive the daemon [default: /sys/fs/bpf/<cgroup-name>].
    #[arg(long)]
    pin_dir: Option<PathBuf>,
    /// What SIGTERM/SIGINT does with open tasks: stop them and detach everything, or leave
    /// them confined for the next daemon to adopt. A killed or crashed daemon always leaves
    /// them confined.
    #[arg(long, value_enum, default_value = "stop-tasks")]
    on_stop: crate::daemon::OnStop,
    /// Size of the kernel-to-daemon ring buffer in bytes: a power of two, at least 4096.
    #[arg(long, default_value_t = agent_guard_common::maps::DEFAULT_EVENTS_BYTES, value_parser = ring_size)]
    ring_buffer_bytes: u32,
}

fn ring_size(text: &str) -> Result<u32, String> {
    let size: u32 = text.parse().map_err(|_| format!("{text:?} is not a number of bytes"))?;
    if size < 4096 || !size.is_power_of_two() {
        return Err(format!("{size} must be a power of two of at least 4096 (the kernel's ring buffer rule)"));
    }
    Ok(size)
}

/// Binds the socket: refuses to take over one a live daemon is serving.
fn bind(socket: &Path, group: Option<&str>) -> anyhow::Result<std::os::unix::net::UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            bail!("another daemon is serving {}", socket.display());
        }
        std::fs::remove_file(socket).with_context(|| format!("removing stale socket {}", socket.display()))?;
    }
    // Create the socket with no access for anyone but root, then open it up as configured.
    let old_umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = std::os::unix::net::UnixListener::bind(socket);
    nix::sys::stat::umask(old_umask);
    let listener = listener.with_context(|| format!("binding {}", socket.display()))?;
    if let Some(group) = group {
        let gid = nix::unistd::Group::from_name(group)?.with_context(|| format!("no group {group}"))?.gid;
        nix::unistd::chown(socket, None, Some(gid))?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))?;
    }
    listener.set_nonblocking(true)?;
    Ok(listener)
}

pub fn main(socket: &Path, args: Args) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let mut file = if let Some(path) = &args.config {
        ConfigFile::load(path)?
    } else {
        let mut file = ConfigFile::default();
        file.outputs.retain(|o| !(args.no_stdout && matches!(o, OutputConfig::Stdout(_))));
        if let Some(path) = &args.events_file {
            for output in &mut file.outputs {
                if let OutputConfig::File(f) = output {
                    f.path.clone_from(path);
                }
            }
        }
        file
    };
    if let Some(path) = args.audit_store {
        file.audit_store.path = (path.as_os_str() != "none").then_some(path);
    }
    let config = DaemonConfig {
        file,
        map_sizes: MapSizes {
            proc_tags: args.max_processes,
            tasks: args.max_tasks,
            path_rules: args.max_path_rules,
            net_rules: args.max_net_rules,
            events_bytes: args.ring_buffer_bytes,
        },
        config_path: args.config.clone(),
        pin_dir: args.pin_dir.unwrap_or_else(|| Path::new("/sys/fs/bpf").join(&args.cgroup_name)),
        cgroup_name: args.cgroup_name,
        require: args.require,
        approval_timeout: args.approval_timeout,
        policy_dir: args.policy_dir,
        state_dir: args.state_dir,
        on_stop: args.on_stop,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::UnixListener::from_std(bind(socket, args.socket_group.as_deref())?)?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        let result = crate::daemon::run(config, listener, shutdown).await;
        let _ = std::fs::remove_file(socket);
        result.context("agent-guard daemon")
    })?;
    Ok(ExitCode::SUCCESS)
}
