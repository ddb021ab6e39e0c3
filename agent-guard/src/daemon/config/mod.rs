//! The daemon's config file (`agent-guard daemon --config FILE`, YAML): where events go, the
//! local audit store, the metrics endpoint and flood control. Every field is checked when the
//! daemon starts: an unknown key or a bad value refuses the start, naming the file and the key.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use bytesize::ByteSize;
use serde::Deserialize;

use crate::grant::duration;

mod approvals;
mod locate;
mod validate;

pub use approvals::{ApprovalsConfig, SlackConfig};

pub use validate::Seg;

pub const DEFAULT_EVENTS_FILE: &str = "/var/log/agent-guard/events.jsonl";
pub const DEFAULT_SPOOL_DIR: &str = "/var/lib/agent-guard/spool";
/// The audit store's name among the outputs (metrics, guard.output_* events).
pub const AUDIT_STORE_OUTPUT: &str = "audit-store";

/// The config file (docs/config.md).
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigFile {
    /// Where events go, all at once. Absent: stdout and the default events file.
    #[serde(default = "default_outputs")]
    pub outputs: Vec<OutputConfig>,
    #[serde(default)]
    pub audit_store: AuditStoreConfig,
    /// Prometheus metrics over HTTP (`GET /metrics`); off when absent.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    #[serde(default)]
    pub aggregation: AggregationConfig,
    /// The tasks' resolvers (name rules, DNS of tagged processes).
    #[serde(default)]
    pub dns: DnsConfig,
    /// Where the container runtimes keep their records (pod and container names).
    #[serde(default)]
    pub containers: ContainersConfig,
    /// Where held actions and access requests are asked besides the CLI (Slack, Teams, a
    /// webhook), and where their signed answers are received.
    #[serde(default)]
    pub approvals: ApprovalsConfig,
}

impl Default for ConfigFile {
    fn default() -> Self {
        ConfigFile {
            outputs: default_outputs(),
            audit_store: AuditStoreConfig::default(),
            metrics: None,
            aggregation: AggregationConfig::default(),
            dns: DnsConfig::default(),
            containers: ContainersConfig::default(),
            approvals: ApprovalsConfig::default(),
        }
    }
}

/// Where the container runtimes of the node keep their records of containers, read for the
/// Kubernetes names of a task's container (docs/config.md).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainersConfig {
    /// containerd's state directory (its `--state`, `state` in its config).
    #[serde(default = "default_containerd_state")]
    pub containerd_state: PathBuf,
    /// CRI-O's run root (`runroot` in containers-storage.conf).
    #[serde(default = "default_crio_run_root")]
    pub crio_run_root: PathBuf,
}

impl Default for ContainersConfig {
    fn default() -> Self {
        ContainersConfig { containerd_state: default_containerd_state(), crio_run_root: default_crio_run_root() }
    }
}

fn default_containerd_state() -> PathBuf {
    PathBuf::from("/run/containerd")
}

fn default_crio_run_root() -> PathBuf {
    PathBuf::from("/run/containers/storage")
}

fn default_outputs() -> Vec<OutputConfig> {
    vec![OutputConfig::Stdout(StdoutConfig::default()), OutputConfig::File(FileConfig::at(DEFAULT_EVENTS_FILE))]
}

/// How an output writes events.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// agent-guard's own schema (docs/events.md).
    #[default]
    Json,
    /// OCSF 1001/1007/4001 and base events (docs/ocsf.md).
    Ocsf,
}

/// One output: where to, and in which format (`format`, default `json`). `name` names it in
/// metrics and in `guard.output_*` events; it defaults to its type.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum OutputConfig {
    Stdout(StdoutConfig),
    File(FileConfig),
    Syslog(SyslogConfig),
    Http(HttpConfig),
}

impl OutputConfig {
    pub fn name(&self) -> String {
        let (name, kind) = match self {
            OutputConfig::Stdout(c) => (&c.name, "stdout"),
            OutputConfig::File(c) => (&c.name, "file"),
            OutputConfig::Syslog(c) => (&c.name, "syslog"),
            OutputConfig::Http(c) => (&c.name, "http"),
        };
        name.clone().unwrap_or_else(|| kind.to_string())
    }

