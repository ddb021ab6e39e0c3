//! Syslog output: RFC 5424 messages (formatted by fasyslog) over UDP (RFC 5426), TCP (RFC 6587,
//! LF framing), TLS (RFC 5425, octet counting) or a Unix socket. MSGID is the event kind, the structured data element
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
    net::{TcpStream, ToSocketAddrs, UdpSocket},
    os::unix::net::{UnixDatagram, UnixStream},
    sync::Arc,
    time::Duration,
};

use fasyslog::{Facility, SDElement, Severity, format::SyslogContext};
use tokio::sync::mpsc;

use crate::daemon::{
    config::{SyslogConfig, SyslogTransport},
    events::schema::Decision,
};

use super::{OutputError, Rendered, metrics::Metrics};

const IO_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

enum Transport {
    Udp(UdpSocket),
    Tcp(std::io::BufWriter<TcpStream>),
    Tls(Box<std::io::BufWriter<TlsStream>>),
    UnixDatagram(UnixDatagram),
    UnixStream(std::io::BufWriter<UnixStream>),
}

impl Transport {
    /// Connects (a host name is resolved again at each connect: the receiver may move).
    fn connect(config: &SyslogConfig, tls: Option<&Arc<rustls::ClientConfig>>) -> std::io::Result<Transport> {
        match config.transport {
            SyslogTransport::Udp => {
                let remote = config
                    .address
                    .to_socket_addrs()?
                    .next()
                    .ok_or_else(|| std::io::Error::other(format!("{} resolves to no address", config.address)))?;
                let socket = UdpSocket::bind(if remote.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
                socket.connect(remote)?;
                Ok(Transport::Udp(socket))
            }
            SyslogTransport::Tcp => Ok(Transport::Tcp(std::io::BufWriter::new(tcp(&config.address)?))),
            SyslogTransport::Tls => {
                let tls = tls.ok_or_else(|| std::io::Error::other("no TLS settings"))?;
                let host = config.address.rsplit_once(':').map_or(config.address.as_str(), |(host, _)| host);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let server =
                    rustls::pki_types::ServerName::try_from(host.to_string()).map_err(std::io::Error::other)?;
                let mut connection =
                    rustls::ClientConnection::new(tls.clone(), server).map_err(std::io::Error::other)?;
                let mut stream = tcp(&config.address)?;
                stream.set_read_timeout(Some(IO_TIMEOUT))?;
                // The handshake now, so that a receiver that refuses us is a connect error.
                while connection.is_handshaking() {
                    connection.complete_io(&mut stream)?;
                }
                Ok(Transport::Tls(Box::new(std::io::BufWriter::new(rustls::StreamOwned::new(connection, stream)))))
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
            // Octet counting (RFC 5425 4.3): "MSG-LEN SP SYSLOG-MSG".
            Transport::Tls(out) => write!(out, "{} ", message.len()).and_then(|()| out.write_all(message)),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Transport::Tcp(out) => out.flush(),
            Transport::UnixStream(out) => out.flush(),
            Transport::Tls(out) => out.flush(),
            Transport::Udp(_) | Transport::UnixDatagram(_) => Ok(()),
        }
    }
}

/// A TCP connection to `address` (`host:port`), to the first of its addresses that answers.
fn tcp(address: &str) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::other(format!("{address} resolves to no address"));
    for addr in address.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
            Ok(stream) => {
                stream.set_write_timeout(Some(IO_TIMEOUT))?;
                return Ok(stream);
            }
            Err(err) => last = err,
        }
    }
    Err(last)
}

/// The TLS settings of a `tls` output: the bundled web roots and `caFile`, and the client
/// certificate; read once, at start.
fn tls_settings(config: &SyslogConfig) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &config.ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(Iterator::collect)
            .map_err(|err| format!("CA file {}: {err}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("CA file {}: no PEM certificate in it", path.display()));
        }
        for cert in certs {
            roots.add(cert).map_err(|err| format!("CA file {}: {err}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?
        .with_root_certificates(roots);
    let settings = match (&config.client_cert, &config.client_key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_file_iter(cert)
                    .and_then(Iterator::collect)
                    .map_err(|err| format!("client certificate {}: {err}", cert.display()))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|err| format!("client key {}: {err}", key.display()))?;
            builder.with_client_auth_cert(chain, key).map_err(|err| format!("client certificate: {err}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(settings))
}

fn severity(event: &Rendered) -> Severity {
    match event.decision() {
        Some(Decision::Denied) => Severity::WARNING,
        Some(Decision::Flagged | Decision::Held) => Severity::NOTICE,
        Some(Decision::Allowed) | None => Severity::INFORMATIONAL,
    }
}

fn structured_data(event: &Rendered) -> Vec<SDElement> {
    let Ok(mut element) = SDElement::new("agent-guard@32473") else { return Vec::new() };
    let params = [
        ("event_id", Some(event.id().to_string())),
        ("task", event.task().map(|t| t.to_string())),
        ("decision", event.decision().map(|d| d.as_str().to_string())),
        ("rule", event.rule().map(str::to_string)),
    ];
    for (name, value) in params {
        if let Some(value) = value {
            // fasyslog escapes '"', '\' and ']' (RFC 5424 6.3.3); control characters are ours to
            // escape: a rule holds an agent's path pattern, and a line break in it would start a
            // forged record on an LF-framed receiver (RFC 6587).
            let _ = element.add_param(name, crate::text::printable(&value).into_owned());
        }
    }
    vec![element]
}

/// What `start` reads (the TLS settings' files), checked without starting anything.
pub fn check(name: &str, config: &SyslogConfig) -> Result<(), OutputError> {
    if config.transport == SyslogTransport::Tls {
        tls_settings(config).map_err(|message| OutputError::Config { output: name.to_string(), message })?;
    }
    Ok(())
}

/// Starts the output's thread; it ends when `events` closes.
pub fn start(
    name: &str,
    config: SyslogConfig,
    host: String,
    metrics: Metrics,
    mut events: mpsc::Receiver<Arc<Rendered>>,
) -> Result<std::thread::JoinHandle<()>, OutputError> {
    let name = name.to_string();
    let tls = match config.transport {
        SyslogTransport::Tls => {
            Some(tls_settings(&config).map_err(|message| OutputError::Config { output: name.clone(), message })?)
        }
        _ => None,
    };
    let mut context = SyslogContext::new();
    context
        .facility(config.facility().unwrap_or(Facility::AUTHPRIV))
        .hostname(host)
        .appname("agent-guard")
        .procid(std::process::id().to_string());
    let name_for_error = name.clone();
    std::thread::Builder::new()
        .name(format!("output-{name}"))
        .spawn(move || {
            let labels = Metrics::output(&name);
            let mut transport: Option<Transport> = None;
            let mut backoff = Duration::from_millis(200);
            'events: while let Some(event) = events.blocking_recv() {
                let message = context
                    .format_rfc5424(severity(&event), Some(event.kind().as_str()), structured_data(&event), Some(&event.line))
                    .to_string();
                let mut attempts = 0;
                loop {
                    let Some(out) = transport.as_mut() else {
                        match Transport::connect(&config, tls.as_ref()) {
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
                                tracing::error!(output = name, %err, "event {} ({} bytes) dropped", event.id(), message.len());
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
        .map_err(|err| OutputError::Config { output: name_for_error, message: format!("thread: {err}") })
}
