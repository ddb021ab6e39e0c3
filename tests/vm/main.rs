//! The end-to-end suite that needs BPF LSM. It runs inside the qemu VM booted by
//! `cargo xtask vm-test` with the real daemon, real processes and real grant files; on a
//! kernel without BPF LSM the daemon (started with `--require lsm`) refuses to start and every
//! case fails loudly.

use std::path::{Path, PathBuf};

mod containment;
mod limits;
mod restart;

use agent_guard_e2e::{Daemon, grant, listener, stdout};

const PROBE: &str = env!("CARGO_BIN_EXE_ag-probe");
/// The suite's daemon refuses held actions nobody answers within this.
const APPROVAL_TIMEOUT_SECS: u64 = 6;

/// What every process here needs to start: the loader, libraries, the probe itself, and
/// /proc (Rust's runtime reads /proc/self/maps).
fn base_files(extra_read: &[&Path], write: &[&Path], exec: &[&str]) -> String {
    let probe_dir = Path::new(PROBE).parent().unwrap().display().to_string();
    let mut read: Vec<String> = ["/lib/**", "/lib64/**", "/usr/**", "/etc/**", "/proc/**", "/sys/**", "/dev/**"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    read.push(format!("{probe_dir}/**"));
    read.extend(extra_read.iter().map(|p| p.display().to_string()));
    let quote = |v: Vec<String>| v.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
    let mut exec_list = vec![format!("{probe_dir}/*")];
    exec_list.extend(exec.iter().map(|s| s.to_string()));
    format!(
        "  files: {{read: [{}], write: [{}]}}\n  exec: [{}]\n",
        quote(read),
        quote(write.iter().map(|p| p.display().to_string()).collect()),
        quote(exec_list)
    )
}

/// One daemon for the whole suite: under emulation, verifying the programs is the slow part
/// of a start. Each test works in its own directory, with its own grant and agent names.
/// If it cannot start, the first test shows why and the others fail at once.
fn start() -> &'static Daemon {
    static DAEMON: std::sync::OnceLock<Option<Daemon>> = std::sync::OnceLock::new();
    let daemon = DAEMON.get_or_init(|| {
        std::panic::catch_unwind(|| {
            Daemon::start_with(&["--require", "lsm", "--approval-timeout", &format!("{}s", APPROVAL_TIMEOUT_SECS)])
        })
        .map_err(|panic| eprintln!("{}", panic.downcast_ref::<String>().map_or("daemon start failed", |s| s)))
        .ok()
    });
    daemon.as_ref().expect("the daemon did not start with --require lsm (see the first failing test)")
}

struct Files {
    /// This test's directory (removed at the end of the test).
    dir: tempfile::TempDir,
    allowed: PathBuf,
    secret: PathBuf,
    link_to_secret: PathBuf,
}

