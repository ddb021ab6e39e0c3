//! `cargo xtask bench`: the full benchmark, release builds, the BPF LSM part in the VM and
//! the rest on this host, written to BENCHMARKS.md and benchmarks.json at the workspace root.
//! `smoke` is the seconds-long run `cargo xtask test` includes so the benchmark never rots.

use std::process::Command;

use crate::cmd::{self, Result, cargo, run, step, workspace_root};

/// The tools agent-guard is compared with.
const PEERS: &[&str] = &["auditd", "bpftrace"];
/// What the benchmark runs beside them: a DNS server for the task resolver's figures.
const TOOLS: &[(&str, &str)] = &[("dnsmasq", "dnsmasq-base")];

fn ensure_peers() -> Result<()> {
    let installed = |tool: &str| ["/usr/sbin", "/usr/bin"].iter().any(|d| std::path::Path::new(d).join(tool).exists());
    if PEERS.iter().all(|tool| installed(tool)) && TOOLS.iter().all(|(tool, _)| installed(tool)) {
        return Ok(());
    }
    step("installing the tools agent-guard is compared with (auditd, bpftrace) and a DNS server (dnsmasq)");
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(PEERS)
        .args(TOOLS.iter().map(|(_, package)| package))
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(|| "unknown".into(), |o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

pub fn full(toolchain: &str) -> Result<()> {
    if !cmd::is_root() {
        return Err("the benchmarks load eBPF programs: run `cargo xtask bench` as root".into());
    }
    ensure_peers()?;
    step("building release binaries");
    run(cargo(toolchain).args(["build", "--release", "--package", "agent-guard", "--package", "agent-guard-bench"]))?;
    let release = workspace_root().join("target/release");
    let (agent_guard, bench) = (release.join("agent-guard"), release.join("ag-bench"));
    let vm_json = crate::vm::bench(&agent_guard, &bench, &release.join("ag-workload"))?;
    let vm_file = workspace_root().join("target/bench-vm.json");
    std::fs::write(&vm_file, vm_json).map_err(|e| e.to_string())?;
    step("the benchmark on this host");
    run(Command::new(&bench)
        .args(["host", "--agent-guard"])
        .arg(&agent_guard)
        .arg("--out")
        .arg(workspace_root())
        .arg("--vm-json")
        .arg(&vm_file)
        .args(["--commit", &commit()]))
}

/// A seconds-long run of every host measurement (debug builds), counted as one test.
pub fn smoke() -> Result<(u64, u64)> {
    ensure_peers()?;
    step("benchmark smoke run (every measurement, tiny sizes)");
    let debug = workspace_root().join("target/debug");
    run(Command::new(debug.join("ag-bench"))
        .args(["host", "--smoke", "--agent-guard"])
        .arg(debug.join("agent-guard"))
        .arg("--out")
        .arg(workspace_root().join("target/bench-smoke"))
        .args(["--commit", &commit()]))?;
    Ok((1, 0))
}
