use which::which;

/// Building this crate needs bpf-linker; say so plainly instead of failing at link time.
fn main() {
    let bpf_linker = which("bpf-linker")
        .expect("bpf-linker not found on PATH: run `cargo xtask setup` (it installs bpf-linker built against LLVM 22)");
    println!("cargo:rerun-if-changed={}", bpf_linker.display());
    // `cfg(bpf_target_arch)`: where a program reads the registers a syscall saved (open_cached.rs).
    aya_build::emit_bpf_target_arch_cfg().expect("the eBPF target architecture");
}
