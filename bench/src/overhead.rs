//! Syscall overhead: each workload bare and under each guard, as ratios to the bare run of the
//! same repetition. Every repetition runs every configuration in the same order (A B C ... A B
//! C ...) and measures bare at its start and end, so slow drift of the machine cancels out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    ctx::{Ctx, figure},
    guard::{Guard, tagged, tagged_with, write_grant},
    peers::{Auditd, Bpftrace, landlock_args},
    profile::{self, ProfiledRun},
    stats::{Summary, summarize},
};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub workload: String,
    pub config: String,
    /// ns per operation.
    pub ns: Summary,
    /// To the bare run of the same repetition.
    pub ratio: Summary,
}

pub struct Workload {
    pub name: &'static str,
    pub args: Vec<String>,
}

pub fn workloads(ctx: &Ctx, scale: u64) -> Vec<Workload> {
    let n = |full: u64| (full / scale).max(1).to_string();
    vec![
        Workload { name: "open/close", args: vec!["open".into(), n(50_000), ctx.path("data/file")] },
        Workload { name: "read (1 byte, pread)", args: vec!["read".into(), n(200_000), ctx.path("data/file")] },
        Workload { name: "connect", args: vec!["connect".into(), n(3_000), ctx.port.to_string()] },
        Workload { name: "fork+exec", args: vec!["forkexec".into(), n(300), "/usr/bin/true".into()] },
        Workload { name: "stat walk (500 entries)", args: vec!["walk".into(), n(200), ctx.path("tree")] },
    ]
}

/// Grant sizes measured for tagged processes.
pub const GRANT_RULES: [usize; 3] = [10, 1_000, 10_000];

type Samples = BTreeMap<(String, String), Vec<(f64, f64)>>;

fn record(samples: &mut Samples, w: &Workload, config: &str, ns: f64, bare: f64) {
    samples.entry((w.name.to_string(), config.to_string())).or_default().push((ns, ns / bare));
}

/// The overhead rows and, measured after them, the kernel time of each eBPF program.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Overhead {
    pub rows: Vec<Row>,
    pub profile: Vec<ProfiledRun>,
}

/// Runs `reps` repetitions; `peers` adds auditd, Landlock and bpftrace.
pub fn run(ctx: &Ctx, reps: usize, scale: u64, peers: bool) -> anyhow::Result<Overhead> {
    run_with(ctx, reps, scale, peers, &[], true)
}

