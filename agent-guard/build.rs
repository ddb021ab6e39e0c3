//! Builds the eBPF programs (agent-guard-ebpf) for the BPF target with the pinned nightly
//! toolchain named in ../toolchain.txt, and puts the object in `OUT_DIR`.

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let toolchain_file = concat!(env!("CARGO_MANIFEST_DIR"), "/../toolchain.txt");
    println!("cargo:rerun-if-changed={toolchain_file}");
    let toolchain = std::fs::read_to_string(toolchain_file).context("reading toolchain.txt")?;
    let toolchain = toolchain.trim();

    let metadata = cargo_metadata::MetadataCommand::new().no_deps().exec().context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "agent-guard-ebpf")
        .ok_or_else(|| anyhow!("agent-guard-ebpf package not found"))?;
    let root_dir = ebpf.manifest_path.parent().context("ebpf manifest has no parent")?.as_str().to_owned();
    aya_build::build_ebpf(
        [Package { name: ebpf.name.as_str(), root_dir: &root_dir, ..Default::default() }],
        Toolchain::Custom(toolchain),
    )
}
