//! Outputs over TLS to receivers on an internal CA, with client certificates: a real rsyslogd
//! with `GnuTLS` (RFC 5425) and an HTTPS server built on Python's ssl module (OpenSSL) that
//! requires a client certificate. Certificates are made by the openssl command line for each
//! test. Also the other ways HTTP outputs authenticate (basic auth, Elasticsearch API keys) and
//! UDP syslog by host name.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use agent_guard_e2e::{Daemon, grant, listener, stdout};
use serde_json::Value;

const PROBE: &str = env!("CARGO_BIN_EXE_ag-probe");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl must run");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// An internal CA and, signed by it, a server certificate for `localhost` and 127.0.0.1 and a
/// client certificate; plus a second CA that signed nothing we use (a stranger).
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::Builder::new().prefix("agent-guard-pki-").tempdir().unwrap();
        let d = dir.path();
        for ca in ["ca", "stranger"] {
            openssl(
                d,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN=agent-guard test {ca}"),
                    "-keyout",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.pem"),
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            );
        }
        for (leaf, ext) in [
            ("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            std::fs::write(d.join(format!("{leaf}.ext")), ext).unwrap();
            openssl(
                d,
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    &format!("/CN={leaf}"),
                    "-keyout",
                    &format!("{leaf}.key"),
                    "-out",
                    &format!("{leaf}.csr"),
                ],
            );
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{leaf}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-out",
                    &format!("{leaf}.pem"),
                    "-extfile",
                    &format!("{leaf}.ext"),
                ],
            );
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One denied connect of a fresh task; the id of its event.
fn one_denial(daemon: &Daemon, agent: &str) -> String {
    let g = grant(daemon.dir.path(), agent, "enforce", &[], "");
    let target = format!("127.0.0.1:{}", listener("127.0.0.1:0"));
    assert_eq!(stdout(&daemon.run(agent, "try a port", &g, &[PROBE, "connect", &target])), "EPERM");
    daemon.wait_event("denial", |e| e["kind"] == "network.connect" && e["task"]["agent"] == agent)["event_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn syslog_over_tls_with_a_client_certificate_reaches_a_real_rsyslog() {
    let rsyslogd = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("rsyslogd is not installed: `cargo xtask test` installs Debian's rsyslog and rsyslog-gnutls");
    let pki = Pki::new();
    let dir = tempfile::Builder::new().prefix("agent-guard-rsyslog-tls-").tempdir().unwrap();
    let (tls, udp) = (free_port(), free_port());
    let received = dir.path().join("received.log");
    let conf = dir.path().join("rsyslog.conf");
    // x509/certvalid: a client must present a certificate the CA signed.
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{work}" maxMessageSize="64k" DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="{ca}" DefaultNetstreamDriverCertFile="{cert}" DefaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="x509/certvalid")
input(type="imtcp" address="127.0.0.1" port="{tls}")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{udp}")
template(name="fields" type="string" string="%inputname%|%app-name%|%msgid%|%msg%\n")
*.* action(type="omfile" file="{received}" template="fields")
"#,
            work = dir.path().display(),
            ca = pki.arg("ca.pem"),
            cert = pki.arg("server.pem"),
            key = pki.arg("server.key"),
            received = received.display()
        ),
    )
    .unwrap();
    let _rsyslog = Killed(
        Command::new(rsyslogd)
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stderr(std::fs::File::create(dir.path().join("rsyslogd.stderr")).unwrap())
            .spawn()
            .expect("start rsyslogd"),
    );
    wait_until("rsyslogd listening", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", tls)).is_ok()
    });
    // The TLS output by host name (the certificate names localhost); a second TLS output
    // without a client certificate, which the receiver must refuse; UDP by host name.
    let config = format!(
        "outputs:\n  - {{type: file, path: \"{{events}}\"}}\n  - {{type: syslog, name: tls, transport: tls, address: \"localhost:{tls}\", caFile: \"{ca}\", clientCert: \"{cert}\", clientKey: \"{key}\"}}\n  - {{type: syslog, name: anonymous, transport: tls, address: \"localhost:{tls}\", caFile: \"{ca}\"}}\n  - {{type: syslog, name: udp, transport: udp, address: \"localhost:{udp}\"}}\n",
        ca = pki.arg("ca.pem"),
        cert = pki.arg("client.pem"),
        key = pki.arg("client.key"),
    );
    let daemon = Daemon::start_configured(Some(&config), &[]);
    let id = one_denial(&daemon, "tls-syslog-bot");
    let text = wait_until_text(&received, |t| t.lines().filter(|l| l.contains(&id)).count() >= 2);
    let tls_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("imtcp|") && l.contains(&id)).collect();
    // Exactly one: the output with the client certificate. The anonymous one was refused.
    assert_eq!(tls_lines.len(), 1, "{text}");
    let fields: Vec<&str> = tls_lines[0].splitn(4, '|').collect();
    assert_eq!((fields[1], fields[2]), ("agent-guard", "network.connect"), "{text}");
    let msg: Value = serde_json::from_str(fields[3]).expect("MSG is the event, whole (octet-counted frame)");
    assert_eq!(msg["event_id"], id.as_str());
    assert!(text.lines().any(|l| l.starts_with("imudp|") && l.contains(&id)), "UDP by host name: {text}");
    let failed = daemon.wait_event("the anonymous output's failure", |e| {
        e["kind"] == "guard.output_failed" && e.to_string().contains("anonymous")
    });
    assert!(failed.to_string().contains("anonymous"), "{failed}");
}

