//! BPF LSM hooks on sockets beyond connect and send (lsm.rs, net.rs): which sockets a task may
//! open at all, and whether it may take connections in.
//!
//! - `socket_create` (net/socket.c __`sock_create)`: a tagged process may open Unix sockets,
//!   TCP and UDP sockets (IPv4 and IPv6), whose destinations the grant judges, and route and
//!   socket-diagnostic netlink sockets (what getaddrinfo and ss read). Every other family,
//!   type or protocol is refused: raw IP, packet, ICMP "ping", SCTP, MPTCP, vsock, Bluetooth,
//!   `AF_ALG`, XDP, and netlink families that configure the system (their sends are never
//!   judged by the connect and sendmsg hooks). Kernel-internal sockets are not judged.
//! - `socket_listen`, `socket_accept` (net/socket.c __`sys_listen`, `do_accept)`: an IPv4 or IPv6
//!   socket may take connections in only on a port the grant's `network.listen` names, so an
//!   agent cannot serve what it read to whoever connects (an accepted socket's sends are
//!   never judged as connects). A listening socket passed in from outside is caught at accept.
//!
//! Fail-open/closed: untagged processes are never affected. For tagged ones the socket family
//! refusal holds whatever the grant's mode; listen follows the grant (audit mode flags it).

use agent_guard_common::{
    event::{ACTION_ALLOWED, ACTION_BLOCKED, ESCAPE_LISTEN, ESCAPE_SOCKET},
    net::{LISTEN_GRANT_BIT, NET_DENY, NET_KEY_BITS, NetKey, PROTO_TCP},
    task::MODE_AUDIT,
};
use aya_ebpf::{helpers::bpf_probe_read_kernel, macros::lsm, maps::lpm_trie::Key, programs::LsmContext};

use crate::{
    config,
    escape::{refuse, report},
    lsm::verdict,
    maps::NET_RULES,
    task::current_task,
};

/// include/linux/socket.h
const AF_UNIX: i32 = 1;
const AF_INET: i32 = 2;
const AF_INET6: i32 = 10;
const AF_NETLINK: i32 = 16;
/// include/linux/net.h
const SOCK_STREAM: i32 = 1;
const SOCK_DGRAM: i32 = 2;
const SOCK_TYPE_MASK: i32 = 0xf;
/// include/uapi/linux/in.h
const IPPROTO_TCP: i32 = 6;
const IPPROTO_UDP: i32 = 17;
/// include/uapi/linux/netlink.h
const NETLINK_ROUTE: i32 = 0;
const NETLINK_SOCK_DIAG: i32 = 4;

/// `socket_create(int` family, int type, int protocol, int kern)
#[lsm(hook = "socket_create")]
pub fn socket_create(ctx: LsmContext) -> i32 {
    let kern: i32 = ctx.arg(3);
    if kern != 0 {
        return verdict(true);
    }
    let Some(task) = current_task() else {
        return verdict(true);
    };
    let (family, kind, protocol): (i32, i32, i32) = (ctx.arg(0), ctx.arg::<i32>(1) & SOCK_TYPE_MASK, ctx.arg(2));
    let allowed = match family {
        AF_UNIX => true,
        AF_INET | AF_INET6 => {
            (kind == SOCK_STREAM && (protocol == 0 || protocol == IPPROTO_TCP))
                || (kind == SOCK_DGRAM && (protocol == 0 || protocol == IPPROTO_UDP))
        }
        AF_NETLINK => protocol == NETLINK_ROUTE || protocol == NETLINK_SOCK_DIAG,
        _ => false,
    };
    if allowed {
        return verdict(true);
    }
    let arg = u64::from(family as u32) | (u64::from(kind as u32) << 16) | (u64::from(protocol as u32) << 32);
    verdict(refuse(&task, ESCAPE_SOCKET, 0, arg))
}

/// `socket_listen(struct` socket *sock, int backlog)
#[lsm(hook = "socket_listen")]
pub fn socket_listen(ctx: LsmContext) -> i32 {
    verdict(may_take_connections(ctx.arg(0)))
}

/// `socket_accept(struct` socket *sock, struct socket *newsock)
#[lsm(hook = "socket_accept")]
pub fn socket_accept(ctx: LsmContext) -> i32 {
    verdict(may_take_connections(ctx.arg(0)))
}

/// Whether the current process may listen or accept on `sock` (a struct socket).
#[inline(always)]
fn may_take_connections(sock: *const u8) -> bool {
    let Some(task) = current_task() else {
        return true;
    };
    // SAFETY: socket.sk, then sock_common's family and local port, at their BTF offsets.
    let sk = unsafe { bpf_probe_read_kernel(sock.add(config::socket_sk_off()).cast::<u64>()) }.unwrap_or(0);
    let family = i32::from(
        unsafe { bpf_probe_read_kernel((sk as *const u8).add(config::sock_family_off()).cast::<u16>()) }.unwrap_or(0),
    );
    if family != AF_INET && family != AF_INET6 {
        return true;
    }
    let port =
        unsafe { bpf_probe_read_kernel((sk as *const u8).add(config::sock_num_off()).cast::<u16>()) }.unwrap_or(0);
    if task.grant_ended().is_none() && listen_allowed(task.entry.grant_id, port) {
        return true;
    }
    let audit = task.entry.mode == MODE_AUDIT;
    report(&task, ESCAPE_LISTEN, 0, u64::from(port), if audit { ACTION_ALLOWED } else { ACTION_BLOCKED });
    audit
}

/// Whether the grant's `network.listen` allows `port` (TCP): its rules are kept in `NET_RULES`
/// under the grant id with `LISTEN_GRANT_BIT` and the all-zero address.
#[inline(always)]
fn listen_allowed(grant_id: u32, port: u16) -> bool {
    let key = Key::new(NET_KEY_BITS, NetKey { grant_be: (grant_id | LISTEN_GRANT_BIT).to_be_bytes(), addr: [0; 16] });
    let Some(ports) = NET_RULES.get(&key) else {
        return false;
    };
    let count = ports.count as usize;
    let mut allowed = false;
    for i in 0..ports.rules.len() {
        if i >= count {
            break;
        }
        let rule = &ports.rules[i];
        if rule.protocols & PROTO_TCP != 0 && port >= rule.port_lo && port <= rule.port_hi {
            if rule.action == NET_DENY {
                return false;
            }
            allowed = true;
        }
    }
    allowed
}
