//! The reference evaluator: what a grant allows, decided in userspace from the parsed rules.
//! The kernel decides from compiled map entries; tests check that both agree. The daemon uses
//! this evaluator for paths the kernel could not decide at its hook (relative, `..`, too long).

use agent_guard_common::path::{ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE, ASK_SHIFT};

#[cfg(test)]
use super::NetRule;
use super::{Grant, RuleAction};

impl Grant {
    /// ACCESS_* bits the grant gives `path`, with the bits of `ask` rules shifted by
    /// ASK_SHIFT (the kernel's representation).
    pub fn path_access(&self, path: &str) -> u32 {
        let files = &self.spec.files;
        let mut access = 0;
        for (rules, bit) in [(&files.read, ACCESS_READ), (&files.write, ACCESS_WRITE), (&self.spec.exec, ACCESS_EXEC)] {
            for rule in rules.iter().filter(|r| r.pattern.matches(path)) {
                access |= match rule.action {
                    RuleAction::Allow => bit,
                    RuleAction::Ask => bit << ASK_SHIFT,
                };
            }
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
