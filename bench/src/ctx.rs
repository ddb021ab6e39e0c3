//! What every measurement shares: the binaries, a scratch directory holding the workloads'
//! files, a loopback listener, and how to run a workload and read its figure.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, bail};

pub struct Ctx {
    pub agent_guard: PathBuf,
    pub workload: PathBuf,
    /// The directory of both (grants allow running and reading them).
    pub bins: PathBuf,
    _scratch: tempfile::TempDir,
    pub dir: PathBuf,
    /// A free loopback port the workloads listen on and connect to (granted to tagged runs).
    pub port: u16,
    pub smoke: bool,
}

impl Ctx {
    pub fn new(agent_guard: PathBuf, smoke: bool) -> anyhow::Result<Ctx> {
        let workload = std::env::current_exe()?.with_file_name("ag-workload");
        if !workload.is_file() {
            bail!("{} not found: build the bench crate", workload.display());
        }
        let bins = workload.parent().context("bins dir")?.to_path_buf();
        // No dot in the name: the kernel leaves hidden path components to the daemon.
        let scratch = tempfile::Builder::new().prefix("agent-guard-bench-").tempdir_in("/tmp")?;
        let dir = std::fs::canonicalize(scratch.path())?;
        std::fs::create_dir_all(dir.join("data"))?;
        std::fs::write(dir.join("data/file"), "agent-guard bench\n")?;
        for d in 0..10 {
            let sub = dir.join(format!("tree/d{d}"));
            std::fs::create_dir_all(&sub)?;
            for f in 0..50 {
                std::fs::write(sub.join(format!("f{f}")), "x")?;
            }
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        Ok(Ctx { agent_guard, workload, bins, _scratch: scratch, dir, port, smoke })
    }

    /// `ag-workload ARGS` as an untagged process.
    pub fn plain(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.workload);
        cmd.args(args);
        cmd
    }

    pub fn path(&self, rel: &str) -> String {
        self.dir.join(rel).display().to_string()
    }

    pub fn workload_path(&self) -> &Path {
        &self.workload
    }
}

/// Runs `cmd` to completion and returns the first number it prints.
pub fn figure(mut cmd: Command) -> anyhow::Result<f64> {
    cmd.env_remove("LD_LIBRARY_PATH").stdin(Stdio::null());
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().next().and_then(|t| t.parse().ok()).with_context(|| format!("{cmd:?} printed {text:?}"))
}

/// `CLOCK_MONOTONIC` in ns (the clock ag-workload prints).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What /proc says of a process: CPU time and memory.
pub struct Usage {
    /// utime + stime, seconds.
    pub cpu: f64,
    /// Resident set now and at its peak, KiB.
    pub rss_kib: u64,
    pub hwm_kib: u64,
    /// Of the resident set: anonymous (heap) and file-backed (the binary, and the kernel ring
    /// buffer's pages mapped into the daemon twice, for wrap-around), KiB.
    pub anon_kib: u64,
    pub file_kib: u64,
    /// Of the file-backed part: the BPF maps mapped into the daemon (its two ring buffers,
    /// whose data pages the kernel maps twice), KiB.
    pub bpf_map_kib: u64,
}

pub fn proc_usage(pid: u32) -> anyhow::Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat[stat.rfind(')').context("stat")? + 2..].split_whitespace().collect();
    // SAFETY: sysconf with a valid name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (fields[11].parse::<f64>()? + fields[12].parse::<f64>()?) / hz;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Ok(Usage {
        cpu,
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
        anon_kib: kib("RssAnon:"),
        file_kib: kib("RssFile:"),
        bpf_map_kib: bpf_map_rss_kib(pid),
    })
}

/// Resident KiB of `pid`'s mappings of BPF maps (`anon_inode:bpf-map` in smaps).
fn bpf_map_rss_kib(pid: u32) -> u64 {
    let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else { return 0 };
    let mut in_map = false;
    let mut total = 0;
    for line in smaps.lines() {
        if line.split_whitespace().next().is_some_and(|range| range.contains('-') && !range.ends_with(':')) {
            in_map = line.ends_with("anon_inode:bpf-map");
        } else if in_map && let Some(kib) = line.strip_prefix("Rss:") {
            total += kib.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    total
}

/// Kernel memory charged to the BPF maps `pid` holds (the `memlock` of each map fd), bytes.
pub fn map_memory(pid: u32) -> u64 {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return 0 };
    fds.flatten()
        .filter_map(|fd| std::fs::read_to_string(fd.path()).ok())
        .filter(|info| info.contains("map_type:"))
        .filter_map(|info| {
            info.lines().find_map(|l| l.strip_prefix("memlock:")).and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}
