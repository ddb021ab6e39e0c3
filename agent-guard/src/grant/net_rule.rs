//! Network destinations: `CIDR:PORTS[/PROTO]`, e.g. `10.0.0.0/8:443`, `[::1]/128:8080-8090`,
//! `127.0.0.1:53/udp`, `192.168.1.0/24:*`, or `NAME:PORTS[/PROTO]`, e.g. `api.github.com:443`,
//! `*.pythonhosted.org:443` (every name below the suffix, not the suffix itself). Without a
//! protocol a rule covers TCP connects and UDP sends. IPv4 rules also cover IPv4-mapped IPv6
//! destinations (`::ffff:a.b.c.d`). A name rule allows the addresses the task's own DNS
//! questions for that name were answered with, for the answer's TTL (daemon/dns).

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use agent_guard_common::net::{PROTO_TCP, PROTO_UDP};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// PROTO_* bits of a network rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Protocols(pub u8);

impl Protocols {
    pub const ALL: Protocols = Protocols(PROTO_TCP | PROTO_UDP);
}

/// Where a network rule lets a task connect: a prefix or a DNS name, a port range, protocols.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Destination {
    pub host: Host,
    pub port_lo: u16,
    pub port_hi: u16,
    pub protocols: Protocols,
}

/// The address part of a destination.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// A prefix, enforced in the kernel as written (`NET_RULES`).
    Net(IpNet),
    /// A DNS name: the addresses its answers give, learned per task (`NET_LEARNED`).
    Name(NamePattern),
}

/// A DNS name a rule names: exact, or every name below a suffix (`*.example.com`).
/// Stored lowercase, without a trailing dot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NamePattern {
    Exact(String),
    /// The suffix without `*.`: matches `a.example.com` and `a.b.example.com`, not `example.com`.
    Below(String),
}

