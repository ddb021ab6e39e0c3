//! The reference evaluator: what a grant allows, decided in userspace from the parsed rules.
//! The kernel decides from compiled map entries; tests check that both agree. The daemon uses
//! this evaluator for paths the kernel could not decide at its hook (relative, `..`, too long).

use agent_guard_common::path::{ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE};

use super::Grant;
#[cfg(test)]
use super::NetRule;

impl Grant {
    /// ACCESS_* bits the grant gives `path` (absolute and normalised).
    pub fn path_access(&self, path: &str) -> u32 {
        let files = &self.spec.files;
        let mut access = 0;
        if files.read.iter().any(|p| p.matches(path)) {
            access |= ACCESS_READ;
        }
        if files.write.iter().any(|p| p.matches(path)) {
            access |= ACCESS_WRITE;
        }
        if self.spec.exec.iter().any(|p| p.matches(path)) {
            access |= ACCESS_EXEC;
        }
        access
    }

    /// The first rule allowing a connect/send: the reference the kernel's LPM entries are
    /// tested against (the kernel itself reports only what no rule allows).
    #[cfg(test)]
    /// The first rule allowing a connect/send to `dest` (IPv6 or IPv4-mapped) or None.
    pub fn connect_rule(&self, dest: &[u8; 16], port: u16, protocol: u8) -> Option<(usize, &NetRule)> {
        self.spec.network.connect.iter().enumerate().find(|(_, rule)| rule.matches(dest, port, protocol))
    }
}

/// Lexically normalises `path`, resolved against `base` when relative: removes empty and `.`
/// components and applies `..` (never above `/`). Symlinks are not resolved.
pub fn normalize_path(base: &str, path: &str) -> String {
    let joined = if path.starts_with('/') { path.to_string() } else { format!("{base}/{path}") };
    let mut parts: Vec<&str> = Vec::new();
    for component in joined.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}
