//! Containment: every way out of a grant that no grant field opens, tried the way an attacker
//! would from inside a task, on the BPF LSM kernel. Each case checks that the effect did not
//! happen (the process lives, the file did not change, the mount is not there) and that an
//! event names the attempt; a control shows the same call works untagged or inside the task.

use std::{
    io::{BufRead, BufReader, Read},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use agent_guard_e2e::{Daemon, grant, listener, stdout};

use super::{Files, PROBE, base_files, files, start};

/// Runs the probe VERB ARGS as agent `agent` under `g`; its line.
fn attempt(daemon: &Daemon, agent: &str, g: &Path, args: &[&str]) -> String {
    let mut cmd = vec![PROBE];
    cmd.extend_from_slice(args);
    stdout(&daemon.run(agent, "try to get out", g, &cmd))
}

/// The `task.escape` event of `agent` whose route is `route`.
fn escape(daemon: &Daemon, agent: &str, route: &str) -> serde_json::Value {
    let event = daemon.wait_event(&format!("task.escape {route} of {agent}"), |e| {
        e["kind"] == "task.escape" && e["task"]["agent"] == agent && e["object"]["route"] == route
    });
    assert_eq!(event["decision"], "denied", "{event}");
    assert_eq!(event["enforcement"], "lsm", "{event}");
    assert_eq!(event["rule"], "guard.containment", "{event}");
    event
}

fn write_grant(f: &Files, name: &str) -> std::path::PathBuf {
    let work = f.path().join("work");
    grant(f.path(), name, "enforce", &[], &base_files(&[&work.join("**")], &[&work.join("**")], &["/bin/busybox"]))
}

/// An untagged process that sleeps, for the cases that act on a process outside the task.
struct Victim(std::process::Child);

impl Victim {
    fn start() -> Victim {
        Victim(Command::new(PROBE).args(["sleep", "60"]).spawn().unwrap())
    }
    fn pid(&self) -> String {
        self.0.id().to_string()
    }
    fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
    fn proc_file(&self, name: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{name}", self.0.id())).unwrap()
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn privileges_mounts_chroot_and_namespaces_are_refused() {
    let daemon = start();
    let f = files(daemon);
    let g = write_grant(&f, "no-admin");
    let work = f.path().join("work");
    let (w, secret_dir) = (work.to_str().unwrap(), f.path().to_str().unwrap());
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(attempt(daemon, "admin-bot", &g, &["sethostname", "pwned"]), "EPERM");
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(), hostname, "the hostname did not change");
    let event = escape(daemon, "admin-bot", "capability");
    assert_eq!(event["object"]["detail"], "CAP_SYS_ADMIN");

    // A mount over the granted tree, or of the secret onto it, would change what paths mean.
    assert_eq!(attempt(daemon, "mount-bot", &g, &["mount-tmpfs", w]), "EPERM");
    assert_eq!(attempt(daemon, "mount-bot", &g, &["bind", secret_dir, w]), "EPERM");
    assert_eq!(attempt(daemon, "mount-bot", &g, &["open-tree", secret_dir, w]), "EPERM");
    assert!(f.allowed.exists(), "the granted tree is still the same directory (nothing mounted over it)");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(w), "no mount at {w}: {mounts}");
    escape(daemon, "mount-bot", "mount");

    // The kernel asks for CAP_SYS_CHROOT before the path_chroot hook: that refusal names it.
    assert_eq!(attempt(daemon, "chroot-bot", &g, &["chroot", w]), "EPERM");
    let event = escape(daemon, "chroot-bot", "capability");
    assert_eq!(event["object"]["detail"], "CAP_SYS_CHROOT");
    // Without root's capabilities, through a new user namespace: refused at its creation.
    assert_eq!(attempt(daemon, "userns-bot", &g, &["unshare-user"]), "EPERM");
    escape(daemon, "userns-bot", "namespace");
    assert_eq!(attempt(daemon, "userns-bot", &g, &["unshare-mount"]), "EPERM");
    // perf_event_open asks for CAP_PERFMON or CAP_SYS_ADMIN first (perfmon_capable(); the
    // first check does not audit, so the refusal reported names CAP_SYS_ADMIN), then the hook.
    assert_eq!(attempt(daemon, "perf-bot", &g, &["perf"]), "error 13");
    daemon.wait_event("perf refused", |e| {
        e["kind"] == "task.escape"
            && e["task"]["agent"] == "perf-bot"
            && (e["object"]["detail"] == "CAP_PERFMON"
                || e["object"]["detail"] == "CAP_SYS_ADMIN"
                || e["object"]["route"] == "perf_event")
    });

    // The same calls work untagged: the refusals are the guard's.
    let direct = Command::new(PROBE).args(["unshare-user"]).output().unwrap();
    assert_eq!(stdout(&direct), "ok");
}

#[test]
fn other_processes_cannot_be_signalled_traced_or_tuned() {
    let daemon = start();
    let f = files(daemon);
    let g = write_grant(&f, "alone");
    let mut victim = Victim::start();
    let pid = victim.pid();
    for verb in ["kill", "tgkill", "sigqueue", "pidfd-kill"] {
        assert_eq!(attempt(daemon, "killer-bot", &g, &[verb, &pid, "9"]), "EPERM", "{verb}");
    }
    assert!(victim.alive(), "the process outside the task was not killed");
    let event = escape(daemon, "killer-bot", "signal");
    assert_eq!(event["object"]["target_pid"].to_string(), pid);

    assert_eq!(attempt(daemon, "tracer-bot", &g, &["ptrace", &pid]), "EPERM");
    // Allowed, process_vm_readv of address 1 would fail with EFAULT (14).
    assert_eq!(attempt(daemon, "tracer-bot", &g, &["vm-read", &pid]), "EPERM");
    assert_eq!(attempt(daemon, "tracer-bot", &g, &["proc-mem", &pid]), "error 13");
    assert_eq!(attempt(daemon, "tracer-bot", &g, &["pidfd-getfd", &pid, "0"]), "EPERM");
    escape(daemon, "tracer-bot", "ptrace");

    let limits = victim.proc_file("limits");
    assert_eq!(attempt(daemon, "tuner-bot", &g, &["prlimit", &pid]), "EPERM");
    assert_eq!(attempt(daemon, "tuner-bot", &g, &["nice", &pid]), "EPERM");
    assert_eq!(victim.proc_file("limits"), limits, "the limits did not change");
    assert_eq!(victim.proc_file("stat").split(' ').nth(18), Some("0"), "the nice value did not change");
    escape(daemon, "tuner-bot", "scheduling");

    assert_eq!(attempt(daemon, "sigio-bot", &g, &["sigio", &pid]), "EPERM");
    escape(daemon, "sigio-bot", "file_owner");
    assert!(victim.alive());

    // Inside the task: its own processes (here the probe itself, signal 0 aside) are fine.
    assert_eq!(attempt(daemon, "killer-bot", &g, &["pid-then", "nice", "0"]).split(' ').nth(1), Some("ok"));
    // Untagged, the same kill works.
    assert_eq!(stdout(&Command::new(PROBE).args(["kill", &pid, "9"]).output().unwrap()), "ok");
}

#[test]
fn the_daemon_cannot_be_stopped_by_any_route() {
    let daemon = start();
    let f = files(daemon);
    let g = grant(f.path(), "tamper-all", "audit", &[], &base_files(&[], &[], &[]));
    let pid = daemon.pid().to_string();
    for args in [
        vec!["kill", &pid, "9"],
        vec!["tgkill", &pid, "9"],
        vec!["sigqueue", &pid, "9"],
        vec!["pidfd-kill", &pid, "9"],
        vec!["sigio", &pid],
        vec!["prlimit", &pid],
        vec!["nice", &pid],
        vec!["vm-read", &pid],
        vec!["pidfd-getfd", &pid, "0"],
    ] {
        assert_eq!(attempt(daemon, "guard-killer", &g, &args), "EPERM", "{args:?} (audit mode changes nothing)");
    }
    assert!(daemon.cli(&["status"]).status.success(), "the daemon still serves");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(limits.lines().any(|l| l.starts_with("Max cpu time") && l.contains("unlimited")), "{limits}");
    let tampers: Vec<_> = daemon
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "guard.tamper" && e["task"]["agent"] == "guard-killer")
        .collect();
    assert!(tampers.len() >= 8, "every attempt is reported: {tampers:#?}");
}

