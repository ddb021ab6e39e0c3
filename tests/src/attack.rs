//! ag-probe's attack verbs: each tries one way out of a task, the way an attacker would, and
//! prints what the kernel said ("ok", "EPERM", "error N"). The tests then check that the
//! effect did not happen, not only the error.
//!   kill PID SIG | tgkill PID SIG | sigqueue PID SIG | pidfd-kill PID SIG   signal a process
//!   sigio PID          routes SIGIO (`F_SETOWN` + `O_ASYNC`) from a pipe to PID, then writes to it
//!   prlimit PID        `RLIMIT_CPU` of PID to 1 s;  nice PID: PID's priority to 19
//!   vm-read PID        `process_vm_readv` of PID ("error 14" (EFAULT) means it was allowed)
//!   proc-mem PID       opens /proc/PID/mem;  pidfd-getfd PID FD: takes PID's descriptor FD
//!   mount-tmpfs DIR | bind SRC DST | chroot DIR | unshare-user | unshare-mount | open-tree SRC DST
//!   sethostname NAME   needs `CAP_SYS_ADMIN`
//!   mknod-blk PATH MAJ MIN   makes a block device node; open-dev PATH: opens it and reads
//!   socket FAMILY TYPE PROTO   socket(2) with those numbers
//!   listen PORT        TCP listen on 127.0.0.1:PORT
//!   setxattr PATH | set-acl PATH | utimes PATH
//!   perf               `perf_event_open` of a software clock
//!   read-again PATH SECS     reads PATH, waits for its stdin to close (at most SECS), reads
//!                      again: "FIRST SECOND"
//!   send-again ADDR SECS     connects, sends, waits for its stdin to close (at most SECS),
//!                      sends again: "FIRST SECOND"
//!   thread-exec VERB ARGS    a second thread execs this probe with VERB ARGS
//!   leader-exit SECS VERB ARGS  the main thread exits; another does VERB after SECS
//!   unix-connect PATH  stream connect to the Unix socket at PATH, then writes "hello"
//!   unix-send PATH     one datagram "hello" to the Unix socket at PATH
//!   unix-abstract NAME stream connect to the abstract Unix socket @NAME
//!   socketpair         a datagram over a fresh socketpair (stays inside the process)
//!   write PATH TEXT    opens PATH for writing and writes TEXT (cgroup files)
//!   clone-into-cgroup DIR   clone3 with `CLONE_INTO_CGROUP` into cgroup directory DIR
//!   add-key TYPE       `add_key(TYPE`, "agent-guard-probe", "x") to the process keyring
//!   setown-pgrp        `F_SETOWN` of a pipe to a process group (a new one, led by this process)
//!   bpf-obj-get PATH   `BPF_OBJ_GET` of a pinned map or link
//!   open-unfaulted PATH  opens PATH spelled on a page the process never touched (a memfd mapping)
//!   seq STEP :: STEP ..  runs each STEP (`VERB ARGS`, or `cd DIR` for the steps after it) as a
//!                      child probe, their lines in order; a child killed by a signal ends the
//!                      sequence with exit status 128 + the signal, as a shell would
//!   openat2-flip FIFO  openat2(FIFO, `O_WRONLY`) blocks for a reader; meanwhile another thread
//!                      rewrites the `open_how` to `O_RDONLY` and opens the reader: "ok" once the
//!                      writer's open returns (what the exit then reads in memory is a read)
//!   open-syscalls PATH DIR  opens PATH for reading with open(2), openat(2) relative to DIR
//!                      (PATH's name in DIR), openat2(2) and io-less creat(2): "open=.. openat=.. openat2=.. creat=.."
//!   clone-files        clone(`CLONE_FILES`) without `CLONE_THREAD`: a process sharing the descriptors

use std::{
    ffi::CString,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

fn errno_result(rc: i64) -> std::io::Result<()> {
    if rc < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

fn num<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| super::usage())
}

fn cstr(args: &[String], i: usize) -> CString {
    CString::new(args.get(i).unwrap_or_else(|| super::usage()).as_str()).unwrap()
}

