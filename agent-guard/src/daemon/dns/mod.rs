//! Each task's own DNS resolver: name rules (`api.example.com:443`) enforced in the kernel, and
//! DNS refused as a channel out.
//!
//! Every open task gets a UDP socket and a TCP listener on one loopback port; the kernel sends
//! the task's DNS there (`TaskEntry::dns_port`, dns.rs in the eBPF crate), whatever server the
//! process asked. A question for a name a rule allows is forwarded upstream, and the answer's
//! addresses are allowed to the task for that rule's ports (`NET_LEARNED`) before the answer is
//! passed on, so its first connect never races the map. Other questions get REFUSED. Each
//! question is reported (`network.dns`). The socket a query arrives on names its task: no
//! guess from addresses or ports.

mod judge;
mod serve;
mod upstream;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

pub use judge::{NameJudgement, judge_name};

use agent_guard_common::task::DNS_ON_IP6_LOOPBACK;

use crate::daemon::{config::DnsConfig, events::schema::TaskRef, output::EventSink};

/// What the resolvers need of the task registry (implemented in tasks/dns.rs: the registry
/// knows this module, not the other way round).
pub trait TaskDns {
    /// Judges a question of task `task_id` for `name`; None when the task is gone.
    fn dns_question(&self, task_id: u32, name: &str) -> Option<DnsAsked>;
    /// Allows task `task_id` the addresses `addrs` (an answer for `name`) for the ports of its
    /// name rules `rules` (indexes in `network.connect`), for `ttl`; all of them, or none when
    /// the task would hold more than `max` addresses at once.
    fn dns_learn(
        &mut self,
        task_id: u32,
        name: &str,
        addrs: &[IpAddr],
        rules: &[usize],
        ttl: Duration,
        max: u32,
    ) -> Result<(), String>;
}

/// The registry as the resolvers hold it.
pub type Tasks = Weak<Mutex<dyn TaskDns + Send>>;

/// A question of a task, judged: what the resolver needs to answer and report it.
pub struct DnsAsked {
    pub judgement: NameJudgement,
    /// The task is in audit mode: everything is forwarded, and reported as the grant would
    /// decide.
    pub audit: bool,
    /// Why the task allows nothing any more (revoked, expired); None while it is in force.
    /// The rule events name for it (`task.stopped`, `grant.ttl`) and why.
    pub ended: Option<(&'static str, &'static str)>,
    /// The deciding rule as events name it.
    pub rule_name: Option<String>,
    pub grant: String,
    pub task: std::sync::Arc<TaskRef>,
    pub host: String,
    pub sink: EventSink,
}

/// What every resolver uses.
pub struct Settings {
    pub upstream: Vec<SocketAddr>,
    pub ttl_floor: Duration,
    pub ttl_ceiling: Duration,
    /// Local addresses answers may still allow (`dns.localAnswers`).
    pub local_answers: Vec<ipnet::IpNet>,
    /// Addresses one task tree may have learned at once (`dns.maxAddresses`).
    pub max_addresses: u32,
    /// This host's own addresses, and when they were read.
    pub own: Mutex<OwnAddresses>,
}

impl Settings {
    /// Whether an answer's `addr` may be allowed to the task: not a local address (loopback,
    /// link-local, unspecified, multicast, broadcast, or one of this host's own) unless
    /// `dns.localAnswers` names it. An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is
    /// judged as the IPv4 one.
    pub fn learnable(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        if self.local_answers.iter().any(|net| net.contains(&addr)) {
            return true;
        }
        let local = match addr {
            IpAddr::V4(a) => {
                a.is_loopback() || a.is_link_local() || a.is_unspecified() || a.is_multicast() || a.is_broadcast()
            }
            IpAddr::V6(a) => a.is_loopback() || a.is_unicast_link_local() || a.is_unspecified() || a.is_multicast(),
        };
        !local && !self.own.lock().expect("own addresses lock is never poisoned").contains(addr)
    }
}

/// The addresses of this host's interfaces, read again when older than `OWN_ADDRESSES_FRESH`.
#[derive(Default)]
pub struct OwnAddresses {
    read_at: Option<std::time::Instant>,
    addrs: Vec<IpAddr>,
}

/// How long a read of the host's addresses is used (an address added since is caught after).
const OWN_ADDRESSES_FRESH: Duration = Duration::from_secs(5);

