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

/// `PortRule::action`. When several rules match a destination the largest value decides
/// (deny > flag > allow); connects cannot be held, so there is no `ask`.
pub const NET_ALLOW: u8 = 0;
/// Allowed and reported.
pub const NET_FLAG: u8 = 1;
/// Refused whatever else matches.
pub const NET_DENY: u8 = 2;

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
    /// `NET_ALLOW`, `NET_FLAG` or `NET_DENY`.
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

/// Set in the grant id of the `NET_RULES` key that holds a grant's `network.listen` ports (with
/// the all-zero address): listen rules never match a connect, and connect rules never a listen.
/// Grant ids stay below it.
pub const LISTEN_GRANT_BIT: u32 = 1 << 31;
