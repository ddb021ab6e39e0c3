//! BENCHMARKS.md (a table anyone can read) and benchmarks.json (every figure, the machine, the
//! kernel and the commit), both from one run.

use std::{fmt::Write as _, path::Path};

use serde::{Deserialize, Serialize};

use crate::{
    dns::Dns, latency::Latency, macro_load::MacroLoad, memory::Memory, overhead::Row, pipeline::Pipeline,
    profile::ProfiledRun,
};

#[derive(Serialize, Deserialize)]
pub struct Machine {
    pub kernel: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_kib: u64,
}

#[derive(Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    pub commit: String,
    pub smoke: bool,
    pub seconds: f64,
    pub overhead: Vec<Row>,
    /// Overhead rows measured on the BPF LSM path inside the VM (ratios only).
    pub lsm: Option<Vec<serde_json::Value>>,
    /// Kernel time per eBPF program on this host, and in the VM (absent from runs before
    /// 1 December 2026).
    #[serde(default)]
    pub profile: Vec<ProfiledRun>,
    #[serde(default)]
    pub lsm_profile: Vec<ProfiledRun>,
    pub pipeline: Pipeline,
    pub latency: Latency,
    pub memory: Memory,
    pub macro_load: MacroLoad,
    /// Absent from runs before name rules.
    #[serde(default)]
    pub dns: Option<Dns>,
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname fills the struct; its fields are NUL-terminated.
    let kernel = unsafe {
        libc::uname(&raw mut uts);
        std::ffi::CStr::from_ptr(uts.release.as_ptr()).to_string_lossy().into_owned()
    };
    Machine {
        kernel,
        cpus: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map_or("?".into(), |v| v.trim_start_matches([' ', '\t', ':']).to_string()),
        memory_kib: meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0),
    }
}

/// One target of the issue: the figure, the limit, and why when it is missed.
struct Target {
    what: String,
    value: Option<f64>,
    limit: f64,
    /// true: the value must be at most the limit; false: at least.
    at_most: bool,
    unit: &'static str,
    why_missed: String,
}

fn ratio_of(rows: &[Row], workload: &str, config: &str) -> Option<f64> {
    rows.iter().find(|r| r.workload == workload && r.config == config).map(|r| r.ratio.median)
}

fn lsm_ratio(lsm: Option<&Vec<serde_json::Value>>, workload: &str, config: &str) -> Option<f64> {
    lsm?.iter().find(|r| r["workload"] == workload && r["config"] == config).and_then(|r| r["ratio"]["median"].as_f64())
}