/// Runs an attack verb; None when `args` names none.
#[expect(clippy::too_many_lines, reason = "one arm per attack technique")]
pub fn act(args: &[String]) -> Option<std::io::Result<()>> {
    let verb = args.first()?.as_str();
    // SAFETY (whole block): plain syscalls with arguments built here; pointers are to live
    // locals of the right layout.
    let result = unsafe {
        match verb {
            "kill" => errno_result(i64::from(libc::kill(num(args, 1), num(args, 2)))),
            "tgkill" => {
                let pid: i32 = num(args, 1);
                errno_result(libc::syscall(libc::SYS_tgkill, pid, pid, num::<i32>(args, 2)))
            }
            "sigqueue" => {
                let value = libc::sigval { sival_ptr: std::ptr::null_mut() };
                errno_result(i64::from(libc::sigqueue(num(args, 1), num(args, 2), value)))
            }
            "pidfd-kill" => {
                let fd = libc::syscall(libc::SYS_pidfd_open, num::<i32>(args, 1), 0);
                if fd < 0 {
                    return Some(Err(std::io::Error::last_os_error()));
                }
                errno_result(libc::syscall(libc::SYS_pidfd_send_signal, fd, num::<i32>(args, 2), 0, 0))
            }
            "sigio" => sigio(num(args, 1)),
            "prlimit" => {
                let limit = libc::rlimit { rlim_cur: 1, rlim_max: 1 };
                errno_result(i64::from(libc::prlimit(
                    num(args, 1),
                    libc::RLIMIT_CPU,
                    &raw const limit,
                    std::ptr::null_mut(),
                )))
            }
            "nice" => errno_result(i64::from(libc::setpriority(libc::PRIO_PROCESS, num(args, 1), 19))),
            "vm-read" => {
                let mut byte = 0u8;
                let local = libc::iovec { iov_base: (&raw mut byte).cast(), iov_len: 1 };
                // A dangling address (1) is never mapped: allowed, this fails with EFAULT.
                let remote = libc::iovec { iov_base: std::ptr::dangling_mut::<libc::c_void>(), iov_len: 1 };
                errno_result(libc::process_vm_readv(num(args, 1), &raw const local, 1, &raw const remote, 1, 0) as i64)
            }
            "proc-mem" => std::fs::File::open(format!("/proc/{}/mem", num::<i32>(args, 1))).map(drop),
            "pidfd-getfd" => {
                let fd = libc::syscall(libc::SYS_pidfd_open, num::<i32>(args, 1), 0);
                if fd < 0 {
                    return Some(Err(std::io::Error::last_os_error()));
                }
                errno_result(libc::syscall(libc::SYS_pidfd_getfd, fd, num::<i32>(args, 2), 0))
            }
            "mount-tmpfs" => {
                let (src, fs) = (CString::new("none").unwrap(), CString::new("tmpfs").unwrap());
                errno_result(i64::from(libc::mount(
                    src.as_ptr(),
                    cstr(args, 1).as_ptr(),
                    fs.as_ptr(),
                    0,
                    std::ptr::null(),
                )))
            }
            "bind" => errno_result(i64::from(libc::mount(
                cstr(args, 1).as_ptr(),
                cstr(args, 2).as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ))),
            "chroot" => errno_result(i64::from(libc::chroot(cstr(args, 1).as_ptr()))),
            "unshare-user" => errno_result(i64::from(libc::unshare(libc::CLONE_NEWUSER))),
            "unshare-mount" => errno_result(i64::from(libc::unshare(libc::CLONE_NEWNS))),
            "open-tree" => {
                const OPEN_TREE_CLONE: u32 = 1;
                const MOVE_MOUNT_F_EMPTY_PATH: u32 = 4;
                let fd = libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, cstr(args, 1).as_ptr(), OPEN_TREE_CLONE);
                if fd < 0 {
                    return Some(Err(std::io::Error::last_os_error()));
                }
                let empty = CString::new("").unwrap();
                errno_result(libc::syscall(
                    libc::SYS_move_mount,
                    fd,
                    empty.as_ptr(),
                    libc::AT_FDCWD,
                    cstr(args, 2).as_ptr(),
                    MOVE_MOUNT_F_EMPTY_PATH,
                ))
            }
            "sethostname" => {
                let name = args.get(1).unwrap_or_else(|| super::usage());
                errno_result(i64::from(libc::sethostname(name.as_ptr().cast(), name.len())))
            }
            "mknod-blk" => {
                let dev = libc::makedev(num(args, 2), num(args, 3));
                errno_result(i64::from(libc::mknod(cstr(args, 1).as_ptr(), libc::S_IFBLK | 0o600, dev)))
            }
            "open-dev" => std::fs::File::open(args.get(1).unwrap_or_else(|| super::usage()))
                .and_then(|mut f| f.read(&mut [0u8; 512]).map(drop)),
            "socket" => {
                let fd = libc::socket(num(args, 1), num(args, 2), num(args, 3));
                if fd >= 0 {
                    libc::close(fd);
                }
                errno_result(i64::from(fd))
            }
            "listen" => std::net::TcpListener::bind(("127.0.0.1", num::<u16>(args, 1))).map(drop),
            "setxattr" => {
                let (name, value) = (CString::new("user.agent").unwrap(), b"x");
                errno_result(i64::from(libc::setxattr(
                    cstr(args, 1).as_ptr(),
                    name.as_ptr(),
                    value.as_ptr().cast(),
                    1,
                    0,
                )))
            }
            "set-acl" => {
                // system.posix_acl_access, version 2: user::rwx, group::r--, other::rwx
                // (include/uapi/linux/posix_acl_xattr.h): gives everyone write.
                let mut acl = 2u32.to_le_bytes().to_vec();
                for (tag, perm) in [(0x01u16, 7u16), (0x04, 4), (0x20, 7)] {
                    acl.extend(tag.to_le_bytes());
                    acl.extend(perm.to_le_bytes());
                    acl.extend(u32::MAX.to_le_bytes());
                }
                let name = CString::new("system.posix_acl_access").unwrap();
                errno_result(i64::from(libc::setxattr(
                    cstr(args, 1).as_ptr(),
                    name.as_ptr(),
                    acl.as_ptr().cast(),
                    acl.len(),
                    0,
                )))
            }
            "utimes" => {
                let times = [libc::timespec { tv_sec: 86_400, tv_nsec: 0 }; 2];
                errno_result(i64::from(libc::utimensat(libc::AT_FDCWD, cstr(args, 1).as_ptr(), times.as_ptr(), 0)))
            }
            "unix-connect" => std::os::unix::net::UnixStream::connect(args.get(1).unwrap_or_else(|| super::usage()))
                .and_then(|mut s| s.write_all(b"hello")),
            "unix-send" => std::os::unix::net::UnixDatagram::unbound()
                .and_then(|s| s.send_to(b"hello", args.get(1).unwrap_or_else(|| super::usage())).map(drop)),
            "unix-abstract" => {
                use std::os::linux::net::SocketAddrExt;
                let name = args.get(1).unwrap_or_else(|| super::usage());
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                    .and_then(|addr| std::os::unix::net::UnixStream::connect_addr(&addr))
                    .and_then(|mut s| s.write_all(b"hello"))
            }
            "socketpair" => std::os::unix::net::UnixDatagram::pair().and_then(|(a, b)| {
                a.send(b"hello")?;
                let mut buf = [0u8; 8];
                b.recv(&mut buf).map(drop)
            }),
            "write" => std::fs::OpenOptions::new()
                .write(true)
                .open(args.get(1).unwrap_or_else(|| super::usage()))
                .and_then(|mut f| f.write_all(args.get(2).unwrap_or_else(|| super::usage()).as_bytes())),
            "clone-into-cgroup" => {
                let fd = libc::open(cstr(args, 1).as_ptr(), libc::O_PATH | libc::O_DIRECTORY);
                if fd < 0 {
                    return Some(Err(std::io::Error::last_os_error()));
                }
                // struct clone_args (include/uapi/linux/sched.h), CLONE_ARGS_SIZE_VER2: flags,
                // pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
                // set_tid_size, cgroup.
                let mut clone_args = [0u64; 11];
                clone_args[0] = 0x2_0000_0000; // CLONE_INTO_CGROUP
                clone_args[4] = libc::SIGCHLD as u64;
                clone_args[10] = fd as u64;
                let pid = libc::syscall(libc::SYS_clone3, clone_args.as_ptr(), std::mem::size_of_val(&clone_args));
                if pid == 0 {
                    libc::_exit(0);
                }
                if pid > 0 {
                    libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
                }
                errno_result(pid)
            }
            "add-key" => {
                let kind = cstr(args, 1);
                let desc = CString::new("agent-guard-probe").unwrap();
                // A keyring takes no payload (keyring_preparse).
                let payload: &[u8] = if kind.as_bytes() == b"keyring" { &[] } else { b"x" };
                let data = if payload.is_empty() { std::ptr::null() } else { payload.as_ptr() };
                // KEY_SPEC_PROCESS_KEYRING (-2): made on first use (a keyring, allowed).
                errno_result(libc::syscall(libc::SYS_add_key, kind.as_ptr(), desc.as_ptr(), data, payload.len(), -2i32))
            }
            "setown-pgrp" => {
                let mut fds = [0i32; 2];
                if libc::pipe(fds.as_mut_ptr()) < 0 {
                    return Some(Err(std::io::Error::last_os_error()));
                }
                // A group of its own (under the VM's init every process is in group 0, which
                // F_SETOWN reads as "no owner").
                libc::setpgid(0, 0);
                errno_result(i64::from(libc::fcntl(fds[0], libc::F_SETOWN, -libc::getpgrp())))
            }
            "perf" => {
                // struct perf_event_attr: type PERF_TYPE_SOFTWARE (1), size, config
                // PERF_COUNT_SW_CPU_CLOCK (0), then zeroes (exclude_kernel set below).
                let mut attr = [0u64; 16];
                attr[0] = 1 | (128u64 << 32);
                attr[5] = 1 << 5; // exclude_kernel
                let fd = libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), 0, -1, -1, 0);
                errno_result(fd)
            }
            "bpf-obj-get" => {
                // BPF_OBJ_GET (7) of a pinned object: needs only file permission on the pin.
                let path = CString::new(args[1].as_str()).unwrap();
                let mut attr = [0u64; 2];
                attr[0] = path.as_ptr() as u64;
                let fd = libc::syscall(libc::SYS_bpf, 7, attr.as_mut_ptr(), 16usize);
                if fd >= 0 {
                    libc::close(fd as i32);
                }
                errno_result(fd)
            }
            "open-unfaulted" => {
                // The path sits in a shared mapping of a memfd that this process never touched:
                // the kernel faults the page in, a tracepoint's read cannot.
                let path = cstr(args, 1);
                let name = CString::new("path").unwrap();
                let fd = libc::memfd_create(name.as_ptr(), 0);
                let bytes = path.as_bytes_with_nul();
                libc::write(fd, bytes.as_ptr().cast(), bytes.len());
                let page = libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ, libc::MAP_SHARED, fd, 0);
                let opened = libc::openat(libc::AT_FDCWD, page.cast(), libc::O_RDONLY);
                if opened >= 0 {
                    let mut buf = [0u8; 64];
                    libc::read(opened, buf.as_mut_ptr().cast(), buf.len());
                }
                errno_result(i64::from(opened))
            }
            "openat2-unfaulted-how" => {
                // openat2 with its `struct open_how` on an anonymous page never touched: the
                // kernel's copy faults it in (zeros: O_RDONLY), a tracepoint's read cannot.
                let path = cstr(args, 1);
                let how = libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                let opened = libc::syscall(libc::SYS_openat2, libc::AT_FDCWD, path.as_ptr(), how, 24usize);
                if opened >= 0 {
                    let mut buf = [0u8; 64];
                    libc::read(opened as i32, buf.as_mut_ptr().cast(), buf.len());
                }
                errno_result(opened)
            }
            "truncate" => errno_result(i64::from(libc::truncate(cstr(args, 1).as_ptr(), 0))),
            "open-rdonly-trunc" => {
                errno_result(i64::from(libc::open(cstr(args, 1).as_ptr(), libc::O_RDONLY | libc::O_TRUNC)))
            }
            "tiocsti" => {
                // Pushes a byte into the input of a fresh pty's terminal; the byte reaching the
                // terminal's input would mean the agent can type into the operator's shell.
                let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
                libc::grantpt(master);
                libc::unlockpt(master);
                let slave = libc::open(libc::ptsname(master), libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK);
                // A whole line: the terminal's canonical mode hands out complete lines only.
                let (c, nl) = (b'x', b'\n');
                let pushed = errno_result(i64::from(libc::ioctl(slave, libc::TIOCSTI, &raw const c)))
                    .and_then(|()| errno_result(i64::from(libc::ioctl(slave, libc::TIOCSTI, &raw const nl))));
                let mut buf = [0u8; 2];
                if libc::read(slave, buf.as_mut_ptr().cast(), 2) > 0 {
                    return Some(Err(std::io::Error::other("INJECTED")));
                }
                pushed
            }
            "x32-getpid" => {
                // An x32 system call: the x32 bit over getpid's number.
                errno_result(libc::syscall(0x4000_0000 | libc::SYS_getpid))
            }
            "clone-files" => {
                // A process sharing this one's descriptor table (CLONE_FILES without CLONE_THREAD).
                let flags = libc::c_long::from(libc::CLONE_FILES | libc::SIGCHLD);
                let pid = libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize);
                if pid == 0 {
                    libc::_exit(0);
                }
                if pid > 0 {
                    libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
                }
                errno_result(pid)
            }
            _ => return None,
        }
    };
    Some(result)
}

