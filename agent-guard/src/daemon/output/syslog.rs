//! Syslog output: RFC 5424 messages (fasyslog) over UDP (RFC 5426), TCP (RFC 6587, LF framing)
//! or a Unix socket. MSGID is the event kind, the structured data element
//! `agent-guard@32473` carries the event id, task, decision and rule (32473 is the enterprise
//! number RFC 5612 reserves for documentation; there is no registered one), and MSG is the
//! event in the output's format.
//!
//! Syslog has no acknowledgement: the output has its own bounded queue, and when the receiver
//! is gone it reconnects with backoff while the queue fills; what does not fit is counted as
//! dropped (metrics, `guard.output_dropped`). It runs on a thread of its own, so a slow
//! receiver never holds up the other outputs.

use std::{sync::Arc, time::Duration};

use fasyslog::{Facility, SDElement, Severity, sender::SyslogSender};
use tokio::sync::mpsc;

use super::{
    super::{
        config::{SyslogConfig, SyslogTransport},
        metrics::Metrics,
    },
    Rendered,
};

/// The facility a config names, if it is one.
pub fn facility(name: &str) -> Option<Facility> {
    name.parse().ok()
}

fn connect(config: &SyslogConfig, host: &str) -> std::io::Result<SyslogSender> {
    let mut sender = match config.transport {
        SyslogTransport::Udp => {
            let remote: std::net::SocketAddr = config
                .address
                .parse()
                .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{err}")))?;
            let local = if remote.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            SyslogSender::Udp(fasyslog::sender::udp(local, remote)?)
        }
        SyslogTransport::Tcp => {
            let mut tcp = fasyslog::sender::tcp(config.address.as_str())?;
            // LF, not CRLF: receivers (rsyslog) keep a CR as part of the message.
            tcp.set_postfix("\n");
            SyslogSender::Tcp(tcp)
        }
        SyslogTransport::Unix => fasyslog::sender::unix(&config.address)?,
    };
    let context = match &mut sender {
        SyslogSender::Udp(s) => s.mut_context(),
        SyslogSender::Tcp(s) => s.mut_context(),
        SyslogSender::UnixDatagram(s) => s.mut_context(),
        SyslogSender::UnixStream(s) => s.mut_context(),
    };
    context
        .facility(facility(&config.facility).unwrap_or(Facility::AUTHPRIV))
        .hostname(host)
        .appname("agent-guard")
        .procid(std::process::id().to_string());
    Ok(sender)
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
    std::thread::Builder::new()
        .name(format!("output-{name}"))
        .spawn(move || {
            let labels = Metrics::output(&name);
            let mut sender: Option<SyslogSender> = None;
            let mut backoff = Duration::from_millis(200);
            while let Some(event) = events.blocking_recv() {
                loop {
                    if sender.is_none() {
                        match connect(&config, &host) {
                            Ok(s) => {
                                sender = Some(s);
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
                                backoff = (backoff * 2).min(Duration::from_secs(30));
                                continue;
                            }
                        }
                    }
                    let s = sender.as_mut().expect("connected above");
                    let sent = s
                        .send_rfc5424(severity(&event), Some(event.kind.clone()), structured_data(&event), &event.line)
                        .and_then(|()| if events.is_empty() { s.flush() } else { Ok(()) });
                    match sent {
                        Ok(()) => {
                            metrics.output_sent.get_or_create(&labels).inc();
                            break;
                        }
                        Err(err) => {
                            // The message may not have left: reconnect and send it again.
                            metrics.output_failures.get_or_create(&labels).inc();
                            tracing::warn!(output = name, %err, "syslog send failed; reconnecting");
                            sender = None;
                        }
                    }
                }
            }
            if let Some(mut s) = sender {
                let _ = s.flush();
            }
        })
        .expect("spawning an output thread")
}