impl NamePattern {
    /// Whether the question `name` (any case, trailing dot or not) is this pattern's.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        match self {
            NamePattern::Exact(exact) => name == *exact,
            NamePattern::Below(suffix) => {
                name.len() > suffix.len() + 1
                    && name.ends_with(suffix.as_str())
                    && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
            }
        }
    }

    /// Whether every name `other` matches, this matches too.
    pub fn covers(&self, other: &NamePattern) -> bool {
        match (self, other) {
            (NamePattern::Exact(a), NamePattern::Exact(b)) => a == b,
            (NamePattern::Below(_), NamePattern::Exact(name)) => self.matches(name),
            (NamePattern::Below(a), NamePattern::Below(b)) => a == b || NamePattern::Below(a.clone()).matches(b),
            (NamePattern::Exact(_), NamePattern::Below(_)) => false,
        }
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamePattern::Exact(name) => f.write_str(name),
            NamePattern::Below(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// A DNS name as a rule may write it: letters, digits and '-' in labels of 1-63 characters
/// (and '_', which service names use), at most 253 characters, at least two labels.
fn parse_name(text: &str) -> Result<NamePattern, String> {
    let (below, name) = match text.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.contains('*') {
        return Err("a name may only start with '*.' (every name below a suffix)".into());
    }
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{text:?} is not a DNS name (1-253 characters)"));
    }
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !labels.iter().all(label_ok) {
        return Err(format!("{text:?} is not a DNS name (labels of letters, digits and '-', 1-63 characters)"));
    }
    if labels.len() < 2 {
        return Err(format!("{text:?}: a name needs at least two labels (a top-level domain alone is too wide)"));
    }
    Ok(if below { NamePattern::Below(name) } else { NamePattern::Exact(name) })
}

/// A network rule that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid network rule {rule:?}: {reason}")]
pub struct NetRuleError {
    pub rule: String,
    pub reason: String,
}

/// Address as the kernel keys it: IPv6, with IPv4 mapped into `::ffff:0:0/96`.
pub fn mapped(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

impl Destination {
    /// A prefix rule's prefix in the kernel's address space: (prefix length, address); None for
    /// a name rule.
    pub fn mapped_prefix(&self) -> Option<(u8, [u8; 16])> {
        match &self.host {
            Host::Net(IpNet::V4(net)) => Some((96 + net.prefix_len(), mapped(IpAddr::V4(net.network())))),
            Host::Net(IpNet::V6(net)) => Some((net.prefix_len(), net.network().octets())),
            Host::Name(_) => None,
        }
    }

    /// The name pattern of a name rule.
    pub fn name(&self) -> Option<&NamePattern> {
        match &self.host {
            Host::Name(name) => Some(name),
            Host::Net(_) => None,
        }
    }

    /// Whether a prefix rule covers `dest`:`port` over `protocol`. A name rule matches no
    /// address by itself (its addresses are learned per task, `NET_LEARNED`).
    pub fn matches(&self, dest: &[u8; 16], port: u16, protocol: u8) -> bool {
        self.mapped_prefix().is_some_and(|(len, net)| prefix_contains(&net, len, dest))
            && self.covers_port(port, protocol)
    }

    /// Whether `port` over `protocol` is within the rule's ports and protocols.
    pub fn covers_port(&self, port: u16, protocol: u8) -> bool {
        (self.port_lo..=self.port_hi).contains(&port) && self.protocols.0 & protocol != 0
    }
}

/// Whether `addr` lies in `net/len` (both 128-bit, network byte order).
pub fn prefix_contains(net: &[u8; 16], len: u8, addr: &[u8; 16]) -> bool {
    let (n, a) = (u128::from_be_bytes(*net), u128::from_be_bytes(*addr));
    let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
    n & mask == a & mask
}

pub(crate) fn parse_ports(text: &str) -> Result<(u16, u16), String> {
    if text == "*" {
        return Ok((0, u16::MAX));
    }
    let port = |p: &str| p.parse::<u16>().map_err(|_| format!("{p:?} is not a port (0-65535)"));
    let (lo, hi) = match text.split_once('-') {
        Some((lo, hi)) => (port(lo)?, port(hi)?),
        None => (port(text)?, port(text)?),
    };
    if lo > hi {
        return Err(format!("port range {lo}-{hi} is empty"));
    }
    Ok((lo, hi))
}

fn parse_net(text: &str) -> Result<IpNet, String> {
    let (addr, len) = if let Some(rest) = text.strip_prefix('[') {
        let (addr, rest) = rest.split_once(']').ok_or("missing ']' after the IPv6 address")?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| format!("{addr:?} is not an IPv6 address"))?;
        let len = match rest {
            "" => None,
            _ => Some(rest.strip_prefix('/').ok_or("expected /PREFIX after ']'")?),
        };
        (IpAddr::V6(addr), len)
    } else {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        if addr.contains(':') {
            return Err("IPv6 addresses go in brackets: [2001:db8::]/32:443".into());
        }
        let addr: Ipv4Addr = addr.parse().map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
        (IpAddr::V4(addr), len)
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max).ok_or(format!("prefix length {l:?} is not 0-{max}"))?,
    };
    let net = match addr {
        IpAddr::V4(a) => IpNet::V4(Ipv4Net::new(a, len).map_err(|e| e.to_string())?),
        IpAddr::V6(a) => IpNet::V6(Ipv6Net::new(a, len).map_err(|e| e.to_string())?),
    };
    if net.network() != addr {
        return Err(format!("host bits are set; did you mean {}/{len}?", net.network()));
    }
    Ok(net)
}

