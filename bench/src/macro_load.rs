//! A realistic agent job: unpack a source tree and grep it, tagged (a grant covering what it
//! needs) and untagged, interleaved.

use std::{process::Command, time::Instant};

use anyhow::bail;
use serde::{Deserialize, Serialize};

use crate::{
    ctx::Ctx,
    guard::{Guard, tagged, write_grant},
    stats::{Summary, summarize},
};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MacroLoad {
    pub description: String,
    pub untagged_s: Summary,
    pub tagged_s: Summary,
    pub ratio: Summary,
}

fn timed(mut cmd: Command) -> anyhow::Result<f64> {
    let start = Instant::now();
    let out = cmd.env_remove("LD_LIBRARY_PATH").output()?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(start.elapsed().as_secs_f64())
}

pub fn run(ctx: &Ctx, reps: usize) -> anyhow::Result<MacroLoad> {
    let source = ["/usr/lib/python3.11", "/usr/share/perl", "/usr/share/doc"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_dir())
        .unwrap_or("/usr/share");
    let tarball = ctx.path("source.tar");
    let status = Command::new("tar").args(["-cf", &tarball, "-C", "/", source.trim_start_matches('/')]).status()?;
    anyhow::ensure!(status.success(), "tar of {source} failed");
    let size = std::fs::metadata(&tarball)?.len();
    let work = ctx.path("unpacked");
    let script = format!(
        "rm -rf {work} && mkdir {work} && /usr/bin/tar -xf {tarball} -C {work} && /usr/bin/grep -r -l import {work} | /usr/bin/wc -l > {work}.count"
    );
    let argv = vec!["/usr/bin/sh".to_string(), "-c".into(), script];
    let guard = Guard::start(&ctx.agent_guard, &ctx.dir, &[])?;
    let events = guard.events.clone();
    let (grant, rules) = write_grant(&ctx.dir, &ctx.bins, ctx.port, 10, "enforce")?;
    let (mut plain, mut inside, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        let p = timed(cmd)?;
        let t = timed(tagged(&ctx.agent_guard, &guard, &grant, "macro", &argv)).map_err(|err| {
            let denied: Vec<String> = std::fs::read_to_string(&events)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("\"denied\""))
                .take(3)
                .map(str::to_string)
                .collect();
            err.context(format!("out of scope: {denied:?}"))
        })?;
        plain.push(p);
        inside.push(t);
        ratio.push(t / p);
    }
    guard.stop()?;
    Ok(MacroLoad {
        description: format!(
            "unpack a {:.0} MB tar of {source} and grep -r it (tagged: a {rules}-rule grant)",
            size as f64 / 1e6
        ),
        untagged_s: summarize(&plain),
        tagged_s: summarize(&inside),
        ratio: summarize(&ratio),
    })
}
