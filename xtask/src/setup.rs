//! Installs what the build needs, idempotently, saying what it does:
//! - the pinned nightly toolchain (toolchain.txt) with rust-src (eBPF needs build-std=core);
//! - Debian's LLVM 22 development files (bpf-linker links against libLLVM 22, the LLVM major
//!   of the pinned nightly);
//! - bpf-linker, built against them.

use std::process::Command;

use crate::cmd::{Result, is_root, run, step, workspace_root};

const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";
/// The set measured to build bpf-linker 0.13 here (../shared/FACTS.md).
const DEBIAN_PACKAGES: &[&str] = &["llvm-22-dev", "libpolly-22-dev", "clang-22"];

/// PATH with LLVM 22's tools (bpf-linker's build needs llvm-config-22 there) and cargo's bin.
pub fn path_with_tools() -> String {
    let home =
        std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap_or_default()));
    format!("{LLVM_BIN}:{home}/bin:{}", std::env::var("PATH").unwrap_or_default())
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Returns the pinned toolchain's name once everything is in place.
pub fn ensure_all() -> Result<String> {
    let toolchain = std::fs::read_to_string(workspace_root().join("toolchain.txt"))
        .map_err(|e| format!("reading toolchain.txt: {e}"))?
        .trim()
        .to_string();
    ensure_toolchain(&toolchain)?;
    ensure_llvm()?;
    ensure_bpf_linker()?;
    Ok(toolchain)
}

/// rust-src: the eBPF crate is built with build-std=core. clippy and rustfmt: `xtask test` lints.
const COMPONENTS: &[&str] = &["rust-src", "clippy", "rustfmt"];

fn ensure_toolchain(toolchain: &str) -> Result<()> {
    let installed = output(Command::new("rustup").args(["component", "list", "--installed", "--toolchain", toolchain]))
        .is_some_and(|list| COMPONENTS.iter().all(|c| list.lines().any(|l| l.starts_with(c))));
    if installed {
        eprintln!("ok: Rust toolchain {toolchain} with {}", COMPONENTS.join(", "));
        return Ok(());
    }
    step(&format!("installing Rust toolchain {toolchain} with {} (pinned in toolchain.txt)", COMPONENTS.join(", ")));
    let mut install = Command::new("rustup");
    install.args(["toolchain", "install", toolchain, "--profile", "minimal"]);
    for component in COMPONENTS {
        install.args(["--component", component]);
    }
    run(&mut install)
        .map_err(|e| format!("{e}\n  missing piece: Rust toolchain {toolchain} (rustup could not install it)"))
}

pub fn debian_installed(package: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|s| s.contains("install ok installed"))
}

fn ensure_llvm() -> Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES.iter().copied().filter(|p| !debian_installed(p)).collect();
    if missing.is_empty() {
        eprintln!("ok: Debian packages {}", DEBIAN_PACKAGES.join(" "));
        return Ok(());
    }
    if !is_root() {
        return Err(format!(
            "missing piece: Debian packages {} (run as root so apt-get can install them)",
            missing.join(" ")
        ));
    }
    step(&format!("installing Debian packages {}", missing.join(" ")));
    apt_install(&missing)
        .map_err(|e| format!("{e}\n  missing piece: {} (LLVM 22 from Debian bookworm-security)", missing.join(" ")))
}

fn ensure_bpf_linker() -> Result<()> {
    let version = output(Command::new("bpf-linker").arg("--version").env("PATH", path_with_tools()));
    if version.as_deref().is_some_and(|v| v.contains(BPF_LINKER_VERSION)) {
        eprintln!("ok: bpf-linker {BPF_LINKER_VERSION}");
        return Ok(());
    }
    step(&format!("building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about a minute)"));
    run(Command::new("cargo")
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION, "--locked", "--force"])
        .args(["--no-default-features", "--features", "llvm-22"])
        .env("PATH", path_with_tools()))
    .map_err(|e| format!("{e}\n  missing piece: bpf-linker (needs llvm-22-dev and {LLVM_BIN} on PATH)"))
}

/// `apt-get update` then `apt-get install` of `packages`, as root, without recommends.
pub fn apt_install(packages: &[&str]) -> Result<()> {
    if !is_root() {
        return Err(format!(
            "missing piece: Debian packages {} (run as root so apt-get can install them)",
            packages.join(" ")
        ));
    }
    run(Command::new("apt-get").arg("update").env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}
