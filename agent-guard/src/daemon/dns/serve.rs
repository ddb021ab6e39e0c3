//! One task's resolver: a UDP socket and a TCP listener on one loopback port, and the answer to
//! each question (forward and learn, or refuse), reported as `network.dns`.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
    time::{Duration, SystemTime},
};

use hickory_proto::{
    op::{Message, MessageType, ResponseCode},
    rr::RData,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::Semaphore,
};

use super::{DnsAsked, Settings, Tasks, judge::suspected_exfiltration, upstream};
use crate::{
    api::Level,
    daemon::events::schema::{Action, Body, Decision, DnsObject, Event, PolicyDecision, Verdict},
    grant::RuleAction,
};

/// Questions one task may have in flight; more are dropped (the client retries).
const IN_FLIGHT: usize = 64;
/// How long an idle TCP connection is kept.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// A running resolver; dropping it stops it.
pub struct Running {
    pub port: u16,
    /// It listens on `[::1]` too (the host has IPv6 loopback).
    pub ip6: bool,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What every question of one task needs.
struct Ctx {
    task: u32,
    settings: Arc<Settings>,
    registry: Tasks,
    in_flight: Arc<Semaphore>,
}

/// Binds task `task`'s sockets (UDP and TCP on one loopback port, on 127.0.0.1 and, where the
/// host has it, on `::1`) and serves them.
pub fn start(
    task: u32,
    runtime: &tokio::runtime::Handle,
    settings: Arc<Settings>,
    registry: Tasks,
) -> std::io::Result<Running> {
    let _entered = runtime.enter();
    let mut last = std::io::Error::from(std::io::ErrorKind::AddrInUse);
    // The UDP port the kernel picks may be taken over TCP: try a few.
    for _ in 0..16 {
        let udp = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = udp.local_addr()?.port();
        let tcp = match std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            Ok(tcp) => tcp,
            Err(err) => {
                last = err;
                continue;
            }
        };
        // The same port on ::1, or none: IPv6 sockets then go to ::ffff:127.0.0.1.
        let ip6 = std::net::UdpSocket::bind((Ipv6Addr::LOCALHOST, port))
            .and_then(|udp| Ok((udp, std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, port))?)))
            .ok();
        let ctx = Arc::new(Ctx { task, settings, registry, in_flight: Arc::new(Semaphore::new(IN_FLIGHT)) });
        let mut tasks = Vec::new();
        let has_ip6 = ip6.is_some();
        for (udp, tcp) in std::iter::once((udp, tcp)).chain(ip6) {
            udp.set_nonblocking(true)?;
            tcp.set_nonblocking(true)?;
            let (udp, tcp) = (UdpSocket::from_std(udp)?, TcpListener::from_std(tcp)?);
            tasks.push(runtime.spawn(serve_udp(udp, ctx.clone())));
            tasks.push(runtime.spawn(serve_tcp(tcp, ctx.clone())));
        }
        return Ok(Running { port, ip6: has_ip6, tasks });
    }
    Err(last)
}

async fn serve_udp(socket: UdpSocket, ctx: Arc<Ctx>) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 65_535];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let Ok(permit) = ctx.in_flight.clone().try_acquire_owned() else {
            continue;
        };
        let (query, socket, ctx) = (buf[..n].to_vec(), socket.clone(), ctx.clone());
        tokio::spawn(async move {
            if let Some(reply) = answer(&ctx, &query, false).await {
                let _ = socket.send_to(&reply, peer).await;
            }
            drop(permit);
        });
    }
}

async fn serve_tcp(listener: TcpListener, ctx: Arc<Ctx>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve_connection(stream, ctx.clone()));
    }
}

