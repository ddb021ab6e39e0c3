//! `cargo xtask vm-test`: the end-to-end suites on the kernels fleets run, with and without BPF
//! LSM.
//!
//! This host's kernel refuses BPF LSM, so the suites that prove in-kernel denial run in virtual
//! machines: Debian's current 6.12 cloud kernel and bookworm's own 6.1 (resolved from the
//! package archive at run time, cached under target/vm), booted by qemu under TCG, each twice:
//! with `bpf` in `lsm=` (the `lsm` level: the BPF LSM suite; on 6.1 the `landlock` level, whose
//! verifier refuses some of the BPF LSM programs) and without it (the `landlock` level:
//! tests/tests/landlock.rs). Each boot runs its suite at once (6.1 with `bpf`: the tests of
//! the level choice, `LEVEL_CHOICE_TESTS`). The initramfs holds
//! busybox, the real agent-guard binary, the probe and the test binaries, at the same absolute
//! paths as on the host. qemu's exit status means nothing (it exits 0 after `poweroff -f`
//! whatever happened), so the verdict is the marker line the VM prints.

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
/// A kernel of the matrix: the Debian package pattern, and how to order its versions (the
/// number the newest has most of).
pub struct Kernel {
    name: &'static str,
    pattern: &'static str,
    version_field: fn(&str) -> Option<u32>,
}

/// Debian's 6.12 cloud kernel (bookworm-backports): linux-image-6.12.117+deb12-cloud-amd64-unsigned.
pub const KERNEL_6_12: Kernel = Kernel {
    name: "6.12",
    pattern: "^linux-image-6\\.12\\.[0-9]+\\+deb12-cloud-amd64-unsigned$",
    version_field: |n| n.split('.').nth(2)?.split('+').next()?.parse().ok(),
};
/// bookworm's own 6.1 cloud kernel: linux-image-6.1.0-57-cloud-amd64-unsigned.
const KERNEL_6_1: Kernel = Kernel {
    name: "6.1",
    pattern: "^linux-image-6\\.1\\.0-[0-9]+-cloud-amd64-unsigned$",
    version_field: |n| n.strip_prefix("linux-image-6.1.0-")?.split('-').next()?.parse().ok(),
};
/// The active LSMs of a boot with BPF LSM, and of one without (Landlock, as distributions ship).
pub const LSM_WITH_BPF: &str = "lockdown,capability,landlock,yama,bpf";
const LSM_WITHOUT_BPF: &str = "lockdown,capability,landlock,yama";
pub const MARKER: &str = "AGENT-GUARD-VM-RESULT";
/// Wall-clock limit for one VM run (TCG emulation is slow; the suite takes well under this).
const VM_TIMEOUT: Duration = Duration::from_mins(30);

pub fn vm_dir() -> PathBuf {
    workspace_root().join("target/vm")
}

pub fn ensure_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !crate::setup::debian_installed(p)).collect();
    if missing.is_empty() {
        eprintln!("ok: Debian packages {}", PACKAGES.join(" "));
        return Ok(());
    }
    step(&format!("installing Debian packages {} (the VM stage)", missing.join(" ")));
    crate::setup::apt_install(&missing)
}

