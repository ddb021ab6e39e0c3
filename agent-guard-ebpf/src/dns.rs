//! DNS of tagged tasks, sent to the task's own resolver in the daemon (cgroup `sock_addr`
//! programs: `connect4/6` and `sendmsg4/6` in net.rs call `redirect`; `recvmsg4/6` and
//! `getpeername4/6` here call `restore`).
//!
//! A TCP connect or UDP send of a tagged process to port 53, whatever the server, is rewritten
//! to `127.0.0.1:dns_port` (`[::1]` for an IPv6 socket, or `::ffff:127.0.0.1` where the resolver
//! could not listen on `::1`), the loopback port of the task's resolver (`TaskEntry::dns_port`). The server the process meant is kept by socket
//! cookie (`DNS_ORIG`) and shown back to it as the source of the answers and as its peer, which
//! resolvers check (glibc `res_send` drops an answer from another address). The kernel runs
//! these hooks before the address is used: `__cgroup_bpf_run_filter_sock_addr`
//! (kernel/bpf/cgroup.c), from `inet_dgram_connect`/`tcp_v4_pre_connect`, `udp_sendmsg`,
//! `udp_recvmsg` and `inet_getname`.
//!
//! Fail-open/closed: a redirect whose original cannot be kept still goes to the resolver (the
//! process then drops the answer: its DNS fails, nothing leaves); `restore` of a socket with
//! no record changes nothing.

use agent_guard_common::{net::DnsOrig, task::DNS_ON_IP6_LOOPBACK};
use aya_ebpf::{helpers::generated::bpf_get_socket_cookie, macros::cgroup_sock_addr, programs::SockAddrContext};

use crate::{maps::DNS_ORIG, task::CurrentTask};

/// The DNS port (TCP and UDP).
const DNS: u16 = 53;
const IPPROTO_TCP: u32 = 6;
const IPPROTO_UDP: u32 = 17;
/// 127.0.0.1 as `user_ip4` holds it (network order in a u32).
const LOOPBACK4: u32 = u32::from_ne_bytes([127, 0, 0, 1]);
/// `::ffff:127.0.0.1` as `user_ip6` holds it.
const LOOPBACK_MAPPED: [u32; 4] = [0, 0, u32::from_ne_bytes([0, 0, 0xff, 0xff]), LOOPBACK4];
/// `::1` as `user_ip6` holds it.
const LOOPBACK6: [u32; 4] = [0, 0, 0, u32::from_ne_bytes([0, 0, 0, 1])];

/// The resolver's address for an IPv6 socket of a task whose `dns_port` is `dns_port`.
#[inline(always)]
fn resolver6(dns_port: u32) -> [u32; 4] {
    if dns_port & DNS_ON_IP6_LOOPBACK != 0 { LOOPBACK6 } else { LOOPBACK_MAPPED }
}

/// Reads word `i` of `user_ip6`. One load at a constant offset from the context pointer: the
/// verifier refuses a context access through a pointer derived from it ("dereference of
/// modified ctx ptr", kernel/bpf/verifier.c `check_ctx_access`), which an array copy compiles to.
#[inline(always)]
unsafe fn ip6_word(sa: *mut aya_ebpf::bindings::bpf_sock_addr, i: usize) -> u32 {
    // SAFETY: a field of the context, read as the verifier requires.
    unsafe { core::ptr::read_volatile(&raw const (*sa).user_ip6[i]) }
}

/// Writes word `i` of `user_ip6` (as `ip6_word` reads it).
#[inline(always)]
unsafe fn set_ip6_word(sa: *mut aya_ebpf::bindings::bpf_sock_addr, i: usize, value: u32) {
    // SAFETY: a field of the context, written as the verifier requires.
    unsafe { core::ptr::write_volatile(&raw mut (*sa).user_ip6[i], value) }
}

/// Whether `addr` (IPv6 or v4-mapped, network order) is where the task's resolver listens:
/// `::ffff:127.0.0.1`, or `::1` when the daemon holds that port there too (`ip6_loopback`);
/// otherwise whoever holds `[::1]:port` would be reached unjudged.
#[inline(always)]
fn is_resolver_addr(addr: &[u8; 16], ip6_loopback: bool) -> bool {
    addr[..10].iter().all(|b| *b == 0)
        && (addr[10..] == [0xff, 0xff, 127, 0, 0, 1] || (ip6_loopback && addr[10..] == [0, 0, 0, 0, 0, 1]))
}

/// Where a connect or send of `task` to `addr`:`port` over `protocol` goes.
#[derive(PartialEq, Eq)]
pub enum Route {
    /// Not DNS of a task with a resolver: judged by the grant.
    Judged,
    /// DNS: to be sent to the task's resolver.
    Redirect,
    /// Already bound for the task's resolver (a v4-mapped send is seen again by sendmsg4 after
    /// the rewrite).
    Resolver,
}

