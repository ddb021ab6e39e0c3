//! File opens and execs of tagged processes at the `kill` level (no BPF LSM here, and the tasks
//! opened with `run --without-landlock`, as on a kernel without Landlock): an out-of-scope one
//! the kernel decides kills the process; one only the daemon can resolve is observed and
//! reported. The `landlock` level, this host's default: landlock.rs.

use agent_guard_e2e::{Daemon, grant, stdout};

/// `agent-guard run --without-landlock ... -- CMD`: the `kill` level.
fn run_killing(daemon: &Daemon, agent: &str, intent: &str, g: &std::path::Path, cmd: &[&str]) -> std::process::Output {
    daemon.run_command(agent, intent, g, &["--without-landlock"], cmd).output().unwrap()
}

const PROBE: &str = env!("CARGO_BIN_EXE_ag-probe");

#[test]
fn out_of_scope_opens_and_execs_are_reported_with_their_would_be_decision() {
    let daemon = Daemon::start();
    let work = daemon.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let inside = work.join("notes.txt");
    let outside = daemon.dir.path().join("secret.txt");
    std::fs::write(&inside, "x").unwrap();
    std::fs::write(&outside, "x").unwrap();
    let probe_dir = std::path::Path::new(PROBE).parent().unwrap().display().to_string();
    let extra = format!(
        "  files: {{read: [\"{work}/**\", \"/usr/**\", \"/lib/**\", \"/etc/**\", \"/proc/**\", \"/sys/**\"], write: []}}\n  exec: [\"{probe_dir}/*\"]\n",
        work = work.display()
    );
    let g = grant(daemon.dir.path(), "files", "enforce", &[], &extra);

    let out = run_killing(&daemon, "reader", "read notes", &g, &[PROBE, "open", inside.to_str().unwrap(), "r"]);
    assert_eq!(stdout(&out), "ok");
    let killed = |out: &std::process::Output| {
        use std::os::unix::process::ExitStatusExt;
        out.status.signal() == Some(9) && stdout(out).is_empty()
    };
    let out = run_killing(&daemon, "reader", "read secrets", &g, &[PROBE, "open", outside.to_str().unwrap(), "r"]);
    assert!(killed(&out), "an out-of-scope open kills the agent: {out:?}");
    let out = run_killing(&daemon, "reader", "write notes", &g, &[PROBE, "open", inside.to_str().unwrap(), "w"]);
    assert!(killed(&out), "write access the grant does not give: {out:?}");

    let secret = daemon.wait_event("open of the secret", |e| {
        e["kind"] == "file.open" && e["object"]["path"] == outside.to_str().unwrap()
    });
    assert_eq!(secret["decision"], "denied");
    assert_eq!(secret["policy_decision"], "deny");
    assert_eq!(secret["enforcement"], "kill");
    assert_eq!(secret["object"]["access"], serde_json::json!(["read"]));
    assert_eq!(secret["task"]["intent"], "read secrets");
    assert!(secret["reason"].as_str().unwrap().contains("killed"), "{secret}");
    let write = daemon
        .wait_event("write of notes", |e| e["kind"] == "file.open" && e["object"]["path"] == inside.to_str().unwrap());
    assert_eq!(write["object"]["access"], serde_json::json!(["write"]));
    assert_eq!(write["task"]["intent"], "write notes");
    // The in-scope read of notes.txt is not reported.
    let reads_of_notes = daemon
        .events()
        .into_iter()
        .filter(|e| e["object"]["path"] == inside.to_str().unwrap() && e["task"]["intent"] == "read notes")
        .count();
    assert_eq!(reads_of_notes, 0);

    // Exec: the probe is granted; /usr/bin/true is not: the new program is killed before it
    // runs, and reported with its argv.
    let out = run_killing(&daemon, "runner", "run true", &g, &["/usr/bin/true", "--flag"]);
    assert!(killed(&out), "{out:?}");
    let exec = daemon.wait_event("exec of true", |e| e["kind"] == "process.exec");
    assert_eq!(exec["object"]["path"], "/usr/bin/true");
    assert_eq!(exec["process"]["argv"], serde_json::json!(["/usr/bin/true", "--flag"]));
    assert_eq!(exec["decision"], "denied");
    assert_eq!(exec["enforcement"], "kill");
    assert_eq!(exec["task"]["agent"], "runner");
    let probe_execs =
        daemon.events().into_iter().filter(|e| e["kind"] == "process.exec" && e["object"]["path"] == PROBE).count();
    assert_eq!(probe_execs, 0, "granted execs are not reported");
}

#[test]
fn relative_and_dotdot_paths_are_resolved_before_judging() {
    let daemon = Daemon::start();
    let work = daemon.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("in.txt"), "x").unwrap();
    std::fs::write(daemon.dir.path().join("out.txt"), "x").unwrap();
    let probe_dir = std::path::Path::new(PROBE).parent().unwrap().display().to_string();
    let extra = format!(
        "  files: {{read: [\"{work}/**\", \"/usr/**\", \"/lib/**\", \"/etc/**\", \"/proc/**\", \"/sys/**\"]}}\n  exec: [\"{probe_dir}/*\"]\n",
        work = work.display()
    );
    let g = grant(daemon.dir.path(), "rel", "enforce", &[], &extra);
    // `work/../out.txt` starts inside the granted prefix but leaves it.
    let sneaky = format!("{}/../out.txt", work.display());
    let out = run_killing(&daemon, "rel", "dotdot", &g, &[PROBE, "open", &sneaky, "r"]);
    assert_eq!(stdout(&out), "ok");
    let out_txt = daemon.dir.path().join("out.txt").display().to_string();
    let event =
        daemon.wait_event("dotdot open", |e| e["kind"] == "file.open" && e["object"]["path"] == out_txt.as_str());
    assert_eq!(event["decision"], "flagged");
}