impl Files {
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn files(daemon: &Daemon) -> Files {
    let temp = tempfile::tempdir_in(daemon.dir.path()).unwrap();
    let dir = temp.path();
    std::fs::create_dir_all(dir.join("work")).unwrap();
    let allowed = dir.join("work/notes.txt");
    let secret = dir.join("secret.txt");
    let link_to_secret = dir.join("work/link");
    std::fs::write(&allowed, "notes").unwrap();
    std::fs::write(&secret, "secret").unwrap();
    std::os::unix::fs::symlink(&secret, &link_to_secret).unwrap();
    Files { dir: temp, allowed, secret, link_to_secret }
}

#[test]
fn status_reports_lsm_for_every_capability() {
    let daemon = start();
    let status: serde_json::Value = serde_json::from_slice(&daemon.cli(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["enforcement"]["file"], "lsm");
    assert_eq!(status["enforcement"]["exec"], "lsm");
    assert_eq!(status["enforcement"]["network"], "lsm");
}

#[test]
fn out_of_scope_opens_are_refused_in_the_kernel_on_the_resolved_file() {
    let daemon = start();
    let f = files(daemon);
    let work = f.path().join("work");
    let g = grant(f.path(), "lsm-files", "enforce", &[], &base_files(&[&work.join("**")], &[], &[]));
    let open = |path: &Path, mode: &str| {
        stdout(&daemon.run("reader", "read notes", &g, &[PROBE, "open", path.to_str().unwrap(), mode]))
    };
    assert_eq!(open(&f.allowed, "r"), "ok");
    assert_eq!(open(&f.secret, "r"), "EPERM", "a file outside the grant");
    assert_eq!(open(&f.link_to_secret, "r"), "EPERM", "a symlink inside the grant to a file outside it");
    assert_eq!(open(&f.allowed, "w"), "EPERM", "write access the grant does not give");
    let sneaky = format!("{}/../secret.txt", work.display());
    assert_eq!(open(Path::new(&sneaky), "r"), "EPERM", "'..' out of the granted tree");

    let event = daemon
        .wait_event("denied open", |e| e["kind"] == "file.open" && e["object"]["path"] == f.secret.to_str().unwrap());
    assert_eq!(event["decision"], "denied");
    assert_eq!(event["enforcement"], "lsm");
    assert_eq!(event["task"]["intent"], "read notes");
    assert_eq!(event["object"]["access"], serde_json::json!(["read"]));
    // The untagged harness reads the secret freely.
    assert_eq!(std::fs::read_to_string(&f.secret).unwrap(), "secret");
    let direct = std::process::Command::new(PROBE).args(["open", f.secret.to_str().unwrap(), "r"]).output().unwrap();
    assert_eq!(stdout(&direct), "ok");
}

#[test]
fn audit_mode_flags_out_of_scope_opens_and_lets_them_through() {
    let daemon = start();
    let f = files(daemon);
    let g = grant(f.path(), "lsm-audit", "audit", &[], &base_files(&[], &[], &[]));
    let out = daemon.run("auditor", "look around", &g, &[PROBE, "open", f.secret.to_str().unwrap(), "r"]);
    assert_eq!(stdout(&out), "ok");
    let event = daemon
        .wait_event("flagged open", |e| e["kind"] == "file.open" && e["object"]["path"] == f.secret.to_str().unwrap());
    assert_eq!(event["decision"], "flagged");
    assert_eq!(event["enforcement"], "lsm");
    assert_eq!(event["policy_decision"], "flag");
}

#[test]
fn out_of_scope_execs_are_refused_and_reported_with_argv() {
    let daemon = start();
    let f = files(daemon);
    let g = grant(f.path(), "lsm-exec", "enforce", &[], &base_files(&[], &[], &[]));
    let out = daemon.run("runner", "run busybox", &g, &[PROBE, "exec", "/bin/busybox", "true", "--flag"]);
    assert_eq!(stdout(&out), "EPERM", "{out:?}");
    let event = daemon.wait_event("denied exec", |e| e["kind"] == "process.exec" && e["task"]["agent"] == "runner");
    assert_eq!(event["decision"], "denied");
    assert_eq!(event["enforcement"], "lsm");
    assert_eq!(event["object"]["path"], "/bin/busybox");
    assert_eq!(event["process"]["argv"], serde_json::json!(["/bin/busybox", "true", "--flag"]));

    let allowed = grant(f.path(), "lsm-exec-ok", "enforce", &[], &base_files(&[], &[], &["/bin/busybox"]));
    let out = daemon.run("runner", "run busybox", &allowed, &[PROBE, "exec", "/bin/busybox", "true"]);
    assert_eq!(stdout(&out), "ok", "{out:?}");
}

#[test]
fn connects_are_refused_by_the_lsm_hook() {
    let daemon = start();
    let allowed = listener("127.0.0.1:0");
    let other = listener("127.0.0.1:0");
    let f = files(daemon);
    let g = grant(f.path(), "lsm-net", "enforce", &[format!("127.0.0.1/32:{allowed}")], &base_files(&[], &[], &[]));
    let ok = daemon.run("vm-bot", "in scope", &g, &[PROBE, "connect", &format!("127.0.0.1:{allowed}")]);
    assert_eq!(stdout(&ok), "ok", "{ok:?}");
    let denied = daemon.run("vm-bot", "out of scope", &g, &[PROBE, "connect", &format!("127.0.0.1:{other}")]);
    assert_eq!(stdout(&denied), "EPERM", "{denied:?}");
    let event =
        daemon.wait_event("denied connect", |e| e["kind"] == "network.connect" && e["task"]["agent"] == "vm-bot");
    assert_eq!(event["enforcement"], "lsm");
    assert_eq!(event["object"]["port"], other);
}

#[test]
fn reopening_through_proc_self_fd_is_judged_on_the_file() {
    let daemon = start();
    let f = files(daemon);
    let work = f.path().join("work");
    let g = grant(f.path(), "lsm-reopen", "enforce", &[], &base_files(&[&work.join("**")], &[], &[]));
    let out = daemon.run("reader", "read only", &g, &[PROBE, "reopen-rw", f.allowed.to_str().unwrap()]);
    assert_eq!(stdout(&out), "EPERM", "a read-only grant does not become writable through /proc/self/fd");
}

#[test]
fn scripts_need_exec_on_the_script_and_on_its_interpreter() {
    let daemon = start();
    let f = files(daemon);
    let script = f.path().join("work/job.sh");
    std::fs::write(&script, "#!/bin/busybox sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let s = script.to_str().unwrap();
    // The interpreter reads the script: it is readable in every case; only exec differs.
    let run = |name: &str, exec: &[&str]| {
        let g = grant(f.path(), name, "enforce", &[], &base_files(&[&script], &[], exec));
        stdout(&daemon.run("scripter", "run a script", &g, &[PROBE, "exec", s]))
    };
    assert_eq!(run("both", &[s, "/bin/busybox"]), "ok");
    assert_eq!(run("interpreter-only", &["/bin/busybox"]), "EPERM", "the script itself is not granted");
    assert_eq!(run("script-only", &[s]), "EPERM", "its interpreter is not granted");
}

#[test]
fn an_anonymous_memfd_cannot_be_executed_unless_granted() {
    let daemon = start();
    let f = files(daemon);
    // The probe reads the binary to copy it: readable and executable at its path.
    let busybox = Path::new("/bin/busybox");
    let g = grant(f.path(), "memfd", "enforce", &[], &base_files(&[busybox], &[], &["/bin/busybox"]));
    // The copy of a granted binary has no granted path: "/memfd:agent (deleted)".
    let out = daemon.run("memfd-bot", "run from memory", &g, &[PROBE, "memfd-exec", "/bin/busybox"]);
    assert_eq!(stdout(&out), "EPERM", "{out:?}");
    let event = daemon.wait_event("memfd exec", |e| e["kind"] == "process.exec" && e["task"]["agent"] == "memfd-bot");
    assert!(event["object"]["path"].as_str().unwrap().starts_with("/memfd:agent"), "{event}");
}

#[test]
fn truncating_a_read_only_file_is_refused_before_it_happens() {
    let daemon = start();
    let f = files(daemon);
    let work = f.path().join("work");
    let g = grant(f.path(), "trunc", "enforce", &[], &base_files(&[&work.join("**")], &[], &[]));
    let out = daemon.run("trunc-bot", "truncate", &g, &[PROBE, "truncate", f.allowed.to_str().unwrap()]);
    assert_eq!(stdout(&out), "EPERM");
    assert_eq!(std::fs::read_to_string(&f.allowed).unwrap(), "notes", "the file is intact");
}

#[test]
fn a_hard_link_inside_the_granted_tree_gives_access_to_its_file() {
    // Grants are by path: an existing hard link inside a granted tree is that tree's file.
    // (Creating links from inside a task is not refused yet: the file-tree hooks are the next stage.)
    let daemon = start();
    let f = files(daemon);
    let work = f.path().join("work");
    let link = work.join("hard-secret");
    std::fs::hard_link(&f.secret, &link).unwrap();
    let g = grant(f.path(), "hardlink", "enforce", &[], &base_files(&[&work.join("**")], &[], &[]));
    let open = |p: &Path| stdout(&daemon.run("linker", "read", &g, &[PROBE, "open", p.to_str().unwrap(), "r"]));
    assert_eq!(open(&link), "ok");
    assert_eq!(open(&f.secret), "EPERM");
}

#[test]
fn an_agent_cannot_kill_trace_or_reprogram_the_guard() {
    let daemon = start();
    let f = files(daemon);
    let g = grant(f.path(), "tamper", "audit", &[], &base_files(&[], &[], &["/bin/busybox"]));
    let pid = daemon.pid().to_string();
    // Audit mode does not matter: self-protection is not part of the grant.
    let kill = daemon.run("tamperer", "stop the guard", &g, &["/bin/busybox", "kill", "-9", &pid]);
    assert!(!kill.status.success(), "kill of the daemon must fail: {kill:?}");
    let status = daemon.cli(&["status"]);
    assert!(status.status.success(), "the daemon still serves");
    let event = daemon.wait_event("tamper", |e| e["kind"] == "guard.tamper" && e["task"]["agent"] == "tamperer");
    assert_eq!(event["decision"], "denied");
    assert!(event["reason"].as_str().unwrap().contains("signal"), "{event}");
    let trace = daemon.run("tamperer", "trace the guard", &g, &[PROBE, "ptrace", &pid]);
    assert_eq!(stdout(&trace), "EPERM", "ptrace of the daemon");
    let bpf = daemon.run("tamperer", "load a program", &g, &[PROBE, "bpf"]);
    assert_eq!(stdout(&bpf), "EPERM", "bpf(2) from a task");
    // The same bpf(2) call works untagged, so the refusal is the guard's.
    let direct = std::process::Command::new(PROBE).arg("bpf").output().unwrap();
    assert_eq!(stdout(&direct), "ok");
    // An untagged process may still signal it (signal 0: only an existence check here).
    assert_eq!(unsafe { libc::kill(daemon.pid() as i32, 0) }, 0);
}

/// A grant whose `ask` rules hold reads of `asked` and execs of `/bin/busybox`.
pub(crate) fn ask_grant(f: &Files, name: &str, asked: &Path) -> PathBuf {
    let base = base_files(&[], &[], &[]);
    let ask_read = format!("{{path: \"{}\", action: ask}}", asked.display());
    let files = base
        .replacen("read: [", &format!("read: [{ask_read}, "), 1)
        .replacen("exec: [", "exec: [{path: \"/bin/busybox\", action: ask}, ", 1)
        .replacen("read: [", "read: [\"/bin/busybox\", ", 1);
    grant(f.path(), name, "enforce", &[], &files)
}

/// Starts `run` in the background and returns it with the id of the approval it waits for.
fn held(daemon: &Daemon, agent: &str, g: &Path, cmd: &[&str]) -> (std::process::Child, String) {
    let child =
        daemon.run_command(agent, "needs a human", g, &[], cmd).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let request =
        daemon.wait_event("approval request", |e| e["kind"] == "approval.request" && e["task"]["agent"] == agent);
    assert_eq!(request["decision"], "held");
    (child, request["approval"].to_string())
}

fn finish(child: std::process::Child) -> String {
    stdout(&child.wait_with_output().unwrap())
}

#[test]
fn an_ask_rule_holds_an_open_until_approved_and_the_call_succeeds() {
    let daemon = start();
    let f = files(daemon);
    let g = ask_grant(&f, "ask-approve", &f.secret);
    let (child, id) = held(daemon, "asker-yes", &g, &[PROBE, "open", f.secret.to_str().unwrap(), "r"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let approve = daemon.cli(&["approve", &id]);
    assert!(approve.status.success(), "{approve:?}");
    assert_eq!(finish(child), "ok", "the held open() continues and succeeds, transparently");
    let granted = daemon.wait_event("granted", |e| e["kind"] == "approval.granted" && e["approval"].to_string() == id);
    assert_eq!(granted["task"]["agent"], "asker-yes");
}

#[test]
fn an_ask_rule_refuses_when_denied_or_when_nobody_answers() {
    let daemon = start();
    let f = files(daemon);
    let g = ask_grant(&f, "ask-deny", &f.secret);
    let (child, id) = held(daemon, "asker-no", &g, &[PROBE, "open", f.secret.to_str().unwrap(), "r"]);
    assert!(daemon.cli(&["deny", &id]).status.success());
    assert_eq!(finish(child), "EPERM");

    let started = std::time::Instant::now();
    let (child, _) = held(daemon, "asker-silent", &g, &[PROBE, "open", f.secret.to_str().unwrap(), "r"]);
    assert_eq!(finish(child), "EPERM", "no answer: refused");
    assert!(started.elapsed() >= std::time::Duration::from_secs(APPROVAL_TIMEOUT_SECS - 1));
    let timed_out =
        daemon.wait_event("timeout", |e| e["kind"] == "approval.denied" && e["task"]["agent"] == "asker-silent");
    assert!(timed_out["reason"].as_str().unwrap().contains("no answer"), "{timed_out}");
}

#[test]
fn an_ask_rule_holds_an_exec_until_approved() {
    let daemon = start();
    let f = files(daemon);
    let g = ask_grant(&f, "ask-exec", &f.secret);
    let (child, id) = held(daemon, "asker-exec", &g, &[PROBE, "exec", "/bin/busybox", "true"]);
    assert!(daemon.cli(&["approve", &id]).status.success());
    assert_eq!(finish(child), "ok");
}

#[test]
fn an_ask_rule_holds_a_connect_until_a_human_decides_and_nothing_goes_around_it() {
    let daemon = start();
    let f = files(daemon);
    let asked = listener("127.0.0.1:0");
    let to = format!("127.0.0.1:{asked}");
    let g = grant(f.path(), "ask-connect", "enforce", &[], "");
    let text = std::fs::read_to_string(&g)
        .unwrap()
        .replace("network: {connect: []}", &format!("network: {{connect: [{{to: \"{to}\", action: ask}}]}}"));
    std::fs::write(&g, text).unwrap();

    // Approved: the held connect() continues and connects.
    let (child, id) = held(daemon, "conn-yes", &g, &[PROBE, "connect", &to]);
    let request =
        daemon.wait_event("held connect", |e| e["kind"] == "approval.request" && e["approval"].to_string() == id);
    assert_eq!(request["object"]["address"], "127.0.0.1");
    assert_eq!(request["object"]["port"], asked);
    assert_eq!(request["enforcement"], "lsm");
    let shown = daemon.cli(&["approvals"]);
    assert!(stdout(&shown).contains(&format!("connect {to}/tcp")), "{shown:?}");
    let with_for = daemon.cli(&["approve", &id, "--for", "1m"]);
    assert!(!with_for.status.success(), "--for is for paths: {with_for:?}");
    assert!(daemon.cli(&["approve", &id]).status.success());
    assert_eq!(finish(child), "ok", "the held connect() continues and succeeds");

    // Denied: EPERM.
    let (child, id) = held(daemon, "conn-no", &g, &[PROBE, "connect", &to]);
    assert!(daemon.cli(&["deny", &id]).status.success());
    assert_eq!(finish(child), "EPERM");

    // Around the hold: TCP Fast Open connects from sendto(2), which skips socket_connect, and a
    // datagram send is never held. Both refused, and nothing asked.
    for verb in ["tfo", "udp"] {
        let out = daemon.run("conn-around", "go around the question", &g, &[PROBE, verb, &to]);
        assert_eq!(stdout(&out), "EPERM", "{verb}: {out:?}");
    }
    let around: Vec<_> = daemon.events().into_iter().filter(|e| e["task"]["agent"] == "conn-around").collect();
    assert!(around.iter().all(|e| e["kind"] != "approval.request"), "{around:#?}");
    assert!(around.iter().any(|e| e["kind"] == "network.connect" && e["decision"] == "denied"), "{around:#?}");
}

#[test]
fn relative_paths_are_judged_on_what_they_resolve_to() {
    let daemon = start();
    let f = files(daemon);
    let work = f.path().join("work");
    let g = grant(f.path(), "relative", "enforce", &[], &base_files(&[&work.join("**")], &[], &[]));
    let open = |rel: &str| {
        let mut cmd = daemon.run_command("rel-bot", "relative", &g, &[], &[PROBE, "open", rel, "r"]);
        stdout(&cmd.current_dir(&work).output().unwrap())
    };
    assert_eq!(open("notes.txt"), "ok");
    assert_eq!(open("./link"), "EPERM", "a relative symlink to a denied file");
    assert_eq!(open("../secret.txt"), "EPERM");
}

#[test]
fn changes_to_the_file_tree_need_write_on_every_path_they_touch() {
    let daemon = start();
    let f = files(daemon);
    let dir = f.path();
    let work = dir.join("work");
    let g = grant(f.path(), "lsm-tree", "enforce", &[], &base_files(&[], &[&work.join("**")], &[]));
    let run = |args: &[&str]| {
        let mut cmd = vec![PROBE];
        cmd.extend_from_slice(args);
        stdout(&daemon.run("writer", "edit the work tree", &g, &cmd))
    };
    let p = |path: PathBuf| path.display().to_string();
    // Inside the writable tree: everything works.
    assert_eq!(run(&["create", &p(work.join("new.txt"))]), "ok");
    assert_eq!(run(&["mkdir", &p(work.join("sub"))]), "ok");
    assert_eq!(run(&["rename", &p(work.join("new.txt")), &p(work.join("sub/moved.txt"))]), "ok");
    assert_eq!(run(&["truncate", &p(work.join("sub/moved.txt"))]), "ok");
    assert_eq!(run(&["chmod", &p(work.join("sub/moved.txt"))]), "ok");
    assert_eq!(run(&["symlink", &p(f.secret.clone()), &p(work.join("sub/to-secret"))]), "ok");
    assert_eq!(run(&["unlink", &p(work.join("sub/moved.txt"))]), "ok");
    assert_eq!(run(&["unlink", &p(work.join("sub/to-secret"))]), "ok");
    assert_eq!(run(&["rmdir", &p(work.join("sub"))]), "ok");
    // Outside it: refused, whichever name is outside.
    assert_eq!(run(&["create", &p(dir.join("outside.txt"))]), "EPERM", "O_CREAT outside");
    assert_eq!(run(&["mkdir", &p(dir.join("outdir"))]), "EPERM");
    assert_eq!(run(&["unlink", &p(f.secret.clone())]), "EPERM");
    assert_eq!(run(&["chmod", &p(f.secret.clone())]), "EPERM");
    assert_eq!(run(&["truncate", &p(f.secret.clone())]), "EPERM");
    assert_eq!(run(&["rename", &p(f.secret.clone()), &p(work.join("stolen.txt"))]), "EPERM", "moving a file in");
    assert_eq!(run(&["rename", &p(f.allowed.clone()), &p(dir.join("leaked.txt"))]), "EPERM", "moving a file out");
    assert_eq!(run(&["link", &p(f.secret.clone()), &p(work.join("hard"))]), "EPERM", "hard link to a denied file");
    // Rename over an existing file: inside the tree it replaces it; over a denied file it is refused.
    std::fs::write(work.join("a.txt"), "a").unwrap();
    std::fs::write(work.join("b.txt"), "b").unwrap();
    assert_eq!(run(&["rename", &p(work.join("a.txt")), &p(work.join("b.txt"))]), "ok");
    assert_eq!(std::fs::read_to_string(work.join("b.txt")).unwrap(), "a");
    assert_eq!(run(&["rename", &p(work.join("b.txt")), &p(f.secret.clone())]), "EPERM", "over a denied file");
    assert!(f.secret.exists() && !work.join("stolen.txt").exists() && !work.join("hard").exists());
    assert_eq!(std::fs::read_to_string(&f.secret).unwrap(), "secret");

    let event = daemon.wait_event("refused unlink", |e| e["object"]["operation"] == "unlink");
    assert_eq!(event["kind"], "file.change");
    assert_eq!(event["decision"], "denied");
    assert_eq!(event["object"]["path"], p(f.secret.clone()));
    let rename = daemon.wait_event("refused rename", |e| e["object"]["operation"] == "rename_from");
    assert_eq!(rename["object"]["path"], p(f.secret.clone()));
}

#[test]
fn symlink_loops_fail_in_the_kernel_and_bind_mounts_are_paths_in_the_tree() {
    let daemon = start();
    let f = files(daemon);
    let work = f.path().join("work");
    let (a, b) = (work.join("loop-a"), work.join("loop-b"));
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    // A bind mount (made here, untagged: only root can mount) of the secret's directory inside
    // the granted tree is a path in the tree, like a hard link.
    let outside = f.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("data"), "x").unwrap();
    let mnt = work.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let status = std::process::Command::new("mount").arg("--bind").arg(&outside).arg(&mnt).status().unwrap();
    assert!(status.success(), "bind mount");
    let g = grant(f.path(), "loops", "enforce", &[], &base_files(&[&work.join("**")], &[], &[]));
    let open = |p: &Path| stdout(&daemon.run("loop-bot", "loops", &g, &[PROBE, "open", p.to_str().unwrap(), "r"]));
    assert_eq!(open(&a), "error 40", "ELOOP from the kernel's path walk, before any hook");
    assert_eq!(open(&mnt.join("data")), "ok", "through the bind mount: a path in the granted tree");
    assert_eq!(open(&outside.join("data")), "EPERM", "the same file by its own path");
    let _ = std::process::Command::new("umount").arg(&mnt).status();
}

#[test]
fn opens_submitted_through_io_uring_are_refused_too() {
    let daemon = start();
    let f = files(daemon);
    let work = f.path().join("work");
    let g = grant(f.path(), "uring", "enforce", &[], &base_files(&[&work.join("**")], &[], &[]));
    let open = |p: &Path| stdout(&daemon.run("uring-bot", "io_uring", &g, &[PROBE, "uring-open", p.to_str().unwrap()]));
    assert_eq!(open(&f.allowed), "ok", "the ring works");
    assert_eq!(open(&f.secret), "EPERM", "IORING_OP_OPENAT goes through the file_open hook");
    // The untagged harness gets the same file through a ring.
    let direct = std::process::Command::new(PROBE).args(["uring-open", f.secret.to_str().unwrap()]).output().unwrap();
    assert_eq!(stdout(&direct), "ok");
}

#[test]
fn an_interpreter_opening_a_file_is_judged_like_any_other_process() {
    let daemon = start();
    let f = files(daemon);
    let work = f.path().join("work");
    let g = grant(f.path(), "python", "enforce", &[], &base_files(&[&work.join("**")], &[], &["/usr/bin/python3.11"]));
    let python = |path: &Path| {
        let code = format!("open({:?}).read()", path.display().to_string());
        daemon.run("py-bot", "python3 -c open", &g, &["/usr/bin/python3.11", "-S", "-I", "-c", &code])
    };
    let ok = python(&f.allowed);
    assert!(ok.status.success(), "{ok:?}");
    let denied = python(&f.secret);
    assert!(!denied.status.success());
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(stderr.contains("PermissionError") && stderr.contains("Operation not permitted"), "{stderr}");
}

#[test]
fn deny_and_flag_rules_carve_exceptions_out_of_an_allow() {
    let daemon = start();
    let f = files(daemon);
    let work = f.path().join("work");
    for sub in ["private", "watched"] {
        std::fs::create_dir_all(work.join(sub)).unwrap();
        std::fs::write(work.join(sub).join("file"), sub).unwrap();
    }
    let (private, watched) = (work.join("private/file"), work.join("watched/file"));
    let base = base_files(&[&work.join("**")], &[&work.join("**")], &[]);
    // Append the exceptions to the read list, and a deny on one program to exec.
    let extra = base
        .replace("], write: [", &format!(", {{path: \"{w}/private/**\", action: deny}}, {{path: \"{w}/watched/**\", action: flag}}], write: [", w = work.display()))
        .replace("]}\n  exec: [", &format!(", {{path: \"{w}/private/**\", action: deny}}]}}\n  exec: [{{path: \"/usr/bin/python3.11\", action: flag}}, ", w = work.display()));
    let g = grant(f.path(), "carve", "enforce", &[], &extra);
    let out = daemon.run(
        "carver",
        "read around",
        &g,
        &[
            PROBE,
            "open-each",
            &format!("{}:r", f.allowed.display()),
            &format!("{}:r", private.display()),
            &format!("{}:r", watched.display()),
            &format!("{}:w", private.display()),
        ],
    );
    assert_eq!(stdout(&out), "ok\nEPERM\nok\nEPERM", "{out:?}\n{extra}");
    let denied = daemon
        .wait_event("deny rule", |e| e["kind"] == "file.open" && e["object"]["path"] == private.to_str().unwrap());
    assert_eq!(denied["decision"], "denied");
    assert!(denied["rule"].as_str().unwrap().ends_with("/private/** (deny)"), "{denied}");
    let flagged = daemon
        .wait_event("flag rule", |e| e["kind"] == "file.open" && e["object"]["path"] == watched.to_str().unwrap());
    assert_eq!(flagged["decision"], "flagged");
    assert_eq!(flagged["policy_decision"], "flag");
    assert!(flagged["rule"].as_str().unwrap().ends_with("/watched/** (flag)"), "{flagged}");
    // A tree change under the deny is refused too, naming the rule.
    let mkdir = daemon.run("carver", "mkdir", &g, &[PROBE, "mkdir", work.join("private/new").to_str().unwrap()]);
    assert_eq!(stdout(&mkdir), "EPERM");
    // A flagged exec runs and is reported.
    let py = daemon.run("carver", "python", &g, &["/usr/bin/python3.11", "-S", "-I", "-c", "pass"]);
    assert!(py.status.success(), "{py:?}");
    let exec = daemon.wait_event("flagged exec", |e| e["kind"] == "process.exec" && e["decision"] == "flagged");
    assert_eq!(exec["object"]["path"], "/usr/bin/python3.11");
}

#[test]
fn kernel_file_decisions_equal_the_reference_evaluator() {
    let daemon = start();
    let f = files(daemon);
    let root = f.path().join("tree");
    let mut all = Vec::new();
    for a in ["a", "b"] {
        for x in ["x", "y"] {
            let dir = root.join(a).join(x);
            std::fs::create_dir_all(&dir).unwrap();
            for name in ["f1", "f2"] {
                std::fs::write(dir.join(name), name).unwrap();
                all.push(dir.join(name));
            }
        }
    }
    let patterns: Vec<String> =
        ["tree/**", "tree/a/**", "tree/a/*", "tree/a/x/*", "tree/b/**", "tree/b/y/f1", "tree/a/x/f2", "tree/b/x/**"]
            .iter()
            .map(|p| format!("{}/{p}", f.path().display()))
            .collect();
    let seed = std::env::var("AG_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    eprintln!("file property seed: AG_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let base = base_files(&[], &[], &[]);
    let mut compared = 0;
    for g in 0..6 {
        let mut lists = [Vec::new(), Vec::new()];
        for _ in 0..rng.usize(1..6) {
            let pattern = &patterns[rng.usize(..patterns.len())];
            let action = ["allow", "allow", "flag", "deny"][rng.usize(..4)];
            let list = &mut lists[rng.usize(..2)];
            if !list.iter().any(|(p, _): &(String, &str)| p == pattern) {
                list.push((pattern.clone(), action));
            }
        }
        let render = |l: &Vec<(String, &str)>| {
            l.iter().map(|(p, a)| format!(", {{path: \"{p}\", action: {a}}}")).collect::<String>()
        };
        let extra = base
            .replace("], write: [", &format!("{}], write: [", render(&lists[0])))
            .replace("write: []", &format!("write: [\"/dev/null\"{}]", render(&lists[1])));
        let path = grant(f.path(), &format!("files-{g}"), "enforce", &[], &extra);
        let requests: Vec<(String, &str)> =
            (0..10).map(|_| (all[rng.usize(..all.len())].display().to_string(), ["r", "w"][rng.usize(..2)])).collect();
        let mut argv = vec![PROBE.to_string(), "open-each".to_string()];
        argv.extend(requests.iter().map(|(p, m)| format!("{p}:{m}")));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = daemon.run(&format!("files-{g}"), "random opens", &path, &argv);
        let kernel: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
        assert_eq!(kernel.len(), requests.len(), "seed {seed}: {out:?}\n{extra}");
        for ((file, mode), got) in requests.iter().zip(&kernel) {
            let access = if *mode == "w" { "write" } else { "read" };
            let eval = daemon.cli(&["policy", "eval", path.to_str().unwrap(), "--path", file, "--access", access]);
            let reference = stdout(&eval);
            let allowed = reference.starts_with("allow") || reference.starts_with("flag");
            assert_eq!(
                got == "ok",
                allowed,
                "seed {seed}: {file} {access}: kernel {got}, reference {reference}\n{extra}"
            );
            compared += 1;
        }
    }
    eprintln!("compared {compared} file decisions with the reference");
}

#[test]
fn allowed_use_is_recorded_once_and_unused_rules_are_named_at_close() {
    let daemon = start();
    let f = files(daemon);
    let work = f.path().join("work");
    let never = f.path().join("never");
    let g = grant(f.path(), "lsm-usage", "enforce", &[], &base_files(&[&work.join("**"), &never.join("**")], &[], &[]));
    let out = daemon.run(
        "usage-reader",
        "read notes twice",
        &g,
        &[
            PROBE,
            "open-each",
            &format!("{}:r", f.allowed.display()),
            &format!("{}:r", f.allowed.display()),
            &format!("{}:r", f.secret.display()),
        ],
    );
    assert_eq!(stdout(&out), "ok\nok\nEPERM");
    let denied = daemon.wait_event("denied open with an exec id", |e| {
        e["task"]["agent"] == "usage-reader" && e["kind"] == "file.open" && e["decision"] == "denied"
    });
    assert!(
        denied["process"]["exec_id"].as_str().is_some_and(|id| id.contains(&format!("-{}-", denied["process"]["pid"])))
    );
    let close =
        daemon.wait_event("close with usage", |e| e["task"]["agent"] == "usage-reader" && e["kind"] == "task.close");
    let usage = &close["usage"];
    let listed = |key: &str, rule: String| usage[key].as_array().unwrap().iter().any(|r| r.as_str() == Some(&rule));
    assert!(listed("used", format!("files.read {}/** (allow)", work.display())), "{usage}");
    assert!(listed("unused", format!("files.read {}/** (allow)", never.display())), "{usage}");
    // Two opens of the same file: one first use.
    assert_eq!(usage["touched"][work.to_str().unwrap()], 1, "{usage}");
}
