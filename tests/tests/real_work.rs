//! Ordinary developer jobs under the toolchain profiles shipped in `policies/toolchains/`
//! (`AgentProfile` `developer` and one `GrantTemplate` per toolchain), at this host's level
//! (`landlock`): each must finish, and its task must have no denial and no flag. The jobs probe
//! for files that do not exist (cargo's `rust-toolchain` in every parent, curl's `~/.curlrc`),
//! create temporary files, and open paths relative to their working directory: none of that may
//! be a denial.

use agent_guard_e2e::{Daemon, agent_guard_bin};

/// A daemon with the shipped toolchain policies.
fn daemon() -> Daemon {
    let policies = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/toolchains");
    Daemon::start_with(&["--policy-dir", policies])
}

/// Runs SCRIPT with `sh -e` in WORK as a task of profile `developer` with TEMPLATE (its
/// `workspace` is WORK, plus VARS), with WORK as home and temporary directory; asserts it
/// succeeded and that its task has no denial and no flag.
fn job(daemon: &Daemon, work: &std::path::Path, template: &str, vars: &[String], script: &str) {
    let home = work.join("home");
    let tmp = work.join("tmp");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let intent = format!("real work: {template}");
    let mut command = std::process::Command::new(agent_guard_bin());
    command.arg("--socket").arg(&daemon.socket);
    command.args(["run", "--profile", "developer", "--template", template, "--intent", &intent]);
    command.arg("--var").arg(format!("workspace={}", work.display()));
    for var in vars {
        command.args(["--var", var]);
    }
    let out = command
        .args(["--", "/bin/sh", "-ec", script])
        .current_dir(work)
        .env_remove("LD_LIBRARY_PATH")
        .env("HOME", &home)
        .env("TMPDIR", &tmp)
        .env("RUSTUP_HOME", "/root/.rustup")
        .env("CARGO_HOME", home.join(".cargo"))
        .env(
            "PATH",
            if template == "cargo" { "/root/.cargo/bin:/usr/bin:/bin" } else { "/usr/local/bin:/usr/bin:/bin" },
        )
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .output()
        .unwrap();
    assert!(out.status.success(), "{template}: {out:?}");
    let opened =
        daemon.wait_event("the job's task", |e| e["kind"] == "task.open" && e["task"]["intent"] == intent.as_str());
    assert!(opened["reason"].as_str().unwrap().contains("confined by Landlock ABI"), "{opened}");
    // Let the kernel's records of the job reach the event file.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let bad: Vec<_> = daemon
        .events()
        .into_iter()
        .filter(|e| {
            e["task"]["intent"] == intent.as_str() && matches!(e["decision"].as_str(), Some("denied" | "flagged"))
        })
        .collect();
    assert!(bad.is_empty(), "{template}: {} denials or flags: {bad:#?}", bad.len());
}

#[test]
fn git_clone_commit_and_log_have_no_denials() {
    let daemon = daemon();
    let work = daemon.dir.path().join("git");
    std::fs::create_dir_all(&work).unwrap();
    job(
        &daemon,
        &work,
        "git",
        &[],
        "git init -q origin\n\
         cd origin\n\
         git config user.email agent@example.com\n\
         git config user.name agent\n\
         echo hello > README\n\
         git add README\n\
         git commit -qm first\n\
         cd ..\n\
         git clone -q origin clone\n\
         cd clone\n\
         git config user.email agent@example.com\n\
         git config user.name agent\n\
         echo more >> README\n\
         git commit -qam second\n\
         git log --oneline | grep -q second",
    );
}

#[test]
fn tar_and_grep_have_no_denials() {
    let daemon = daemon();
    let work = daemon.dir.path().join("tar");
    std::fs::create_dir_all(work.join("src/sub")).unwrap();
    std::fs::write(work.join("src/sub/a.txt"), "needle\n").unwrap();
    job(
        &daemon,
        &work,
        "shell-tools",
        &[],
        "tar czf archive.tgz src\nmkdir out\ntar xzf archive.tgz -C out\ngrep -rq needle out/src",
    );
}

#[test]
fn python_venv_and_pip_install_of_a_local_wheel_have_no_denials() {
    let daemon = daemon();
    let work = daemon.dir.path().join("py");
    std::fs::create_dir_all(&work).unwrap();
    // A minimal wheel, built outside the task.
    let wheel = work.join("agentpkg-0.1-py3-none-any.whl");
    let made = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1], 'w')\nz.writestr('agentpkg/__init__.py', 'VALUE = 42\\n')\nz.writestr('agentpkg-0.1.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: agentpkg\\nVersion: 0.1\\n')\nz.writestr('agentpkg-0.1.dist-info/WHEEL', 'Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')\nz.writestr('agentpkg-0.1.dist-info/RECORD', '')\nz.close()"])
        .arg(&wheel)
        .status()
        .unwrap();
    assert!(made.success());
    job(
        &daemon,
        &work,
        "python",
        &[],
        "/usr/bin/python3 -m venv venv\n\
         venv/bin/pip install -q --no-index --disable-pip-version-check agentpkg-0.1-py3-none-any.whl\n\
         venv/bin/python -c 'import agentpkg; assert agentpkg.VALUE == 42'",
    );
}

#[test]
fn cargo_build_offline_has_no_denials() {
    let daemon = daemon();
    let work = daemon.dir.path().join("rs");
    std::fs::create_dir_all(work.join("hello/src")).unwrap();
    std::fs::write(
        work.join("hello/Cargo.toml"),
        "[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(work.join("hello/src/main.rs"), "fn main() { println!(\"hello\"); }\n").unwrap();
    job(
        &daemon,
        &work,
        "cargo",
        &["rustup_home=/root/.rustup".into(), "cargo_bin=/root/.cargo/bin".into()],
        "cd hello\ncargo build --offline -q\n./target/debug/hello | grep -q hello",
    );
}

#[test]
fn npm_install_of_a_local_tarball_has_no_denials() {
    let daemon = daemon();
    let work = daemon.dir.path().join("js");
    std::fs::create_dir_all(work.join("pkg")).unwrap();
    std::fs::create_dir_all(work.join("app")).unwrap();
    std::fs::write(
        work.join("pkg/package.json"),
        "{\"name\": \"agentpkg\", \"version\": \"0.1.0\", \"main\": \"index.js\"}\n",
    )
    .unwrap();
    std::fs::write(work.join("pkg/index.js"), "module.exports = 42;\n").unwrap();
    std::fs::write(work.join("app/package.json"), "{\"name\": \"app\", \"version\": \"0.1.0\"}\n").unwrap();
    let packed = std::process::Command::new("npm")
        .args(["pack", "--silent", "--pack-destination"])
        .arg(&work)
        .current_dir(work.join("pkg"))
        .env("HOME", daemon.dir.path())
        .status()
        .unwrap();
    assert!(packed.success());
    job(
        &daemon,
        &work,
        "node",
        &[],
        "cd app\nexport npm_config_update_notifier=false\nnpm install --offline --no-audit --no-fund --silent ../agentpkg-0.1.0.tgz\nnode -e 'process.exit(require(\"agentpkg\") === 42 ? 0 : 1)'",
    );
}

#[test]
fn curl_to_a_granted_port_has_no_denials() {
    let daemon = daemon();
    let work = daemon.dir.path().join("curl");
    std::fs::create_dir_all(&work).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    job(&daemon, &work, "curl", &[], &format!("curl -sf http://127.0.0.1:{port}/ -o page\ngrep -q ok page"));
}
