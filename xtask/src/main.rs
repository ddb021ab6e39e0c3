//! Developer tasks cargo cannot do alone. Built by the preinstalled stable toolchain with std
//! only; it installs everything else the build needs (idempotently) and then drives the pinned
//! nightly named in toolchain.txt.
//!
//!   cargo xtask setup   install what is missing: pinned nightly + rust-src, LLVM 22, bpf-linker
//!   cargo xtask build   setup, then build agent-guard (and the test probe)
//!   cargo xtask test    setup, build, then every test (unit + end-to-end as root, then the VM stage)
//!   cargo xtask vm-test setup, build, then the BPF LSM suite in a qemu VM
//!   cargo xtask demo    setup, build, then show an agent's out-of-scope connect refused
//!   cargo xtask bench   setup, then the full benchmark: BENCHMARKS.md and benchmarks.json
//!   cargo xtask codegen regenerate policies/policy.schema.json and docs/event.schema.json
//!   cargo xtask dist    release artifacts in target/dist: static binary, .deb, OCI image
//!   cargo xtask install-test  dist, then the .deb installed on Debian booted under systemd (VM)

mod bench;
mod cmd;
mod demo;
mod dist;
mod install;
mod setup;
mod vm;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup::ensure_all().map(drop),
        Some("build") => setup::ensure_all().and_then(|tc| cmd::build(&tc)),
        Some("test") => setup::ensure_all().and_then(|tc| cmd::test(&tc)),
        Some("codegen") => setup::ensure_all().and_then(|tc| cmd::codegen(&tc)),
        Some("vm-test") => {
            // `--kernel 6.1` (or 6.12): that kernel's two boots only.
            let kernel = args.iter().position(|a| a == "--kernel").and_then(|i| args.get(i + 1)).cloned();
            setup::ensure_all().and_then(|tc| vm::test(&tc, kernel.as_deref())).map(|(passed, failed)| {
                println!("summary: {passed} passed, {failed} failed");
            })
        }
        Some("demo") => setup::ensure_all().and_then(|tc| demo::run(&tc)),
        Some("bench") => setup::ensure_all().and_then(|tc| bench::full(&tc)),
        Some("dist") => setup::ensure_all().and_then(|tc| dist::run_dist(&tc)).map(drop),
        Some("install-test") => setup::ensure_all()
            .and_then(|tc| dist::run_dist(&tc))
            .and_then(|artifacts| install::test(&artifacts.deb))
            .map(|(passed, failed)| println!("summary: {passed} passed, {failed} failed")),
        _ => {
            eprintln!(
                "usage: cargo xtask setup|build|test|vm-test [--kernel 6.12|6.1]|demo|bench|codegen|dist|install-test"
            );
            return ExitCode::from(64);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("\nxtask: error: {err}");
            ExitCode::FAILURE
        }
    }
}
