//! Text an agent controls (paths, argv, rules, reasons, intents), made safe to show. A path
//! holding escape sequences must not move an operator's cursor, rewrite earlier lines, set a
//! window title or the clipboard; a bidi override must not reorder what a line or a report cell
//! says; an invisible character must not make two names look alike.

use std::{borrow::Cow, fmt::Write as _};

/// Characters that act on a terminal or on how text reads rather than being read: controls
/// (C0, DEL, C1), the bidirectional embeddings, overrides, isolates and marks, the invisible
/// formatting characters and the line and paragraph separators.
pub fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// `text` with every deceptive character written as a `\u{..}` escape, for terminals, logs and
/// reports.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_deceptive) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_deceptive(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A JSON text with its deceptive characters written as `\uXXXX` escapes. `serde_json` escapes
/// only C0 controls, so C1 controls (some terminals obey them in UTF-8) and bidi overrides would
/// reach whoever reads the line in a terminal. C0 controls are left alone: inside strings
/// `serde_json` has escaped them already, so any left are a pretty-printer's line breaks. Outside
/// strings JSON holds none of the others, so the result is the same JSON value.
pub fn json_safe(json: String) -> String {
    let escaped = |c: char| c > '\u{7e}' && is_deceptive(c);
    // Nearly every line is ASCII: one vectorised pass decides it (the per-character scan was
    // a tenth of the pipeline's rendering, BENCHMARKS.md).
    if json.is_ascii() || !json.chars().any(escaped) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if escaped(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{json_safe, printable};

    #[test]
    fn escape_sequences_are_shown_not_obeyed() {
        assert_eq!(printable("/tmp/ok"), "/tmp/ok");
        assert_eq!(printable("/tmp/\u{1b}]0;pwned\u{7}x"), "/tmp/\\u{1b}]0;pwned\\u{7}x");
        assert_eq!(printable("a\nb\u{9b}c"), "a\\u{a}b\\u{9b}c");
    }

    #[test]
    fn bidi_overrides_and_invisible_characters_are_shown() {
        assert_eq!(printable("/srv/\u{202e}txt.exe"), "/srv/\\u{202e}txt.exe");
        assert_eq!(printable("ad\u{200b}min"), "ad\\u{200b}min");
        assert_eq!(printable("naïve/日本"), "naïve/日本");
    }

    #[test]
    fn json_keeps_its_value_and_loses_its_tricks() {
        let value = serde_json::json!({"path": "/a\u{9b}2J\u{202e}b\u{1F600}\u{1b}x", "n": [1, 2]});
        for line in [serde_json::to_string(&value).unwrap(), serde_json::to_string_pretty(&value).unwrap()] {
            let safe = json_safe(line.clone());
            assert!(!safe.contains('\u{9b}') && !safe.contains('\u{202e}') && !safe.contains('\u{1b}'), "{safe}");
            let (a, b): (serde_json::Value, serde_json::Value) =
                (serde_json::from_str(&line).unwrap(), serde_json::from_str(&safe).unwrap());
            assert_eq!(a, b);
        }
    }
}
