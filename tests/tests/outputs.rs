//! Outputs end to end: the real daemon, real denied connects, real receivers (an HTTP server
//! in this process, a real rsyslogd from Debian), the audit store read by the CLI.

use std::{
    collections::BTreeSet,
    net::TcpListener,
    process::{Child, Command},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use agent_guard_e2e::{Daemon, agent_guard_bin, grant, listener, stdout};
use serde_json::Value;

const PROBE: &str = env!("CARGO_BIN_EXE_ag-probe");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `n` closed loopback ports to connect to: every connect is out of scope, one event each.
fn targets(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("127.0.0.1:{}", 20_000 + i)).collect()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn rebind(port: u16) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(("127.0.0.1", port)) {
            Ok(listener) => return listener,
            Err(err) => {
                assert!(Instant::now() < deadline, "rebind the webhook port {port}: {err}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn ids_of(events: &[Value], kind: &str) -> BTreeSet<String> {
    events.iter().filter(|e| e["kind"] == kind).map(|e| e["event_id"].as_str().unwrap().to_string()).collect()
}

/// A webhook receiver that records the event ids it was sent and, when `die_after` requests
/// were served, stops listening (its port refuses connections until it is started again).
/// `listener` is bound by the caller: a port picked free and bound later could be taken in
/// between by a parallel test or an outgoing connection.
fn webhook(
    listener: TcpListener,
    received: Arc<Mutex<Vec<String>>>,
    die_after: Option<usize>,
) -> std::thread::JoinHandle<()> {
    let server = tiny_http::Server::from_listener(listener, None).expect("serve on the webhook listener");
    std::thread::spawn(move || {
        let mut requests = 0;
        for mut request in server.incoming_requests() {
            let mut body = String::new();
            request.as_reader().read_to_string(&mut body).unwrap();
            let batch: Vec<Value> = serde_json::from_str(&body).expect("a webhook body is a JSON array");
            received.lock().unwrap().extend(batch.iter().map(|e| e["event_id"].as_str().unwrap().to_string()));
            request.respond(tiny_http::Response::empty(200)).unwrap();
            requests += 1;
            if die_after == Some(requests) {
                return;
            }
        }
    })
}

#[test]
fn killing_the_http_receiver_during_a_burst_loses_no_event() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    // The receiver takes one batch of the burst, then dies.
    let first = webhook(listener, received.clone(), Some(1));
    let config = format!(
        "outputs:\n  - {{type: file, path: \"{{events}}\"}}\n  - {{type: http, name: siem, flavor: webhook, url: \"http://127.0.0.1:{port}/ingest\", batch: 20, flush: 100ms, timeout: 2s, spoolDir: \"{{dir}}/spool\"}}\naggregation: {{window: 0s}}\n"
    );
    let daemon = Daemon::start_configured(Some(&config), &[]);
    let g = grant(daemon.dir.path(), "burst", "enforce", &[], "");
    let mut args = vec![PROBE, "connect-each"];
    let burst = targets(200);
    args.extend(burst.iter().map(String::as_str));
    let out = daemon.run("burst-bot", "flood", &g, &args);
    assert!(stdout(&out).lines().all(|l| l == "EPERM"), "every connect refused: {out:?}");
    first.join().unwrap();
    // With the receiver down the daemon retries, and says so.
    daemon.wait_event("guard.output_failed", |e| e["kind"] == "guard.output_failed");
    let taken_while_up = received.lock().unwrap().len();
    assert!(taken_while_up <= 20, "the receiver took one batch before it died, not {taken_while_up}");

    // The same port again, where the daemon's spool retries.
    let second = webhook(rebind(port), received.clone(), None);
    wait_until("every denial in the events file", Duration::from_secs(10), || {
        ids_of(&daemon.events(), "network.connect").len() == 200
    });
    let denials = ids_of(&daemon.events(), "network.connect");
    wait_until("every denial delivered after the receiver came back", Duration::from_secs(60), || {
        let got: BTreeSet<String> = received.lock().unwrap().iter().cloned().collect();
        denials.is_subset(&got)
    });
    // At-least-once: every event arrived; duplicates (a batch resent) carry the same id.
    let got = received.lock().unwrap().clone();
    let unique: BTreeSet<&String> = got.iter().collect();
    assert!(unique.len() >= 200);
    drop(second);
}

fn wait_for_file(path: &std::path::Path, mut done: impl FnMut(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{} never had what was expected; it has:\n{text}", path.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Rsyslog(Child);

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn syslog_over_udp_tcp_and_a_unix_socket_reaches_a_real_rsyslog() {
    let rsyslogd =
        ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"].into_iter().find(|p| std::path::Path::new(p).exists()).expect(
            "rsyslogd is not installed: `cargo xtask test` installs Debian's rsyslog; this test cannot run without it",
        );
    let dir = tempfile::Builder::new().prefix("agent-guard-rsyslog-").tempdir().unwrap();
    let (udp, tcp) = (free_port(), free_port());
    let socket = dir.path().join("log.sock");
    let received = dir.path().join("received.log");
    let conf = dir.path().join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{work}" maxMessageSize="64k")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{udp}")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{socket}" UseSpecialParser="off" ParseHostname="on")
template(name="fields" type="string" string="%inputname%|%protocol-version%|%app-name%|%msgid%|%structured-data%|%msg%\n")
*.* action(type="omfile" file="{received}" template="fields")
"#,
            work = dir.path().display(),
            socket = socket.display(),
            received = received.display()
        ),
    )
    .unwrap();
    let pid_file = dir.path().join("rsyslogd.pid");
    let _rsyslog = Rsyslog(
        Command::new(rsyslogd)
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(&pid_file)
            .stderr(std::fs::File::create(dir.path().join("rsyslogd.stderr")).unwrap())
            .spawn()
            .expect("start rsyslogd"),
    );
    wait_until("rsyslogd listening", Duration::from_secs(20), || {
        socket.exists() && std::net::TcpStream::connect(("127.0.0.1", tcp)).is_ok()
    });

    let config = format!(
        "outputs:\n  - {{type: file, path: \"{{events}}\"}}\n  - {{type: syslog, name: udp, transport: udp, address: \"127.0.0.1:{udp}\"}}\n  - {{type: syslog, name: tcp, transport: tcp, address: \"127.0.0.1:{tcp}\", format: ocsf}}\n  - {{type: syslog, name: unix, transport: unix, address: \"{}\"}}\n",
        socket.display()
    );
    let daemon = Daemon::start_configured(Some(&config), &[]);
    let g = grant(daemon.dir.path(), "syslogged", "enforce", &[], "");
    let target = format!("127.0.0.1:{}", listener("127.0.0.1:0"));
    let out = daemon.run("syslog-bot", "try a port", &g, &[PROBE, "connect", &target]);
    assert_eq!(stdout(&out), "EPERM");
    let denial = daemon.wait_event("denial", |e| e["kind"] == "network.connect");
    let id = denial["event_id"].as_str().unwrap().to_string();

    let text = wait_for_file(&received, |t| t.lines().filter(|l| l.contains(&id)).count() >= 3);
    for input in ["imudp", "imtcp", "imuxsock"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{input}|")) && l.contains(&id))
            .unwrap_or_else(|| panic!("no message with event {id} from {input}:\n{text}"));
        let fields: Vec<&str> = line.splitn(6, '|').collect();
        // rsyslog parsed it as RFC 5424: version 1, our app name, the kind as MSGID, our
        // structured data.
        assert_eq!(fields[1], "1", "RFC 5424 version from {input}: {line}");
        assert_eq!(fields[2], "agent-guard", "{line}");
        assert_eq!(fields[3], "network.connect", "{line}");
        assert!(fields[4].starts_with("[agent-guard@32473 ") && fields[4].contains(&format!("event_id=\"{id}\"")));
        assert!(fields[4].contains("decision=\"denied\""), "{line}");
        let msg: Value =
            serde_json::from_str(fields[5]).unwrap_or_else(|e| panic!("{input} MSG is not JSON ({e}): {line}"));
        if input == "imtcp" {
            assert_eq!(msg["class_uid"], 4001, "the tcp output is configured for OCSF: {line}");
            assert_eq!(msg["metadata"]["uid"], id.as_str());
        } else {
            assert_eq!(msg["event_id"], id.as_str());
            assert_eq!(msg["task"]["agent"], "syslog-bot");
        }
    }
}