/// Verbs that make their own line and exit status; None when `args` names none.
/// read-again and send-again exit with the second access's status (0 ok, 1 EPERM), since
/// after a revoke their line may not be writable at all.
pub fn act_line(args: &[String]) -> Option<(String, i32)> {
    let line = match args.first()?.as_str() {
        "openat2-flip" => openat2_flip(args),
        "open-syscalls" => open_syscalls(args),
        "read-again" => {
            let path = args.get(1).unwrap_or_else(|| super::usage());
            let secs: u64 = num(args, 2);
            match std::fs::File::open(path) {
                Ok(mut file) => {
                    let first = super::outcome(file.read(&mut [0u8; 16]).map(drop)).0;
                    announce();
                    until_stdin_closes(secs);
                    let _ = std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0));
                    let mut buf = [0u8; 64];
                    let (second, code) = match file.read(&mut buf) {
                        Ok(n) => (format!("read {:?}", String::from_utf8_lossy(&buf[..n])), 0),
                        Err(err) => super::outcome(Err(err)),
                    };
                    (format!("{first} {second}"), code)
                }
                Err(err) => super::outcome(Err(err)),
            }
        }
        "send-again" => {
            let addr: SocketAddr = num(args, 1);
            let secs: u64 = num(args, 2);
            match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(mut stream) => {
                    let first = super::outcome(stream.write_all(b"first\n")).0;
                    announce();
                    until_stdin_closes(secs);
                    let (second, code) = super::outcome(stream.write_all(b"second\n"));
                    (format!("{first} {second}"), code)
                }
                Err(err) => super::outcome(Err(err)),
            }
        }
        "api-flood" => {
            // Opens N connections to the daemon's socket, each holding a long unfinished line;
            // then how many the daemon closed, and its answer to one overlong line.
            let socket = args.get(1).unwrap_or_else(|| super::usage());
            let n: usize = num(args, 2);
            let held: Vec<std::os::unix::net::UnixStream> = (0..n)
                .filter_map(|_| {
                    let mut stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
                    let _ = stream.write_all(&vec![b'x'; 60 * 1024]);
                    Some(stream)
                })
                .collect();
            std::thread::sleep(Duration::from_secs(1));
            let closed = held
                .iter()
                .filter(|s| {
                    let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
                    let mut reader: &std::os::unix::net::UnixStream = s;
                    // EOF, or a reset (the daemon closed with our line unread); a timeout: held.
                    match reader.read(&mut [0u8; 1]) {
                        Ok(n) => n == 0,
                        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
                    }
                })
                .count();
            drop(held);
            std::thread::sleep(Duration::from_millis(500));
            let long = std::os::unix::net::UnixStream::connect(socket).and_then(|mut stream| {
                let line = format!("{{\"version\":1,\"op\":\"status\",\"pad\":\"{}\"}}\n", "y".repeat(100 * 1024));
                let _ = stream.write_all(line.as_bytes());
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                let mut answer = Vec::new();
                let _ = stream.read_to_end(&mut answer);
                Ok(String::from_utf8_lossy(&answer).chars().take(120).collect::<String>())
            });
            (format!("closed {closed} of {n}; long line: {}", long.unwrap_or_else(|e| e.to_string())), 0)
        }
        "thread-exec" => {
            let rest: Vec<CString> = std::iter::once(std::env::current_exe().unwrap().display().to_string())
                .chain(args[1..].iter().cloned())
                .map(|a| CString::new(a).unwrap())
                .collect();
            let handle = std::thread::spawn(move || {
                let mut pointers: Vec<*const libc::c_char> = rest.iter().map(|a| a.as_ptr()).collect();
                pointers.push(std::ptr::null());
                // SAFETY: pointers is NUL-terminated and its strings outlive the call.
                unsafe { libc::execv(pointers[0], pointers.as_ptr()) };
                std::io::Error::last_os_error()
            });
            let err = handle.join().unwrap();
            (format!("exec failed: {err}"), 2)
        }
        "leader-exit" => {
            let secs: u64 = num(args, 1);
            let rest = args[2..].to_vec();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(secs));
                let (line, code) = super::act(&rest);
                println!("{line}");
                let _ = std::io::stdout().flush();
                // SAFETY: ends the whole process from its last thread.
                unsafe { libc::_exit(code) };
            });
            // SAFETY: the raw exit(2) ends only the calling (main) thread, without unwinding
            // (pthread_exit would unwind through Rust frames and abort).
            unsafe { libc::syscall(libc::SYS_exit, 0) };
            unreachable!("exit(2) returned");
        }
        _ => return None,
    };
    Some(line)
}

