//! Network enforcement on this host's kernel: cgroup `sock_addr` programs, real connects.

use agent_guard_e2e::{Daemon, grant, listener, stdout};

const PROBE: &str = env!("CARGO_BIN_EXE_ag-probe");

#[test]
fn allowed_connect_succeeds_and_out_of_scope_connect_gets_eperm() {
    let daemon = Daemon::start();
    let allowed = listener("127.0.0.1:0");
    let other = listener("127.0.0.1:0");
    let g = grant(daemon.dir.path(), "net-enforce", "enforce", &[format!("127.0.0.1/32:{allowed}")], "");

    let ok = daemon.run("triage-bot", "read tickets", &g, &[PROBE, "connect", &format!("127.0.0.1:{allowed}")]);
    assert_eq!(stdout(&ok), "ok", "allowed connect: {ok:?}");
    assert!(ok.status.success());

    let denied =
        daemon.run("triage-bot", "exfiltrate the tickets", &g, &[PROBE, "connect", &format!("127.0.0.1:{other}")]);
    assert_eq!(stdout(&denied), "EPERM", "out-of-scope connect: {denied:?}");
    assert_eq!(denied.status.code(), Some(1), "the probe's exit status passes through");

    let event = daemon.wait_event("network.connect denied", |e| e["kind"] == "network.connect");
    assert_eq!(event["decision"], "denied");
    assert_eq!(event["enforcement"], "cgroup");
    assert_eq!(event["task"]["agent"], "triage-bot");
    assert_eq!(event["task"]["intent"], "exfiltrate the tickets");
    assert_eq!(event["task"]["grant"], "net-enforce");
    assert!(event["task"]["id"].as_u64().is_some());
    assert_eq!(event["object"]["address"], "127.0.0.1");
    assert_eq!(event["object"]["port"], other);
    assert_eq!(event["object"]["protocol"], "tcp");
    assert_eq!(event["rule"], "default-deny");
    assert_eq!(event["process"]["comm"], "ag-probe");
    assert!(event["process"]["pid"].as_u64().unwrap() > 0);
    assert!(event["reason"].as_str().unwrap().contains(&format!("127.0.0.1:{other}")));
    // Exactly one connect event: the allowed connect is not reported.
    let connects = daemon.events().into_iter().filter(|e| e["kind"] == "network.connect").count();
    assert_eq!(connects, 1);
}

#[test]
fn audit_mode_flags_and_allows() {
    let daemon = Daemon::start();
    let other = listener("127.0.0.1:0");
    let g = grant(daemon.dir.path(), "net-audit", "audit", &["10.0.0.0/8:443".into()], "");
    let out = daemon.run("audit-bot", "try a port", &g, &[PROBE, "connect", &format!("127.0.0.1:{other}")]);
    assert_eq!(stdout(&out), "ok", "audit mode lets the connect through: {out:?}");
    let event = daemon.wait_event("flagged connect", |e| e["kind"] == "network.connect");
    assert_eq!(event["decision"], "flagged");
    assert_eq!(event["policy_decision"], "flag");
    assert_eq!(event["task"]["agent"], "audit-bot");
}

#[test]
fn ipv6_and_ipv4_mapped_destinations_follow_the_grant() {
    let daemon = Daemon::start();
    let v6_port = listener("[::1]:0");
    let dual = listener("[::]:0");
    let g = grant(
        daemon.dir.path(),
        "net-v6",
        "enforce",
        &[format!("[::1]/128:{v6_port}"), format!("127.0.0.1/32:{dual}")],
        "",
    );
    let run = |target: String| stdout(&daemon.run("v6-bot", "v6", &g, &[PROBE, "connect", &target]));
    assert_eq!(run(format!("[::1]:{v6_port}")), "ok");
    assert_eq!(run(format!("[::1]:{dual}")), "EPERM", "IPv6 rule is port-specific");
    // An IPv4-mapped IPv6 destination is judged by the IPv4 rules.
    assert_eq!(run(format!("[::ffff:127.0.0.1]:{dual}")), "ok");
    assert_eq!(run(format!("[::ffff:127.0.0.2]:{dual}")), "EPERM");
    let event = daemon.wait_event("mapped denial", |e| e["object"]["address"] == "127.0.0.2");
    assert_eq!(event["decision"], "denied");
}

#[test]
fn udp_sends_outside_the_grant_are_refused() {
    let daemon = Daemon::start();
    let g = grant(daemon.dir.path(), "net-udp", "enforce", &["127.0.0.1/32:5353/udp".into()], "");
    let ok = daemon.run("dns-bot", "resolve", &g, &[PROBE, "udp", "127.0.0.1:5353"]);
    assert_eq!(stdout(&ok), "ok");
    let denied = daemon.run("dns-bot", "resolve", &g, &[PROBE, "udp", "127.0.0.1:5354"]);
    assert_eq!(stdout(&denied), "EPERM");
    let event = daemon.wait_event("udp send", |e| e["kind"] == "network.send");
    assert_eq!(event["object"]["protocol"], "udp");
    assert_eq!(event["object"]["port"], 5354);
}