#[test]
#[expect(clippy::float_cmp, reason = "prometheus counters are small integers, exact in f64")]
fn metrics_count_events_by_kind_and_decision() {
    let port = free_port();
    let config =
        format!("outputs: [{{type: file, path: \"{{events}}\"}}]\nmetrics: {{listen: \"127.0.0.1:{port}\"}}\n");
    let daemon = Daemon::start_configured(Some(&config), &[]);
    let g = grant(daemon.dir.path(), "metered", "enforce", &[], "");
    let mut args = vec![PROBE, "connect-each"];
    let three = targets(3);
    args.extend(three.iter().map(String::as_str));
    daemon.run("metrics-bot", "try ports", &g, &args);
    daemon.wait_event("task close", |e| e["kind"] == "task.close");
    let text = ureq::get(&format!("http://127.0.0.1:{port}/metrics")).call().unwrap().into_string().unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
    };
    assert_eq!(value("agent_guard_events_total{kind=\"network.connect\",decision=\"denied\"}"), 3.0);
    assert_eq!(value("agent_guard_events_total{kind=\"task.open\",decision=\"none\"}"), 1.0);
    assert_eq!(value("agent_guard_open_tasks"), 0.0);
    assert_eq!(value("agent_guard_pending_approvals"), 0.0);
    assert!(value("agent_guard_map_capacity{map=\"TASKS\"}") > 0.0);
    assert_eq!(value("agent_guard_ring_buffer_drops_total"), 0.0);
}

