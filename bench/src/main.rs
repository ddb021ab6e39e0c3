//! ag-bench: the benchmark driver behind `cargo xtask bench` (full) and the smoke run in
//! `cargo xtask test`. Run as root.
//!
//!   ag-bench host --agent-guard BIN --out DIR [--smoke] [--vm-json FILE] [--commit SHA]
//!       every measurement on this host; writes DIR/BENCHMARKS.md and DIR/benchmarks.json
//!   ag-bench lsm --agent-guard BIN [--smoke]
//!       inside the BPF LSM VM: overhead ratios only, printed as one marked JSON line
//!   ag-bench render --json FILE --out DIR
//!       BENCHMARKS.md again from a run's benchmarks.json (text changes, same figures)

mod ctx;
mod dns;
mod guard;
mod latency;
mod macro_load;
mod memory;
mod overhead;
mod peers;
mod pipeline;
mod profile;
mod report;
mod stats;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

/// The line prefix the VM prints its results after.
pub const VM_JSON_MARKER: &str = "AGENT-GUARD-BENCH-JSON: ";

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand)]
enum Mode {
    Host {
        #[arg(long)]
        agent_guard: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        smoke: bool,
        /// Results of `ag-bench lsm` from the VM, to put beside this host's.
        #[arg(long)]
        vm_json: Option<PathBuf>,
        #[arg(long, default_value = "unknown")]
        commit: String,
    },
    /// One section alone, printed as JSON (for working on it).
    Section {
        #[arg(long)]
        agent_guard: PathBuf,
        #[arg(long)]
        smoke: bool,
        #[arg(value_parser = ["overhead", "profile", "pipeline", "latency", "memory", "macro", "dns"])]
        name: String,
    },
    Lsm {
        #[arg(long)]
        agent_guard: PathBuf,
        #[arg(long)]
        smoke: bool,
    },
    /// BENCHMARKS.md again from a run's benchmarks.json (its figures as measured; the text as
    /// this version writes it).
    Render {
        #[arg(long)]
        json: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ag-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Mode::Render { json, out } = &cli.command {
        let results: report::Results = serde_json::from_str(&std::fs::read_to_string(json)?)?;
        return report::write(&results, out);
    }
    // SAFETY: geteuid has no preconditions.
    anyhow::ensure!(unsafe { libc::geteuid() } == 0, "the benchmarks load eBPF programs: run as root");
    match cli.command {
        Mode::Render { .. } => unreachable!("handled above"),
        Mode::Lsm { agent_guard, smoke } => {
            let ctx = ctx::Ctx::new(agent_guard, smoke)?;
            let (reps, scale) = if smoke { (1, 100) } else { (3, 10) };
            let lsm = overhead::run_lsm(&ctx, reps, scale)?;
            println!("{VM_JSON_MARKER}{}", serde_json::to_string(&lsm)?);
            Ok(())
        }
        Mode::Section { agent_guard, smoke, name } => {
            let ctx = ctx::Ctx::new(agent_guard, smoke)?;
            let started = std::time::Instant::now();
            let json = match name.as_str() {
                "overhead" => serde_json::to_string_pretty(&overhead::run(&ctx, 1, if smoke { 50 } else { 1 }, true)?)?,
                "profile" => serde_json::to_string_pretty(&overhead::profile_only(&ctx, if smoke { 50 } else { 1 })?)?,
                "pipeline" => serde_json::to_string_pretty(&pipeline::run(&ctx)?)?,
                "latency" => serde_json::to_string_pretty(&latency::run(&ctx, if smoke { 3 } else { 200 })?)?,
                "memory" => serde_json::to_string_pretty(&memory::run(&ctx, if smoke { 20 } else { 1000 })?)?,
                "dns" => serde_json::to_string_pretty(&dns::run(
                    &ctx,
                    if smoke { 20 } else { 10_000 },
                    if smoke { 1 } else { 5 },
                    if smoke { 200 } else { 5000 },
                )?)?,
                _ => serde_json::to_string_pretty(&macro_load::run(&ctx, 1)?)?,
            };
            println!("{json}");
            eprintln!("{name}: {:.1} s", started.elapsed().as_secs_f64());
            Ok(())
        }
        Mode::Host { agent_guard, out, smoke, vm_json, commit } => {
            let ctx = ctx::Ctx::new(agent_guard, smoke)?;
            let started = std::time::Instant::now();
            let (reps, scale, trials, tasks, macro_reps) = if smoke { (1, 50, 3, 20, 1) } else { (7, 1, 200, 1000, 5) };
            let (questions, dns_reps, rate_ms) = if smoke { (20, 1, 200) } else { (10_000, 5, 5000) };
            eprintln!("syscall overhead ({reps} repetitions)");
            let overhead = overhead::run(&ctx, reps, scale, true)?;
            eprintln!("event pipeline");
            let pipeline = pipeline::run(&ctx)?;
            eprintln!("control-path latency ({trials} trials)");
            let latency = latency::run(&ctx, trials)?;
            eprintln!("memory with {tasks} tasks");
            let memory = memory::run(&ctx, tasks)?;
            eprintln!("DNS through the task resolver ({questions} questions)");
            let dns = dns::run(&ctx, questions, dns_reps, rate_ms)?;
            eprintln!("macro workload");
            let macro_load = macro_load::run(&ctx, macro_reps)?;
            let lsm: Option<overhead::Overhead> = match vm_json {
                Some(path) => Some(serde_json::from_str(&std::fs::read_to_string(&path)?)?),
                None => None,
            };
            let results = report::Results {
                machine: report::machine(),
                commit,
                smoke,
                seconds: started.elapsed().as_secs_f64(),
                overhead: overhead.rows,
                profile: overhead.profile,
                lsm_profile: lsm.as_ref().map(|l| l.profile.clone()).unwrap_or_default(),
                lsm: lsm.map(|l| l.rows.into_iter().map(serde_json::to_value).collect()).transpose()?,
                pipeline,
                latency,
                memory,
                macro_load,
                dns: Some(dns),
            };
            report::write(&results, &out)
        }
    }
}