#[test]
fn sockets_other_than_tcp_udp_and_unix_are_refused() {
    let daemon = start();
    let f = files(daemon);
    let g = write_grant(&f, "sockets");
    // (family, type, protocol): raw ICMP, packet, SCTP, ICMP "ping", vsock, netlink audit.
    for (family, kind, protocol) in
        [("2", "3", "1"), ("17", "3", "768"), ("2", "1", "132"), ("2", "2", "1"), ("40", "1", "0"), ("16", "3", "9")]
    {
        let line = attempt(daemon, "socket-bot", &g, &["socket", family, kind, protocol]);
        assert_eq!(line, "EPERM", "socket({family}, {kind}, {protocol})");
    }
    escape(daemon, "socket-bot", "socket");
    for (family, kind, protocol) in [("2", "1", "0"), ("10", "2", "17"), ("1", "1", "0"), ("16", "3", "0")] {
        let line = attempt(daemon, "socket-bot", &g, &["socket", family, kind, protocol]);
        assert_eq!(line, "ok", "socket({family}, {kind}, {protocol}) is judged by the connect hooks instead");
    }
}

#[test]
fn listening_and_connecting_to_the_unspecified_address_are_refused() {
    let daemon = start();
    let f = files(daemon);
    let port = listener("127.0.0.1:0");
    let g = grant(f.path(), "no-listen", "enforce", &[format!("127.0.0.1/32:{port}")], &base_files(&[], &[], &[]));
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    assert_eq!(attempt(daemon, "server-bot", &g, &["listen", &free.to_string()]), "EPERM");
    let event = escape(daemon, "server-bot", "listen");
    assert_eq!(event["object"]["detail"], format!("tcp port {free}"));
    assert!(std::net::TcpStream::connect(("127.0.0.1", free)).is_err(), "nobody listens on {free}");
    // 0.0.0.0 reaches loopback (or the socket's own address): no rule covers it.
    assert_eq!(attempt(daemon, "server-bot", &g, &["connect", &format!("0.0.0.0:{port}")]), "EPERM");
    assert_eq!(attempt(daemon, "server-bot", &g, &["connect", &format!("[::]:{port}")]), "EPERM");
    assert_eq!(attempt(daemon, "server-bot", &g, &["connect", &format!("127.0.0.1:{port}")]), "ok");
    // network.listen opens exactly the ports it names.
    let text = std::fs::read_to_string(&g).unwrap().replace(
        &format!("network: {{connect: [\"127.0.0.1/32:{port}\"]}}"),
        &format!("network: {{connect: [\"127.0.0.1/32:{port}\"], listen: [\"{free}\"]}}"),
    );
    let listening = f.path().join("listening.yaml");
    std::fs::write(&listening, text.replace("name: no-listen", "name: listening")).unwrap();
    assert_eq!(attempt(daemon, "server-bot", &listening, &["listen", &free.to_string()]), "ok");
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    assert_eq!(attempt(daemon, "server-bot", &listening, &["listen", &other.to_string()]), "EPERM");
}