#[test]
fn repeated_flagged_actions_are_aggregated_but_denials_never_are() {
    let metrics = free_port();
    let config = format!(
        "outputs: [{{type: file, path: \"{{events}}\"}}]\naggregation: {{window: 1s}}\nmetrics: {{listen: \"127.0.0.1:{metrics}\"}}\n"
    );
    let daemon = Daemon::start_configured(Some(&config), &[]);
    let port = listener("127.0.0.1:0");
    let same = format!("127.0.0.1:{port}");
    let mut args = vec![PROBE, "connect-each"];
    args.extend(std::iter::repeat_n(same.as_str(), 50));
    let audit = grant(daemon.dir.path(), "looping", "audit", &[], "");
    daemon.run("loop-bot", "retry forever", &audit, &args);
    let aggregate = daemon.wait_event("aggregate", |e| e["aggregated"] == true);
    assert_eq!(aggregate["count"], 49, "one event passed, the 49 repeats are folded: {aggregate}");
    assert_eq!(aggregate["decision"], "flagged");
    let flagged = daemon.events().into_iter().filter(|e| e["kind"] == "network.connect").count();
    assert_eq!(flagged, 2, "the first flagged connect and its aggregate");
    // Metrics count the 50 connects once each: the aggregate is not counted again.
    let text = ureq::get(&format!("http://127.0.0.1:{metrics}/metrics")).call().unwrap().into_string().unwrap();
    assert!(text.contains("agent_guard_events_total{kind=\"network.connect\",decision=\"flagged\"} 50\n"), "{text}");
    assert!(text.contains("agent_guard_aggregated_events_total 49\n"), "{text}");
    assert!(!text.contains("kind=\"network.connect\",decision=\"none\""), "{text}");

    let enforce = grant(daemon.dir.path(), "looping-enforced", "enforce", &[], "");
    daemon.run("loop-bot", "retry forever", &enforce, &args);
    wait_until("50 denials", Duration::from_secs(10), || {
        daemon.events().iter().filter(|e| e["kind"] == "network.connect" && e["decision"] == "denied").count() == 50
    });
}