fn targets(r: &Results) -> Vec<Target> {
    let tagged = "agent-guard, tagged, 13 rules";
    let landlock = ratio_of(&r.overhead, "open/close", "Landlock (same paths and port)");
    vec![
        Target {
            what: "open/close, untagged, BPF LSM path (VM)".into(),
            value: lsm_ratio(r.lsm.as_ref(), "open/close", "agent-guard, untagged"),
            limit: 1.05,
            at_most: true,
            unit: "x",
            why_missed: "every open of every process runs the file_open program, which returns after one hash lookup (the process has no tag); under TCG emulation that lookup is a larger share of a cheap syscall than on hardware".into(),
        },
        Target {
            what: "open/close, untagged, this host's path".into(),
            value: ratio_of(&r.overhead, "open/close", "agent-guard, untagged"),
            limit: 1.10,
            at_most: true,
            unit: "x",
            why_missed: format!(
                "without BPF LSM every openat of every process enters two tracepoint programs, sys_enter_openat and sys_exit_openat, each a tag lookup, on top of the tracepoint machinery itself; the exit program came with the landlock level{}",
                programs_note(&r.profile, "open/close", "agent-guard, untagged")
            ),
        },
        Target {
            what: "open/close, tagged (13 rules), this host's path (landlock level)".into(),
            value: ratio_of(&r.overhead, "open/close", tagged),
            limit: 1.25,
            at_most: true,
            unit: "x",
            why_missed: format!("{TAGGED_OPEN}{}", programs_note(&r.profile, "open/close", tagged)),
        },
        Target {
            what: "open/close, tagged (13 rules), this host's path (landlock level), against Landlock alone in the same run".into(),
            value: ratio_of(&r.overhead, "open/close", tagged),
            limit: landlock.unwrap_or(f64::NAN),
            at_most: true,
            unit: "x",
            why_missed: format!("{TAGGED_OPEN}{}", programs_note(&r.profile, "open/close", tagged)),
        },
        Target {
            what: "open/close, tagged (13 rules), BPF LSM path (VM)".into(),
            value: lsm_ratio(r.lsm.as_ref(), "open/close", tagged),
            limit: 1.25,
            at_most: true,
            unit: "x",
            why_missed: format!("{LSM_OPEN}{}", programs_note(&r.lsm_profile, "open/close", tagged)),
        },
        Target {
            what: "events/s kernel -> JSON file and audit store with zero loss".into(),
            value: Some(r.pipeline.max_zero_loss_rate),
            limit: 500_000.0,
            at_most: false,
            unit: "/s",
            why_missed: PIPELINE.into(),
        },
        Target {
            what: "revoke, p99 (API round trip; in force in the kernel at the reply)".into(),
            value: Some(r.latency.revoke_round_trip_us.p99 / 1000.0),
            limit: 5.0,
            at_most: true,
            unit: "ms",
            why_missed: "the revoke is one map update behind one lock, and its reply waits, once the lock is released, until the task's state file is written and renamed into place (a task the caller was told about survives a crash); the ring-buffer reader takes that lock per record, not per batch. Profiled with bpftrace uprobes on the release daemon during 200 trials on this host (1 December 2026, when the files were still written under the lock; round trip p50 963 µs, p99 5,879 µs in that run): the save (each changed task's state file and the counters file written and renamed into place) took 0.5-1 ms in most of its 603 calls and 2-16 ms in 7 of them, the tail; waits for a contended lock were all under 0.5 ms (38 of them). So the tail is the filesystem's, on a reply that waits for it on purpose".into(),
        },
        Target {
            what: "daemon RSS with 1,000 open tasks, ring buffers counted once".into(),
            value: (r.memory.tasks >= 1000).then_some(r.memory.rss_ring_once_kib() as f64 / 1024.0),
            limit: 32.0,
            at_most: true,
            unit: "MiB",
            why_missed: "of the resident set, the 17 MiB of ring buffers (counted once) are kernel memory the daemon maps; the binary's pages in use are about 9 MiB, of which 2.7 MiB are the embedded eBPF object, parsed at load; the heap holds each task's grant, compiled rules and usage, and since name rules each task's DNS resolver (its four sockets, five small tokio tasks and their registrations; the heap with 1,000 tasks went from 9.3 MiB at cd34ba7 to 21.5 MiB with them, and lost 8 KiB per task once a waiting resolver kept no receive buffer; see Memory for this run's heap)".into(),
        },
    ]
}

/// Why a tagged open on this host costs what it does (two targets share it).
const TAGGED_OPEN: &str = "at the `landlock` level a task whose grant Landlock holds exactly, every file rule an allow, has its opens judged by Landlock alone (`CONFINE_OPENS_CACHED`): no path copy or hash any more; what is left over Landlock's own check, measured by taking parts out one at a time (interleaved runs of 7, docs/design.md): about 55 ns for the two tracepoints and their task lookups, about 100 ns for the exit's first-use check (the opened file's identity through the descriptor table: nine probe reads and one LRU lookup), and about 50 ns for the exact grant-end check at entry (`bpf_ktime_get_boot_ns`, kept exact: the coarse clock is refused to tracing programs and jiffies stop during suspend). Against Landlock alone the tagged open cannot come out cheaper, since it is Landlock plus the reporting";

/// Why a tagged open on the BPF LSM path costs what it does.
const LSM_OPEN: &str = "for a tagged process file_open checks the guard's own files (the opened dentry and up to eight ancestors, compared by inode), rebuilds the opened file's path with `bpf_d_path`, walks it under `bpf_loop` hashing every byte with one `PATH_RULES` lookup per component, and looks the file up in the first-use LRU; the per-task decision cache (keyed by task, mount, inode and access, invalidated by grant and rename generations), which would skip all but the task lookup for a file already decided, is designed in docs/design.md but not built yet";