    pub fn format(&self) -> Format {
        match self {
            OutputConfig::Stdout(c) => c.format,
            OutputConfig::File(c) => c.format,
            OutputConfig::Syslog(c) => c.format,
            OutputConfig::Http(c) => c.format,
        }
    }
}

/// An output to standard output.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub format: Format,
}

/// An output to a file, rotated by size and age.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileConfig {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub format: Format,
    pub path: PathBuf,
    /// Rotate once the file reaches this size.
    #[serde(default = "default_max_size")]
    pub max_size: ByteSize,
    /// Rotate once the file is this old (from its first line).
    #[serde(default, deserialize_with = "some_duration")]
    pub max_age: Option<Duration>,
    /// Rotated files kept (`events.jsonl.1` is the newest).
    #[serde(default = "default_keep")]
    pub keep: u32,
}

impl FileConfig {
    pub fn at(path: impl Into<PathBuf>) -> FileConfig {
        FileConfig {
            name: None,
            format: Format::Json,
            path: path.into(),
            max_size: default_max_size(),
            max_age: None,
            keep: default_keep(),
        }
    }
}

fn default_max_size() -> ByteSize {
    ByteSize::mib(100)
}

fn default_keep() -> u32 {
    5
}

/// How a syslog output reaches its receiver.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SyslogTransport {
    Udp,
    Tcp,
    /// TCP with TLS (RFC 5425: octet-counted frames).
    Tls,
    Unix,
}

/// An output to a syslog receiver (RFC 5424).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SyslogConfig {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub format: Format,
    pub transport: SyslogTransport,
    /// `host:port` for udp, tcp and tls (a name is resolved at each connect), a socket path for
    /// unix (e.g. /dev/log).
    pub address: String,
    /// tls: PEM certificates trusted beside the bundled web roots (an internal CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// tls: a client certificate (PEM, its chain after it) and its key (PEM), for receivers that
    /// require mutual TLS; both or neither.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// RFC 5424 facility name (`auth`, `authpriv`, `daemon`, `local0`...).
    #[serde(default = "default_facility")]
    pub facility: String,
    /// Events waiting for the receiver, at most; beyond, they are counted as dropped.
    #[serde(default = "default_queue")]
    pub queue: usize,
}

impl SyslogConfig {
    /// The facility the config names, if it is one.
    pub fn facility(&self) -> Option<fasyslog::Facility> {
        self.facility.parse().ok()
    }
}

fn default_facility() -> String {
    "authpriv".into()
}

fn default_queue() -> usize {
    65_536
}

/// What an HTTP output speaks: a webhook, Splunk HEC or Elasticsearch bulk.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HttpFlavor {
    /// POST a JSON array of events.
    Webhook,
    /// Splunk HTTP Event Collector (`/services/collector/event`).
    SplunkHec,
    /// Elasticsearch `_bulk` (`create` with `_id` = event id: a resent event is not duplicated).
    Elasticsearch,
}

/// An output to an HTTP receiver, batched, retried and spooled to disk.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpConfig {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub format: Format,
    pub flavor: HttpFlavor,
    /// The endpoint: the full URL for webhooks; the base URL for Splunk HEC and Elasticsearch.
    pub url: String,
    /// Read from this file at start (Splunk HEC token, or a bearer token for the others).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// An Elasticsearch API key, read from this file at start (the encoded `id:key`, as
    /// Elasticsearch returns it): `Authorization: ApiKey ...`.
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// Basic auth: this user, with the password read from `passwordFile` at start.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM certificates trusted beside the bundled web roots (an internal CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM, its chain after it) and its private key (PEM: PKCS#8, RSA or
    /// SEC1), for receivers that require mutual TLS; both or neither.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Elasticsearch index or Splunk index.
    #[serde(default)]
    pub index: Option<String>,
    /// Events per request, at most.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Longest an event waits for its batch to fill.
    #[serde(default = "default_flush", with = "duration")]
    pub flush: Duration,
    /// Per request.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Events are written here before they are sent and removed once the receiver took them:
    /// a receiver that is down or slow loses nothing, across daemon restarts too.
    #[serde(default)]
    pub spool_dir: Option<PathBuf>,
    /// Beyond this the spool takes no more events (counted, reported).
    #[serde(default = "default_spool_max")]
    pub spool_max: ByteSize,
}

