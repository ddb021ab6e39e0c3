//! Network connects and UDP sends: cgroup `sock_addr` programs attached to the cgroup v2 root.
//!
//! The kernel runs these from `__cgroup_bpf_run_filter_sock_addr` (kernel/bpf/cgroup.c) before
//! the address is used; returning 0 makes connect(2)/sendmsg(2) fail with EPERM. The programs
//! are attached at the root so a process that leaves its task's cgroup is still checked: the
//! decision follows the process tag, not the cgroup.
//!
//! Fail-open/closed: untagged processes are always allowed (they are not ours to judge). For a
//! tagged process every failure (no task entry, grant ended, no rule) denies in enforce mode;
//! a full ring buffer loses the event (counted) but never changes the decision.
//! Rule actions: the most restrictive matching port rule decides (deny > ask > flag > allow).
//! An `ask` connect was held by the BPF LSM `socket_connect` hook, which the kernel runs first
//! (net/socket.c `__sys_connect_file`), and reaches these programs only once a human approved
//! it; without BPF LSM, and for datagram sends (which nothing holds), it is refused.

use agent_guard_common::{
    event::{
        ACTION_ALLOWED, ACTION_BLOCKED, HOOK_CONNECT4, HOOK_CONNECT6, HOOK_SENDMSG4, HOOK_SENDMSG6, KIND_NET, NO_RULE,
        NetEvent, REASON_NONE, VERDICT_ASK, VERDICT_FLAGGED, VERDICT_IN_SCOPE, VERDICT_OUT_OF_SCOPE, VERDICT_RULE_DENY,
    },
    net::{
        APPROVAL_CONNECT, LearnedKey, NET_ALLOW, NET_ASK, NET_DENY, NET_FLAG, NET_KEY_BITS, NetKey, PROTO_TCP,
        PROTO_UDP, net_rank,
    },
    task::MODE_AUDIT,
    task::USE_CONNECT,
};
use aya_ebpf::{
    helpers::bpf_ktime_get_boot_ns, macros::cgroup_sock_addr, maps::lpm_trie::Key, programs::SockAddrContext,
};

use crate::{
    config, emit,
    maps::{NET_LEARNED, NET_RULES},
    task::{CurrentTask, current_task},
    usage,
};

const ALLOW: i32 = 1;
const DENY: i32 = 0;
const IPPROTO_TCP: u32 = 6;
const IPPROTO_UDP: u32 = 17;

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    try_sock_addr(&ctx, HOOK_CONNECT4)
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    try_sock_addr(&ctx, HOOK_CONNECT6)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    try_sock_addr(&ctx, HOOK_SENDMSG4)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    try_sock_addr(&ctx, HOOK_SENDMSG6)
}

/// Destination as an IPv6 (or IPv4-mapped IPv6) address in network byte order.
#[inline(always)]
fn destination(ctx: &SockAddrContext, hook: u32) -> [u8; 16] {
    let sa = ctx.sock_addr;
    let mut addr = [0u8; 16];
    // SAFETY: ctx fields readable by this attach type (the verifier checks each access:
    // user_ip4 only in the *4 programs, user_ip6 only in the *6 programs).
    unsafe {
        if hook == HOOK_CONNECT4 || hook == HOOK_SENDMSG4 {
            addr[10] = 0xff;
            addr[11] = 0xff;
            addr[12..16].copy_from_slice(&(*sa).user_ip4.to_ne_bytes());
        } else {
            addr[0..4].copy_from_slice(&(*sa).user_ip6[0].to_ne_bytes());
            addr[4..8].copy_from_slice(&(*sa).user_ip6[1].to_ne_bytes());
            addr[8..12].copy_from_slice(&(*sa).user_ip6[2].to_ne_bytes());
            addr[12..16].copy_from_slice(&(*sa).user_ip6[3].to_ne_bytes());
        }
    }
    addr
}

#[inline(always)]
fn try_sock_addr(ctx: &SockAddrContext, hook: u32) -> i32 {
    let Some(task) = current_task() else {
        return ALLOW;
    };
    let sa = ctx.sock_addr;
    // SAFETY: plain ctx field reads, valid for every sock_addr attach type.
    let (protocol, port) = unsafe { ((*sa).protocol, u16::from_be((*sa).user_port as u16)) };
    let addr = destination(ctx, hook);
    let v4 = hook == HOOK_CONNECT4 || hook == HOOK_SENDMSG4;
    if crate::dns::redirect(ctx, &task, v4, protocol, port, &addr) {
        return ALLOW;
    }

    if connect_verdict(&task, hook, protocol, port, addr) { ALLOW } else { DENY }
}