#[test]
fn the_audit_store_reports_a_finished_task_as_evidence() {
    let mut daemon = Daemon::start();
    let allowed = listener("127.0.0.1:0");
    let other = listener("127.0.0.1:0");
    let g = grant(
        daemon.dir.path(),
        "evidence",
        "enforce",
        &[format!("127.0.0.1/32:{allowed}"), "10.9.9.9/32:443".into()],
        "",
    );
    let out = daemon.run(
        "report-bot",
        "summarise ticket 4412",
        &g,
        &[PROBE, "connect-each", &format!("127.0.0.1:{allowed}"), &format!("127.0.0.1:{other}")],
    );
    assert_eq!(stdout(&out), "ok\nEPERM");
    let close = daemon.wait_event("task close", |e| e["kind"] == "task.close");
    let task = close["task"]["id"].as_u64().unwrap().to_string();
    // The kernel reported the first use of each allowed access: the close says which rules
    // were used, which never were, and what was reached.
    let usage = &close["usage"];
    let used: Vec<&str> = usage["used"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    let unused: Vec<&str> = usage["unused"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(used.contains(&format!("network.connect[0] 127.0.0.1/32:{allowed} (allow)").as_str()), "{usage}");
    assert!(unused.contains(&"network.connect[1] 10.9.9.9/32:443 (allow)"), "{usage}");
    assert!(used.iter().any(|r| r.starts_with("exec ")), "the probe's exec was allowed by an exec rule: {usage}");
    assert_eq!(usage["destinations"][format!("127.0.0.1:{allowed}/tcp")], 1, "{usage}");
    let store = daemon.dir.path().join("audit.db");
    let cli = |args: &[&str]| {
        let out = Command::new(agent_guard_bin()).args(args).arg("--store").arg(&store).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    // The store is written in batches: wait for the close to land.
    wait_until("task.close in the store", Duration::from_secs(10), || {
        cli(&["audit", "--task", &task, "--kind", "task.close", "--json"]).contains("task.close")
    });
    let report: Value = serde_json::from_str(&cli(&["report", "--task", &task, "--format", "json"])).unwrap();
    assert_eq!(report["agent"], "report-bot");
    assert_eq!(report["intent"], "summarise ticket 4412");
    assert_eq!(report["grant"]["name"], "evidence");
    assert!(report["grant"]["issued_by"].to_string().contains("uid"), "who issued it: {}", report["grant"]);
    let findings = report["findings"].to_string();
    assert!(findings.contains(&format!("127.0.0.1:{other}")) && findings.contains("default-deny"), "{findings}");
    assert_eq!(report["ended"]["how"], "closed");
    // The least-privilege suggestion drops the rule never used, and keeps the used one.
    let narrowed = report["least_privilege"]["grant_yaml"].as_str().expect("a narrower grant");
    assert!(!narrowed.contains("10.9.9.9") && narrowed.contains(&format!("127.0.0.1/32:{allowed}")), "{narrowed}");
    let destinations = report["touched"]["destinations"].to_string();
    assert!(destinations.contains(&format!("127.0.0.1:{allowed}/tcp")), "{destinations}");
    let markdown = cli(&["report", "--task", &task, "--format", "md"]);
    assert!(markdown.contains("summarise ticket 4412") && markdown.contains("default-deny"), "{markdown}");
    let html = cli(&["report", "--task", &task, "--format", "html"]);
    assert!(html.contains("<html") && html.contains("report-bot"));
    let denied = cli(&["audit", "--task", &task, "--decision", "denied", "--json"]);
    assert_eq!(denied.lines().count(), 1, "{denied}");
    // Finished tasks stay listed, from the store, with the daemon gone too.
    daemon.stop();
    let listed = cli(&["task", "list", "--all"]);
    assert!(listed.contains("report-bot") && listed.contains("evidence"), "{listed}");
}

/// Requests an HTTP receiver got: (url, authorization header, content type, body).
type Requests = Arc<Mutex<Vec<(String, String, String, String)>>>;

fn recording_receiver(port: u16, answer: &'static str) -> Requests {
    let server = tiny_http::Server::http(("127.0.0.1", port)).expect("bind the receiver");
    let requests: Requests = Arc::default();
    let seen = requests.clone();
    std::thread::spawn(move || {
        for mut request in server.incoming_requests() {
            let header = |name: &str| {
                request
                    .headers()
                    .iter()
                    .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
                    .map(|h| h.value.to_string())
                    .unwrap_or_default()
            };
            let (auth, content_type) = (header("Authorization"), header("Content-Type"));
            let mut body = String::new();
            request.as_reader().read_to_string(&mut body).unwrap();
            seen.lock().unwrap().push((request.url().to_string(), auth, content_type, body));
            request.respond(tiny_http::Response::from_string(answer)).unwrap();
        }
    });
    requests
}

#[test]
fn splunk_hec_and_elasticsearch_bulk_get_their_own_formats() {
    let (hec_port, es_port) = (free_port(), free_port());
    let hec = recording_receiver(hec_port, r#"{"text":"Success","code":0}"#);
    let es = recording_receiver(es_port, r#"{"errors":false,"items":[]}"#);
    // (Tokens go over https only: outputs_tls.rs checks the HEC token's header.)
    let config = format!(
        "outputs:\n  - {{type: file, path: \"{{events}}\"}}\n  - {{type: http, name: hec, flavor: splunk_hec, url: \"http://127.0.0.1:{hec_port}/\", flush: 100ms, spoolDir: \"{{dir}}/hec\"}}\n  - {{type: http, name: es, flavor: elasticsearch, url: \"http://127.0.0.1:{es_port}/\", index: ag-test, flush: 100ms, spoolDir: \"{{dir}}/es\", format: ocsf}}\n"
    );
    let daemon = Daemon::start_configured(Some(&config), &[]);
    let g = grant(daemon.dir.path(), "formats", "enforce", &[], "");
    let target = format!("127.0.0.1:{}", listener("127.0.0.1:0"));
    assert_eq!(stdout(&daemon.run("format-bot", "try a port", &g, &[PROBE, "connect", &target])), "EPERM");
    let id = daemon.wait_event("denial", |e| e["kind"] == "network.connect")["event_id"].as_str().unwrap().to_string();
    let delivered = |requests: &Requests| requests.lock().unwrap().iter().any(|(_, _, _, body)| body.contains(&id));
    wait_until("both receivers got the denial", Duration::from_secs(20), || delivered(&hec) && delivered(&es));

    let hec = hec.lock().unwrap();
    let (url, _, _, body) = hec.iter().find(|(_, _, _, body)| body.contains(&id)).unwrap();
    assert_eq!(url, "/services/collector/event");
    // HEC: one JSON object per event, concatenated, the event under "event".
    let objects: Vec<Value> =
        serde_json::Deserializer::from_str(body).into_iter::<Value>().map(|v| v.expect("HEC objects")).collect();
    let ours = objects.iter().find(|o| o["event"]["event_id"] == id.as_str()).expect("our event");
    assert_eq!(ours["sourcetype"], "agent-guard:event");
    assert!(ours["time"].as_f64().unwrap() > 1.7e9, "epoch seconds: {ours}");

    let es = es.lock().unwrap();
    let (url, _, content_type, body) = es.iter().find(|(_, _, _, body)| body.contains(&id)).unwrap();
    assert_eq!(url, "/_bulk");
    assert_eq!(content_type, "application/x-ndjson");
    // _bulk: an action line then the document, the event id as the document id.
    let lines: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).expect("NDJSON")).collect();
    let at = lines.iter().position(|l| l["create"]["_id"] == id.as_str()).expect("a create action for our event");
    assert_eq!(lines[at]["create"]["_index"], "ag-test");
    assert_eq!(lines[at + 1]["metadata"]["uid"], id.as_str(), "the document is the OCSF event");
    assert_eq!(lines[at + 1]["class_uid"], 4001);
}
