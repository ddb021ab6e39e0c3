//! The `landlock` level (this host: Landlock, no BPF LSM). `agent-guard run` confines the agent
//! with a ruleset compiled from its grant; the kernel refuses what is outside it with EACCES on
//! the file it resolved, the agent lives on, and the eBPF programs report the refusal with the
//! task, its intent and the rule. Each attack asserts that its effect did not happen.

use std::os::unix::process::ExitStatusExt;

use agent_guard_e2e::{Daemon, grant, stdout};

const PROBE: &str = env!("CARGO_BIN_EXE_ag-probe");

/// A path as a YAML flow item.
fn q(path: impl std::fmt::Display) -> String {
    format!("\"{path}\"")
}

/// The Landlock ABI a `task.open` event's reason names ("... Landlock ABI 2)").
fn abi_of(opened: &serde_json::Value) -> u32 {
    let reason = opened["reason"].as_str().unwrap_or_default();
    reason
        .split("Landlock ABI ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .unwrap_or_else(|| panic!("no Landlock ABI in {opened}"))
}

/// An `ask` rule on `path`, as a YAML flow item.
fn ask(path: impl std::fmt::Display) -> String {
    format!("{{path: \"{path}\", action: ask}}")
}

/// An enforced grant named `name`, written in `dir`: the system and the probe's directory
/// readable, the probe executable, and `read`, `write` and `exec` (YAML flow items) besides.
fn confined_grant(
    dir: &std::path::Path,
    name: &str,
    read: &[String],
    write: &[String],
    exec: &[String],
) -> std::path::PathBuf {
    let bins = std::path::Path::new(PROBE).parent().unwrap().display().to_string();
    let system = ["/usr/**", "/lib/**", "/lib64/**", "/etc/**", "/proc/**", "/sys/**", "/dev/**"];
    let reads: Vec<String> =
        system.iter().map(q).chain([q(format!("{bins}/**"))]).chain(read.iter().cloned()).collect();
    let execs: Vec<String> = [q(format!("{bins}/*"))].into_iter().chain(exec.iter().cloned()).collect();
    let extra = format!(
        "  files: {{read: [{}], write: [{}]}}\n  exec: [{}]\n",
        reads.join(", "),
        write.join(", "),
        execs.join(", ")
    );
    grant(dir, name, "enforce", &[], &extra)
}

/// The grant of these tests: the system read-only, WORK readable, WORK/out writable, and only
/// the probe's directory executable.
fn work_grant(daemon: &Daemon, work: &std::path::Path) -> std::path::PathBuf {
    let work = work.display();
    confined_grant(
        daemon.dir.path(),
        "confined",
        &[q(format!("{work}/**"))],
        &[q("/dev/**"), q(format!("{work}/out/**"))],
        &[],
    )
}

#[test]
fn status_and_the_task_name_the_landlock_level() {
    let daemon = Daemon::start();
    let status: serde_json::Value = serde_json::from_slice(&daemon.cli(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["enforcement"]["file"], "landlock");
    assert_eq!(status["enforcement"]["exec"], "landlock");
    let work = daemon.dir.path().join("work");
    std::fs::create_dir_all(work.join("out")).unwrap();
    let g = work_grant(&daemon, &work);
    let out = daemon.run("lister", "list tasks", &g, &[PROBE, "exit", "0"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Landlock ABI"), "{out:?}");
    let opened = daemon.wait_event("task.open", |e| e["kind"] == "task.open");
    assert!(opened["reason"].as_str().unwrap().contains("confined by Landlock ABI"), "{opened}");
}

#[test]
fn out_of_scope_access_is_refused_on_the_resolved_file_and_the_agent_lives_on() {
    let daemon = Daemon::start();
    let dir = daemon.dir.path();
    let work = dir.join("work");
    std::fs::create_dir_all(work.join("out")).unwrap();
    std::fs::write(work.join("notes.txt"), "notes").unwrap();
    std::fs::write(work.join("out/draft.txt"), "draft").unwrap();
    let secret = dir.join("secret.txt");
    std::fs::write(&secret, "TOPSECRET").unwrap();
    std::os::unix::fs::symlink(&secret, work.join("link")).unwrap();
    let g = work_grant(&daemon, &work);
    let s = |p: &std::path::Path| p.display().to_string();
    let run = |intent: &str, args: &[&str]| {
        let mut cmd = vec![PROBE];
        cmd.extend_from_slice(args);
        let out = daemon.run("confined", intent, &g, &cmd);
        assert!(out.status.signal().is_none(), "{intent}: the agent was killed: {out:?}");
        assert!(!stdout(&out).contains("TOPSECRET"), "{intent}: {out:?}");
        stdout(&out)
    };

    // In scope: works.
    assert_eq!(run("read notes", &["open", &s(&work.join("notes.txt")), "r"]), "ok");
    assert_eq!(run("write a draft", &["open", &s(&work.join("out/draft.txt")), "w"]), "ok");
    // Reads outside the grant, however spelled: EACCES from Landlock, nothing killed.
    assert_eq!(run("read the secret", &["open", &s(&secret), "r"]), "error 13");
    assert_eq!(run("read through a symlink", &["open", &s(&work.join("link")), "r"]), "error 13");
    assert_eq!(run("read through dotdot", &["open", &format!("{}/../secret.txt", work.display()), "r"]), "error 13");
    assert_eq!(run("read through /proc/self/fd", &["opath-reopen", &s(&secret)]), "error 13");
    // Write access the grant does not give.
    assert_eq!(run("overwrite notes", &["open", &s(&work.join("notes.txt")), "w"]), "error 13");
    // Writes by rename and link: the secret stays where it is, and nothing leaves the grant.
    let stolen = work.join("out/stolen");
    assert_ne!(run("rename the secret in", &["rename", &s(&secret), &s(&stolen)]), "ok");
    assert_ne!(run("link the secret in", &["link", &s(&secret), &s(&stolen)]), "ok");
    assert!(!stolen.exists() && secret.exists());
    let moved = dir.join("moved.txt");
    assert_ne!(run("move a draft out", &["rename", &s(&work.join("out/draft.txt")), &s(&moved)]), "ok");
    assert!(!moved.exists() && work.join("out/draft.txt").exists());
    // A file that does not exist is ENOENT, never a denial.
    assert_eq!(run("probe a missing file", &["open", &s(&dir.join("missing.txt")), "r"]), "error 2");
    // Execs: a program the grant does not name, and the dynamic loader running it.
    assert_eq!(run("run true", &["exec", "/usr/bin/true"]), "error 13");
    // The loader must stay executable (the kernel execs it for every dynamic program), so a
    // direct exec of it is answered by the eBPF side: the loader is killed before it runs.
    let out = daemon.run(
        "confined",
        "run true through ld.so",
        &g,
        &[PROBE, "exec", "/lib64/ld-linux-x86-64.so.2", "/usr/bin/true"],
    );
    assert_ne!(stdout(&out), "ok", "{out:?}");

    let denied =
        |intent: &str| daemon.wait_event(intent, |e| e["task"]["intent"] == intent && e["decision"] == "denied");
    let secret_read = denied("read the secret");
    assert_eq!(secret_read["kind"], "file.open");
    assert_eq!(secret_read["enforcement"], "landlock");
    assert_eq!(secret_read["object"]["path"], s(&secret));
    assert_eq!(secret_read["rule"], "default-deny");
    assert!(secret_read["reason"].as_str().unwrap().contains("Landlock"), "{secret_read}");
    let via_link = denied("read through a symlink");
    assert_eq!(via_link["enforcement"], "landlock");
    assert!(via_link["reason"].as_str().unwrap().contains("leads out of it"), "{via_link}");
    assert_eq!(denied("read through dotdot")["object"]["path"], s(&secret));
    assert_eq!(denied("overwrite notes")["object"]["access"], serde_json::json!(["write"]));
    let exec = denied("run true");
    assert_eq!(exec["kind"], "process.exec");
    assert_eq!(exec["enforcement"], "landlock");
    assert_eq!(exec["object"]["path"], "/usr/bin/true");
    let loader = daemon
        .wait_event("ld.so exec", |e| e["task"]["intent"] == "run true through ld.so" && e["kind"] == "process.exec");
    assert_eq!(
        (loader["decision"].as_str(), loader["enforcement"].as_str()),
        (Some("denied"), Some("kill")),
        "{loader}"
    );
    // The missing file is not reported at all.
    let missing = daemon
        .events()
        .into_iter()
        .filter(|e| e["task"]["intent"] == "probe a missing file" && e["kind"] == "file.open")
        .count();
    assert_eq!(missing, 0, "an open of a missing file is not a denial");
}

/// `agent-guard preflight --json`.
fn preflight() -> serde_json::Value {
    let out =
        std::process::Command::new(agent_guard_e2e::agent_guard_bin()).args(["preflight", "--json"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The check of `preflight` named `what`.
fn check<'a>(preflight: &'a serde_json::Value, what: &str) -> &'a serde_json::Value {
    preflight["checks"].as_array().unwrap().iter().find(|c| c["what"] == what).unwrap()
}

#[test]
fn preflight_predicts_the_levels_the_daemon_gets() {
    let preflight = preflight();
    let daemon = Daemon::start();
    let status: serde_json::Value = serde_json::from_slice(&daemon.cli(&["status", "--json"]).stdout).unwrap();
    for capability in ["network", "file", "exec"] {
        assert_eq!(preflight[capability], status["enforcement"][capability], "{capability}: {preflight}");
    }
    assert_eq!(check(&preflight, "Landlock")["ok"], true, "{preflight}");
}

#[test]
fn a_confined_agent_cannot_signal_trace_or_reprogram_the_guard() {
    let daemon = Daemon::start();
    let work = daemon.dir.path().join("work");
    std::fs::create_dir_all(work.join("out")).unwrap();
    let g = work_grant(&daemon, &work);
    let pid = daemon.pid().to_string();
    // Refused by Landlock's signal scoping from ABI 6, by the seccomp filter before.
    let attempts = [
        ("trace the guard", vec!["ptrace", pid.as_str()]),
        ("load a bpf map", vec!["bpf"]),
        ("stop the guard", vec!["kill", pid.as_str(), "19"]),
        ("kill the guard", vec!["kill", pid.as_str(), "9"]),
        ("kill everything", vec!["kill", "-1", "9"]),
        ("signal through a pidfd", vec!["pidfd-kill", pid.as_str(), "19"]),
    ];
    let preflight = preflight();
    assert_eq!(check(&preflight, "signals to the guard")["ok"], true, "{preflight}");
    for (intent, args) in attempts {
        let mut cmd = vec![PROBE];
        cmd.extend(args);
        let out = daemon.run("confined", intent, &g, &cmd);
        assert_eq!(stdout(&out), "EPERM", "{intent}: {out:?}");
    }
    // The guard is alive and answering.
    let status = daemon.cli(&["status", "--json"]);
    assert!(status.status.success(), "{status:?}");
    // A program copied into a memfd escapes Landlock's path rules: it is killed once it runs.
    let out = daemon.run("confined", "exec a memfd", &g, &[PROBE, "memfd-exec", "/usr/bin/true"]);
    assert_ne!(stdout(&out), "ok", "{out:?}");
    let exec =
        daemon.wait_event("memfd exec", |e| e["task"]["intent"] == "exec a memfd" && e["kind"] == "process.exec");
    assert_eq!(exec["decision"], "denied");
    assert_eq!(exec["enforcement"], "kill");
}

/// Whether the agent was killed (SIGKILL) without printing a result.
fn killed(out: &std::process::Output) -> bool {
    out.status.signal() == Some(9) && stdout(out).is_empty()
}

#[test]
fn what_landlock_lets_through_is_judged_on_the_file_it_reached() {
    let daemon = Daemon::start();
    let dir = daemon.dir.path();
    let work = dir.join("work");
    std::fs::create_dir_all(work.join("private/a/b/c/d/e/f/g/h/i/j/k/l/m/n")).unwrap();
    std::fs::create_dir_all(dir.join("shelf/sub")).unwrap();
    std::fs::write(work.join("private/key"), "KEY").unwrap();
    std::fs::write(work.join("private/a/b/c/d/e/f/g/h/i/j/k/l/m/n/key"), "KEY").unwrap();
    std::fs::write(dir.join("shelf/top.txt"), "top").unwrap();
    std::fs::write(dir.join("shelf/sub/deep.txt"), "deep").unwrap();
    let (w, d) = (work.display(), dir.display());
    // Landlock can express neither the `deny` inside `work/**` nor `shelf/*` without its
    // subdirectories: both are narrowed by the eBPF side, on the file the open reached.
    let read = [q(format!("{w}/**")), format!("{{path: \"{w}/private/**\", action: deny}}"), q(format!("{d}/shelf/*"))];
    let g = confined_grant(daemon.dir.path(), "narrowed", &read, &[q("/dev/**")], &[]);
    let key = work.join("private/key").display().to_string();
    let run_in = |cwd: &std::path::Path, intent: &str, args: &[&str]| {
        let mut cmd = vec![PROBE];
        cmd.extend_from_slice(args);
        daemon.run_command("narrowed", intent, &g, &[], &cmd).current_dir(cwd).output().unwrap()
    };
    assert_eq!(stdout(&run_in(dir, "a shelf file", &["open", &format!("{d}/shelf/top.txt"), "r"])), "ok");
    for (intent, cwd, path) in [
        ("relative", work.clone(), "private/key".to_string()),
        ("double slash", dir.to_path_buf(), format!("{w}//private/key")),
        ("proc root", dir.to_path_buf(), format!("/proc/self/root{key}")),
    ] {
        let out = run_in(&cwd, intent, &["open", &path, "r"]);
        assert!(killed(&out), "{intent}: {out:?}");
        let event = daemon.wait_event(intent, |e| e["task"]["intent"] == intent && e["kind"] == "file.open");
        assert_eq!(
            (event["decision"].as_str(), event["enforcement"].as_str()),
            (Some("denied"), Some("kill")),
            "{event}"
        );
        assert_eq!(event["object"]["path"], key.as_str(), "the file reached, not the spelling: {event}");
        // One strike: the task ends with the kill.
        let stop = daemon.wait_event("task.stop", |e| e["task"]["intent"] == intent && e["kind"] == "task.stop");
        assert!(stop["reason"].as_str().unwrap().contains("one strike"), "{stop}");
    }
    // Deeper than the kernel's walk (16 components), spelled absolutely but unnormalised: not
    // judged in the kernel, so only reported (the daemon resolves it), a stated gap of this level.
    let deep = work.join("private/a/b/c/d/e/f/g/h/i/j/k/l/m/n/key").display().to_string();
    let spelled = format!("{w}/./private/a/b/c/d/e/f/g/h/i/j/k/l/m/n/key");
    let out = run_in(dir, "deep", &["open", &spelled, "r"]);
    assert_eq!(stdout(&out), "ok", "{out:?}");
    let event = daemon.wait_event("deep", |e| e["task"]["intent"] == "deep" && e["kind"] == "file.open");
    assert_eq!(
        (event["decision"].as_str(), event["object"]["path"].as_str()),
        (Some("flagged"), Some(deep.as_str())),
        "{event}"
    );
    // openat2 whose `struct open_how` the tracepoint cannot read: pended and judged at exit all
    // the same.
    // Before Landlock ABI 3 (6.1) the seccomp filter refuses openat2 itself (ENOSYS).
    let out = run_in(dir, "unfaulted how", &["openat2-unfaulted-how", &key]);
    // `run` names the ABI: "... Landlock ABI 2)".
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let abi = stderr
        .split("Landlock ABI ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u32>().ok());
    assert!(abi.is_some(), "{stderr}");
    if abi.is_some_and(|abi| abi < 3) {
        assert_eq!(stdout(&out), "error 38", "{out:?}");
    } else {
        assert!(killed(&out), "{out:?}");
        let event =
            daemon.wait_event("unfaulted how", |e| e["task"]["intent"] == "unfaulted how" && e["kind"] == "file.open");
        assert_eq!(event["object"]["path"], key.as_str(), "{event}");
    }
    // A path the probe's tracepoint cannot read (its page not faulted in yet).
    let out = run_in(dir, "unfaulted", &["open-unfaulted", &key]);
    assert!(killed(&out), "{out:?}");
    let event = daemon.wait_event("unfaulted", |e| e["task"]["intent"] == "unfaulted" && e["kind"] == "file.open");
    assert_eq!(event["object"]["path"], key.as_str(), "{event}");
    let out = run_in(dir, "deeper than DIR/*", &["open", &format!("{d}/shelf/sub/deep.txt"), "r"]);
    assert!(killed(&out), "{out:?}");
    // The loader run through a relative name: judged on the program that ran.
    let out =
        run_in(std::path::Path::new("/lib64"), "relative loader", &["exec", "./ld-linux-x86-64.so.2", "/usr/bin/true"]);
    assert_ne!(stdout(&out), "ok", "{out:?}");
    let exec =
        daemon.wait_event("loader exec", |e| e["task"]["intent"] == "relative loader" && e["kind"] == "process.exec");
    assert_eq!(exec["enforcement"], "kill", "{exec}");
    assert!(exec["object"]["path"].as_str().unwrap().contains("ld-linux"), "{exec}");
}

#[test]
fn the_routes_around_landlock_are_closed() {
    let daemon = Daemon::start();
    let dir = daemon.dir.path();
    let work = dir.join("work");
    std::fs::create_dir_all(work.join("out")).unwrap();
    let secret = dir.join("secret.txt");
    std::fs::write(&secret, "TOPSECRET").unwrap();
    std::fs::write(work.join("notes"), "notes").unwrap();
    let (notes, hard_link) = (work.join("notes").display().to_string(), work.join("out/hl").display().to_string());
    let g = work_grant(&daemon, &work);
    // The guard's own pinned maps: a root agent has file permission on them.
    let pin = format!("/sys/fs/bpf/{}/maps/PROC_TAGS", daemon.cgroup);
    assert!(std::path::Path::new(&pin).exists(), "{pin}");
    for (intent, args) in [
        ("open the guard's map", vec!["bpf-obj-get", pin.as_str()]),
        ("open through io_uring", vec!["uring-open", secret.to_str().unwrap()]),
        ("share the descriptor table", vec!["clone-files"]),
        ("hard link a file", vec!["link", notes.as_str(), hard_link.as_str()]),
        // Typing into the terminal shared with the operator (the byte never arrives).
        ("push terminal input", vec!["tiocsti"]),
    ] {
        let mut cmd = vec![PROBE];
        cmd.extend(args);
        let out = daemon.run("confined", intent, &g, &cmd);
        assert_eq!(stdout(&out), "EPERM", "{intent}: {out:?}");
    }
    assert!(!work.join("out/hl").exists());
    // Truncating a file the grant lets it read only: by path, or by an open for reading with
    // O_TRUNC (Landlock handles truncation from ABI 3; before, the seccomp filter refuses both).
    for (intent, verb) in [("truncate by path", "truncate"), ("truncate on open", "open-rdonly-trunc")] {
        let out = daemon.run("confined", intent, &g, &[PROBE, verb, &notes]);
        assert_ne!(stdout(&out), "ok", "{intent}: {out:?}");
        assert_eq!(std::fs::read_to_string(work.join("notes")).unwrap(), "notes", "{intent}");
    }
    // An x32 system call, which seccompiler's filters and the syscall tracepoints do not see:
    // the process is killed before it runs.
    let out = daemon.run("confined", "x32 call", &g, &[PROBE, "x32-getpid"]);
    assert_eq!(out.status.signal(), Some(libc::SIGSYS), "{out:?}");
}

#[test]
fn revoking_a_confined_task_kills_its_processes() {
    let daemon = Daemon::start();
    let work = daemon.dir.path().join("work");
    std::fs::create_dir_all(work.join("out")).unwrap();
    let g = work_grant(&daemon, &work);
    let mut agent = daemon.run_command("confined", "wait", &g, &[], &[PROBE, "sleep", "60"]).spawn().unwrap();
    let opened = daemon.wait_event("task.open", |e| e["kind"] == "task.open" && e["task"]["intent"] == "wait");
    let id = opened["task"]["id"].to_string();
    let out = daemon.cli(&["grant", "revoke", &id]);
    assert!(out.status.success(), "{out:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if let Some(status) = agent.try_wait().unwrap() {
            assert_eq!(status.signal(), Some(9), "{status:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the agent still runs after the revoke");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let revoke = daemon.wait_event("grant.revoke", |e| e["kind"] == "grant.revoke");
    assert!(revoke["reason"].as_str().unwrap().contains("killed"), "{revoke}");
}

#[test]
fn a_rule_path_that_leads_elsewhere_through_a_symlink_is_left_out() {
    let daemon = Daemon::start();
    let dir = daemon.dir.path();
    std::fs::create_dir_all(dir.join("vault")).unwrap();
    std::fs::write(dir.join("vault/s.txt"), "TOPSECRET").unwrap();
    std::fs::create_dir_all(dir.join("work")).unwrap();
    // Planted (by an earlier task, say) where the grant's rule points.
    std::os::unix::fs::symlink(dir.join("vault"), dir.join("work/inputs")).unwrap();
    let inputs = dir.join("work/inputs").display().to_string();
    let g = confined_grant(daemon.dir.path(), "planted", &[q(format!("{inputs}/**"))], &[], &[]);
    let out = daemon.run("planted", "read inputs", &g, &[PROBE, "open", &format!("{inputs}/s.txt"), "r"]);
    assert_eq!(stdout(&out), "error 13", "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("left out"), "{out:?}");
}

#[test]
fn a_sub_task_is_confined_by_its_own_ruleset_inside_its_parents() {
    let daemon = Daemon::start();
    let dir = daemon.dir.path();
    let work = dir.join("work");
    std::fs::create_dir_all(work.join("out")).unwrap();
    std::fs::create_dir_all(dir.join("vault")).unwrap();
    std::fs::write(dir.join("vault/s.txt"), "TOPSECRET").unwrap();
    let (w, d) = (work.display(), dir.display());
    // The parent may read the vault (flagged); the sub-task's own grant does not name it: the
    // parent's flag rule reaches it only as a restriction, never as access.
    let vault = format!("{{path: \"{d}/vault/**\", action: flag}}");
    let parent = confined_grant(dir, "parent", &[q(format!("{w}/**")), vault], &[q("/dev/**")], &[]);
    // Written where the confined parent can read it.
    let child = confined_grant(&work, "child", &[q(format!("{w}/**"))], &[q("/dev/**")], &[]);
    let secret = format!("{d}/vault/s.txt");
    let out = daemon.run("lead", "read the vault", &parent, &[PROBE, "open", &secret, "r"]);
    assert_eq!(stdout(&out), "ok", "the parent may: {out:?}");
    let bin = agent_guard_e2e::agent_guard_bin().display().to_string();
    let socket = daemon.socket.display().to_string();
    let child_path = child.display().to_string();
    let inner = [
        bin.as_str(),
        "--socket",
        &socket,
        "run",
        "--agent",
        "sub",
        "--intent",
        "delegated read",
        "--grant",
        &child_path,
        "--",
        PROBE,
        "open",
        &secret,
        "r",
    ];
    let out = daemon.run("lead", "delegates", &parent, &inner);
    assert_eq!(stdout(&out), "error 13", "{out:?}");
    // Inside a confined task a sub-task cannot opt out of Landlock.
    let mut unconfined: Vec<&str> = inner.to_vec();
    unconfined.insert(4, "--without-landlock");
    let out = daemon.run("lead", "opts out", &parent, &unconfined);
    assert!(stdout(&out).is_empty() && String::from_utf8_lossy(&out.stderr).contains("must be too"), "{out:?}");
    let opened =
        daemon.wait_event("sub-task open", |e| e["kind"] == "task.open" && e["task"]["intent"] == "delegated read");
    assert!(opened["reason"].as_str().unwrap().contains("confined by Landlock ABI"), "{opened}");
    let denied =
        daemon.wait_event("sub-task denial", |e| e["task"]["intent"] == "delegated read" && e["decision"] == "denied");
    assert_eq!(denied["enforcement"], "landlock", "{denied}");
}

#[test]
fn an_exact_directory_is_listed_and_nothing_beneath_it_is_reached() {
    let daemon = Daemon::start();
    let dir = daemon.dir.path();
    let shelf = dir.join("shelf");
    std::fs::create_dir_all(shelf.join("sub")).unwrap();
    std::fs::write(shelf.join("sub/secret.txt"), "TOPSECRET").unwrap();
    // `shelf` names the directory alone: Landlock would give a read right on it to the whole
    // tree beneath.
    let g = confined_grant(dir, "exact-dir", &[q(shelf.display())], &[q("/dev/**")], &[]);
    let probe = |intent: &str, path: &std::path::Path| {
        daemon.run("shelver", intent, &g, &[PROBE, "open", &path.display().to_string(), "r"])
    };
    assert_eq!(stdout(&probe("the listing", &shelf)), "ok");
    let secret = shelf.join("sub/secret.txt");
    let out = probe("a file beneath", &secret);
    assert_eq!(stdout(&out), "error 13", "refused by Landlock: {out:?}");
    let refused =
        daemon.wait_event("the refusal", |e| e["task"]["intent"] == "a file beneath" && e["kind"] == "file.open");
    assert_eq!(
        (refused["decision"].as_str(), refused["enforcement"].as_str()),
        (Some("denied"), Some("landlock")),
        "{refused}"
    );
    // A subdirectory Landlock still lets be listed: judged on the grant at exit, killed.
    let out = probe("a subdirectory", &shelf.join("sub"));
    assert!(killed(&out), "{out:?}");
    let event = daemon.wait_event("the kill", |e| e["task"]["intent"] == "a subdirectory" && e["kind"] == "file.open");
    assert_eq!((event["decision"].as_str(), event["enforcement"].as_str()), (Some("denied"), Some("kill")), "{event}");
    assert_eq!(event["object"]["path"], shelf.join("sub").display().to_string().as_str(), "{event}");
}

#[test]
fn a_sub_task_that_claims_landlock_and_applies_nothing_is_killed_on_what_its_grant_lacks() {
    let daemon = Daemon::start();
    let dir = daemon.dir.path();
    let work = dir.join("work");
    std::fs::create_dir_all(work.join("deep")).unwrap();
    std::fs::write(work.join("notes.txt"), "notes").unwrap();
    std::fs::write(work.join("deep/secret.txt"), "TOPSECRET").unwrap();
    let w = work.display();
    let parent = confined_grant(dir, "parent", &[q(format!("{w}/**"))], &[q("/dev/**")], &[]);
    // The sub-task's own grant, exact and all allow, opened straight through the API by the
    // agent's process, which claims a Landlock ABI and confines itself with nothing: it is
    // held only by its parent's ruleset, which reaches the whole of `work`.
    let child = confined_grant(&work, "child", &[q(format!("{w}/notes.txt"))], &[q("/dev/**")], &[]);
    let request = serde_json::json!({
        "version": 1, "op": "open_task", "agent": "lead", "intent": "claims landlock",
        "grant_yaml": std::fs::read_to_string(&child).unwrap(), "landlock_abi": 1,
    })
    .to_string();
    let socket = daemon.socket.display().to_string();
    let secret = work.join("deep/secret.txt").display().to_string();
    let out = daemon.run("lead", "delegates", &parent, &[PROBE, "api-then", &socket, &request, "open", &secret, "r"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("task_opened"), "{out:?}");
    assert!(killed(&out), "the open reached a file the sub-task's grant lacks: {out:?}");
    let event = daemon.wait_event("the kill", |e| e["task"]["intent"] == "claims landlock" && e["kind"] == "file.open");
    assert_eq!((event["decision"].as_str(), event["enforcement"].as_str()), (Some("denied"), Some("kill")), "{event}");
    assert_eq!(event["object"]["path"], secret.as_str(), "{event}");
}

/// `work_grant` with an `ask` rule on reads of `asked` and on execs of /usr/bin/true.
fn ask_grant(daemon: &Daemon, work: &std::path::Path, asked: &std::path::Path) -> std::path::PathBuf {
    let work = work.display();
    let read = [q(format!("{work}/**")), ask(asked.display())];
    let write = [q("/dev/**"), q(format!("{work}/out/**"))];
    confined_grant(daemon.dir.path(), "asking", &read, &write, &[ask("/usr/bin/true")])
}

/// Every approval the daemon lists (`approvals --json`).
fn approvals(daemon: &Daemon) -> Vec<serde_json::Value> {
    let out = daemon.cli(&["approvals", "--json"]);
    match serde_json::from_slice(&out.stdout).unwrap() {
        serde_json::Value::Array(list) => list,
        other => panic!("approvals --json is not a list: {other}"),
    }
}

/// Starts `cmd` under `g` in the background; returns it and the approval it waits for.
fn held(daemon: &Daemon, agent: &str, g: &std::path::Path, cmd: &[&str]) -> (std::process::Child, String) {
    let child =
        daemon.run_command(agent, "needs a human", g, &[], cmd).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let request =
        daemon.wait_event("approval request", |e| e["kind"] == "approval.request" && e["task"]["agent"] == agent);
    assert_eq!(request["decision"], "held", "{request}");
    assert_eq!(request["enforcement"], "landlock", "{request}");
    (child, request["approval"].to_string())
}

#[test]
fn an_ask_rule_holds_the_open_or_exec_in_the_daemon_until_a_human_decides() {
    let daemon = Daemon::start();
    let dir = daemon.dir.path();
    let work = dir.join("work");
    std::fs::create_dir_all(work.join("out")).unwrap();
    let secret = dir.join("secret.txt");
    std::fs::write(&secret, "TOPSECRET").unwrap();
    let g = ask_grant(&daemon, &work, &secret);
    let secret_arg = secret.display().to_string();

    // Approved: the very same open goes on and succeeds.
    let (child, id) = held(&daemon, "asker-yes", &g, &[PROBE, "open", &secret_arg, "r"]);
    assert!(daemon.cli(&["approve", &id]).status.success());
    assert_eq!(stdout(&child.wait_with_output().unwrap()), "ok");
    let granted = daemon
        .wait_event("granted", |e| e["kind"] == "approval.granted" && e["approval"] == id.parse::<u64>().unwrap());
    assert_eq!(granted["enforcement"], "landlock", "{granted}");

    // Denied: EPERM, and the file was not read.
    let (child, id) = held(&daemon, "asker-no", &g, &[PROBE, "open", &secret_arg, "r"]);
    assert!(daemon.cli(&["deny", &id]).status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "EPERM", "{out:?}");

    // An exec an ask rule names waits too, and runs once approved.
    let (child, id) = held(&daemon, "asker-exec", &g, &[PROBE, "exec", "/usr/bin/true"]);
    assert!(daemon.cli(&["approve", &id]).status.success());
    assert_eq!(stdout(&child.wait_with_output().unwrap()), "ok");

    // An allowed spelling that leads to a held program (a symlink to /proc/self/fd/N): the
    // supervisor resolves /proc/self as the agent's, not its own, and holds the exec; denied, it
    // fails with EPERM and the program never runs.
    let g2 = {
        let w = work.display();
        let write = [q("/dev/**"), q(format!("{w}/out/**"))];
        let exec = [q(format!("{w}/out/**")), ask("/usr/bin/true")];
        confined_grant(daemon.dir.path(), "fd-link", &[q(format!("{w}/**"))], &write, &exec)
    };
    let link = work.join("out/x").display().to_string();
    let (child, id) = held(&daemon, "fd-linker", &g2, &[PROBE, "exec-fd-link", &link, PROBE, "/usr/bin/true"]);
    let request = approvals(&daemon).into_iter().find(|a| a["id"] == id.parse::<u64>().unwrap()).unwrap();
    assert_eq!(request["path"], "/usr/bin/true", "{request}");
    assert!(daemon.cli(&["deny", &id]).status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.signal().is_none(), "not killed: held and refused: {out:?}");
    assert_ne!(stdout(&out), "ran", "{out:?}");

    // In-scope work under the same filter is not held: no approval request for it.
    let out = daemon.run("asking", "read notes", &g, &[PROBE, "open", &format!("{}/out", work.display()), "r"]);
    assert_eq!(stdout(&out), "ok", "{out:?}");
}

#[test]
fn an_ask_file_reopened_through_the_agents_own_descriptor_is_never_read_unapproved() {
    // An O_PATH descriptor of the `ask` file, reopened through `/proc/self/fd/N`: the supervisor
    // resolves /proc/self as the agent's (not its own) and holds the reopen like any open of the
    // file, also where the file is deeper than the kernel's walk reaches; denied, nothing is read.
    let daemon = Daemon::start();
    let dir = daemon.dir.path();
    let work = dir.join("work");
    std::fs::create_dir_all(work.join("out")).unwrap();
    let shallow = dir.join("secret.txt");
    let deep_dir = (0..20).fold(dir.join("deep"), |p, _| p.join("d"));
    std::fs::create_dir_all(&deep_dir).unwrap();
    let deep = deep_dir.join("secret.txt");
    for secret in [&shallow, &deep] {
        std::fs::write(secret, "TOPSECRET").unwrap();
        let g = ask_grant(&daemon, &work, secret);
        let agent = if secret == &shallow { "reopen-shallow" } else { "reopen-deep" };
        let (child, id) = held(&daemon, agent, &g, &[PROBE, "opath-reopen", &secret.display().to_string()]);
        let request = approvals(&daemon).into_iter().find(|a| a["id"] == id.parse::<u64>().unwrap()).unwrap();
        assert_eq!(request["path"], secret.display().to_string(), "{request}");
        assert!(daemon.cli(&["deny", &id]).status.success());
        let out = child.wait_with_output().unwrap();
        assert_eq!(stdout(&out), "EPERM", "{agent}: {out:?}");
    }
}

#[test]
fn a_flood_of_held_calls_is_refused_past_the_cap_and_nothing_is_read() {
    // Every held call keeps a daemon thread and a question for a human: a task may have 32
    // waiting; the rest are refused on arrival, reported, never read.
    let daemon = Daemon::start();
    let dir = daemon.dir.path();
    let work = dir.join("work");
    std::fs::create_dir_all(work.join("out")).unwrap();
    let secret = dir.join("secret.txt");
    std::fs::write(&secret, "TOPSECRET").unwrap();
    let g = ask_grant(&daemon, &work, &secret);
    let child = daemon
        .run_command("flooder", "read notes", &g, &[], &[PROBE, "open-parallel", "40", &secret.display().to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let list = |state: &str| approvals(&daemon).iter().filter(|a| a["state"] == state).count();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while list("pending") + list("refused") < 40 {
        assert!(std::time::Instant::now() < deadline, "pending {} refused {}", list("pending"), list("refused"));
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!((list("pending"), list("refused")), (32, 8));
    let refused = daemon.wait_event("overflow", |e| {
        e["kind"] == "approval.denied" && e["reason"].as_str().is_some_and(|r| r.contains("waiting already"))
    });
    assert_eq!(refused["task"]["agent"], "flooder", "{refused}");
    for a in approvals(&daemon).iter().filter(|a| a["state"] == "pending") {
        assert!(daemon.cli(&["deny", &a["id"].to_string()]).status.success());
    }
    assert_eq!(stdout(&child.wait_with_output().unwrap()), "read=0 refused=40");
}

#[test]
fn rewriting_the_path_after_the_supervisor_read_it_reaches_nothing_unapproved() {
    let daemon = Daemon::start();
    let dir = daemon.dir.path();
    let work = dir.join("work");
    std::fs::create_dir_all(work.join("out")).unwrap();
    // Two paths of the same length: one the grant allows, one an ask rule holds.
    let (allowed, asked) = (work.join("aaaa.txt"), work.join("ssss.txt"));
    std::fs::write(&allowed, "fine").unwrap();
    std::fs::write(&asked, "TOPSECRET").unwrap();
    let g = ask_grant(&daemon, &work, &asked);
    // Every question the race raises is denied as it comes.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let denier = {
        let (stop, bin, socket) = (stop.clone(), agent_guard_e2e::agent_guard_bin(), daemon.socket.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = std::process::Command::new(&bin)
                    .args(["--socket", socket.to_str().unwrap(), "approvals", "--json"])
                    .output()
                    .unwrap();
                let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                for a in list.as_array().into_iter().flatten().filter(|a| a["state"] == "pending") {
                    let _ = std::process::Command::new(&bin)
                        .args(["--socket", socket.to_str().unwrap(), "deny", &a["id"].to_string()])
                        .output();
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
    };
    let (a, b) = (allowed.display().to_string(), asked.display().to_string());
    let out = daemon.run("racer", "race the supervisor", &g, &[PROBE, "race-path", &a, &b, "300"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    denier.join().unwrap();
    let asked_count = daemon.events().iter().filter(|e| e["kind"] == "approval.request").count();
    eprintln!("race: {:?}, {asked_count} approval requests, all denied", out.status);
    // Either it ran to the end without reading the held file, or it was killed reaching it.
    assert!(!stdout(&out).contains("LEAK"), "the held file was read without approval: {out:?}");
    if out.status.signal() == Some(libc::SIGKILL) {
        let killed = daemon.wait_event("kill", |e| e["kind"] == "file.open" && e["enforcement"] == "kill");
        assert_eq!(killed["object"]["path"], b.as_str(), "{killed}");
    } else {
        assert_eq!(stdout(&out), "no leak", "{out:?}");
    }
}

/// A task whose grant Landlock holds exactly, every file rule an `allow`, has its opens judged
/// by Landlock alone: nothing runs at their entry, and the exit program reports (reading the
/// syscall's arguments back from its registers) and ends access with the grant. All in one
/// task: every open syscall refused and reported, none of their effects, the first use of each
/// file counted, and the grant's end enforced by the kernel with the daemon frozen.
#[test]
fn opens_landlock_alone_decides_are_reported_at_exit_and_end_with_the_grant() {
    let mut daemon = Daemon::start();
    let dir = daemon.dir.path().to_path_buf();
    let work = dir.join("work");
    std::fs::create_dir_all(work.join("out")).unwrap();
    let (notes, secret, made) = (work.join("notes.txt"), dir.join("secret.txt"), work.join("out/made"));
    std::fs::write(&notes, "notes").unwrap();
    std::fs::write(&secret, "TOPSECRET").unwrap();
    let g = work_grant(&daemon, &work);
    // One task: the probe runs each step as its child (no shell: the VM has only busybox).
    let (wd, nd) = (work.display().to_string(), notes.display().to_string());
    let (sd, dd, md) = (secret.display().to_string(), dir.display().to_string(), made.display().to_string());
    // Temporary paths have no spaces: the steps are split on them.
    let steps = format!(
        "seq open-syscalls {sd} {dd} :: open-syscalls {nd} {wd} :: open-syscalls {md} {wd}/out :: open {nd} r :: \
         open {nd} r :: cd {wd} :: open ../secret.txt r :: after 12 open {nd} r"
    );
    let mut cmd = vec![PROBE];
    cmd.extend(steps.split(' '));
    let agent = daemon
        .run_command("exact", "read notes", &g, &["--ttl", "10s"], &cmd)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let opened = daemon.wait_event("task.open", |e| e["kind"] == "task.open" && e["task"]["agent"] == "exact");
    assert!(opened["reason"].as_str().unwrap().contains("Landlock's alone"), "{opened}");
    // Frozen before the grant ends (the emulated VM is slow: the first opens may still be
    // running, which needs nothing of the daemon): the kernel alone ends access.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let pid = daemon.pid() as i32;
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let out = agent.wait_with_output().unwrap();
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    // Before Landlock ABI 3 (6.1) the seccomp filter refuses openat2 itself (ENOSYS).
    let abi = abi_of(&opened);
    let openat2 = |said: &str| if abi < 3 { "error-38".to_string() } else { said.to_string() };
    assert_eq!(
        lines,
        [
            format!("open=error-13 openat=error-13 openat2={} creat=error-13", openat2("error-13")),
            format!("open=ok openat=ok openat2={} creat=error-13", openat2("ok")),
            format!("open=error-2 openat=error-2 openat2={} creat=ok", openat2("error-2")),
            "ok".into(),
            "ok".into(),
            "error 13".into(),
        ],
        "{out:?}"
    );
    // The last open came after the grant's end: its process was killed before it returned.
    assert_eq!(out.status.code(), Some(128 + libc::SIGKILL), "{out:?}");
    // No effect: the secret and the notes (creat would truncate) are intact; made was made.
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "TOPSECRET");
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "notes");
    assert!(made.exists());

    let ended = daemon.wait_event("the open after the end", |e| {
        e["kind"] == "file.open" && e["task"]["agent"] == "exact" && e["enforcement"] == "kill"
    });
    assert_eq!(ended["rule"], "grant.ttl", "{ended}");
    assert_eq!(ended["object"]["path"], nd.as_str(), "{ended}");
    let closed = daemon.wait_event("task.close", |e| e["kind"] == "task.close" && e["task"]["agent"] == "exact");
    let events = daemon.events();
    let denied: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["kind"] == "file.open" && e["task"]["agent"] == "exact" && e["enforcement"] == "landlock")
        .collect();
    let secret_denials = denied
        .iter()
        .filter(|e| e["decision"] == "denied" && e["object"]["path"].as_str().unwrap().ends_with("secret.txt"))
        .count();
    let expected = if abi < 3 { 4 } else { 5 };
    assert_eq!(secret_denials, expected, "open, openat, openat2, creat and the relative spelling: {denied:#?}");
    let notes_write = denied.iter().filter(|e| e["object"]["path"] == nd.as_str()).collect::<Vec<_>>();
    assert_eq!(notes_write.len(), 1, "creat of the notes: {denied:#?}");
    assert_eq!(notes_write[0]["object"]["access"], serde_json::json!(["write"]));
    // First uses, each counted: reads below work, the write that made `made`.
    let used = closed["usage"]["used"].to_string();
    assert!(used.contains(&format!("files.read {wd}/**")), "{closed}");
    assert!(used.contains(&format!("files.write {wd}/out/**")), "{closed}");
    assert!(daemon.stop().success());
}

/// The flags an openat2 asked with sit in the agent's memory, where the exit reads them: a thread
/// rewriting them to a read while a write-open of a FIFO waits for its reader cannot have the
/// write counted as a read (the file's own open mode counts too).
#[test]
fn an_openat2_whose_flags_are_rewritten_meanwhile_is_still_counted_as_the_write_it_was() {
    let daemon = Daemon::start();
    let dir = daemon.dir.path().to_path_buf();
    let work = dir.join("work");
    std::fs::create_dir_all(work.join("out")).unwrap();
    let fifo = work.join("out/fifo");
    let path = std::ffi::CString::new(fifo.display().to_string()).unwrap();
    // SAFETY: mkfifo on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let g = work_grant(&daemon, &work);
    let out = daemon.run("flipper", "write a fifo", &g, &[PROBE, "openat2-flip", &fifo.display().to_string()]);
    let closed = daemon.wait_event("task.close", |e| e["kind"] == "task.close" && e["task"]["agent"] == "flipper");
    let opened = daemon.wait_event("task.open", |e| e["kind"] == "task.open" && e["task"]["agent"] == "flipper");
    assert!(opened["reason"].as_str().unwrap().contains("Landlock's alone"), "{opened}");
    if abi_of(&opened) < 3 {
        // Before Landlock ABI 3 (6.1) the seccomp filter refuses openat2 itself: nothing to rewrite.
        assert_eq!(stdout(&out), "error 38", "{out:?}");
        return;
    }
    assert_eq!(stdout(&out), "ok", "{out:?}");
    let used = closed["usage"]["used"].to_string();
    assert!(used.contains(&format!("files.write {}/out/**", work.display())), "the write was counted: {closed}");
}