impl HttpConfig {
    /// Where output `name` spools: `spoolDir`, or its own directory under the default.
    pub fn spool(&self, name: &str) -> PathBuf {
        self.spool_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_SPOOL_DIR).join(name))
    }
}

fn default_batch() -> usize {
    500
}

fn default_flush() -> Duration {
    Duration::from_secs(1)
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_spool_max() -> ByteSize {
    ByteSize::gib(1)
}

/// The local audit store: where, and for how long.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuditStoreConfig {
    /// SQLite database; `null` turns the store off.
    #[serde(default = "default_store_path")]
    pub path: Option<PathBuf>,
    /// Events older than this are removed (checked hourly).
    #[serde(default = "default_retention", with = "duration")]
    pub retention: Duration,
}

impl Default for AuditStoreConfig {
    fn default() -> Self {
        AuditStoreConfig { path: default_store_path(), retention: default_retention() }
    }
}

#[expect(
    clippy::unnecessary_wraps,
    reason = "serde's `default` for an optional field: `store: {path: null}` turns the store off"
)]
fn default_store_path() -> Option<PathBuf> {
    Some(DEFAULT_AUDIT_STORE.into())
}

/// Where the daemon keeps the audit store unless told otherwise.
pub const DEFAULT_AUDIT_STORE: &str = "/var/lib/agent-guard/audit.db";

fn default_retention() -> Duration {
    Duration::from_hours(2160)
}

/// Where `/metrics` is served.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricsConfig {
    /// `host:port` to serve `GET /metrics` on.
    pub listen: SocketAddr,
}

/// Flood control of repeated allowed and flagged events.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AggregationConfig {
    /// Identical allowed or flagged events of one process within this window are reported
    /// once, then once more with their count; `0s` turns aggregation off. Denials, held actions
    /// and approvals are never aggregated.
    #[serde(default = "default_window", with = "duration")]
    pub window: Duration,
}

impl Default for AggregationConfig {
    fn default() -> Self {
        AggregationConfig { window: default_window() }
    }
}

fn default_window() -> Duration {
    Duration::from_secs(10)
}

/// Each task's DNS resolver in the daemon (daemon/dns).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DnsConfig {
    /// Send tagged processes' DNS (port 53, TCP and UDP, any server) to their task's resolver.
    /// Off: DNS is a destination like any other, judged by the grant's address rules, and name
    /// rules allow nothing.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Servers the resolvers ask (`host:port`). Empty: the `nameserver`s of /etc/resolv.conf.
    #[serde(default)]
    pub upstream: Vec<SocketAddr>,
    /// The shortest time an answer's addresses stay allowed, whatever its TTL.
    #[serde(default = "default_ttl_floor", with = "duration")]
    pub ttl_floor: Duration,
    /// The longest; answers are passed on with their TTLs cut to it, so no cache outlives it.
    #[serde(default = "default_ttl_ceiling", with = "duration")]
    pub ttl_ceiling: Duration,
    /// Local addresses (loopback, link-local, unspecified, multicast, broadcast) an answer may
    /// still allow. Empty by default: a granted name that resolves to 127.0.0.1 or to the cloud
    /// metadata service at 169.254.169.254 (DNS rebinding) allows the task nothing there.
    #[serde(default)]
    pub local_answers: Vec<ipnet::IpNet>,
    /// Addresses one task may have learned at once; an answer that would take it past is
    /// answered SERVFAIL and learns nothing (the kernel's `NET_LEARNED` map is shared).
    #[serde(default = "default_max_learned")]
    pub max_addresses: u32,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            enabled: true,
            upstream: Vec::new(),
            ttl_floor: default_ttl_floor(),
            ttl_ceiling: default_ttl_ceiling(),
            local_answers: Vec::new(),
            max_addresses: default_max_learned(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_ttl_floor() -> Duration {
    Duration::from_secs(5)
}

fn default_ttl_ceiling() -> Duration {
    Duration::from_hours(1)
}

fn default_max_learned() -> u32 {
    1024
}

fn some_duration<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    duration::deserialize(de).map(Some)
}