impl OwnAddresses {
    fn contains(&mut self, addr: IpAddr) -> bool {
        if self.read_at.is_none_or(|at| at.elapsed() > OWN_ADDRESSES_FRESH) {
            self.addrs = nix::ifaddrs::getifaddrs()
                .map(|all| {
                    all.filter_map(|i| i.address)
                        .filter_map(|a| {
                            a.as_sockaddr_in()
                                .map(|v4| IpAddr::V4(v4.ip()))
                                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
                        })
                        .collect()
                })
                .unwrap_or_default();
            self.read_at = Some(std::time::Instant::now());
        }
        self.addrs.contains(&addr)
    }
}

// Defined with what decoding reads of a task (events may not import dns: dns imports events).
pub use crate::daemon::events::decode::Learned;

/// The resolvers of the open tasks.
pub struct Resolvers {
    settings: Arc<Settings>,
    runtime: tokio::runtime::Handle,
    registry: Tasks,
    running: HashMap<u32, serve::Running>,
}

/// A resolver that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("task {task}: no loopback port for its DNS resolver: {source}")]
    Bind { task: u32, source: std::io::Error },
}

impl Resolvers {
    /// None when DNS is turned off in the config.
    pub fn new(config: &DnsConfig, registry: Tasks) -> Option<Resolvers> {
        if !config.enabled {
            return None;
        }
        let upstream = if config.upstream.is_empty() {
            upstream::from_resolv_conf(std::path::Path::new("/etc/resolv.conf"))
        } else {
            config.upstream.clone()
        };
        if upstream.is_empty() {
            tracing::warn!(
                "no DNS servers (dns.upstream is empty and /etc/resolv.conf names none): every task's DNS is refused"
            );
        }
        Some(Resolvers {
            settings: Arc::new(Settings {
                upstream,
                ttl_floor: config.ttl_floor,
                ttl_ceiling: config.ttl_ceiling,
                local_answers: config.local_answers.clone(),
                max_addresses: config.max_addresses,
                own: Mutex::default(),
            }),
            runtime: tokio::runtime::Handle::current(),
            registry,
            running: HashMap::new(),
        })
    }

    /// Starts task `task`'s resolver; its `TaskEntry::dns_port`.
    pub fn start(&mut self, task: u32) -> Result<u32, DnsError> {
        let running = serve::start(task, &self.runtime, self.settings.clone(), self.registry.clone())
            .map_err(|source| DnsError::Bind { task, source })?;
        let entry = u32::from(running.port) | if running.ip6 { DNS_ON_IP6_LOOPBACK } else { 0 };
        self.running.insert(task, running);
        Ok(entry)
    }

    /// Stops task `task`'s resolver (it ended).
    pub fn stop(&mut self, task: u32) {
        self.running.remove(&task);
    }
}

#[cfg(test)]
mod tests {
    use super::Settings;

    fn settings(local_answers: &[&str]) -> Settings {
        Settings {
            upstream: Vec::new(),
            ttl_floor: std::time::Duration::ZERO,
            ttl_ceiling: std::time::Duration::ZERO,
            local_answers: local_answers.iter().map(|n| n.parse().unwrap()).collect(),
            max_addresses: 1,
            own: std::sync::Mutex::default(),
        }
    }

    #[test]
    fn local_answers_allow_nothing_unless_named() {
        let default = settings(&[]);
        for local in [
            "127.0.0.1",
            "127.9.9.9",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "fe80::1",
            "::",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!default.learnable(local.parse().unwrap()), "{local}");
        }
        for routable in ["10.1.2.3", "192.0.2.20", "93.184.216.34", "fd00::10", "2001:db8::1", "::ffff:10.0.0.1"] {
            assert!(default.learnable(routable.parse().unwrap()), "{routable}");
        }
        // This host's own addresses, whatever their range.
        let own: Vec<std::net::IpAddr> = nix::ifaddrs::getifaddrs()
            .unwrap()
            .filter_map(|i| i.address)
            .filter_map(|a| a.as_sockaddr_in().map(|v4| std::net::IpAddr::V4(v4.ip())))
            .collect();
        assert!(!own.is_empty());
        for addr in own {
            assert!(!default.learnable(addr), "{addr}");
        }
        let loopback = settings(&["127.0.0.0/8"]);
        assert!(loopback.learnable("127.0.0.10".parse().unwrap()));
        assert!(loopback.learnable("::ffff:127.0.0.10".parse().unwrap()));
        assert!(!loopback.learnable("169.254.169.254".parse().unwrap()));
    }
}
