//! `cargo xtask vm-test`: the end-to-end suite on a kernel with BPF LSM.
//!
//! This host's kernel refuses BPF LSM, so the suite that proves in-kernel denial runs in a
//! virtual machine: Debian's current 6.12 cloud kernel (resolved from the package archive at
//! run time, cached under target/vm), booted by qemu under TCG with `lsm=...,bpf`, with an
//! initramfs holding busybox, the real agent-guard binary, the probe and the test binary, at
//! the same absolute paths as on the host. qemu's exit status means nothing (it exits 0 after
//! `poweroff -f` whatever happened), so the verdict is the marker line the VM prints.

use std::{
    io::{BufRead, BufReader},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::cmd::{self, Result, cargo, run, step, workspace_root};

/// python3.11-minimal: the suite proves that an interpreter's `open()` is judged like any other.
const PACKAGES: &[&str] = &["qemu-system-x86", "busybox-static", "cpio", "python3.11-minimal"];
const PYTHON: &str = "/usr/bin/python3.11";
/// What `python3.11 -S -I` loads from disk at start (the rest of its start-up modules are frozen).
const PYTHON_STDLIB: &str = "/usr/lib/python3.11/encodings";
const KERNEL_PATTERN: &str = "^linux-image-6\\.12\\.[0-9]+\\+deb12-cloud-amd64-unsigned$";
const MARKER: &str = "AGENT-GUARD-VM-RESULT";
/// Wall-clock limit for one VM run (TCG emulation is slow; the suite takes well under this).
const VM_TIMEOUT: Duration = Duration::from_secs(600);

fn vm_dir() -> PathBuf {
    workspace_root().join("target/vm")
}

fn ensure_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !crate::setup::debian_installed(p)).collect();
    if missing.is_empty() {
        eprintln!("ok: Debian packages {}", PACKAGES.join(" "));
        return Ok(());
    }
    step(&format!("installing Debian packages {} (the VM stage)", missing.join(" ")));
    crate::setup::apt_install(&missing)
}

/// The newest Debian 6.12 cloud kernel in the archive, downloaded and unpacked once.
fn ensure_kernel() -> Result<PathBuf> {
    let out = Command::new("apt-cache")
        .args(["search", "--names-only", KERNEL_PATTERN])
        .output()
        .map_err(|e| format!("apt-cache: {e}"))?;
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    if names.is_empty() {
        run(Command::new("apt-get").arg("update").env("DEBIAN_FRONTEND", "noninteractive"))?;
        return Err("missing piece: no linux-image-6.12.*+deb12-cloud-amd64-unsigned in the Debian archive (apt-get update ran; try again)".into());
    }
    // linux-image-6.12.117+deb12-...: order by the numeric patch level.
    names.sort_by_key(|n| n.split('.').nth(2).and_then(|p| p.split('+').next()?.parse::<u32>().ok()).unwrap_or(0));
    let package = names.pop().expect("non-empty");
    let unpacked = vm_dir().join(&package);
    let vmlinuz = |dir: &Path| -> Option<PathBuf> {
        std::fs::read_dir(dir.join("boot"))
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
    };
    if let Some(kernel) = vmlinuz(&unpacked) {
        eprintln!("ok: kernel {package} (cached)");
        return Ok(kernel);
    }
    step(&format!("downloading {package} from the Debian archive"));
    std::fs::create_dir_all(vm_dir()).map_err(|e| e.to_string())?;
    run(Command::new("apt-get").args(["download", &package]).current_dir(vm_dir()))?;
    let deb = std::fs::read_dir(vm_dir())
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{package}_"))))
        .ok_or(format!("apt-get download left no {package} .deb"))?;
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&unpacked))?;
    let _ = std::fs::remove_file(&deb);
    vmlinuz(&unpacked).ok_or(format!("{package} has no boot/vmlinuz-*"))
}

/// Copies `binary` to the same absolute path under `root`, with the shared libraries it needs.
fn install_binary(root: &Path, binary: &Path) -> Result<()> {
    copy_to_root(root, binary)?;
    let ldd = Command::new("ldd").arg(binary).output().map_err(|e| format!("ldd: {e}"))?;
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let lib = line.split("=>").last().and_then(|rest| rest.split_whitespace().next());
        if let Some(lib) = lib.filter(|l| l.starts_with('/')) {
            copy_to_root(root, Path::new(lib))?;
        }
    }
    Ok(())
}