#[test]
fn device_nodes_give_no_raw_access() {
    let daemon = start();
    let f = files(daemon);
    let g = write_grant(&f, "devices");
    let node = f.path().join("work/disk");
    let n = node.to_str().unwrap();
    assert_eq!(attempt(daemon, "disk-bot", &g, &["mknod-blk", n, "7", "0"]), "EPERM");
    assert!(!node.exists(), "no device node was made");
    let event = escape(daemon, "disk-bot", "device");
    assert!(event["object"]["detail"].as_str().unwrap().starts_with("block"), "{event}");
    // A block device that already exists inside the granted tree cannot be opened either
    // (allowed, it would fail with ENXIO: no such loop device here).
    assert_eq!(stdout(&Command::new(PROBE).args(["mknod-blk", n, "7", "0"]).output().unwrap()), "ok");
    assert_eq!(attempt(daemon, "disk-bot", &g, &["open-dev", n]), "EPERM");
}

#[test]
fn metadata_changes_need_write_on_the_file() {
    let daemon = start();
    let f = files(daemon);
    let work = f.path().join("work");
    let readonly = f.path().join("ro");
    std::fs::create_dir_all(&readonly).unwrap();
    let target = readonly.join("config");
    std::fs::write(&target, "safe").unwrap();
    let g = grant(
        f.path(),
        "metadata",
        "enforce",
        &[],
        &base_files(&[&readonly.join("**"), &work.join("**")], &[&work.join("**")], &[]),
    );
    let t = target.to_str().unwrap();
    let before = std::fs::metadata(&target).unwrap();
    assert_eq!(attempt(daemon, "meta-bot", &g, &["setxattr", t]), "EPERM");
    assert_eq!(attempt(daemon, "meta-bot", &g, &["set-acl", t]), "EPERM", "an ACL that would give everyone write");
    assert_eq!(attempt(daemon, "meta-bot", &g, &["utimes", t]), "EPERM");
    let after = std::fs::metadata(&target).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((after.mtime(), after.mode()), (before.mtime(), before.mode()), "nothing changed");
    assert!(Command::new("/bin/busybox").args(["stat", t]).output().unwrap().status.success());
    let event = daemon.wait_event("refused setxattr", |e| {
        e["kind"] == "file.change" && e["task"]["agent"] == "meta-bot" && e["object"]["operation"] == "xattr"
    });
    assert_eq!(event["object"]["path"], t);
    // Inside the write grant the same change is allowed.
    assert_eq!(attempt(daemon, "meta-bot", &g, &["utimes", f.allowed.to_str().unwrap()]), "ok");
    assert_eq!(std::fs::metadata(&f.allowed).unwrap().mtime(), 86_400);
}

