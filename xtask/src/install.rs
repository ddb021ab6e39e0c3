//! The install stage of `cargo xtask test`: the `.deb` installed as an operator installs it, on
//! a Debian system that boots systemd. A bookworm root made by debootstrap (minbase and
//! systemd, cached under target/vm) boots in the VM with Debian's 6.12 kernel and BPF LSM, as
//! an initramfs with systemd as its init. A unit of the root runs the checks of `CHECKS` from
//! inside, at boot:
//!
//! - `dpkg -i` of the package enables and starts agent-guard.service;
//! - the daemon serves under the unit's sandbox: exactly its capability bounding set, no new
//!   privileges, a seccomp filter;
//! - it enforces for an agent (a granted read works, an ungranted one is refused) and writes
//!   the event and the audit store in the unit's directories, through `ProtectSystem=strict`;
//! - killed, systemd restarts it and it serves again (`Restart=always`);
//! - `dpkg -r` stops it and takes it away.
//!
//! Each check prints `CHECK name: ok` or `CHECK name: FAIL`; the last line is the VM marker.

use std::{os::unix::fs::PermissionsExt, path::Path, process::Command};

use crate::cmd::{Result, run, step};
use crate::vm;

/// The capabilities deploy/agent-guard.service bounds the daemon to, as /proc/PID/status
/// shows `CapBnd`, by number: chown 0, dac override 1, dac read search 2, fowner 3, kill 5,
/// net admin 12, sys ptrace 19, sys admin 21, mac admin 33, perfmon 38, bpf 39.
const BOUNDING_SET: u64 = (1 << 0)
    | (1 << 1)
    | (1 << 2)
    | (1 << 3)
    | (1 << 5)
    | (1 << 12)
    | (1 << 19)
    | (1 << 21)
    | (1 << 33)
    | (1 << 38)
    | (1 << 39);

/// Debian's packages for the root, and for making it.
const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";

/// The checks, run by the root's agent-guard-install-check.service at boot.
const CHECKS: &str = r#"#!/bin/bash
set -u
pass=0; fail=0
check() {
    local name=$1; shift
    if out=$("$@" 2>&1); then
        echo "CHECK $name: ok"; pass=$((pass + 1))
    else
        echo "CHECK $name: FAIL"; printf '%s\n' "$out" | head -40 | sed 's/^/    /'; fail=$((fail + 1))
    fi
}
serving() {
    for _ in $(seq 600); do
        agent-guard status >/dev/null 2>&1 && return 0
        # A crash loop: say why at once (its first start's words).
        [ "$(systemctl show -p NRestarts --value agent-guard)" -ge 3 ] && break
        sleep 1
    done
    journalctl -u agent-guard --no-pager | head -30; return 1
}
main_pid() { systemctl show -p MainPID --value agent-guard; }

check package-installs dpkg -i /root/agent-guard.deb
check unit-enabled bash -c '[ "$(systemctl is-enabled agent-guard)" = enabled ]'
check daemon-serves serving
check unit-active bash -c '[ "$(systemctl is-active agent-guard)" = active ]'
agent-guard status
check bounding-set bash -c "grep -qx 'CapBnd:	@BOUNDING_SET@' /proc/$(main_pid)/status || { grep Cap /proc/$(main_pid)/status; false; }"
check no-new-privileges bash -c "grep -qx 'NoNewPrivs:	1' /proc/$(main_pid)/status"
check seccomp-filter bash -c "grep -qx 'Seccomp:	2' /proc/$(main_pid)/status"
check bpf-lsm-level bash -c "agent-guard status | grep -qE '^  file +lsm'"

