//! Property: on random grants and random destinations, the kernel's network decisions equal
//! the userspace reference evaluator's (`agent-guard policy eval`), flags included.
//! Reproduce a failure with `AG_SEED`=<seed printed by the failing run>.

use agent_guard_e2e::{Daemon, agent_guard_bin, stdout};

const PROBE: &str = env!("CARGO_BIN_EXE_ag-probe");
const GRANTS: usize = 12;
const REQUESTS: usize = 10;

const PREFIXES: [&str; 6] =
    ["127.0.0.0/8", "127.0.0.0/30", "127.0.0.1/32", "127.0.0.2/31", "127.0.0.3/32", "127.0.0.0/24"];
const ADDRS: [&str; 5] = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.9", "[::ffff:127.0.0.2]"];
const PORTS: [u16; 5] = [7001, 7002, 7003, 7010, 7100];

/// `{to: TARGET, action: ACTION}`; (target, rule text).
fn random_rule(rng: &mut fastrand::Rng) -> (String, String) {
    let prefix = PREFIXES[rng.usize(..PREFIXES.len())];
    let ports = match rng.u8(..3) {
        0 => PORTS[rng.usize(..PORTS.len())].to_string(),
        1 => {
            let lo = 7000 + rng.u16(..20);
            format!("{lo}-{}", lo + rng.u16(..60))
        }
        _ => "*".into(),
    };
    let proto = ["", "/tcp", "/udp"][rng.usize(..3)];
    let action = ["allow", "allow", "flag", "deny"][rng.usize(..4)];
    let target = format!("{prefix}:{ports}{proto}");
    (target.clone(), format!("{{to: \"{target}\", action: {action}}}"))
}

#[test]
fn kernel_network_decisions_equal_the_reference_evaluator() {
    let seed = std::env::var("AG_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    eprintln!("property seed: AG_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    // Flood control off: a destination drawn twice is two flags, counted one by one.
    let daemon =
        Daemon::start_configured(Some("outputs: [{type: file, path: \"{events}\"}]\naggregation: {window: 0s}\n"), &[]);
    let dir = daemon.dir.path();
    let (mut compared, mut flagged_total) = (0, 0);
    for g in 0..GRANTS {
        // One rule per target: the same target twice with different actions is refused as
        // contradictory (tested in policy.rs), not something to compare.
        let mut rules: Vec<(String, String)> = Vec::new();
        for _ in 0..rng.usize(1..7) {
            let (target, rule) = random_rule(&mut rng);
            if !rules.iter().any(|(t, _)| *t == target) {
                rules.push((target, rule));
            }
        }
        let rules: Vec<String> = rules.into_iter().map(|(_, rule)| rule).collect();
        let name = format!("random-{g}");
        let text = format!(
            "apiVersion: agent-guard.dev/v1\nkind: Grant\nmetadata: {{name: {name}}}\nspec:\n  files: {{read: [\"/**\"]}}\n  exec: [\"/**\"]\n  network: {{connect: [{}]}}\n",
            rules.join(", ")
        );
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, &text).unwrap();
        let check = daemon.cli(&["policy", "check", path.to_str().unwrap()]);
        if !check.status.success() {
            // Rejected by the compiler (e.g. too many port rules for one prefix): also a decision.
            assert!(String::from_utf8_lossy(&check.stderr).contains("port rules"), "seed {seed}: {check:?}\n{text}");
            continue;
        }
        let requests: Vec<String> = (0..REQUESTS)
            .map(|_| {
                let addr = ADDRS[rng.usize(..ADDRS.len())];
                let port = PORTS[rng.usize(..PORTS.len())];
                format!("{addr}:{port}{}", if rng.bool() { "/udp" } else { "/tcp" })
            })
            .collect();
        let mut argv = vec![PROBE, "connect-each"];
        argv.extend(requests.iter().map(String::as_str));
        let out = daemon.run(&format!("prop-{g}"), "random", &path, &argv);
        let kernel: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
        assert_eq!(kernel.len(), requests.len(), "seed {seed}: {out:?}");
        let mut flagged = 0;
        for (request, got) in requests.iter().zip(&kernel) {
            let eval = daemon.cli(&["policy", "eval", path.to_str().unwrap(), "--connect", request]);
            assert!(eval.status.success(), "{eval:?}");
            let reference = stdout(&eval);
            let allowed = reference.starts_with("allow") || reference.starts_with("flag");
            flagged += usize::from(reference.starts_with("flag"));
            assert!(got == "ok" || got == "EPERM" || got == "error 111", "seed {seed}: {request}: {got}");
            assert_eq!(
                got != "EPERM",
                allowed,
                "seed {seed}: {request}: kernel said {got}, the reference {reference}\ngrant:\n{text}"
            );
            compared += 1;
        }
        // Every flagged action is reported once, naming its rule.
        let agent = format!("prop-{g}");
        if flagged > 0 {
            daemon.wait_event("flags", |e| {
                e["task"]["agent"] == agent.as_str()
                    && e["decision"] == "flagged"
                    && e["rule"].as_str().is_some_and(|r| r.contains("(flag)"))
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let reported = daemon
            .events()
            .iter()
            .filter(|e| e["task"]["agent"] == agent.as_str() && e["decision"] == "flagged")
            .count();
        assert_eq!(reported, flagged, "seed {seed}: flagged events of grant {g}\n{text}");
        flagged_total += flagged;
    }
    eprintln!(
        "compared {compared} decisions ({flagged_total} flagged) with the reference; {}",
        agent_guard_bin().display()
    );
    assert!(compared >= REQUESTS * GRANTS / 2, "too few grants compiled to compare: {compared}");
}