#[test]
fn the_tag_survives_an_exec_from_a_thread_and_the_leader_exiting() {
    let daemon = start();
    let f = files(daemon);
    let g = grant(f.path(), "threads", "enforce", &[], &base_files(&[], &[], &[]));
    let secret = f.secret.to_str().unwrap();
    // A thread other than the main one execs: the kernel kills the old leader (pid == tgid)
    // and the process lives on under the exec'ing thread.
    let run = |args: &[&str]| {
        let mut cmd = vec![PROBE];
        cmd.extend_from_slice(args);
        daemon.run("thread-bot", "lose the tag", &g, &cmd)
    };
    let out = run(&["thread-exec", "open", secret, "r"]);
    assert_eq!(stdout(&out), "EPERM", "{out:?}");
    // The main thread exits first; another thread carries on.
    let out = run(&["leader-exit", "1", "open", secret, "r"]);
    assert_eq!(stdout(&out), "EPERM", "{out:?}");
    let untagged = Command::new(PROBE).args(["thread-exec", "open", secret, "r"]).output().unwrap();
    assert_eq!(stdout(&untagged), "ok", "the probe works untagged");
}

/// Starts VERB ARGS in a task, waits for its "ready", revokes the task; the exit status of
/// its second access (0 ok, 1 EPERM): after the revoke it cannot even write its line.
fn across_revoke(daemon: &Daemon, agent: &str, g: &Path, args: &[&str]) -> Option<i32> {
    let mut cmd = vec![PROBE];
    cmd.extend_from_slice(args);
    let mut child = daemon
        .run_command(agent, "keep access", g, &[], &cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 && !line.contains("ready") {}
    assert!(line.contains("ready"), "the agent did not get its first access: {line}");
    let list: serde_json::Value = serde_json::from_slice(&daemon.cli(&["task", "list", "--json"]).stdout).unwrap();
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["agent"] == agent && t["ended"].is_null())
        .map(|t| t["id"].to_string())
        .expect("the task is listed");
    let revoke = daemon.cli(&["grant", "revoke", &id]);
    assert!(revoke.status.success(), "{revoke:?}");
    // The probe makes its second access once its stdin closes: after the revoke, however slow.
    drop(child.stdin.take());
    child.wait().unwrap().code()
}

#[test]
fn revoke_ends_access_through_descriptors_opened_before() {
    let daemon = start();
    let f = files(daemon);
    let work = f.path().join("work");
    let received = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let sink = received.clone();
    std::thread::spawn(move || {
        for stream in server.incoming().flatten() {
            let mut text = String::new();
            let _ = (&stream).read_to_string(&mut text);
            sink.lock().unwrap().push_str(&text);
        }
    });
    let g = grant(
        f.path(),
        "ending",
        "enforce",
        &[format!("127.0.0.1/32:{port}")],
        &base_files(&[&work.join("**")], &[], &[]),
    );
    let code = across_revoke(daemon, "reader-bot", &g, &["read-again", f.allowed.to_str().unwrap(), "120"]);
    assert_eq!(code, Some(1), "a read on a file opened before the revoke is refused (EPERM)");
    let event = escape(daemon, "reader-bot", "after_grant_end");
    assert_eq!(event["object"]["detail"], "read");

    let code = across_revoke(daemon, "sender-bot", &g, &["send-again", &format!("127.0.0.1:{port}"), "120"]);
    assert_eq!(code, Some(1), "a send on a connection made before the revoke is refused (EPERM)");
    std::thread::sleep(Duration::from_millis(300));
    let got = received.lock().unwrap().clone();
    assert!(got.contains("first") && !got.contains("second"), "only the first send arrived: {got:?}");
}

