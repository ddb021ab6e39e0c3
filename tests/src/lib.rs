//! Harness for the end-to-end tests: a real `agent-guard daemon` on this host's kernel, real
//! `agent-guard run` invocations, and the events file the daemon writes. Needs root; anything
//! missing is a loud failure, never a skip.

use std::{
    ffi::OsString,
    io::{BufRead, BufReader},
    net::TcpListener,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use serde_json::Value;

/// Fails the test (never skips) when not root: the daemon loads eBPF programs.
pub fn require_root() {
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "end-to-end tests need root (they load eBPF programs and create cgroups); run `cargo xtask test` as root"
    );
}

/// The agent-guard binary under test: $`AGENT_GUARD_BIN`, or the workspace's debug build.
pub fn agent_guard_bin() -> PathBuf {
    let path = std::env::var_os("AGENT_GUARD_BIN")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/agent-guard"), PathBuf::from);
    assert!(
        path.is_file(),
        "agent-guard binary not found at {}: build it first (`cargo xtask test` does)",
        path.display()
    );
    // Grants name its directory, which must be a normalised path.
    std::fs::canonicalize(&path).expect("canonical path of the agent-guard binary")
}

static NEXT: AtomicU32 = AtomicU32::new(0);

const START_TIMEOUT: Duration = Duration::from_secs(300);

pub struct Daemon {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub events: PathBuf,
    /// The daemon's command line, for `spawn` after `kill`.
    args: Vec<OsString>,
    /// Its cgroup directory's name, which also names its bpffs pin directory.
    pub cgroup: String,
    /// A command the daemon is started through (it ends by exec'ing the daemon), if any.
    wrapper: Vec<OsString>,
}

impl Daemon {
    /// Starts a daemon with its own socket, events file and cgroup directory, and waits until
    /// it answers `status`.
    pub fn start() -> Daemon {
        Self::start_with(&[])
    }

    /// Starts a daemon with extra `daemon` arguments.
    pub fn start_with(extra: &[&str]) -> Daemon {
        Self::start_configured(None, extra)
    }

    /// Starts a daemon with a config file: `config` is its YAML, where `{events}` stands for
    /// the events file the harness reads and `{dir}` for the daemon's temporary directory.
    pub fn start_configured(config: Option<&str>, extra: &[&str]) -> Daemon {
        Self::start_wrapped(&[], config, extra)
    }

