//! Where a guarded syscall's kernel time goes: the run time of each eBPF program the kernel ran
//! during a workload, from the kernel's own statistics. While the descriptor `BPF_ENABLE_STATS`
//! returns is open, every program run is timed (kernel/bpf/syscall.c `bpf_enable_runtime_stats`;
//! include/linux/filter.h `__bpf_prog_run` adds the run's `sched_clock` span to the program's
//! `run_time_ns`). Measured apart from the overhead repetitions, since the timing itself adds two
//! clock reads to every run.
//!
//! The statistics are switched on before the daemon starts and off after it stops, never while
//! its programs run: the switch is a static key, patched into the kernel's text with int3
//! breakpoints (`text_poke_bp`), and under qemu's TCG emulation a CPU running a BPF trampoline
//! while it is patched met a stray int3 and the guest kernel panicked (`Oops: int3` in
//! `__bpf_prog_enter`, a CI run of 1 December 2026).

use std::collections::BTreeMap;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::{
    ctx::{Ctx, figure},
    guard::{Guard, tagged},
    overhead::Workload,
};

/// One program's share of one workload under one configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProgramCost {
    /// The program's name as the kernel keeps it (at most 15 characters).
    pub program: String,
    /// Runs of the program per operation of the workload.
    pub runs_per_op: f64,
    /// Mean run time as the kernel timed it, ns (it includes about one clock read).
    pub ns_per_run: f64,
}

/// One workload under one configuration, run with the statistics on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProfiledRun {
    pub workload: String,
    pub config: String,
    /// ns per operation with every program run timed.
    pub ns_op_timed: f64,
    /// Busiest first.
    pub programs: Vec<ProgramCost>,
}

/// Every loaded program's (name, run time ns, run count), by program id.
fn snapshot() -> anyhow::Result<BTreeMap<u32, (String, u64, u64)>> {
    let mut programs = BTreeMap::new();
    for info in aya::programs::loaded_programs() {
        let info = info.context("reading a loaded program's information")?;
        let name = info.name_as_str().unwrap_or("?").to_string();
        let run_ns = u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX);
        programs.insert(info.id(), (name, run_ns, info.run_count()));
    }
    Ok(programs)
}

/// Runs `cmd` (`ops` operations) and returns what each program that ran spent, by name
/// (programs of the same name summed). The statistics must be on.
fn measure(cmd: std::process::Command, ops: f64, workload: &str, config: &str) -> anyhow::Result<ProfiledRun> {
    let before = snapshot()?;
    let ns_op_timed = figure(cmd)?;
    let after = snapshot()?;
    let mut by_name: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (id, (name, run_ns, count)) in after {
        let (ns0, count0) = before.get(&id).map_or((0, 0), |(_, ns, c)| (*ns, *c));
        let runs = count.saturating_sub(count0);
        if runs > 0 {
            let entry = by_name.entry(name).or_default();
            entry.0 += run_ns.saturating_sub(ns0);
            entry.1 += runs;
        }
    }
    let mut programs: Vec<ProgramCost> = by_name
        .into_iter()
        .map(|(program, (ns, runs))| ProgramCost {
            program,
            runs_per_op: runs as f64 / ops,
            ns_per_run: ns as f64 / runs as f64,
        })
        .collect();
    programs.sort_by(|a, b| (b.ns_per_run * b.runs_per_op).total_cmp(&(a.ns_per_run * a.runs_per_op)));
    Ok(ProfiledRun { workload: workload.to_string(), config: config.to_string(), ns_op_timed, programs })
}

/// The per-program cost of every workload, untagged and tagged under `grant`, with a daemon
/// started with `daemon_args`.
pub fn run(
    ctx: &Ctx,
    workloads: &[Workload],
    grant: &std::path::Path,
    rules: usize,
    daemon_args: &[&str],
) -> anyhow::Result<Vec<ProfiledRun>> {
    // On before the daemon attaches anything, off once it has detached (module comment).
    let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("BPF_ENABLE_STATS")?;
    let guard = Guard::start(&ctx.agent_guard, &ctx.dir, daemon_args)?;
    let mut runs = Vec::new();
    for w in workloads {
        let ops: f64 = w.args.get(1).and_then(|n| n.parse().ok()).context("a workload's operation count")?;
        runs.push(measure(ctx.plain(&w.args), ops, w.name, "agent-guard, untagged")?);
        let mut cmd = vec![ctx.workload_path().display().to_string()];
        cmd.extend(w.args.iter().cloned());
        let config = format!("agent-guard, tagged, {rules} rules");
        runs.push(measure(tagged(&ctx.agent_guard, &guard, grant, "bench", &cmd), ops, w.name, &config)?);
    }
    guard.stop()?;
    drop(stats);
    Ok(runs)
}