/// The cgroup v2 mount point, from this process's mount table.
fn cgroup2_root() -> String {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mounts
        .lines()
        .find(|l| l.contains(" - cgroup2 "))
        .and_then(|l| l.split(' ').nth(4))
        .expect("a cgroup2 mount")
        .to_string()
}

#[test]
fn the_guards_pins_and_cgroups_cannot_be_changed_whatever_the_grant() {
    let daemon = start();
    let f = files(daemon);
    let (pins, cgroups) = (format!("/sys/fs/bpf/{}", daemon.cgroup), cgroup2_root());
    // A grant that names both trees for writing: the guard's filesystems stay out of reach.
    let g = grant(
        f.path(),
        "guard-files",
        "enforce",
        &[],
        &base_files(&[], &[Path::new("/sys/fs/bpf/**"), Path::new(&format!("{cgroups}/**"))], &[]),
    );
    let link = format!("{pins}/links/file_open");
    assert!(Path::new(&link).exists(), "the daemon's file_open link is pinned at {link}");
    assert_eq!(attempt(daemon, "unpin-bot", &g, &["unlink", &link]), "EPERM");
    assert!(Path::new(&link).exists(), "the pin is still there");
    daemon.wait_event("tamper on bpffs", |e| {
        e["kind"] == "guard.tamper"
            && e["task"]["agent"] == "unpin-bot"
            && e["reason"].as_str().unwrap().contains("BPF")
    });
    // Moving itself out of its task's cgroup (out of reach of cgroup.kill), or freezing the root.
    let procs = format!("{cgroups}/cgroup.procs");
    assert_eq!(attempt(daemon, "cgroup-bot", &g, &["write", &procs, "0"]), "EPERM");
    daemon.wait_event("tamper on cgroupfs", |e| {
        e["kind"] == "guard.tamper"
            && e["task"]["agent"] == "cgroup-bot"
            && e["reason"].as_str().unwrap().contains("cgroup")
    });
    // The guard still enforces: the secret stays unreadable.
    assert_eq!(attempt(daemon, "unpin-bot", &g, &["open", f.secret.to_str().unwrap(), "r"]), "EPERM");
}

/// A Unix stream listener that records what it receives, in the background.
fn unix_listener(listener: std::os::unix::net::UnixListener) -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = Vec::new();
            let _ = stream.read_to_end(&mut buf);
            sink.lock().unwrap().extend(buf);
        }
    });
    got
}