impl FromStr for Destination {
    type Err = NetRuleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| NetRuleError { rule: text.to_string(), reason };
        let (body, protocols) = if let Some(b) = text.strip_suffix("/tcp") {
            (b, Protocols(PROTO_TCP))
        } else if let Some(b) = text.strip_suffix("/udp") {
            (b, Protocols(PROTO_UDP))
        } else {
            (text, Protocols::ALL)
        };
        let (host, ports) = body
            .rsplit_once(':')
            .filter(|(net, _)| !net.is_empty() && (!net.starts_with('[') || net.contains(']')))
            .ok_or_else(|| {
                fail(
                    "expected CIDR:PORTS or NAME:PORTS, e.g. 10.0.0.0/8:443, [::1]/128:8080-8090, api.example.com:443"
                        .into(),
                )
            })?;
        // An address starts with a digit or '['; a name with a letter, a digit or '*' — a
        // leading digit is read as an address first (`1.2.3.4`), then as a name (`1password.com`).
        let host = match parse_net(host) {
            Ok(net) => Host::Net(net),
            Err(_)
                if host.starts_with('[')
                    || host.contains('/')
                    || host.bytes().all(|b| b.is_ascii_digit() || b == b'.') =>
            {
                return Err(fail(parse_net(host).expect_err("failed above")));
            }
            Err(_) => Host::Name(parse_name(host).map_err(fail)?),
        };
        let (port_lo, port_hi) = parse_ports(ports).map_err(fail)?;
        Ok(Destination { host, port_lo, port_hi, protocols })
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Net(IpNet::V4(net)) => write!(f, "{net}:")?,
            Host::Net(IpNet::V6(net)) => write!(f, "[{}]/{}:", net.network(), net.prefix_len())?,
            Host::Name(name) => write!(f, "{name}:")?,
        }
        match (self.port_lo, self.port_hi) {
            (0, u16::MAX) => f.write_str("*")?,
            (lo, hi) if lo == hi => write!(f, "{lo}")?,
            (lo, hi) => write!(f, "{lo}-{hi}")?,
        }
        match self.protocols.0 {
            PROTO_TCP => f.write_str("/tcp"),
            PROTO_UDP => f.write_str("/udp"),
            _ => Ok(()),
        }
    }
}

impl super::rule::RuleTarget for Destination {
    const KEY: &'static str = "to";
}

impl schemars::JsonSchema for Destination {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Destination".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "CIDR:PORTS[/tcp|/udp] or NAME:PORTS[/tcp|/udp], e.g. 10.0.0.0/8:443, [::1]/128:8080-8090, 127.0.0.53/32:53/udp, 192.168.1.0/24:*, api.github.com:443, *.pythonhosted.org:443",
            "pattern": "^((\\[[0-9a-fA-F:.]+\\]|[0-9.]+)(/[0-9]{1,3})?|(\\*\\.)?[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)+\\.?):([0-9]{1,5}(-[0-9]{1,5})?|\\*)(/tcp|/udp)?$"
        })
    }
}

/// A `network.listen` entry: the TCP ports a task may listen and accept on, `PORT`, `LO-HI`
/// or `*` (any local address; the kernel sees the port at listen(2) and accept(2)).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ListenPorts {
    pub port_lo: u16,
    pub port_hi: u16,
}

impl FromStr for ListenPorts {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (port_lo, port_hi) =
            parse_ports(text).map_err(|err| format!("network.listen {text:?}: {err} (PORT, LO-HI or *)"))?;
        Ok(ListenPorts { port_lo, port_hi })
    }
}

impl fmt::Display for ListenPorts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.port_lo, self.port_hi) {
            (0, u16::MAX) => f.write_str("*"),
            (lo, hi) if lo == hi => write!(f, "{lo}"),
            (lo, hi) => write!(f, "{lo}-{hi}"),
        }
    }
}

impl schemars::JsonSchema for ListenPorts {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ListenPorts".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "TCP ports to listen and accept on: PORT, LO-HI or *",
            "pattern": "^(\\*|[0-9]{1,5}(-[0-9]{1,5})?)$"
        })
    }
}

impl super::rule::RuleTarget for ListenPorts {
    const KEY: &'static str = "port";
}
