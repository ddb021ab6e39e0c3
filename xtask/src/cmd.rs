//! Running commands with visible progress, and the build and test steps.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub type Result<T> = std::result::Result<T, String>;

pub fn step(what: &str) {
    eprintln!("\n==> {what}");
}

/// Runs `cmd`, streaming its output, and fails with a message naming it.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("    $ {shown}");
    let status = cmd.status().map_err(|e| format!("cannot start {shown}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{shown} failed with {status}")) }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// `cargo +TOOLCHAIN ...` in the workspace, with the outer (stable) cargo's variables removed
/// so that the pinned toolchain's own cargo and rustc are used.
pub fn cargo(toolchain: &str) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg(format!("+{toolchain}")).current_dir(workspace_root());
    for var in ["RUSTUP_TOOLCHAIN", "RUSTC", "RUSTDOC", "CARGO", "RUSTC_WRAPPER", "CARGO_TARGET_DIR"] {
        cmd.env_remove(var);
    }
    cmd.env("PATH", crate::setup::path_with_tools());
    cmd
}

pub fn agent_guard_bin() -> PathBuf {
    workspace_root().join("target/debug/agent-guard")
}

/// Writes policies/policy.schema.json and docs/event.schema.json from the types
/// (`agent-guard policy schema`, `agent-guard events schema`).
pub fn codegen(toolchain: &str) -> Result<()> {
    build(toolchain)?;
    step("writing policies/policy.schema.json");
    let out = Command::new(agent_guard_bin()).args(["policy", "schema"]).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err("agent-guard policy schema failed".into());
    }
    std::fs::write(workspace_root().join("policies/policy.schema.json"), out.stdout).map_err(|e| e.to_string())?;
    step("writing docs/event.schema.json");
    let out = Command::new(agent_guard_bin()).args(["events", "schema"]).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err("agent-guard events schema failed".into());
    }
    std::fs::write(workspace_root().join("docs/event.schema.json"), out.stdout).map_err(|e| e.to_string())
}

pub fn build(toolchain: &str) -> Result<()> {
    step("building agent-guard (kernel programs included, via build.rs)");
    run(cargo(toolchain).args([
        "build",
        "--package",
        "agent-guard",
        "--package",
        "agent-guard-e2e",
        "--package",
        "agent-guard-bench",
        "--bins",
    ]))
}

/// The schema checker of the chart test, pinned: its schemas are those of Kubernetes 1.37 and
/// the releases before it.
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";
/// The official MCP Python SDK, pinned: the client the MCP server is tested with.
const MCP_SDK: &str = "mcp==2.3.0";

/// The host's tests (format, lints, unit, end-to-end) and the install stage, while the VM
/// stage boots its kernel matrix beside them, with one closing line.
///
/// The two lanes share the machine's cores: the VM lane is one emulated CPU busy most of the
/// time, and the host's tests wait on processes and events much of theirs, so side by side
/// the whole run takes about as long as the longer lane instead of the sum (within CI's time).
/// The VM lane's binaries are packed before the host lane rebuilds anything.
pub fn test(toolchain: &str) -> Result<()> {
    if !is_root() {
        return Err("the end-to-end tests load eBPF programs: run `cargo xtask test` as root".into());
    }
    let started = std::time::Instant::now();
    let vm_lane = build(toolchain).and_then(|()| crate::vm::prepare(toolchain, None)).map(|boots| {
        std::thread::spawn(move || {
            let result = crate::vm::boot_all(&boots);
            eprintln!("the VM lane ended after {:.0} s", started.elapsed().as_secs_f64());
            result
        })
    });
    let host = vm_lane.as_ref().map_err(Clone::clone).and_then(|_| host_tests(toolchain));
    // The .deb installed on a Debian system booted under systemd (xtask/src/install.rs).
    let install = host.as_ref().map_err(Clone::clone).and_then(|(_, deb)| crate::install::test(deb));
    eprintln!("the host lane ended after {:.0} s", started.elapsed().as_secs_f64());
    let vm = match vm_lane {
        Ok(lane) => lane.join().unwrap_or_else(|_| Err("the VM lane panicked".into())),
        Err(err) => Err(err),
    };
    let (mut passed, mut failed) = host.as_ref().map_or((0, 1), |(counts, _)| *counts);
    for stage in [&vm, &install] {
        if let Ok((p, f)) = stage {
            passed += p;
            failed += f;
        } else if host.is_ok() {
            failed += 1;
        }
    }
    // One closing line for the whole run (cargo's last "test result" is only its last binary's).
    println!("summary: {passed} passed, {failed} failed");
    host?;
    vm?;
    install?;
    if passed == 0 {
        return Err("no test ran".into());
    }
    Ok(())
}