    /// Starts a daemon through `wrapper`, a command that ends by exec'ing the rest of its
    /// command line (so the child is the daemon): `unshare`, `sh -c '...; exec "$@"' sh`.
    pub fn start_wrapped(wrapper: &[&str], config: Option<&str>, extra: &[&str]) -> Daemon {
        require_root();
        // No leading dot: the kernel leaves paths with hidden components to the daemon (observed).
        let dir = tempfile::Builder::new().prefix("agent-guard-e2e-").tempdir().expect("temp dir");
        let socket = dir.path().join("agent-guard.sock");
        let events = dir.path().join("events.jsonl");
        let cgroup = format!("agent-guard-e2e-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let mut args: Vec<OsString> = vec!["--socket".into(), socket.clone().into(), "daemon".into()];
        args.extend(["--cgroup-name".into(), cgroup.clone().into()]);
        args.extend(["--audit-store".into(), dir.path().join("audit.db").into()]);
        args.extend(["--state-dir".into(), dir.path().join("state").into()]);
        match config {
            Some(yaml) => {
                let yaml =
                    yaml.replace("{events}", events.to_str().unwrap()).replace("{dir}", dir.path().to_str().unwrap());
                let path = dir.path().join("agent-guard.yaml");
                std::fs::write(&path, yaml).expect("write the config file");
                args.extend(["--config".into(), path.into()]);
            }
            None => {
                args.extend(["--no-stdout".into(), "--events-file".into(), events.clone().into()]);
            }
        }
        args.extend(extra.iter().map(OsString::from));
        let wrapper = wrapper.iter().map(OsString::from).collect();
        let mut daemon = Daemon { child: None, dir, socket, events, args, cgroup, wrapper };
        daemon.spawn();
        daemon
    }

    /// Starts the daemon process (again, after `kill`: same socket, cgroup, state directory
    /// and events file) and waits until it answers `status`.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "the daemon is already running");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.stderr"))
            .expect("stderr file");
        let mut command = match self.wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(agent_guard_bin());
                command
            }
            None => Command::new(agent_guard_bin()),
        };
        let child = command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn agent-guard daemon");
        self.child = Some(child);
        // Verifying the programs takes a while under emulation (the VM suite): allow for it.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().expect("try_wait") {
                panic!("daemon exited with {status} before serving; stderr:\n{}", self.stderr());
            }
            if UnixStream::connect(&self.socket).is_ok() && self.cli(&["status"]).status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not serve within {START_TIMEOUT:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILLs the daemon (no shutdown of any kind) and reaps it.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("daemon running");
        child.kill().expect("SIGKILL the daemon");
        child.wait().expect("reap the daemon");
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.stderr")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// Runs `agent-guard ARGS` against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(agent_guard_bin()).arg("--socket").arg(&self.socket).args(args).output().expect("run agent-guard")
    }

    /// `agent-guard run --agent AGENT --intent INTENT --grant GRANT [RUN_ARGS] -- CMD...`, not yet started.
    pub fn run_command(&self, agent: &str, intent: &str, grant: &Path, run_args: &[&str], cmd: &[&str]) -> Command {
        let mut command = Command::new(agent_guard_bin());
        command.arg("--socket").arg(&self.socket);
        command.args(["run", "--agent", agent, "--intent", intent, "--grant"]).arg(grant);
        command.args(run_args).arg("--").args(cmd);
        // cargo test points LD_LIBRARY_PATH at the toolchain: the loader's probing there would
        // be out of scope for every grant (and, without BPF LSM, get the agent killed).
        command.env_remove("LD_LIBRARY_PATH");
        command
    }

    /// Runs `agent-guard run ... -- CMD...` to completion.
    pub fn run(&self, agent: &str, intent: &str, grant: &Path, cmd: &[&str]) -> Output {
        self.run_command(agent, intent, grant, &[], cmd).output().expect("run agent-guard run")
    }

    /// Every event written so far.
    pub fn events(&self) -> Vec<Value> {
        let Ok(file) = std::fs::File::open(&self.events) else { return Vec::new() };
        BufReader::new(file)
            .lines()
            .map(|line| serde_json::from_str(&line.expect("events line")).expect("events are JSON lines"))
            .collect()
    }

    /// Waits (up to 10 s) for an event matching `pred` and returns it.
    pub fn wait_event(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(event) = self.events().into_iter().find(|e| pred(e)) {
                return event;
            }
            assert!(Instant::now() < deadline, "no event {what} within 10 s; events:\n{:#?}", self.events());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "daemon did not stop within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }
}

/// A TCP listener on loopback that accepts (and drops) connections in the background.
pub fn listener(addr: &str) -> u16 {
    let listener = TcpListener::bind(addr).expect("bind test listener");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || for _ in listener.incoming() {});
    port
}

/// What every test process needs to start and run (loader, libraries, /proc for Rust's
/// runtime, the test binaries), for grants whose `extra` does not name files itself: without
/// BPF LSM an out-of-scope open kills the process.
/// The test's own directory `dir` is writable (probes report results there).
fn base_files(dir: &Path) -> String {
    let bins = agent_guard_bin().parent().expect("target dir").display().to_string();
    let dir = dir.display();
    format!(
        "  files: {{read: [\"/usr/**\", \"/lib/**\", \"/lib64/**\", \"/etc/**\", \"/proc/**\", \"/sys/**\", \"/dev/**\", \"{bins}/**\", \"{dir}/**\"], write: [\"/dev/**\", \"{dir}/**\"]}}\n  exec: [\"{bins}/*\", \"/usr/bin/*\"]\n"
    )
}

/// Writes a grant file into `dir` and returns its path.
pub fn grant(dir: &Path, name: &str, mode: &str, connect: &[String], extra: &str) -> PathBuf {
    let files = if extra.contains("files:") { String::new() } else { base_files(dir) };
    let rules = connect.iter().map(|r| format!("\"{r}\"")).collect::<Vec<_>>().join(", ");
    let text = format!(
        "apiVersion: agent-guard.dev/v1\nkind: Grant\nmetadata: {{name: {name}}}\nspec:\n  mode: {mode}\n  ttl: 10m\n  network: {{connect: [{rules}]}}\n{files}{extra}"
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).expect("write grant");
    path
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
