//! agent-guard kernel programs. One module per hook family; each `#[hook]` function is a thin
//! wrapper around a `try_*` function and states whether it fails open or closed.
#![no_std]
#![no_main]
// Atomic add/sub on map values: core's atomic types are not built for bpfel-unknown-none.
#![feature(core_intrinsics)]
// An empty asm makes LSM verdicts opaque to LLVM (lsm.rs: verdict).
#![feature(asm_experimental_arch)]
#![allow(internal_features, reason = "core_intrinsics is the only route to BPF_ATOMIC here")]
#![allow(
    clippy::inline_always,
    reason = "every helper is inlined on purpose: BPF-to-BPF calls cost verifier budget and cannot take some \
              pointer arguments (a stack pointer into a map value); `#[inline(never)]` marks the exceptions"
)]
#![allow(clippy::needless_pass_by_value, reason = "aya's program macros hand each hook its context by value")]
#![allow(
    clippy::cast_ptr_alignment,
    reason = "kernel struct fields are read at BTF offsets the kernel's own layout aligns for their type"
)]

mod config;
mod dentry_path;
mod dns;
mod emit;
mod escape;
mod exec;
mod file;
mod guard_fs;
mod hold;
mod lsm;
mod lsm_ended;
mod lsm_guard;
mod lsm_socket;
mod lsm_system;
mod lsm_tree;
mod lsm_unix;
mod maps;
mod net;
mod open_cached;
mod path_match;
mod resolve;
mod tag;
mod task;
mod usage;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects any program that could reach this; it is never executed.
    unsafe { core::hint::unreachable_unchecked() }
}

/// Required by the kernel for GPL-only helpers (`bpf_probe_read_user_str`, `bpf_send_signal`).
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
