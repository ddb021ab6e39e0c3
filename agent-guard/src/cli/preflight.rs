//! `agent-guard preflight [--json]`: which enforcement level each capability would get on this
//! machine, and why, read from the running kernel without a daemon. It changes nothing: the
//! one thing it loads, to learn whether the kernel takes BPF LSM programs at all (some list
//! `bpf` among their LSMs and still refuse them), is a trivial program it never attaches.
//! `agent-guard daemon --require LEVEL` makes a level binding.

use std::{path::Path, process::ExitCode};

use serde::Serialize;

use crate::api::Level;

/// Linux 5.17 added `bpf_loop`, which the path matching needs (agent-guard-ebpf path_match.rs).
const MIN_KERNEL: (u32, u32) = (5, 17);
/// Linux 6.5 added `SO_PEERPIDFD`; before, the API names callers by `SO_PEERCRED` and a pidfd
/// re-checked against the process's start time.
const PEERPIDFD_KERNEL: (u32, u32) = (6, 5);

/// `agent-guard preflight`.
#[derive(clap::Args)]
pub struct Args {
    /// Print the findings as JSON.
    #[arg(long)]
    json: bool,
}

/// One thing checked, and what was found.
#[derive(Serialize)]
struct Check {
    what: &'static str,
    ok: bool,
    found: String,
}

/// The findings and the levels they lead to.
#[derive(Serialize)]
struct Preflight {
    kernel: String,
    supported: bool,
    checks: Vec<Check>,
    network: Level,
    file: Level,
    exec: Level,
    why: String,
}

