//! The end-to-end suite that needs BPF LSM. It runs inside the qemu VM booted by
//! `cargo xtask vm-test` with the real daemon, real processes and real grant files; on a
//! kernel without BPF LSM its first assertion fails loudly.

use agent_guard_e2e::{Daemon, grant, listener, stdout};

const PROBE: &str = env!("CARGO_BIN_EXE_ag-probe");

#[test]
fn the_daemon_runs_and_enforces_network_in_the_vm() {
    let daemon = Daemon::start();
    let allowed = listener("127.0.0.1:0");
    let other = listener("127.0.0.1:0");
    let g = grant(daemon.dir.path(), "vm-net", "enforce", &[format!("127.0.0.1/32:{allowed}")], "");
    let ok = daemon.run("vm-bot", "in scope", &g, &[PROBE, "connect", &format!("127.0.0.1:{allowed}")]);
    assert_eq!(stdout(&ok), "ok", "{ok:?}\n{}", daemon.stderr());
    let denied = daemon.run("vm-bot", "out of scope", &g, &[PROBE, "connect", &format!("127.0.0.1:{other}")]);
    assert_eq!(stdout(&denied), "EPERM", "{denied:?}");
    let status = daemon.cli(&["status"]);
    println!("{}", String::from_utf8_lossy(&status.stdout));
}