/// Tells a waiting test that the first half is done (a line on stderr).
fn announce() {
    eprintln!("ready");
}

/// Waits until the test closes this probe's stdin (it does once it has acted), or `secs` pass:
/// a sleep of fixed length raced the test's own steps on a busy emulated CPU.
fn until_stdin_closes(secs: u64) {
    let (done, closed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // EOF, or a read refused once the grant has ended: either way the test is done.
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = done.send(());
    });
    let _ = closed.recv_timeout(Duration::from_secs(secs));
}

/// include/uapi/asm-generic/fcntl.h (not in the libc crate).
const F_SETSIG: i32 = 10;

/// SIGIO routed to `pid`: a pipe whose read end is owned by `pid` with `O_ASYNC`, then a write.
fn sigio(pid: i32) -> std::io::Result<()> {
    let mut fds = [0i32; 2];
    // SAFETY: plain syscalls on descriptors made here.
    unsafe {
        if libc::pipe(fds.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        errno_result(i64::from(libc::fcntl(fds[0], libc::F_SETOWN, pid)))?;
        errno_result(i64::from(libc::fcntl(fds[0], F_SETSIG, libc::SIGKILL)))?;
        let flags = libc::fcntl(fds[0], libc::F_GETFL);
        errno_result(i64::from(libc::fcntl(fds[0], libc::F_SETFL, flags | libc::O_ASYNC)))?;
        errno_result(libc::write(fds[1], b"x".as_ptr().cast(), 1) as i64)
    }
}

/// `openat2-flip FIFO` (see the module comment).
fn openat2_flip(args: &[String]) -> (String, i32) {
    let fifo = std::ffi::CString::new(args.get(1).unwrap_or_else(|| super::usage()).as_str()).unwrap();
    // struct open_how (include/uapi/linux/openat2.h): flags, mode, resolve; shared with
    // the thread that rewrites it while the open waits.
    let how: &'static std::sync::atomic::AtomicU64 =
        Box::leak(Box::new([std::sync::atomic::AtomicU64::new(libc::O_WRONLY as u64), 0.into(), 0.into()]))
            .first()
            .unwrap();
    let how_ptr = std::ptr::from_ref(how) as usize;
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        how.store(libc::O_RDONLY as u64, std::sync::atomic::Ordering::SeqCst);
        // SAFETY: opens the FIFO for reading, which lets the writer's open return (without
        // waiting for a writer itself: openat2 may have been refused).
        let fd = unsafe { libc::open(reader_path.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK) };
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: closes what it opened.
        unsafe { libc::close(fd) };
    });
    // SAFETY: openat2 on a NUL-terminated path and a 24-byte `open_how` that lives on.
    let fd = unsafe { libc::syscall(libc::SYS_openat2, libc::AT_FDCWD, fifo.as_ptr(), how_ptr as *const u64, 24usize) };
    let said = if fd >= 0 { "ok".to_string() } else { super::outcome(Err(std::io::Error::last_os_error())).0 };
    let _ = reader.join();
    (said, 0)
}