/// This run's kernel time of the programs behind `workload` under `config`, beside the same
/// programs untagged, as a sentence to add to an explanation ("" when not profiled).
fn programs_note(runs: &[ProfiledRun], workload: &str, config: &str) -> String {
    let find = |c: &str| runs.iter().find(|r| r.workload == workload && r.config == c);
    let (Some(run), Some(untagged)) = (find(config), find("agent-guard, untagged")) else {
        return String::new();
    };
    let compare = config != "agent-guard, untagged";
    let per_op = |run: &ProfiledRun| -> Vec<(String, f64)> {
        run.programs
            .iter()
            .filter(|p| p.runs_per_op >= 0.5)
            .map(|p| (p.program.clone(), p.ns_per_run * p.runs_per_op))
            .collect()
    };
    let untagged = per_op(untagged);
    let parts: Vec<String> = per_op(run)
        .iter()
        .map(|(name, ns)| {
            if compare {
                let before = untagged.iter().find(|(n, _)| n == name).map_or(0.0, |(_, ns)| *ns);
                format!("`{name}` {ns:.0} ns (untagged {before:.0} ns)")
            } else {
                format!("`{name}` {ns:.0} ns")
            }
        })
        .collect();
    if parts.is_empty() {
        return String::new();
    }
    format!(
        ". This run's profile (the kernel's timing of each program, one clock read included; see the section on where the time goes), per open: {}",
        parts.join(", ")
    )
}

/// Why the pipeline stops where it does: per-event CPU by stage, measured with perf at 100,000
/// events/s on this machine (docs/design.md, "Event pipeline").
const PIPELINE: &str = "every event is decoded and enriched (task, rule, exec id and ancestry), serialised, written to the JSON file and inserted into the SQLite audit store, each rate held for 3 s. Profiled by thread with perf and /proc at 100,000 events/s for 4 s on this host, twice (1 December 2026, a day it ran about three times slower than the run of 8553fca: a bare open 3.3-4.1 µs against 1.15 µs), per event: the audit store 7.0-7.7 µs (`sqlite3VdbeExec`, the B-tree inserts of the row and of its three indexes, and the kernel's `pwrite` of the WAL pages), decoding, enrichment and JSON 6.8-7.4 µs (of that thread's samples 12-13% serde's string escaping, 11-20% `memmove`, about a quarter malloc and free), the WAL checkpoint thread 1.5-1.9 µs, the JSON file 0.6 µs; with perf running and both CPUs busy, a saturated event costs more than at 25,000/s. The store gates the rest: it is waited for, so that no event is lost, and its thread cannot take more than one CPU. 500,000/s would need under 2 µs per event in all, on a machine whose other CPU runs the load generator: the store has to leave the per-event path (an append-only log indexed in the background), and the decoder has to stop building an owned event per record. Tried and dropped: mimalloc as the allocator (no gain in CPU per event; the heap with 1,000 tasks went from 16 to 39 MiB). Done: the kernel no longer wakes the daemon for each record (a wake-up is a self-interrupt, which on this virtualised host showed in perf as `native_write_msr`), the reader collects every 10 ms instead (at 25,000/s the daemon's CPU for 125,000 events fell from 3.24 s to 2.45-2.59 s); events share their task's names and every output's rendering shares the event instead of copying them, metric labels are static, the store inserts 16 rows per statement (15% less time per row alone), and no state file is written under the lock the readers take per record: at 25,000/s the daemon's CPU went from 45-51% to 39-42%, at 50,000/s from 78-93% to 61-76% (six runs of the code before, four of the last two builds, interleaved, the same day); the losses at 100,000/s vary too much from run to run on this host to compare. Measured with flood control off: with it on, a looping agent's identical events are folded into counted aggregates";

fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "x" => format!("{v:.3}x"),
        "/s" => format!("{v:.0}/s"),
        _ => format!("{v:.2} {unit}"),
    }
}

