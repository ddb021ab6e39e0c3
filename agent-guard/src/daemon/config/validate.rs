//! What serde cannot say of a config file: names unique, sizes sane, URLs that parse, one way
//! to authenticate. Each error names the key it is about, so that it can be shown at its line.

use std::{fmt, net::SocketAddr};

use super::{AUDIT_STORE_OUTPUT, ConfigFile, HttpConfig, HttpFlavor, OutputConfig, SyslogConfig, SyslogTransport};

/// One step of the way to a key: a mapping key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(&'static str),
    Index(usize),
}

/// A value the daemon refuses, and the key it is at.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid {
    pub at: Vec<Seg>,
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.at.iter().enumerate() {
            match seg {
                Seg::Key(key) if i == 0 => write!(f, "{key}")?,
                Seg::Key(key) => write!(f, ".{key}")?,
                Seg::Index(index) => write!(f, "[{index}]")?,
            }
        }
        write!(f, ": {}", self.message)
    }
}

fn invalid(at: &[Seg], message: impl Into<String>) -> Invalid {
    Invalid { at: at.to_vec(), message: message.into() }
}

impl ConfigFile {
    /// Checks what serde cannot; the first error found.
    pub fn validate(&self) -> Result<(), Invalid> {
        let dns = [Seg::Key("dns")];
        if self.dns.ttl_floor > self.dns.ttl_ceiling {
            return Err(invalid(
                &[Seg::Key("dns"), Seg::Key("ttlFloor")],
                format!(
                    "{} is above ttlCeiling {}",
                    humantime::format_duration(self.dns.ttl_floor),
                    humantime::format_duration(self.dns.ttl_ceiling)
                ),
            ));
        }
        if self.dns.max_addresses == 0 {
            return Err(invalid(&[dns[0].clone(), Seg::Key("maxAddresses")], "must be at least 1"));
        }
        if let Err((key, message)) = self.approvals.check() {
            return Err(invalid(&[Seg::Key("approvals"), Seg::Key(key)], message));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut spools = std::collections::BTreeSet::new();
        for (index, output) in self.outputs.iter().enumerate() {
            let at = |key: &'static str| vec![Seg::Key("outputs"), Seg::Index(index), Seg::Key(key)];
            let name = output.name();
            // It names a directory (the default spool is DEFAULT_SPOOL_DIR/NAME) and metric labels.
            let plain = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if name.is_empty() || !plain || name.starts_with('.') || name.len() > 64 {
                return Err(invalid(
                    &at("name"),
                    format!("{name:?}: letters, digits, '-', '_' and '.' only, not leading"),
                ));
            }
            if name == AUDIT_STORE_OUTPUT {
                return Err(invalid(&at("name"), format!("{name:?} is the audit store's: choose another")));
            }
            if !names.insert(name.clone()) {
                return Err(invalid(
                    &at("type"),
                    format!("a second output named {name:?}: give each a distinct `name`"),
                ));
            }
            match output {
                OutputConfig::File(file) if file.max_size.as_u64() < 4096 => {
                    return Err(invalid(&at("maxSize"), format!("{} is below 4 KiB", file.max_size)));
                }
                OutputConfig::Http(http) => {
                    http_output(http, &at)?;
                    let spool = http.spool(&name);
                    if !spools.insert(spool.clone()) {
                        return Err(invalid(
                            &at("spoolDir"),
                            format!("{} is another output's spool too", spool.display()),
                        ));
                    }
                }
                OutputConfig::Syslog(syslog) => syslog_output(syslog, &at)?,
                _ => {}
            }
        }
        Ok(())
    }
}

fn http_output(http: &HttpConfig, at: &dyn Fn(&'static str) -> Vec<Seg>) -> Result<(), Invalid> {
    let url = reqwest::Url::parse(&http.url).map_err(|err| invalid(&at("url"), format!("{:?}: {err}", http.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(&at("url"), format!("{:?} is not http(s)", http.url)));
    }
    if http.batch == 0 {
        return Err(invalid(&at("batch"), "must be at least 1"));
    }
    if http.flush.is_zero() {
        return Err(invalid(&at("flush"), "must be longer than 0s"));
    }
    if http.timeout.is_zero() {
        return Err(invalid(&at("timeout"), "must be longer than 0s"));
    }
    let ways = [http.token_file.is_some(), http.api_key_file.is_some(), http.username.is_some()];
    if ways.iter().filter(|&&w| w).count() > 1 {
        return Err(invalid(&at("tokenFile"), "give one of tokenFile, apiKeyFile and username (with passwordFile)"));
    }
    if http.username.is_some() != http.password_file.is_some() {
        let key = if http.username.is_some() { "username" } else { "passwordFile" };
        return Err(invalid(&at(key), "username and passwordFile go together"));
    }
    if http.api_key_file.is_some() && http.flavor != HttpFlavor::Elasticsearch {
        return Err(invalid(&at("apiKeyFile"), "API keys are Elasticsearch's: use tokenFile for other receivers"));
    }
    if http.client_cert.is_some() != http.client_key.is_some() {
        let key = if http.client_cert.is_some() { "clientCert" } else { "clientKey" };
        return Err(invalid(&at(key), "clientCert and clientKey go together"));
    }
    if url.scheme() == "http" && (http.ca_file.is_some() || http.client_cert.is_some()) {
        return Err(invalid(&at("url"), "caFile and clientCert need an https url"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(&at("url"), "credentials in the url would be logged: use username and passwordFile"));
    }
    if url.scheme() == "http" && ways.iter().any(|&w| w) {
        return Err(invalid(&at("url"), "a token, API key or password is sent only over https"));
    }
    Ok(())
}

fn syslog_output(syslog: &SyslogConfig, at: &dyn Fn(&'static str) -> Vec<Seg>) -> Result<(), Invalid> {
    if syslog.facility().is_none() {
        return Err(invalid(&at("facility"), format!("unknown syslog facility {:?}", syslog.facility)));
    }
    if syslog.queue == 0 {
        return Err(invalid(&at("queue"), "must be at least 1"));
    }
    let address = &syslog.address;
    let ok = match syslog.transport {
        SyslogTransport::Udp | SyslogTransport::Tcp | SyslogTransport::Tls => {
            address.parse::<SocketAddr>().is_ok()
                || address
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && !host.contains(':') && port.parse::<u16>().is_ok())
        }
        SyslogTransport::Unix => address.starts_with('/'),
    };
    if !ok {
        let want = if syslog.transport == SyslogTransport::Unix { "an absolute socket path" } else { "HOST:PORT" };
        return Err(invalid(&at("address"), format!("{address:?} is not {want}")));
    }
    let tls_only = [("caFile", syslog.ca_file.is_some()), ("clientCert", syslog.client_cert.is_some())];
    if syslog.transport != SyslogTransport::Tls
        && let Some((key, _)) = tls_only.iter().find(|(_, set)| *set)
    {
        return Err(invalid(&at(key), "only for transport: tls"));
    }
    if syslog.client_cert.is_some() != syslog.client_key.is_some() {
        let key = if syslog.client_cert.is_some() { "clientCert" } else { "clientKey" };
        return Err(invalid(&at(key), "clientCert and clientKey go together"));
    }
    Ok(())
}
