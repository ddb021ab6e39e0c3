//! `cargo xtask demo`: a support agent inside a task. Its connect to the ticket service it was
//! granted succeeds; its connect to a paste site it was not granted is refused by the kernel,
//! and the daemon's event says which agent, task, intent, grant and rule.

use std::{
    io::{Read, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::cmd::{self, Result, agent_guard_bin, is_root, step, workspace_root};

const TICKETS_PORT: u16 = 8080;
const PASTE_PORT: u16 = 9090;

/// A tiny HTTP responder on 127.0.0.1:`port`, so that a refused connect can only be the guard.
fn serve(port: u16, body: &'static str) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .map_err(|e| format!("the demo needs 127.0.0.1:{port} free for its stand-in service: {e}"))?;
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = write!(conn, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        }
    });
    Ok(())
}

struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

fn agent_guard(socket: &Path) -> Command {
    let mut cmd = Command::new(agent_guard_bin());
    cmd.arg("--socket").arg(socket);
    // `cargo run` points LD_LIBRARY_PATH into target/: the loader's probing there is outside
    // the demo grant, and on a kernel without BPF LSM an out-of-scope open kills the agent.
    cmd.env_remove("LD_LIBRARY_PATH");
    cmd
}

fn show(cmd: &mut Command) -> Result<std::process::ExitStatus> {
    eprintln!("    $ {cmd:?}");
    cmd.status().map_err(|e| format!("cannot run {cmd:?}: {e}"))
}

#[expect(clippy::too_many_lines, reason = "the demo's steps, as the README tells them")]
pub fn run(toolchain: &str) -> Result<()> {
    cmd::build(toolchain)?;
    if !is_root() {
        return Err("the demo loads eBPF programs: run `cargo xtask demo` as root".into());
    }
    if !Path::new("/usr/bin/curl").exists() {
        step("installing curl (the demo's agent uses it)");
        cmd::run(Command::new("apt-get").args(["install", "-y", "--no-install-recommends", "curl"]))?;
    }
    let dir = std::env::temp_dir().join(format!("agent-guard-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let socket = dir.join("agent-guard.sock");
    let events = dir.join("events.jsonl");
    let audit_store = dir.join("audit.db");
    let policies = workspace_root().join("policies/agents");

    step(&format!(
        "stand-in services: ticket service on 127.0.0.1:{TICKETS_PORT}, paste site on 127.0.0.1:{PASTE_PORT}"
    ));
    serve(TICKETS_PORT, "ticket 4412: printer on fire\n")?;
    serve(PASTE_PORT, "pasted\n")?;

    step("starting the agent-guard daemon");
    let child = Command::new(agent_guard_bin())
        .arg("--socket")
        .arg(&socket)
        .args(["daemon", "--no-stdout", "--cgroup-name", "agent-guard-demo", "--events-file"])
        .arg(&events)
        .arg("--policy-dir")
        .arg(&policies)
        .arg("--audit-store")
        .arg(&audit_store)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the daemon: {e}"))?;
    let daemon = Daemon { child, socket: socket.clone() };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !agent_guard(&daemon.socket)
        .arg("status")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        if Instant::now() > deadline {
            return Err("the daemon did not answer within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    show(agent_guard(&socket).arg("status"))?;

    for file in ["support-bot.yaml", "triage.yaml"] {
        step(&format!("policy written once: {}", policies.join(file).display()));
        eprintln!("{}", std::fs::read_to_string(policies.join(file)).map_err(|e| e.to_string())?);
    }

    // The same agent and task intent both times: only the destination differs. The task's
    // grant is the profile's base grant plus the template filled in for ticket 4412.
    let curl = |args: &[&str]| {
        let mut cmd = agent_guard(&socket);
        cmd.args(["run", "--profile", "support-bot", "--template", "triage", "--var", "ticket=4412"])
            .args(["--intent", "Summarise ticket 4412 for on-call"]);
        cmd.args(["--", "/usr/bin/curl", "-sS", "--max-time", "5"]).args(args);
        cmd
    };
    step("the agent fetches the ticket it was asked to summarise (in scope)");
    let fetch = show(&mut curl(&[&format!("http://127.0.0.1:{TICKETS_PORT}/tickets/4412")]))?;

    step("the same agent tries to post the ticket to a paste site (out of scope)");
    let paste = show(&mut curl(&["-d", "ticket 4412", &format!("http://127.0.0.1:{PASTE_PORT}/paste")]))?;

    step("the event that explains the refusal");
    let deadline = Instant::now() + Duration::from_secs(10);
    let denial = loop {
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("\"network.connect\"") && l.contains("\"denied\"")) {
            break line.to_string();
        }
        if Instant::now() > deadline {
            return Err(format!("no denial event in {}", events.display()));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("{denial}");

    step("tasks");
    show(agent_guard(&socket).args(["task", "list"]))?;
    drop(daemon);
    eprintln!("\nall events: {}", events.display());

    // The task that was refused, named by the denial event: `"task":{"id":N,...`.
    let task = denial
        .split("\"task\":{\"id\":")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .ok_or("the denial event names no task")?
        .to_string();
    step(&format!("the evidence report of task {task}, from the local audit store"));
    let report = show(
        Command::new(agent_guard_bin())
            .args(["report", "--format", "md", "--task", &task, "--store"])
            .arg(&audit_store),
    )?;
    if !report.success() {
        return Err("no evidence report".into());
    }

    if !fetch.success() {
        return Err("the in-scope fetch failed".into());
    }
    if paste.success() {
        return Err("the out-of-scope connect was not refused".into());
    }
    eprintln!("demo ok: in-scope connect allowed, out-of-scope connect refused by the kernel (EPERM), event recorded");
    Ok(())
}