/// Copies the regular files below `dir` to the same paths under `root`.
fn copy_tree(root: &Path, dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            copy_tree(root, &path)?;
        } else if path.is_file() {
            copy_to_root(root, &path)?;
        }
    }
    Ok(())
}

fn copy_to_root(root: &Path, file: &Path) -> Result<()> {
    let dest = root.join(file.strip_prefix("/").map_err(|_| format!("{} is not absolute", file.display()))?);
    std::fs::create_dir_all(dest.parent().expect("has a parent")).map_err(|e| e.to_string())?;
    std::fs::copy(file, &dest).map_err(|e| format!("copying {}: {e}", file.display()))?;
    Ok(())
}

/// The VM's /init: mount what the daemon needs, run the payload's script, power off.
/// /tmp and /run stay on the initramfs (itself a writable tmpfs): the binaries may live under
/// /tmp on the host (a checkout there), at the same paths in the VM.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t bpf bpf /sys/fs/bpf
mount -t securityfs securityfs /sys/kernel/security
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tracefs tracefs /sys/kernel/tracing
ip link set lo up
echo "kernel $(uname -r), lsm $(cat /sys/kernel/security/lsm)"
export PATH=/bin:/usr/bin HOME=/root AGENT_GUARD_BIN=@AGENT_GUARD@
@SCRIPT@
poweroff -f
"#;

/// What the VM runs: binaries copied in at their host paths (with their libraries), and the
/// shell lines /init runs (each prints its own marker).
struct Payload {
    agent_guard: PathBuf,
    binaries: Vec<PathBuf>,
    script: String,
}

/// Marker of the benchmark step: its exit status, and the line its JSON follows.
const BENCH_MARKER: &str = "AGENT-GUARD-VM-BENCH";
const BENCH_JSON: &str = "AGENT-GUARD-BENCH-JSON: ";