/// The host's tests; their counts, and the .deb `dist` built.
fn host_tests(toolchain: &str) -> Result<((u64, u64), std::path::PathBuf)> {
    step("formatting and lints");
    run(cargo(toolchain).args(["fmt", "--all", "--check"]))?;
    run(cargo(toolchain).args([
        "clippy",
        "--workspace",
        "--exclude",
        "agent-guard-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The kernel programs, linted for their own target (they are no default member).
    run(cargo(toolchain).args([
        "clippy",
        "--package",
        "agent-guard-ebpf",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--release",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The syslog tests send to a real rsyslogd they start themselves, over TLS too (GnuTLS);
    // the TLS tests make their certificates with the openssl command line.
    let syslog: Vec<&str> =
        ["rsyslog", "rsyslog-gnutls", "openssl"].into_iter().filter(|p| !crate::setup::debian_installed(p)).collect();
    if !syslog.is_empty() {
        step(&format!(
            "installing {} (the syslog receiver of the output tests, its TLS, certificates)",
            syslog.join(" ")
        ));
        crate::setup::apt_install(&syslog)?;
    }
    // The DNS tests (tests/tests/dns.rs) serve their zone with a real dnsmasq and ask with dig.
    let dns: Vec<&str> =
        ["dnsmasq-base", "bind9-dnsutils"].into_iter().filter(|p| !crate::setup::debian_installed(p)).collect();
    if !dns.is_empty() {
        step(&format!("installing {} (the DNS server and client of the DNS tests)", dns.join(" ")));
        crate::setup::apt_install(&dns)?;
    }
    // The real-work suite (tests/tests/real_work.rs) runs these toolchains for real.
    let tools = [("git", "git"), ("curl", "curl"), ("npm", "npm"), ("node", "nodejs")];
    let mut missing: Vec<&str> = tools.iter().filter(|(cmd, _)| !on_path(cmd)).map(|(_, pkg)| *pkg).collect();
    let venv = Command::new("/usr/bin/python3").args(["-c", "import venv, ensurepip"]).output();
    if !venv.is_ok_and(|out| out.status.success()) {
        missing.push("python3-venv");
    }
    if !missing.is_empty() {
        step(&format!("installing {} (the toolchains of the real-work tests)", missing.join(" ")));
        crate::setup::apt_install(&missing)?;
    }
    // The container test (tests/tests/container.rs) runs the image `dist` builds under a real
    // containerd; the dist test (tests/tests/dist.rs) looks inside the .deb.
    let containers: Vec<&str> =
        ["containerd", "runc"].into_iter().filter(|p| !crate::setup::debian_installed(p)).collect();
    if !containers.is_empty() {
        step(&format!("installing {} (the container runtime of the container test)", containers.join(" ")));
        crate::setup::apt_install(&containers)?;
    }
    // The chart test (tests/tests/helm.rs) renders the Helm chart with Helm's engine, Go's
    // text/template and sprig (Debian packages no helm), and validates the manifests offline
    // against the Kubernetes schemas with kubernetes-validate (PyPI).
    let chart: Vec<&str> = ["golang-go", "golang-github-masterminds-sprig-dev", "golang-gopkg-yaml.v2-dev"]
        .into_iter()
        .filter(|p| !crate::setup::debian_installed(p))
        .collect();
    if !chart.is_empty() {
        step(&format!("installing {} (the chart test's template engine)", chart.join(" ")));
        crate::setup::apt_install(&chart)?;
    }
    let validator = Command::new("python3").args(["-m", "kubernetes_validate", "--version"]).output();
    if !validator.is_ok_and(|out| out.status.success()) {
        step("installing kubernetes-validate (the chart test's schema check)");
        run(Command::new("python3").args(["-m", "pip", "install", "--quiet", KUBERNETES_VALIDATE]))?;
    }
    // The approvals test (tests/tests/approvals.rs) drives `agent-guard mcp` with the official
    // MCP Python SDK (PyPI).
    let sdk = Command::new("python3")
        .args([
            "-c",
            &format!(
                "import mcp, importlib.metadata as m; assert m.version('mcp') == '{}'",
                MCP_SDK.trim_start_matches("mcp==")
            ),
        ])
        .output();
    if !sdk.is_ok_and(|out| out.status.success()) {
        step("installing the MCP Python SDK (the MCP client of the approvals test)");
        run(Command::new("python3").args(["-m", "pip", "install", "--quiet", MCP_SDK]))?;
    }
    let artifacts = crate::dist::run_dist(toolchain)?;
    step("unit tests (grants, matching, event decoding) and end-to-end tests on this host's kernel");
    let mut cmd = cargo(toolchain);
    cmd.args(["test", "--workspace", "--exclude", "agent-guard-ebpf"])
        .env("AGENT_GUARD_BIN", agent_guard_bin())
        .env("AGENT_GUARD_IMAGE", &artifacts.image)
        .env("AGENT_GUARD_DEB", &artifacts.deb);
    let (passed, failed) = run_counting_tests(&mut cmd)?;
    let (bench_passed, bench_failed) = crate::bench::smoke()?;
    Ok(((passed + bench_passed, failed + bench_failed), artifacts.deb))
}

/// Adds up the counts of a libtest "test result: ok. N passed; M failed; ..." line.
pub fn count_results(line: &str) -> Option<(u64, u64)> {
    let rest = line.split("test result: ").nth(1)?;
    let count = |word: &str| {
        rest.split(';').find_map(|part| part.trim().strip_suffix(word)?.trim().rsplit(' ').next()?.parse::<u64>().ok())
    };
    Some((count(" passed").unwrap_or(0), count(" failed").unwrap_or(0)))
}

/// Runs `cargo test`, passing its output through, and adds up its "test result" lines.
fn run_counting_tests(cmd: &mut Command) -> Result<(u64, u64)> {
    use std::io::{BufRead, BufReader};
    let shown = format!("{cmd:?}");
    eprintln!("    $ {shown}");
    let mut child =
        cmd.stdout(std::process::Stdio::piped()).spawn().map_err(|e| format!("cannot start {shown}: {e}"))?;
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let line = line.map_err(|e| format!("reading test output: {e}"))?;
        println!("{line}");
        if let Some((p, f)) = count_results(&line) {
            passed += p;
            failed += f;
        }
    }
    let status = child.wait().map_err(|e| format!("{shown}: {e}"))?;
    if !status.success() {
        return Err(format!("{shown} failed with {status} ({passed} passed, {failed} failed)"));
    }
    Ok((passed, failed))
}

pub fn is_root() -> bool {
    // std has no geteuid; /proc/self/status says it.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// Whether `command` is an executable file in a directory of PATH.
fn on_path(command: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(command).is_file()))
}