/// A config file that cannot be read or does not validate.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: line {line}, column {column}: {message}")]
    Invalid { path: PathBuf, line: usize, column: usize, message: String },
}

impl ConfigFile {
    /// Reads, parses and validates the config file at `path`, as the daemon does at start.
    pub fn load(path: &std::path::Path) -> Result<ConfigFile, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        ConfigFile::parse(&text).map_err(|invalid| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: invalid.line,
            column: invalid.column,
            message: invalid.message,
        })
    }

    /// Parses and validates config `text`; an error says where in it.
    pub fn parse(text: &str) -> Result<ConfigFile, Located> {
        let config: ConfigFile = serde_yaml_ng::from_str(text).map_err(|err| {
            let (line, column) = err.location().map_or((1, 1), |l| (l.line(), l.column()));
            // serde_yaml_ng's message ends with the location, which the error states itself.
            let message = err.to_string();
            let message = message.rsplit_once(" at line ").map_or(message.as_str(), |(m, _)| m).to_string();
            Located { line, column, message }
        })?;
        config.validate().map_err(|invalid| {
            let (line, column) = locate::position(text, &invalid.at);
            Located { line, column, message: invalid.to_string() }
        })?;
        Ok(config)
    }
}

/// An error in config text, and where.
#[derive(Debug)]
pub struct Located {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_config_parses() {
        let config: ConfigFile = serde_yaml_ng::from_str(
            r#"
outputs:
  - type: stdout
  - {type: file, path: /tmp/e.jsonl, maxSize: 10MiB, maxAge: 1h, keep: 3, format: ocsf}
  - {type: syslog, transport: tcp, address: "127.0.0.1:514", facility: local3}
  - {type: http, name: siem, flavor: splunk_hec, url: "https://hec.example:8088", spoolDir: /tmp/spool}
auditStore: {path: null}
metrics: {listen: "127.0.0.1:9464"}
aggregation: {window: 0s}
"#,
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.outputs.len(), 4);
        assert_eq!(config.outputs[3].name(), "siem");
        assert_eq!(config.outputs[1].format(), Format::Ocsf);
        assert_eq!(config.audit_store.path, None);
        assert_eq!(config.aggregation.window, Duration::ZERO);
    }

    #[test]
    fn the_shipped_config_file_is_valid() {
        let shipped: ConfigFile = serde_yaml_ng::from_str(include_str!("../../../../deploy/agent-guard.yaml"))
            .expect("deploy/agent-guard.yaml");
        shipped.validate().unwrap();
        assert_eq!(shipped.audit_store.retention, Duration::from_hours(2160));
    }

    #[test]
    fn unknown_keys_and_duplicate_names_are_refused() {
        let unknown = serde_yaml_ng::from_str::<ConfigFile>("outputs: [{type: file, path: /x, maxsize: 1}]");
        assert!(unknown.unwrap_err().to_string().contains("maxsize"));
        let unknown = serde_yaml_ng::from_str::<ConfigFile>("outputs: [{type: stdout, path: /x}]");
        assert!(unknown.unwrap_err().to_string().contains("path"));
        let refused = |text: &str| ConfigFile::parse(text).map(drop).unwrap_err();
        let twice = refused("outputs: [{type: stdout}, {type: stdout}]");
        assert!(twice.message.contains("a second output named \"stdout\""), "{twice:?}");
        assert_eq!((twice.line, twice.column), (1, 28));
        // UDP syslog takes a host name, like TCP.
        ConfigFile::parse("outputs: [{type: syslog, transport: udp, address: 'logs.example:514'}]").unwrap();
        let bad = refused("outputs: [{type: syslog, transport: udp, address: 'logs.example'}]");
        assert!(bad.message.contains("is not HOST:PORT"), "{bad:?}");
        let zero = refused("outputs:\n  - type: http\n    flavor: webhook\n    url: 'http://x/'\n    flush: 0s\n");
        assert_eq!(zero.message, "outputs[0].flush: must be longer than 0s");
        assert_eq!((zero.line, zero.column), (5, 5));
        let shared = refused(
            "outputs: [{type: http, name: a, flavor: webhook, url: 'http://x/', spoolDir: /s}, {type: http, name: b, flavor: webhook, url: 'http://y/', spoolDir: /s}]",
        );
        assert!(shared.message.contains("another output's spool too"), "{shared:?}");
        let bad_url = refused("outputs: [{type: http, flavor: webhook, url: 'ftp://x'}]");
        assert!(bad_url.message.contains("not http(s)"), "{bad_url:?}");
        let unknown = refused("aggregation: {window: 0s}\noutputs: [{type: file, path: /x, maxsize: 1}]");
        assert_eq!(unknown.line, 2, "{unknown:?}");
        assert!(!unknown.message.contains(" at line "), "{unknown:?}");
    }

