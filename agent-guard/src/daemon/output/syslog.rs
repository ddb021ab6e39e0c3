//! Syslog output: RFC 5424 messages (formatted by fasyslog) over UDP (RFC 5426), TCP (RFC 6587,
//! LF framing) or a Unix socket. MSGID is the event kind, the structured data element
//! `agent-guard@32473` carries the event id, task, decision and rule (32473 is the enterprise
//! number RFC 5612 reserves for documentation; there is no registered one), and MSG is the
//! event in the output's format.
//!
//! Syslog has no acknowledgement: the output has its own bounded queue, and while the receiver
//! is unreachable it reconnects with backoff and the queue fills; what does not fit is counted
//! as dropped (metrics, `guard.output_dropped`). A message that fails twice (once more after a
//! reconnect) is dropped and counted, so one message the receiver cannot take never stops the
//! output. Sockets have connect and write timeouts: a receiver that stops reading cannot hang
//! the output (or the daemon's shutdown). It runs on a thread of its own, so a slow receiver
//! never holds up the other outputs.

use std::{
    io::Write,
    net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket},
    os::unix::net::{UnixDatagram, UnixStream},
    sync::Arc,
    time::Duration,
};

use fasyslog::{Facility, SDElement, Severity, format::SyslogContext};
use tokio::sync::mpsc;

use crate::daemon::config::{SyslogConfig, SyslogTransport};

use super::{Rendered, metrics::Metrics};

const IO_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

enum Transport {
    Udp(UdpSocket),
    Tcp(std::io::BufWriter<TcpStream>),
    UnixDatagram(UnixDatagram),
    UnixStream(std::io::BufWriter<UnixStream>),
}

impl Transport {
    fn connect(config: &SyslogConfig) -> std::io::Result<Transport> {
        match config.transport {
            SyslogTransport::Udp => {
                let remote: SocketAddr = config.address.parse().map_err(std::io::Error::other)?;
                let socket = UdpSocket::bind(if remote.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
                socket.connect(remote)?;
                Ok(Transport::Udp(socket))
            }
            SyslogTransport::Tcp => {
                let mut last = std::io::Error::other(format!("{} resolves to no address", config.address));
                for addr in config.address.to_socket_addrs()? {
                    match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
                        Ok(stream) => {
                            stream.set_write_timeout(Some(IO_TIMEOUT))?;
                            return Ok(Transport::Tcp(std::io::BufWriter::new(stream)));
                        }
                        Err(err) => last = err,
                    }
                }
                Err(last)
            }
            // /dev/log is a datagram socket (journald, rsyslog); a stream socket is tried next.
            SyslogTransport::Unix => {
                if let Ok(socket) = UnixDatagram::unbound().and_then(|s| s.connect(&config.address).map(|()| s)) {
                    Ok(Transport::UnixDatagram(socket))
                } else {
                    let stream = UnixStream::connect(&config.address)?;
                    stream.set_write_timeout(Some(IO_TIMEOUT))?;
                    Ok(Transport::UnixStream(std::io::BufWriter::new(stream)))
                }
            }
        }
    }

    fn send(&mut self, message: &[u8]) -> std::io::Result<()> {
        match self {
            Transport::Udp(socket) => socket.send(message).map(drop),
            Transport::UnixDatagram(socket) => socket.send(message).map(drop),
            // Non-transparent framing (RFC 6587 3.4.2): the message ends at LF; events are one
            // line of JSON, so they hold none.
            Transport::Tcp(out) => out.write_all(message).and_then(|()| out.write_all(b"\n")),
            Transport::UnixStream(out) => out.write_all(message).and_then(|()| out.write_all(b"\n")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Transport::Tcp(out) => out.flush(),
            Transport::UnixStream(out) => out.flush(),
            Transport::Udp(_) | Transport::UnixDatagram(_) => Ok(()),
        }
    }
}

fn severity(event: &Rendered) -> Severity {
    match event.decision.as_deref() {
        Some("denied") => Severity::WARNING,
        Some("flagged" | "held") => Severity::NOTICE,
        _ => Severity::INFORMATIONAL,
    }
}

fn structured_data(event: &Rendered) -> Vec<SDElement> {
    let Ok(mut element) = SDElement::new("agent-guard@32473") else { return Vec::new() };
    let params = [
        ("event_id", Some(event.id.clone())),
        ("task", event.task.map(|t| t.to_string())),
        ("decision", event.decision.clone()),
        ("rule", event.rule.clone()),
    ];
    for (name, value) in params {
        if let Some(value) = value {
            // Values are escaped by fasyslog (RFC 5424 6.3.3: '"', '\' and ']').
            let _ = element.add_param(name, value);
        }
    }
    vec![element]
}

/// Starts the output's thread; it ends when `events` closes.
pub fn start(
    name: &str,
    config: SyslogConfig,
    host: String,
    metrics: Metrics,
    mut events: mpsc::Receiver<Arc<Rendered>>,
) -> std::thread::JoinHandle<()> {
    let name = name.to_string();
    let mut context = SyslogContext::new();
    context
        .facility(config.facility().unwrap_or(Facility::AUTHPRIV))
        .hostname(host)
        .appname("agent-guard")
        .procid(std::process::id().to_string());
    std::thread::Builder::new()
        .name(format!("output-{name}"))
        .spawn(move || {
            let labels = Metrics::output(&name);
            let mut transport: Option<Transport> = None;
            let mut backoff = Duration::from_millis(200);
            'events: while let Some(event) = events.blocking_recv() {
                let message = context
                    .format_rfc5424(severity(&event), Some(event.kind.clone()), structured_data(&event), Some(&event.line))
                    .to_string();
                let mut attempts = 0;
                loop {
                    let Some(out) = transport.as_mut() else {
                        match Transport::connect(&config) {
                            Ok(t) => {
                                transport = Some(t);
                                backoff = Duration::from_millis(200);
                            }
                            Err(err) => {
                                metrics.output_failures.get_or_create(&labels).inc();
                                if events.is_closed() {
                                    // Shutting down with the receiver gone: what is left is lost, and counted.
                                    let left = 1 + events.len() as u64;
                                    metrics.output_dropped.get_or_create(&labels).inc_by(left);
                                    tracing::error!(output = name, %err, "{left} events not delivered at shutdown");
                                    return;
                                }
                                tracing::warn!(output = name, %err, "cannot reach {}; retrying in {backoff:?}", config.address);
                                std::thread::sleep(backoff);
                                backoff = (backoff * 2).min(BACKOFF_MAX);
                            }
                        }
                        continue;
                    };
                    let sent = out.send(message.as_bytes()).and_then(|()| if events.is_empty() { out.flush() } else { Ok(()) });
                    match sent {
                        Ok(()) => {
                            metrics.output_sent.get_or_create(&labels).inc();
                            continue 'events;
                        }
                        Err(err) => {
                            metrics.output_failures.get_or_create(&labels).inc();
                            transport = None;
                            attempts += 1;
                            if attempts >= 2 {
                                // Twice, once on a fresh connection: this message will not go
                                // (too big for a datagram, say). Dropped and counted.
                                metrics.output_dropped.get_or_create(&labels).inc();
                                tracing::error!(output = name, %err, "event {} ({} bytes) dropped", event.id, message.len());
                                continue 'events;
                            }
                            tracing::warn!(output = name, %err, "syslog send failed; reconnecting");
                        }
                    }
                }
            }
            if let Some(mut out) = transport {
                let _ = out.flush();
            }
        })
        .expect("spawning an output thread")
}
