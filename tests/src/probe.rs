//! ag-probe: the "agent" of the end-to-end tests. Each verb performs one real action and
//! reports what the kernel said, as one line on stdout:
//!   connect ADDR:PORT      TCP connect         -> "ok" | "EPERM" | "error <errno>"
//!   udp ADDR:PORT          UDP sendto          -> same
//!   open PATH r|w          open(2)             -> same
//!   opath-reopen PATH      opens PATH with `O_PATH`, then reads it through /proc/self/fd
//!   grandchild VERB ARGS   runs VERB in a grandchild (fork, fork) and relays its line
//!   daemonize OUT VERB ARGS  double fork + setsid; the orphaned grandchild writes its line
//!                          to OUT after its parent chain is gone; returns at once
//!   exec PROG ARGS         runs PROG (fork + exec) -> "ok" | "EPERM" | "error .."
//!   mkdir|rmdir|unlink|truncate|chmod|create PATH, reopen-rw PATH (via /proc/self/fd)
//!   rename|link A B, symlink TARGET LINK
//!   memfd-exec PROG        copies PROG into a memfd and fexecve()s it (`PROG --help`-less: argv[0] only)
//!   ptrace PID             `PTRACE_SEIZE` (then detach); bpf: creates a BPF array map
//!   uring-open PATH        openat(PATH, `O_RDONLY`) submitted through `io_uring`, not a syscall
//!   connect-twice ADDR GAP connect, sleep GAP seconds, connect: "FIRST SECOND"
//!   fork-many N SECS       forks N children sleeping SECS: "ok=A EPERM=B other=C", then "done"
//!   loop SECS VERB ARGS    VERB every 100 ms for SECS seconds: "ok=N EPERM=M other=K"
//!   connect-each ADDR[/udp].. a TCP connect (or UDP send) to each: one outcome per line
//!   open-each PATH:r|w..   opens each existing PATH for reading or writing: one outcome per line
//!   api-via-exited-child SOCKET JSON  makes a Unix socket, lets a forked child connect it to
//!                          SOCKET and exit, then sends JSON on it: prints the reply line
//!   api-via-zombie-child SOCKET JSON  the same, but the child is left a zombie (not reaped)
//!   exit N                 exits with status N
//!   sleep SECS             sleeps
//!   after SECS VERB ARGS   sleeps, then does VERB
//!   open-many N PATH [HOLD]  opens PATH N times (results ignored), then sleeps HOLD seconds
//!   pid                    prints its pid
//!   exec-fd-link LINK ALLOWED HELD  execs LINK as a symlink to ALLOWED, then as a symlink to
//!                          `/proc/self/fd/900`, an `O_PATH` descriptor of HELD: the second exec's outcome
//!   race-path A B N        opens the path in a buffer another thread keeps rewriting between A
//!                          and B (same length) N times: "LEAK" if a read returned TOPSECRET
//!   pid-then VERB ARGS     prints "PID LINE" for VERB
//!   api-then SOCKET REQUEST VERB ARGS  sends REQUEST (one API line) from this process, its reply
//!                          to stderr, then does VERB
//!   resolve NAME           resolves NAME with getaddrinfo: its addresses, sorted, or "unresolved"
//!   resolve-connect NAME PORT  resolves NAME, then connects to its first address on PORT
//! and the attack verbs of attack.rs.
//! Exit status: 0 ok, 1 EPERM, 2 other error, 64 usage.

mod attack;

