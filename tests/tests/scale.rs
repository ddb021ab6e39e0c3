//! Scale: large grants, many tasks, and full maps refused with a clear error (never truncated).

use std::{
    fmt::Write as _,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use agent_guard_e2e::{Daemon, grant, listener, stdout};

const PROBE: &str = env!("CARGO_BIN_EXE_ag-probe");

fn map_use(daemon: &Daemon, name: &str) -> (u64, u64) {
    let status: serde_json::Value = serde_json::from_slice(&daemon.cli(&["status", "--json"]).stdout).unwrap();
    let map = status["maps"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap().clone();
    (map["used"].as_u64().unwrap(), map["size"].as_u64().unwrap())
}

/// `count` network rules for distinct 10.x.y.z hosts, then one for 127.0.0.1:`port`.
fn net_rules(count: usize, port: u16) -> Vec<String> {
    let mut rules: Vec<String> =
        (0..count).map(|i| format!("10.{}.{}.{}/32:{}", i >> 16, (i >> 8) & 255, i & 255, 1000 + i % 50000)).collect();
    rules.push(format!("127.0.0.1/32:{port}"));
    rules
}

#[test]
fn a_grant_with_ten_thousand_path_and_network_rules_is_enforced() {
    let daemon = Daemon::start();
    let (allowed, other) = (listener("127.0.0.1:0"), listener("127.0.0.1:0"));
    let dir = daemon.dir.path();
    let paths: String = (0..10_000).fold(String::new(), |mut out, i| {
        let _ = writeln!(out, "    - /srv/agent-guard-scale/{i}/file");
        out
    });
    let g = grant(
        dir,
        "huge",
        "enforce",
        &net_rules(10_000, allowed),
        &format!(
            "  files:\n    read:\n{paths}    - {}/**\n    - /usr/**\n    - /lib/**\n    - /lib64/**\n    - /etc/**\n    - /proc/**\n    - /sys/**\n    - /dev/**\n    - {}/**\n  exec: [\"{}/*\"]\n",
            dir.display(),
            agent_guard_e2e::agent_guard_bin().parent().unwrap().display(),
            agent_guard_e2e::agent_guard_bin().parent().unwrap().display()
        ),
    );
    let started = Instant::now();
    let out = daemon.run(
        "big-bot",
        "many rules",
        &g,
        &[PROBE, "connect-each", &format!("127.0.0.1:{allowed}"), &format!("127.0.0.1:{other}")],
    );
    let took = started.elapsed();
    assert_eq!(stdout(&out), "ok\nEPERM", "{out:?}");
    let open = daemon.wait_event("task open", |e| e["kind"] == "task.open");
    assert_eq!(open["task"]["agent"], "big-bot");
    eprintln!("open + run with 10,000 path and 10,001 network rules: {took:?}");
    // The task is over: its entries are gone again.
    daemon.wait_event("task close", |e| e["kind"] == "task.close");
    assert_eq!(map_use(&daemon, "PATH_RULES").0, 0);
    assert_eq!(map_use(&daemon, "NET_RULES").0, 0);
}

#[test]
fn a_grant_that_does_not_fit_is_refused_whole() {
    let daemon = Daemon::start_with(&["--max-net-rules", "100"]);
    let g = grant(daemon.dir.path(), "too-big", "enforce", &net_rules(150, 1), "");
    let out = daemon.run("big-bot", "too many rules", &g, &["true"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "map NET_RULES is full: this needs 151 entries, 100 of 100 are free (raise the daemon's --max-net-rules)"
        ),
        "{stderr}"
    );
    assert_eq!(map_use(&daemon, "NET_RULES"), (0, 100), "nothing half-applied");
    assert_eq!(map_use(&daemon, "PATH_RULES").0, 0);
    assert_eq!(map_use(&daemon, "TASKS").0, 0);
}

#[test]
fn a_thousand_tasks_run_at_once_and_the_next_is_refused() {
    const TASKS: usize = 1000;
    let mut daemon = Daemon::start_with(&["--max-tasks", &TASKS.to_string()]);
    let g = grant(daemon.dir.path(), "many", "enforce", &[], "");
    let started = Instant::now();
    let mut children: Vec<Child> = Vec::with_capacity(TASKS);
    for i in 0..TASKS {
        let child = daemon
            .run_command(&format!("bot-{i}"), "one of many", &g, &["--quiet"], &[PROBE, "sleep", "120"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        children.push(child);
        // Keep the number of `run` clients in flight bounded.
        if i % 50 == 49 {
            while map_use(&daemon, "TASKS").0 < i as u64 + 1 {
                assert!(started.elapsed() < Duration::from_secs(240), "tasks open too slowly");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    while map_use(&daemon, "TASKS").0 < TASKS as u64 {
        assert!(started.elapsed() < Duration::from_secs(240), "tasks open too slowly: {:?}", map_use(&daemon, "TASKS"));
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("{TASKS} tasks opened in {:?}", started.elapsed());
    assert_eq!(map_use(&daemon, "PROC_TAGS").0, TASKS as u64, "one tagged process per task");
    let over = daemon.run("bot-extra", "one too many", &g, &["true"]);
    let stderr = String::from_utf8_lossy(&over.stderr);
    assert!(stderr.contains("map TASKS is full") && stderr.contains("--max-tasks"), "{stderr}");
    // Stopping the daemon stops every task and kills its processes.
    assert!(daemon.stop().success());
    for mut child in children {
        let status = child.wait().unwrap();
        assert!(!status.success(), "a task's process outlived the daemon");
    }
}