/// `profiled`: the per-program profile is measured after the repetitions.
fn run_with(
    ctx: &Ctx,
    reps: usize,
    scale: u64,
    peers: bool,
    daemon_args: &[&str],
    profiled: bool,
) -> anyhow::Result<Overhead> {
    let workloads = workloads(ctx, scale);
    let grants: Vec<(std::path::PathBuf, usize)> = GRANT_RULES
        .iter()
        .map(|&rules| write_grant(&ctx.dir, &ctx.bins, ctx.port, rules, "enforce"))
        .collect::<anyhow::Result<_>>()?;
    let landlock = landlock_args(&ctx.dir, &ctx.bins, ctx.port);
    let mut samples: Samples = BTreeMap::new();
    // Warm the caches once, unmeasured.
    for w in &workloads {
        figure(ctx.plain(&w.args))?;
    }
    for rep in 0..reps {
        eprintln!("  overhead repetition {}/{reps}", rep + 1);
        let mut bare_start = Vec::new();
        for w in &workloads {
            bare_start.push(figure(ctx.plain(&w.args))?);
        }
        let mut rows: Vec<(usize, String, f64)> = Vec::new();
        let guard = Guard::start(&ctx.agent_guard, &ctx.dir, daemon_args)?;
        for (i, w) in workloads.iter().enumerate() {
            rows.push((i, "agent-guard, untagged".into(), figure(ctx.plain(&w.args))?));
            for (g, (grant, rules)) in grants.iter().enumerate() {
                let mut cmd = vec![ctx.workload_path().display().to_string()];
                cmd.extend(w.args.iter().cloned());
                let ns = figure(tagged(&ctx.agent_guard, &guard, grant, "bench", &cmd))?;
                rows.push((i, format!("agent-guard, tagged, {rules} rules"), ns));
                if g == 0 && guard.landlock {
                    // The same task at the `kill` level, as on a kernel without Landlock.
                    let command = tagged_with(&ctx.agent_guard, &guard, grant, "bench", &["--without-landlock"], &cmd);
                    rows.push((i, format!("agent-guard, tagged, {rules} rules, kill level"), figure(command)?));
                }
            }
        }
        guard.stop()?;
        if peers {
            {
                let _auditd = Auditd::start(&ctx.dir)?;
                for (i, w) in workloads.iter().enumerate() {
                    rows.push((i, "auditd (watch + connect/execve rules)".into(), figure(ctx.plain(&w.args))?));
                }
            }
            for (i, w) in workloads.iter().enumerate() {
                let mut args = landlock.clone();
                args.extend(w.args.iter().cloned());
                rows.push((i, "Landlock (same paths and port)".into(), figure(ctx.plain(&args))?));
            }
            {
                let _bpftrace = Bpftrace::start()?;
                for (i, w) in workloads.iter().enumerate() {
                    rows.push((i, "bpftrace (same observations)".into(), figure(ctx.plain(&w.args))?));
                }
            }
        }
        let mut bare_end = Vec::new();
        for w in &workloads {
            bare_end.push(figure(ctx.plain(&w.args))?);
        }
        for (i, w) in workloads.iter().enumerate() {
            let bare = f64::midpoint(bare_start[i], bare_end[i]);
            record(&mut samples, w, "bare (nothing attached)", bare, bare);
        }
        for (i, config, ns) in rows {
            let bare = f64::midpoint(bare_start[i], bare_end[i]);
            record(&mut samples, &workloads[i], &config, ns, bare);
        }
    }
    let order = |config: &str| {
        ["bare", "agent-guard, untagged", "agent-guard, tagged", "auditd", "Landlock", "bpftrace"]
            .iter()
            .position(|p| config.starts_with(p))
            .unwrap_or(9)
    };
    let mut rows: Vec<Row> = samples
        .into_iter()
        .map(|((workload, config), v)| {
            let ns: Vec<f64> = v.iter().map(|(ns, _)| *ns).collect();
            let ratio: Vec<f64> = v.iter().map(|(_, r)| *r).collect();
            Row { workload, config, ns: summarize(&ns), ratio: summarize(&ratio) }
        })
        .collect();
    let workload_order: Vec<&str> = workloads.iter().map(|w| w.name).collect();
    rows.sort_by_key(|r| {
        let rules: usize = r.config.split(", ").nth(2).and_then(|s| s.split(' ').next()?.parse().ok()).unwrap_or(0);
        (workload_order.iter().position(|w| *w == r.workload), order(&r.config), rules)
    });
    let (grant, rules) = &grants[0];
    let profile = if profiled { profile::run(ctx, &workloads, grant, *rules, daemon_args)? } else { Vec::new() };
    Ok(Overhead { rows, profile })
}

/// The per-program profile alone (for working on a hook).
pub fn profile_only(ctx: &Ctx, scale: u64) -> anyhow::Result<Vec<ProfiledRun>> {
    let (grant, rules) = write_grant(&ctx.dir, &ctx.bins, ctx.port, GRANT_RULES[0], "enforce")?;
    profile::run(ctx, &workloads(ctx, scale), &grant, rules, &[])
}

/// Inside the BPF LSM VM: agent-guard only (the peers are measured on the host), started with
/// `--require lsm` so the figures are those of the LSM path.
pub fn run_lsm(ctx: &Ctx, reps: usize, scale: u64) -> anyhow::Result<Overhead> {
    // Not in the smoke run, which follows the VM's test suite: the statistics switch patches
    // kernel text, which is only safe under emulation while no daemon's programs are attached
    // (profile.rs), and the suite's shared daemon may outlive its test binary.
    run_with(ctx, reps, scale, false, &["--require", "lsm"], !ctx.smoke)
}