/// `open-syscalls PATH DIR` (see the module comment).
fn open_syscalls(args: &[String]) -> (String, i32) {
    let path = std::ffi::CString::new(args.get(1).unwrap_or_else(|| super::usage()).as_str()).unwrap();
    let dir = std::ffi::CString::new(args.get(2).unwrap_or_else(|| super::usage()).as_str()).unwrap();
    let name = std::path::Path::new(args[1].as_str()).file_name().unwrap_or_else(|| super::usage());
    let name = std::ffi::CString::new(name.as_encoded_bytes()).unwrap();
    let said = |fd: libc::c_long| {
        if fd >= 0 {
            // SAFETY: a descriptor this process just opened.
            unsafe { libc::close(fd as i32) };
            "ok".to_string()
        } else {
            super::outcome(Err(std::io::Error::last_os_error())).0.replace(' ', "-")
        }
    };
    // SAFETY: plain syscalls on NUL-terminated strings and a zeroed `open_how`.
    let open = said(unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) }.into());
    let dirfd = unsafe { libc::open(dir.as_ptr(), libc::O_PATH | libc::O_DIRECTORY) };
    let openat = said(unsafe { libc::openat(dirfd, name.as_ptr(), libc::O_RDONLY) }.into());
    // struct open_how (include/uapi/linux/openat2.h): flags, mode, resolve.
    let how: [u64; 3] = [libc::O_RDONLY as u64, 0, 0];
    let openat2 = said(unsafe {
        libc::syscall(libc::SYS_openat2, libc::AT_FDCWD, path.as_ptr(), &raw const how, std::mem::size_of_val(&how))
    });
    let creat = said(unsafe { libc::creat(path.as_ptr(), 0o600) }.into());
    (format!("open={open} openat={openat} openat2={openat2} creat={creat}"), 0)
}

/// `seq STEP :: STEP ..` (see the module comment). Exits itself: the children printed the lines.
pub fn run_seq(steps: &[String]) -> ! {
    use std::os::unix::process::ExitStatusExt;
    let me = std::env::current_exe().unwrap_or_else(|_| super::usage());
    let mut dir: Option<String> = None;
    for step in steps.split(|arg| arg == "::") {
        if let [cd, to] = step
            && cd == "cd"
        {
            dir = Some(to.clone());
            continue;
        }
        let mut child = std::process::Command::new(&me);
        child.args(step);
        if let Some(dir) = &dir {
            child.current_dir(dir);
        }
        let status = child.status().unwrap_or_else(|_| std::process::exit(127));
        let _ = std::io::stdout().flush();
        if let Some(signal) = status.signal() {
            std::process::exit(128 + signal);
        }
    }
    std::process::exit(0);
}
