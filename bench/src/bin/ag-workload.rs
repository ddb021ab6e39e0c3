//! ag-workload: the measured workloads of `cargo xtask bench`, run bare, as a tagged agent, or
//! under a Landlock ruleset. Each prints one number on stdout.
//!
//!   open N PATH            open(2)+close(2) N times             -> ns per iteration
//!   read N PATH            pread(2) of 1 byte, N times, on one descriptor -> ns per read
//!   connect N PORT         TCP connect to 127.0.0.1:PORT + close -> ns per iteration (it listens
//!                          on PORT itself and accepts each connection: no backlog can fill up)
//!   forkexec N PROG        fork+exec PROG, wait, N times        -> ns per iteration
//!   walk N DIR             stat every entry below DIR, N times  -> ns per walk
//!   flood RATE MS PATH     opens PATH at RATE/s for MS ms       -> opens done, ns taken
//!   until-eperm PORT       prints "ready", connects (to itself) until EPERM -> `CLOCK_MONOTONIC` ns of it
//!   now                    `CLOCK_MONOTONIC` ns
//!   dns N SERVER NAME      N A questions for NAME, one after another, over UDP to SERVER
//!                          (ip:port) -> each answer's latency in ns, space separated
//!   dns-rate T MS SERVER NAME
//!                          T threads asking as fast as answers come for MS ms
//!                          -> answers, timeouts, ns taken
//!   landlock [--read P].. [--write P].. [--exec P].. [--port N].. -- VERB ARGS
//!                          restricts itself with Landlock (fs + TCP connect), then runs VERB

use std::{
    io::Write,
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn per_op(start: Instant, n: u64) -> String {
    format!("{}", start.elapsed().as_nanos() as u64 / n.max(1))
}

/// Closes with RST (`SO_LINGER` 0): thousands of connects leave no `TIME_WAIT` behind.
fn close_now(stream: TcpStream) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt on an open socket with a properly sized value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as u32,
        )
    };
    drop(stream);
}

/// One connect to our own listener on `port`, accepted at once, both ends closed with RST.
fn connect_once(listener: &TcpListener, port: u16) -> std::io::Result<()> {
    let client = TcpStream::connect(("127.0.0.1", port))?;
    let (server, _) = listener.accept()?;
    close_now(client);
    close_now(server);
    Ok(())
}

fn walk(dir: &Path) -> u64 {
    let mut count = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if let Ok(meta) = std::fs::symlink_metadata(&path) {
                count += 1;
                if meta.is_dir() {
                    count += walk(&path);
                }
            }
        }
    }
    count
}

fn run(args: &[String]) -> anyhow::Result<String> {
    let arg = |i: usize| args.get(i).cloned().with_context(|| format!("missing argument {i}: {args:?}"));
    let num = |i: usize| -> anyhow::Result<u64> { Ok(arg(i)?.parse()?) };
    Ok(match args.first().map(String::as_str) {
        Some("open") => {
            let (n, path) = (num(1)?, arg(2)?);
            let start = Instant::now();
            for _ in 0..n {
                drop(std::fs::File::open(&path)?);
            }
            per_op(start, n)
        }
        Some("read") => {
            // Reads on a descriptor opened once: the per-read hooks alone (BPF LSM
            // file_permission, which refuses a task's reads once its grant has ended).
            let (n, path) = (num(1)?, arg(2)?);
            let file = std::fs::File::open(&path)?;
            let mut byte = [0u8; 1];
            let start = Instant::now();
            for _ in 0..n {
                std::os::unix::fs::FileExt::read_at(&file, &mut byte, 0)?;
            }
            per_op(start, n)
        }
        Some("connect") => {
            let (n, port) = (num(1)?, num(2)? as u16);
            let listener = TcpListener::bind(("127.0.0.1", port))?;
            let start = Instant::now();
            for _ in 0..n {
                connect_once(&listener, port)?;
            }
            per_op(start, n)
        }
        Some("forkexec") => {
            let (n, prog) = (num(1)?, arg(2)?);
            let start = Instant::now();
            for _ in 0..n {
                let status = std::process::Command::new(&prog).status()?;
                if !status.success() {
                    bail!("{prog} exited with {status}");
                }
            }
            per_op(start, n)
        }
        Some("walk") => {
            let (n, dir) = (num(1)?, arg(2)?);
            let start = Instant::now();
            for _ in 0..n {
                if walk(Path::new(&dir)) == 0 {
                    bail!("{dir} is empty");
                }
            }
            per_op(start, n)
        }
        Some("flood") => {
            let (rate, millis, path) = (num(1)?, num(2)?, arg(3)?);
            let total = rate * millis / 1000;
            let start = Instant::now();
            let mut done = 0;
            // Paced in batches of 1 ms worth of opens.
            let batch = (rate / 1000).max(1);
            while done < total {
                for _ in 0..batch.min(total - done) {
                    let _ = std::fs::File::open(&path);
                    done += 1;
                }
                let due = Duration::from_nanos(done * 1_000_000_000 / rate);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            format!("{done} {}", start.elapsed().as_nanos())
        }
        Some("until-eperm") => {
            let port = num(1)? as u16;
            let listener = TcpListener::bind(("127.0.0.1", port))?;
            println!("ready");
            std::io::stdout().flush()?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match connect_once(&listener, port) {
                    Ok(()) => {}
                    Err(err) if err.raw_os_error() == Some(libc::EPERM) => break format!("{}", monotonic_ns()),
                    Err(err) => bail!("connect: {err}"),
                }
                if Instant::now() > deadline {
                    bail!("never refused");
                }
            }
        }
        Some("now") => format!("{}", monotonic_ns()),
        Some("dns") => dns::latencies(num(1)?, &arg(2)?, &arg(3)?)?,
        Some("dns-rate") => dns::rate(num(1)?, num(2)?, &arg(3)?, &arg(4)?)?,
        Some("landlock") => landlock(&args[1..])?,
        _ => bail!("usage: ag-workload open|connect|forkexec|walk|flood|until-eperm|now|landlock ..."),
    })
}

