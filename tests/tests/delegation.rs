//! Delegation without escalation: inside a task, `agent-guard run` opens a sub-task only with
//! a subset of the current grant; anything broader is refused naming the excess, and a tagged
//! process can use no other part of the control API.

use agent_guard_e2e::{Daemon, agent_guard_bin, grant, listener, stdout};

const PROBE: &str = env!("CARGO_BIN_EXE_ag-probe");

/// `agent-guard --socket S run --agent A --intent I --grant G -- CMD...` as argv, for use inside a task.
fn inner_run(daemon: &Daemon, agent: &str, g: &std::path::Path, cmd: &[&str]) -> Vec<String> {
    let mut argv: Vec<String> = vec![agent_guard_bin().display().to_string(), "--socket".into()];
    argv.push(daemon.socket.display().to_string());
    argv.extend(["run", "--agent", agent, "--intent", "delegated step", "--grant"].map(String::from));
    argv.push(g.display().to_string());
    argv.push("--".into());
    argv.extend(cmd.iter().map(std::string::ToString::to_string));
    argv
}

#[test]
fn a_sub_task_gets_a_subset_of_its_parents_grant_and_names_its_parent() {
    let daemon = Daemon::start();
    let (a, b) = (listener("127.0.0.1:0"), listener("127.0.0.1:0"));
    let dir = daemon.dir.path();
    let parent = grant(dir, "parent", "enforce", &[format!("127.0.0.1/32:{a}"), format!("127.0.0.1/32:{b}")], "");
    let child = grant(dir, "child", "enforce", &[format!("127.0.0.1/32:{a}")], "");
    let argv = inner_run(
        &daemon,
        "sub-bot",
        &child,
        &[PROBE, "connect-each", &format!("127.0.0.1:{a}"), &format!("127.0.0.1:{b}")],
    );
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = daemon.run("lead-bot", "plans and delegates", &parent, &argv);
    assert_eq!(stdout(&out), "ok\nEPERM", "the sub-task lost port {b}: {out:?}");
    let lead = daemon.wait_event("parent open", |e| e["kind"] == "task.open" && e["task"]["agent"] == "lead-bot");
    let sub =
        daemon.wait_event("sub-task open", |e| e["kind"] == "task.open" && e["task"]["agent"] == "lead-bot/sub-bot");
    assert_eq!(sub["task"]["parent"], lead["task"]["id"]);
    let denied = daemon.wait_event("sub-task denial", |e| e["kind"] == "network.connect");
    assert_eq!(denied["task"]["agent"], "lead-bot/sub-bot", "a sub-agent is named under its parent agent");
    assert_eq!(denied["task"]["parent"], lead["task"]["id"], "events of a sub-task name its parent");
    // Both close once their processes are gone (the parent's count excludes the moved process).
    daemon.wait_event("sub-task close", |e| e["kind"] == "task.close" && e["task"]["agent"] == "lead-bot/sub-bot");
    daemon.wait_event("parent close", |e| e["kind"] == "task.close" && e["task"]["agent"] == "lead-bot");
}

#[test]
fn a_broader_sub_task_is_refused_naming_the_excess_and_the_api_is_closed_to_agents() {
    let daemon = Daemon::start();
    let (a, b) = (listener("127.0.0.1:0"), listener("127.0.0.1:0"));
    let dir = daemon.dir.path();
    let parent = grant(dir, "narrow", "enforce", &[format!("127.0.0.1/32:{a}")], "");
    let broader = grant(dir, "broader", "audit", &[format!("127.0.0.1/32:{a}"), format!("127.0.0.0/8:{b}")], "");
    let argv = inner_run(&daemon, "greedy-bot", &broader, &[PROBE, "connect", &format!("127.0.0.1:{b}")]);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = daemon.run("lead-bot", "tries to escalate", &parent, &argv);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("may not be broader than it"), "{stderr}");
    assert!(stderr.contains("mode audit"), "{stderr}");
    assert!(stderr.contains(&format!("network.connect 127.0.0.0/8:{b} is not within")), "{stderr}");
    assert!(!daemon.events().iter().any(|e| e["kind"] == "task.open" && e["task"]["agent"] == "greedy-bot"));

    // Longer than the parent has left.
    let child = grant(dir, "child", "enforce", &[format!("127.0.0.1/32:{a}")], "");
    let argv = inner_run(&daemon, "slow-bot", &child, &["true"]);
    let mut argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    argv.splice(argv.len() - 2..argv.len() - 2, ["--ttl", "9m"]);
    let out = daemon.run_command("lead-bot", "short", &parent, &["--ttl", "1m"], &argv).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("longer than the"), "{out:?}");

    // No other verb works from inside a task: not on its own task, not on another.
    let own = [agent_guard_bin().display().to_string(), "--socket".into(), daemon.socket.display().to_string()];
    for verb in [
        vec!["grant", "extend", "1", "--for", "1h"],
        vec!["task", "stop", "1"],
        vec!["approve", "1"],
        vec!["grant", "revoke", "1"],
    ] {
        let mut argv: Vec<&str> = own.iter().map(String::as_str).collect();
        argv.extend(verb.iter());
        let out = daemon.run("lead-bot", "tries the API", &parent, &argv);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("inside a task only `agent-guard run`"), "{verb:?}: {stderr}");
    }
}