fn wait_until_text(path: &Path, mut done: impl FnMut(&str) -> bool) -> String {
    let mut text = String::new();
    wait_until("the receiver's file", Duration::from_secs(30), || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        done(&text)
    });
    text
}

/// An HTTPS receiver on 127.0.0.1:`port` (Python's ssl: OpenSSL) that requires a client
/// certificate from `pki`'s CA, answers `answer` and appends "AUTHORIZATION<TAB>PATH<TAB>BODY"
/// lines to `log`.
fn https_receiver(pki: &Pki, port: u16, answer: &str, log: &Path) -> Killed {
    let script = r"
import http.server, ssl, sys
port, ca, cert, key, answer, log = sys.argv[1:7]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get('Content-Length', 0))).decode()
        with open(log, 'a') as f:
            f.write('%s\t%s\t%s\n' % (self.headers.get('Authorization', ''), self.path, body.replace('\n', ' ')))
        data = answer.encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
context.load_verify_locations(ca)
context.verify_mode = ssl.CERT_REQUIRED
server = http.server.ThreadingHTTPServer(('127.0.0.1', int(port)), Handler)
server.socket = context.wrap_socket(server.socket, server_side=True)
print('ready', flush=True)
server.serve_forever()
";
    let mut child = Command::new("/usr/bin/python3")
        .args([
            "-c",
            script,
            &port.to_string(),
            &pki.arg("ca.pem"),
            &pki.arg("server.pem"),
            &pki.arg("server.key"),
            answer,
        ])
        .arg(log)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    Killed(child)
}

