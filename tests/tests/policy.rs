//! `agent-guard policy check` on the malformed grants in tests/fixtures/bad-grants: each one is
//! refused with its file, line and the problem its `# expect:` comment names; the shipped
//! policies pass. Needs no daemon.

use std::path::Path;

use agent_guard_e2e::agent_guard_bin;

fn check(paths: &[&Path]) -> std::process::Output {
    std::process::Command::new(agent_guard_bin()).args(["policy", "check"]).args(paths).output().unwrap()
}

#[test]
fn every_malformed_fixture_is_refused_with_file_line_and_reason() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/bad-grants");
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
        assert!(err.contains(&format!("line {},", field("line"))), "names the line: {err}");
        assert!(err.contains(&field("expect")), "says what is wrong: {err}");
        checked += 1;
    }
    assert!(checked >= 8, "the fixtures are there");
}

#[test]
fn the_shipped_policies_pass_and_a_mixed_run_fails() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let good = [root.join("default.yaml"), root.join("examples/triage-tickets.yaml")];
    let out = check(&[&good[0], &good[1]]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("triage-tickets.yaml: ok"));
    let bad = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/bad-grants/host-bits.yaml");
    let out = check(&[&good[0], &bad]);
    assert_eq!(out.status.code(), Some(1), "one bad file fails the run");
}