/// The newest kernel of `kernel`'s pattern in the archive, downloaded and unpacked once.
pub fn ensure_kernel(kernel: &Kernel) -> Result<PathBuf> {
    let out = Command::new("apt-cache")
        .args(["search", "--names-only", kernel.pattern])
        .output()
        .map_err(|e| format!("apt-cache: {e}"))?;
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    if names.is_empty() {
        run(Command::new("apt-get").arg("update").env("DEBIAN_FRONTEND", "noninteractive"))?;
        return Err(format!(
            "missing piece: no {} kernel ({}) in the Debian archive (apt-get update ran; try again)",
            kernel.name, kernel.pattern
        ));
    }
    names.sort_by_key(|n| (kernel.version_field)(n).unwrap_or(0));
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

/// Packs `payload` into target/vm/initramfs-NAME.cpio.gz, copying its binaries at once: what
/// the boot runs is fixed here, whatever is built after.
fn build_initramfs(payload: &Payload, name: &str) -> Result<PathBuf> {
    let root = vm_dir().join(format!("initramfs-{name}"));
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
    let image = vm_dir().join(format!("initramfs-{name}.cpio.gz"));
    pack(&root, &image, true)?;
    std::fs::remove_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    Ok(image)
}

/// Packs the tree `root` into the initramfs `image` (newc cpio), gzipped or not.
pub fn pack(root: &Path, image: &Path, gzip: bool) -> Result<()> {
    let compress = if gzip { " | gzip -1" } else { "" };
    let script = format!("cd {} && find . | cpio -o -H newc --quiet{compress} > {}", root.display(), image.display());
    run(Command::new("sh").args(["-c", &script]))
}

/// Boots `kernel` with the active LSMs `lsm` and `payload`, and returns its console lines (also
/// shown as they come).
fn boot(kernel: &Kernel, lsm: &str, cpus: &str, payload: &Payload) -> Result<Vec<String>> {
    ensure_packages()?;
    let image = ensure_kernel(kernel)?;
    let initramfs = build_initramfs(payload, "bench")?;
    qemu("vm", &image, &initramfs, &format!("lsm={lsm}"), cpus)
}

/// Boots the kernel `image` with `initramfs` as its root and `append` added to the command
/// line, and returns the console lines (also shown as they come, after `label|`).
pub fn qemu(label: &str, image: &Path, initramfs: &Path, append: &str, cpus: &str) -> Result<Vec<String>> {
    step(&format!("booting {} with {append} (TCG)", image.display()));
    let started = Instant::now();
    let mut qemu = Command::new("timeout")
        .arg(VM_TIMEOUT.as_secs().to_string())
        .args(["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "max", "-m", "2048", "-smp", cpus])
        .args(["-nographic", "-no-reboot", "-kernel"])
        .arg(image)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", &format!("console=ttyS0 {append} panic=-1 quiet loglevel=3")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start qemu: {e}"))?;
    let mut lines = Vec::new();
    for line in BufReader::new(qemu.stdout.take().expect("piped")).lines() {
        let line = line.unwrap_or_default();
        if !line.starts_with(BENCH_JSON) {
            println!("{label}| {line}");
        }
        lines.push(line);
    }
    let _ = qemu.wait();
    eprintln!("{label}: the boot took {:.0} s", started.elapsed().as_secs_f64());
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
    let lines = boot(&KERNEL_6_12, LSM_WITH_BPF, "2", &payload)?;
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

/// Builds the test binary `name` of the e2e package and returns its path.
fn build_test(toolchain: &str, name: &str) -> Result<PathBuf> {
    let out = cargo(toolchain)
        .args(["test", "--package", "agent-guard-e2e", "--test", name, "--no-run", "--message-format=json"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo test --no-run: {e}"))?;
    if !out.status.success() {
        return Err(format!("building the {name} suite failed"));
    }
    let tag = format!("\"name\":\"{name}\"");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"executable\"") && l.contains(&tag))
        .find_map(|l| {
            let at = l.find("\"executable\":\"")? + "\"executable\":\"".len();
            Some(PathBuf::from(&l[at..at + l[at..].find('"')?]))
        })
        .ok_or_else(|| format!("cargo did not report the {name} test executable"))
}

/// One boot's verdict: its passed and failed test counts, or why it gave none.
fn verdict(lines: &[String], with_bench: bool) -> Result<(u64, u64)> {
    let (mut passed, mut failed) = (0, 0);
    for line in lines {
        if let Some((p, f)) = cmd::count_results(line) {
            passed += p;
            failed += f;
        }
    }
    let bench_ok = marker_rc(lines, BENCH_MARKER) == Some(0) && lines.iter().any(|l| l.starts_with(BENCH_JSON));
    if with_bench {
        if bench_ok {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    match marker_rc(lines, MARKER) {
        Some(0) if passed > 0 && (bench_ok || !with_bench) => Ok((passed, failed)),
        Some(0) if !bench_ok => Err("the LSM benchmark smoke run failed in the VM (see the vm| lines above)".into()),
        Some(0) => Err("the VM suite ran no test".into()),
        Some(rc) => Err(format!("the VM suite failed (rc={rc})")),
        None => Err("the VM did not report a result (boot failure, crash or timeout): see the vm| lines above".into()),
    }
}

/// One boot of the kernel matrix, its initramfs packed.
pub struct Boot {
    label: String,
    kernel: PathBuf,
    lsm: &'static str,
    cpus: &'static str,
    initramfs: PathBuf,
    with_bench: bool,
    /// How many tests its filters name (a renamed test would otherwise drop out unseen).
    named_tests: Option<u64>,
}

/// The tests of the landlock suite that the boot of 6.1 with BPF LSM runs: there the daemon
/// must choose the `landlock` level although `bpf` is active, and say so (`kernel::MIN_LSM_KERNEL`);
/// the rest of the suite is the same code on the same kernel as the boot without it.
const LEVEL_CHOICE_TESTS: &[&str] = &[
    "status_and_the_task_name_the_landlock_level",
    "preflight_predicts_the_levels_the_daemon_gets",
    "out_of_scope_access_is_refused_on_the_resolved_file_and_the_agent_lives_on",
    "a_confined_agent_cannot_signal_trace_or_reprogram_the_guard",
];

/// The kernel matrix: 6.12 and 6.1, each booted with BPF LSM and without it. 6.12 with BPF LSM
/// runs the BPF LSM suite and a smoke run of the LSM benchmark; 6.12 and 6.1 without it run the
/// landlock suite; 6.1 with it (whose verifier refuses some BPF LSM programs, so 6.1 is at the
/// landlock level either way) runs the landlock tests of the level choice. Every boot must pass.
///
/// Builds the suites and packs each boot's initramfs now, so that `boot_all` may go on while other
/// builds change target/debug (`cargo xtask test` boots them beside the host's tests).
/// `only`: that kernel's two boots (`cargo xtask vm-test --kernel 6.1`).
pub fn prepare(toolchain: &str, only: Option<&str>) -> Result<Vec<Boot>> {
    if let Some(name) = only.filter(|n| ![KERNEL_6_12.name, KERNEL_6_1.name].contains(n)) {
        return Err(format!("no kernel {name} in the matrix (6.12, 6.1)"));
    }
    step(&format!("VM stage under qemu: {}, with and without BPF LSM", only.unwrap_or("6.12 and 6.1")));
    ensure_packages()?;
    let lsm_suite = build_test(toolchain, "vm")?;
    let landlock_suite = build_test(toolchain, "landlock")?;
    let target = workspace_root().join("target/debug");
    let (bench, workload) = (target.join("ag-bench"), target.join("ag-workload"));
    let agent_guard = cmd::agent_guard_bin();
    let binaries = |suite: &Path| {
        vec![
            target.join("ag-probe"),
            suite.to_path_buf(),
            PathBuf::from(PYTHON),
            bench.clone(),
            workload.clone(),
            PathBuf::from("/usr/bin/true"),
        ]
    };
    let suite_line = |suite: &Path, filters: &[&str]| {
        format!("{} --test-threads=1 {}\necho \"{MARKER}: rc=$?\"", suite.display(), filters.join(" "))
    };
    let mut boots = Vec::new();
    for (kernel, lsm, suite, filters, with_bench, cpus) in [
        (&KERNEL_6_12, LSM_WITH_BPF, &lsm_suite, &[][..], true, "2"),
        (&KERNEL_6_12, LSM_WITHOUT_BPF, &landlock_suite, &[][..], false, "1"),
        (&KERNEL_6_1, LSM_WITH_BPF, &landlock_suite, LEVEL_CHOICE_TESTS, false, "1"),
        (&KERNEL_6_1, LSM_WITHOUT_BPF, &landlock_suite, &[][..], false, "1"),
    ] {
        if only.is_some_and(|name| name != kernel.name) {
            continue;
        }
        let mut script = suite_line(suite, filters);
        if with_bench {
            script = format!("{script}\n{}", bench_lines(&bench, &agent_guard, true));
        }
        let payload = Payload { agent_guard: agent_guard.clone(), binaries: binaries(suite), script };
        let label = format!("vm {} {}", kernel.name, if lsm == LSM_WITH_BPF { "bpf" } else { "nobpf" });
        boots.push(Boot {
            kernel: ensure_kernel(kernel)?,
            initramfs: build_initramfs(&payload, &label.replace(' ', "-"))?,
            label,
            lsm,
            cpus,
            with_bench,
            named_tests: (!filters.is_empty()).then_some(filters.len() as u64),
        });
    }
    Ok(boots)
}

/// Boots each of `boots` in turn; the passed and failed counts of them all.
pub fn boot_all(boots: &[Boot]) -> Result<(u64, u64)> {
    let (mut passed, mut failed) = (0, 0);
    let mut problems = Vec::new();
    for boot in boots {
        // The landlock suite's boots get one vCPU: at that level the daemon's syscall-exit
        // tracepoints live-patch the kernel's syscall exit path at every attach and detach, and
        // a second TCG vCPU running that code meanwhile can take the patch's int3 as an oops.
        let lines = qemu(&boot.label, &boot.kernel, &boot.initramfs, &format!("lsm={}", boot.lsm), boot.cpus)?;
        match verdict(&lines, boot.with_bench) {
            Ok((p, f)) if boot.named_tests.is_some_and(|n| p + f != n + u64::from(boot.with_bench)) => {
                problems.push(format!(
                    "{}: ran {} tests, not the {} it names",
                    boot.label,
                    p + f,
                    boot.named_tests.unwrap_or(0)
                ));
            }
            Ok((p, f)) => {
                eprintln!("{}: {p} passed, {f} failed", boot.label);
                passed += p;
                failed += f;
            }
            Err(why) => problems.push(format!("{}: {why}", boot.label)),
        }
    }
    if problems.is_empty() { Ok((passed, failed)) } else { Err(problems.join("; ")) }
}

/// `cargo xtask vm-test`: build, then the matrix's boots (of `only`'s kernel).
pub fn test(toolchain: &str, only: Option<&str>) -> Result<(u64, u64)> {
    cmd::build(toolchain)?;
    boot_all(&prepare(toolchain, only)?)
}
