//! The tools a user would pick instead, configured to watch or restrict what agent-guard's grant
//! covers: auditd (watch rules on the bench directory, syscall rules for connect and execve),
//! bpftrace (the same three observations from tracepoints) and Landlock (the same paths and port,
//! applied by the workload to itself).

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

pub struct Auditd;

impl Auditd {
    pub fn start(dir: &Path) -> anyhow::Result<Auditd> {
        let _ = Command::new("pkill").args(["-x", "auditd"]).status();
        std::thread::sleep(Duration::from_millis(200));
        run(&mut Command::new("auditd"))?;
        run(Command::new("auditctl").args(["-D"]))?;
        run(Command::new("auditctl").arg("-w").arg(dir).args(["-p", "rwa", "-k", "agent-guard-bench"]))?;
        for syscall in ["connect", "execve"] {
            run(Command::new("auditctl").args([
                "-a",
                "always,exit",
                "-F",
                "arch=b64",
                "-S",
                syscall,
                "-k",
                "agent-guard-bench",
            ]))?;
        }
        run(Command::new("auditctl").args(["-e", "1"]))?;
        Ok(Auditd)
    }
}

impl Drop for Auditd {
    fn drop(&mut self) {
        let _ = Command::new("auditctl").args(["-D"]).output();
        let _ = Command::new("auditctl").args(["-e", "0"]).output();
        let _ = Command::new("pkill").args(["-x", "auditd"]).status();
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub struct Bpftrace(Child);

/// What agent-guard reports, observed with bpftrace: opens, connects and execs of the workload.
const BPFTRACE_SCRIPT: &str = r#"
tracepoint:syscalls:sys_enter_openat /comm == "ag-workload"/ { @open[str(args->filename)] = count(); }
tracepoint:syscalls:sys_enter_connect /comm == "ag-workload"/ { @connect[pid] = count(); }
tracepoint:syscalls:sys_enter_execve /comm == "ag-workload"/ { @exec[str(args->filename)] = count(); }
"#;

impl Bpftrace {
    pub fn start() -> anyhow::Result<Bpftrace> {
        let mut child = Command::new("bpftrace")
            .args(["-e", BPFTRACE_SCRIPT])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("bpftrace")?;
        let stdout = child.stdout.take().context("piped")?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Drain the output for as long as bpftrace lives (its maps are printed at exit).
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("Attaching") {
                    let _ = tx.send(());
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while rx.recv_timeout(Duration::from_millis(100)).is_err() {
            if Instant::now() > deadline {
                bail!("bpftrace did not attach");
            }
        }
        // "Attaching" is printed before the probes are live.
        std::thread::sleep(Duration::from_millis(500));
        Ok(Bpftrace(child))
    }
}

impl Drop for Bpftrace {
    fn drop(&mut self) {
        // SIGINT is how bpftrace stops (printing its maps); one that lands while it is still
        // setting up is sometimes lost (seen: a bench run waited 7 minutes), so it is sent again
        // each second, and after 10 s the process is killed.
        for _ in 0..10 {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(1);
            while Instant::now() < deadline {
                if matches!(self.0.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ag-workload landlock ...` options restricting it to the base grant's paths and port.
pub fn landlock_args(dir: &Path, bins: &Path, port: u16) -> Vec<String> {
    let mut args = vec!["landlock".to_string()];
    for read in ["/usr", "/lib", "/lib64", "/etc", "/proc", "/sys", "/dev"] {
        args.extend(["--read".into(), read.into()]);
    }
    args.extend(["--read".into(), bins.display().to_string()]);
    args.extend(["--write".into(), dir.display().to_string()]);
    args.extend(["--exec".into(), "/usr/bin".into(), "--exec".into(), bins.display().to_string()]);
    args.extend(["--port".into(), port.to_string(), "--".into()]);
    args
}
