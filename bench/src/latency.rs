//! Latencies of the control path. Revoke: the API round trip of `revoke_grant`, and when the
//! kernel first refuses the agent relative to the reply (negative: before the reply, which is
//! the guarantee). Grant issue: from spawning `agent-guard run` to the command running inside
//! its task, beside spawning the same command bare.

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    ctx::{Ctx, figure, monotonic_ns},
    guard::{Guard, tagged, tagged_with, write_grant},
    stats::{Summary, summarize},
};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Latency {
    pub trials: usize,
    /// Microseconds.
    pub revoke_round_trip_us: Summary,
    pub revoke_first_denial_after_reply_us: Summary,
    pub issue_tagged_us: Summary,
    pub issue_bare_us: Summary,
}

pub fn run(ctx: &Ctx, trials: usize) -> anyhow::Result<Latency> {
    let guard = Guard::start(&ctx.agent_guard, &ctx.dir, &[])?;
    let (grant, _) = write_grant(&ctx.dir, &ctx.bins, ctx.port, 10, "enforce")?;
    let workload = ctx.workload_path().display().to_string();
    let (mut rtt, mut after) = (Vec::new(), Vec::new());
    for _ in 0..trials {
        let cmd = vec![workload.clone(), "until-eperm".into(), ctx.port.to_string()];
        // The `kill` level: the agent lives on to see its first refused connect (a confined
        // task's processes are killed at the revoke, which would end the measurement).
        let mut child = tagged_with(&ctx.agent_guard, &guard, &grant, "revoke-bench", &["--without-landlock"], &cmd)
            .env_remove("LD_LIBRARY_PATH")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut err = BufReader::new(child.stderr.take().context("stderr")?);
        let mut out = BufReader::new(child.stdout.take().context("stdout")?);
        let mut line = String::new();
        err.read_line(&mut line)?;
        // "agent-guard: task N open (...)"
        let id: u32 = line.split_whitespace().nth(2).and_then(|t| t.parse().ok()).with_context(|| line.clone())?;
        line.clear();
        out.read_line(&mut line)?;
        anyhow::ensure!(line.trim() == "ready", "workload said {line:?}");
        let t0 = monotonic_ns();
        guard.call(json!({"op": "revoke_grant", "id": id}))?;
        let t1 = monotonic_ns();
        line.clear();
        out.read_line(&mut line)?;
        let denied: u64 = line.trim().parse().with_context(|| format!("workload said {line:?}"))?;
        child.wait()?;
        rtt.push((t1 - t0) as f64 / 1e3);
        after.push((denied as i64 - t1 as i64) as f64 / 1e3);
    }
    let (mut issue_tagged, mut issue_bare) = (Vec::new(), Vec::new());
    for _ in 0..trials {
        let t0 = monotonic_ns();
        let inside =
            figure(tagged(&ctx.agent_guard, &guard, &grant, "issue-bench", &[workload.clone(), "now".into()]))?;
        issue_tagged.push((inside - t0 as f64) / 1e3);
        let t0 = monotonic_ns();
        let bare = figure(ctx.plain(&["now".into()]))?;
        issue_bare.push((bare - t0 as f64) / 1e3);
    }
    guard.stop()?;
    Ok(Latency {
        trials,
        revoke_round_trip_us: summarize(&rtt),
        revoke_first_denial_after_reply_us: summarize(&after),
        issue_tagged_us: summarize(&issue_tagged),
        issue_bare_us: summarize(&issue_bare),
    })
}
