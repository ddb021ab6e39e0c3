//! The task resolver's cost: the same A question asked straight of a DNS server (dnsmasq on
//! loopback, untagged) and by a tagged agent, whose question the kernel sends to its task's
//! resolver in the daemon, which forwards it to that server and learns the answer into the
//! kernel before replying. Latency one question at a time, and answers per second with several
//! askers at once.

use std::{
    net::UdpSocket,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::{
    ctx::Ctx,
    guard::{Guard, tagged, write_grant_with},
    stats::{Summary, summarize},
};

/// The name asked; its address is a documentation one (TEST-NET-1): nothing connects to it.
const NAME: &str = "api.bench.test";
/// Askers at once in the rate measurement.
const THREADS: u64 = 4;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Dns {
    /// Questions timed one after another, per configuration.
    pub questions: usize,
    /// Microseconds per answer.
    pub direct_us: Summary,
    pub via_resolver_us: Summary,
    pub rate_threads: u64,
    pub rate_seconds: f64,
    /// Answers per second.
    pub direct_rate: f64,
    pub via_resolver_rate: f64,
    /// Questions that waited over a second for their answer (counted as lost).
    pub direct_timeouts: u64,
    pub via_resolver_timeouts: u64,
}

/// dnsmasq answering `NAME` from its configuration, on a loopback port; killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(ctx: &Ctx) -> anyhow::Result<Server> {
        let port = UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                &format!("--port={port}"),
                "--local-ttl=300",
                "--pid-file=",
                "--user=root",
                "--local=/test/",
                &format!("--host-record={NAME},192.0.2.20"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("dnsmasq (the bench installs dnsmasq-base) must run")?;
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ctx
            .plain(&["dns".into(), "1".into(), server.address(), NAME.into()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            if Instant::now() > deadline {
                bail!("dnsmasq never answered on port {port}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The words `cmd` prints, parsed as numbers.
fn numbers(mut cmd: Command) -> anyhow::Result<Vec<f64>> {
    cmd.env_remove("LD_LIBRARY_PATH").stdin(Stdio::null());
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|w| w.parse::<f64>().with_context(|| format!("{cmd:?} printed {w:?}")))
        .collect()
}

pub fn run(ctx: &Ctx, questions: usize, reps: usize, rate_ms: u64) -> anyhow::Result<Dns> {
    let server = Server::start(ctx)?;
    let guard = Guard::start_configured(
        &ctx.agent_guard,
        &ctx.dir,
        &format!("dns: {{upstream: [\"{}\"]}}\n", server.address()),
        &[],
    )?;
    let rule = format!("{NAME}:443");
    let (grant, _) = write_grant_with(&ctx.dir, &ctx.bins, ctx.port, 10, "enforce", &[&rule])?;
    let workload = ctx.workload_path().display().to_string();
    // The agent asks "its" server on port 53 (what resolv.conf would name); the kernel sends
    // the question to its task's resolver wherever it was addressed.
    let agent_server = "127.0.0.1:53";
    let per_rep = (questions / reps).max(1).to_string();
    let (mut direct, mut via) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        direct.extend(numbers(ctx.plain(&["dns".into(), per_rep.clone(), server.address(), NAME.into()]))?);
        let cmd = [workload.clone(), "dns".into(), per_rep.clone(), agent_server.into(), NAME.into()];
        via.extend(numbers(tagged(&ctx.agent_guard, &guard, &grant, "dns-bench", &cmd))?);
    }
    let rate_args = |server: String| -> Vec<String> {
        vec!["dns-rate".into(), THREADS.to_string(), rate_ms.to_string(), server, NAME.into()]
    };
    let direct_rate = numbers(ctx.plain(&rate_args(server.address())))?;
    let mut cmd = vec![workload];
    cmd.extend(rate_args(agent_server.into()));
    let via_rate = numbers(tagged(&ctx.agent_guard, &guard, &grant, "dns-bench", &cmd))?;
    guard.stop()?;
    let [direct_answers, direct_timeouts, direct_ns] = direct_rate[..] else {
        bail!("dns-rate printed {direct_rate:?}")
    };
    let [via_answers, via_timeouts, via_ns] = via_rate[..] else { bail!("dns-rate printed {via_rate:?}") };
    let us = |ns: Vec<f64>| summarize(&ns.into_iter().map(|v| v / 1e3).collect::<Vec<_>>());
    Ok(Dns {
        questions: direct.len(),
        direct_us: us(direct),
        via_resolver_us: us(via),
        rate_threads: THREADS,
        rate_seconds: rate_ms as f64 / 1e3,
        direct_rate: direct_answers * 1e9 / direct_ns,
        via_resolver_rate: via_answers * 1e9 / via_ns,
        direct_timeouts: direct_timeouts as u64,
        via_resolver_timeouts: via_timeouts as u64,
    })
}
