//! One task's resolver: a UDP socket and a TCP listener on one loopback port, and the answer to
//! each question (forward and learn, or refuse), reported as `network.dns`.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
    time::{Duration, SystemTime},
};

use hickory_proto::{
    op::{Message, MessageType, OpCode, ResponseCode},
    rr::{DNSClass, RData},
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
/// TCP connections one task may have open to its resolver; more are closed at once.
const TCP_CONNECTIONS: usize = 16;
/// How long a TCP connection may stay idle, or take to send one whole message.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Refused questions of one task reported one by one per second; the rest are counted and
/// reported together once a second (a flood must not crowd out the kernel's events).
const REFUSED_REPORTED_PER_SEC: u32 = 20;
/// Addresses learned from one answer, at most (the shared `NET_LEARNED` map must not be filled
/// by one task's answers).
const MAX_ANSWER_ADDRS: usize = 32;

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
    connections: Arc<Semaphore>,
    /// Refused questions reported in the current second, and those counted instead.
    refused: std::sync::Mutex<Refused>,
}

#[derive(Default)]
struct Refused {
    second: u64,
    reported: u32,
    counted: u64,
    /// The task as the last refused question named it (for the summary).
    last: Option<DnsAsked>,
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
        let ctx = Arc::new(Ctx {
            task,
            settings,
            registry,
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
            connections: Arc::new(Semaphore::new(TCP_CONNECTIONS)),
            refused: std::sync::Mutex::new(Refused::default()),
        });
        let mut tasks = Vec::new();
        let has_ip6 = ip6.is_some();
        for (udp, tcp) in std::iter::once((udp, tcp)).chain(ip6) {
            udp.set_nonblocking(true)?;
            tcp.set_nonblocking(true)?;
            let (udp, tcp) = (UdpSocket::from_std(udp)?, TcpListener::from_std(tcp)?);
            tasks.push(runtime.spawn(serve_udp(udp, ctx.clone())));
            tasks.push(runtime.spawn(serve_tcp(tcp, ctx.clone())));
        }
        tasks.push(runtime.spawn(report_counted(ctx)));
        return Ok(Running { port, ip6: has_ip6, tasks });
    }
    Err(last)
}

/// The largest question taken over UDP: a question is tens of bytes, and 4 KiB is EDNS's usual
/// buffer; a bigger datagram is cut short and then fails to parse.
const UDP_QUESTION_MAX: usize = 4096;

async fn serve_udp(socket: UdpSocket, ctx: Arc<Ctx>) {
    let socket = Arc::new(socket);
    loop {
        if socket.readable().await.is_err() {
            continue;
        }
        // Received into a buffer on the stack of this poll, which no `.await` outlives: a
        // waiting socket holds none (a thousand tasks would hold 8 MiB of them).
        let mut buf = [0u8; UDP_QUESTION_MAX];
        let Ok((n, peer)) = socket.try_recv_from(&mut buf) else {
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
            // Out of descriptors, say: wait rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(permit) = ctx.connections.clone().try_acquire_owned() else {
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            serve_connection(stream, &ctx).await;
            drop(permit);
        });
    }
}