#[expect(clippy::too_many_lines, reason = "BENCHMARKS.md section by section")]
pub fn markdown(r: &Results) -> String {
    let mut md = String::new();
    let m = &r.machine;
    let _ = writeln!(md, "# agent-guard benchmarks\n");
    let _ = writeln!(
        md,
        "Generated by `cargo xtask bench` in one run ({:.0} s){}. Machine: Linux {}, {} CPUs ({}), {:.1} GiB. Commit `{}`.\n",
        r.seconds,
        if r.smoke { " — **smoke run: too short to quote**" } else { "" },
        m.kernel,
        m.cpus,
        m.cpu_model,
        m.memory_kib as f64 / 1024.0 / 1024.0,
        r.commit
    );
    let _ = writeln!(
        md,
        "Ratios are to the same workload with nothing attached, measured in the same repetition (bare at its start and end); median over repetitions, with the range. These machines are noisy: read ratios, not absolute times.\n"
    );
    let _ = writeln!(md, "## Targets\n\n| target | measured | limit | met |\n|---|---|---|---|");
    let mut misses = Vec::new();
    for t in targets(r) {
        let (shown, met) = match t.value {
            Some(v) if v.is_finite() => {
                let met = if t.at_most { v <= t.limit } else { v >= t.limit };
                (fmt_value(v, t.unit), if met { "yes" } else { "**no**" })
            }
            _ => ("not measured in this run".to_string(), "—"),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} {} | {} |",
            t.what,
            shown,
            if t.at_most { "≤" } else { "≥" },
            fmt_value(t.limit, t.unit),
            met
        );
        if met == "**no**" {
            let seen = misses.iter().any(|m: &String| m.ends_with(&format!(": {}.", t.why_missed)));
            misses.push(if seen {
                format!("- **{}**: as above.", t.what)
            } else {
                format!("- **{}**: {}.", t.what, t.why_missed)
            });
        }
    }
    if !misses.is_empty() {
        let _ = writeln!(md, "\nWhy the missed targets are missed:\n\n{}", misses.join("\n"));
    }
    let _ = writeln!(
        md,
        "\n## Syscall overhead on this host (no BPF LSM: file and exec at the `landlock` level, the rows marked kill level with `run --without-landlock`; network by cgroup programs)\n"
    );
    table(&mut md, &r.overhead, true);
    match &r.lsm {
        Some(rows) => {
            let rows: Vec<Row> = rows.iter().filter_map(|v| serde_json::from_value(v.clone()).ok()).collect();
            let _ = writeln!(
                md,
                "\n## Syscall overhead on the BPF LSM path (Debian 6.12 kernel in qemu TCG; ratios only)\n"
            );
            table(&mut md, &rows, false);
        }
        None => {
            let _ = writeln!(md, "\n## Syscall overhead on the BPF LSM path\n\nNot measured in this run.");
        }
    }
    let lsm_rows: Vec<Row> = r.lsm.iter().flatten().filter_map(|v| serde_json::from_value(v.clone()).ok()).collect();
    profile_section(&mut md, "this host", &r.profile, &r.overhead);
    profile_section(&mut md, "the BPF LSM path (VM)", &r.lsm_profile, &lsm_rows);
    let p = &r.pipeline;
    let _ = writeln!(md, "\n## Event pipeline (kernel → ring buffer → daemon → JSON file)\n");
    let _ = writeln!(
        md,
        "| target rate | achieved | generated | written | dropped in kernel | lost | daemon CPU |\n|---|---|---|---|---|---|---|"
    );
    for s in p.steps.iter().chain(p.at_double.iter()) {
        let _ = writeln!(
            md,
            "| {}/s | {:.0}/s | {} | {} | {} | {} ({:.1}%) | {:.0}% |",
            s.target_rate,
            s.achieved_rate,
            s.generated,
            s.delivered,
            s.dropped_in_kernel,
            s.lost,
            s.lost as f64 * 100.0 / s.generated.max(1) as f64,
            s.daemon_cpu * 100.0
        );
    }
    let _ = writeln!(
        md,
        "\nHighest rate with zero loss: **{:.0} events/s**; daemon peak RSS {:.1} MiB (at most 16,384 events wait for the writer; beyond that the backlog stays in the kernel's ring buffer).",
        p.max_zero_loss_rate,
        p.daemon_peak_rss_kib as f64 / 1024.0
    );
    if p.steps.iter().chain(p.at_double.iter()).any(|s| s.achieved_rate < 0.9 * s.target_rate as f64) {
        let _ = writeln!(
            md,
            "\nWhere *achieved* is well below the target rate, the load generator (one process opening a file in a loop, on a {}-CPU machine it shares with the daemon) could go no faster: those steps measure the generator's limit, not the pipeline's.",
            r.machine.cpus
        );
    }
    let l = &r.latency;
    let _ = writeln!(md, "\n## Control-path latency ({} trials)\n", l.trials);
    let _ = writeln!(md, "| measure | p50 | p99 | max |\n|---|---|---|---|");
    for (name, s) in [
        ("revoke: API round trip", &l.revoke_round_trip_us),
        (
            "revoke: first kernel denial, relative to the reply (negative = before)",
            &l.revoke_first_denial_after_reply_us,
        ),
        ("grant issue: spawn `agent-guard run` → command running in its task", &l.issue_tagged_us),
        ("the same command spawned bare", &l.issue_bare_us),
    ] {
        let _ = writeln!(md, "| {name} | {:.0} µs | {:.0} µs | {:.0} µs |", s.median, s.p99, s.max);
    }
    let mem = &r.memory;
    let _ = writeln!(md, "\n## Memory\n");
    let _ = writeln!(
        md,
        "Daemon RSS {:.1} MiB idle, {:.1} MiB with {} open tasks: {:.1} MiB heap and {:.1} MiB file-backed, of which {:.1} MiB are the ring buffers (16 MiB events, 1 MiB alerts), whose data pages the kernel maps into the daemon twice. **Counting the ring buffers once: {:.1} MiB.** (Tasks opened in {:.1} s); kernel memory of its maps: {:.1} MiB.",
        mem.daemon_rss_idle_kib as f64 / 1024.0,
        mem.daemon_rss_with_tasks_kib as f64 / 1024.0,
        mem.tasks,
        mem.daemon_anon_with_tasks_kib as f64 / 1024.0,
        mem.daemon_file_with_tasks_kib as f64 / 1024.0,
        mem.daemon_ring_mapped_with_tasks_kib as f64 / 1024.0,
        mem.rss_ring_once_kib() as f64 / 1024.0,
        mem.open_seconds,
        mem.kernel_map_bytes as f64 / 1_048_576.0
    );
    dns_section(&mut md, r.dns.as_ref());
    let ml = &r.macro_load;
    let _ = writeln!(
        md,
        "\n## Macro workload\n\n{}: untagged {:.2} s, tagged {:.2} s (medians), ratio **{:.3}x** (range {:.3}–{:.3}).",
        ml.description, ml.untagged_s.median, ml.tagged_s.median, ml.ratio.median, ml.ratio.min, ml.ratio.max
    );
    let _ = writeln!(
        md,
        "\n## How\n\n- Workloads (`ag-workload`): open+close of one file; a 1-byte pread on a descriptor opened once (the per-read hooks: BPF LSM `file_permission`, which ends a task's reads when its grant ends); TCP connect to a loopback listener (closed with RST); fork+exec of /usr/bin/true; a stat of every entry of a 500-entry tree.\n- agent-guard: the daemon started and stopped within each repetition; tagged runs use grants of 13 rules (what the workloads need), 1,000 and 10,000 rules (the rest never match).\n- auditd: `-w <bench dir> -p rwa` and `-a always,exit -S connect` / `-S execve` rules. Landlock: the workload restricts itself to the same paths and port (ABI 4, fs + TCP connect). bpftrace: the same three observations (openat, connect, execve tracepoints) for the workload's comm.\n- Event pipeline: a tagged agent in audit mode opens an out-of-scope path at a set rate; every open is one event.\n- Revoke: `until-eperm` connects in a loop; the figure is when its first EPERM comes relative to the API reply."
    );
    md
}