    #[test]
    fn auth_and_tls_settings_are_checked_together() {
        let refused = |text: &str| ConfigFile::parse(text).map(drop).unwrap_err().message;
        let es = "{type: http, flavor: elasticsearch, url: 'https://es.example:9200'";
        ConfigFile::parse(&format!("outputs: [{es}, username: u, passwordFile: /p, caFile: /ca}}]")).unwrap();
        ConfigFile::parse(&format!("outputs: [{es}, apiKeyFile: /k, clientCert: /c, clientKey: /k}}]")).unwrap();
        assert!(refused(&format!("outputs: [{es}, tokenFile: /t, apiKeyFile: /k}}]")).contains("give one of"));
        assert!(refused(&format!("outputs: [{es}, username: u}}]")).contains("go together"));
        assert!(refused(&format!("outputs: [{es}, clientKey: /k}}]")).contains("outputs[0].clientKey"));
        let hec = "{type: http, flavor: splunk_hec, url: 'https://hec.example'";
        assert!(refused(&format!("outputs: [{hec}, apiKeyFile: /k}}]")).contains("Elasticsearch's"));
        let plain = "{type: http, flavor: webhook, url: 'http://hook.example'";
        assert!(refused(&format!("outputs: [{plain}, caFile: /ca}}]")).contains("https"));
        let plain_token = "{type: http, flavor: webhook, url: 'http://hook.example', tokenFile: /t}";
        assert!(refused(&format!("outputs: [{plain_token}]")).contains("only over https"));
        let in_url = "{type: http, flavor: webhook, url: 'https://u:p@hook.example'}";
        assert!(refused(&format!("outputs: [{in_url}]")).contains("credentials in the url"));
        for name in ["../etc", "a/b", ".hidden", ""] {
            let named = format!("outputs: [{{type: stdout, name: '{name}'}}]");
            assert!(refused(&named).contains("outputs[0].name"), "{name:?}");
        }
        ConfigFile::parse("outputs: [{type: syslog, transport: tls, address: 'logs.example:6514', caFile: /ca}]")
            .unwrap();
        let tcp = refused("outputs: [{type: syslog, transport: tcp, address: 'logs.example:514', caFile: /ca}]");
        assert!(tcp.contains("only for transport: tls"), "{tcp}");
    }

    #[test]
    fn dns_limits_are_checked() {
        let err = ConfigFile::parse("dns:\n  ttlFloor: 2h\n").map(drop).unwrap_err();
        assert_eq!((err.line, err.column), (2, 3));
        assert!(err.message.starts_with("dns.ttlFloor: 2h is above ttlCeiling 1h"), "{err:?}");
        let err = ConfigFile::parse("dns: {maxAddresses: 0, localAnswers: ['127.0.0.0/8']}").map(drop).unwrap_err();
        assert_eq!(err.message, "dns.maxAddresses: must be at least 1");
        assert!(ConfigFile::parse("dns: {localAnswers: ['127.0.0.1']}").is_err(), "a CIDR, with its prefix");
    }
}