/// Decides a connect or send of a tagged process and reports what is not plainly allowed;
/// whether it may proceed.
#[inline(always)]
pub fn connect_verdict(task: &CurrentTask, hook: u32, protocol: u32, port: u16, addr: [u8; 16]) -> bool {
    let (action, rule_index) = if task.grant_ended().is_none() {
        net_decision(task.entry.grant_id, &addr, port, protocol)
    } else {
        (NO_MATCH, NO_RULE)
    };
    let audit = task.entry.mode == MODE_AUDIT;
    let (verdict, reason, allow) = match action {
        NET_ALLOW if usage::first_use(task.task_id, USE_CONNECT, usage::destination_hash(&addr, port, protocol)) => {
            (VERDICT_IN_SCOPE, REASON_NONE, true)
        }
        NET_ALLOW => return true,
        NET_FLAG => (VERDICT_FLAGGED, REASON_NONE, true),
        // Held and approved by the LSM hook before this program ran (lsm.rs), which left the
        // approval for this thread and destination; a send, or a connect that skipped the hook
        // (TCP Fast Open), finds none.
        NET_ASK
            if config::connect_held()
                && (hook == HOOK_CONNECT4 || hook == HOOK_CONNECT6)
                && !audit
                && crate::hold::passed_once(APPROVAL_CONNECT, usage::destination_hash(&addr, port, protocol)) =>
        {
            return true;
        }
        NET_ASK if audit => (VERDICT_FLAGGED, REASON_NONE, true),
        // Nothing can hold it here: refused, and reported as an `ask` that was not held.
        NET_ASK => (VERDICT_ASK, REASON_NONE, false),
        NET_DENY => (VERDICT_RULE_DENY, REASON_NONE, audit),
        _ => (VERDICT_OUT_OF_SCOPE, task.out_of_scope_reason(), audit),
    };
    let event = NetEvent {
        header: emit::header(
            KIND_NET,
            verdict,
            reason,
            if allow { ACTION_ALLOWED } else { ACTION_BLOCKED },
            task.task_id,
        ),
        hook,
        protocol,
        port: u32::from(port),
        rule_index,
        addr,
    };
    emit::send(&event);
    allow
}

/// No port rule matched the destination.
const NO_MATCH: u8 = u8::MAX;

/// The action of the most restrictive port rule matching the destination, and that rule's
/// index; (`NO_MATCH`, `NO_RULE`) when none does.
///
/// The unspecified address (0.0.0.0, ::) matches nothing: the kernel sends such a connect to
/// the socket's own bound address, or to loopback (net/ipv4/route.c
/// `ip_route_output_key_hash_rcu`: `if (!fl4->daddr) fl4->daddr = fl4->saddr` then
/// `INADDR_LOOPBACK`), so no rule written for an address can be said to cover it.
#[inline(always)]
pub fn net_decision(grant_id: u32, addr: &[u8; 16], port: u16, protocol: u32) -> (u8, u32) {
    if is_unspecified(addr) {
        return (NO_MATCH, NO_RULE);
    }
    let proto_bit = match protocol {
        IPPROTO_TCP => PROTO_TCP,
        IPPROTO_UDP => PROTO_UDP,
        _ => return (NO_MATCH, NO_RULE),
    };
    let key = Key::new(NET_KEY_BITS, NetKey { grant_be: grant_id.to_be_bytes(), addr: *addr });
    let (mut action, mut index) = (NO_MATCH, NO_RULE);
    if let Some(ports) = NET_RULES.get(&key) {
        let count = ports.count as usize;
        for i in 0..ports.rules.len() {
            if i >= count {
                break;
            }
            let rule = &ports.rules[i];
            if rule.protocols & proto_bit != 0
                && port >= rule.port_lo
                && port <= rule.port_hi
                && (action == NO_MATCH || net_rank(rule.action) > net_rank(action))
            {
                action = rule.action;
                index = u32::from(rule.rule_index);
            }
        }
    }
    // Addresses the task's DNS answers gave for its name rules, while their TTL lasts.
    // SAFETY: the value is read in place; the daemon replaces entries whole.
    if let Some(learned) = unsafe { NET_LEARNED.get(&LearnedKey { grant_id, addr: *addr }) } {
        // SAFETY: helper without arguments.
        let now = unsafe { bpf_ktime_get_boot_ns() };
        let count = learned.count as usize;
        for i in 0..learned.rules.len() {
            if i >= count {
                break;
            }
            let rule = &learned.rules[i];
            if rule.expires_ns > now
                && rule.protocols & proto_bit != 0
                && port >= rule.port_lo
                && port <= rule.port_hi
                && (action == NO_MATCH || net_rank(rule.action) > net_rank(action))
            {
                action = rule.action;
                index = u32::from(rule.rule_index);
            }
        }
    }
    (action, index)
}

/// `::` or `::ffff:0.0.0.0`.
#[inline(always)]
fn is_unspecified(addr: &[u8; 16]) -> bool {
    let mut high = 0u8;
    for byte in &addr[0..10] {
        high |= *byte;
    }
    let v4 = addr[12] | addr[13] | addr[14] | addr[15];
    let mapped = addr[10] == 0xff && addr[11] == 0xff;
    let zero_mid = addr[10] == 0 && addr[11] == 0;
    high == 0 && v4 == 0 && (mapped || zero_mid)
}
