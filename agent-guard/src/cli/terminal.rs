//! Text an agent controls (paths, rules, reasons, argv), made safe to print to a terminal: a
//! path holding escape sequences must not move the cursor, rewrite earlier lines or set the
//! window title of the operator reading it.

use std::borrow::Cow;

/// `text` with every control character (C0, DEL, C1) written as a `\u{..}` escape.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn escape_sequences_are_shown_not_obeyed() {
        assert_eq!(printable("/tmp/ok"), "/tmp/ok");
        assert_eq!(printable("/tmp/\u{1b}]0;pwned\u{7}x"), "/tmp/\\u{1b}]0;pwned\\u{7}x");
        assert_eq!(printable("a\nb\u{9b}c"), "a\\u{a}b\\u{9b}c");
    }
}
