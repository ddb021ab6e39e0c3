//! Path patterns: an exact path, `DIR/*` (the direct entries of DIR) or `DIR/**` (everything
//! below DIR, and DIR itself). These three forms are what the kernel matches with one hash
//! lookup per path component (see `agent_guard_common::path`); other wildcards are refused
//! rather than silently matched differently.

use std::{fmt, str::FromStr};

use agent_guard_common::path::PATH_MAX_MATCH;

/// A path pattern of a file or exec rule (`/a/b`, `/a/*`, `/a/**`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathPattern {
    Exact(String),
    /// Directory without trailing '/' ("" for the root).
    Children(String),
    /// Directory without trailing '/' ("" for the root).
    Subtree(String),
}

impl PathPattern {
    /// The string the kernel hashes for this pattern's `PATH_RULES` key.
    pub fn key_path(&self) -> String {
        match self {
            PathPattern::Exact(path) => path.clone(),
            PathPattern::Children(dir) | PathPattern::Subtree(dir) => format!("{dir}/"),
        }
    }

    /// Whether this pattern covers `path`, an absolute, normalised path.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(exact) => path == exact,
            PathPattern::Subtree(dir) => {
                path == dir || path.strip_prefix(dir.as_str()).is_some_and(|rest| rest.starts_with('/'))
            }
            PathPattern::Children(dir) => path
                .strip_prefix(dir.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|name| !name.is_empty() && !name.contains('/')),
        }
    }
}

/// A path pattern that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid path pattern {pattern:?}: {reason}")]
pub struct PathPatternError {
    pub pattern: String,
    pub reason: &'static str,
}

impl FromStr for PathPattern {
    type Err = PathPatternError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason| Err(PathPatternError { pattern: text.to_string(), reason });
        if !text.starts_with('/') {
            return fail("must be an absolute path (start with '/')");
        }
        let (base, make): (&str, fn(String) -> PathPattern) = if let Some(dir) = text.strip_suffix("/**") {
            (dir, PathPattern::Subtree)
        } else if let Some(dir) = text.strip_suffix("/*") {
            (dir, PathPattern::Children)
        } else {
            (text, PathPattern::Exact)
        };
        if base.contains(['*', '?', '[', ']', '{', '}']) {
            return fail("wildcards are allowed only as a final \"/*\" (direct entries) or \"/**\" (everything below)");
        }
        if base.contains('\0') {
            return fail("contains a NUL byte");
        }
        let is_exact = matches!(make(String::new()), PathPattern::Exact(_));
        if is_exact && text == "/" {
            return Ok(PathPattern::Exact("/".into()));
        }
        if base.ends_with('/') {
            return fail("has a trailing '/' (write DIR/** for a directory tree)");
        }
        if base.split('/').skip(1).any(|c| c.is_empty() || c == "." || c == "..") && !base.is_empty() {
            return fail("must be normalised: no empty, '.' or '..' components");
        }
        // The kernel reads at most PATH_MAX_MATCH - 1 bytes of a path: a longer rule could
        // never match there, so it is refused instead of silently never applying.
        if base.len() + 2 >= PATH_MAX_MATCH - 1 {
            return fail("is too long for in-kernel matching (at most 252 bytes before the wildcard)");
        }
        Ok(make(base.to_string()))
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathPattern::Exact(path) => f.write_str(path),
            PathPattern::Children(dir) => write!(f, "{dir}/*"),
            PathPattern::Subtree(dir) => write!(f, "{dir}/**"),
        }
    }
}

impl super::rule::RuleTarget for PathPattern {
    const KEY: &'static str = "path";
}

impl schemars::JsonSchema for PathPattern {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PathPattern".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "An absolute, normalised path; or DIR/* (the direct entries of DIR); or DIR/** (everything below DIR, and DIR itself).",
            "pattern": "^/[^*?\\[\\]{}]*(/\\*|/\\*\\*)?$"
        })
    }
}