/// The task resolver's latency and rate, beside the DNS server asked straight.
fn dns_section(md: &mut String, dns: Option<&Dns>) {
    match dns {
        Some(d) => {
            let _ = writeln!(
                md,
                "\n## DNS through the task resolver\n\nThe same A question, asked straight of dnsmasq on loopback by an untagged process, and by a tagged agent on port 53, which the kernel sends to its task's resolver in the daemon; that resolver judges the name, forwards a new question to the same dnsmasq, installs the answer's address in the kernel and then replies. {} questions each, one at a time:\n",
                d.questions
            );
            let _ = writeln!(md, "| asked | p50 | p99 | max |\n|---|---|---|---|");
            for (name, s) in
                [("straight to the server", &d.direct_us), ("through the task resolver", &d.via_resolver_us)]
            {
                let _ = writeln!(md, "| {name} | {:.0} µs | {:.0} µs | {:.0} µs |", s.median, s.p99, s.max);
            }
            let _ = writeln!(
                md,
                "\nAdded by the resolver: **{:.0} µs at p50, {:.0} µs at p99**.\n\nAnswers per second, {} askers at once for {:.0} s: straight **{:.0}/s** ({} lost), through the task resolver **{:.0}/s** ({} lost).",
                d.via_resolver_us.median - d.direct_us.median,
                d.via_resolver_us.p99 - d.direct_us.p99,
                d.rate_threads,
                d.rate_seconds,
                d.direct_rate,
                d.direct_timeouts,
                d.via_resolver_rate,
                d.via_resolver_timeouts
            );
        }
        None => {
            let _ = writeln!(md, "\n## DNS through the task resolver\n\nNot measured in this run.");
        }
    }
}

