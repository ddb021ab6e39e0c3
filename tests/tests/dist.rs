//! The .deb `cargo xtask dist` builds, as an operator would get it: what it installs where, a
//! unit systemd accepts, the exposure docs/install.md states, and a binary that runs with no
//! loader. `cargo xtask test` passes the package's path in `AGENT_GUARD_DEB`; without it this
//! test fails, saying so.

use std::{path::PathBuf, process::Command};

fn deb() -> PathBuf {
    let path = std::env::var_os("AGENT_GUARD_DEB").map(PathBuf::from).expect(
        "AGENT_GUARD_DEB is not set: `cargo xtask test` builds the package with `cargo xtask dist` and sets it",
    );
    assert!(path.is_file(), "no package at {}", path.display());
    path
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_deb_installs_a_hardened_service_a_static_binary_and_its_files() {
    let deb = deb();
    let listing = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    for file in [
        "./usr/bin/agent-guard",
        "./usr/lib/systemd/system/agent-guard.service",
        "./etc/agent-guard/agent-guard.yaml",
        "./etc/agent-guard/policies/default.yaml",
        "./usr/share/man/man8/agent-guard.8.gz",
        "./usr/share/bash-completion/completions/agent-guard",
        "./usr/share/zsh/vendor-completions/_agent-guard",
        "./usr/share/fish/vendor_completions.d/agent-guard.fish",
        "./usr/share/doc/agent-guard/docs/install.md",
    ] {
        assert!(listing.lines().any(|l| l.ends_with(file)), "{file} is not in the package:\n{listing}");
    }
    // Installing enables and starts the unit; removing stops it (maintainer scripts).
    let root = tempfile::Builder::new().prefix("agent-guard-deb-").tempdir().unwrap();
    run(Command::new("dpkg-deb").arg("--control").arg(&deb).arg(root.path().join("DEBIAN")));
    let postinst = std::fs::read_to_string(root.path().join("DEBIAN/postinst")).unwrap();
    assert!(postinst.contains("agent-guard.service") && postinst.contains("enable"), "{postinst}");
    let conffiles = std::fs::read_to_string(root.path().join("DEBIAN/conffiles")).unwrap();
    assert!(conffiles.contains("/etc/agent-guard/agent-guard.yaml"), "{conffiles}");

    run(Command::new("dpkg-deb").arg("--extract").arg(&deb).arg(root.path()));
    let binary = root.path().join("usr/bin/agent-guard");
    // Static: no program interpreter, no shared library; and it runs.
    let headers = run(Command::new("readelf").args(["--program-headers", "--dynamic"]).arg(&binary));
    assert!(!headers.contains("INTERP") && !headers.contains("(NEEDED)"), "{headers}");
    assert!(run(Command::new(&binary).arg("--version")).starts_with("agent-guard "));
    // The shipped config is valid as the daemon would read it.
    let checked =
        run(Command::new(&binary).args(["config", "check"]).arg(root.path().join("etc/agent-guard/agent-guard.yaml")));
    assert!(checked.contains(": ok ("), "{checked}");

    let unit = root.path().join("usr/lib/systemd/system/agent-guard.service");
    // The unit as systemd would load it from the installed root: the system's targets and
    // /bin/kill beside it, as on any Debian host.
    let units = root.path().join("usr/lib/systemd/system");
    for target in std::fs::read_dir("/lib/systemd/system").unwrap().flatten() {
        if target.file_name().to_string_lossy().ends_with(".target") {
            let _ = std::fs::copy(target.path(), units.join(target.file_name()));
        }
    }
    std::fs::copy("/bin/kill", root.path().join("usr/bin/kill")).unwrap();
    std::os::unix::fs::symlink("usr/bin", root.path().join("bin")).unwrap();
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", root.path().display()))
        .arg("agent-guard.service")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success() && !said.contains("agent-guard.service:"), "systemd-analyze verify: {said}");
    let security = run(Command::new("systemd-analyze").args(["security", "--offline=true"]).arg(&unit));
    let exposure: f64 = security
        .lines()
        .find_map(|l| l.split("Overall exposure level for agent-guard.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{security}"));
    // docs/install.md states 4.4.
    assert!(exposure <= 4.4, "exposure {exposure} is above the 4.4 docs/install.md states:\n{security}");
}
