//! Network grant representation: one LPM trie for IPv4 and IPv6.
//!
//! IPv4 rules are stored as IPv4-mapped IPv6 prefixes (`::ffff:a.b.c.d/96+n`), so an IPv4
//! connect, an IPv6 connect and an IPv6 connect to a v4-mapped address all use one lookup.
//! The grant id is part of the key's data and always fully covered by the prefix.
//! Because the trie returns only the longest match, the compiler copies the port rules of
//! every less specific prefix into each more specific one (the value is the full answer).

/// Port rules kept per prefix; a grant needing more for one prefix is refused at compile time.
pub const MAX_PORT_RULES: usize = 16;

/// Bits in `PortRule::protocols`.
pub const PROTO_TCP: u8 = 1;
/// UDP.
pub const PROTO_UDP: u8 = 2;

/// `PortRule::action`. When several rules match a destination the most restrictive decides
/// (deny > ask > flag > allow: `net_rank`). The values are those pinned maps of earlier
/// versions hold, so `ask`, added last, is not in rank order.
pub const NET_ALLOW: u8 = 0;
/// Allowed and reported.
pub const NET_FLAG: u8 = 1;
/// Refused whatever else matches.
pub const NET_DENY: u8 = 2;
/// Held until a human decides (a connect, with BPF LSM: `lsm.rs` `socket_connect`); refused
/// where it cannot be held (a datagram send, or a kernel without BPF LSM).
pub const NET_ASK: u8 = 3;

/// How restrictive a `PortRule::action` is: the larger decides.
#[expect(
    clippy::inline_always,
    reason = "called from eBPF programs: an outlined call would cost verifier budget and a BPF-to-BPF call"
)]
#[inline(always)]
pub const fn net_rank(action: u8) -> u8 {
    match action {
        NET_ALLOW => 0,
        NET_FLAG => 1,
        NET_ASK => 2,
        _ => 3,
    }
}

/// `Approval::access` of a held connect (file and exec approvals use the ACCESS_* bits).
pub const APPROVAL_CONNECT: u32 = 8;

/// The hash of a destination (address, big-endian port, protocol): a held connect's
/// `Approval::hash`, and the first-use key of an allowed one.
#[expect(
    clippy::inline_always,
    reason = "called from eBPF programs: an outlined call would cost verifier budget and a BPF-to-BPF call"
)]
#[inline(always)]
pub fn destination_hash(addr: &[u8; 16], port: u16, protocol: u32) -> u64 {
    let mut hash = crate::path::FNV_OFFSET;
    for byte in addr {
        hash = crate::path::fnv1a_step(hash, *byte);
    }
    for byte in port.to_be_bytes() {
        hash = crate::path::fnv1a_step(hash, byte);
    }
    crate::path::fnv1a_step(hash, protocol as u8)
}

/// Key data length in bits: 32 (grant id) + 128 (address).
pub const NET_KEY_BITS: u32 = 160;

/// Data part of the LPM key (the prefix length is carried by `aya::maps::lpm_trie::Key`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetKey {
    /// Big-endian grant id, so it forms the leading 32 bits of the prefix.
    pub grant_be: [u8; 4],
    /// IPv6 address, or IPv4-mapped IPv6 address, in network byte order.
    pub addr: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
/// One port range of a prefix, with its protocols and action.
pub struct PortRule {
    /// Inclusive port range, host byte order.
    pub port_lo: u16,
    /// Upper end of the range, inclusive.
    pub port_hi: u16,
    /// PROTO_* bits.
    pub protocols: u8,
    /// `NET_ALLOW`, `NET_FLAG`, `NET_DENY` or `NET_ASK`.
    pub action: u8,
    /// Index of the rule in the grant's `network.connect` list, for events.
    pub rule_index: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// Value of `NET_RULES`: the port rules that apply to a prefix.
pub struct NetPorts {
    /// Rules in use at the start of `rules`.
    pub count: u32,
    /// Explicit padding, zero.
    pub pad: u32,
    /// The rules; entries past `count` are unused.
    pub rules: [PortRule; MAX_PORT_RULES],
}

const _: () = assert!(core::mem::size_of::<NetKey>() == 20);
const _: () = assert!(core::mem::size_of::<PortRule>() == 8);
const _: () = assert!(core::mem::size_of::<NetPorts>() == 8 + 8 * MAX_PORT_RULES);

/// Port rules one learned address may carry (several name rules can resolve to one address).
pub const MAX_LEARNED_RULES: usize = 4;

/// Key of `NET_LEARNED`: an address a task's DNS answer gave, under the task's grant.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LearnedKey {
    /// The task's grant (its id).
    pub grant_id: u32,
    /// IPv6 address, or IPv4-mapped IPv6 address, in network byte order.
    pub addr: [u8; 16],
}

/// One name rule's ports at a learned address, until the answer's TTL runs out.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LearnedRule {
    /// `CLOCK_BOOTTIME` after which the rule no longer applies (the kernel compares it itself).
    pub expires_ns: u64,
    /// Inclusive port range of the name rule, host byte order.
    pub port_lo: u16,
    /// Upper end of the range, inclusive.
    pub port_hi: u16,
    /// PROTO_* bits.
    pub protocols: u8,
    /// `NET_ALLOW` or `NET_FLAG` (a `deny` name rule answers REFUSED and learns nothing).
    pub action: u8,
    /// Index of the name rule in the grant's `network.connect` list.
    pub rule_index: u16,
}

/// Value of `NET_LEARNED`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LearnedPorts {
    /// Rules in use at the start of `rules`.
    pub count: u32,
    /// Explicit padding, zero.
    pub pad: u32,
    /// The rules; entries past `count` are unused.
    pub rules: [LearnedRule; MAX_LEARNED_RULES],
}

/// Value of `DNS_ORIG`, keyed by socket cookie: the server a redirected DNS socket meant, shown
/// back to the process as the source of the answers (`recvmsg`) and as its peer (`getpeername`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsOrig {
    /// IPv6 address, or IPv4-mapped IPv6 address, in network byte order.
    pub addr: [u8; 16],
    /// Network byte order, as `bpf_sock_addr::user_port` holds it.
    pub port_be: u32,
    /// The task's `TaskEntry::dns_port` when it was sent (to recognise its resolver's answers).
    pub dns_port: u32,
}

const _: () = assert!(core::mem::size_of::<LearnedKey>() == 20);
const _: () = assert!(core::mem::size_of::<LearnedRule>() == 16);
const _: () = assert!(core::mem::size_of::<LearnedPorts>() == 8 + 16 * MAX_LEARNED_RULES);
const _: () = assert!(core::mem::size_of::<DnsOrig>() == 24);

/// Set in the grant id of the `NET_RULES` key that holds a grant's `network.listen` ports (with
/// the all-zero address): listen rules never match a connect, and connect rules never a listen.
/// Grant ids stay below it.
pub const LISTEN_GRANT_BIT: u32 = 1 << 31;