/// Restricts this process with Landlock to the given paths and TCP ports, then runs the verb.
fn landlock(args: &[String]) -> anyhow::Result<String> {
    use landlock::{
        ABI, Access, AccessFs, AccessNet, NetPort, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
        path_beneath_rules,
    };
    let split = args.iter().position(|a| a == "--").context("landlock needs -- VERB")?;
    let (opts, verb) = (&args[..split], &args[split + 1..]);
    let abi = ABI::V4;
    let mut ruleset =
        Ruleset::default().handle_access(AccessFs::from_all(abi))?.handle_access(AccessNet::ConnectTcp)?.create()?;
    for pair in opts.chunks(2) {
        let [flag, value] = pair else { bail!("landlock options come in pairs") };
        ruleset = match flag.as_str() {
            "--read" => ruleset.add_rules(path_beneath_rules([value], AccessFs::from_read(abi)))?,
            "--write" => ruleset.add_rules(path_beneath_rules([value], AccessFs::from_all(abi)))?,
            "--exec" => ruleset.add_rules(path_beneath_rules([value], AccessFs::Execute | AccessFs::ReadFile))?,
            "--port" => ruleset.add_rule(NetPort::new(value.parse()?, AccessNet::ConnectTcp))?,
            other => bail!("unknown landlock option {other}"),
        };
    }
    let status = ruleset.restrict_self()?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        bail!("Landlock is not fully enforced here: {:?}", status.ruleset);
    }
    run(verb)
}

/// A stub resolver asking one question again and again, as a resolver library does: a
/// connected UDP socket, a fresh id per question, the answer checked against it.
mod dns {
    use std::{
        net::UdpSocket,
        time::{Duration, Instant},
    };

    use anyhow::{Context, bail};
    use hickory_proto::{
        op::{Message, MessageType, OpCode, Query, ResponseCode},
        rr::{Name, RecordType},
    };

    /// `dns N SERVER NAME`: each answer's latency in ns.
    pub fn latencies(n: u64, server: &str, name: &str) -> anyhow::Result<String> {
        let mut asker = Asker::new(server, name)?;
        let mut latencies = Vec::with_capacity(usize::try_from(n)?);
        for _ in 0..n {
            let start = Instant::now();
            if !asker.ask()? {
                bail!("no answer for {name} from {server} within {TIMEOUT:?}");
            }
            latencies.push(start.elapsed().as_nanos().to_string());
        }
        Ok(latencies.join(" "))
    }

    /// `dns-rate T MS SERVER NAME`: answers, timeouts, ns taken.
    pub fn rate(threads: u64, millis: u64, server: &str, name: &str) -> anyhow::Result<String> {
        let until = Instant::now() + Duration::from_millis(millis);
        let start = Instant::now();
        let counts = std::thread::scope(|scope| {
            let askers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| -> anyhow::Result<(u64, u64)> {
                        let mut asker = Asker::new(server, name)?;
                        let (mut answers, mut timeouts) = (0, 0);
                        while Instant::now() < until {
                            if asker.ask()? {
                                answers += 1;
                            } else {
                                timeouts += 1;
                            }
                        }
                        Ok((answers, timeouts))
                    })
                })
                .collect();
            askers.into_iter().map(|a| a.join().expect("asker thread")).collect::<anyhow::Result<Vec<_>>>()
        })?;
        let (answers, timeouts) = counts.iter().fold((0, 0), |(a, t), (x, y)| (a + x, t + y));
        Ok(format!("{answers} {timeouts} {}", start.elapsed().as_nanos()))
    }

    /// How long one question waits for its answer before it counts as lost.
    pub const TIMEOUT: Duration = Duration::from_secs(1);

    pub struct Asker {
        socket: UdpSocket,
        query: Message,
        id: u16,
        buf: Vec<u8>,
    }

    impl Asker {
        pub fn new(server: &str, name: &str) -> anyhow::Result<Asker> {
            let socket = UdpSocket::bind(if server.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" })?;
            socket.connect(server).with_context(|| format!("connect {server}"))?;
            socket.set_read_timeout(Some(TIMEOUT))?;
            let mut query = Message::new();
            query.set_message_type(MessageType::Query).set_op_code(OpCode::Query).set_recursion_desired(true);
            query.add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
            // Seeded per process and thread, so that concurrent askers do not share ids.
            let id = (std::process::id() as u16) ^ (socket.local_addr()?.port());
            Ok(Asker { socket, query, id, buf: vec![0; 4096] })
        }

        /// One question and its answer: false when none came within `TIMEOUT`.
        pub fn ask(&mut self) -> anyhow::Result<bool> {
            self.id = self.id.wrapping_add(1);
            self.query.set_id(self.id);
            self.socket.send(&self.query.to_vec()?)?;
            loop {
                let len = match self.socket.recv(&mut self.buf) {
                    Ok(len) => len,
                    Err(err) if matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                        return Ok(false);
                    }
                    Err(err) => return Err(err.into()),
                };
                let answer = Message::from_vec(&self.buf[..len])?;
                // A late answer to an earlier question (one that timed out) is skipped.
                if answer.id() != self.id {
                    continue;
                }
                if answer.response_code() != ResponseCode::NoError || answer.answers().is_empty() {
                    bail!("{:?} with {} answers", answer.response_code(), answer.answers().len());
                }
                return Ok(true);
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(line) => {
            println!("{line}");
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("ag-workload: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