#[inline(always)]
pub fn route(task: &CurrentTask, protocol: u32, port: u16, addr: &[u8; 16]) -> Route {
    let dns_port = task.entry.dns_port;
    if dns_port == 0 || (protocol != IPPROTO_TCP && protocol != IPPROTO_UDP) {
        Route::Judged
    } else if u32::from(port) == dns_port & 0xffff && is_resolver_addr(addr, dns_port & DNS_ON_IP6_LOOPBACK != 0) {
        Route::Resolver
    } else if port == DNS {
        Route::Redirect
    } else {
        Route::Judged
    }
}

/// For a connect or send of `task` to `addr`:`port`: whether it is DNS now bound for the task's
/// resolver (rewritten here), or already bound for it; either way it proceeds.
#[inline(always)]
pub fn redirect(
    ctx: &SockAddrContext,
    task: &CurrentTask,
    v4: bool,
    protocol: u32,
    port: u16,
    addr: &[u8; 16],
) -> bool {
    match route(task, protocol, port, addr) {
        Route::Judged => return false,
        Route::Resolver => return true,
        Route::Redirect => {}
    }
    let dns_port = task.entry.dns_port;
    let sa = ctx.sock_addr;
    // SAFETY: the helper takes the program's context; the fields written are the ones these
    // attach types may write (kernel/bpf/cgroup.c `sock_addr_is_valid_access`).
    unsafe {
        let cookie = bpf_get_socket_cookie(sa.cast());
        let orig = DnsOrig { addr: *addr, port_be: (*sa).user_port, dns_port };
        let _ = DNS_ORIG.insert(&cookie, &orig, 0);
        if v4 {
            (*sa).user_ip4 = LOOPBACK4;
        } else {
            let to = resolver6(dns_port);
            set_ip6_word(sa, 0, to[0]);
            set_ip6_word(sa, 1, to[1]);
            set_ip6_word(sa, 2, to[2]);
            set_ip6_word(sa, 3, to[3]);
        }
        (*sa).user_port = u32::from(((dns_port & 0xffff) as u16).to_be());
    }
    true
}

/// Shows a redirected socket the server it meant, where the kernel reports its resolver's
/// address (the source of an answer, or the peer).
#[inline(always)]
fn restore(ctx: &SockAddrContext, v4: bool) {
    let sa = ctx.sock_addr;
    // SAFETY: as in `redirect`; the record is copied out at once.
    unsafe {
        let cookie = bpf_get_socket_cookie(sa.cast());
        let Some(orig) = DNS_ORIG.get(&cookie).copied() else {
            return;
        };
        if u32::from(u16::from_be((*sa).user_port as u16)) != orig.dns_port & 0xffff {
            return;
        }
        if v4 {
            if (*sa).user_ip4 != LOOPBACK4 {
                return;
            }
            (*sa).user_ip4 = u32::from_ne_bytes([orig.addr[12], orig.addr[13], orig.addr[14], orig.addr[15]]);
        } else {
            let current = [ip6_word(sa, 0), ip6_word(sa, 1), ip6_word(sa, 2), ip6_word(sa, 3)];
            if current != resolver6(orig.dns_port) {
                return;
            }
            let a = orig.addr;
            set_ip6_word(sa, 0, u32::from_ne_bytes([a[0], a[1], a[2], a[3]]));
            set_ip6_word(sa, 1, u32::from_ne_bytes([a[4], a[5], a[6], a[7]]));
            set_ip6_word(sa, 2, u32::from_ne_bytes([a[8], a[9], a[10], a[11]]));
            set_ip6_word(sa, 3, u32::from_ne_bytes([a[12], a[13], a[14], a[15]]));
        }
        (*sa).user_port = orig.port_be;
    }
}

// Every program below returns 1: these hooks only rewrite (a recvmsg program must return 1).

#[cgroup_sock_addr(recvmsg4)]
pub fn recvmsg4(ctx: SockAddrContext) -> i32 {
    restore(&ctx, true);
    1
}

#[cgroup_sock_addr(recvmsg6)]
pub fn recvmsg6(ctx: SockAddrContext) -> i32 {
    restore(&ctx, false);
    1
}

#[cgroup_sock_addr(getpeername4)]
pub fn getpeername4(ctx: SockAddrContext) -> i32 {
    restore(&ctx, true);
    1
}

#[cgroup_sock_addr(getpeername6)]
pub fn getpeername6(ctx: SockAddrContext) -> i32 {
    restore(&ctx, false);
    1
}
