//! Kernel time (`CLOCK_BOOTTIME`, what `bpf_ktime_get_boot_ns` returns) to wall-clock time.

use std::time::{Duration, SystemTime};

use nix::time::{ClockId, clock_gettime};

pub fn boot_ns_now() -> u64 {
    let ts = clock_gettime(ClockId::CLOCK_BOOTTIME).expect("CLOCK_BOOTTIME is always available");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

/// Wall-clock time of a `CLOCK_BOOTTIME` instant, converted at the moment of the call.
pub fn wall_of_boot_ns(boot_ns: u64) -> SystemTime {
    let now_boot = boot_ns_now();
    let now = SystemTime::now();
    if boot_ns <= now_boot {
        now - Duration::from_nanos(now_boot - boot_ns)
    } else {
        now + Duration::from_nanos(boot_ns - now_boot)
    }
}

pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_micros(time).to_string()
}