/// Builds the test binary for the VM suite and returns its path.
fn build_vm_suite(toolchain: &str) -> Result<PathBuf> {
    let out = cargo(toolchain)
        .args(["test", "--package", "agent-guard-e2e", "--test", "vm", "--no-run", "--message-format=json"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo test --no-run: {e}"))?;
    if !out.status.success() {
        return Err("building the VM suite failed".into());
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"executable\"") && l.contains("\"name\":\"vm\""))
        .find_map(|l| {
            let at = l.find("\"executable\":\"")? + "\"executable\":\"".len();
            Some(PathBuf::from(&l[at..at + l[at..].find('"')?]))
        })
        .ok_or_else(|| "cargo did not report the vm test executable".into())
}

fn build_initramfs(payload: &Payload) -> Result<PathBuf> {
    let root = vm_dir().join("initramfs");
    let _ = std::fs::remove_dir_all(&root);
    for dir in ["bin", "proc", "sys", "dev", "tmp", "run", "root"] {
        std::fs::create_dir_all(root.join(dir)).map_err(|e| e.to_string())?;
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).map_err(|e| format!("busybox: {e}"))?;
    for binary in std::iter::once(&payload.agent_guard).chain(&payload.binaries) {
        install_binary(&root, binary)?;
    }
    copy_tree(&root, Path::new(PYTHON_STDLIB))?;
    let init =
        INIT.replace("@AGENT_GUARD@", &payload.agent_guard.display().to_string()).replace("@SCRIPT@", &payload.script);
    let init_path = root.join("init");
    std::fs::write(&init_path, init).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&init_path, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    let image = vm_dir().join("initramfs.cpio.gz");
    let script = format!("cd {} && find . | cpio -o -H newc --quiet | gzip -1 > {}", root.display(), image.display());
    run(Command::new("sh").args(["-c", &script]))?;
    Ok(image)
}

/// Boots the VM with `payload` and returns its console lines (also shown as they come).
fn boot(payload: &Payload) -> Result<Vec<String>> {
    ensure_packages()?;
    let kernel = ensure_kernel()?;
    let initramfs = build_initramfs(payload)?;
    step(&format!("booting {} with lsm=...,bpf (TCG)", kernel.display()));
    let started = Instant::now();
    let mut qemu = Command::new("timeout")
        .arg(VM_TIMEOUT.as_secs().to_string())
        .args(["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "max", "-m", "2048", "-smp", "2"])
        .args(["-nographic", "-no-reboot", "-kernel"])
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initramfs)
        .args(["-append", "console=ttyS0 lsm=lockdown,capability,landlock,yama,bpf panic=-1 quiet loglevel=3"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start qemu: {e}"))?;
    let mut lines = Vec::new();
    for line in BufReader::new(qemu.stdout.take().expect("piped")).lines() {
        let line = line.unwrap_or_default();
        if !line.starts_with(BENCH_JSON) {
            println!("vm| {line}");
        }
        lines.push(line);
    }
    let _ = qemu.wait();
    eprintln!("VM stage took {:.0} s", started.elapsed().as_secs_f64());
    Ok(lines)
}

/// The exit status a marker line reports.
fn marker_rc(lines: &[String], marker: &str) -> Option<i32> {
    lines.iter().find_map(|l| l.split(&format!("{marker}: rc=")).nth(1)?.trim().parse().ok())
}

fn bench_lines(bench: &Path, agent_guard: &Path, smoke: bool) -> String {
    format!(
        "{} lsm --agent-guard {}{}\necho \"{BENCH_MARKER}: rc=$?\"",
        bench.display(),
        agent_guard.display(),
        if smoke { " --smoke" } else { "" }
    )
}

/// The overhead rows measured on the BPF LSM path (JSON), from `ag-bench lsm` in the VM.
pub fn bench(agent_guard: &Path, bench: &Path, workload: &Path) -> Result<String> {
    step("VM: the benchmark on the BPF LSM path (ratios only: TCG emulation)");
    let payload = Payload {
        agent_guard: agent_guard.to_path_buf(),
        binaries: vec![bench.to_path_buf(), workload.to_path_buf(), PathBuf::from("/usr/bin/true")],
        script: bench_lines(bench, agent_guard, false),
    };
    let lines = boot(&payload)?;
    match marker_rc(&lines, BENCH_MARKER) {
        Some(0) => lines
            .iter()
            .find_map(|l| l.strip_prefix(BENCH_JSON))
            .map(str::to_string)
            .ok_or_else(|| "the VM benchmark printed no results".into()),
        Some(rc) => Err(format!("the VM benchmark failed (rc={rc})")),
        None => Err("the VM did not report a benchmark result (see the vm| lines above)".into()),
    }
}

/// The BPF LSM suite, then a smoke run of the LSM benchmark, in one boot. The smoke run counts
/// as one test: it must finish with results.
pub fn test(toolchain: &str) -> Result<(u64, u64)> {
    cmd::build(toolchain)?;
    step("VM stage: a kernel with BPF LSM under qemu");
    let test_bin = build_vm_suite(toolchain)?;
    let target = workspace_root().join("target/debug");
    let (bench, workload) = (target.join("ag-bench"), target.join("ag-workload"));
    let agent_guard = cmd::agent_guard_bin();
    let payload = Payload {
        agent_guard: agent_guard.clone(),
        binaries: vec![
            target.join("ag-probe"),
            test_bin.clone(),
            PathBuf::from(PYTHON),
            bench.clone(),
            workload,
            PathBuf::from("/usr/bin/true"),
        ],
        script: format!(
            "{} --test-threads=1\necho \"{MARKER}: rc=$?\"\n{}",
            test_bin.display(),
            bench_lines(&bench, &agent_guard, true)
        ),
    };
    let lines = boot(&payload)?;
    let (mut passed, mut failed) = (0, 0);
    for line in &lines {
        if let Some((p, f)) = cmd::count_results(line) {
            passed += p;
            failed += f;
        }
    }
    let bench_ok = marker_rc(&lines, BENCH_MARKER) == Some(0) && lines.iter().any(|l| l.starts_with(BENCH_JSON));
    if bench_ok {
        passed += 1;
    } else {
        failed += 1;
    }
    match marker_rc(&lines, MARKER) {
        Some(0) if passed > 0 && bench_ok => Ok((passed, failed)),
        Some(0) if !bench_ok => Err("the LSM benchmark smoke run failed in the VM (see the vm| lines above)".into()),
        Some(0) => Err("the VM suite ran no test".into()),
        Some(rc) => Err(format!("the VM suite failed (rc={rc})")),
        None => Err("the VM did not report a result (boot failure, crash or timeout): see the vm| lines above".into()),
    }
}
