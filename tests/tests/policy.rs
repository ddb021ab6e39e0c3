//! `agent-guard policy check` on the malformed policy files in tests/fixtures/bad-policies: each one is
//! refused with its file, line and the problem its `# expect:` comment names; the shipped
//! policies pass. Needs no daemon.

use std::path::Path;

use agent_guard_e2e::agent_guard_bin;

fn check(paths: &[&Path]) -> std::process::Output {
    std::process::Command::new(agent_guard_bin()).args(["policy", "check"]).args(paths).output().unwrap()
}

#[test]
fn every_malformed_fixture_is_refused_with_file_line_and_reason() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/bad-policies");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("# {name}: ")))
                .unwrap_or_else(|| panic!("{} has no `# {name}:` line", path.display()))
                .to_string()
        };
        let out = check(&[&path]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", path.display());
        assert!(err.contains(&path.display().to_string()), "names the file: {err}");
        // `# line: none`: a problem of the document as a whole (e.g. two rules that contradict).
        let line = field("line");
        if line == "none" {
            assert!(!err.contains(", line "), "claims no line: {err}");
        } else {
            assert!(err.contains(&format!("line {line},")), "names the line: {err}");
        }
        assert!(err.contains(&field("expect")), "says what is wrong: {err}");
        checked += 1;
    }
    assert!(checked >= 16, "the fixtures are there");
}

#[test]
fn the_shipped_policies_pass_and_a_mixed_run_fails() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let good = [root.join("default.yaml"), root.join("examples"), root.join("agents")];
    let out = check(&[&good[0], &good[1], &good[2]]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for shipped in ["triage-tickets.yaml: ok", "support-bot.yaml: ok: AgentProfile", "triage.yaml: ok: GrantTemplate"] {
        assert!(stdout.contains(shipped), "{shipped}: {stdout}");
    }
    let bad = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/bad-policies/host-bits.yaml");
    let out = check(&[&good[0], &bad]);
    assert_eq!(out.status.code(), Some(1), "one bad file fails the run");
}