use std::{
    io::Write,
    net::{SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

fn outcome(result: std::io::Result<()>) -> (String, i32) {
    match result {
        Ok(()) => ("ok".into(), 0),
        Err(err) if err.raw_os_error() == Some(libc::EPERM) => ("EPERM".into(), 1),
        Err(err) => (format!("error {}", err.raw_os_error().unwrap_or(-1)), 2),
    }
}

#[expect(clippy::too_many_lines, reason = "one arm per probe verb")]
fn act(args: &[String]) -> (String, i32) {
    if args.first().map(String::as_str) == Some("seq") {
        attack::run_seq(&args[1..]);
    }
    if let Some(result) = attack::act(args) {
        return outcome(result);
    }
    if let Some(outcome) = attack::act_line(args) {
        return outcome;
    }
    let addr = |i: usize| -> SocketAddr { args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| usage()) };
    match args.first().map(String::as_str) {
        Some("connect") => outcome(TcpStream::connect_timeout(&addr(1), Duration::from_secs(5)).map(drop)),
        Some("udp") => {
            let dest = addr(1);
            let bind: SocketAddr =
                if dest.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
            outcome(UdpSocket::bind(bind).and_then(|s| s.send_to(b"probe", dest)).map(drop))
        }
        // TCP Fast Open: connect and send in one sendto(MSG_FASTOPEN), which never runs the
        // socket_connect LSM hook (net/ipv4/tcp.c tcp_sendmsg_fastopen), only the cgroup one.
        Some("tfo") => {
            let dest = addr(1);
            let SocketAddr::V4(v4) = dest else { usage() };
            // SAFETY: plain socket calls on a descriptor this block owns and closes.
            unsafe {
                let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: v4.port().to_be(),
                    sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) },
                    sin_zero: [0; 8],
                };
                let sent = libc::sendto(
                    fd,
                    b"x".as_ptr().cast(),
                    1,
                    libc::MSG_FASTOPEN,
                    std::ptr::from_ref(&sin).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                );
                let result = if sent < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) };
                libc::close(fd);
                outcome(result)
            }
        }
        Some("open") => {
            let path = args.get(1).unwrap_or_else(|| usage());
            let write = args.get(2).map(String::as_str) == Some("w");
            outcome(
                std::fs::OpenOptions::new()
                    .read(!write)
                    .write(write)
                    .create(write)
                    .truncate(false)
                    .open(path)
                    .map(drop),
            )
        }
        Some("race-path") => race_path(args),
        Some("exec-fd-link") => {
            use std::os::{fd::AsRawFd, unix::fs::OpenOptionsExt};
            let arg = |i: usize| args.get(i).unwrap_or_else(|| usage()).clone();
            let (link, allowed, held) = (arg(1), arg(2), arg(3));
            let run = || std::process::Command::new(&link).status();
            let _ = std::fs::remove_file(&link);
            let first = std::os::unix::fs::symlink(&allowed, &link).and_then(|()| run());
            if first.is_err() {
                return outcome(first.map(drop));
            }
            let handle = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH).open(&held);
            let second = handle.and_then(|handle| {
                // SAFETY: duplicates a descriptor this process owns onto 900, without CLOEXEC.
                if unsafe { libc::dup2(handle.as_raw_fd(), 900) } < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                std::fs::remove_file(&link)?;
                std::os::unix::fs::symlink("/proc/self/fd/900", &link)?;
                run()
            });
            match second {
                Ok(status) if status.success() => ("ran".into(), 0),
                Ok(status) => (format!("child {status}"), 2),
                Err(err) => outcome(Err(err)),
            }
        }
        Some("opath-reopen") => {
            use std::os::{fd::AsRawFd, unix::fs::OpenOptionsExt};
            let path = args.get(1).unwrap_or_else(|| usage());
            let opened = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH).open(path);
            outcome(opened.and_then(|handle| std::fs::read(format!("/proc/self/fd/{}", handle.as_raw_fd())).map(drop)))
        }
        Some("exec") => {
            let program = args.get(1).unwrap_or_else(|| usage());
            outcome(std::process::Command::new(program).args(&args[2..]).status().and_then(|status| {
                if status.success() {
                    Ok(())
                } else {
                    Err(std::io::Error::other(format!("{program} exited with {status}")))
                }
            }))
        }
        Some(verb @ ("mkdir" | "rmdir" | "unlink" | "truncate" | "chmod" | "create" | "reopen-rw")) => {
            let path = args.get(1).unwrap_or_else(|| usage());
            outcome(match verb {
                "mkdir" => std::fs::create_dir(path),
                "rmdir" => std::fs::remove_dir(path),
                "unlink" => std::fs::remove_file(path),
                "truncate" => std::fs::OpenOptions::new().write(true).open(path).and_then(|_| {
                    // truncate(2) by path, not through the open file.
                    let c = std::ffi::CString::new(path.as_str()).unwrap();
                    if unsafe { libc::truncate(c.as_ptr(), 0) } == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                }),
                "chmod" => std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)),
                "create" => std::fs::OpenOptions::new().write(true).create_new(true).open(path).map(drop),
                // Open read-only, then reopen the same file read-write through /proc/self/fd.
                _ => std::fs::File::open(path).and_then(|f| {
                    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
                    std::fs::OpenOptions::new().read(true).write(true).open(format!("/proc/self/fd/{fd}")).map(drop)
                }),
            })
        }
        Some(verb @ ("rename" | "link" | "symlink")) => {
            let (a, b) = (args.get(1).unwrap_or_else(|| usage()), args.get(2).unwrap_or_else(|| usage()));
            outcome(match verb {
                "rename" => std::fs::rename(a, b),
                "link" => std::fs::hard_link(a, b),
                _ => std::os::unix::fs::symlink(a, b),
            })
        }
        Some("memfd-exec") => {
            // Copy PROG into an anonymous memfd and fexecve it (the file has no path).
            let program = args.get(1).unwrap_or_else(|| usage());
            let result = (|| -> std::io::Result<()> {
                let bytes = std::fs::read(program)?;
                let name = std::ffi::CString::new("agent").unwrap();
                let fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let mut file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
                file.write_all(&bytes)?;
                let child = unsafe { libc::fork() };
                if child == 0 {
                    let name = std::ffi::CString::new(program.as_str()).unwrap();
                    let args = [name.as_ptr(), std::ptr::null()];
                    let environment = [std::ptr::null()];
                    unsafe { libc::fexecve(fd, args.as_ptr(), environment.as_ptr()) };
                    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(1);
                    unsafe { libc::_exit(if errno == libc::EPERM { 126 } else { 127 }) };
                }
                let mut status = 0;
                unsafe { libc::waitpid(child, &raw mut status, 0) };
                if libc::WIFSIGNALED(status) {
                    return Err(std::io::Error::other(format!("killed by signal {}", libc::WTERMSIG(status))));
                }
                match libc::WEXITSTATUS(status) {
                    0 => Ok(()),
                    126 => Err(std::io::Error::from_raw_os_error(libc::EPERM)),
                    code => Err(std::io::Error::other(format!("exit {code}"))),
                }
            })();
            outcome(result)
        }
        Some("ptrace") => {
            // PTRACE_SEIZE attaches without stopping the target; detach at once if it worked.
            let pid: libc::pid_t = args.get(1).and_then(|p| p.parse().ok()).unwrap_or_else(|| usage());
            let rc = unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0) };
            if rc == 0 {
                unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0) };
            }
            outcome(if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) })
        }
        Some("bpf") => {
            // BPF_MAP_CREATE of an array map with one 4-byte entry: refused or created.
            let mut attr = [0u32; 32];
            attr[0] = 2; // BPF_MAP_TYPE_ARRAY
            attr[1] = 4;
            attr[2] = 4;
            attr[3] = 1;
            let fd = unsafe { libc::syscall(libc::SYS_bpf, 0, attr.as_mut_ptr(), std::mem::size_of_val(&attr)) };
            if fd >= 0 {
                unsafe { libc::close(fd as i32) };
            }
            outcome(if fd >= 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) })
        }
        Some("uring-open") => outcome(uring_open(args.get(1).unwrap_or_else(|| usage()))),
        Some("api-via-zombie-child") => {
            let (socket, request) = (args.get(1).unwrap_or_else(|| usage()), args.get(2).unwrap_or_else(|| usage()));
            (api_via_child(socket, request, false), 0)
        }
        Some("api-via-exited-child") => {
            let (socket, request) = (args.get(1).unwrap_or_else(|| usage()), args.get(2).unwrap_or_else(|| usage()));
            (api_via_child(socket, request, true), 0)
        }
        Some("open-each") => {
            let lines: Vec<String> = args[1..]
                .iter()
                .map(|item| {
                    let (path, mode) = item.rsplit_once(':').unwrap_or_else(|| usage());
                    let write = mode == "w";
                    outcome(std::fs::OpenOptions::new().read(!write).write(write).open(path).map(drop)).0
                })
                .collect();
            (lines.join("\n"), 0)
        }
        Some("connect-each") => {
            let lines: Vec<String> = args[1..]
                .iter()
                .map(|target| {
                    let (dest, udp) = match target.strip_suffix("/udp") {
                        Some(d) => (d, true),
                        None => (target.strip_suffix("/tcp").unwrap_or(target), false),
                    };
                    let dest: SocketAddr = dest.parse().unwrap_or_else(|_| usage());
                    let result = if udp {
                        let local = if dest.is_ipv6() { "[::]:0" } else { "127.0.0.1:0" };
                        UdpSocket::bind(local).and_then(|s| s.send_to(b"x", dest).map(drop))
                    } else {
                        TcpStream::connect_timeout(&dest, Duration::from_secs(5)).map(drop)
                    };
                    outcome(result).0
                })
                .collect();
            (lines.join("\n"), 0)
        }
        Some("connect-twice") => {
            // connect, wait GAP seconds, connect again: "FIRST SECOND".
            let gap = args.get(2).and_then(|g| g.parse().ok()).unwrap_or_else(|| usage());
            let first = outcome(TcpStream::connect_timeout(&addr(1), Duration::from_secs(5)).map(drop)).0;
            std::thread::sleep(Duration::from_secs_f64(gap));
            let second = outcome(TcpStream::connect_timeout(&addr(1), Duration::from_secs(5)).map(drop)).0;
            (format!("{first} {second}"), 0)
        }
        Some("loop") => {
            // VERB ARGS every 100 ms for SECS: "ok=N EPERM=M other=K".
            let secs: f64 = args.get(1).and_then(|g| g.parse().ok()).unwrap_or_else(|| usage());
            let end = std::time::Instant::now() + Duration::from_secs_f64(secs);
            let mut counts = std::collections::BTreeMap::new();
            while std::time::Instant::now() < end {
                let result = act(&args[2..]).0;
                let key = if result == "ok" || result == "EPERM" { result } else { "other".into() };
                *counts.entry(key).or_insert(0u32) += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            let line = ["ok", "EPERM", "other"]
                .iter()
                .map(|k| format!("{k}={}", counts.get(*k).copied().unwrap_or(0)))
                .collect::<Vec<_>>()
                .join(" ");
            (line, 0)
        }
        Some("exit") => std::process::exit(args.get(1).and_then(|n| n.parse().ok()).unwrap_or(0)),
        Some("sleep") => {
            std::thread::sleep(Duration::from_secs_f64(args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1.0)));
            ("ok".into(), 0)
        }
        Some("pid") => (std::process::id().to_string(), 0),
        Some("api-then") => {
            let (socket, request) = (args.get(1).unwrap_or_else(|| usage()), args.get(2).unwrap_or_else(|| usage()));
            eprintln!("{}", api_line(socket, request));
            act(&args[3..])
        }
        Some("after") => {
            std::thread::sleep(Duration::from_secs_f64(
                args.get(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| usage()),
            ));
            act(&args[2..])
        }
        Some("open-many") => {
            let count: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| usage());
            let path = args.get(2).unwrap_or_else(|| usage());
            for _ in 0..count {
                let _ = std::fs::File::open(path);
            }
            if let Some(hold) = args.get(3).and_then(|s| s.parse::<f64>().ok()) {
                std::thread::sleep(Duration::from_secs_f64(hold));
            }
            ("ok".into(), 0)
        }
        Some("open-parallel") => {
            // N threads open PATH at once; prints how many read it ("read=R refused=F").
            let count: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| usage());
            let path = args.get(2).unwrap_or_else(|| usage()).clone();
            let threads: Vec<_> = (0..count)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || std::fs::read(&path).is_ok())
                })
                .collect();
            let read = threads.into_iter().filter_map(|t| t.join().ok()).filter(|&ok| ok).count();
            (format!("read={read} refused={}", count - read), 0)
        }
        Some("resolve") => {
            use std::net::ToSocketAddrs;
            let name = args.get(1).unwrap_or_else(|| usage());
            match (name.as_str(), 0).to_socket_addrs() {
                Ok(addrs) => {
                    let mut ips: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
                    ips.sort();
                    ips.dedup();
                    (ips.join(" "), 0)
                }
                Err(_) => ("unresolved".into(), 2),
            }
        }
        Some("resolve-connect") => {
            use std::net::ToSocketAddrs;
            let name = args.get(1).unwrap_or_else(|| usage());
            let port: u16 = args.get(2).and_then(|p| p.parse().ok()).unwrap_or_else(|| usage());
            match (name.as_str(), port).to_socket_addrs().map(|mut a| a.find(SocketAddr::is_ipv4)) {
                Ok(Some(to)) => outcome(TcpStream::connect_timeout(&to, Duration::from_secs(5)).map(drop)),
                _ => ("unresolved".into(), 2),
            }
        }
        Some("alloc") => {
            // Allocates MIB MiB and touches every page (so that it is charged); "ok N CGROUP" if
            // it lived, CGROUP being its cgroup v2 path.
            let mib: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| usage());
            let mut held: Vec<Vec<u8>> = Vec::new();
            for _ in 0..mib {
                let mut chunk = vec![0u8; 1 << 20];
                for page in chunk.iter_mut().step_by(4096) {
                    *page = 1;
                }
                held.push(std::hint::black_box(chunk));
            }
            let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
            let cgroup = cgroup.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("?").to_string();
            (format!("ok {} {cgroup}", held.len()), 0)
        }
        Some("pid-then") => {
            let (line, code) = act(&args[1..]);
            (format!("{} {line}", std::process::id()), code)
        }
        Some("fork-many") => {
            // Forks N children that sleep SECS; prints "ok=A EPERM=B other=C" at once (flushed),
            // then waits for them.
            let count: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| usage());
            let secs: u32 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or_else(|| usage());
            let (mut ok, mut eperm, mut other) = (0, 0, 0);
            for _ in 0..count {
                // SAFETY: the child only sleeps and exits (async-signal-safe).
                match unsafe { libc::fork() } {
                    0 => unsafe {
                        libc::sleep(secs);
                        libc::_exit(0)
                    },
                    -1 if std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) => eperm += 1,
                    -1 => other += 1,
                    _ => ok += 1,
                }
            }
            let _ = writeln!(std::io::stdout(), "ok={ok} EPERM={eperm} other={other}");
            let _ = std::io::stdout().flush();
            // SAFETY: reaps this process's children.
            while unsafe { libc::wait(std::ptr::null_mut()) } > 0 {}
            ("done".into(), 0)
        }
        Some("grandchild") => {
            let (mut read, write) = pipe();
            // SAFETY: single-threaded process; the child only calls async-signal-safe code
            // before it execs or exits (fork again, wait, write, _exit).
            match unsafe { libc::fork() } {
                0 => {
                    drop(read);
                    let inner = run_in_child(&args[1..], write);
                    unsafe { libc::_exit(inner) }
                }
                -1 => ("error fork".into(), 2),
                child => {
                    drop(write);
                    let mut line = String::new();
                    std::io::Read::read_to_string(&mut read, &mut line).ok();
                    wait(child);
                    let line = line.trim().to_string();
                    let code = if line == "ok" {
                        0
                    } else if line == "EPERM" {
                        1
                    } else {
                        2
                    };
                    (line, code)
                }
            }
        }
        Some("daemonize") => {
            let out = args.get(1).unwrap_or_else(|| usage()).clone();
            match unsafe { libc::fork() } {
                0 => {
                    unsafe { libc::setsid() };
                    let intermediate = unsafe { libc::getpid() };
                    match unsafe { libc::fork() } {
                        0 => {
                            // Like a real daemon: detach from the caller's stdio.
                            let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").unwrap();
                            for fd in 0..3 {
                                unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) };
                            }
                            // Wait until re-parented: the intermediate process has exited.
                            while unsafe { libc::getppid() } == intermediate {
                                std::thread::sleep(Duration::from_millis(10));
                            }
                            let (line, _) = act(&args[2..]);
                            let ppid = unsafe { libc::getppid() };
                            let _ = std::fs::write(&out, format!("{line} ppid={ppid}\n"));
                            unsafe { libc::_exit(0) }
                        }
                        _ => unsafe { libc::_exit(0) },
                    }
                }
                -1 => ("error fork".into(), 2),
                child => {
                    wait(child);
                    ("started".into(), 0)
                }
            }
        }
        _ => usage(),
    }
}