/// The active LSMs: securityfs if mounted, else the boot command line's `lsm=`, else the
/// kernel's built-in default (CONFIG_LSM in /boot/config-RELEASE).
fn active_lsms(release: &str) -> (Option<Vec<String>>, &'static str) {
    let list = |text: &str| text.trim().split(',').map(str::to_string).collect::<Vec<_>>();
    if let Ok(text) = std::fs::read_to_string("/sys/kernel/security/lsm") {
        return (Some(list(&text)), "/sys/kernel/security/lsm");
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if let Some(lsm) = cmdline.split_whitespace().find_map(|w| w.strip_prefix("lsm=")) {
        return (Some(list(lsm)), "lsm= on the kernel command line");
    }
    let config = std::fs::read_to_string(format!("/boot/config-{release}")).unwrap_or_default();
    match config.lines().find_map(|l| l.strip_prefix("CONFIG_LSM=")) {
        Some(lsm) => (Some(list(lsm.trim_matches('"'))), "CONFIG_LSM in /boot/config"),
        None => (
            None,
            "unknown: securityfs is not mounted (mount -t securityfs securityfs /sys/kernel/security), no lsm= and no kernel config",
        ),
    }
}

fn findings() -> Preflight {
    let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    let v = crate::daemon::kernel_version();
    let mut checks = Vec::new();
    let supported = v >= MIN_KERNEL;
    checks.push(Check {
        what: "kernel version",
        ok: supported,
        found: format!("{release} (at least {}.{} needed: bpf_loop)", MIN_KERNEL.0, MIN_KERNEL.1),
    });
    let cgroup2 = crate::daemon::cgroup2_root();
    checks.push(Check {
        what: "cgroup v2",
        ok: cgroup2.is_ok(),
        found: match &cgroup2 {
            Ok(root) => format!("mounted at {}", root.display()),
            Err(err) => err.to_string(),
        },
    });
    let cgroup2 = cgroup2.is_ok();
    let syscalls = ["/sys/kernel/tracing/events/syscalls", "/sys/kernel/debug/tracing/events/syscalls"]
        .iter()
        .any(|p| Path::new(p).exists());
    checks.push(Check {
        what: "syscall tracepoints",
        ok: true,
        found: if syscalls {
            "present".into()
        } else {
            "tracefs not mounted here (the daemon mounts it; CONFIG_FTRACE_SYSCALLS is needed)".into()
        },
    });
    let btf = Path::new(crate::daemon::VMLINUX_BTF).exists();
    let offsets = crate::daemon::lsm_offsets();
    checks.push(Check {
        what: "kernel BTF",
        ok: btf,
        found: match (&offsets, btf) {
            (Ok(_), _) => format!("{} has every type the BPF LSM programs need", crate::daemon::VMLINUX_BTF),
            (Err(err), true) => format!("{}: {err}", crate::daemon::VMLINUX_BTF),
            (Err(_), false) => format!("{} is missing (CONFIG_DEBUG_INFO_BTF)", crate::daemon::VMLINUX_BTF),
        },
    });
    let (lsms, source) = active_lsms(&release);
    let bpf_lsm = lsms.as_ref().is_some_and(|l| l.iter().any(|m| m == "bpf"));
    checks.push(Check {
        what: "bpf among the active LSMs",
        ok: bpf_lsm,
        found: match &lsms {
            Some(list) => format!("{} ({source})", list.join(",")),
            None => source.to_string(),
        },
    });
    let landlock = crate::confine::landlock_abi();
    checks.push(Check {
        what: "Landlock",
        ok: landlock.is_some(),
        found: match landlock {
            Some(abi) => format!("ABI {abi}{}", if abi >= 6 { " (signal and abstract-socket scoping)" } else { "" }),
            None => "not available (not built in, or not among the active LSMs)".into(),
        },
    });
    checks.push(Check {
        what: "API caller identity",
        ok: true,
        found: if v >= PEERPIDFD_KERNEL {
            "SO_PEERPIDFD".into()
        } else {
            "SO_PEERCRED and a pidfd re-checked against the process start time (before Linux 6.5)".into()
        },
    });
    let lsm_new_enough = v >= crate::daemon::MIN_LSM_KERNEL;
    let probe = if bpf_lsm && offsets.is_ok() && lsm_new_enough { Some(crate::daemon::probe_lsm()) } else { None };
    checks.push(Check {
        what: "BPF LSM programs",
        ok: matches!(probe, Some(Ok(()))),
        found: match &probe {
            Some(Ok(())) => "this kernel loads them (a trivial one was loaded and unloaded)".into(),
            Some(Err(err)) => format!("this kernel refuses them: {err}"),
            None if !lsm_new_enough => format!(
                "not used before Linux {}.{} (an older verifier refuses some of them)",
                crate::daemon::MIN_LSM_KERNEL.0,
                crate::daemon::MIN_LSM_KERNEL.1
            ),
            None => "not tried: bpf is not an active LSM, or the BTF lacks what they need".into(),
        },
    });
    let lsm_ok = matches!(probe, Some(Ok(())));
    checks.push(signals_check(lsm_ok, landlock));
    let (file, why) = file_level(lsm_ok, landlock);
    Preflight {
        kernel: release,
        supported: supported && cgroup2,
        checks,
        network: if lsm_ok { Level::Lsm } else { Level::Cgroup },
        file,
        exec: file,
        why,
    }
}

/// Whether signals to the guard are refused, and by what.
fn signals_check(lsm_ok: bool, landlock: Option<u32>) -> Check {
    let scoped = landlock.is_some_and(|abi| abi >= 6);
    Check {
        what: "signals to the guard",
        ok: lsm_ok || landlock.is_some(),
        found: if lsm_ok {
            "refused by the task_kill hook (BPF LSM)".into()
        } else if scoped {
            "refused by Landlock's signal scoping".into()
        } else if landlock.is_some() {
            "refused only by the seccomp filter of `agent-guard run` (by pid, process group, broadcast and pidfd): no BPF LSM, and no Landlock signal scoping (ABI 6, Linux 6.12)".into()
        } else {
            "NOT refused: neither BPF LSM nor Landlock".into()
        },
    }
}

/// The level files and execs get, and why.
fn file_level(lsm_ok: bool, landlock: Option<u32>) -> (Level, String) {
    if lsm_ok {
        (Level::Lsm, "BPF LSM is active and this kernel loads its programs".to_string())
    } else if landlock.is_some() {
        (Level::Landlock, "no BPF LSM: tasks opened with `agent-guard run` are confined by Landlock (EACCES), and reported from syscall exit tracepoints".to_string())
    } else {
        (
            Level::Kill,
            "neither BPF LSM nor Landlock: an out-of-scope open or exec kills the agent, after the syscall ran"
                .to_string(),
        )
    }
}

pub fn main(args: &Args) -> anyhow::Result<ExitCode> {
    let found = findings();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
    } else {
        println!("kernel {}", found.kernel);
        for check in &found.checks {
            println!("  [{}] {}: {}", if check.ok { "ok" } else { "--" }, check.what, check.found);
        }
        if found.supported {
            println!("levels: network {}, file {}, exec {}", found.network, found.file, found.exec);
            println!("why: {}", found.why);
        } else {
            println!("agent-guard cannot run here: see the checks marked --");
        }
    }
    Ok(if found.supported { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
