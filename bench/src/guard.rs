//! The agent-guard daemon under test: started and stopped per repetition, its API, its grants.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};

pub struct Guard {
    child: Child,
    pub socket: PathBuf,
    pub events: PathBuf,
    /// Whether files and exec are at the `landlock` level (no BPF LSM, Landlock present).
    pub landlock: bool,
}

impl Guard {
    pub fn start(bin: &Path, dir: &Path, extra: &[&str]) -> anyhow::Result<Guard> {
        Guard::start_configured(bin, dir, "", extra)
    }

    /// `start` with `more_config` (YAML lines) added to the daemon's configuration.
    pub fn start_configured(bin: &Path, dir: &Path, more_config: &str, extra: &[&str]) -> anyhow::Result<Guard> {
        let socket = dir.join("guard.sock");
        let events = dir.join("events.jsonl");
        let _ = std::fs::remove_file(&events);
        let policies = dir.join("no-policies");
        // Every event is measured one by one: flood control (which would fold the pipeline
        // benchmark's repeated opens into a few counted events) is off; the audit store is on.
        let config = dir.join("guard.yaml");
        let _ = std::fs::remove_file(dir.join("audit.db"));
        // No rotation: the pipeline benchmark tails one file.
        std::fs::write(
            &config,
            format!(
                "outputs: [{{type: file, path: {:?}, maxSize: 1TiB}}]\naggregation: {{window: 0s}}\n{more_config}",
                events.display().to_string()
            ),
        )?;
        let child = Command::new(bin)
            .arg("--socket")
            .arg(&socket)
            .args(["daemon", "--cgroup-name", "agent-guard-bench", "--config"])
            .arg(&config)
            .arg("--policy-dir")
            .arg(&policies)
            .arg("--audit-store")
            .arg(dir.join("audit.db"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("daemon.stderr"))?)
            .spawn()
            .context("starting the daemon")?;
        let mut guard = Guard { child, socket, events, landlock: false };
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Ok(status) = guard.call(json!({"op": "status"})) {
                guard.landlock = status["status"]["enforcement"]["file"] == "landlock";
                break;
            }
            if let Some(status) = guard.child.try_wait()? {
                bail!("daemon exited with {status}: {}", std::fs::read_to_string(dir.join("daemon.stderr"))?);
            }
            if Instant::now() > deadline {
                bail!("daemon did not answer");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(guard)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One API request (docs/api.md), from this untagged process.
    pub fn call(&self, mut request: Value) -> anyhow::Result<Value> {
        request["version"] = json!(1);
        let mut stream = UnixStream::connect(&self.socket)?;
        writeln!(stream, "{request}")?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line)?;
        let reply: Value = serde_json::from_str(&line)?;
        if reply["result"] == "error" {
            bail!("API error: {}", reply["message"]);
        }
        Ok(reply)
    }

    pub fn status(&self) -> anyhow::Result<Value> {
        Ok(self.call(json!({"op": "status"}))?["status"].clone())
    }

    pub fn map_used(&self, name: &str) -> anyhow::Result<u64> {
        let status = self.status()?;
        let maps = status["maps"].as_array().context("status has maps")?;
        maps.iter().find(|m| m["name"] == name).and_then(|m| m["used"].as_u64()).context("map in status")
    }

    pub fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait()?;
        if !status.success() {
            bail!("daemon exited with {status}");
        }
        Ok(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: signalling our own child (a no-op once it was reaped by stop()).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// The rules every measured agent needs (its binaries, the loader and libraries, the bench
/// directory, the loopback listener): 13 rules.
fn base_rules(dir: &Path, bins: &Path, port: u16) -> (Vec<String>, Vec<String>, Vec<String>, Vec<String>) {
    let d = dir.display();
    let b = bins.display();
    let read = ["/usr/**", "/lib/**", "/lib64/**", "/etc/**", "/proc/**", "/sys/**", "/dev/**"]
        .iter()
        .map(std::string::ToString::to_string)
        .chain([format!("{b}/**"), format!("{d}/**")])
        .collect();
    let write = vec![format!("{d}/**")];
    let exec = vec!["/usr/bin/*".to_string(), format!("{b}/*")];
    let connect = vec![format!("127.0.0.1/32:{port}")];
    (read, write, exec, connect)
}

/// Writes a grant of about `rules` rules: the base rules, then half path and half network
/// filler rules that never match. Returns (path, exact rule count).
pub fn write_grant(dir: &Path, bins: &Path, port: u16, rules: usize, mode: &str) -> anyhow::Result<(PathBuf, usize)> {
    write_grant_with(dir, bins, port, rules, mode, &[])
}

/// `write_grant` with `connect` rules added (before the filler).
pub fn write_grant_with(
    dir: &Path,
    bins: &Path,
    port: u16,
    rules: usize,
    mode: &str,
    extra_connect: &[&str],
) -> anyhow::Result<(PathBuf, usize)> {
    let (mut read, write, exec, mut connect) = base_rules(dir, bins, port);
    connect.extend(extra_connect.iter().map(std::string::ToString::to_string));
    let base = read.len() + write.len() + exec.len() + connect.len();
    let filler = rules.saturating_sub(base);
    for i in 0..filler / 2 {
        read.push(format!("/srv/agent-guard-bench/filler/{i}/data"));
    }
    for i in 0..filler - filler / 2 {
        connect.push(format!("10.{}.{}.{}/32:443", i >> 16, (i >> 8) & 255, i & 255));
    }
    let total = read.len() + write.len() + exec.len() + connect.len();
    let list = |v: &[String]| v.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
    let text = format!(
        "apiVersion: agent-guard.dev/v1\nkind: Grant\nmetadata: {{name: bench-{total}}}\nspec:\n  mode: {mode}\n  ttl: 1h\n  files: {{read: [{}], write: [{}]}}\n  exec: [{}]\n  network: {{connect: [{}], listen: [\"*\"]}}\n",
        list(&read),
        list(&write),
        list(&exec),
        list(&connect)
    );
    let path = dir.join(format!("grant-{total}-{mode}.yaml"));
    std::fs::write(&path, text)?;
    Ok((path, total))
}

/// `agent-guard run` of `cmd` as a task with `grant`.
pub fn tagged(bin: &Path, guard: &Guard, grant: &Path, agent: &str, cmd: &[String]) -> Command {
    tagged_with(bin, guard, grant, agent, &[], cmd)
}

/// `tagged` with more options of `agent-guard run` (`--without-landlock`: the `kill` level).
pub fn tagged_with(bin: &Path, guard: &Guard, grant: &Path, agent: &str, run_args: &[&str], cmd: &[String]) -> Command {
    let mut command = Command::new(bin);
    command.arg("--socket").arg(&guard.socket);
    command.args(["run", "--agent", agent, "--intent", "benchmark", "--grant"]).arg(grant);
    command.args(run_args).arg("--").args(cmd);
    command
}