#[test]
fn unix_sockets_of_other_processes_need_write_on_their_path() {
    use std::os::linux::net::SocketAddrExt;
    let daemon = start();
    let f = files(daemon);
    let g = write_grant(&f, "unix");
    let (outside, inside) = (f.path().join("service.sock"), f.path().join("work/own.sock"));
    let outside_got = unix_listener(std::os::unix::net::UnixListener::bind(&outside).unwrap());
    let inside_got = unix_listener(std::os::unix::net::UnixListener::bind(&inside).unwrap());
    let abstract_name = format!("agent-guard-test-{}", std::process::id());
    let abstract_addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap();
    let abstract_got = unix_listener(std::os::unix::net::UnixListener::bind_addr(&abstract_addr).unwrap());
    let dgram_path = f.path().join("log.sock");
    let dgram = std::os::unix::net::UnixDatagram::bind(&dgram_path).unwrap();
    dgram.set_nonblocking(true).unwrap();

    assert_eq!(attempt(daemon, "unix-bot", &g, &["unix-connect", outside.to_str().unwrap()]), "EPERM");
    let event = daemon.wait_event("unix connect refused", |e| {
        e["kind"] == "file.open" && e["task"]["agent"] == "unix-bot" && e["object"]["operation"] == "unix_connect"
    });
    assert_eq!(event["object"]["path"], outside.to_str().unwrap());
    assert_eq!(event["decision"], "denied");
    // Another spelling of the same socket: relative to a working directory, through a symlink.
    std::os::unix::fs::symlink(&outside, f.path().join("work/alias.sock")).unwrap();
    let dir = f.path().display().to_string();
    let relative = format!("cd {dir} && {PROBE} unix-connect service.sock");
    let out = daemon.run("unix-bot", "relative", &g, &["/bin/sh", "-c", &relative]);
    assert_eq!(stdout(&out), "EPERM", "{out:?}");
    let alias = f.path().join("work/alias.sock");
    assert_eq!(attempt(daemon, "unix-bot", &g, &["unix-connect", alias.to_str().unwrap()]), "EPERM");
    assert_eq!(attempt(daemon, "unix-bot", &g, &["unix-send", dgram_path.to_str().unwrap()]), "EPERM");
    assert_eq!(attempt(daemon, "unix-bot", &g, &["unix-abstract", &abstract_name]), "EPERM");
    escape(daemon, "unix-bot", "unix_abstract");
    // Inside the grant, and a socketpair, work.
    assert_eq!(attempt(daemon, "unix-bot", &g, &["unix-connect", inside.to_str().unwrap()]), "ok");
    assert_eq!(attempt(daemon, "unix-bot", &g, &["socketpair"]), "ok");
    // The daemon's own socket stays open to the task (steps, sub-tasks).
    let bin = agent_guard_e2e::agent_guard_bin();
    let bin_dir = bin.parent().unwrap().join("*").display().to_string();
    let g2 = grant(
        f.path(),
        "unix-api",
        "enforce",
        &[],
        &base_files(&[&bin.parent().unwrap().join("**")], &[], &[bin_dir.as_str()]),
    );
    let socket = daemon.socket.to_str().unwrap();
    let step =
        daemon.run("unix-bot", "declares", &g2, &[bin.to_str().unwrap(), "--socket", socket, "intent", "next step"]);
    assert!(step.status.success(), "{step:?}");

    std::thread::sleep(Duration::from_millis(300));
    assert!(outside_got.lock().unwrap().is_empty(), "nothing reached the service outside the grant");
    assert!(abstract_got.lock().unwrap().is_empty(), "nothing reached the abstract socket");
    assert!(dgram.recv(&mut [0u8; 16]).is_err(), "no datagram arrived");
    assert_eq!(inside_got.lock().unwrap().as_slice(), b"hello", "the task's own socket got its message");
}

#[test]
fn the_daemons_own_files_are_out_of_reach_whatever_the_grant() {
    let daemon = start();
    let f = files(daemon);
    let dir = daemon.dir.path();
    // A grant that reads and writes the daemon's whole directory: state, audit store, socket.
    let g =
        grant(f.path(), "guard-own-files", "enforce", &[], &base_files(&[&dir.join("**")], &[&dir.join("**")], &[]));
    let state = dir.join("state/meta.json");
    let saved = std::fs::read(&state).expect("the daemon saved its counters");
    let socket = daemon.socket.to_str().unwrap();
    let (forged, audit, moved) = (dir.join("state/tasks/999.json"), dir.join("audit.db"), dir.join("moved.db"));
    let (state_s, forged_s, audit_s, moved_s) =
        (state.to_str().unwrap(), forged.to_str().unwrap(), audit.to_str().unwrap(), moved.to_str().unwrap());
    let events = daemon.events.to_str().unwrap();
    let attempts: [&[&str]; 7] = [
        &["truncate", events],
        &["open", state_s, "r"],
        &["open", state_s, "w"],
        &["create", forged_s],
        &["unlink", socket],
        &["rename", audit_s, moved_s],
        &["open", audit_s, "r"],
    ];
    for args in attempts {
        assert_eq!(attempt(daemon, "files-bot", &g, args), "EPERM", "{args:?}");
    }
    assert!(Path::new(socket).exists() && dir.join("audit.db").exists() && !forged.exists());
    assert!(daemon.cli(&["status"]).status.success(), "the API socket still serves");
    // The daemon rewrote the state meanwhile (tasks opened), never the agent: it still parses.
    let now: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert!(now["next_id"].as_u64() > serde_json::from_slice::<serde_json::Value>(&saved).unwrap()["next_id"].as_u64());
    let tampers = daemon
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "guard.tamper" && e["task"]["agent"] == "files-bot")
        .count();
    assert!(tampers >= 7, "each attempt is reported ({tampers})");
    assert!(!daemon.events().is_empty(), "the events file was not truncated");
}