#[test]
fn https_outputs_trust_an_internal_ca_present_a_client_certificate_and_authenticate() {
    let pki = Pki::new();
    let (hook_port, es_port, hec_port) = (free_port(), free_port(), free_port());
    let (hook_log, es_log, hec_log) = (pki.path("hook.log"), pki.path("es.log"), pki.path("hec.log"));
    let _hook = https_receiver(&pki, hook_port, "{}", &hook_log);
    let _es = https_receiver(&pki, es_port, r#"{"errors":false,"items":[]}"#, &es_log);
    let _hec = https_receiver(&pki, hec_port, r#"{"text":"Success","code":0}"#, &hec_log);
    std::fs::write(pki.path("password"), "pa55word\n").unwrap();
    std::fs::write(pki.path("token"), "s3cret\n").unwrap();
    std::fs::write(pki.path("api-key"), "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==\n").unwrap();
    let tls = format!(
        "caFile: \"{}\", clientCert: \"{}\", clientKey: \"{}\"",
        pki.arg("ca.pem"),
        pki.arg("client.pem"),
        pki.arg("client.key")
    );
    let config = format!(
        "outputs:\n  - {{type: file, path: \"{{events}}\"}}\n  - {{type: http, name: hook, flavor: webhook, url: \"https://localhost:{hook_port}/in\", username: ops, passwordFile: \"{pw}\", {tls}, flush: 100ms, spoolDir: \"{{dir}}/hook\"}}\n  - {{type: http, name: es, flavor: elasticsearch, url: \"https://127.0.0.1:{es_port}/\", apiKeyFile: \"{key}\", {tls}, flush: 100ms, spoolDir: \"{{dir}}/es\"}}\n  - {{type: http, name: hec, flavor: splunk_hec, url: \"https://localhost:{hec_port}/\", tokenFile: \"{token}\", {tls}, flush: 100ms, spoolDir: \"{{dir}}/hec\"}}\n  - {{type: http, name: stranger, flavor: webhook, url: \"https://localhost:{hook_port}/stranger\", caFile: \"{stranger}\", flush: 100ms, spoolDir: \"{{dir}}/stranger\"}}\n",
        pw = pki.arg("password"),
        key = pki.arg("api-key"),
        token = pki.arg("token"),
        stranger = pki.arg("stranger.pem"),
    );
    let daemon = Daemon::start_configured(Some(&config), &[]);
    let id = one_denial(&daemon, "https-bot");
    let hook = wait_until_text(&hook_log, |t| t.contains(&id));
    let es = wait_until_text(&es_log, |t| t.contains(&id));
    let hec = wait_until_text(&hec_log, |t| t.contains(&id));
    let line = hec.lines().find(|l| l.contains(&id)).unwrap();
    assert!(line.starts_with("Splunk s3cret\t/services/collector/event\t"), "{line}");
    let line = hook.lines().find(|l| l.contains(&id)).unwrap();
    // "ops:pa55word", base64.
    assert!(line.starts_with("Basic b3BzOnBhNTV3b3Jk\t/in\t"), "{line}");
    let line = es.lines().find(|l| l.contains(&id)).unwrap();
    assert!(
        line.starts_with("ApiKey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==\t/_bulk\t"),
        "{line}"
    );
    // The output that trusts another CA never delivers, and says so.
    let failed = daemon.wait_event("the stranger output's failure", |e| {
        e["kind"] == "guard.output_failed" && e.to_string().contains("stranger")
    });
    assert!(failed.to_string().contains("stranger"), "{failed}");
    assert!(!hook.contains("/stranger"), "{hook}");
}

#[test]
fn config_check_reads_what_the_outputs_need_and_names_the_line() {
    let pki = Pki::new();
    let check = |text: &str| {
        let path = pki.path("check.yaml");
        std::fs::write(&path, text).unwrap();
        Command::new(agent_guard_e2e::agent_guard_bin()).args(["config", "check"]).arg(&path).output().unwrap()
    };
    let good = format!(
        "outputs:\n  - {{type: syslog, transport: tls, address: \"logs.example:6514\", caFile: \"{}\", clientCert: \"{}\", clientKey: \"{}\"}}\n",
        pki.arg("ca.pem"),
        pki.arg("client.pem"),
        pki.arg("client.key")
    );
    let out = check(&good);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok (outputs: syslog;"), "{out:?}");
    // A CA file that is not there: refused offline, as the daemon would refuse to start.
    let out = check(&good.replace("ca.pem", "missing.pem"));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.pem"), "{out:?}");
    // A bad value, with its line and column.
    let out = check(
        "aggregation: {window: 0s}\noutputs:\n  - type: http\n    flavor: webhook\n    url: 'https://x'\n    batch: 0\n",
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 6, column 5: outputs[0].batch: must be at least 1"), "{err}");
}