/// In the child: fork a grandchild that performs `args` and writes its line to `write`.
fn run_in_child(args: &[String], mut write: std::fs::File) -> i32 {
    match unsafe { libc::fork() } {
        0 => {
            let (line, code) = act(args);
            let _ = writeln!(write, "{line}");
            unsafe { libc::_exit(code) }
        }
        -1 => 2,
        grandchild => {
            drop(write);
            wait(grandchild);
            0
        }
    }
}

/// One `IORING_OP_OPENAT` through a minimal `io_uring` (`include/uapi/linux/io_uring.h` layouts):
/// the open is performed by the kernel on the ring's behalf, with no open syscall to observe.
#[expect(
    clippy::cast_ptr_alignment,
    reason = "io_uring's rings are page-aligned mmaps and the kernel gives each field's offset aligned for its type"
)]
fn uring_open(path: &str) -> std::io::Result<()> {
    const IORING_OP_OPENAT: u8 = 18;
    const IORING_ENTER_GETEVENTS: u32 = 1;
    const OFF_SQ_RING: i64 = 0;
    const OFF_CQ_RING: i64 = 0x800_0000;
    const OFF_SQES: i64 = 0x1000_0000;
    let last = || std::io::Error::last_os_error();
    // struct io_uring_params: 40 bytes of scalars, then io_sqring_offsets and io_cqring_offsets.
    let mut params = [0u32; 30];
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) } as i32;
    if fd < 0 {
        return Err(last());
    }
    let (sq_entries, cq_entries) = (params[0] as usize, params[1] as usize);
    // sq_off at u32 index 10: head, tail, ring_mask, ring_entries, flags, dropped, array.
    let (sq_head, sq_tail, sq_mask, sq_array) = (params[10], params[11], params[12], params[16]);
    // cq_off at u32 index 20: head, tail, ring_mask, ring_entries, overflow, cqes.
    let (cq_head, cq_mask, cqes) = (params[20], params[22], params[25]);
    let map = |len: usize, off: i64| unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd,
            off,
        )
    };
    let sq = map(sq_array as usize + sq_entries * 4, OFF_SQ_RING).cast::<u8>();
    let cq = map(cqes as usize + cq_entries * 16, OFF_CQ_RING).cast::<u8>();
    let sqes = map(sq_entries * 64, OFF_SQES).cast::<u8>();
    if [sq, cq, sqes].iter().any(|p| *p as isize == -1) {
        return Err(last());
    }
    let c_path = std::ffi::CString::new(path).unwrap();
    unsafe {
        let sqe = sqes;
        std::ptr::write_bytes(sqe, 0, 64);
        *sqe = IORING_OP_OPENAT;
        *sqe.add(4).cast::<i32>() = libc::AT_FDCWD;
        *sqe.add(16).cast::<u64>() = c_path.as_ptr() as u64;
        *sqe.add(28).cast::<u32>() = libc::O_RDONLY as u32;
        *sqe.add(32).cast::<u64>() = 7;
        let tail = sq.add(sq_tail as usize).cast::<u32>();
        let mask = *(sq.add(sq_mask as usize) as *const u32);
        let t = std::ptr::read_volatile(tail);
        *sq.add(sq_array as usize).cast::<u32>().add((t & mask) as usize) = 0;
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        std::ptr::write_volatile(tail, t + 1);
        let _ = sq_head;
        let rc = libc::syscall(
            libc::SYS_io_uring_enter,
            fd,
            1u32,
            1u32,
            IORING_ENTER_GETEVENTS,
            std::ptr::null::<u8>(),
            0usize,
        );
        if rc < 0 {
            return Err(last());
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        let head = std::ptr::read_volatile(cq.add(cq_head as usize) as *const u32);
        let cmask = *(cq.add(cq_mask as usize) as *const u32);
        let cqe = cq.add(cqes as usize + ((head & cmask) as usize) * 16);
        let res = *(cqe.add(8) as *const i32);
        if res < 0 { Err(std::io::Error::from_raw_os_error(-res)) } else { Ok(()) }
    }
}