#[test]
fn revoking_a_parent_revokes_its_sub_tasks() {
    let daemon = Daemon::start();
    let port = listener("127.0.0.1:0");
    let dir = daemon.dir.path();
    let g = grant(dir, "both", "enforce", &[format!("127.0.0.1/32:{port}")], "");
    let argv = inner_run(&daemon, "sub-bot", &g, &[PROBE, "connect-twice", &format!("127.0.0.1:{port}"), "2"]);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    // The `kill` level, where revoked processes live on allowed nothing (a confined task's are
    // killed: landlock.rs).
    let agent = daemon
        .run_command("lead-bot", "delegates", &g, &["--without-landlock"], &argv)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lead = daemon.wait_event("parent open", |e| e["kind"] == "task.open" && e["task"]["agent"] == "lead-bot");
    daemon.wait_event("sub-task open", |e| e["kind"] == "task.open" && e["task"]["agent"] == "lead-bot/sub-bot");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let revoke = daemon.cli(&["grant", "revoke", &lead["task"]["id"].to_string()]);
    assert!(revoke.status.success(), "{revoke:?}");
    assert_eq!(stdout(&agent.wait_with_output().unwrap()), "ok EPERM", "the sub-task lost its access with its parent");
    daemon.wait_event("sub-task revoke", |e| e["kind"] == "grant.revoke" && e["task"]["agent"] == "lead-bot/sub-bot");
}

#[test]
fn a_socket_connected_by_an_exited_child_speaks_for_nobody() {
    let daemon = Daemon::start();
    let g = grant(daemon.dir.path(), "plain", "enforce", &[], "");
    let request = r#"{"version":1,"op":"list_tasks"}"#;
    let out = daemon.run(
        "forking-bot",
        "borrow a dead child's identity",
        &g,
        &[PROBE, "api-via-exited-child", daemon.socket.to_str().unwrap(), request],
    );
    let reply = stdout(&out);
    assert!(reply.contains("\"forbidden\"") && reply.contains("has exited"), "{reply}");
    // The same trick from an untagged process gets the same answer: the rule is about the peer.
    let direct = std::process::Command::new(PROBE)
        .args(["api-via-exited-child", daemon.socket.to_str().unwrap(), request])
        .output()
        .unwrap();
    assert!(stdout(&direct).contains("has exited"), "{direct:?}");
}

#[test]
fn a_socket_connected_by_a_zombie_child_speaks_for_nobody() {
    // The child exits but is not reaped: its tag is gone (removed when its thread group died)
    // while its pid still names it. Taken for an untagged caller, it could extend its parent's
    // grant, approve its held actions or stop other tasks.
    let daemon = Daemon::start();
    let g = grant(daemon.dir.path(), "plain", "enforce", &[], "");
    let request = r#"{"version":1,"op":"extend_grant","id":1,"secs":60}"#;
    let out = daemon.run(
        "zombie-bot",
        "borrow a zombie child's identity",
        &g,
        &[PROBE, "api-via-zombie-child", daemon.socket.to_str().unwrap(), request],
    );
    let reply = stdout(&out);
    assert!(reply.contains("\"forbidden\"") && reply.contains("exiting or has exited"), "{reply}");
    daemon.wait_event("task close", |e| e["kind"] == "task.close" && e["task"]["agent"] == "zombie-bot");
    assert!(
        !daemon.events().iter().any(|e| e["kind"] == "grant.extend"),
        "no grant was extended: {:?}",
        daemon.events()
    );
}

/// An agent cannot exhaust the daemon through its socket: a task's processes hold at most 16
/// connections (the rest are closed at once), a line from inside a task is at most 64 KiB, and
/// the operator is served meanwhile.
#[test]
fn an_agent_flooding_the_api_socket_is_held_to_a_few_short_connections() {
    let daemon = Daemon::start();
    let g = grant(daemon.dir.path(), "flooder", "enforce", &[], "");
    let socket = daemon.socket.display().to_string();
    let mut flood = daemon.run_command("flood-bot", "floods the API", &g, &[], &[PROBE, "api-flood", &socket, "40"]);
    let flooding = flood.stdout(std::process::Stdio::piped()).spawn().unwrap();
    // While the agent holds its connections, the operator is served.
    std::thread::sleep(std::time::Duration::from_millis(700));
    let status = daemon.cli(&["status"]);
    assert!(status.status.success(), "status during the flood: {status:?}");
    let out = flooding.wait_with_output().unwrap();
    let line = stdout(&out);
    assert!(line.starts_with("closed 24 of 40;"), "16 connections are held, the rest closed: {line}");
    assert!(line.contains("bad_request") && line.contains("line length"), "a 100 KiB line from a task: {line}");
}