cat > /root/vm-check.yaml <<'GRANT'
apiVersion: agent-guard.dev/v1
kind: Grant
metadata: {name: vm-check}
spec:
  mode: enforce
  ttl: 5m
  files:
    read: [/etc/passwd, /etc/ld.so.cache, /etc/localtime, /etc/nsswitch.conf, /lib/**, /lib64/**, /usr/lib/**]
  exec: [/usr/bin/cat, /usr/bin/bash, /usr/bin/sleep]
GRANT
run_agent() { agent-guard run --agent vm-check --intent "read the user list" --grant /root/vm-check.yaml -- "$@"; }
check granted-read-works bash -c "$(declare -f run_agent); run_agent /usr/bin/cat /etc/passwd | grep -q '^root:x:0:'"
check ungranted-read-refused bash -c "$(declare -f run_agent); ! run_agent /usr/bin/cat /etc/shadow > /root/shadow.out 2>&1 && grep -q 'Operation not permitted' /root/shadow.out && ! grep -q '^root:' /root/shadow.out"
eventually() { for _ in $(seq 30); do bash -c "$1" && return 0; sleep 1; done; return 1; }
check event-in-logs-directory eventually "grep /etc/shadow /var/log/agent-guard/events.jsonl | grep -q denied"
check audit-store-in-state-directory eventually "agent-guard audit --decision denied | grep -q /etc/shadow"

# An agent that outlives its daemon: it reads after the kill, while no daemon runs or the new
# one is starting, and is still judged by its grant (the pinned programs and maps).
run_agent /usr/bin/bash -c 'sleep 12; /usr/bin/cat /etc/shadow; /usr/bin/cat /etc/passwd' > /root/across.out 2>&1 &
agent=$!
sleep 3
before=$(main_pid)
check killed-daemon-restarts bash -c "systemctl kill -s KILL agent-guard; sleep 3; $(declare -f serving); serving && [ \"\$(systemctl show -p MainPID --value agent-guard)\" != $before ]"
wait $agent
check confined-across-the-restart bash -c "cat /root/across.out; grep -q 'Operation not permitted' /root/across.out && grep -q '^root:x:0:' /root/across.out && ! grep -q '^root:[^x]' /root/across.out"
check enforces-after-restart bash -c "$(declare -f run_agent); run_agent /usr/bin/cat /etc/passwd | grep -q '^root:x:0:' && ! run_agent /usr/bin/cat /etc/shadow > /root/shadow2.out 2>&1 && grep -q 'Operation not permitted' /root/shadow2.out && ! grep -q '^root:' /root/shadow2.out"

check package-removes dpkg -r agent-guard
check unit-stopped bash -c '[ "$(systemctl is-active agent-guard)" != active ] && [ ! -e /usr/bin/agent-guard ]'

echo "@MARKER@: rc=$fail passed=$pass failed=$fail"
systemctl poweroff --force --force
"#;

const CHECK_UNIT: &str = "[Unit]
Description=agent-guard install checks (cargo xtask test)
After=basic.target

[Service]
Type=oneshot
ExecStart=/root/install-checks
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
";

/// The debootstrap root, made once (a marker file says it is whole).
fn ensure_root() -> Result<std::path::PathBuf> {
    let root = vm::vm_dir().join(format!("debian-{SUITE}-systemd"));
    let whole = vm::vm_dir().join(format!("debian-{SUITE}-systemd.done"));
    if whole.exists() {
        return Ok(root);
    }
    if !crate::setup::debian_installed("debootstrap") {
        crate::setup::apt_install(&["debootstrap"])?;
    }
    let _ = std::fs::remove_dir_all(&root);
    step(&format!("making a Debian {SUITE} root with systemd (debootstrap, once)"));
    run(Command::new("debootstrap")
        .args(["--variant=minbase", "--include=systemd,systemd-sysv", SUITE])
        .arg(&root)
        .arg(MIRROR))?;
    std::fs::write(&whole, "").map_err(|e| e.to_string())?;
    Ok(root)
}

/// A fresh copy of the root with the package and the checks in it, as an initramfs.
fn build_image(deb: &Path) -> Result<std::path::PathBuf> {
    let base = ensure_root()?;
    let root = vm::vm_dir().join("install-root");
    let _ = std::fs::remove_dir_all(&root);
    run(Command::new("cp").arg("-a").arg(&base).arg(&root))?;
    let write = |path: &str, text: &str, mode: u32| -> Result<()> {
        let file = root.join(path);
        std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())
    };
    std::fs::copy(deb, root.join("root/agent-guard.deb")).map_err(|e| format!("{}: {e}", deb.display()))?;
    let checks = CHECKS.replace("@BOUNDING_SET@", &format!("{BOUNDING_SET:016x}")).replace("@MARKER@", vm::MARKER);
    write("root/install-checks", &checks, 0o755)?;
    write("etc/systemd/system/agent-guard-install-check.service", CHECK_UNIT, 0o644)?;
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    std::fs::create_dir_all(&wants).map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink(
        "/etc/systemd/system/agent-guard-install-check.service",
        wants.join("agent-guard-install-check.service"),
    )
    .map_err(|e| e.to_string())?;
    write("etc/hostname", "agent-guard-vm\n", 0o644)?;
    // Uncompressed: unpacking is faster for the emulated kernel than inflating.
    let image = vm::vm_dir().join("install-root.cpio");
    vm::pack(&root, &image, false)?;
    Ok(image)
}

/// Runs the install checks; the number passed and failed.
pub fn test(deb: &Path) -> Result<(u64, u64)> {
    vm::ensure_packages()?;
    let kernel = vm::ensure_kernel(&vm::KERNEL_6_12)?;
    let image = build_image(deb)?;
    let append = format!("lsm={} rdinit=/lib/systemd/systemd systemd.show_status=false", vm::LSM_WITH_BPF);
    // One vCPU: with two, TCG can take the kernel's own live patching (an int3 during a
    // text_poke at boot) as an oops, seen before any check ran. Once more if the kernel still
    // died before the first check: that run tested nothing of ours, and says so.
    let mut lines = vm::qemu("install", &kernel, &image, &append, "1")?;
    let started = |lines: &[String]| lines.iter().any(|l| l.contains("CHECK "));
    if !started(&lines) && lines.iter().any(|l| l.contains("Oops") || l.contains("Kernel panic")) {
        eprintln!("the VM's kernel died before the first install check (emulation): booting it once more");
        lines = vm::qemu("install", &kernel, &image, &append, "1")?;
    }
    let passed = lines.iter().filter(|l| l.contains("CHECK ") && l.ends_with(": ok")).count() as u64;
    let failed = lines.iter().filter(|l| l.contains("CHECK ") && l.ends_with(": FAIL")).count() as u64;
    let marker = format!("{}: rc=", vm::MARKER);
    if !lines.iter().any(|l| l.contains(&marker)) {
        return Err(format!("the install checks did not finish ({passed} passed, {failed} failed before)"));
    }
    eprintln!("install checks under systemd: {passed} passed, {failed} failed");
    Ok((passed, failed))
}
