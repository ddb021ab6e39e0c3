//! Daemon memory with many open tasks, and the kernel memory of its maps.

use std::{
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::{
    ctx::{Ctx, map_memory, proc_usage},
    guard::{Guard, tagged, write_grant},
};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Memory {
    pub tasks: usize,
    pub daemon_rss_idle_kib: u64,
    pub daemon_rss_with_tasks_kib: u64,
    /// Of which heap (anonymous) and file-backed (binary, ring buffer mapping).
    pub daemon_anon_with_tasks_kib: u64,
    pub daemon_file_with_tasks_kib: u64,
    /// Of the file-backed part: the ring buffers' mappings (data pages mapped twice).
    #[serde(default)]
    pub daemon_ring_mapped_with_tasks_kib: u64,
    pub kernel_map_bytes: u64,
    pub open_seconds: f64,
}

impl Memory {
    /// The resident set with the tasks open, the ring buffers counted once (their data pages
    /// are mapped twice, for wrap-around: half of their mapping is the second copy).
    pub fn rss_ring_once_kib(&self) -> u64 {
        self.daemon_rss_with_tasks_kib - self.daemon_ring_mapped_with_tasks_kib / 2
    }
}

pub fn run(ctx: &Ctx, tasks: usize) -> anyhow::Result<Memory> {
    let guard = Guard::start(&ctx.agent_guard, &ctx.dir, &["--max-tasks", &(tasks + 16).to_string()])?;
    let (grant, _) = write_grant(&ctx.dir, &ctx.bins, ctx.port, 10, "enforce")?;
    let idle = proc_usage(guard.pid())?.rss_kib;
    let started = Instant::now();
    let mut children: Vec<Child> = Vec::new();
    for i in 0..tasks {
        let cmd = ["/usr/bin/sleep".to_string(), "3600".into()];
        children.push(
            tagged(&ctx.agent_guard, &guard, &grant, &format!("mem-{i}"), &cmd)
                .env_remove("LD_LIBRARY_PATH")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        // Bound the number of `run` clients in flight.
        if i % 50 == 49 {
            while guard.map_used("TASKS")? < i as u64 + 1 {
                anyhow::ensure!(started.elapsed() < Duration::from_secs(300), "tasks did not open");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    while guard.map_used("TASKS")? < tasks as u64 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "tasks did not open: {}",
            guard.map_used("TASKS")?
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let open_seconds = started.elapsed().as_secs_f64();
    let usage = proc_usage(guard.pid())?;
    let kernel = map_memory(guard.pid());
    guard.stop()?;
    for mut child in children {
        let _ = child.wait();
    }
    Ok(Memory {
        tasks,
        daemon_rss_idle_kib: idle,
        daemon_rss_with_tasks_kib: usage.rss_kib,
        daemon_anon_with_tasks_kib: usage.anon_kib,
        daemon_file_with_tasks_kib: usage.file_kib,
        daemon_ring_mapped_with_tasks_kib: usage.bpf_map_kib,
        kernel_map_bytes: kernel,
        open_seconds,
    })
}
