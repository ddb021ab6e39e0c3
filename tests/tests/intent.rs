//! Step intent: inside a task, `agent-guard intent TEXT` records what the agent is doing now;
//! the task's following events carry it, beside the task's declared intent. It changes nothing
//! the grant allows, and it can only be declared from inside a task.

use agent_guard_e2e::{Daemon, agent_guard_bin, grant, listener, stdout};

const PROBE: &str = env!("CARGO_BIN_EXE_ag-probe");

#[test]
fn events_carry_the_step_the_agent_declared_last() {
    let daemon = Daemon::start();
    let port = listener("127.0.0.1:0");
    let g = grant(daemon.dir.path(), "steps", "enforce", &[], "");
    let intent =
        |text: &str| format!("{} --socket {} intent '{text}'", agent_guard_bin().display(), daemon.socket.display());
    let connect = format!("{PROBE} connect 127.0.0.1:{port}");
    let script =
        format!("{} ; {connect} ; {} ; {connect}", intent("reading ticket 4412"), intent("drafting the reply"));
    let out = daemon.run("stepper-2", "answer ticket 4412", &g, &["/usr/bin/sh", "-c", &script]);
    assert_eq!(stdout(&out), "EPERM\nEPERM", "a step intent widens nothing: {out:?}");
    let denials: Vec<serde_json::Value> = {
        daemon.wait_event("second denial", |e| {
            e["kind"] == "network.connect"
                && e["task"]["agent"] == "stepper-2"
                && e["task"]["step"] == "drafting the reply"
        });
        daemon
            .events()
            .into_iter()
            .filter(|e| e["kind"] == "network.connect" && e["task"]["agent"] == "stepper-2")
            .collect()
    };
    assert_eq!(denials.len(), 2);
    assert_eq!(denials[0]["task"]["step"], "reading ticket 4412");
    assert_eq!(denials[1]["task"]["step"], "drafting the reply");
    for denial in &denials {
        assert_eq!(denial["task"]["intent"], "answer ticket 4412", "the task's declared intent stays on every event");
    }
    let declared =
        daemon.wait_event("task.intent", |e| e["kind"] == "task.intent" && e["task"]["agent"] == "stepper-2");
    assert!(declared["reason"].as_str().unwrap().ends_with("declared: reading ticket 4412"), "{declared}");

    // Outside a task there is no step to declare.
    let outside = daemon.cli(&["intent", "nothing"]);
    assert!(!outside.status.success());
    assert!(String::from_utf8_lossy(&outside.stderr).contains("is not in a task"), "{outside:?}");
}
