//! Load-time constants. The daemon reads tracepoint field offsets from
//! /sys/kernel/tracing/events/<cat>/<name>/format and overrides these globals
//! (`EbpfLoader::override_global`): Rust eBPF has no CO-RE for tracepoint records, and the
//! sched records changed layout across kernels (6.18 moved comm to __data_loc).

/// task/task_newtask: `pid` (the child) and `clone_flags`.
#[unsafe(no_mangle)]
static NEWTASK_PID_OFF: u32 = 8;
#[unsafe(no_mangle)]
static NEWTASK_FLAGS_OFF: u32 = 32;
/// sched/sched_process_exit: `pid` (the exiting thread) and `group_dead`
/// (0 when the kernel's record has no such field: before Linux 6.16).
#[unsafe(no_mangle)]
static EXIT_PID_OFF: u32 = 24;
#[unsafe(no_mangle)]
static EXIT_GDEAD_OFF: u32 = 32;

/// sched/sched_process_exec: `old_pid` (the thread that called execve).
#[unsafe(no_mangle)]
static EXEC_OLDPID_OFF: u32 = 16;

#[inline(always)]
fn load(value: &'static u32) -> u32 {
    // SAFETY: reading a global the loader may have rewritten; volatile keeps the compiler
    // from folding the placeholder value in.
    unsafe { core::ptr::read_volatile(value) }
}

pub fn newtask_pid_off() -> usize {
    load(&NEWTASK_PID_OFF) as usize
}
pub fn newtask_flags_off() -> usize {
    load(&NEWTASK_FLAGS_OFF) as usize
}
pub fn exit_pid_off() -> usize {
    load(&EXIT_PID_OFF) as usize
}
pub fn exit_group_dead_off() -> usize {
    load(&EXIT_GDEAD_OFF) as usize
}
pub fn exec_old_pid_off() -> usize {
    load(&EXEC_OLDPID_OFF) as usize
}