/// RFC 1035 4.2.2: each message preceded by its length; each whole message within `TCP_IDLE`.
async fn serve_connection(mut stream: TcpStream, ctx: &Ctx) {
    loop {
        let read = async {
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await.ok()?;
            let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut query).await.ok()?;
            Some(query)
        };
        let Ok(Some(query)) = tokio::time::timeout(TCP_IDLE, read).await else {
            return;
        };
        let Ok(permit) = ctx.in_flight.clone().try_acquire_owned() else {
            return;
        };
        let reply = answer(ctx, &query, true).await;
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
    // Only a plain question goes any further: one question of class IN, opcode QUERY, nothing
    // else in the message. What is forwarded is a new message built from that question alone
    // (with its own id), never the agent's bytes: no update, no extra records, no side data.
    let plain = request.op_code() == OpCode::Query
        && request.queries().len() == 1
        && request.answers().is_empty()
        && request.name_servers().is_empty()
        && request.queries()[0].query_class() == DNSClass::IN
        && request.to_vec().is_ok_and(|again| again.len() == query.len());
    if !plain {
        return reply_code(&request, ResponseCode::Refused);
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
        withheld: Vec::new(),
        ttl: None,
        rcode: String::new(),
        suspected_exfiltration: false,
    };
    // The task is gone: nothing to judge by.
    let Some(asked) = asked else {
        return reply_code(&request, ResponseCode::Refused);
    };
    let forward = asked.ended.is_none() && (asked.judgement.forwarded() || asked.audit);
    object.suspected_exfiltration = suspected_exfiltration(&name) && !asked.judgement.forwarded();
    if !forward {
        object.rcode = rcode_name(ResponseCode::Refused);
        report_refused(ctx, asked, object);
        return reply_code(&request, ResponseCode::Refused);
    }
    let mut fresh = Message::new();
    fresh.set_id(fresh_id());
    fresh.set_message_type(MessageType::Query);
    fresh.set_op_code(OpCode::Query);
    fresh.set_recursion_desired(true);
    fresh.add_query(question.clone());
    let Ok(fresh) = fresh.to_vec() else {
        return reply_code(&request, ResponseCode::ServFail);
    };
    let Some(reply) = upstream::ask(&ctx.settings.upstream, &fresh, tcp).await else {
        object.rcode = rcode_name(ResponseCode::ServFail);
        report(&asked, object, true);
        return reply_code(&request, ResponseCode::ServFail);
    };
    // The answer must be to the question asked (beside its random id): one that is not (a
    // spoofed or stray datagram) would have its addresses learned for the asked name.
    let answers_question = |r: &Message| {
        r.message_type() == MessageType::Response
            && r.queries().len() == 1
            && r.queries()[0].query_type() == question.query_type()
            && r.queries()[0].query_class() == question.query_class()
            && r.queries()[0].name().to_ascii().eq_ignore_ascii_case(&question.name().to_ascii())
    };
    let Ok(mut response) = Message::from_vec(&reply).and_then(|mut r| {
        if !answers_question(&r) {
            return Err("an answer to another question".into());
        }
        r.set_id(request.id());
        Ok(r)
    }) else {
        object.rcode = rcode_name(ResponseCode::ServFail);
        report(&asked, object, true);
        return reply_code(&request, ResponseCode::ServFail);
    };
    let (addrs, withheld, ttl) = addresses_of(&ctx.settings, &mut response);
    object.withheld = withheld.iter().map(ToString::to_string).collect();
    object.rcode = rcode_name(response.response_code());
    if !addrs.is_empty() && asked.judgement.forwarded() {
        // Learned before the answer is passed on: the first connect never races the map.
        let learned = registry.lock().expect("registry lock is never poisoned").dns_learn(
            ctx.task,
            &name,
            &addrs,
            &asked.judgement.allowing,
            Duration::from_secs(u64::from(ttl)),
            ctx.settings.max_addresses,
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
/// An upstream answer's A and AAAA addresses the task may learn (at most `MAX_ANSWER_ADDRS`),
/// those it may not (local ones: `Settings::learnable`), and the TTL they are allowed for,
/// which every record of the answer is given: no cache downstream keeps an answer longer, nor
/// drops it sooner.
fn addresses_of(settings: &Settings, response: &mut Message) -> (Vec<IpAddr>, Vec<IpAddr>, u32) {
    let ceiling = u32::try_from(settings.ttl_ceiling.as_secs()).unwrap_or(u32::MAX);
    let mut addrs = Vec::new();
    let mut min_ttl = ceiling;
    for record in response.answers() {
        match record.data() {
            RData::A(a) => addrs.push(IpAddr::V4(a.0)),
            RData::AAAA(a) => addrs.push(IpAddr::V6(a.0)),
            _ => continue,
        }
        min_ttl = min_ttl.min(record.ttl());
    }
    let (mut addrs, withheld): (Vec<IpAddr>, Vec<IpAddr>) =
        addrs.into_iter().partition(|addr| settings.learnable(*addr));
    addrs.truncate(MAX_ANSWER_ADDRS);
    let floor = u32::try_from(settings.ttl_floor.as_secs()).unwrap_or(0);
    let ttl = min_ttl.max(floor);
    for record in response.answers_mut() {
        record.set_ttl(ttl);
    }
    (addrs, withheld, ttl)
}

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

/// A random message id for a question sent upstream.
fn fresh_id() -> u16 {
    // The last bytes of a v7 UUID are random (RFC 9562 5.7).
    let bytes = uuid::Uuid::now_v7().into_bytes();
    u16::from_be_bytes([bytes[14], bytes[15]])
}

/// Reports a refused question, or counts it once `REFUSED_REPORTED_PER_SEC` were reported this
/// second (`report_counted` reports the count).
fn report_refused(ctx: &Ctx, asked: DnsAsked, object: DnsObject) {
    let second = crate::daemon::clock::boot_ns_now() / 1_000_000_000;
    let mut refused = ctx.refused.lock().expect("refused lock is never poisoned");
    if refused.second != second {
        refused.second = second;
        refused.reported = 0;
    }
    if refused.reported < REFUSED_REPORTED_PER_SEC {
        refused.reported += 1;
        drop(refused);
        report(&asked, object, false);
    } else {
        refused.counted += 1;
        refused.last = Some(asked);
    }
}

/// Once a second: one event for the refused questions counted instead of reported.
async fn report_counted(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let (counted, last) = {
            let mut refused = ctx.refused.lock().expect("refused lock is never poisoned");
            (std::mem::take(&mut refused.counted), refused.last.take())
        };
        let Some(asked) = last.filter(|_| counted > 0) else { continue };
        let object = DnsObject {
            question: format!("({counted} more)"),
            qtype: "*".into(),
            transport: "udp+tcp".into(),
            server: None,
            answers: Vec::new(),
            withheld: Vec::new(),
            ttl: None,
            rcode: rcode_name(ResponseCode::Refused),
            suspected_exfiltration: false,
        };
        let verdict = Verdict {
            decision: Decision::Denied,
            policy_decision: Some(PolicyDecision::Deny),
            enforcement: Level::Cgroup,
            rule: asked.rule_name.clone().unwrap_or_else(|| "default-deny".into()),
            reason: format!(
                "{counted} more questions refused within a second, counted rather than reported one by one"
            ),
        };
        send(&asked, verdict, object);
    }
}

/// Reports a question (`forwarded`: it went upstream).
fn report(asked: &DnsAsked, object: DnsObject, forwarded: bool) {
    let action = asked.judgement.action;
    let rule = asked.rule_name.clone().unwrap_or_else(|| "default-deny".into());
    let (decision, policy_decision, reason) = match (asked.ended, action) {
        (Some((_, why)), _) => (Decision::Denied, None, format!("{why}: every question is refused")),
        (None, Some(RuleAction::Deny)) if forwarded => (
            Decision::Flagged,
            Some(PolicyDecision::Deny),
            format!("rule {rule} would refuse {} (audit mode: forwarded)", object.question),
        ),
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
        rule: asked.ended.map_or(rule, |(rule, _)| rule.into()),
        reason,
    };
    send(asked, verdict, object);
}

/// Sends a `network.dns` event of `asked`'s task.
fn send(asked: &DnsAsked, verdict: Verdict, object: DnsObject) {
    let mut event = Event::new(Body::NetworkDns(Action { verdict, object }), &asked.host, SystemTime::now());
    event.task = Some(asked.task.clone());
    asked.sink.send(event);
}
