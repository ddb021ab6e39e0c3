//! Event pipeline: a tagged agent in audit mode opens an out-of-scope path at a set rate; every
//! open is one kernel event that must reach the daemon's JSON file. For each rate: what was
//! generated, delivered, counted as dropped, and the daemon's CPU.

use std::{
    io::{Read, Seek, SeekFrom},
    path::Path,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::{
    ctx::{Ctx, figure, proc_usage},
    guard::{Guard, tagged, write_grant},
};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step {
    pub target_rate: u64,
    pub achieved_rate: f64,
    pub generated: u64,
    pub delivered: u64,
    pub dropped_in_kernel: u64,
    pub lost: u64,
    /// Daemon CPU seconds per wall second, from the first open until the last event is written.
    pub daemon_cpu: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pipeline {
    pub steps: Vec<Step>,
    pub max_zero_loss_rate: f64,
    /// The step at (about) twice that rate.
    pub at_double: Option<Step>,
    pub daemon_peak_rss_kib: u64,
}

/// Counts `file.open` lines of the events file containing `needle`, reading only what was appended.
struct Tail {
    offset: u64,
    partial: String,
}

impl Tail {
    fn count(&mut self, file: &Path, needle: &str) -> u64 {
        let Ok(mut f) = std::fs::File::open(file) else { return 0 };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return 0;
        }
        let mut text = String::new();
        let read = f.read_to_string(&mut text).unwrap_or(0) as u64;
        self.offset += read;
        self.partial.push_str(&text);
        let complete = self.partial.rfind('\n').map_or(0, |i| i + 1);
        let lines = &self.partial[..complete];
        // The flood's own events only (not the task's open and close).
        let n = lines.lines().filter(|l| l.contains(needle) && l.contains("\"kind\":\"file.open\"")).count() as u64;
        self.partial = self.partial[complete..].to_string();
        n
    }
}

fn step(ctx: &Ctx, guard: &Guard, grant: &Path, rate: u64, millis: u64, tail: &mut Tail) -> anyhow::Result<Step> {
    let agent = format!("flood-{rate}");
    let dropped0 = guard.status()?["events_dropped"].as_u64().unwrap_or(0);
    let cpu0 = proc_usage(guard.pid())?.cpu;
    let started = Instant::now();
    let cmd = vec![
        ctx.workload_path().display().to_string(),
        "flood".into(),
        rate.to_string(),
        millis.to_string(),
        "/srv/agent-guard-bench-out-of-scope".into(),
    ];
    let out = tagged(&ctx.agent_guard, guard, grant, &agent, &cmd).env_remove("LD_LIBRARY_PATH").output()?;
    anyhow::ensure!(out.status.success(), "flood failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace().map(|t| t.parse::<u64>().unwrap_or(0));
    let (generated, elapsed_ns) = (parts.next().unwrap_or(0), parts.next().unwrap_or(1));
    // Wait for the daemon to write everything (or stop making progress).
    let needle = format!("\"agent\":\"{agent}\"");
    let (mut delivered, mut last_change) = (0, Instant::now());
    loop {
        let new = tail.count(&guard.events, &needle);
        if new > 0 {
            delivered += new;
            last_change = Instant::now();
        }
        let dropped = guard.status()?["events_dropped"].as_u64().unwrap_or(0) - dropped0;
        if delivered + dropped >= generated || last_change.elapsed() > Duration::from_secs(2) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let wall =
        started.elapsed().checked_sub(last_change.elapsed().min(started.elapsed())).unwrap().as_secs_f64().max(1e-3);
    let cpu1 = proc_usage(guard.pid())?.cpu;
    let dropped = guard.status()?["events_dropped"].as_u64().unwrap_or(0) - dropped0;
    Ok(Step {
        target_rate: rate,
        achieved_rate: generated as f64 * 1e9 / elapsed_ns as f64,
        generated,
        delivered,
        dropped_in_kernel: dropped,
        lost: generated.saturating_sub(delivered),
        daemon_cpu: (cpu1 - cpu0) / wall,
    })
}

pub fn run(ctx: &Ctx) -> anyhow::Result<Pipeline> {
    let guard = Guard::start(&ctx.agent_guard, &ctx.dir, &[])?;
    let (grant, _) = write_grant(&ctx.dir, &ctx.bins, ctx.port, 10, "audit")?;
    // Warm-up: the agent's binaries, the daemon's first events.
    figure(ctx.plain(&["now".into()]))?;
    let mut tail = Tail { offset: 0, partial: String::new() };
    let (rates, millis): (&[u64], u64) =
        if ctx.smoke { (&[10_000], 200) } else { (&[25_000, 50_000, 100_000, 200_000, 400_000, 800_000], 3_000) };
    let mut steps = Vec::new();
    for &rate in rates {
        eprintln!("  event pipeline at {rate}/s");
        let s = step(ctx, &guard, &grant, rate, millis, &mut tail)?;
        let lossy = s.lost > 0;
        steps.push(s);
        if lossy {
            break;
        }
    }
    let best = steps.iter().filter(|s| s.lost == 0).map(|s| s.achieved_rate).fold(0.0, f64::max);
    let double_target = (best * 2.0) as u64;
    let at_double = match steps.iter().find(|s| s.target_rate == double_target) {
        Some(s) => Some(s.clone()),
        None if best > 0.0 => Some(step(ctx, &guard, &grant, double_target, millis, &mut tail)?),
        None => None,
    };
    // The step at double rate may itself be lossless (then it is the best one seen).
    let best =
        steps.iter().chain(at_double.iter()).filter(|s| s.lost == 0).map(|s| s.achieved_rate).fold(best, f64::max);
    let hwm = proc_usage(guard.pid())?.hwm_kib;
    guard.stop()?;
    Ok(Pipeline { steps, max_zero_loss_rate: best, at_double, daemon_peak_rss_kib: hwm })
}