#[test]
fn untagged_processes_are_never_affected() {
    let daemon = Daemon::start();
    let other = listener("127.0.0.1:0");
    let g = grant(daemon.dir.path(), "net-none", "enforce", &[], "");
    // A task is open (and denies everything) while an untagged process connects.
    let mut agent = daemon.run_command("a", "wait", &g, &[], &[PROBE, "sleep", "3"]).spawn().unwrap();
    daemon.wait_event("task open", |e| e["kind"] == "task.open");
    let direct = std::process::Command::new(PROBE).args(["connect", &format!("127.0.0.1:{other}")]).output().unwrap();
    assert_eq!(stdout(&direct), "ok", "untagged connect must succeed");
    assert!(agent.wait().unwrap().success());
}

#[test]
fn access_ends_at_expiry_by_kernel_time() {
    let daemon = Daemon::start();
    let allowed = listener("127.0.0.1:0");
    let g = grant(daemon.dir.path(), "short", "enforce", &[format!("127.0.0.1/32:{allowed}")], "");
    let target = format!("127.0.0.1:{allowed}");
    let mut early = daemon.run_command(
        "slow-bot",
        "outlive the grant",
        &g,
        &["--ttl", "2s"],
        &[PROBE, "pid-then", "connect", &target],
    );
    let out = early.output().unwrap();
    assert!(stdout(&out).ends_with(" ok"), "within the ttl the connect is allowed: {out:?}");
    let mut late = daemon.run_command(
        "slow-bot",
        "outlive the grant",
        &g,
        &["--ttl", "2s"],
        &[PROBE, "after", "2.5", "connect", &target],
    );
    let out = late.output().unwrap();
    assert_eq!(stdout(&out), "EPERM", "after the ttl the same connect is refused by the kernel: {out:?}");
    let event = daemon.wait_event("expired connect", |e| e["kind"] == "network.connect");
    assert_eq!(event["rule"], "grant.ttl");
    assert_eq!(event["decision"], "denied");
}

#[test]
fn the_unspecified_address_reaches_nothing_a_rule_names() {
    let daemon = Daemon::start();
    let port = listener("127.0.0.1:0");
    // The kernel sends a connect to 0.0.0.0 or :: to loopback (or the socket's own address):
    // a grant for loopback must not be the way around a deny, nor the reverse.
    let g = grant(
        daemon.dir.path(),
        "unspecified",
        "enforce",
        &[format!("127.0.0.1/32:{port}"), format!("0.0.0.0/0:{port}"), format!("[::]/0:{port}")],
        "",
    );
    let connect = |to: String| stdout(&daemon.run("zero-bot", "reach loopback", &g, &[PROBE, "connect", &to]));
    assert_eq!(connect(format!("127.0.0.1:{port}")), "ok");
    assert_eq!(connect(format!("0.0.0.0:{port}")), "EPERM", "0.0.0.0 is out of scope even under 0.0.0.0/0");
    assert_eq!(connect(format!("[::]:{port}")), "EPERM", ":: is out of scope");
    let udp = stdout(&daemon.run("zero-bot", "send", &g, &[PROBE, "udp", &format!("0.0.0.0:{port}")]));
    assert_eq!(udp, "EPERM");
    let event = daemon.wait_event("unspecified connect", |e| {
        e["kind"] == "network.connect" && e["object"]["address"] == "0.0.0.0" && e["decision"] == "denied"
    });
    assert_eq!(event["rule"], "default-deny");
}

/// A grant whose `network.connect` asks a human before each connect to `port` (127.0.0.1).
fn ask_connect_grant(dir: &std::path::Path, name: &str, port: u16) -> std::path::PathBuf {
    let g = grant(dir, name, "enforce", &[], "");
    let text = std::fs::read_to_string(&g).unwrap().replace(
        "network: {connect: []}",
        &format!("network: {{connect: [{{to: \"127.0.0.1:{port}\", action: ask}}]}}"),
    );
    std::fs::write(&g, text).unwrap();
    g
}

#[test]
fn without_bpf_lsm_an_ask_connect_cannot_be_held_and_is_refused() {
    let daemon = Daemon::start();
    let asked = listener("127.0.0.1:0");
    let g = ask_connect_grant(daemon.dir.path(), "net-ask", asked);
    let to = format!("127.0.0.1:{asked}");
    for verb in ["connect", "udp", "tfo"] {
        let out = daemon.run("asker", "reach the asked port", &g, &[PROBE, verb, &to]);
        assert_eq!(stdout(&out), "EPERM", "{verb}: {out:?}");
    }
    let event = daemon.wait_event("refused ask connect", |e| e["kind"] == "network.connect");
    assert_eq!(event["decision"], "denied");
    assert_eq!(event["rule"], format!("network.connect[0] 127.0.0.1/32:{asked} (ask)"));
    assert!(event["reason"].as_str().unwrap().contains("cannot be held here"), "{event}");
    assert!(daemon.events().iter().all(|e| e["kind"] != "approval.request"), "nothing was held");
    let send = daemon.wait_event("refused ask send", |e| e["kind"] == "network.send");
    assert!(send["reason"].as_str().unwrap().contains("datagram send"), "{send}");
}