/// RFC 1035 4.2.2: each message preceded by its length.
async fn serve_connection(mut stream: TcpStream, ctx: Arc<Ctx>) {
    loop {
        let mut len = [0u8; 2];
        if tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await.is_err() {
            return;
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut query).await.is_err() {
            return;
        }
        let Ok(permit) = ctx.in_flight.clone().try_acquire_owned() else {
            return;
        };
        let reply = answer(&ctx, &query, true).await;
        drop(permit);
        let Some(reply) = reply else { return };
        let Ok(len) = u16::try_from(reply.len()) else { return };
        if stream.write_all(&len.to_be_bytes()).await.is_err() || stream.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// The reply to `query`; None for what is not a DNS question (no reply at all).
async fn answer(ctx: &Ctx, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    if request.message_type() != MessageType::Query {
        return None;
    }
    let question = request.queries().first()?.clone();
    let name = question.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
    let registry = ctx.registry.upgrade()?;
    let asked = registry.lock().expect("registry lock is never poisoned").dns_question(ctx.task, &name);
    let transport = if tcp { "tcp" } else { "udp" };
    let mut object = DnsObject {
        question: name.clone(),
        qtype: question.query_type().to_string(),
        transport: transport.into(),
        server: None,
        answers: Vec::new(),
        ttl: None,
        rcode: String::new(),
        suspected_exfiltration: false,
    };
    // The task is gone: nothing to judge by.
    let Some(asked) = asked else {
        return reply_code(&request, ResponseCode::Refused);
    };
    let forward = asked.ended.is_none() && (asked.judgement.forwarded() || asked.audit);
    if !forward {
        object.rcode = rcode_name(ResponseCode::Refused);
        object.suspected_exfiltration = suspected_exfiltration(&name);
        report(&asked, object, false);
        return reply_code(&request, ResponseCode::Refused);
    }
    let Some(reply) = upstream::ask(&ctx.settings.upstream, query, tcp).await else {
        object.rcode = rcode_name(ResponseCode::ServFail);
        report(&asked, object, true);
        return reply_code(&request, ResponseCode::ServFail);
    };
    let Ok(mut response) = Message::from_vec(&reply) else {
        object.rcode = rcode_name(ResponseCode::ServFail);
        report(&asked, object, true);
        return reply_code(&request, ResponseCode::ServFail);
    };
    let ceiling = u32::try_from(ctx.settings.ttl_ceiling.as_secs()).unwrap_or(u32::MAX);
    let mut addrs = Vec::new();
    let mut min_ttl = ceiling;
    for record in response.answers_mut() {
        // No cache downstream may keep an answer longer than the kernel allows its addresses.
        record.set_ttl(record.ttl().min(ceiling));
        match record.data() {
            RData::A(a) => addrs.push(IpAddr::V4(a.0)),
            RData::AAAA(a) => addrs.push(IpAddr::V6(a.0)),
            _ => continue,
        }
        min_ttl = min_ttl.min(record.ttl());
    }
    let floor = u32::try_from(ctx.settings.ttl_floor.as_secs()).unwrap_or(0);
    let ttl = min_ttl.max(floor);
    object.rcode = rcode_name(response.response_code());
    if !addrs.is_empty() && asked.judgement.forwarded() {
        // Learned before the answer is passed on: the first connect never races the map.
        let learned = registry.lock().expect("registry lock is never poisoned").dns_learn(
            ctx.task,
            &name,
            &addrs,
            &asked.judgement.allowing,
            Duration::from_secs(u64::from(ttl)),
        );
        if let Err(err) = learned {
            tracing::warn!(task = ctx.task, %err, "DNS answer not learned: refused");
            object.rcode = rcode_name(ResponseCode::ServFail);
            report(&asked, object, true);
            return reply_code(&request, ResponseCode::ServFail);
        }
        object.ttl = Some(ttl);
    }
    object.answers = addrs.iter().map(ToString::to_string).collect();
    report(&asked, object, true);
    response.to_vec().ok()
}

/// A response code as DNS tools print it (`NOERROR`, `NXDOMAIN`, `REFUSED`).
fn rcode_name(code: ResponseCode) -> String {
    match u16::from(code) {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        other => format!("RCODE{other}"),
    }
}

/// An answer with no records and `code`.
fn reply_code(request: &Message, code: ResponseCode) -> Option<Vec<u8>> {
    let mut reply = Message::error_msg(request.id(), request.op_code(), code);
    reply.add_queries(request.queries().iter().cloned());
    reply.set_recursion_desired(request.recursion_desired());
    reply.set_recursion_available(true);
    reply.to_vec().ok()
}

/// Reports a question (`forwarded`: it went upstream).
fn report(asked: &DnsAsked, object: DnsObject, forwarded: bool) {
    let action = asked.judgement.action;
    let rule = asked.rule_name.clone().unwrap_or_else(|| "default-deny".into());
    let (decision, policy_decision, reason) = match (asked.ended, action) {
        (Some(why), _) => (Decision::Denied, None, format!("{why}: every question is refused")),
        (None, Some(RuleAction::Allow)) => (Decision::Allowed, None, format!("rule {rule} names {}", object.question)),
        (None, Some(RuleAction::Flag)) => {
            (Decision::Flagged, Some(PolicyDecision::Flag), format!("rule {rule} flags {}", object.question))
        }
        (None, Some(RuleAction::Deny)) => (
            if forwarded { Decision::Flagged } else { Decision::Denied },
            Some(PolicyDecision::Deny),
            format!("rule {rule} refuses {}", object.question),
        ),
        (None, _) => (
            if forwarded { Decision::Flagged } else { Decision::Denied },
            Some(PolicyDecision::Deny),
            format!("no name rule of grant {} names {}", asked.grant, object.question),
        ),
    };
    let verdict = Verdict {
        decision,
        policy_decision: policy_decision.filter(|_| decision != Decision::Allowed),
        enforcement: Level::Cgroup,
        rule: if asked.ended.is_some() { "grant.ttl".into() } else { rule },
        reason,
    };
    let mut event = Event::new(Body::NetworkDns(Action { verdict, object }), &asked.host, SystemTime::now());
    event.task = Some(asked.task.clone());
    asked.sink.send(event);
}
