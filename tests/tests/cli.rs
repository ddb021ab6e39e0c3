//! The command line as operators use it: piped into `head`, completed by their shell, read as
//! a man page.

use std::process::Command;

use agent_guard_e2e::{Daemon, agent_guard_bin, grant, listener, stdout};

const PROBE: &str = env!("CARGO_BIN_EXE_ag-probe");

#[test]
fn audit_piped_into_head_ends_quietly() {
    // An audit store far larger than a pipe's buffer (64 KiB): `audit` is still writing when
    // `head` has gone.
    let mut daemon =
        Daemon::start_configured(Some("outputs: [{type: file, path: \"{events}\"}]\naggregation: {window: 0s}\n"), &[]);
    let g = grant(daemon.dir.path(), "piped", "audit", &[], "");
    let port = listener("127.0.0.1:0");
    let targets: Vec<String> =
        // About 87 bytes a line: 2,000 lines clear the 128 KiB below whatever the port's and
        // the directory's lengths (1,500 fell short once, by 1 KiB).
        (0..2000).map(|i| format!("127.0.0.1:{}", if i % 2 == 0 { port } else { port + 1 })).collect();
    let mut cmd = vec![PROBE, "connect-each"];
    cmd.extend(targets.iter().map(String::as_str));
    let out = daemon.run("pipe-bot", "many connects", &g, &cmd);
    assert!(out.status.success(), "{out:?}");
    daemon.stop();
    let store = daemon.dir.path().join("audit.db");
    let err = daemon.dir.path().join("audit.stderr");
    let script = format!(
        "set -o pipefail; {} audit --store {} 2>{} | head -1; echo \"status=${{PIPESTATUS[0]}}\"",
        agent_guard_bin().display(),
        store.display(),
        err.display()
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    let text = stdout(&out);
    let (first, status) = text.split_once('\n').expect("a line, then the status");
    // The oldest event, whole (a timestamp, then its kind).
    assert!(first.starts_with("20") && first.contains("Z "), "the first event: {text}");
    // Ended by SIGPIPE (141) like any Unix tool, or done in time (0): never a panic or an error.
    assert!(matches!(status, "status=0" | "status=141"), "{text}");
    let written = std::fs::read_to_string(&err).unwrap();
    assert!(written.is_empty(), "agent-guard wrote to stderr: {written}");
    let full = Command::new(agent_guard_bin()).args(["audit", "--store"]).arg(&store).output().unwrap();
    assert!(full.stdout.len() > 128 * 1024, "the store was too small to fill the pipe: {} bytes", full.stdout.len());
}

#[test]
fn completions_and_the_man_page_come_from_the_command_line_itself() {
    let run = |args: &[&str]| {
        let out = Command::new(agent_guard_bin()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let bash = run(&["completions", "bash"]);
    assert!(bash.contains("complete -F") && bash.contains("agent-guard"), "{bash}");
    // Every verb is offered, including the newest.
    for verb in ["run", "approve", "report", "config", "completions"] {
        assert!(bash.contains(verb), "bash completions lack {verb}");
    }
    let zsh = run(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef agent-guard"), "{zsh}");
    let man = run(&["man"]);
    assert!(man.contains(".TH agent-guard 8"), "{man}");
    let refused = Command::new(agent_guard_bin()).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
}
