//! Template variables: `{name}` inside a `GrantTemplate`'s strings, e.g. `"{workspace}/**"` or
//! `/tmp/agent-{task_id}/**`. Substitution is textual, so values are restricted to
//! characters that cannot change the YAML's structure (see `VarType::check`).

use serde::{Deserialize, Serialize};

/// One `{name}` found in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub name: String,
    /// 1-based, as `serde_yaml_ng` reports locations.
    pub line: usize,
    pub column: usize,
    /// Byte offset of the '{'.
    offset: usize,
}

/// The `{variables}` of a template and where they are.
pub struct Scan {
    pub found: Vec<Found>,
    /// The text with every placeholder replaced by a stand-in of the same length ("/xxxx", or
    /// "xxxxx" after a '/'), which parses wherever a path pattern is expected; used to
    /// validate a template's structure.
    pub checkable: String,
}

/// Finds every `{name}` (name: a lowercase letter or '_', then lowercase letters, digits, '_')
/// outside YAML comments.
pub fn scan(text: &str) -> Scan {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let (mut line, mut line_start) = (1, 0);
    let (mut single, mut double) = (false, false);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                line += 1;
                line_start = i + 1;
                (single, double) = (false, false);
            }
            b'\'' if !double => single = !single,
            b'"' if !single && (i == 0 || bytes[i - 1] != b'\\') => double = !double,
            // A comment runs to the end of the line.
            b'#' if !single && !double && (i == line_start || bytes[i - 1].is_ascii_whitespace()) => {
                while i + 1 < bytes.len() && bytes[i + 1] != b'\n' {
                    i += 1;
                }
            }
            b'{' => {
                let rest = &text[i + 1..];
                let len = rest
                    .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                    .unwrap_or(rest.len());
                let name = &rest[..len];
                if !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()) && rest[len..].starts_with('}') {
                    found.push(Found { name: name.to_string(), line, column: i - line_start + 1, offset: i });
                    i += len + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    let mut checkable = text.to_string();
    for f in found.iter().rev() {
        let width = f.name.len() + 2;
        // After a '/' a plain name keeps the path normalised; elsewhere it starts a path.
        let stand_in = if f.offset > 0 && bytes[f.offset - 1] == b'/' {
            "x".repeat(width)
        } else {
            format!("/{}", "x".repeat(width - 1))
        };
        checkable.replace_range(f.offset..f.offset + width, &stand_in);
    }
    Scan { found, checkable }
}

/// Replaces every placeholder by its value; `values` must hold every name found.
pub fn fill(text: &str, scan: &Scan, value_of: impl Fn(&str) -> String) -> String {
    let mut out = text.to_string();
    for f in scan.found.iter().rev() {
        out.replace_range(f.offset..f.offset + f.name.len() + 2, &value_of(&f.name));
    }
    out
}

/// What a variable holds; its value is checked before it is substituted.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VarType {
    /// An absolute, normalised path without wildcards (e.g. a workspace directory).
    Path,
    /// 1-63 letters, digits, '-', '_' or '.' (e.g. a ticket number).
    Name,
}

impl VarType {
    pub fn check(self, variable: &str, value: &str) -> Result<(), String> {
        let ok = match self {
            VarType::Path => {
                value.starts_with('/')
                    && value.len() <= 200
                    && crate::grant::normalize_path("/", value) == value
                    // No ',' (a flow sequence would split one rule into two), no YAML indicators.
                    && value.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+@%=~".contains(c))
            }
            VarType::Name => {
                !value.is_empty()
                    && value.len() <= 63
                    && !value.starts_with('.')
                    && value.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            }
        };
        if ok {
            return Ok(());
        }
        Err(match self {
            VarType::Path => format!(
                "variable {variable}={value:?} must be an absolute, normalised path of letters, digits and /._-+@%=~ (no wildcards)"
            ),
            VarType::Name => format!("variable {variable}={value:?} must be 1-63 letters, digits, '-', '_' or '.'"),
        })
    }
}
