//! Network connects and UDP sends: cgroup sock_addr programs attached to the cgroup v2 root.
//!
//! The kernel runs these from `__cgroup_bpf_run_filter_sock_addr` (kernel/bpf/cgroup.c) before
//! the address is used; returning 0 makes connect(2)/sendmsg(2) fail with EPERM. The programs
//! are attached at the root so a process that leaves its task's cgroup is still checked: the
//! decision follows the process tag, not the cgroup.
//!
//! Fail-open/closed: untagged processes are always allowed (they are not ours to judge). For a
//! tagged process every failure (no task entry, grant ended, no rule) denies in enforce mode;
//! a full ring buffer loses the event (counted) but never changes the decision.

use agent_guard_common::{
    event::{
        ACTION_ALLOWED, ACTION_BLOCKED, HOOK_CONNECT4, HOOK_CONNECT6, HOOK_SENDMSG4, HOOK_SENDMSG6, KIND_NET, NetEvent,
        VERDICT_OUT_OF_SCOPE,
    },
    net::{NET_KEY_BITS, NetKey, PROTO_TCP, PROTO_UDP},
    task::MODE_AUDIT,
};
use aya_ebpf::{macros::cgroup_sock_addr, maps::lpm_trie::Key, programs::SockAddrContext};

use crate::{
    emit,
    maps::NET_RULES,
    task::{CurrentTask, current_task},
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

    if task.grant_ended().is_none() && rule_allows(task.entry.grant_id, &addr, port, protocol) {
        return ALLOW;
    }

    if report_connect(&task, hook, protocol, port, addr) { ALLOW } else { DENY }
}

/// Reports an out-of-scope connect or send; whether it may proceed (audit mode).
#[inline(always)]
pub fn report_connect(task: &CurrentTask, hook: u32, protocol: u32, port: u16, addr: [u8; 16]) -> bool {
    let audit = task.entry.mode == MODE_AUDIT;
    let event = NetEvent {
        header: emit::header(
            KIND_NET,
            VERDICT_OUT_OF_SCOPE,
            task.out_of_scope_reason(),
            if audit { ACTION_ALLOWED } else { ACTION_BLOCKED },
            task.task_id,
        ),
        hook,
        protocol,
        port: port as u32,
        _pad: 0,
        addr,
    };
    emit::send(&event);
    audit
}

#[inline(always)]
pub fn rule_allows(grant_id: u32, addr: &[u8; 16], port: u16, protocol: u32) -> bool {
    let proto_bit = match protocol {
        IPPROTO_TCP => PROTO_TCP,
        IPPROTO_UDP => PROTO_UDP,
        _ => return false,
    };
    let key = Key::new(NET_KEY_BITS, NetKey { grant_be: grant_id.to_be_bytes(), addr: *addr });
    let Some(ports) = NET_RULES.get(&key) else {
        return false;
    };
    let count = ports.count as usize;
    for i in 0..ports.rules.len() {
        if i >= count {
            break;
        }
        let rule = &ports.rules[i];
        if rule.protocols & proto_bit != 0 && port >= rule.port_lo && port <= rule.port_hi {
            return true;
        }
    }
    false
}