/// Programs that ran less often than this per operation ran for something else (the daemon,
/// `agent-guard run` starting the task): left out of the profile tables.
const MIN_RUNS_PER_OP: f64 = 0.1;

/// Each eBPF program's kernel time per operation, beside what the operation costs over bare.
fn profile_section(md: &mut String, place: &str, runs: &[ProfiledRun], rows: &[Row]) {
    if runs.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n## Where a guarded operation's time goes, {place} (the kernel's BPF statistics)\n\nEach program's run time as the kernel times it (`BPF_ENABLE_STATS`), in a run of the workload of its own after the repetitions. Timing a run reads the clock twice and about one read falls inside the span it measures, so every *ns/run* includes one clock read: the untagged rows, whose programs look up the process's tag and return, show that floor. *Over bare* is the operation's median cost above bare in the overhead table above (another run, so the two do not add up exactly); what the programs do not explain is the hooks' own machinery (tracepoint or trampoline entry) and, for tagged runs at the `landlock` level, Landlock. Programs that ran less than once per ten operations (for the daemon, or for `agent-guard run` starting the task) or for under 1 ns per operation are left out.\n"
    );
    let _ = writeln!(
        md,
        "| workload | configuration | program | runs/op | ns/run | ns/op | over bare |\n|---|---|---|---|---|---|---|"
    );
    for run in runs {
        let ns_of =
            |config: &str| rows.iter().find(|r| r.workload == run.workload && r.config == config).map(|r| r.ns.median);
        let over = match (ns_of(&run.config), ns_of("bare (nothing attached)")) {
            (Some(guarded), Some(bare)) => format!("{:.0} ns", guarded - bare),
            _ => "—".to_string(),
        };
        for p in run.programs.iter().filter(|p| p.runs_per_op >= MIN_RUNS_PER_OP && p.ns_per_run * p.runs_per_op >= 1.0)
        {
            let _ = writeln!(
                md,
                "| {} | {} | `{}` | {:.2} | {:.0} | {:.0} | {over} |",
                run.workload,
                run.config,
                p.program,
                p.runs_per_op,
                p.ns_per_run,
                p.ns_per_run * p.runs_per_op
            );
        }
    }
}

fn table(md: &mut String, rows: &[Row], absolute: bool) {
    if absolute {
        let _ = writeln!(
            md,
            "| workload | configuration | ns/op (median) | ratio (median) | ratio range |\n|---|---|---|---|---|"
        );
    } else {
        let _ = writeln!(md, "| workload | configuration | ratio (median) | ratio range |\n|---|---|---|---|");
    }
    for row in rows {
        if absolute {
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {:.3}x | {:.3}–{:.3} |",
                row.workload, row.config, row.ns.median, row.ratio.median, row.ratio.min, row.ratio.max
            );
        } else {
            let _ = writeln!(
                md,
                "| {} | {} | {:.3}x | {:.3}–{:.3} |",
                row.workload, row.config, row.ratio.median, row.ratio.min, row.ratio.max
            );
        }
    }
}

pub fn write(results: &Results, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("benchmarks.json"), serde_json::to_string_pretty(results)? + "\n")?;
    std::fs::write(out.join("BENCHMARKS.md"), markdown(results))?;
    eprintln!("wrote {} and {}", out.join("BENCHMARKS.md").display(), out.join("benchmarks.json").display());
    Ok(())
}