#[test]
fn forks_into_another_cgroup_and_signals_to_a_process_group_are_refused() {
    let daemon = start();
    let f = files(daemon);
    let g = write_grant(&f, "cgroup-fork");
    let root = cgroup2_root();
    assert_eq!(attempt(daemon, "clone-bot", &g, &["clone-into-cgroup", &root]), "EPERM");
    escape(daemon, "clone-bot", "cgroup");
    assert_eq!(stdout(&Command::new(PROBE).args(["clone-into-cgroup", &root]).output().unwrap()), "ok", "untagged");
    assert_eq!(attempt(daemon, "pgrp-bot", &g, &["setown-pgrp"]), "EPERM");
    escape(daemon, "pgrp-bot", "file_owner");
    // Kernel keys: a keyring is fine, a user or dns_resolver key (request_key's upcall) is not.
    assert_eq!(attempt(daemon, "key-bot", &g, &["add-key", "keyring"]), "ok");
    assert_eq!(attempt(daemon, "key-bot", &g, &["add-key", "user"]), "EPERM");
    let event = escape(daemon, "key-bot", "key");
    assert_eq!(event["object"]["detail"], "key type user");
    assert_eq!(stdout(&Command::new(PROBE).args(["add-key", "user"]).output().unwrap()), "ok", "untagged");
}

#[test]
fn renames_cannot_carry_paths_out_from_under_deny_ask_or_flag_rules() {
    let daemon = start();
    let f = files(daemon);
    let work = f.path().join("work");
    std::fs::create_dir_all(work.join("repo/.git/hooks")).unwrap();
    std::fs::create_dir_all(work.join("private")).unwrap();
    std::fs::write(work.join("private/key"), "key").unwrap();
    std::fs::write(work.join("repo/.git/hooks/pre-commit"), "#!/bin/sh\n").unwrap();
    let w = work.display();
    // Read and write the work tree, except: no reads of private/, no writes to the hooks.
    let files = base_files(&[&work.join("**")], &[&work.join("**")], &[])
        .replacen("], write: [", &format!(", {{path: \"{w}/private/**\", action: deny}}], write: ["), 1)
        .replacen("]}\n  exec: [", &format!(", {{path: \"{w}/repo/.git/hooks/**\", action: deny}}]}}\n  exec: ["), 1);
    let g = grant(f.path(), "no-carry", "enforce", &[], &files);
    let p = |rel: &str| work.join(rel).display().to_string();
    // The direct routes are refused, as before.
    assert_eq!(attempt(daemon, "carry-bot", &g, &["open", &p("private/key"), "r"]), "EPERM");
    assert_eq!(attempt(daemon, "carry-bot", &g, &["create", &p("repo/.git/hooks/post-merge")]), "EPERM");
    // Moving the restricted tree, a directory above it, or the file itself away is refused too.
    for (from, to) in [
        ("private", "public"),
        ("private/key", "key-copy"),
        ("repo/.git", "repo/g"),
        ("repo/.git/hooks", "repo/hooks"),
        ("repo", "repo2"),
    ] {
        assert_eq!(attempt(daemon, "carry-bot", &g, &["rename", &p(from), &p(to)]), "EPERM", "rename {from} -> {to}");
        assert!(work.join(from).exists() && !work.join(to).exists(), "{from} stayed where the rule names it");
    }
    assert_eq!(std::fs::read_to_string(work.join("private/key")).unwrap(), "key");
    // Renames of what no rule restricts still work.
    std::fs::write(work.join("notes.txt"), "n").unwrap();
    assert_eq!(attempt(daemon, "carry-bot", &g, &["rename", &p("notes.txt"), &p("notes2.txt")]), "ok");
    let event = daemon.wait_event("refused rename", |e| {
        e["kind"] == "file.change" && e["task"]["agent"] == "carry-bot" && e["object"]["operation"] == "rename_from"
    });
    assert_eq!(event["decision"], "denied");
}