fn pipe() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    // SAFETY: both fds were just created and are owned by nothing else.
    unsafe { (std::fs::File::from_raw_fd(fds[0]), std::fs::File::from_raw_fd(fds[1])) }
}

fn wait(pid: libc::pid_t) {
    let mut status = 0;
    unsafe { libc::waitpid(pid, &raw mut status, 0) };
}

/// The socket is created here, connected by a child that exits at once, then used here: the
/// kernel's peer credentials name the (gone) child. With `reap` false the child is left a
/// zombie: exited, untagged by the kernel, but its pid still names it.
fn api_via_child(socket: &str, request: &str, reap: bool) -> String {
    use std::os::{fd::FromRawFd, unix::net::UnixStream};
    // SAFETY: plain socket/fork/connect/waitpid calls; the child only connects and _exits.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (i, b) in socket.bytes().take(addr.sun_path.len() - 1).enumerate() {
            addr.sun_path[i] = b as libc::c_char;
        }
        let child = libc::fork();
        if child == 0 {
            let rc = libc::connect(fd, (&raw const addr).cast(), size_of::<libc::sockaddr_un>() as libc::socklen_t);
            libc::_exit(i32::from(rc != 0));
        }
        if reap {
            let mut status = 0;
            libc::waitpid(child, &raw mut status, 0);
            if libc::WEXITSTATUS(status) != 0 {
                return "error connect".into();
            }
        } else {
            // Wait for the zombie without reaping it.
            let mut info: libc::siginfo_t = std::mem::zeroed();
            if libc::waitid(libc::P_PID, child as libc::id_t, &raw mut info, libc::WEXITED | libc::WNOWAIT) != 0 {
                return "error waitid".into();
            }
        }
        exchange(&UnixStream::from_raw_fd(fd), request)
    }
}

/// The daemon's reply to `request`, sent from this process.
fn api_line(socket: &str, request: &str) -> String {
    match std::os::unix::net::UnixStream::connect(socket) {
        Ok(stream) => exchange(&stream, request),
        Err(_) => "error connect".into(),
    }
}

/// Writes `request` as one line on `stream` and reads the reply's line.
fn exchange(stream: &std::os::unix::net::UnixStream, request: &str) -> String {
    use std::io::{BufRead, BufReader};
    if (&*stream).write_all(format!("{request}\n").as_bytes()).is_err() {
        return "error write".into();
    }
    let mut line = String::new();
    let _ = BufReader::new(stream).read_line(&mut line);
    line.trim().to_string()
}

fn usage() -> ! {
    eprintln!(
        "usage: ag-probe connect|udp|tfo ADDR:PORT | open PATH r|w | grandchild VERB.. | daemonize OUT VERB.. | exit N | sleep S | pid"
    );
    std::process::exit(64)
}

/// The classic attack on seccomp user notification: the path is rewritten between the
/// supervisor's read and the kernel's.
fn race_path(args: &[String]) -> (String, i32) {
    use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
    static BUF: [AtomicU8; 256] = [const { AtomicU8::new(0) }; 256];
    static STOP: AtomicBool = AtomicBool::new(false);
    let (a, b) = (args.get(1).unwrap_or_else(|| usage()).clone(), args.get(2).unwrap_or_else(|| usage()).clone());
    let n: usize = args.get(3).and_then(|n| n.parse().ok()).unwrap_or_else(|| usage());
    if a.len() != b.len() || a.len() >= BUF.len() {
        usage();
    }
    let put = |p: &str| p.bytes().enumerate().for_each(|(i, c)| BUF[i].store(c, Relaxed));
    put(&a);
    let flipper = std::thread::spawn(move || {
        while !STOP.load(Relaxed) {
            put(&b);
            std::hint::spin_loop();
            put(&a);
        }
    });
    let mut leaked = false;
    for _ in 0..n {
        // SAFETY: a NUL-terminated buffer (the last byte stays 0) that lives for the program.
        let fd = unsafe { libc::open(BUF.as_ptr().cast(), libc::O_RDONLY) };
        if fd >= 0 {
            let mut data = [0u8; 64];
            // SAFETY: reads into a local buffer from the descriptor just opened.
            let got = unsafe { libc::read(fd, data.as_mut_ptr().cast(), data.len()) };
            leaked |= got > 0 && data.starts_with(b"TOPSECRET");
            // SAFETY: closes the descriptor just opened.
            unsafe { libc::close(fd) };
        }
    }
    STOP.store(true, Relaxed);
    let _ = flipper.join();
    if leaked { ("LEAK".into(), 3) } else { ("no leak".into(), 0) }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (line, code) = act(&args);
    // A revoked task may not even write its line (its stdout was opened before): never panic.
    let _ = writeln!(std::io::stdout(), "{line}");
    std::process::exit(code);
}
